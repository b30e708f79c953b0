//! Run with: cargo run --example prometheus
//!
//! An axum app exposing Bulwark's metrics to Prometheus at `/metrics`
//! (rendered by `metrics-exporter-prometheus`) and the resilience health at
//! `/health/resilience`. It serves on 127.0.0.1, sends itself some traffic
//! through a resilient client stack (one upstream failing, so its breaker
//! opens), scrapes itself once, prints what Prometheus would see, and exits.
//!
//! Alert rules and a Grafana dashboard for these metrics are in
//! `examples/observability/`.

use axum::routing::get;
use axum::Router;
use bulwark::observe::metrics::{self as bulwark_metrics, MetricsLayer};
use bulwark::observe::HealthRouter;
use bulwark::observe::Registry;
use bulwark::prelude::*;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // 1. The recorder first: metric handles made before it stay no-ops.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(bulwark_metrics::names::CALL_DURATION_SECONDS.to_owned()),
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
        )?
        .install_recorder()?;
    bulwark_metrics::describe();

    // 2. Instances from the registry report metrics on their own.
    let registry = Registry::new();
    let breaker = registry.breaker(
        "inventory",
        Breaker::builder()
            .consecutive_failures(3)
            .open_for(Duration::from_secs(30)),
    )?;
    let client = ServiceBuilder::new()
        .layer(MetricsLayer::new("inventory"))
        .layer(
            RetryLayer::new()
                .max_attempts(2)
                .backoff(BackoffPolicy::constant(Duration::from_millis(1)))
                .on_event(bulwark_metrics::RetryMetrics::new("inventory")),
        )
        .layer(CircuitBreakerLayer::new(breaker))
        .layer(registry.bulkhead("inventory", BulkheadLayer::builder().max_concurrent(8)))
        .service_fn(|item: u32| async move {
            // Items above 5 are on a shard that is down.
            if item > 5 {
                Err::<u32, BoxError>("shard unavailable".into())
            } else {
                Ok(item)
            }
        });

    // 3. The app: /metrics refreshes the gauges read from handles, then renders.
    let scrape_registry = registry.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = scrape_registry.clone();
                let prometheus = prometheus.clone();
                async move {
                    registry.update_gauges();
                    prometheus.render()
                }
            }),
        )
        // /health/resilience (the dependencies, for dashboards) and
        // /health/ready (this service, for load balancers).
        .merge(HealthRouter::new(registry.clone()).into_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving http://{addr}/metrics and http://{addr}/health/resilience");

    // 4. Some traffic: the failing shard opens the breaker.
    for item in 0..10 {
        match client.clone().oneshot(item).await {
            Ok(v) => println!("item {item}: ok {v}"),
            Err(e) => println!("item {item}: {e}"),
        }
    }

    // 5. Scrape ourselves once, print, exit.
    let http = reqwest::Client::new();
    let work = async {
        let metrics = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let health = http
            .get(format!("http://{addr}/health/resilience"))
            .send()
            .await?;
        let status = health.status();
        let health = health.text().await?;
        Ok::<_, BoxError>((metrics, status, health))
    };
    let (metrics, status, health) = tokio::time::timeout(Duration::from_secs(10), work).await??;
    println!("\n--- GET /metrics (bulwark_ lines) ---");
    for line in metrics.lines().filter(|l| l.contains("bulwark_")) {
        println!("{line}");
    }
    println!("\n--- GET /health/resilience: {status} ---\n{health}");
    server.abort();
    Ok(())
}
