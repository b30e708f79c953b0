//! The axum server stack on 127.0.0.1: it sheds a burst with 503s and never
//! runs more handlers than its limit, and Bulwark's errors become the
//! documented statuses. Real time, but nothing depends on machine speed:
//! handlers that must be slow wait on a gate (or forever), never on a sleep.

use axum::routing::get;
use axum::Router;
use bulwark::breaker::{Breaker, CircuitBreakerLayer};
use bulwark::http::response::{ErrorMapping, MapErrorsLayer};
use bulwark::http::ServerStack;
use bulwark::BoxError;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn status(url: String) -> (StatusCode, http::HeaderMap) {
    let res = client()
        .oneshot(http::Request::get(url).body(Empty::new()).unwrap())
        .await
        .unwrap();
    (res.status(), res.headers().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheds_a_burst_with_503_and_never_exceeds_its_limit() {
    const LIMIT: usize = 4;
    const BURST: usize = 24;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
    let (open_tx, open) = watch::channel(false);
    let handler = {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        move || {
            let (in_flight, peak, entered, mut open) = (
                in_flight.clone(),
                peak.clone(),
                entered_tx.clone(),
                open.clone(),
            );
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                entered.send(()).unwrap();
                open.wait_for(|o| *o).await.unwrap();
                in_flight.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        }
    };
    let stack = ServerStack::new()
        .bulkhead(|b| b.max_concurrent(LIMIT))
        .build()
        .unwrap();
    let url = serve(Router::new().route("/", get(handler)).layer(stack)).await;

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        calls.spawn(status(format!("{url}/")));
    }
    // Every request beyond the limit is answered at once, while the first
    // LIMIT are still held at the gate.
    for _ in 0..LIMIT {
        entered.recv().await.unwrap();
    }
    let mut shed = 0;
    while shed < BURST - LIMIT {
        let (s, headers) = calls.join_next().await.unwrap().unwrap();
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        shed += 1;
    }
    open_tx.send(true).unwrap();
    let mut ok = 0;
    while let Some(r) = calls.join_next().await {
        assert_eq!(r.unwrap().0, StatusCode::OK);
        ok += 1;
    }
    assert_eq!(ok, LIMIT);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        LIMIT,
        "never more than the limit"
    );
}

#[tokio::test]
async fn errors_become_the_documented_statuses() {
    let forever = || std::future::pending::<&'static str>();
    // A server timeout: 503 by default, 408 when configured.
    let slow = ServerStack::new()
        .timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let slow_408 = ServerStack::new()
        .timeout(Duration::from_millis(20))
        .mapping(ErrorMapping::server().timeout_status(StatusCode::REQUEST_TIMEOUT))
        .build()
        .unwrap();
    // An open breaker in front of a handler: 503 with Retry-After.
    let tripped = Breaker::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(30))
        .build()
        .unwrap();
    let _ = tripped.call_sync(|| Err::<(), _>("down"));
    // A full bulkhead mapped to 429, and any other error to 500.
    let shed_429 = ServerStack::new()
        .bulkhead(|b| b.max_concurrent(1))
        .shed_status(StatusCode::TOO_MANY_REQUESTS)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/slow", get(forever).layer(slow))
        .route("/slow408", get(forever).layer(slow_408))
        .route(
            "/open",
            get(|| async { "unreachable" })
                .layer::<_, BoxError>(CircuitBreakerLayer::new(tripped))
                .layer(ServerStack::new().build().unwrap()),
        )
        .route(
            "/other",
            get(|| async { "x" })
                .layer::<_, BoxError>(tower::layer::layer_fn(|_inner: axum::routing::Route| {
                    tower::service_fn(|_req: axum::extract::Request| async {
                        Err::<axum::response::Response, BoxError>("kaput".into())
                    })
                }))
                .layer(MapErrorsLayer::new(ErrorMapping::server())),
        )
        .route("/shed", get(forever).layer(shed_429.clone()));
    let url = serve(app).await;

    assert_eq!(status(format!("{url}/slow")).await.0, 503);
    assert_eq!(status(format!("{url}/slow408")).await.0, 408);
    let (s, headers) = status(format!("{url}/open")).await;
    assert_eq!(s, 503);
    let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&after), "{after}");
    assert_eq!(status(format!("{url}/other")).await.0, 500);
    // Hold the one permit, then the next request is shed with 429.
    let held = tokio::spawn(status(format!("{url}/shed")));
    let handle = shed_429.bulkhead().unwrap();
    while handle.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(status(format!("{url}/shed")).await.0, 429);
    held.abort();
}
