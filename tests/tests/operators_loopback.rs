//! What operators see of the ready-made stacks, on 127.0.0.1: an axum
//! server behind a `ServerStack` registered in a registry, loaded past its
//! capacity by a `ClientStack` registered in the same registry. The
//! Prometheus text (`metrics-exporter-prometheus`), `/health/resilience` and
//! `/health/ready` must count exactly what the clients saw: every shed 503
//! in `bulwark_bulkhead_rejected_total{name="server"}`, the server's own
//! timeout in `bulwark_timeouts_total{name="server"}`, the client's per-host
//! breakers as keyed breakers `upstream`.
//!
//! Handlers wait on a gate opened only once the server holds its capacity,
//! so what is admitted and what is shed does not depend on machine speed.
//! (One binary, one test: the Prometheus recorder is process-wide.)

use axum::routing::get;
use axum::Router;
use bulwark::http::response::BulwarkError;
use bulwark::http::{ClientStack, ServerStack, SHED_HEADER};
use bulwark::observe::HealthRouter;
use bulwark::observe::Registry;
use bulwark::timeout::{error::Limit, Elapsed};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::PrometheusBuilder;
use std::time::Duration;
use tokio::sync::watch;
use tower::{ServiceBuilder, ServiceExt};

const CAPACITY: usize = 4;
const OVER: usize = 6;
const LIMIT: Duration = Duration::from_secs(30);

/// The value of the Prometheus sample `metric` whose labels include every
/// one of `labels` (0 when there is none).
fn sample(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn server_and_client_stacks_show_what_clients_saw() {
    // The recorder first: handles made before it stay no-ops.
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    let registry = Registry::new();

    // The service: a gated route, and one that never answers.
    let (entered_tx, mut entered) = watch::channel(0usize);
    let (gate, open) = watch::channel(false);
    let work = move || {
        let (entered, mut open) = (entered_tx.clone(), open.clone());
        async move {
            entered.send_modify(|n| *n += 1);
            open.wait_for(|o| *o).await.unwrap();
            "done"
        }
    };
    let server_stack = ServerStack::new()
        .bulkhead(|b| b.max_concurrent(CAPACITY))
        .registry(&registry, "server")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(work))
        .route("/slow", get(std::future::pending::<&'static str>))
        // A handler whose dependency failed: the inventory reset the
        // connection, or the payments call timed out.
        .route(
            "/reset",
            get(|| async { Err::<&str, _>(BulwarkError("inventory: connection reset".into())) }),
        )
        .route(
            "/late",
            get(|| async {
                let late = Elapsed::new(Limit::Request, Duration::from_secs(2));
                Err::<&str, _>(BulwarkError(late.into()))
            }),
        )
        .layer(server_stack);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The operators' port: metrics and health.
    let scrape = registry.clone();
    let ops = Router::new()
        .route(
            "/metrics",
            get(move || {
                let (registry, prometheus) = (scrape.clone(), prometheus.clone());
                async move {
                    registry.update_gauges();
                    prometheus.render()
                }
            }),
        )
        .merge(HealthRouter::new(registry.clone()).into_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, ops).await.unwrap() });

    // The clients: one ClientStack (no retry, so that each shed answer is
    // one answer the caller sees) registered as `upstream`.
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(
            ClientStack::new()
                .no_retry()
                .registry(&registry, "upstream")
                .build()
                .unwrap(),
        )
        .service(http.clone());
    let get_path = |path: &str, timeout: Option<&str>| {
        let mut req = http::Request::get(format!("http://{addr}{path}"));
        if let Some(t) = timeout {
            req = req.header("grpc-timeout", t);
        }
        client.clone().oneshot(req.body(Empty::new()).unwrap())
    };
    let probe = |path: &'static str| {
        let http = http.clone();
        async move {
            let res = http
                .get(format!("http://{ops_addr}{path}").parse().unwrap())
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();

    // Capacity taken...
    let held: Vec<_> = (0..CAPACITY)
        .map(|_| tokio::spawn(get_path("/", None)))
        .collect();
    tokio::time::timeout(LIMIT, entered.wait_for(|n| *n == CAPACITY))
        .await
        .unwrap()
        .unwrap();
    // ...then more: each shed at once, and the client sees it.
    let mut shed_seen = 0;
    for _ in 0..OVER {
        let res = tokio::time::timeout(LIMIT, get_path("/", None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()[SHED_HEADER], "1");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"service unavailable", "a generic body");
        shed_seen += 1;
    }

    // Readiness: this service is full.
    let (status, body) = probe("/health/ready").await;
    assert_eq!(status, 503, "{body}");
    let ready = json(&body);
    assert_eq!(ready["bulkheads"][0]["name"], "server");
    assert_eq!(ready["bulkheads"][0]["in_flight"], CAPACITY);

    // Prometheus counts what the clients saw.
    let (_, text) = probe("/metrics").await;
    let rejected = sample(
        &text,
        "bulwark_bulkhead_rejected_total",
        &["name=\"server\"", "reason=\"at_capacity\""],
    );
    assert_eq!(rejected, f64::from(shed_seen), "{text}");
    assert_eq!(
        sample(&text, "bulwark_bulkhead_in_flight", &["name=\"server\""]),
        CAPACITY as f64
    );
    assert_eq!(
        sample(&text, "bulwark_bulkhead_limit", &["name=\"server\""]),
        CAPACITY as f64
    );
    // The client's per-host breakers: one host, and the shed answers did
    // not open it (they are throttling, not failures).
    assert_eq!(
        sample(&text, "bulwark_keyed_breaker_keys", &["name=\"upstream\""]),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "bulwark_keyed_breaker_open_keys",
            &["name=\"upstream\""]
        ),
        0.0
    );

    // The health JSON says the same.
    let (status, body) = probe("/health/resilience").await;
    assert_eq!(status, 200);
    let health = json(&body);
    let server = health["bulkheads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "server")
        .unwrap()
        .clone();
    assert_eq!(server["rejections"], shed_seen);
    assert_eq!(server["serving"], true);
    let upstream = &health["keyed_breakers"][0];
    assert_eq!(upstream["name"], "upstream");
    assert_eq!(upstream["keys"], 1);
    assert_eq!(upstream["healthy"], true);

    // The gate opens: the held calls are answered, the service is ready.
    gate.send(true).unwrap();
    for h in held {
        let res = tokio::time::timeout(LIMIT, h)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(probe("/health/ready").await.0, 200);

    // The server's own timeout (the caller's 50 ms deadline): one 503, one
    // count under the server's name, none under the client's.
    let res = tokio::time::timeout(LIMIT, get_path("/slow", Some("50m")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 503);
    let (_, text) = probe("/metrics").await;
    assert_eq!(
        sample(
            &text,
            "bulwark_timeouts_total",
            &["name=\"server\"", "limit=\"request\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "bulwark_timeouts_total",
            &["name=\"upstream/attempt\""]
        ),
        0.0
    );
    let health = json(&probe("/health/resilience").await.1);
    let timeouts = health["timeouts"].as_array().unwrap();
    let count = |name: &str| {
        timeouts
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["request"].clone())
    };
    assert_eq!(count("server"), Some(1.into()));
    assert_eq!(count("upstream/total"), Some(0.into()));

    // A dependency's errors, answered by the handler: no internals in the
    // body, and a dependency's timeout is a 504 (the server's own was 503).
    for (path, status, body) in [
        ("/reset", 500, "internal server error"),
        ("/late", 504, "gateway timeout"),
    ] {
        let res = get_path(path, None).await.unwrap();
        assert_eq!(res.status(), status, "{path}");
        let got = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], body.as_bytes(), "{path}");
    }
}
