//! [`RateLimitLayer`] and [`KeyedRateLimitLayer`].

use crate::{KeyedRateLimit, RateLimit, RateLimiter};
use std::time::Duration;
use tower_layer::Layer;

/// Applies a rate limit to a service: [`RateLimit`].
///
/// Every service it makes (and every clone) shares the limiter. Over the
/// limit, a call fails at once with
/// [`RateLimited`](bulwark_core::error::RateLimited), unless
/// [`max_wait`](Self::max_wait) lets it wait in `poll_ready` for its turn.
///
/// ```
/// use bulwark::ratelimit::{RateLimitLayer, RateLimiter};
/// use bulwark::error::{find, RateLimited};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = RateLimiter::new(1, Duration::from_secs(1)).unwrap();
/// let mut svc = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(limiter))
///     .service_fn(|x: u32| async move { Ok::<_, bulwark::BoxError>(x) });
/// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
/// let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
/// assert_eq!(find::<RateLimited>(&*err).unwrap().retry_after(), Duration::from_secs(1));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer<L = RateLimiter> {
    limiter: L,
    max_wait: Duration,
}

impl<L> RateLimitLayer<L> {
    /// A layer over `limiter` that fails fast: a [`RateLimiter`], or any
    /// [`Admit`](crate::Admit) such as a fleet-wide limiter.
    pub const fn new(limiter: L) -> Self {
        RateLimitLayer {
            limiter,
            max_wait: Duration::ZERO,
        }
    }

    /// Lets a call wait in `poll_ready` for its turn, at most `max_wait` in
    /// all; a call whose turn comes later fails at once (default zero:
    /// never wait). Waiting smooths bursts from a client that would rather
    /// be slow than refused.
    pub const fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The limiter.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }
}

impl<S, L: Clone> Layer<S> for RateLimitLayer<L> {
    type Service = RateLimit<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone()).with_max_wait(self.max_wait)
    }
}

/// Applies a keyed rate limit: [`KeyedRateLimit`]. `key` picks each
/// request's key (a tenant, a user, a host).
///
/// ```
/// use bulwark::ratelimit::{KeyedRateLimitLayer, RateLimiter};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let per_user = RateLimiter::builder().limit(1, Duration::from_secs(1)).build_keyed().unwrap();
/// let mut svc = ServiceBuilder::new()
///     .layer(KeyedRateLimitLayer::new(per_user, |(user, _): &(u32, u64)| *user))
///     .service_fn(|(_, n): (u32, u64)| async move { Ok::<_, bulwark::BoxError>(n * 2) });
/// assert!(svc.ready().await.unwrap().call((1, 10)).await.is_ok());
/// assert!(svc.ready().await.unwrap().call((1, 11)).await.is_err());
/// assert!(svc.ready().await.unwrap().call((2, 12)).await.is_ok());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KeyedRateLimitLayer<L, F> {
    limiter: L,
    key: F,
}

impl<L, F> KeyedRateLimitLayer<L, F> {
    /// A layer over `limiter` (a [`KeyedRateLimiter`](crate::KeyedRateLimiter)
    /// or any [`AdmitKey`](crate::AdmitKey)), keyed by `key(&request)`.
    pub const fn new(limiter: L, key: F) -> Self {
        KeyedRateLimitLayer { limiter, key }
    }
}

impl<S, L: Clone, F: Clone> Layer<S> for KeyedRateLimitLayer<L, F> {
    type Service = KeyedRateLimit<S, L, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedRateLimit::new(inner, self.limiter.clone(), self.key.clone())
    }
}
