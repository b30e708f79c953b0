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
use tower_service::Service;

pin_project! {
    /// The response future of [`CircuitBreaker`](crate::CircuitBreaker).
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
            // Spent (holding no handle) once recorded.
            permit: Permit,
            classifier: C,
            hint: H,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C, H> ResponseFuture<F, C, H> {
    #[inline]
    pub(crate) fn called(fut: F, permit: Permit, classifier: C, hint: H) -> Self {
        ResponseFuture {
            state: State::Called {
                fut,
                permit,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                fut,
                permit,
                classifier,
                hint,
            } => {
                let result = ready!(fut.poll(cx)).map_err(Into::into);
                let outcome = classifier.classify(&result);
                let hold = match outcome {
                    Outcome::Failure => hint.open_hint(&result),
                    _ => None,
                };
                match hold {
                    None => permit.finish(outcome),
                    Some(at_least) => {
                        // Record first (it may open the breaker), then
                        // hold it open as long as the upstream asked.
                        let breaker = permit.breaker().cloned();
                        permit.finish(outcome);
                        if let Some(breaker) = breaker {
                            breaker.hold_open_for(at_least);
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

pin_project! {
    /// The response future of
    /// [`KeyedCircuitBreaker`](crate::keyed::KeyedCircuitBreaker).
    ///
    /// A call the key's breaker admitted first waits for its own clone of the
    /// inner service to be ready (holding the admission: a half-open probe
    /// slot is given back if the future is dropped while waiting), then calls
    /// it and records the outcome; a refusal is ready at once.
    pub struct KeyedResponseFuture<S, Req, C, H = ()>
    where
        S: Service<Req>,
    {
        #[pin]
        state: KeyedState<S, Req, C, H>,
    }
}

pin_project! {
    #[project = KeyedStateProj]
    enum KeyedState<S, Req, C, H>
    where
        S: Service<Req>,
    {
        Waiting {
            svc: S,
            req: Option<Req>,
            permit: Option<Permit>,
            classifier: Option<C>,
            hint: Option<H>,
        },
        Called {
            #[pin]
            fut: ResponseFuture<S::Future, C, H>,
        },
    }
}

impl<S: Service<Req>, Req, C, H> KeyedResponseFuture<S, Req, C, H> {
    pub(crate) fn waiting(svc: S, req: Req, permit: Permit, classifier: C, hint: H) -> Self {
        KeyedResponseFuture {
            state: KeyedState::Waiting {
                svc,
                req: Some(req),
                permit: Some(permit),
                classifier: Some(classifier),
                hint: Some(hint),
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        KeyedResponseFuture {
            state: KeyedState::Called {
                fut: ResponseFuture::rejected(error),
            },
        }
    }
}

impl<S, Req, C, H> Future for KeyedResponseFuture<S, Req, C, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    H: OpenHint<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                KeyedStateProj::Called { fut } => return fut.poll(cx),
                KeyedStateProj::Waiting {
                    svc,
                    req,
                    permit,
                    classifier,
                    hint,
                } => {
                    let ready = ready!(svc.poll_ready(cx));
                    let (Some(req), Some(mut admitted), Some(classifier), Some(hint)) =
                        (req.take(), permit.take(), classifier.take(), hint.take())
                    else {
                        return Poll::Ready(Err(
                            "keyed circuit breaker future polled after completion".into(),
                        ));
                    };
                    if let Err(e) = ready {
                        // The inner service is broken: that is a failure too.
                        let result: Result<S::Response, BoxError> = Err(e.into());
                        admitted.record(classifier.classify(&result));
                        return Poll::Ready(result);
                    }
                    if admitted.is_stale() {
                        // The breaker changed state while we waited (it may
                        // have opened): decide again before calling.
                        if let Some(breaker) = admitted.breaker().cloned() {
                            drop(admitted);
                            admitted = match breaker.admit() {
                                Ok(p) => p,
                                Err(refusal) => {
                                    return Poll::Ready(Err(Box::new(breaker.reject(refusal))))
                                }
                            };
                        }
                    }
                    ResponseFuture::called(svc.call(req), admitted, classifier, hint)
                }
            };
            this.state.set(KeyedState::Called { fut: next });
        }
    }
}

impl<S: Service<Req>, Req, C, H> fmt::Debug for KeyedResponseFuture<S, Req, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedResponseFuture")
            .finish_non_exhaustive()
    }
}
