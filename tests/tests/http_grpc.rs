//! The client stack in front of a tonic channel, against a real tonic
//! server (the gRPC health service) on 127.0.0.1 with injected statuses:
//! `UNAVAILABLE` is retried, `INVALID_ARGUMENT` is not.

use bulwark::backoff::BackoffPolicy;
use bulwark::http::body::{ReplayBody, ReplayGuardLayer};
use bulwark::http::{ClientStack, GrpcClassifier, HttpReplay};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::{Service, ServiceBuilder};

/// Answers the next `left` calls with `code` instead of passing them on.
#[derive(Clone)]
struct Fault<S> {
    inner: S,
    script: Arc<Script>,
}

struct Script {
    code: Mutex<Code>,
    left: AtomicUsize,
    seen: AtomicUsize,
}

impl<S> Service<http::Request<Body>> for Fault<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, S::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.script.seen.fetch_add(1, Ordering::SeqCst);
        let inject = self
            .script
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if inject {
            let code = *self.script.code.lock().unwrap();
            let res = Status::new(code, "injected").into_http();
            return Box::pin(async move { Ok(res) });
        }
        Box::pin(self.inner.call(req))
    }
}

async fn serve() -> (Channel, Arc<Script>) {
    let script = Arc::new(Script {
        code: Mutex::new(Code::Ok),
        left: AtomicUsize::new(0),
        seen: AtomicUsize::new(0),
    });
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer_script = script.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(tower::layer::layer_fn(move |inner| Fault {
                inner,
                script: layer_script.clone(),
            }))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
        drop(_reporter);
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    (channel, script)
}

fn inject(script: &Script, code: Code, times: usize) {
    *script.code.lock().unwrap() = code;
    script.left.store(times, Ordering::SeqCst);
    script.seen.store(0, Ordering::SeqCst);
}

#[tokio::test]
async fn unavailable_is_retried_and_invalid_argument_is_not() {
    let (channel, script) = serve().await;
    let stack = ClientStack::new()
        .classifier(GrpcClassifier::new())
        // Every gRPC call is a POST: the status codes decide, as in gRPC's
        // own retry policy.
        .replay(HttpReplay::new().retry_all())
        .retry(|r| {
            r.max_attempts(3)
                .backoff(BackoffPolicy::constant(Duration::from_millis(5)))
        })
        .build()
        .unwrap()
        .replay_guard(ReplayGuardLayer::new());
    let svc = ServiceBuilder::new()
        .map_request(|r: http::Request<Body>| r.map(ReplayBody::new))
        .layer(stack)
        .map_request(|r: http::Request<ReplayBody<Body>>| r.map(Body::new))
        .service(channel);
    let mut client = HealthClient::new(svc);
    let check = || HealthCheckRequest {
        service: String::new(),
    };

    inject(&script, Code::Unavailable, 2);
    let res = client.check(check()).await.expect("third attempt answers");
    assert_eq!(res.into_inner().status(), ServingStatus::Serving);
    assert_eq!(script.seen.load(Ordering::SeqCst), 3);

    inject(&script, Code::InvalidArgument, 2);
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(script.seen.load(Ordering::SeqCst), 1, "not retried");

    inject(&script, Code::Unavailable, usize::MAX);
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        script.seen.load(Ordering::SeqCst),
        3,
        "gave up after 3 attempts"
    );
}
