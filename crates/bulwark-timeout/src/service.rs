//! The [`Timeout`] service.

use crate::error::{Elapsed, Limit};
use crate::future::ResponseFuture;
use crate::{TimeoutEvent, TimeoutPolicy};
use bulwark_core::clock::Instant;
use bulwark_core::{BoxError, Listeners};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// Fails requests that take longer than their limit with
/// [`Elapsed`], and optionally also a wait for the
/// inner service's readiness that takes too long.
///
/// Built by [`TimeoutLayer`](crate::TimeoutLayer); see the crate docs for
/// examples and for how placement makes it a per-attempt or a total timeout.
pub struct Timeout<S, P = Duration> {
    inner: S,
    policy: P,
    readiness: Option<Duration>,
    listeners: Listeners<TimeoutEvent>,
    // Per-readiness state, never shared by clones.
    ready_sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    // The readiness limit elapsed: the next call fails. (A flag, not the
    // limit: it is always `readiness`, and the service is cloned per request
    // by some servers, so it is kept small.)
    ready_elapsed: bool,
}

impl<S, P> Timeout<S, P> {
    /// Wraps `inner` with the request limits chosen by `policy` (a
    /// [`Duration`] for a fixed limit), not covering readiness.
    pub const fn new(inner: S, policy: P) -> Self {
        Timeout {
            inner,
            policy,
            readiness: None,
            listeners: Listeners::new(),
            ready_sleep: None,
            waiting: false,
            ready_elapsed: false,
        }
    }

    pub(crate) fn with_parts(
        inner: S,
        policy: P,
        readiness: Option<Duration>,
        listeners: Listeners<TimeoutEvent>,
    ) -> Self {
        Timeout {
            readiness,
            listeners,
            ..Timeout::new(inner, policy)
        }
    }

    /// Also limits how long `poll_ready` may wait for the inner service.
    ///
    /// When that limit elapses, `poll_ready` returns `Ready(Ok(()))` and the
    /// next `call` fails at once with an [`Elapsed`] for
    /// [`Limit::Readiness`] without calling the inner service (`poll_ready`
    /// keeps `Err` for a dead service, as tower's contract asks).
    pub fn with_readiness_timeout(mut self, limit: Duration) -> Self {
        self.readiness = Some(limit);
        self
    }

    /// The readiness limit, if readiness is covered.
    pub const fn readiness_timeout(&self) -> Option<Duration> {
        self.readiness
    }

    /// The policy choosing each request's limit.
    pub const fn policy(&self) -> &P {
        &self.policy
    }

    /// A reference to the inner service.
    pub const fn get_ref(&self) -> &S {
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

impl<S: Clone, P: Clone> Clone for Timeout<S, P> {
    /// A clone shares nothing per-readiness: it starts with no readiness wait
    /// under way.
    fn clone(&self) -> Self {
        Timeout::with_parts(
            self.inner.clone(),
            self.policy.clone(),
            self.readiness,
            self.listeners.clone(),
        )
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Timeout<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .field("readiness", &self.readiness)
            .field("waiting", &self.waiting)
            .finish()
    }
}

impl<S, P, Req> Service<Req> for Timeout<S, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: TimeoutPolicy<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_elapsed {
            // Decided already: the next call fails.
            return Poll::Ready(Ok(()));
        }
        if let Poll::Ready(result) = self.inner.poll_ready(cx) {
            self.waiting = false;
            return Poll::Ready(result.map_err(Into::into));
        }
        let Some(limit) = self.readiness else {
            return Poll::Pending;
        };
        // Only a service that is not ready at once pays for a timer; the box
        // is reused by later waits.
        if !self.waiting {
            // A limit too long for a deadline to be represented never fires.
            let Some(deadline) = Instant::now().checked_add(limit) else {
                return Poll::Pending;
            };
            self.waiting = true;
            match &mut self.ready_sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.ready_sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let sleep = self.ready_sleep.as_mut().expect("set above");
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting = false;
                self.ready_elapsed = true;
                tracing::debug!(limit = ?limit, "service not ready in time");
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if let (true, Some(limit)) = (self.ready_elapsed, self.readiness) {
            self.ready_elapsed = false;
            let elapsed = Elapsed::new(Limit::Readiness, limit);
            self.listeners
                .emit(|| TimeoutEvent::Elapsed(elapsed.clone()));
            return ResponseFuture::failed(elapsed);
        }
        match self.policy.timeout(&req) {
            Some(limit) => {
                ResponseFuture::limited(self.inner.call(req), limit, self.listeners.clone())
            }
            None => ResponseFuture::unlimited(self.inner.call(req)),
        }
    }
}
