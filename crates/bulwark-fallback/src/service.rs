//! The [`Fallback`] service.

use crate::future::ResponseFuture;
use crate::source::{Recover, Source};
use crate::trigger::Trigger;
use crate::FallbackEvent;
use bulwark_core::{BoxError, Listeners};
use std::fmt;
use std::task::{Context, Poll};
use tower_service::Service;

/// Replaces failed calls with a fallback response.
///
/// Built by [`FallbackLayer`](crate::FallbackLayer); `P` is the
/// [`Source`] of fallback responses, `T` the [`Trigger`] deciding when to use
/// it. Errors that do not trigger the fallback pass through unchanged (as a
/// `BoxError`); a fallback that fails itself yields a
/// [`FallbackFailed`](crate::FallbackFailed) carrying both errors.
#[derive(Clone)]
pub struct Fallback<S, P, T> {
    inner: S,
    source: P,
    trigger: T,
    listeners: Listeners<FallbackEvent>,
}

impl<S, P, T> Fallback<S, P, T> {
    /// Wraps `inner`: `source` replaces the results `trigger` picks.
    pub const fn new(inner: S, source: P, trigger: T) -> Self {
        Fallback {
            inner,
            source,
            trigger,
            listeners: Listeners::new(),
        }
    }

    pub(crate) fn with_listeners(mut self, listeners: Listeners<FallbackEvent>) -> Self {
        self.listeners = listeners;
        self
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

impl<S: fmt::Debug, P: fmt::Debug, T: fmt::Debug> fmt::Debug for Fallback<S, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("source", &self.source)
            .field("trigger", &self.trigger)
            .finish()
    }
}

impl<S, P, T, Req> Service<Req> for Fallback<S, P, T>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: Source<Req, S::Response>,
    T: Trigger<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        ResponseFuture<S::Future, P::Recover, <P::Recover as Recover<S::Response>>::Future, T>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let recover = self.source.prepare(&req);
        ResponseFuture::new(
            self.inner.call(req),
            recover,
            self.trigger.clone(),
            self.listeners.clone(),
        )
    }
}
