//! The [`ResponseFuture`] of the [`Timeout`](crate::Timeout) service.

use crate::error::{Elapsed, Limit};
use crate::TimeoutEvent;
use bulwark_core::clock::Instant;
use bulwark_core::{BoxError, Listeners};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

pin_project! {
    /// The response future of [`Timeout`](crate::Timeout): the inner future
    /// raced against the request's limit.
    ///
    /// The timer lives inside the future (no allocation per call).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        response: Inner<F>,
        // The limit, its deadline (counted from `call`) and, once a poll
        // found the response not ready, the timer registered for it: a
        // response ready at once never pays for a timer.
        #[pin]
        timer: Timer,
        listeners: Listeners<TimeoutEvent>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<F> {
        Response {
            #[pin]
            future: F,
        },
        Failed {
            error: Option<Elapsed>,
        },
    }
}

pin_project! {
    #[project = TimerProj]
    #[derive(Debug)]
    enum Timer {
        // No limit for this request.
        Unlimited,
        // The limit (in nanoseconds, saturating: a limit past 584 years
        // never fires, so is never reported) and its deadline; no timer
        // registered yet.
        Armed { limit: u64, deadline: Instant },
        // The timer, registered (its deadline is the limit's).
        Running { limit: u64, #[pin] sleep: Sleep },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn limited(future: F, limit: Duration, listeners: Listeners<TimeoutEvent>) -> Self {
        ResponseFuture {
            response: Inner::Response { future },
            // A limit too long for a deadline to be represented (say
            // `Duration::MAX`) never fires: the request is unlimited.
            timer: match Instant::now().checked_add(limit) {
                Some(deadline) => Timer::Armed {
                    limit: bulwark_core::clock::duration_nanos(limit),
                    deadline,
                },
                None => Timer::Unlimited,
            },
            listeners,
        }
    }

    #[inline]
    pub(crate) fn unlimited(future: F) -> Self {
        ResponseFuture {
            response: Inner::Response { future },
            timer: Timer::Unlimited,
            listeners: Listeners::new(),
        }
    }

    pub(crate) fn failed(error: Elapsed) -> Self {
        ResponseFuture {
            response: Inner::Failed { error: Some(error) },
            timer: Timer::Unlimited,
            listeners: Listeners::new(),
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The response first: one that is ready when the limit is reached
        // still counts.
        match this.response.project() {
            InnerProj::Response { future } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
            }
            InnerProj::Failed { error } => {
                let error = error.take().expect("polled after completion");
                return Poll::Ready(Err(Box::new(error)));
            }
        }
        let limit = match this.timer.as_mut().project() {
            TimerProj::Unlimited => return Poll::Pending,
            TimerProj::Armed { limit, deadline } => {
                let (limit, deadline) = (*limit, *deadline);
                this.timer.set(Timer::Running {
                    limit,
                    sleep: tokio::time::sleep_until(deadline),
                });
                limit
            }
            TimerProj::Running { limit, .. } => *limit,
        };
        let TimerProj::Running { sleep, .. } = this.timer.project() else {
            return Poll::Pending;
        };
        match sleep.poll(cx) {
            Poll::Ready(()) => {
                let limit = Duration::from_nanos(limit);
                let elapsed = Elapsed::new(Limit::Request, limit);
                tracing::debug!(limit = ?limit, "request timed out");
                this.listeners
                    .emit(|| TimeoutEvent::Elapsed(elapsed.clone()));
                Poll::Ready(Err(Box::new(elapsed)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
