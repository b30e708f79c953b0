//! A per-host breaker for gRPC that judges a streaming answer when its
//! stream ends.
//!
//! A gRPC server that fails after it has started to answer (a server
//! stream that breaks off, a unary call whose handler fails late) sends its
//! `grpc-status` in the trailers, after the response head. A breaker that
//! judges the head would count such a call as a success. The
//! [`GrpcHostBreakerLayer`] judges a response head that already carries a
//! `grpc-status` (a "trailers-only" answer) or a non-2xx status at once, as
//! [`HostBreakerLayer`](super::HostBreakerLayer) does; any other answer
//! gets a [`GrpcBody`] that holds the breaker's [`Permit`] and records the
//! outcome when the stream ends:
//!
//! | end of the body | recorded |
//! |---|---|
//! | trailers | their `grpc-status`, judged by [`GrpcClassifier::classify_trailers`] (tower-http's [`ClassifyEos`](tower_http::classify::ClassifyEos)) |
//! | end of stream without trailers | as tower-http does: a success |
//! | a body error (reset stream, broken connection) | a failure |
//! | the body dropped before its end | nothing; a half-open probe slot is given back |
//!
//! A failure whose trailers carry `grpc-retry-pushback-ms` (or a head with
//! `Retry-After`) holds the host's breaker open that long, as
//! [`ServerOpenHint`] does for heads.
//!
//! The [`ClientStack`](crate::ClientStack) uses this layer whenever its
//! classifier is a [`GrpcClassifier`].
//!
//! ```
//! use bulwark_breaker::{Breaker, State};
//! use bulwark_http::breaker::grpc::GrpcHostBreakerLayer;
//! use bulwark_http::GrpcClassifier;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bulwark_core::BoxError> {
//! let breakers = Breaker::builder().consecutive_failures(1).keyed().build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(GrpcHostBreakerLayer::new(breakers.clone(), GrpcClassifier::new()))
//!     .service_fn(|_req: http::Request<()>| async {
//!         // One message, then trailers saying UNAVAILABLE.
//!         let mut trailers = http::HeaderMap::new();
//!         trailers.insert("grpc-status", "14".parse().unwrap());
//!         let body = Full::new(Bytes::from_static(b"msg")).with_trailers(async { Some(Ok(trailers)) });
//!         Ok::<_, std::io::Error>(http::Response::new(body))
//!     });
//! let res = svc.oneshot(http::Request::post("http://a.example/pkg.Svc/Watch").body(())?).await?;
//! let host = breakers.get(&"a.example".parse()?).unwrap();
//! assert_eq!(host.state(), State::Closed); // the head said nothing yet
//! res.into_body().collect().await?;
//! assert_eq!(host.state(), State::Open); // the trailers did
//! # Ok(())
//! # }
//! ```

use super::ServerOpenHint;
use crate::classify::GrpcClassifier;
use crate::parts::RequestParts;
use crate::pushback::pushback_from_headers;
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::{CircuitOpen, Permit};
use bulwark_core::{BoxError, Outcome};
use bulwark_retry::PushbackHint;
use http::uri::Authority;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// One breaker per authority for gRPC, judging streamed answers at their
/// end; see the [module docs](self).
#[derive(Clone)]
pub struct GrpcHostBreakerLayer {
    // `None`: no breaker; answers pass through (with the same body type).
    breakers: Option<KeyedBreakers<Authority>>,
    classifier: GrpcClassifier,
    hint: ServerOpenHint,
}

impl GrpcHostBreakerLayer {
    /// A layer over `breakers`, judging answers with `classifier`,
    /// honouring server pushback of up to 5 minutes.
    pub fn new(breakers: KeyedBreakers<Authority>, classifier: GrpcClassifier) -> Self {
        GrpcHostBreakerLayer {
            breakers: Some(breakers),
            classifier,
            hint: ServerOpenHint::default(),
        }
    }

    /// No breaker: answers pass through, their bodies wrapped in a
    /// [`GrpcBody`] that records nothing (so a stack keeps one response
    /// type with its breaker on or off).
    pub(crate) fn off(classifier: GrpcClassifier) -> Self {
        GrpcHostBreakerLayer {
            breakers: None,
            classifier,
            hint: ServerOpenHint::default(),
        }
    }

    /// Honours server pushback as `hint` says (e.g. a shorter cap).
    pub fn open_hint(mut self, hint: ServerOpenHint) -> Self {
        self.hint = hint;
        self
    }

    /// The breakers, as a handle (`None` for the client stack's
    /// pass-through when its breaker is off).
    pub fn breakers(&self) -> Option<&KeyedBreakers<Authority>> {
        self.breakers.as_ref()
    }
}

impl fmt::Debug for GrpcHostBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcHostBreakerLayer")
            .field("breakers", &self.breakers)
            .field("classifier", &self.classifier)
            .field("hint", &self.hint)
            .finish()
    }
}

impl<S> Layer<S> for GrpcHostBreakerLayer {
    type Service = GrpcHostBreaker<S>;

    fn layer(&self, inner: S) -> GrpcHostBreaker<S> {
        GrpcHostBreaker {
            inner,
            breakers: self.breakers.clone(),
            classifier: self.classifier,
            hint: self.hint,
        }
    }
}

/// The service of [`GrpcHostBreakerLayer`].
///
/// As with the breaker crate's keyed breaker, the key is only known in
/// `call`: `poll_ready` waits for the inner service alone, and a refusal is
/// an immediately ready [`CircuitOpen`] error.
#[derive(Clone)]
pub struct GrpcHostBreaker<S> {
    inner: S,
    breakers: Option<KeyedBreakers<Authority>>,
    classifier: GrpcClassifier,
    hint: ServerOpenHint,
}

impl<S> GrpcHostBreaker<S> {
    /// The breakers, as a handle (`None`: see
    /// [`GrpcHostBreakerLayer::breakers`]).
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

impl<S: fmt::Debug> fmt::Debug for GrpcHostBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcHostBreaker")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResB> Service<http::Request<B>> for GrpcHostBreaker<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<GrpcBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
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
                        permit,
                        classifier: self.classifier,
                        hint: self.hint,
                    }),
                },
            },
            Err(open) => ResponseFuture {
                state: State::Rejected { error: Some(open) },
            },
        }
    }
}

/// What records a call's outcome once it is known: the permit and how to
/// judge.
struct Judge {
    permit: Permit,
    classifier: GrpcClassifier,
    hint: ServerOpenHint,
}

impl Judge {
    /// Records `outcome`, holding the breaker open if a failure came with
    /// pushback in `headers`.
    fn record(self, outcome: Outcome, headers: Option<&HeaderMap>) {
        let hold = match (outcome, headers) {
            (Outcome::Failure, Some(h)) => match pushback_from_headers(h, self.hint.max) {
                PushbackHint::After(d) => Some(d),
                _ => None,
            },
            _ => None,
        };
        record(self.permit, outcome, hold);
    }

    /// Judges the end of the stream.
    fn end(self, trailers: Option<&HeaderMap>) {
        let outcome = self.classifier.classify_trailers(trailers);
        self.record(outcome, trailers);
    }
}

fn record(permit: Permit, outcome: Outcome, hold: Option<Duration>) {
    match hold {
        None => permit.record(outcome),
        Some(at_least) => {
            // Record first (it may open the breaker), then hold it open as
            // long as the server asked.
            let breaker = permit.breaker().cloned();
            permit.record(outcome);
            if let Some(breaker) = breaker {
                breaker.hold_open_for(at_least);
            }
        }
    }
}

pin_project! {
    /// The response future of [`GrpcHostBreaker`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called {
            #[pin]
            fut: F,
            judge: Option<Judge>,
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

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<GrpcBody<ResB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { fut, judge } => {
                let result = ready!(fut.poll(cx)).map_err(Into::into);
                let Some(judge) = judge.take() else {
                    return Poll::Ready(Err("gRPC breaker future polled after completion".into()));
                };
                Poll::Ready(match result {
                    Ok(res) if judge.classifier.needs_trailers(&res) => {
                        // The verdict is in the trailers: the body records it.
                        Ok(res.map(|inner| GrpcBody {
                            inner,
                            judge: Some(judge),
                        }))
                    }
                    Ok(res) => {
                        // A trailers-only answer, or not a gRPC one: judged now.
                        let outcome = judge.classifier.classify_head(&res);
                        judge.record(outcome, Some(res.headers()));
                        Ok(res.map(|inner| GrpcBody { inner, judge: None }))
                    }
                    Err(e) => {
                        let outcome = judge.classifier.classify_error(&e);
                        judge.record(outcome, None);
                        Err(e)
                    }
                })
            }
            StateProj::Plain { fut } => Poll::Ready(
                ready!(fut.poll(cx))
                    .map(|res| res.map(|inner| GrpcBody { inner, judge: None }))
                    .map_err(Into::into),
            ),
            StateProj::Rejected { error } => Poll::Ready(Err(match error.take() {
                Some(e) => Box::new(e),
                None => "gRPC breaker future polled after completion".into(),
            })),
        }
    }
}

pin_project! {
    /// A response body that records the call's outcome in the breaker when
    /// the stream ends; see the [module docs](self).
    ///
    /// Frames, errors and size hints pass through unchanged. A body whose
    /// outcome was already judged from the head is a plain pass-through.
    pub struct GrpcBody<B> {
        #[pin]
        inner: B,
        judge: Option<Judge>,
    }
}

impl<B> GrpcBody<B> {
    /// Whether this body still has an outcome to record (the answer's
    /// `grpc-status` was not in its head, and the stream has not ended).
    pub fn is_pending(&self) -> bool {
        self.judge.is_some()
    }

    /// The inner body, recording nothing (a half-open probe slot is given
    /// back).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for GrpcBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBody")
            .field("pending", &self.judge.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for GrpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.judge.is_some() {
            match &frame {
                Some(Ok(f)) => {
                    if let Some(trailers) = f.trailers_ref() {
                        if let Some(judge) = this.judge.take() {
                            judge.end(Some(trailers));
                        }
                    } else if this.inner.is_end_stream() {
                        // Nothing follows: a consumer may stop here.
                        if let Some(judge) = this.judge.take() {
                            judge.end(None);
                        }
                    }
                }
                Some(Err(_)) => {
                    // The stream broke: the server did not finish its answer.
                    if let Some(judge) = this.judge.take() {
                        judge.record(Outcome::Failure, None);
                    }
                }
                None => {
                    if let Some(judge) = this.judge.take() {
                        judge.end(None);
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_breaker::{Breaker, State as BState};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower::{service_fn, ServiceExt};

    type TestBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

    /// A streamed answer: one message, then `trailers` (none if `None`).
    fn streamed(trailers: Option<&'static [(&'static str, &'static str)]>) -> TestBody {
        let body = Full::new(Bytes::from_static(b"msg")).map_err(|e| match e {});
        match trailers {
            None => body.boxed(),
            Some(pairs) => body
                .with_trailers(async move {
                    let mut t = HeaderMap::new();
                    for (k, v) in pairs {
                        t.insert(*k, v.parse().unwrap());
                    }
                    Some(Ok(t))
                })
                .boxed(),
        }
    }

    fn layer(breakers: &KeyedBreakers<Authority>) -> GrpcHostBreakerLayer {
        GrpcHostBreakerLayer::new(breakers.clone(), GrpcClassifier::new())
    }

    fn breakers(failures: u32) -> KeyedBreakers<Authority> {
        Breaker::builder()
            .consecutive_failures(failures)
            .without_failure_rate()
            .open_for(Duration::from_secs(5))
            .successes_to_close(1)
            .keyed()
            .build()
            .unwrap()
    }

    fn req() -> http::Request<()> {
        http::Request::post("http://a.example/pkg.Svc/Watch")
            .body(())
            .unwrap()
    }

    fn host(b: &KeyedBreakers<Authority>) -> Breaker {
        b.get(&"a.example".parse().unwrap()).unwrap()
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn trailers_decide_when_the_stream_ends() {
        let b = breakers(2);
        let svc = layer(&b).layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, BoxError>(http::Response::new(streamed(Some(&[(
                "grpc-status",
                "14",
            )]))))
        }));
        for n in 0..2 {
            let res = svc.clone().oneshot(req()).await.unwrap();
            assert!(res.body().is_pending());
            assert_eq!(host(&b).snapshot().calls, n, "nothing judged on the head");
            let collected = res.into_body().collect().await.unwrap();
            assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
        }
        assert_eq!(host(&b).state(), BState::Open);
        assert_eq!(host(&b).snapshot().failures, 2);

        // OK in the trailers is a success.
        let b = breakers(2);
        let svc = layer(&b).layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, BoxError>(http::Response::new(streamed(Some(&[("grpc-status", "0")]))))
        }));
        for _ in 0..3 {
            let res = svc.clone().oneshot(req()).await.unwrap();
            res.into_body().collect().await.unwrap();
        }
        let snap = host(&b).snapshot();
        assert_eq!((snap.calls, snap.failures), (3, 0));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_trailers_only_answer_is_judged_at_once() {
        let b = breakers(1);
        let svc = layer(&b).layer(service_fn(|_: http::Request<()>| async {
            let res = http::Response::builder()
                .header("grpc-status", "14")
                .header("grpc-retry-pushback-ms", "20000")
                .body(streamed(None))
                .unwrap();
            Ok::<_, BoxError>(res)
        }));
        let res = svc.clone().oneshot(req()).await.unwrap();
        assert!(!res.body().is_pending());
        assert_eq!(host(&b).state(), BState::Open, "before the body is read");
        assert_eq!(
            host(&b).snapshot().next_probe_in,
            Some(Duration::from_secs(20))
        );
        let err = svc.oneshot(req()).await.unwrap_err();
        assert!(err.is::<CircuitOpen>());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn pushback_in_trailers_holds_the_breaker_open() {
        let b = breakers(1);
        let svc = layer(&b).layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, BoxError>(http::Response::new(streamed(Some(&[
                ("grpc-status", "14"),
                ("grpc-retry-pushback-ms", "30000"),
            ]))))
        }));
        let res = svc.oneshot(req()).await.unwrap();
        res.into_body().collect().await.unwrap();
        assert_eq!(host(&b).state(), BState::Open);
        assert_eq!(
            host(&b).snapshot().next_probe_in,
            Some(Duration::from_secs(30))
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_broken_stream_is_a_failure_and_no_trailers_a_success() {
        let b = breakers(5);
        let svc = layer(&b).layer(service_fn(|req: http::Request<()>| async move {
            let body = if req.uri().path() == "/broken" {
                Broken.boxed()
            } else {
                streamed(None)
            };
            Ok::<_, BoxError>(http::Response::new(body))
        }));
        let get = |path: &str| {
            http::Request::post(format!("http://a.example{path}"))
                .body(())
                .unwrap()
        };
        let res = svc.clone().oneshot(get("/broken")).await.unwrap();
        assert!(res.into_body().collect().await.is_err());
        let res = svc.clone().oneshot(get("/plain")).await.unwrap();
        res.into_body().collect().await.unwrap();
        let snap = host(&b).snapshot();
        assert_eq!((snap.calls, snap.failures), (2, 1));
    }

    /// A body whose stream breaks at once.
    struct Broken;

    impl Body for Broken {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(Some(Err("stream reset".into())))
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_dropped_stream_records_nothing_and_frees_its_probe_slot() {
        let b = breakers(1);
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let svc = layer(&b).layer(service_fn(move |_: http::Request<()>| {
            let code = if f.load(std::sync::atomic::Ordering::SeqCst) {
                "14"
            } else {
                "0"
            };
            async move {
                let pairs: &'static [(&str, &str)] = if code == "14" {
                    &[("grpc-status", "14")]
                } else {
                    &[("grpc-status", "0")]
                };
                Ok::<_, BoxError>(http::Response::new(streamed(Some(pairs))))
            }
        }));
        let res = svc.clone().oneshot(req()).await.unwrap();
        res.into_body().collect().await.unwrap();
        assert_eq!(host(&b).state(), BState::Open);
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(5)).await;

        // The probe's stream is dropped after one message.
        let calls = host(&b).snapshot().calls;
        let res = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(host(&b).state(), BState::HalfOpen);
        assert_eq!(host(&b).snapshot().probes_in_flight, 1);
        let mut body = res.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(body);
        let snap = host(&b).snapshot();
        assert_eq!(snap.probes_in_flight, 0, "slot given back");
        assert_eq!(
            (snap.calls, snap.probe_successes),
            (calls, 0),
            "nothing recorded"
        );
        assert_eq!(snap.state, BState::HalfOpen);

        // The next probe is admitted, and its stream closes the breaker.
        let res = svc.oneshot(req()).await.unwrap();
        res.into_body().collect().await.unwrap();
        assert_eq!(host(&b).state(), BState::Closed);
    }
}
