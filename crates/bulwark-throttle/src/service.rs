//! The [`AdaptiveThrottle`] service.

use crate::error::ThrottledLocally;
use crate::future::{ResponseFuture, Tracker};
use crate::state::State;
use crate::{AdaptiveThrottleHandle, ThrottleEvent};
use bulwark_core::{BoxError, Classify, DefaultClassifier};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Sheds calls locally in proportion to what the upstream stopped
/// accepting: client-side adaptive throttling, after the Google SRE book's
/// "Handling Overload".
///
/// Over a sliding window it counts `requests` (every call, those it shed
/// included) and `accepts` (calls the upstream accepted), and sheds each new
/// call with probability
///
/// ```text
/// p = max(0, (requests − K·accepts) / (requests + 1))     (capped at max_reject_probability)
/// ```
///
/// While the upstream accepts at least `1/K` of the requests, nothing is
/// shed; past that, only the excess is. What was accepted is decided by the
/// shared classifier `C`:
///
/// | outcome                    | requests | accepts |
/// |----------------------------|----------|---------|
/// | `Success`                  | +1       | +1      |
/// | `Ignored` (a 404: the upstream answered) | +1 | +1 |
/// | `Failure`, `Throttled`     | +1       |         |
/// | dropped before it ended    | +1       |         |
/// | `Rejected` (refused further in, e.g. an open breaker below) | | |
/// | shed by this throttle      | +1       |         |
///
/// A shed call never reaches the inner service: `call` returns an
/// immediately ready [`ThrottledLocally`] error (`poll_ready` only waits for
/// the inner service and never fails for a policy decision). Clones share
/// the counts.
pub struct AdaptiveThrottle<S, C = DefaultClassifier> {
    inner: S,
    state: Arc<State>,
    classifier: C,
}

impl<S> AdaptiveThrottle<S> {
    /// Wraps `inner` with a throttle of its own, with the defaults (see
    /// [`AdaptiveThrottleLayer::builder`](crate::AdaptiveThrottleLayer::builder)
    /// to change them).
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&crate::AdaptiveThrottleLayer::new(), inner)
    }
}

impl<S, C> AdaptiveThrottle<S, C> {
    pub(crate) fn with_state(inner: S, state: Arc<State>, classifier: C) -> Self {
        AdaptiveThrottle {
            inner,
            state,
            classifier,
        }
    }

    /// A handle reading the shared counts.
    pub fn handle(&self) -> AdaptiveThrottleHandle {
        AdaptiveThrottleHandle {
            state: self.state.clone(),
        }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for AdaptiveThrottle<S, C> {
    fn clone(&self) -> Self {
        AdaptiveThrottle::with_state(
            self.inner.clone(),
            self.state.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveThrottle<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("inner", &self.inner)
            .field("state", &self.state)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveThrottle<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.state.admit() {
            Ok(()) => ResponseFuture::sent(
                self.inner.call(req),
                Tracker::new(self.state.clone()),
                self.classifier.clone(),
            ),
            Err(probability) => self.shed(probability),
        }
    }
}

impl<S, C> AdaptiveThrottle<S, C> {
    #[cold]
    fn shed<F>(&self, probability: f64) -> ResponseFuture<F, C> {
        tracing::trace!(
            throttle = self.state.name.as_deref(),
            probability,
            "adaptive throttle shed a call"
        );
        self.state.listeners.emit(|| ThrottleEvent::Shed {
            name: self.state.name.clone(),
            probability,
        });
        let error = ThrottledLocally::new(probability);
        ResponseFuture::shed(match &self.state.name {
            Some(name) => error.with_name(name.clone()),
            None => error,
        })
    }
}
