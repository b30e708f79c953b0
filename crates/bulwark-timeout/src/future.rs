//! The [`ResponseFuture`] of the [`Timeout`](crate::Timeout) service.

use crate::error::{Elapsed, Limit};
use crate::TimeoutEvent;
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
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Limited {
            #[pin]
            response: F,
            #[pin]
            sleep: Sleep,
            limit: Duration,
            listeners: Listeners<TimeoutEvent>,
        },
        Unlimited {
            #[pin]
            response: F,
        },
        Failed {
            error: Option<Elapsed>,
        },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn limited(
        response: F,
        limit: Duration,
        listeners: Listeners<TimeoutEvent>,
    ) -> Self {
        ResponseFuture {
            state: State::Limited {
                response,
                sleep: tokio::time::sleep(limit),
                limit,
                listeners,
            },
        }
    }

    #[inline]
    pub(crate) fn unlimited(response: F) -> Self {
        ResponseFuture {
            state: State::Unlimited { response },
        }
    }

    pub(crate) fn failed(error: Elapsed) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
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
        match self.project().state.project() {
            StateProj::Limited {
                response,
                sleep,
                limit,
                listeners,
            } => {
                // The response first: one that is ready when the limit is
                // reached still counts.
                if let Poll::Ready(result) = response.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => {
                        let elapsed = Elapsed::new(Limit::Request, *limit);
                        tracing::debug!(limit = ?*limit, "request timed out");
                        listeners.emit(|| TimeoutEvent::Elapsed(elapsed.clone()));
                        Poll::Ready(Err(Box::new(elapsed)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            StateProj::Unlimited { response } => response.poll(cx).map_err(Into::into),
            StateProj::Failed { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
