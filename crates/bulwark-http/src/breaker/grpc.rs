//! A per-host breaker for gRPC that judges a streaming answer when its
//! stream ends: the [`BodyBreakerLayer`] (the same mechanism as for HTTP
//! bodies, see [`verdict`](crate::verdict)) with a [`GrpcClassifier`].
//!
//! A gRPC server that fails after it has started to answer (a server
//! stream that breaks off, a unary call whose handler fails late) sends its
//! `grpc-status` in the trailers, after the response head. A breaker that
//! judges the head would count such a call as a success. The
//! [`GrpcHostBreakerLayer`] judges a response head that already carries a
//! `grpc-status` (a "trailers-only" answer) or a non-2xx status at once, as
//! [`HostBreakerLayer`](super::HostBreakerLayer) does; any other answer
//! gets a [`GrpcBody`] that holds the breaker's [`Permit`](bulwark_breaker::Permit) and records the
//! outcome when the stream ends:
//!
//! | end of the body | recorded |
//! |---|---|
//! | trailers | their `grpc-status`, judged by [`GrpcClassifier::classify_trailers`] (tower-http's [`ClassifyEos`](tower_http::classify::ClassifyEos)) |
//! | end of stream without trailers | as tower-http does: a success |
//! | a body error (reset stream, broken connection) | a failure |
//! | the body dropped before its end, after the caller started reading | nothing; a half-open probe slot is given back |
//! | the body dropped unread | as an end of stream without trailers |
//!
//! A failure whose trailers carry `grpc-retry-pushback-ms` (or a head with
//! `Retry-After`) holds the host's breaker open that long, as
//! [`ServerOpenHint`](super::ServerOpenHint) does for heads.
//!
//! The [`ClientStack`](crate::ClientStack) uses this layer whenever its
//! classifier is a [`GrpcClassifier`].
//!
//! ```
//! use bulwark::breaker::{Breaker, State};
//! use bulwark::http::breaker::grpc::GrpcHostBreakerLayer;
//! use bulwark::http::GrpcClassifier;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bulwark::BoxError> {
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

use super::body::{BodyBreaker, BodyBreakerLayer, BreakerBody};
use crate::classify::GrpcClassifier;

/// One breaker per authority for gRPC, judging streamed answers at their
/// end: the [`BodyBreakerLayer`] with a [`GrpcClassifier`]; see the
/// [module docs](self).
pub type GrpcHostBreakerLayer = BodyBreakerLayer<GrpcClassifier>;

/// The service of [`GrpcHostBreakerLayer`].
pub type GrpcHostBreaker<S> = BodyBreaker<S, GrpcClassifier>;

/// A gRPC response body that records the call's outcome in the breaker
/// when the stream ends (a [`VerdictBody`](crate::verdict::VerdictBody)).
pub type GrpcBody<B> = BreakerBody<B, GrpcClassifier>;

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_breaker::keyed::KeyedBreakers;
    use bulwark_breaker::{Breaker, CircuitOpen, State as BState};
    use bulwark_core::BoxError;
    use bytes::Bytes;
    use http::uri::Authority;
    use http::HeaderMap;
    use http_body::{Body, Frame};
    use http_body_util::{BodyExt, Full};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tower::Layer;
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
