//! A per-host breaker that takes each call's verdict when its response
//! body ends, for HTTP and gRPC alike.
//!
//! A server can fail after its head: an HTTP body that breaks off (a reset,
//! a FIN before the announced length, a bad chunk size, a body deadline), a
//! gRPC stream whose trailers say `UNAVAILABLE`. A breaker that judges the
//! head counts all of these as successes. The [`BodyBreakerLayer`] holds
//! the breaker's [`Permit`] in the response body (a
//! [`VerdictBody`]) and records the outcome when the body ends, as the
//! [`verdict`](crate::verdict) module's table says: a complete body is a
//! success (for gRPC: the trailers' `grpc-status`), a body failing mid-way
//! a failure, a body the caller drops after starting to read it neither (a
//! half-open probe slot is given back; [`cancelled_as`](BodyBreakerLayer::cancelled_as)
//! changes that). An answer the head decides (a `5xx`, `429`, a
//! trailers-only gRPC error, a transport error) is recorded at once.
//!
//! A failure that carries `Retry-After` or `grpc-retry-pushback-ms` (in its
//! head or its trailers) holds the host's breaker open that long, as
//! [`ServerOpenHint`] says.
//!
//! The slow-call rate, if the breaker uses one, then measures the whole
//! response, body included.
//!
//! ```
//! use bulwark::breaker::{Breaker, State};
//! use bulwark::http::breaker::body::BodyBreakerLayer;
//! use bulwark::http::HttpClassifier;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! # use std::{pin::Pin, task::{Context, Poll}};
//! # /// One frame, then a reset.
//! # struct Resets(bool);
//! # impl http_body::Body for Resets {
//! #     type Data = Bytes;
//! #     type Error = std::io::Error;
//! #     fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>)
//! #         -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
//! #         let first = !std::mem::replace(&mut self.0, true);
//! #         Poll::Ready(Some(if first { Ok(http_body::Frame::data(Bytes::from("x"))) }
//! #             else { Err(std::io::ErrorKind::ConnectionReset.into()) }))
//! #     }
//! # }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bulwark::BoxError> {
//! let breakers = Breaker::builder().consecutive_failures(1).keyed().build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(BodyBreakerLayer::new(breakers.clone(), HttpClassifier::new()))
//!     .service_fn(|_req: http::Request<()>| async {
//!         // A 200 whose body is reset after its first chunk.
//!         Ok::<_, std::io::Error>(http::Response::new(Resets(false)))
//!     });
//! let res = svc.oneshot(http::Request::get("http://a.example/").body(())?).await?;
//! let host = breakers.get(&"a.example".parse()?).unwrap();
//! assert_eq!(host.state(), State::Closed); // the head looked fine
//! assert!(res.into_body().collect().await.is_err());
//! assert_eq!(host.state(), State::Open); // the body did not
//! # Ok(())
//! # }
//! ```

use super::ServerOpenHint;
use crate::parts::{RequestParts, ResponseBody, ResponseParts};
use crate::pushback::pushback_from_headers;
use crate::verdict::{ClassifyBody, ClassifyEnd, VerdictBody, VerdictSink, VerdictWrap};

/// The end judge of classifier `C`.
type End<C> = <C as ClassifyEnd>::End;
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::{CircuitOpen, Permit};
use bulwark_core::{BoxError, Outcome};
use bulwark_retry::PushbackHint;
use http::uri::Authority;
use http::HeaderMap;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// One breaker per authority, taking verdicts at the end of the body; see
/// the [module docs](self).
#[derive(Clone)]
pub struct BodyBreakerLayer<C> {
    // `None`: no breaker; answers pass through (with the same body type).
    breakers: Option<KeyedBreakers<Authority>>,
    classifier: C,
    hint: ServerOpenHint,
    cancelled: Option<Outcome>,
}

impl<C> BodyBreakerLayer<C> {
    /// A layer over `breakers`, judging answers with `classifier`
    /// ([`HttpClassifier`](crate::HttpClassifier),
    /// [`GrpcClassifier`](crate::GrpcClassifier), or any
    /// [`ClassifyBody`]), honouring server pushback of up to 5 minutes.
    pub fn new(breakers: KeyedBreakers<Authority>, classifier: C) -> Self {
        BodyBreakerLayer {
            breakers: Some(breakers),
            classifier,
            hint: ServerOpenHint::default(),
            cancelled: None,
        }
    }

    /// No breaker: answers pass through, their bodies wrapped in a
    /// [`VerdictBody`] that records nothing (so a stack keeps one response
    /// type with its breaker on or off).
    pub fn off(classifier: C) -> Self {
        BodyBreakerLayer {
            breakers: None,
            classifier,
            hint: ServerOpenHint::default(),
            cancelled: None,
        }
    }

    /// Honours server pushback as `hint` says (e.g. a shorter cap).
    pub fn open_hint(mut self, hint: ServerOpenHint) -> Self {
        self.hint = hint;
        self
    }

    /// What a body the caller drops mid-way counts as (`None`, the default:
    /// nothing; see [`VerdictBody::cancelled_as`]).
    pub fn cancelled_as(mut self, outcome: Option<Outcome>) -> Self {
        self.cancelled = outcome;
        self
    }

    /// The breakers, as a handle (`None` for a pass-through made by
    /// [`off`](Self::off)).
    pub fn breakers(&self) -> Option<&KeyedBreakers<Authority>> {
        self.breakers.as_ref()
    }
}

impl<C: fmt::Debug> fmt::Debug for BodyBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyBreakerLayer")
            .field("breakers", &self.breakers)
            .field("classifier", &self.classifier)
            .field("hint", &self.hint)
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

impl<S, C: Clone> Layer<S> for BodyBreakerLayer<C> {
    type Service = BodyBreaker<S, C>;

    fn layer(&self, inner: S) -> BodyBreaker<S, C> {
        BodyBreaker {
            inner,
            breakers: self.breakers.clone(),
            classifier: self.classifier.clone(),
            hint: self.hint,
            cancelled: self.cancelled,
        }
    }
}

/// The service of [`BodyBreakerLayer`].
///
/// As with the breaker crate's keyed breaker, the key is only known in
/// `call`: `poll_ready` waits for the inner service alone, and a refusal is
/// an immediately ready [`CircuitOpen`] error.
#[derive(Clone)]
pub struct BodyBreaker<S, C> {
    inner: S,
    breakers: Option<KeyedBreakers<Authority>>,
    classifier: C,
    hint: ServerOpenHint,
    cancelled: Option<Outcome>,
}

impl<S, C> BodyBreaker<S, C> {
    /// The breakers, as a handle (`None`: see
    /// [`BodyBreakerLayer::breakers`]).
    pub fn breakers(&self) -> Option<&KeyedBreakers<Authority>> {
        self.breakers.as_ref()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, C> fmt::Debug for BodyBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyBreaker")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

/// The breaker's end of a verdict: the permit, and how much pushback to
/// honour.
#[derive(Debug)]
pub struct BreakerVerdict {
    permit: Permit,
    hint: ServerOpenHint,
}

impl VerdictSink for BreakerVerdict {
    /// Records `outcome`, holding the breaker open if a failure came with
    /// pushback.
    fn record(self, outcome: Outcome, headers: Option<&HeaderMap>) {
        let hold = match (outcome, headers) {
            (Outcome::Failure, Some(h)) => match pushback_from_headers(h, self.hint.max) {
                PushbackHint::After(d) => Some(d),
                _ => None,
            },
            _ => None,
        };
        match hold {
            None => self.permit.record(outcome),
            Some(at_least) => {
                // Record first (it may open the breaker), then hold it open
                // as long as the server asked.
                let breaker = self.permit.breaker().cloned();
                self.permit.record(outcome);
                if let Some(breaker) = breaker {
                    breaker.hold_open_for(at_least);
                }
            }
        }
    }

    /// Records nothing; a half-open probe slot is given back.
    fn cancel(self) {
        drop(self.permit);
    }
}

/// How a [`BodyBreaker`] with classifier `C` wraps its answers' bodies.
pub type BreakerWrap<C> = VerdictWrap<<C as ClassifyEnd>::End, BreakerVerdict>;

/// The body of the answers of a [`BodyBreaker`] with classifier `C`.
pub type BreakerBody<B, C> = VerdictBody<B, <C as ClassifyEnd>::End, BreakerVerdict>;

impl<S, C, Req, Res> Service<Req> for BodyBreaker<S, C>
where
    Req: RequestParts,
    S: Service<Req, Response = Res>,
    S::Error: Into<BoxError>,
    C: ClassifyBody<Res>,
    Res: ResponseParts + ResponseBody<BreakerWrap<C>>,
{
    type Response = Res::Output;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let Some(breakers) = &self.breakers else {
            return ResponseFuture {
                state: State::Plain {
                    fut: self.inner.call(req),
                },
            };
        };
        match breakers.get_or_create(&req.authority_key()).try_acquire() {
            Ok(permit) => ResponseFuture {
                state: State::Called {
                    fut: self.inner.call(req),
                    judge: Some(Judge {
                        sink: BreakerVerdict {
                            permit,
                            hint: self.hint,
                        },
                        classifier: self.classifier.clone(),
                        cancelled: self.cancelled,
                    }),
                },
            },
            Err(open) => ResponseFuture {
                state: State::Rejected { error: Some(open) },
            },
        }
    }
}

/// What records a call's outcome once it is known.
struct Judge<C> {
    sink: BreakerVerdict,
    classifier: C,
    cancelled: Option<Outcome>,
}

pin_project! {
    /// The response future of [`BodyBreaker`].
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
            judge: Option<Judge<C>>,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
        Plain {
            #[pin]
            fut: F,
        },
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: ClassifyBody<Res>,
    Res: ResponseParts + ResponseBody<BreakerWrap<C>>,
{
    type Output = Result<Res::Output, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { fut, judge } => {
                let result = ready!(fut.poll(cx)).map_err(Into::into);
                let Some(judge) = judge.take() else {
                    return Poll::Ready(Err("breaker future polled after completion".into()));
                };
                Poll::Ready(match judge.classifier.verdict_at_head(&result) {
                    None if result.is_ok() => result.map(|res| {
                        // The verdict is at the end of the body.
                        res.wrap_body(VerdictWrap::pending(
                            judge.classifier.end_judge(),
                            judge.sink,
                            judge.cancelled,
                        ))
                    }),
                    head => {
                        let outcome = head.unwrap_or(Outcome::Failure);
                        judge
                            .sink
                            .record(outcome, result.as_ref().ok().map(|r| r.headers()));
                        result.map(|res| res.wrap_body(VerdictWrap::<End<C>, _>::judged()))
                    }
                })
            }
            StateProj::Plain { fut } => Poll::Ready(
                ready!(fut.poll(cx))
                    .map(|res| res.wrap_body(VerdictWrap::<End<C>, _>::judged()))
                    .map_err(Into::into),
            ),
            StateProj::Rejected { error } => Poll::Ready(Err(match error.take() {
                Some(e) => Box::new(e),
                None => "breaker future polled after completion".into(),
            })),
        }
    }
}
