//! Run with: cargo run --example tonic_grpc
//!
//! A tonic server and client, both with Bulwark's stacks, using the gRPC
//! health service from `tonic-health` (it ships its generated code: no
//! protoc). The server sheds load beyond 8 calls in flight; the client
//! classifies answers by `grpc-status`, retries `UNAVAILABLE` (every gRPC
//! call is a POST, so the client opts in to retrying any method, as gRPC's
//! own retry policy does), and keeps a breaker per host.
//!
//! The server reports NOT_SERVING for the first two checks of the
//! "payments" service, which the client sees as `UNAVAILABLE` and retries.

use bulwark::backoff::Backoff;
use bulwark::http::body::{ReplayBody, ReplayGuardLayer};
use bulwark::http::{ClientStack, GrpcClassifier, HttpReplay, ServerStack};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Endpoint;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Server: the health service, behind a bulkhead and a timeout whose
    // errors become gRPC statuses.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("payments", tonic_health::ServingStatus::Serving)
        .await;
    let flaky = Arc::new(AtomicU32::new(0));
    let server_stack = ServerStack::new()
        .max_concurrent(8)
        .timeout(Duration::from_secs(2))
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let gate = flaky.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(server_stack.map_errors_with(bulwark::http::status::grpc_error_response))
            .layer(tower::layer::layer_fn(move |inner| Unavailable {
                inner,
                left: gate.clone(),
            }))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    flaky.store(2, Ordering::SeqCst);

    // Client: the client stack around a tonic channel. Bodies are wrapped in
    // `ReplayBody` so a call can be sent again.
    let stack = ClientStack::new()
        .classifier(GrpcClassifier::new())
        .replay(HttpReplay::new().retry_all())
        .backoff(Backoff::constant(Duration::from_millis(50)))
        .build()?
        .replay_guard(ReplayGuardLayer::new());
    let channel = Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
    let svc = ServiceBuilder::new()
        .map_request(|r: http::Request<Body>| r.map(ReplayBody::new))
        .layer(stack)
        .map_request(|r: http::Request<ReplayBody<Body>>| r.map(Body::new))
        .service(channel);
    let mut client = HealthClient::new(svc);

    let res = client
        .check(HealthCheckRequest {
            service: "payments".into(),
        })
        .await?;
    println!(
        "payments: {:?} (after two UNAVAILABLE answers, retried)",
        res.into_inner().status()
    );
    let err = client
        .check(HealthCheckRequest {
            service: "unknown".into(),
        })
        .await
        .unwrap_err();
    println!(
        "unknown: {:?} (NOT_FOUND is the caller's problem: not retried)",
        err.code()
    );
    Ok(())
}

/// Answers the next `left` calls with UNAVAILABLE: a stand-in for a
/// server that is restarting.
#[derive(Clone)]
struct Unavailable<S> {
    inner: S,
    left: Arc<AtomicU32>,
}

impl<S> tower::Service<http::Request<Body>> for Unavailable<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let down = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if down {
            println!("server: answering UNAVAILABLE (restarting)");
            let res = tonic::Status::unavailable("restarting").into_http();
            return Box::pin(async move { Ok(res) });
        }
        Box::pin(self.inner.call(req))
    }
}
