//! The response future of the circuit breaker.

use crate::breaker::Permit;
use crate::hint::OpenHint;
use bulwark_core::classify::{Classify, Outcome};
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
    pub struct ResponseFuture<F, C, H = ()> {
        #[pin]
        state: State<F, C, H>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, H> {
        Called {
            #[pin]
            fut: F,
            permit: Option<Permit>,
            classifier: C,
            hint: H,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C, H> ResponseFuture<F, C, H> {
    pub(crate) fn called(fut: F, permit: Permit, classifier: C, hint: H) -> Self {
        ResponseFuture {
            state: State::Called {
                fut,
                permit: Some(permit),
                classifier,
                hint,
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, H, T, E> Future for ResponseFuture<F, C, H>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
    H: OpenHint<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                fut,
                permit,
                classifier,
                hint,
            } => {
                let result = ready!(fut.poll(cx)).map_err(Into::into);
                if let Some(permit) = permit.take() {
                    let outcome = classifier.classify(&result);
                    let hold = match outcome {
                        Outcome::Failure => hint.open_hint(&result),
                        _ => None,
                    };
                    match hold {
                        None => permit.record(outcome),
                        Some(at_least) => {
                            // Record first (it may open the breaker), then
                            // hold it open as long as the upstream asked.
                            let breaker = permit.breaker().cloned();
                            permit.record(outcome);
                            if let Some(breaker) = breaker {
                                breaker.hold_open_for(at_least);
                            }
                        }
                    }
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

impl<F, C, H> fmt::Debug for ResponseFuture<F, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
