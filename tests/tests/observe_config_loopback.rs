//! Configuration, registry, health and admin together, against real servers
//! on 127.0.0.1: a client stack built from a configuration (with the HTTP
//! status classifier) opens its breaker against a failing upstream; the
//! health endpoint, served by a real axum server, turns degraded (503); a
//! reload keeps the breaker open; the admin route resets it and traffic
//! flows again.

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bulwark::breaker::State;
use bulwark::config::Loader;
use bulwark::http::classify::HttpClassifier;
use bulwark::observe::HealthRouter;
use bulwark::observe::Registry;
use bulwark::BoxError;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tower::{ServiceBuilder, ServiceExt};

#[derive(Default)]
struct Upstream {
    failing: AtomicBool,
    served: AtomicUsize,
}

async fn handler(AxumState(up): AxumState<Arc<Upstream>>) -> StatusCode {
    up.served.fetch_add(1, Ordering::SeqCst);
    if up.failing.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn call_status<S>(client: &S) -> u16
where
    S: tower::Service<String, Response = http::Response<()>, Error = BoxError> + Clone,
{
    client
        .clone()
        .oneshot("/".into())
        .await
        .unwrap()
        .status()
        .as_u16()
}

const CONFIG: &str = r#"
[breaker.upstream]
consecutive_failures = 3
open_for = "10m"

[retry.upstream]
max_attempts = 2
backoff = "constant"
initial_backoff = "1ms"

[timeout.upstream]
total = "10s"
attempt = "5s"
"#;

#[tokio::test]
async fn config_stack_health_reload_and_admin_over_loopback() {
    let up = Arc::new(Upstream::default());
    let upstream_url = serve(
        Router::new()
            .route("/", get(handler))
            .with_state(up.clone()),
    )
    .await;

    let registry = Registry::new();
    let config = Loader::new().toml(CONFIG).load().unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(
            config
                .client_layer("upstream", &registry)
                .unwrap()
                .classifier(HttpClassifier::new()),
        )
        .service_fn(move |path: String| {
            let http = http.clone();
            let url = format!("{upstream_url}{path}");
            async move {
                let (parts, _body) = http.get(url.parse()?).await?.into_parts();
                Ok::<_, BoxError>(http::Response::from_parts(parts, ()))
            }
        });
    let admin = serve(
        HealthRouter::new(registry.clone())
            .status_on_degraded(true)
            .admin("/admin")
            .into_router(),
    )
    .await;
    let probe = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = |method: &'static str, path: &str| {
        let probe = probe.clone();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{admin}{path}"))
            .body(Empty::new())
            .unwrap();
        async move {
            let res = probe.request(req).await.unwrap();
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };

    // Healthy to begin with.
    assert_eq!(call_status(&client).await, 200);
    let (status, json) = request("GET", "/health/resilience").await;
    assert_eq!(status, 200);
    assert_eq!(json["breakers"][0]["name"], "upstream");

    // The upstream fails with 503s: two calls of two attempts each; the
    // third failure opens the breaker, which rejects the fourth attempt.
    // That call still gets the upstream's last answer, the 503, not the
    // breaker's rejection (issue 15: errors that tell the truth).
    up.failing.store(true, Ordering::SeqCst);
    assert_eq!(call_status(&client).await, 503);
    assert_eq!(call_status(&client).await, 503);
    assert_eq!(up.served.load(Ordering::SeqCst), 1 + 3);
    // The next call is rejected at once.
    let err = client.clone().oneshot("/".into()).await.unwrap_err();
    assert!(bulwark::error::is_caused_by::<bulwark::error::CircuitOpen>(
        &*err
    ));
    assert_eq!(up.served.load(Ordering::SeqCst), 1 + 3);
    let breaker = registry.get_breaker("upstream").unwrap();
    assert_eq!(breaker.state(), State::Open);

    let (status, json) = request("GET", "/health/resilience").await;
    assert_eq!(status, 503);
    assert_eq!(json["status"], "degraded");
    assert_eq!(json["breakers"][0]["state"], "open");
    assert_eq!(json["breakers"][0]["consecutive_failures"], 3);

    // A reload with other thresholds keeps it open.
    let reloaded = Loader::new()
        .toml(CONFIG)
        .toml("[breaker.upstream]\nconsecutive_failures = 50")
        .load()
        .unwrap();
    reloaded.apply(&registry).unwrap();
    assert_eq!(breaker.state(), State::Open);

    // The upstream heals; an operator resets the breaker.
    up.failing.store(false, Ordering::SeqCst);
    let (status, json) = request("POST", "/admin/breakers/upstream/reset").await;
    assert_eq!(status, 200);
    assert_eq!(json["state"], "closed");
    assert_eq!(call_status(&client).await, 200);
    let (status, json) = request("GET", "/health/resilience").await;
    assert_eq!(status, 200);
    assert_eq!(json["status"], "healthy");
}
