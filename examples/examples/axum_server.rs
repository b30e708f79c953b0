//! Run with: cargo run --example axum_server
//!
//! An axum server protected by Bulwark's server stack: at most 2 requests
//! are handled at once, the rest are shed at once with a 503; a request
//! that runs past its timeout gets a 503 instead of hanging. No
//! `HandleErrorLayer` closure: the stack maps its own errors to responses.
//!
//! The stack is registered (`.registry(&registry, "server")`): its shed
//! answers and timeouts show in health and metrics, and its bulkhead is the
//! service's readiness (`HealthRouter`'s `/health/ready`).
//!
//! The example starts the server on 127.0.0.1, sends it a burst of 6 slow
//! requests and one request that is too slow, prints the statuses and what
//! the registry counted, and exits.

use axum::routing::get;
use axum::Router;
use bulwark::http::ServerStack;
use bulwark::observe::Registry;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let registry = Registry::new();
    let stack = ServerStack::new()
        .registry(&registry, "server")
        .bulkhead(|b| b.max_concurrent(2))
        .timeout(Duration::from_millis(300))
        .build()?;
    let app = Router::new()
        .route(
            "/work",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                "done\n"
            }),
        )
        .route(
            "/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "never\n"
            }),
        )
        .layer(stack);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("listening on http://{addr}");

    let client = reqwest::Client::new();
    let burst = (0..6).map(|_| client.get(format!("http://{addr}/work")).send());
    for (i, res) in futures_join_all(burst).await.into_iter().enumerate() {
        let res = res?;
        println!("burst request {i}: {}", res.status());
    }
    let res = client.get(format!("http://{addr}/stuck")).send().await?;
    println!(
        "stuck request: {} ({})",
        res.status(),
        res.text().await?.trim()
    );
    let health = registry.health();
    println!(
        "registry: {} shed by bulkhead `server`, {} timed out; ready: {}",
        health.bulkheads[0].rejections,
        health.timeouts[0].request,
        registry.readiness().ready
    );
    Ok(())
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
