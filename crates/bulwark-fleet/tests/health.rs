//! The fleet's view in the health JSON, served by the axum health router
//! over a real loopback connection: each shared layer's fleet state next
//! to the local instances, the link up with its last sync; after
//! `redis-server` is killed, the link in fallback, since when.
#![cfg(feature = "observe")]

mod support;

use bulwark_fleet::{Fleet, FleetRateLimiter, SharedBreakerLayer, SharedRetryBudget};
use bulwark_observe::HealthRouter;
use bulwark_observe::Registry;
use serde_json::Value;
use std::time::Duration;
use support::{eventually, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(addr: std::net::SocketAddr, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn entry<'a>(health: &'a Value, name: &str, kind: &str) -> &'a Value {
    health["fleet"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name && f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} {name} in {health}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_json_shows_the_fleet_and_its_fallback() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let registry = Registry::new();
    let fleet = Fleet::builder()
        .url(redis.url())
        .prefix(format!("h{}", fastrand::u32(..)))
        .sync_interval(Duration::from_millis(50))
        .op_timeout(Duration::from_millis(200))
        .registry(&registry)
        .build()
        .unwrap();
    let gate = SharedBreakerLayer::builder(&fleet, "payments")
        .build()
        .unwrap();
    let budget =
        SharedRetryBudget::new(&fleet, "payments", 0.2, 5, Duration::from_secs(10)).unwrap();
    let limiter = FleetRateLimiter::builder(&fleet, "provider")
        .limit(100, Duration::from_secs(1))
        .build()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !gate.snapshot().degraded
            && !budget.snapshot().degraded
            && !limiter.is_degraded())
        .await
        .is_some()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = HealthRouter::new(registry.clone()).into_router();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let health = get(addr, "/health/resilience").await;
    let b = entry(&health, "payments", "breaker");
    assert_eq!(b["link"], "up", "{b}");
    assert_eq!(b["state"], "closed");
    assert_eq!(b["healthy"], true);
    assert!(b["generation"].is_u64() && b["calls"].is_u64() && b["failures"].is_u64());
    assert!(b["last_sync_ms_ago"].as_u64().unwrap() < 2_000, "{b}");
    assert!(b["fallback_for_ms"].is_null());
    let r = entry(&health, "payments", "retry_budget");
    assert_eq!(r["link"], "up", "{r}");
    assert!(r["instances"].as_u64().unwrap() >= 1);
    let l = entry(&health, "provider", "rate_limiter");
    assert_eq!(l["link"], "up", "{l}");
    assert_eq!(l["limit_per_sec"], 100.0);
    let c = entry(&health, "fleet", "connection");
    assert_eq!(c["link"], "up", "{c}");
    assert_eq!(c["cluster"], false);
    assert_eq!(health["status"], "healthy");

    redis.down().await;
    assert!(
        eventually(Duration::from_secs(5), || gate.snapshot().degraded
            && budget.snapshot().degraded
            && limiter.is_degraded())
        .await
        .is_some(),
        "every layer falls back"
    );
    let health = get(addr, "/health/resilience").await;
    for (name, kind) in [
        ("payments", "breaker"),
        ("payments", "retry_budget"),
        ("provider", "rate_limiter"),
        ("fleet", "connection"),
    ] {
        let e = entry(&health, name, kind);
        assert_eq!(e["link"], "fallback", "{e}");
        assert!(e["fallback_for_ms"].as_u64().is_some(), "{e}");
        // The last sync is older than the fall-back.
        assert!(
            e["last_sync_ms_ago"].as_u64().unwrap() >= e["fallback_for_ms"].as_u64().unwrap(),
            "{e}"
        );
    }
    // A fall-back is not a degraded status: calls go on, decided locally.
    assert_eq!(health["status"], "healthy");

    // Back up: it rejoins by itself, and says so.
    redis.up().await;
    assert!(
        eventually(Duration::from_secs(10), || !gate.snapshot().degraded
            && !budget.snapshot().degraded
            && !limiter.is_degraded())
        .await
        .is_some()
    );
    let health = get(addr, "/health/resilience").await;
    assert_eq!(entry(&health, "payments", "breaker")["link"], "up");
}
