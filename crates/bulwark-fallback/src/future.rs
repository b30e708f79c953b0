//! The [`ResponseFuture`] of the [`Fallback`](crate::Fallback) service.

use crate::error::{FailedResponse, FallbackFailed};
use crate::source::Recover;
use crate::trigger::Trigger;
use crate::FallbackEvent;
use bulwark_core::{BoxError, Listeners};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// The response future of [`Fallback`](crate::Fallback): the primary
    /// call, then, if the trigger says so, the fallback.
    #[derive(Debug)]
    pub struct ResponseFuture<F, R, FF, T> {
        #[pin]
        state: State<F, FF>,
        recover: Option<R>,
        trigger: T,
        listeners: Listeners<FallbackEvent>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F, FF> {
        Primary {
            #[pin]
            future: F,
        },
        Fallback {
            #[pin]
            future: FF,
            primary: Option<BoxError>,
        },
    }
}

impl<F, R, FF, T> ResponseFuture<F, R, FF, T> {
    #[inline]
    pub(crate) fn new(
        future: F,
        recover: R,
        trigger: T,
        listeners: Listeners<FallbackEvent>,
    ) -> Self {
        ResponseFuture {
            state: State::Primary { future },
            recover: Some(recover),
            trigger,
            listeners,
        }
    }
}

impl<F, Res, E, R, T> Future for ResponseFuture<F, R, R::Future, T>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    R: Recover<Res>,
    T: Trigger<Res>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Primary { future } => {
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => result.map_err(Into::into),
                        Poll::Pending => return Poll::Pending,
                    };
                    let recover = this.recover.take().expect("polled after completion");
                    let Some(outcome) = this.trigger.triggers(&result) else {
                        if let Ok(response) = &result {
                            recover.succeeded(response);
                        }
                        return Poll::Ready(result);
                    };
                    let primary: BoxError = match result {
                        Err(e) => e,
                        Ok(_) => Box::new(FailedResponse::new(outcome)),
                    };
                    tracing::debug!(%outcome, error = %primary, "falling back");
                    this.listeners.emit(|| FallbackEvent::FellBack { outcome });
                    let future = recover.recover(&primary);
                    self.as_mut().project().state.set(State::Fallback {
                        future,
                        primary: Some(primary),
                    });
                }
                StateProj::Fallback { future, primary } => {
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => result,
                        Poll::Pending => return Poll::Pending,
                    };
                    let primary = primary.take().expect("polled after completion");
                    return Poll::Ready(result.map_err(|fallback| {
                        tracing::debug!(error = %fallback, "fallback failed");
                        this.listeners.emit(|| FallbackEvent::FallbackFailed);
                        Box::new(FallbackFailed::new(primary, fallback)) as BoxError
                    }));
                }
            }
        }
    }
}
