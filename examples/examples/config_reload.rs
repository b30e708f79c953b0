//! Run with: cargo run --example config_reload
//!
//! A config-driven HTTP client with reload: the client stack of upstream
//! `payments` comes from a TOML file (`http_client_stack`: the HTTP stack,
//! with Retry-After, idempotent-only retries and per-host breakers), its
//! parts registered for health. A `Reloader` watches the file (and SIGHUP):
//! the example edits the file once, prints the reload's report (what
//! applied in place, what needs a rebuild) and rebuilds the stack from the
//! new configuration, keeping the breakers' state.

use axum::routing::get;
use axum::Router;
use bulwark::config::reload::Reloader;
use bulwark::observe::Registry;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // An upstream on 127.0.0.1.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        let app = Router::new().route("/", get(|| async { "paid\n" }));
        axum::serve(listener, app).await
    });

    // The configuration file.
    let dir = std::env::temp_dir().join(format!("bulwark-config-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bulwark.toml");
    std::fs::write(
        &file,
        "[timeout.payments]\ntotal = \"2s\"\n[breaker.payments]\nconsecutive_failures = 5\n",
    )?;

    let registry = Registry::new();
    let reloader = Reloader::new(&file, &registry)?;
    let mut updates = reloader.subscribe();
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let build = |config: &bulwark::config::ResilienceConfig| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
        let layer = config.http_client_stack("payments", &registry)?.build()?;
        Ok(ServiceBuilder::new().layer(layer).service(http.clone()))
    };
    let mut payments = build(&reloader.config())?;
    let (reports, mut reported) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(reloader.watch(move |report| {
        let _ = reports.send(report.map(|r| r.to_string()));
    })?);

    let req = || http::Request::get(&url).body(Empty::new()).unwrap();
    println!(
        "before: {}",
        payments.clone().oneshot(req()).await?.status()
    );

    // An operator edits the file.
    std::fs::write(
        &file,
        "[timeout.payments]\ntotal = \"5s\"\n[breaker.payments]\nconsecutive_failures = 3\n",
    )?;
    match tokio::time::timeout(Duration::from_secs(10), reported.recv()).await {
        Ok(Some(Ok(report))) => println!("reloaded: {report}"),
        Ok(Some(Err(e))) => println!("not reloaded: {e}"),
        _ => println!("no reload seen within 10 s"),
    }
    // The total timeout lives in the stack: build it again (same breakers).
    if updates.has_changed()? {
        payments = build(&updates.borrow_and_update())?;
    }
    println!("after: {}", payments.oneshot(req()).await?.status());
    let health = registry.health();
    println!(
        "registry: keyed breakers `{}`, {} host(s)",
        health.keyed_breakers[0].name, health.keyed_breakers[0].keys
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
