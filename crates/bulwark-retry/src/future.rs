//! [`ResponseFuture`]: one call through [`Retry`](crate::Retry), all its
//! attempts included.

use crate::error::RetryRejected;
use crate::event::GiveUpReason;
use crate::policy::{Pushback, RetryIf};
use crate::replay::Replay;
use crate::service::{CallState, Local};
use bulwark_core::backoff::Delays;
use bulwark_core::clock::Instant;
use bulwark_core::{BoxError, Classify, Outcome};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

pin_project! {
    /// The future of [`Retry`](crate::Retry): runs attempts until one is not
    /// retried, then returns its result as it was (see
    /// [`RetryRejected`] for the one exception).
    ///
    /// While a retry waits (for its delay, then for the inner service to be
    /// ready), the previous result is kept: if the retry cannot be sent when
    /// its time comes (the budget is empty, the deadline is too close), that
    /// result is returned. The budget is drawn on only when the retry is
    /// sent: dropping the future before then costs the budget nothing.
    ///
    /// What only a retry needs (its timer, the service clone it is sent
    /// with, the kept result) is boxed and made when the first retry is
    /// scheduled: a call answered at the first attempt carries none of it.
    pub struct ResponseFuture<S, Req, C, P, R, D, I>
    where
        S: Service<Req>,
    {
        // The attempt in flight; `None` while a retry waits.
        #[pin]
        future: Option<S::Future>,
        // The state of the retries, once one was scheduled.
        retrying: Option<Pin<Box<Retrying<S, S::Response>>>>,
        // The copy of the request for the next attempt.
        request: Option<Req>,
        shared: Arc<Local<S, C, P, R, D, I>>,
        // Whether the request may be retried, and the call's deadline.
        // (The attempts made are counted in `retrying`: one until then.)
        terms: Terms,
    }
}

/// Whether the retry predicate lets a call's request be retried and, if so,
/// the call's deadline: one field, as the future is carried inside every
/// outer layer's (a request that may not be retried needs no deadline).
#[derive(Debug, Clone, Copy)]
enum Terms {
    NotRetryable,
    Retryable(Option<Instant>),
}

impl Terms {
    #[inline]
    fn retryable(self) -> bool {
        matches!(self, Terms::Retryable(_))
    }

    #[inline]
    fn deadline(self) -> Option<Instant> {
        match self {
            Terms::Retryable(deadline) => deadline,
            Terms::NotRetryable => None,
        }
    }
}

pin_project! {
    /// What a call that retries carries besides its attempt.
    struct Retrying<S, Res> {
        // The attempts made so far (the first included).
        attempts: u32,
        // Waiting out the delay before the next attempt (`waiting`), or,
        // while waiting for the service to be ready, the limit that fires
        // when the deadline leaves no time to start it.
        #[pin]
        timer: Option<Sleep>,
        waiting: bool,
        // The clone of the inner service retries are sent with.
        service: Option<S>,
        delays: Option<Delays>,
        // The last result that came from the upstream (not a local
        // rejection), kept while the next attempt is prepared and made.
        last: Option<Result<Res, BoxError>>,
        // A local rejection that came after `last` (when rejections are
        // retried).
        rejected: Option<BoxError>,
        // The outcome of the latest attempt.
        last_outcome: Outcome,
    }
}

impl<S, Req, C, P, R, D, I> ResponseFuture<S, Req, C, P, R, D, I>
where
    S: Service<Req>,
{
    #[inline]
    pub(crate) fn new(
        future: S::Future,
        request: Option<Req>,
        retryable: bool,
        shared: Arc<Local<S, C, P, R, D, I>>,
        deadline: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            future: Some(future),
            retrying: None,
            request,
            shared,
            terms: match retryable {
                true => Terms::Retryable(deadline),
                false => Terms::NotRetryable,
            },
        }
    }
}

/// The result a call ends with: `result` itself, unless it is a local
/// rejection that came after an upstream answer (`last`); then that answer
/// if it was a response, or a [`RetryRejected`] carrying both.
fn conclude<Res>(
    result: Result<Res, BoxError>,
    outcome: Outcome,
    last: Option<Result<Res, BoxError>>,
    attempts: u32,
) -> Result<Res, BoxError> {
    match (result, last) {
        (Err(rejection), Some(last)) if outcome == Outcome::Rejected => match last {
            Ok(response) => Ok(response),
            Err(upstream) => Err(Box::new(RetryRejected::new(attempts, rejection, upstream))),
        },
        (result, _) => result,
    }
}

impl<S, Req, C, P, R, D, I> Future for ResponseFuture<S, Req, C, P, R, D, I>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    P: Pushback<S::Response>,
    R: Replay<Req>,
    I: RetryIf<Req, S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(future) = this.future.as_mut().as_pin_mut() {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                this.future.set(None);
                let shared = &***this.shared;
                let outcome = shared.classifier.classify(&result);
                shared.budget.record(outcome);
                let mut delays = this
                    .retrying
                    .as_mut()
                    .and_then(|r| r.as_mut().project().delays.take());
                let attempts = this.retrying.as_ref().map_or(1, |r| r.attempts);
                let call = CallState {
                    attempts,
                    copy: this.request.as_ref(),
                    retryable: this.terms.retryable(),
                    delays: &mut delays,
                    deadline: this.terms.deadline(),
                };
                let Some(delay) = shared.decide(&result, outcome, call) else {
                    let last = this
                        .retrying
                        .as_mut()
                        .and_then(|r| r.as_mut().project().last.take());
                    return Poll::Ready(conclude(result, outcome, last, attempts));
                };
                let retrying = this.retrying.get_or_insert_with(|| {
                    Box::pin(Retrying {
                        attempts,
                        timer: None,
                        waiting: false,
                        service: None,
                        delays: None,
                        last: None,
                        rejected: None,
                        last_outcome: outcome,
                    })
                });
                let mut r = retrying.as_mut().project();
                *r.delays = delays;
                *r.last_outcome = outcome;
                match result {
                    Err(rejection) if outcome == Outcome::Rejected => {
                        *r.rejected = Some(rejection);
                    }
                    result => {
                        *r.last = Some(result);
                        *r.rejected = None;
                    }
                }
                if delay.is_zero() {
                    *r.waiting = false;
                    r.timer.set(None);
                } else {
                    *r.waiting = true;
                    r.timer.set(Some(tokio::time::sleep(delay)));
                }
            }
            // A retry waits: for its delay, then for the service.
            let shared = &***this.shared;
            let Some(retrying) = this.retrying.as_mut() else {
                return Poll::Ready(Err("retry future polled after completion".into()));
            };
            let mut r = retrying.as_mut().project();
            if *r.waiting {
                if let Some(sleep) = r.timer.as_mut().as_pin_mut() {
                    ready!(sleep.poll(cx));
                }
                *r.waiting = false;
                r.timer.set(None);
            }
            // Readiness is polled again before every attempt, but not
            // waited for past the last moment an attempt may start.
            let mut reason = None;
            let service = match r.service {
                Some(service) => service,
                None => match this.shared.attempt_service() {
                    Some(service) => r.service.insert(service),
                    None => return Poll::Ready(Err("retry without a service to send it".into())),
                },
            };
            match service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    let Some(deadline) = this.terms.deadline() else {
                        return Poll::Pending;
                    };
                    if r.timer.is_none() {
                        let start_by = deadline
                            .checked_sub(shared.config.min_time_left)
                            .unwrap_or(deadline);
                        r.timer.set(Some(tokio::time::sleep_until(start_by)));
                    }
                    let fired = r
                        .timer
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|s| s.poll(cx).is_ready());
                    if !fired {
                        return Poll::Pending;
                    }
                    reason = Some(GiveUpReason::Deadline);
                }
            }
            if reason.is_none() {
                reason = match this.terms.deadline() {
                    Some(deadline) if !shared.in_time(Duration::ZERO, deadline) => {
                        Some(GiveUpReason::Deadline)
                    }
                    // The retry is paid for now that it is sent.
                    _ if !shared.budget.withdraw() => Some(GiveUpReason::BudgetExhausted),
                    _ => None,
                };
            }
            let request = match (reason, this.request.take()) {
                (None, Some(request)) => request,
                (reason, _) => {
                    let reason = reason.unwrap_or(GiveUpReason::NotReplayable);
                    let attempts = *r.attempts;
                    shared.gave_up(attempts, *r.last_outcome, reason);
                    return Poll::Ready(match (r.rejected.take(), r.last.take()) {
                        (Some(rejection), last) => {
                            conclude(Err(rejection), Outcome::Rejected, last, attempts)
                        }
                        (None, Some(result)) => result,
                        // Unreachable: a retry is scheduled only
                        // after a result was kept.
                        (None, None) => Err("retry ended without a result".into()),
                    });
                }
            };
            *r.attempts += 1;
            if *r.attempts < shared.config.max_attempts {
                *this.request = shared.replay.replay(&request);
            }
            // The timer of this wait is done with; the next wait sets its own.
            r.timer.set(None);
            let future = service.call(request);
            this.future.set(Some(future));
        }
    }
}

impl<S, Req, C, P, R, D, I> fmt::Debug for ResponseFuture<S, Req, C, P, R, D, I>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.future, &self.retrying) {
            (Some(_), _) => "called",
            (None, Some(r)) if r.waiting => "waiting",
            (None, _) => "ready",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field(
                "attempts",
                &self.retrying.as_ref().map_or(1, |r| r.attempts),
            )
            .finish()
    }
}
