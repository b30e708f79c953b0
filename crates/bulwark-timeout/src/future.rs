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
        // The timer is registered on the first poll that finds the response
        // not ready: a response ready at once never pays for a timer.
        #[pin]
        sleep: Option<Sleep>,
        // The limit and the deadline it gives, counted from `call`.
        limit: Option<(Duration, Instant)>,
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

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn limited(future: F, limit: Duration, listeners: Listeners<TimeoutEvent>) -> Self {
        ResponseFuture {
            response: Inner::Response { future },
            sleep: None,
            // A limit too long for a deadline to be represented (say
            // `Duration::MAX`) never fires: the request is unlimited.
            limit: Instant::now()
                .checked_add(limit)
                .map(|deadline| (limit, deadline)),
            listeners,
        }
    }

    #[inline]
    pub(crate) fn unlimited(future: F) -> Self {
        ResponseFuture {
            response: Inner::Response { future },
            sleep: None,
            limit: None,
            listeners: Listeners::new(),
        }
    }

    pub(crate) fn failed(error: Elapsed) -> Self {
        ResponseFuture {
            response: Inner::Failed { error: Some(error) },
            sleep: None,
            limit: None,
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
        let Some((limit, deadline)) = *this.limit else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => {
                let elapsed = Elapsed::new(Limit::Request, limit);
                tracing::debug!(limit = ?limit, "request timed out");
                this.listeners
                    .emit(|| TimeoutEvent::Elapsed(elapsed.clone()));
                Poll::Ready(Err(Box::new(elapsed)))
            }
            _ => Poll::Pending,
        }
    }
}
