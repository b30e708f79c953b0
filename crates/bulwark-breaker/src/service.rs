//! The tower service.

use crate::breaker::{Handle, Permit, Refusal, Ticket};
use crate::future::ResponseFuture;
use crate::hint::OpenHint;
use crate::Breaker;
use bulwark_core::classify::{Classify, DefaultClassifier};
use bulwark_core::BoxError;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service guarded by a circuit breaker; made by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// `poll_ready` asks the breaker first. Admitted: it reserves the admission
/// (a half-open probe slot, if half-open) and then waits for the inner
/// service. Refused: it is ready at once without polling the inner service,
/// and `call` returns a [`CircuitOpen`](crate::error::CircuitOpen) error right away, so a caller is never
/// kept waiting on a service the breaker will not call. Policy decisions never
/// make `poll_ready` fail.
///
/// A clone shares the breaker but starts without an admission. An admission
/// that is never used (the service is dropped after `poll_ready`) is given
/// back.
pub struct CircuitBreaker<S, C = DefaultClassifier, H = ()> {
    inner: S,
    breaker: Breaker,
    classifier: C,
    hint: H,
    admission: Admission,
    local: Local,
}

/// After this many calls, a service records through a handle of its own.
const LOCAL_AFTER: u32 = 16;

/// A service's own handle on the breaker, made once it has served
/// [`LOCAL_AFTER`] calls: its calls' futures then count references on it,
/// not on the breaker every clone shares, so that clones used from several
/// threads write no common cache line per call. A service cloned for every
/// request (as axum does) never makes one. Freed with the service and its
/// calls' futures; a clone starts without one.
#[derive(Default)]
struct Local {
    calls: u32,
    handle: Option<Arc<Breaker>>,
}

impl Local {
    #[inline]
    fn handle(&mut self, breaker: &Breaker) -> Handle {
        if let Some(handle) = &self.handle {
            return Handle::Local(handle.clone());
        }
        self.calls += 1;
        if self.calls < LOCAL_AFTER {
            return Handle::Shared(breaker.clone());
        }
        Handle::Local(self.handle.insert(Arc::new(breaker.clone())).clone())
    }
}

/// What `poll_ready` decided, kept for `call`.
enum Admission {
    /// Nothing decided (a fresh clone, or after `call`).
    Idle,
    /// Admitted: the ticket, without a handle on the breaker (the service
    /// has one; the call's future takes its own).
    Admitted(Ticket),
    /// A half-open probe: a permit, which gives its slot back if dropped.
    Probe(Permit),
    /// Refused: reported (counted, an event) in `call`.
    Refused(Refusal),
}

impl Admission {
    #[inline]
    fn of(breaker: &Breaker, decision: Result<Ticket, Refusal>) -> Admission {
        match decision {
            Ok(ticket) if ticket.is_probe() => Admission::Probe(breaker.permit(ticket)),
            Ok(ticket) => Admission::Admitted(ticket),
            Err(refusal) => Admission::Refused(refusal),
        }
    }
}

impl<S> CircuitBreaker<S> {
    /// Guards `inner` with `breaker` and the default classifier.
    pub fn new(inner: S, breaker: Breaker) -> Self {
        Self::with_classifier(inner, breaker, DefaultClassifier)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Guards `inner` with `breaker`, classifying outcomes with `classifier`.
    pub fn with_classifier(inner: S, breaker: Breaker, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            breaker,
            classifier,
            hint: (),
            admission: Admission::Idle,
            local: Local::default(),
        }
    }
}

impl<S, C, H> CircuitBreaker<S, C, H> {
    /// Also holds the breaker open as long as a failed answer asks (see
    /// [`OpenHint`](crate::hint::OpenHint)).
    pub fn with_open_hint<H2>(self, hint: H2) -> CircuitBreaker<S, C, H2> {
        CircuitBreaker {
            inner: self.inner,
            breaker: self.breaker,
            classifier: self.classifier,
            hint,
            admission: self.admission,
            local: self.local,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, dropping the breaker's admission if any.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, H, Req> Service<Req> for CircuitBreaker<S, C, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
    H: OpenHint<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A decision from an earlier state is made again: a refusal (the
        // breaker may admit a probe by now), or an admission from before the
        // breaker changed state while we waited for the inner service.
        let admitted = match &self.admission {
            Admission::Admitted(ticket) => !self.breaker.is_stale(ticket),
            Admission::Probe(permit) => !permit.is_stale(),
            Admission::Idle | Admission::Refused(_) => false,
        };
        if !admitted {
            // Decided before the old admission is dropped, as a probe it
            // held still counts until then.
            let decision = Admission::of(&self.breaker, self.breaker.admit_ticket());
            self.admission = decision;
            if let Admission::Refused(_) = self.admission {
                return Poll::Ready(Ok(()));
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                // The inner service is broken: that is a failure too.
                let result: Result<S::Response, BoxError> = Err(e.into());
                let permit = match std::mem::replace(&mut self.admission, Admission::Idle) {
                    Admission::Admitted(ticket) => Some(self.breaker.permit(ticket)),
                    Admission::Probe(permit) => Some(permit),
                    Admission::Idle | Admission::Refused(_) => None,
                };
                if let Some(permit) = permit {
                    permit.record(self.classifier.classify(&result));
                }
                Poll::Ready(result.map(|_| ()))
            }
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let permit = match std::mem::replace(&mut self.admission, Admission::Idle) {
            Admission::Admitted(ticket) => {
                let (breaker, local) = (&self.breaker, &mut self.local);
                breaker.permit_with(ticket, || local.handle(breaker))
            }
            Admission::Probe(permit) => permit,
            Admission::Refused(refusal) => {
                return ResponseFuture::rejected(self.breaker.reject(refusal))
            }
            // Without `poll_ready` first (a caller's bug), decide now.
            Admission::Idle => match self.breaker.admit() {
                Ok(permit) => permit,
                Err(refusal) => return ResponseFuture::rejected(self.breaker.reject(refusal)),
            },
        };
        ResponseFuture::called(
            self.inner.call(req),
            permit,
            self.classifier.clone(),
            self.hint.clone(),
        )
    }
}

impl<S: Clone, C: Clone, H: Clone> Clone for CircuitBreaker<S, C, H> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            hint: self.hint.clone(),
            admission: Admission::Idle,
            local: Local::default(),
        }
    }
}

impl<S: fmt::Debug, C, H> fmt::Debug for CircuitBreaker<S, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .field(
                "admitted",
                &match self.admission {
                    Admission::Idle => None,
                    Admission::Admitted(_) | Admission::Probe(_) => Some(true),
                    Admission::Refused(_) => Some(false),
                },
            )
            .finish()
    }
}
