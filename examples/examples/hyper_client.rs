//! Run with: cargo run --example hyper_client
//!
//! hyper-util's pooled client wrapped in Bulwark's client stack, against an
//! upstream on 127.0.0.1 that hangs on every third request. The attempt
//! timeout cuts the hung attempt, retry sends the (idempotent) GET again,
//! and every call succeeds within the total timeout.

use axum::routing::get;
use axum::Router;
use bulwark::http::ClientStack;
use bulwark::retry::RetryEvent;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n % 3 == 2 {
                    std::future::pending::<()>().await;
                }
                "pong"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = ClientStack::new()
        .total_timeout(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(200))
        .retry(|r| {
            r.on_event(|e: &RetryEvent| {
                if let RetryEvent::RetryScheduled { attempt, .. } = e {
                    println!("  attempt timed out; sending attempt {attempt}");
                }
            })
        })
        .build()?;
    let client = ServiceBuilder::new()
        .layer(stack)
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    for i in 0..5 {
        let req = http::Request::get(url.as_str()).body(Empty::new())?;
        let res = client.clone().oneshot(req).await?;
        let body = res.into_body().collect().await?.to_bytes();
        println!("call {i}: {body:?}");
    }
    println!(
        "upstream saw {} requests for 5 calls",
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}
