//! Run with: cargo run --example reqwest_client
//!
//! A `reqwest::Client` (a `tower::Service<reqwest::Request>`) wrapped in
//! Bulwark's client stack. The upstream on 127.0.0.1 answers the first two
//! calls with `503 Retry-After: 1`: the stack waits the second the server
//! asked for, retries, and the caller sees one successful answer.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bulwark::http::ClientStack;
use bulwark::retry::RetryEvent;
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
                if n < 2 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "1")],
                        "busy",
                    )
                } else {
                    (StatusCode::OK, [("retry-after", "0")], "hello")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = ClientStack::new()
        .total_timeout(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(1))
        .retry(|r| {
            r.on_event(|e: &RetryEvent| {
                if let RetryEvent::RetryScheduled { attempt, delay, .. } = e {
                    println!("retrying (attempt {attempt}) in {delay:?}, as the server asked");
                }
            })
        })
        .build()?;
    let client = ServiceBuilder::new()
        .layer(stack)
        .service(reqwest::Client::new());

    let started = tokio::time::Instant::now();
    let res = client
        .oneshot(reqwest::Request::new(reqwest::Method::GET, url.parse()?))
        .await?;
    println!(
        "{} {:?} after {} calls in {:.1?}",
        res.status(),
        res.text().await?,
        calls.load(Ordering::SeqCst),
        started.elapsed()
    );
    Ok(())
}
