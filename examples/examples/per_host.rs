//! Run with: cargo run --example per_host
//!
//! One client, three upstreams on 127.0.0.1, one circuit breaker per host
//! (the client stack keys its breakers by authority). The upstream on the
//! second port is down: its breaker opens and its calls fail fast, while
//! the other two hosts keep being served.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bulwark::error::{is_caused_by, CircuitOpen};
use bulwark::http::ClientStack;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

async fn upstream(healthy: bool) -> Result<String, std::io::Error> {
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let app = Router::new().route("/", get(move || async move { status }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let urls = [
        upstream(true).await?,
        upstream(false).await?,
        upstream(true).await?,
    ];
    let layer = ClientStack::new()
        .no_retry()
        .breaker(|b| b.name("hosts").consecutive_failures(3))
        .build()?;
    let breakers = layer.breakers().expect("breaker on").clone();
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    for round in 0..5 {
        let mut line = format!("round {round}:");
        for url in &urls {
            let req = http::Request::get(url.as_str()).body(Empty::new())?;
            let what = match client.clone().oneshot(req).await {
                Ok(res) => res.status().to_string(),
                Err(e) if is_caused_by::<CircuitOpen>(&*e) => "breaker open (not sent)".into(),
                Err(e) => e.to_string(),
            };
            line.push_str(&format!("  {what:<24}"));
        }
        println!("{line}");
    }
    for (host, breaker) in breakers.entries() {
        println!("{host}: {:?}", breaker.state());
    }
    Ok(())
}
