//! Run with: cargo run --example tonic_grpc
//!
//! A tonic server and client, both with Bulwark's gRPC presets, using the
//! gRPC health service from `tonic-health` (it ships its generated code: no
//! protoc). The server sheds load beyond 8 calls in flight
//! (`RESOURCE_EXHAUSTED` with pushback); the client classifies answers by
//! `grpc-status`, retries `UNAVAILABLE`, keeps its breaker per origin (the
//! channel's address: above a tonic `Channel` requests carry none) and fails
//! with the right `tonic::Status`.
//!
//! The server reports UNAVAILABLE for the first two checks, which the
//! client retries.

use bulwark::backoff::BackoffPolicy;
use bulwark::http::grpc::{GrpcClientStack, GrpcServerStack};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Endpoint;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Server: the health service, behind a bulkhead and a timeout whose
    // errors become gRPC statuses.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("payments", tonic_health::ServingStatus::Serving)
        .await;
    let flaky = Arc::new(AtomicU32::new(0));
    let server_stack = GrpcServerStack::new()
        .server_stack(|s| {
            s.bulkhead(|b| b.max_concurrent(8))
                .timeout(Duration::from_secs(2))
        })
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let gate = flaky.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(server_stack)
            .layer(tower::layer::layer_fn(move |inner| Unavailable {
                inner,
                left: gate.clone(),
            }))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    flaky.store(2, Ordering::SeqCst);

    // Client: the gRPC preset around a tonic channel, its breaker keyed on
    // the channel's address.
    let origin = addr.to_string();
    let stack = GrpcClientStack::new(origin.clone())
        .client_stack(|s| {
            s.retry(|r| r.backoff(BackoffPolicy::constant(Duration::from_millis(50))))
        })
        .build()?;
    let channel = Endpoint::from_shared(format!("http://{origin}"))?.connect_lazy();
    let svc = stack.layer(channel);
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
    for (host, breaker) in stack.breakers().map(|b| b.entries()).unwrap_or_default() {
        println!("breaker for {host}: {}", breaker.state());
    }
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
