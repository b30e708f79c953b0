//! The response future of the circuit breaker.

use crate::breaker::Permit;
use bulwark_core::classify::Classify;
use bulwark_core::error::CircuitOpen;
use bulwark_core::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pin_project! {
    /// The response future of [`CircuitBreaker`](crate::CircuitBreaker) and
    /// [`KeyedCircuitBreaker`](crate::keyed::KeyedCircuitBreaker).
    ///
    /// Either the inner call, whose outcome it records when it completes (and
    /// whose probe slot it gives back if dropped), or a rejection that is
    /// ready at once.
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        Called {
            #[pin]
            fut: F,
            permit: Option<Permit>,
            classifier: C,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(fut: F, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            state: State::Called {
                fut,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                fut,
                permit,
                classifier,
            } => {
                let result = ready!(fut.poll(cx)).map_err(Into::into);
                if let Some(permit) = permit.take() {
                    permit.record(classifier.classify(&result));
                }
                Poll::Ready(result)
            }
            StateProj::Rejected { error } => Poll::Ready(Err(match error.take() {
                Some(e) => Box::new(e),
                None => "circuit breaker future polled after completion".into(),
            })),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
