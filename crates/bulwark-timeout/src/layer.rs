//! The [`TimeoutLayer`].

use crate::{Timeout, TimeoutEvent};
use bulwark_core::{Listener, Listeners};
use std::fmt;
use std::time::Duration;
use tower_layer::Layer;

/// Applies a [`Timeout`] to services.
///
/// ```
/// use bulwark::timeout::TimeoutLayer;
/// use std::time::Duration;
///
/// // 2 s per request, and at most 100 ms waiting for the inner service to
/// // become ready (tower's `Timeout` does not cover that wait).
/// let layer = TimeoutLayer::new(Duration::from_secs(2))
///     .readiness_timeout(Duration::from_millis(100));
///
/// // A limit per request: health checks 1 s, reports 2 min.
/// let per_request = TimeoutLayer::per_request(|path: &&str| {
///     Some(if path.starts_with("/reports") {
///         Duration::from_secs(120)
///     } else {
///         Duration::from_secs(1)
///     })
/// });
/// # let _ = (layer, per_request);
/// ```
pub struct TimeoutLayer<P = Duration> {
    policy: P,
    readiness: Option<Duration>,
    listeners: Listeners<TimeoutEvent>,
}

impl TimeoutLayer<Duration> {
    /// The same limit for every request.
    ///
    /// Any duration is accepted: `Duration::ZERO` fails every request that
    /// is not ready at once, and a limit too long to be a deadline (such as
    /// `Duration::MAX`) never fires.
    pub const fn new(limit: Duration) -> Self {
        TimeoutLayer {
            policy: limit,
            readiness: None,
            listeners: Listeners::new(),
        }
    }
}

impl<F> TimeoutLayer<F> {
    /// A limit chosen per request by `choose` (`None`: no limit for that
    /// request). `choose` can be any [`TimeoutPolicy`](crate::TimeoutPolicy),
    /// usually a closure `Fn(&Req) -> Option<Duration>`.
    pub const fn per_request(choose: F) -> Self {
        TimeoutLayer {
            policy: choose,
            readiness: None,
            listeners: Listeners::new(),
        }
    }
}

impl<P> TimeoutLayer<P> {
    /// Also limits the wait for the inner service's readiness to `limit`.
    ///
    /// When it elapses, the next `call` fails at once with
    /// [`Elapsed`](crate::Elapsed) for
    /// [`Limit::Readiness`](crate::error::Limit::Readiness). As for the
    /// request limit, a `limit` too long to be a deadline never fires.
    pub fn readiness_timeout(mut self, limit: Duration) -> Self {
        self.readiness = Some(limit);
        self
    }

    /// Registers a listener for [`TimeoutEvent`]s.
    pub fn on_event(mut self, listener: impl Listener<TimeoutEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }
}

/// `TimeoutLayer::new(limit)`, so that what takes a layer also takes a
/// bare limit.
///
/// ```
/// use bulwark::timeout::TimeoutLayer;
/// use std::time::Duration;
///
/// let layer: TimeoutLayer = Duration::from_secs(1).into();
/// # drop(layer);
/// ```
impl From<Duration> for TimeoutLayer<Duration> {
    fn from(limit: Duration) -> Self {
        TimeoutLayer::new(limit)
    }
}

impl<P: Clone> Clone for TimeoutLayer<P> {
    fn clone(&self) -> Self {
        TimeoutLayer {
            policy: self.policy.clone(),
            readiness: self.readiness,
            listeners: self.listeners.clone(),
        }
    }
}

impl<P: fmt::Debug> fmt::Debug for TimeoutLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("policy", &self.policy)
            .field("readiness", &self.readiness)
            .field("listeners", &self.listeners)
            .finish()
    }
}

impl<S, P: Clone> Layer<S> for TimeoutLayer<P> {
    type Service = Timeout<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::with_parts(
            inner,
            self.policy.clone(),
            self.readiness,
            self.listeners.clone(),
        )
    }
}
