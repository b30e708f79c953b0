//! [`ResponseFuture`] of [`Hedge`](super::Hedge).

use super::HedgeShared;
use crate::event::{GiveUpReason, RetryEvent};
use crate::replay::Replay;
use bulwark_core::clock::{self, Instant};
use bulwark_core::{BoxError, Classify};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Sleep;
use tower_service::Service;

pin_project! {
    /// The future of [`Hedge`](super::Hedge): the original attempt and any
    /// hedges; resolves with the first acceptable answer and drops the rest.
    pub struct ResponseFuture<S, Req, C, R>
    where
        S: Service<Req>,
    {
        #[pin]
        first: First<S::Future>,
        // Hedges are rare: they are boxed, the original attempt is not.
        hedges: Vec<Attempt<S::Future>>,
        #[pin]
        timer: Timer,
        // The budget was drawn for a hedge that waits for readiness.
        budget_taken: bool,
        service: S,
        request: Option<Req>,
        shared: Arc<HedgeShared<C, R>>,
        sent: u32,
        start: Instant,
        last: Option<Result<S::Response, BoxError>>,
    }
}

pin_project! {
    #[project = FirstProj]
    enum First<F> {
        Running { #[pin] future: F },
        Done,
    }
}

pin_project! {
    #[project = TimerProj]
    enum Timer {
        Armed { #[pin] sleep: Sleep },
        Off,
    }
}

struct Attempt<F> {
    number: u32,
    sent_at: Instant,
    future: Pin<Box<F>>,
}

impl<S, Req, C, R> ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        request: Option<Req>,
        shared: Arc<HedgeShared<C, R>>,
        start: Instant,
    ) -> Self {
        let timer = if shared.max_hedges > 0 {
            Timer::Armed {
                sleep: tokio::time::sleep_until(clock::saturating_add(start, shared.delay())),
            }
        } else {
            Timer::Off
        };
        ResponseFuture {
            first: First::Running { future },
            hedges: Vec::new(),
            timer,
            budget_taken: false,
            service,
            request,
            shared,
            sent: 1,
            start,
            last: None,
        }
    }
}

/// Judges a finished attempt: `Ok` when it wins, `Err` (holding the result)
/// when it is not acceptable.
fn settle<C, R, Res, E>(
    shared: &HedgeShared<C, R>,
    result: Result<Res, E>,
    number: u32,
    sent_at: Instant,
    sent: u32,
) -> Result<Result<Res, BoxError>, Result<Res, BoxError>>
where
    C: Classify<Res>,
    E: Into<BoxError>,
{
    let result = result.map_err(Into::into);
    let outcome = shared.classifier.classify(&result);
    shared.budget.record(outcome);
    if shared.retry_on.contains(outcome) {
        return Err(result);
    }
    if let Some(latencies) = &shared.latencies {
        latencies.record(Instant::now().saturating_duration_since(sent_at));
    }
    if number > 1 {
        tracing::debug!(attempt = number, attempts = sent, "hedge won");
        shared.listeners.emit(|| RetryEvent::HedgeWon {
            attempt: number,
            attempts: sent,
        });
    }
    Ok(result)
}

impl<S, Req, C, R> Future for ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    R: Replay<Req>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared = &**this.shared;
        loop {
            if let FirstProj::Running { future } = this.first.as_mut().project() {
                if let Poll::Ready(result) = future.poll(cx) {
                    this.first.set(First::Done);
                    match settle(shared, result, 1, *this.start, *this.sent) {
                        Ok(won) => {
                            this.hedges.clear();
                            return Poll::Ready(won);
                        }
                        Err(lost) => *this.last = Some(lost),
                    }
                }
            }
            let mut i = 0;
            while i < this.hedges.len() {
                let attempt = &mut this.hedges[i];
                if let Poll::Ready(result) = attempt.future.as_mut().poll(cx) {
                    let (number, sent_at) = (attempt.number, attempt.sent_at);
                    drop(this.hedges.swap_remove(i));
                    match settle(shared, result, number, sent_at, *this.sent) {
                        Ok(won) => {
                            // Cancel every other attempt.
                            this.hedges.clear();
                            this.first.set(First::Done);
                            return Poll::Ready(won);
                        }
                        Err(lost) => *this.last = Some(lost),
                    }
                } else {
                    i += 1;
                }
            }
            let in_flight = matches!(*this.first, First::Running { .. }) || !this.hedges.is_empty();
            if !in_flight {
                // Hedges are sent only while an attempt is in flight.
                return Poll::Ready(this.last.take().expect("an attempt finished"));
            }
            let TimerProj::Armed { sleep } = this.timer.as_mut().project() else {
                return Poll::Pending;
            };
            if sleep.poll(cx).is_pending() {
                return Poll::Pending;
            }
            let number = *this.sent + 1;
            let skip = |reason: GiveUpReason| {
                tracing::debug!(attempt = number, %reason, "hedge skipped");
                shared.listeners.emit(|| RetryEvent::HedgeSkipped {
                    attempt: number,
                    reason,
                });
            };
            if this.request.is_none() {
                skip(GiveUpReason::NotReplayable);
                this.timer.set(Timer::Off);
                return Poll::Pending;
            }
            if !*this.budget_taken {
                if !shared.budget.withdraw() {
                    skip(GiveUpReason::BudgetExhausted);
                    this.timer.set(Timer::Off);
                    return Poll::Pending;
                }
                *this.budget_taken = true;
            }
            // Readiness is polled before every hedge.
            match this.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    // The service is dead; let the attempts in flight finish.
                    this.timer.set(Timer::Off);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {}
            }
            *this.budget_taken = false;
            let request = this.request.take().expect("checked above");
            *this.sent = number;
            let more = number <= shared.max_hedges;
            if more {
                *this.request = shared.replay.replay(&request);
            }
            let now = Instant::now();
            let after = now.saturating_duration_since(*this.start);
            tracing::debug!(attempt = number, ?after, "hedge sent");
            shared.listeners.emit(|| RetryEvent::HedgeSent {
                attempt: number,
                after,
            });
            this.hedges.push(Attempt {
                number,
                sent_at: now,
                future: Box::pin(this.service.call(request)),
            });
            if more {
                this.timer.set(Timer::Armed {
                    sleep: tokio::time::sleep_until(clock::saturating_add(now, shared.delay())),
                });
            } else {
                this.timer.set(Timer::Off);
            }
        }
    }
}

impl<S, Req, C, R> fmt::Debug for ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("sent", &self.sent)
            .field("in_flight_hedges", &self.hedges.len())
            .finish()
    }
}
