//! [`ResponseFuture`]: one call through [`Retry`](crate::Retry), all its
//! attempts included.

use crate::error::RetryRejected;
use crate::event::GiveUpReason;
use crate::policy::{Pushback, RetryIf};
use crate::replay::Replay;
use crate::service::{CallState, Shared};
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
    pub struct ResponseFuture<S, Req, C, P, R, D, I>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        // The copy of the request for the next attempt.
        request: Option<Req>,
        shared: Arc<Shared<C, P, R, D, I>>,
        attempts: u32,
        // Whether the retry predicate lets this request be retried.
        retryable: bool,
        delays: Option<Delays>,
        deadline: Option<Instant>,
        // The last result that came from the upstream (not a local
        // rejection), kept while the next attempt is prepared and made.
        last: Option<Result<S::Response, BoxError>>,
        // A local rejection that came after `last` (when rejections are
        // retried).
        rejected: Option<BoxError>,
        // The outcome of the latest attempt.
        last_outcome: Outcome,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // Waiting out the delay before the next attempt.
        Waiting { #[pin] sleep: Sleep },
        // Waiting for the service to be ready for the next attempt; `limit`
        // fires when the deadline leaves no time to start it.
        Ready { #[pin] limit: Option<Sleep> },
    }
}

impl<S, Req, C, P, R, D, I> ResponseFuture<S, Req, C, P, R, D, I>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        request: Option<Req>,
        retryable: bool,
        shared: Arc<Shared<C, P, R, D, I>>,
        deadline: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            service,
            request,
            shared,
            attempts: 1,
            retryable,
            delays: None,
            deadline,
            last: None,
            rejected: None,
            last_outcome: Outcome::Success,
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
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    P: Pushback<S::Response>,
    R: Replay<Req>,
    I: RetryIf<Req, S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    let shared = &**this.shared;
                    let outcome = shared.classifier.classify(&result);
                    shared.budget.record(outcome);
                    let call = CallState {
                        attempts: *this.attempts,
                        copy: this.request.as_ref(),
                        retryable: *this.retryable,
                        delays: this.delays,
                        deadline: *this.deadline,
                    };
                    let Some(delay) = shared.decide(&result, outcome, call) else {
                        let attempts = *this.attempts;
                        return Poll::Ready(conclude(result, outcome, this.last.take(), attempts));
                    };
                    *this.last_outcome = outcome;
                    match result {
                        Err(rejection) if outcome == Outcome::Rejected => {
                            *this.rejected = Some(rejection);
                        }
                        result => {
                            *this.last = Some(result);
                            *this.rejected = None;
                        }
                    }
                    if delay.is_zero() {
                        this.state.set(State::Ready { limit: None });
                    } else {
                        this.state.set(State::Waiting {
                            sleep: tokio::time::sleep(delay),
                        });
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready { limit: None });
                }
                StateProj::Ready { mut limit } => {
                    let shared = &**this.shared;
                    // Readiness is polled again before every attempt, but not
                    // waited for past the last moment an attempt may start.
                    let mut reason = None;
                    match this.service.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        Poll::Pending => {
                            let Some(deadline) = *this.deadline else {
                                return Poll::Pending;
                            };
                            if limit.is_none() {
                                let start_by = deadline
                                    .checked_sub(shared.config.min_time_left)
                                    .unwrap_or(deadline);
                                limit.set(Some(tokio::time::sleep_until(start_by)));
                            }
                            let fired = limit.as_pin_mut().is_some_and(|s| s.poll(cx).is_ready());
                            if !fired {
                                return Poll::Pending;
                            }
                            reason = Some(GiveUpReason::Deadline);
                        }
                    }
                    if reason.is_none() {
                        reason = match *this.deadline {
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
                            let attempts = *this.attempts;
                            shared.gave_up(attempts, *this.last_outcome, reason);
                            return Poll::Ready(match (this.rejected.take(), this.last.take()) {
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
                    *this.attempts += 1;
                    if *this.attempts < shared.config.max_attempts {
                        *this.request = shared.replay.replay(&request);
                    }
                    let future = this.service.call(request);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

impl<S, Req, C, P, R, D, I> fmt::Debug for ResponseFuture<S, Req, C, P, R, D, I>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting",
            State::Ready { .. } => "ready",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.attempts)
            .finish()
    }
}
