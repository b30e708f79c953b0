//! Rate limiting for tower services: at most `N` calls per period, for all
//! calls or per key, with GCRA (the generic cell rate algorithm of the
//! [`governor`](https://docs.rs/governor) crate) read on tokio's clock.
//!
//! Over the limit, a call is refused at once with
//! [`RateLimited`], which says when a call would be admitted again;
//! `bulwark-http` answers it with `429 Too Many Requests` and that
//! `Retry-After`. Like every local rejection it is
//! [`Outcome::Rejected`](bulwark_core::Outcome::Rejected): a breaker further
//! out does not count it and retry does not retry it. A layer may instead
//! let calls wait for their turn, up to a bound
//! ([`RateLimitLayer::max_wait`]).
//!
//! ```
//! use bulwark::error::{find, RateLimited};
//! use bulwark::ratelimit::{RateLimitLayer, RateLimiter};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 100 calls per second, at most 10 at once.
//! let limiter = RateLimiter::builder()
//!     .name("payments")
//!     .limit(100, Duration::from_secs(1))
//!     .burst(10)
//!     .build()
//!     .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter))
//!     .service_fn(|x: u32| async move { Ok::<_, bulwark::BoxError>(x) });
//!
//! for i in 0..10 {
//!     svc.ready().await.unwrap().call(i).await.unwrap();
//! }
//! let err = svc.ready().await.unwrap().call(10).await.unwrap_err();
//! let limited = find::<RateLimited>(&*err).unwrap();
//! assert_eq!(limited.retry_after(), Duration::from_millis(10));
//! assert_eq!(err.to_string(), "rate limit 'payments' exceeded; retry in 10ms");
//!
//! tokio::time::sleep(Duration::from_millis(10)).await;
//! assert!(svc.ready().await.unwrap().call(11).await.is_ok());
//! # }
//! ```
//!
//! # What it guarantees
//!
//! With `permits` per `per` and a burst `b`, calls are spaced by the
//! emission interval `per / permits`; a quiet client may spend `b` at once.
//! Over any window of length `T`, at most `b + ⌊T · permits / per⌋` calls
//! are admitted, and a client that offers more than the rate gets exactly
//! the rate after its burst. The state is one atomic word per limiter (per
//! key for a [`KeyedRateLimiter`]); `admit` is a compare-and-swap loop, no
//! lock, no allocation.
//!
//! # Fleet-wide
//!
//! [`Admit`] is the seam: `bulwark-fleet` implements it with a limit shared
//! by every instance of a service through Redis, behind the same
//! [`RateLimitLayer`].
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod future;
mod layer;
mod limiter;
mod service;

pub use bulwark_core::error::RateLimited;
pub use layer::{KeyedRateLimitLayer, RateLimitLayer};
pub use limiter::{Admit, AdmitKey, KeyedRateLimiter, Rate, RateLimiter, RateLimiterBuilder};
pub use service::{KeyedRateLimit, RateLimit};

use std::sync::Arc;
use std::time::Duration;

/// What a rate limiter tells its listeners
/// ([`RateLimiterBuilder::on_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitEvent {
    /// A call was refused.
    Refused {
        /// The limiter's name.
        name: Option<Arc<str>>,
        /// When a call would be admitted again.
        retry_after: Duration,
    },
}

#[cfg(test)]
mod tests;
