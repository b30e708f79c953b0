//! [`Retry`]: the service made by [`RetryLayer`](crate::RetryLayer).

use crate::budget::RetryBudget;
use crate::event::{GiveUpReason, RetryEvent};
use crate::future::ResponseFuture;
use crate::layer::{Config, RetryLayer};
use crate::policy::{Pushback, PushbackHint, RequestDeadline, RetryIf};
use crate::replay::{CloneReplay, Replay};
use bulwark_core::backoff::{Delays, Random};
use bulwark_core::clock::Instant;
use bulwark_core::event::Listeners;
use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};
use parking_lot::Mutex;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// What every clone of one [`Retry`] service shares.
pub(crate) struct Shared<C, P, R, D, I> {
    pub(crate) config: Config,
    pub(crate) classifier: C,
    pub(crate) pushback: P,
    pub(crate) replay: R,
    pub(crate) deadline_from: D,
    pub(crate) retry_if: I,
    pub(crate) budget: RetryBudget,
    /// The seeded root of every call's jitter, when seeded.
    pub(crate) random: Option<Mutex<Random>>,
    pub(crate) listeners: Listeners<RetryEvent>,
}

/// What one [`Retry`] service and its clones share: the layer's settings,
/// and the inner service that retries are made with.
///
/// Every call's future holds this (one reference count); it does not own a
/// clone of the inner service: a retry, the rare case, clones one from the
/// template kept here (a clone of the inner service, made on the first call
/// that may be retried).
pub(crate) struct Local<S, C, P, R, D, I> {
    pub(crate) shared: Shared<C, P, R, D, I>,
    template: OnceLock<Mutex<S>>,
}

impl<S, C, P, R, D, I> Deref for Local<S, C, P, R, D, I> {
    type Target = Shared<C, P, R, D, I>;

    #[inline]
    fn deref(&self) -> &Self::Target {
        &self.shared
    }
}

impl<S: Clone, C, P, R, D, I> Local<S, C, P, R, D, I> {
    /// A fresh clone of the inner service for a retry (`None` only if no
    /// call that may be retried was made, which cannot schedule a retry).
    pub(crate) fn attempt_service(&self) -> Option<S> {
        self.template.get().map(|t| t.lock().clone())
    }
}

/// Everything the decision after one attempt needs to know about the call.
pub(crate) struct CallState<'a, Req> {
    pub(crate) attempts: u32,
    /// The copy of the request for the next attempt, if one was made.
    pub(crate) copy: Option<&'a Req>,
    /// Whether the retry predicate let this request be retried at all.
    pub(crate) retryable: bool,
    pub(crate) delays: &'a mut Option<Delays>,
    pub(crate) deadline: Option<Instant>,
}

impl<C, P, R, D, I> Shared<C, P, R, D, I> {
    fn random(&self) -> Random {
        match &self.random {
            Some(root) => root.lock().fork(),
            None => Random::new(),
        }
    }

    /// The call's deadline: the earlier of the layer's own (counted from
    /// now) and the one the request carries. `None`: no limit (also when
    /// the layer's would overflow the clock).
    pub(crate) fn call_deadline<Req>(&self, request: &Req) -> Option<Instant>
    where
        D: RequestDeadline<Req>,
    {
        let own = self
            .config
            .deadline
            .and_then(|d| Instant::now().checked_add(d));
        match (own, self.deadline_from.deadline(request)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether an attempt started `delay` from now would leave at least
    /// `min_time_left` before `deadline` (saturating: a delay past the end
    /// of the clock never does).
    pub(crate) fn in_time(&self, delay: Duration, deadline: Instant) -> bool {
        Instant::now()
            .checked_add(delay)
            .and_then(|t| t.checked_add(self.config.min_time_left))
            .is_some_and(|start_by| start_by <= deadline)
    }

    /// Reports that the call ends with an outcome that would have been
    /// retried.
    pub(crate) fn gave_up(&self, attempts: u32, outcome: Outcome, reason: GiveUpReason) {
        tracing::debug!(attempts, %outcome, %reason, "not retrying");
        self.listeners.emit(|| RetryEvent::GaveUp {
            attempts,
            outcome,
            reason,
        });
    }

    fn not_retried(&self, attempts: u32, outcome: Outcome) {
        if outcome == Outcome::Success {
            if attempts > 1 {
                tracing::debug!(attempts, "request succeeded after retries");
            }
            self.listeners.emit(|| RetryEvent::Succeeded { attempts });
        } else {
            self.listeners
                .emit(|| RetryEvent::NotRetried { attempts, outcome });
        }
    }

    /// After an attempt ended as `outcome`: the delay before the next one, or
    /// `None` to end the call with `result`.
    ///
    /// Nothing is taken from the budget here: only a peek, so that a call
    /// whose retry the budget would refuse does not wait for nothing. The
    /// retry is paid for when it is sent.
    pub(crate) fn decide<Req, Res>(
        &self,
        result: &Result<Res, BoxError>,
        outcome: Outcome,
        call: CallState<'_, Req>,
    ) -> Option<Duration>
    where
        P: Pushback<Res>,
        I: RetryIf<Req, Res>,
    {
        let attempts = call.attempts;
        if !self.config.retry_on.contains(outcome) || !call.retryable {
            if outcome == Outcome::Rejected && attempts > 1 {
                // A retry, refused below: the call gives up on the failure
                // that asked for it.
                self.gave_up(attempts, outcome, GiveUpReason::Rejected);
            } else {
                self.not_retried(attempts, outcome);
            }
            return None;
        }
        let hint = self.pushback.pushback(result);
        if hint == PushbackHint::Stop {
            self.gave_up(attempts, outcome, GiveUpReason::Pushback);
            return None;
        }
        if attempts >= self.config.max_attempts {
            self.gave_up(attempts, outcome, GiveUpReason::AttemptsExhausted);
            return None;
        }
        let Some(copy) = call.copy else {
            self.gave_up(attempts, outcome, GiveUpReason::NotReplayable);
            return None;
        };
        if !self.retry_if.retry(copy, result) {
            self.not_retried(attempts, outcome);
            return None;
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
        if let Some(deadline) = call.deadline {
            if !self.in_time(delay, deadline) {
                self.gave_up(attempts, outcome, GiveUpReason::Deadline);
                return None;
            }
        }
        if !self.budget.would_allow() {
            self.gave_up(attempts, outcome, GiveUpReason::BudgetExhausted);
            return None;
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
/// the first attempt is made with this service's own (ready) inner service;
/// a retry is made with a clone of it, which the call's future makes ready
/// before every retry.
pub struct Retry<S, C = DefaultClassifier, P = (), R = CloneReplay, D = (), I = ()> {
    inner: S,
    shared: Arc<Local<S, C, P, R, D, I>>,
}

impl<S> Retry<S> {
    /// Wraps `inner` with the default [`RetryLayer`].
    pub fn new(inner: S) -> Self {
        Retry::from_shared(inner, RetryLayer::new().shared())
    }
}

impl<S, C, P, R, D, I> Retry<S, C, P, R, D, I> {
    pub(crate) fn from_shared(inner: S, shared: Shared<C, P, R, D, I>) -> Self {
        Retry {
            inner,
            shared: Arc::new(Local {
                shared,
                template: OnceLock::new(),
            }),
        }
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

impl<S, C, P, R, D, I, Req> Service<Req> for Retry<S, C, P, R, D, I>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    P: Pushback<S::Response>,
    R: Replay<Req>,
    D: RequestDeadline<Req>,
    I: RetryIf<Req, S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, P, R, D, I>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // The ready inner service makes the first attempt; it must be
        // polled ready again before this service's next call, as any.
        let shared = &self.shared;
        let may_retry = shared.config.max_attempts > 1;
        // Asked before any copy is made, so a request that may not be
        // retried is never copied.
        let retryable = !may_retry || shared.retry_if.may_retry(&request);
        let copy = if may_retry && retryable {
            shared.replay.replay(&request)
        } else {
            None
        };
        // Only a call that can retry needs its deadline (and a clock read),
        // and the template its retries are cloned from.
        let deadline = match copy {
            Some(_) => {
                shared
                    .template
                    .get_or_init(|| Mutex::new(self.inner.clone()));
                shared.call_deadline(&request)
            }
            None => None,
        };
        shared.budget.deposit();
        let future = self.inner.call(request);
        ResponseFuture::new(future, copy, retryable, self.shared.clone(), deadline)
    }
}

impl<S: Clone, C, P, R, D, I> Clone for Retry<S, C, P, R, D, I> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C, P, R, D, I> fmt::Debug for Retry<S, C, P, R, D, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("max_attempts", &self.shared.config.max_attempts)
            .field("budget", &self.shared.budget)
            .finish()
    }
}
