//! Timeouts for tower services: a fixed limit or one chosen per request, with
//! an option to cover the wait for the inner service's readiness.
//!
//! A [`Timeout`] races each response future against its limit and fails with
//! [`Elapsed`] when the limit is reached. The error says which
//! limit fired ([`Limit::Request`](error::Limit::Request) or
//! [`Limit::Readiness`](error::Limit::Readiness)) and how long it was. Like
//! every Bulwark layer that adds a way to fail, the service's error type is
//! [`BoxError`](bulwark_core::BoxError); find the `Elapsed` anywhere in the
//! `source()` chain with [`bulwark::error::find`](bulwark_core::error::find).
//!
//! The limit is counted from `call`; the timer itself is registered only on
//! the first poll that finds the response not ready, so a response that is
//! ready at once (a cache hit, an in-memory service) never pays for a timer.
//!
//! ```
//! use bulwark::timeout::{error::{Elapsed, Limit}, TimeoutLayer};
//! use bulwark::error::find;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_millis(100)))
//!     .service_fn(|ms: u64| async move {
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, std::convert::Infallible>(ms)
//!     });
//!
//! assert_eq!(svc.clone().oneshot(10).await.unwrap(), 10);
//! let err = svc.oneshot(500).await.unwrap_err();
//! let elapsed = find::<Elapsed>(&*err).unwrap();
//! assert_eq!(elapsed.limit(), Limit::Request);
//! assert_eq!(elapsed.duration(), Duration::from_millis(100));
//! # }
//! ```
//!
//! # Per request
//!
//! [`TimeoutLayer::per_request`] takes any [`TimeoutPolicy`], usually a
//! closure `Fn(&Req) -> Option<Duration>`, so one stack can give health checks
//! 1 s and reports 2 minutes (`None` means no limit for that request).
//!
//! # Readiness
//!
//! tower's `Timeout` only limits the response future; a service that never
//! becomes ready (a full bulkhead waiting for a permit, a connection pool that
//! cannot connect) makes the caller wait forever (tower issue #648).
//! [`TimeoutLayer::readiness_timeout`] also limits that wait. `poll_ready`
//! never returns `Err` for it: it returns `Ready(Ok(()))` and the following
//! `call` fails at once with `Elapsed` for `Limit::Readiness`, without calling
//! the inner service.
//!
//! # Per-attempt or total: placement decides
//!
//! A timeout limits everything *inside* it. Put it inside retry and it limits
//! each attempt; put it outside and it limits the whole call, retries and
//! backoff included. A client usually wants both:
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(10)))   // total: all attempts and backoff
//!     .layer(RetryLayer::new(policy))
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))    // per attempt
//!     .service(transport)
//! ```
//!
//! The outer limit should be longer than the inner one, or no retry ever
//! happens. The same reasoning applies to readiness: an outer timeout with
//! [`readiness_timeout`](TimeoutLayer::readiness_timeout) bounds the time a
//! request waits for a bulkhead permit below it. Two timeouts nested, the
//! inner one firing first:
//!
//! ```
//! use bulwark::timeout::{error::Elapsed, TimeoutLayer};
//! use bulwark::error::find;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(10))) // total
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))  // attempt
//!     .service_fn(|()| async {
//!         std::future::pending::<Result<(), std::convert::Infallible>>().await
//!     });
//! let err = svc.oneshot(()).await.unwrap_err();
//! assert_eq!(find::<Elapsed>(&*err).unwrap().duration(), Duration::from_secs(2));
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod future;
mod layer;
mod policy;
mod service;

pub use error::Elapsed;
pub use layer::TimeoutLayer;
pub use policy::TimeoutPolicy;
pub use service::Timeout;

/// What a [`Timeout`] reports to its listeners
/// ([`TimeoutLayer::on_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutEvent {
    /// A limit elapsed; the caller gets this error.
    Elapsed(Elapsed),
}
