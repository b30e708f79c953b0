//! [`Retry`]: the service made by [`RetryLayer`](crate::RetryLayer).

use crate::budget::RetryBudget;
use crate::event::{GiveUpReason, RetryEvent};
use crate::future::ResponseFuture;
use crate::layer::{Config, RetryLayer};
use crate::policy::{Pushback, PushbackHint};
use crate::replay::{CloneReplay, Replay};
use bulwark_core::backoff::{Delays, Random};
use bulwark_core::clock::Instant;
use bulwark_core::event::Listeners;
use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// What every clone of one [`Retry`] service shares.
pub(crate) struct Shared<C, P, R> {
    pub(crate) config: Config,
    pub(crate) classifier: C,
    pub(crate) pushback: P,
    pub(crate) replay: R,
    pub(crate) budget: RetryBudget,
    /// The seeded root of every call's jitter, when seeded.
    pub(crate) random: Option<Mutex<Random>>,
    pub(crate) listeners: Listeners<RetryEvent>,
}

/// Everything the decision after one attempt needs to know about the call.
pub(crate) struct CallState<'a> {
    pub(crate) attempts: u32,
    pub(crate) has_copy: bool,
    pub(crate) delays: &'a mut Option<Delays>,
    pub(crate) started: Option<Instant>,
}

impl<C, P, R> Shared<C, P, R> {
    fn random(&self) -> Random {
        match &self.random {
            Some(root) => root.lock().fork(),
            None => Random::new(),
        }
    }

    /// After an attempt ended as `outcome`: the delay before the next one, or
    /// `None` to return `result` as it is.
    pub(crate) fn decide<Res>(
        &self,
        result: &Result<Res, BoxError>,
        outcome: Outcome,
        call: CallState<'_>,
    ) -> Option<Duration>
    where
        P: Pushback<Res>,
    {
        let attempts = call.attempts;
        if !self.config.retry_on.contains(outcome) {
            if outcome == Outcome::Success {
                if attempts > 1 {
                    tracing::debug!(attempts, "request succeeded after retries");
                }
                self.listeners.emit(|| RetryEvent::Succeeded { attempts });
            } else {
                self.listeners
                    .emit(|| RetryEvent::NotRetried { attempts, outcome });
            }
            return None;
        }
        let hint = self.pushback.pushback(result);
        let give_up = |reason: GiveUpReason| {
            tracing::debug!(attempts, %outcome, %reason, "not retrying");
            self.listeners.emit(|| RetryEvent::GaveUp {
                attempts,
                outcome,
                reason,
            });
            None
        };
        if hint == PushbackHint::Stop {
            return give_up(GiveUpReason::Pushback);
        }
        if attempts >= self.config.max_attempts {
            return give_up(GiveUpReason::AttemptsExhausted);
        }
        if !call.has_copy {
            return give_up(GiveUpReason::NotReplayable);
        }
        let (delay, pushback) = match hint {
            PushbackHint::After(d) => (d.min(self.config.max_pushback), true),
            _ => {
                let delays = call
                    .delays
                    .get_or_insert_with(|| self.config.backoff.delays(self.random()));
                (delays.next_delay(), false)
            }
        };
        if let (Some(started), Some(deadline)) = (call.started, self.config.deadline) {
            let ends = Instant::now().checked_add(delay);
            let limit = started.checked_add(deadline);
            if matches!((ends, limit), (Some(e), Some(l)) if e > l) || ends.is_none() {
                return give_up(GiveUpReason::Deadline);
            }
        }
        if !self.budget.withdraw() {
            return give_up(GiveUpReason::BudgetExhausted);
        }
        let attempt = attempts + 1;
        tracing::debug!(attempt, ?delay, %outcome, pushback, "retry scheduled");
        self.listeners.emit(|| RetryEvent::RetryScheduled {
            attempt,
            delay,
            outcome,
            pushback,
        });
        Some(delay)
    }
}

/// Retries the calls of an inner service (see [`RetryLayer`]).
///
/// Clones share the layer's budget, classifier and hooks; each clone polls
/// its own inner service for readiness. The inner service must be `Clone`:
/// every call's future owns a clone, which it makes ready again before every
/// retry.
pub struct Retry<S, C = DefaultClassifier, P = (), R = CloneReplay> {
    inner: S,
    shared: Arc<Shared<C, P, R>>,
}

impl<S> Retry<S> {
    /// Wraps `inner` with the default [`RetryLayer`].
    pub fn new(inner: S) -> Self {
        Retry::from_shared(inner, RetryLayer::new().shared())
    }
}

impl<S, C, P, R> Retry<S, C, P, R> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C, P, R>>) -> Self {
        Retry { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The budget this service draws on.
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }
}

impl<S, C, P, R, Req> Service<Req> for Retry<S, C, P, R>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    P: Pushback<S::Response>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, P, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The ready service makes this attempt and goes into the future,
        // which makes it ready again before any retry; this service keeps a
        // fresh clone that must be polled ready before its next call.
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let shared = &self.shared;
        let copy = if shared.config.max_attempts > 1 {
            shared.replay.replay(&request)
        } else {
            None
        };
        shared.budget.deposit();
        let started = shared.config.deadline.map(|_| Instant::now());
        let future = service.call(request);
        ResponseFuture::new(future, service, copy, self.shared.clone(), started)
    }
}

impl<S: Clone, C, P, R> Clone for Retry<S, C, P, R> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C, P, R> fmt::Debug for Retry<S, C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("max_attempts", &self.shared.config.max_attempts)
            .field("budget", &self.shared.budget)
            .finish()
    }
}
