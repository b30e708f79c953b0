//! The gRPC client stack's breaker judges a server stream when it ends,
//! against a real tonic server (the gRPC health service's `Watch`) on
//! 127.0.0.1 whose streams are cut after their first message with the
//! `grpc-status` of the test's choice in the trailers.
//!
//! Time is paused and the stack has no timeouts (a paused clock jumps ahead
//! while the runtime waits on a socket, which would fire a timeout early).

use bulwark::breaker::State;
use bulwark::error::{find, CircuitOpen};
use bulwark::http::body::ReplayBody;
use bulwark::http::{ClientStack, GrpcClassifier, HttpReplay};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Endpoint;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::{Service, ServiceBuilder};

/// What the server does with a stream after its first message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum After {
    /// Ends it with `grpc-status: 14` (UNAVAILABLE) in the trailers.
    Unavailable = 0,
    /// Ends it with `grpc-status: 0` in the trailers.
    Ok = 1,
    /// Goes on (the health service's watch waits for the next change).
    Hang = 2,
}

/// Cuts every response stream after its first message, as `mode` says.
#[derive(Clone)]
struct Cut<S> {
    inner: S,
    mode: Arc<AtomicU8>,
}

impl<S> Service<http::Request<Body>> for Cut<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<http::Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let end = match self.mode.load(Ordering::SeqCst) {
            0 => Some("14"),
            1 => Some("0"),
            _ => None,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|inner| {
                Body::new(CutBody {
                    inner,
                    sent: false,
                    end,
                })
            }))
        })
    }
}

struct CutBody {
    inner: Body,
    sent: bool,
    end: Option<&'static str>,
}

impl hyper::body::Body for CutBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.sent {
            if let Some(code) = self.end.take() {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", code.parse().unwrap());
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
        }
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if matches!(&frame, Some(Ok(f)) if f.is_data()) {
            self.sent = true;
        }
        Poll::Ready(frame)
    }
}

async fn serve() -> (Endpoint, Arc<AtomicU8>) {
    let mode = Arc::new(AtomicU8::new(After::Unavailable as u8));
    let (reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer_mode = mode.clone();
    tokio::spawn(async move {
        let _reporter = reporter;
        tonic::transport::Server::builder()
            .layer(tower::layer::layer_fn(move |inner| Cut {
                inner,
                mode: layer_mode.clone(),
            }))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (
        Endpoint::from_shared(format!("http://{addr}")).unwrap(),
        mode,
    )
}

#[tokio::test(start_paused = true)]
async fn a_stream_ending_unavailable_opens_the_breaker_and_a_dropped_one_counts_nothing() {
    let (endpoint, mode) = serve().await;
    let layer = ClientStack::new()
        .classifier(GrpcClassifier::new())
        .replay(HttpReplay::new().retry_all())
        .no_total_timeout()
        .no_attempt_timeout()
        .breaker(|b| {
            b.consecutive_failures(2)
                .without_failure_rate()
                .open_for(Duration::from_secs(5))
                .permitted_probes(1)
                .successes_to_close(1)
        })
        .build()
        .unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let svc = ServiceBuilder::new()
        .map_request(|r: http::Request<Body>| r.map(ReplayBody::new))
        .layer(layer)
        .map_request(|r: http::Request<ReplayBody<Body>>| r.map(Body::new))
        .service(endpoint.connect_lazy());
    let mut client = HealthClient::new(svc);
    let watch = || HealthCheckRequest {
        service: String::new(),
    };
    let host = || breakers.entries().pop().unwrap().1;

    // Two streams that end UNAVAILABLE in their trailers. Their heads say
    // nothing: the breaker judges each one when its stream ends.
    for n in 0..2 {
        let mut stream = client.watch(watch()).await.unwrap().into_inner();
        assert!(stream.message().await.unwrap().is_some());
        assert_eq!(host().snapshot().failures, n, "not judged yet");
        let status = stream.message().await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    assert_eq!(host().state(), State::Open);
    assert_eq!(host().snapshot().failures, 2);
    let status = client.watch(watch()).await.unwrap_err();
    let open = find::<CircuitOpen>(&status).expect("rejected by the breaker");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));

    // Half-open: the probe's stream is dropped after one message. Nothing
    // is recorded and its probe slot is given back.
    tokio::time::advance(Duration::from_secs(5)).await;
    mode.store(After::Hang as u8, Ordering::SeqCst);
    let calls = host().snapshot().calls;
    let mut stream = client.watch(watch()).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    assert_eq!(host().state(), State::HalfOpen);
    assert_eq!(host().snapshot().probes_in_flight, 1);
    drop(stream);
    let snap = host().snapshot();
    assert_eq!(snap.probes_in_flight, 0, "probe slot given back");
    assert_eq!((snap.calls, snap.probe_successes), (calls, 0));

    // The next probe is admitted (one slot only): its stream ends OK and
    // closes the breaker; further OK streams count as successes.
    mode.store(After::Ok as u8, Ordering::SeqCst);
    for _ in 0..3 {
        let mut stream = client.watch(watch()).await.unwrap().into_inner();
        assert!(stream.message().await.unwrap().is_some());
        assert!(stream.message().await.unwrap().is_none(), "ended OK");
    }
    let snap = host().snapshot();
    assert_eq!(snap.state, State::Closed);
    assert_eq!(snap.failures, 0);
    assert_eq!(snap.calls, 2, "the two streams after the probe");
}

/// A trailers-only answer (an error before any message) is judged on its
/// head, without reading the body.
#[tokio::test(start_paused = true)]
async fn a_trailers_only_error_is_judged_at_once() {
    let layer = ClientStack::new()
        .classifier(GrpcClassifier::new())
        .no_retry()
        .no_total_timeout()
        .no_attempt_timeout()
        .breaker(|b| b.consecutive_failures(1).without_failure_rate())
        .build()
        .unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_: http::Request<String>| async {
            Ok::<_, std::io::Error>(tonic::Status::unavailable("down").into_http::<Body>())
        });
    let res = tower::ServiceExt::oneshot(
        svc,
        http::Request::post("http://a.example/pkg.Svc/Call")
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(!res.body().get_ref().is_pending());
    assert_eq!(breakers.entries().pop().unwrap().1.state(), State::Open);
    let _ = res.into_body().collect().await;
}
