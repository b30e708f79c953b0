//! The [`RateLimit`] and [`KeyedRateLimit`] services.

use crate::future::ResponseFuture;
use crate::{Admit, AdmitKey, RateLimiter};
use bulwark_core::clock::Instant;
use bulwark_core::error::RateLimited;
use bulwark_core::BoxError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// Admits calls at the limiter's rate; see [`RateLimitLayer`](crate::RateLimitLayer).
///
/// The decision is made in `poll_ready`, before the inner service is asked
/// to be ready: an admitted call holds its token until `call`; a refused
/// one makes `poll_ready` return `Ready(Ok)` at once without polling the
/// inner service, and `call` returns the [`RateLimited`] error, ready at
/// once (`poll_ready` never fails for a policy decision). A token taken by
/// a service made ready and then dropped is spent, as a call would have
/// spent it. A clone starts with no decision.
pub struct RateLimit<S, L = RateLimiter> {
    inner: S,
    limiter: L,
    max_wait: Duration,
    state: Admission,
}

enum Admission {
    Undecided,
    Waiting {
        sleep: Pin<Box<Sleep>>,
        until: Instant,
    },
    Admitted,
    Refused(RateLimited),
}

impl<S, L> RateLimit<S, L> {
    /// Wraps `inner`, failing fast over the limit.
    pub const fn new(inner: S, limiter: L) -> Self {
        RateLimit {
            inner,
            limiter,
            max_wait: Duration::ZERO,
            state: Admission::Undecided,
        }
    }

    /// Lets a call wait for its turn in `poll_ready`, at most `max_wait` in
    /// all (see [`RateLimitLayer::max_wait`](crate::RateLimitLayer::max_wait)).
    pub const fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The limiter.
    pub fn limiter(&self) -> &L {
        &self.limiter
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

impl<S: Clone, L: Clone> Clone for RateLimit<S, L> {
    fn clone(&self) -> Self {
        RateLimit::new(self.inner.clone(), self.limiter.clone()).with_max_wait(self.max_wait)
    }
}

impl<S: fmt::Debug, L: fmt::Debug> fmt::Debug for RateLimit<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl<S, L, Req> Service<Req> for RateLimit<S, L>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    L: Admit,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            match &mut self.state {
                Admission::Admitted => return self.inner.poll_ready(cx).map_err(Into::into),
                Admission::Refused(_) => return Poll::Ready(Ok(())),
                Admission::Waiting { sleep, until } => {
                    ready!(sleep.as_mut().poll(cx));
                    let until = *until;
                    self.decide(Some(until));
                }
                Admission::Undecided => self.decide(None),
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, Admission::Undecided) {
            Admission::Admitted => ResponseFuture::called(self.inner.call(req)),
            Admission::Refused(error) => ResponseFuture::refused(error),
            // Called without `poll_ready` (a caller's bug): decide now,
            // without waiting.
            Admission::Undecided | Admission::Waiting { .. } => match self.limiter.admit() {
                Ok(()) => ResponseFuture::called(self.inner.call(req)),
                Err(error) => ResponseFuture::refused(error),
            },
        }
    }
}

impl<S, L: Admit> RateLimit<S, L> {
    /// Takes a token now, or waits for one (until `until`, set at the first
    /// refusal), or refuses.
    #[inline]
    fn decide(&mut self, until: Option<Instant>) {
        self.state = match self.limiter.admit() {
            Ok(()) => Admission::Admitted,
            Err(error) => self.wait_or_refuse(error, until),
        };
    }

    #[cold]
    fn wait_or_refuse(&self, error: RateLimited, until: Option<Instant>) -> Admission {
        if self.max_wait.is_zero() {
            return Admission::Refused(error);
        }
        let now = Instant::now();
        let until =
            until.unwrap_or_else(|| bulwark_core::clock::saturating_add(now, self.max_wait));
        let turn = bulwark_core::clock::saturating_add(now, error.retry_after());
        if turn > until {
            return Admission::Refused(error);
        }
        Admission::Waiting {
            sleep: Box::pin(tokio::time::sleep_until(turn)),
            until,
        }
    }
}

/// Admits calls at a rate per key; see
/// [`KeyedRateLimitLayer`](crate::KeyedRateLimitLayer).
///
/// The key is only known in `call`, so this one decides there and never
/// waits: `poll_ready` is the inner service's, and a refused call returns
/// the [`RateLimited`] error, ready at once, without calling the inner
/// service.
#[derive(Clone)]
pub struct KeyedRateLimit<S, L, F> {
    inner: S,
    limiter: L,
    key: F,
}

impl<S, L, F> KeyedRateLimit<S, L, F> {
    /// Wraps `inner`, keyed by `key(&request)`.
    pub const fn new(inner: S, limiter: L, key: F) -> Self {
        KeyedRateLimit {
            inner,
            limiter,
            key,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &L {
        &self.limiter
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

impl<S: fmt::Debug, L: fmt::Debug, F> fmt::Debug for KeyedRateLimit<S, L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, L, F, K, Req> Service<Req> for KeyedRateLimit<S, L, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: Fn(&Req) -> K,
    L: AdmitKey<K>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key)(&req);
        match self.limiter.admit_key(&key) {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(error) => ResponseFuture::refused(error),
        }
    }
}
