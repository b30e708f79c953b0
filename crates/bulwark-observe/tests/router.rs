//! The health router, served by a real axum server on 127.0.0.1.
#![cfg(feature = "axum")]

use bulwark_breaker::{Breaker, State};
use bulwark_observe::HealthRouter;
use bulwark_observe::Registry;
use http_body_util::BodyExt;
use std::net::SocketAddr;

async fn serve(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

/// One HTTP/1.1 request over a fresh connection; (status, JSON body).
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status: u16 = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk is enough for these small bodies.
        body.split("\r\n").nth(1).unwrap_or("").to_owned()
    } else {
        body.to_owned()
    };
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body).unwrap()
    };
    (status, json)
}

#[tokio::test]
async fn serves_health_200_or_503_and_admin_routes() {
    let registry = Registry::new();
    let breaker = registry.breaker("payments", Breaker::builder()).unwrap();
    let app = HealthRouter::new(registry.clone())
        .status_on_degraded(true)
        .admin("/admin/resilience")
        .into_router();
    let lenient = HealthRouter::new(registry.clone())
        .path("/health/lenient")
        .no_ready_route()
        .into_router();
    let (addr, server) = serve(app.merge(lenient)).await;

    let (status, json) = request(addr, "GET", "/health/resilience").await;
    assert_eq!(status, 200);
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["breakers"][0]["name"], "payments");
    assert_eq!(json["breakers"][0]["state"], "closed");

    let (status, json) = request(
        addr,
        "POST",
        "/admin/resilience/breakers/payments/force-open",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json["state"], "forced_open");
    assert_eq!(breaker.state(), State::ForcedOpen);

    let (status, json) = request(addr, "GET", "/health/resilience").await;
    assert_eq!(status, 503);
    assert_eq!(json["status"], "degraded");
    // Without status_on_degraded: 200 with the same body.
    let (status, json) = request(addr, "GET", "/health/lenient").await;
    assert_eq!(status, 200);
    assert_eq!(json["status"], "degraded");

    let (status, _) = request(
        addr,
        "POST",
        "/admin/resilience/breakers/payments/force-closed",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(breaker.state(), State::ForcedClosed);
    let (status, json) = request(addr, "POST", "/admin/resilience/breakers/payments/reset").await;
    assert_eq!(status, 200);
    assert_eq!(json["state"], "closed");
    assert_eq!(breaker.state(), State::Closed);

    let (status, json) = request(addr, "POST", "/admin/resilience/breakers/nope/reset").await;
    assert_eq!(status, 404);
    assert_eq!(json["error"], "no breaker named `nope`");

    server.abort();
}

#[tokio::test]
async fn no_admin_routes_unless_asked() {
    let registry = Registry::new();
    registry.breaker("payments", Breaker::builder()).unwrap();
    let app = HealthRouter::new(registry).into_router();
    let response = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::post("/admin/resilience/breakers/payments/force-open")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

#[tokio::test]
async fn readiness_follows_the_serving_bulkhead_not_the_dependencies() {
    use bulwark_bulkhead::BulkheadLayer;
    use tower::{Service, ServiceBuilder, ServiceExt};
    let registry = Registry::new();
    let payments = registry.breaker("payments", Breaker::builder()).unwrap();
    let shed = registry.serving_bulkhead("server", BulkheadLayer::builder().max_concurrent(1));
    let (addr, server) = serve(HealthRouter::new(registry.clone()).into_router()).await;

    // A dependency's breaker opens: dependencies degrade, readiness stays.
    payments.force_open();
    let (status, ready) = request(addr, "GET", "/health/ready").await;
    assert_eq!((status, &ready["ready"]), (200, &serde_json::json!(true)));
    assert_eq!(ready["bulkheads"][0]["name"], "server");
    let (status, health) = request(addr, "GET", "/health/resilience").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")));

    // The service's own bulkhead is full: not ready.
    let mut svc = ServiceBuilder::new()
        .layer(shed)
        .service_fn(|_: ()| std::future::pending::<Result<(), bulwark_core::BoxError>>());
    svc.ready().await.unwrap();
    let held = tokio::spawn(svc.call(()));
    tokio::task::yield_now().await;
    let (status, ready) = request(addr, "GET", "/health/ready").await;
    assert_eq!((status, &ready["ready"]), (503, &serde_json::json!(false)));
    assert_eq!(ready["bulkheads"][0]["saturated"], true);
    held.abort();
    let _ = held.await;
    let (status, _) = request(addr, "GET", "/health/ready").await;
    assert_eq!(status, 200);
    server.abort();
}
