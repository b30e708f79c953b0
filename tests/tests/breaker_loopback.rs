//! The circuit breaker in front of a real HTTP client talking to a real
//! server on 127.0.0.1, with faults injected into the server: it opens
//! against a failing upstream (and stops sending it traffic), probes after
//! the open duration and closes when the upstream has healed. Time is paused:
//! only the open duration is "waited", virtually.

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bulwark::breaker::{Breaker, CircuitBreakerLayer, State};
use bulwark::error::{find, CircuitOpen};
use bulwark::{BoxError, Outcome};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

/// The fault injected into the upstream, and what it has served.
#[derive(Default)]
struct Upstream {
    failing: AtomicBool,
    served: AtomicUsize,
}

async fn handler(AxumState(up): AxumState<Arc<Upstream>>) -> (StatusCode, &'static str) {
    up.served.fetch_add(1, Ordering::SeqCst);
    if up.failing.load(Ordering::SeqCst) {
        (StatusCode::INTERNAL_SERVER_ERROR, "injected failure")
    } else {
        (StatusCode::OK, "fine")
    }
}

async fn serve() -> (String, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    let app = Router::new()
        .route("/", get(handler))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/"), up)
}

/// 5xx is a failure; the response is still returned as a response.
fn by_status<B>(result: &Result<http::Response<B>, BoxError>) -> Outcome {
    match result {
        Ok(r) if r.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::of_error(e),
    }
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_on_a_failing_upstream_and_recovers_when_it_heals() {
    let (url, upstream) = serve().await;
    let breaker = Breaker::builder()
        .name("loopback")
        .without_failure_rate()
        .consecutive_failures(3)
        .open_for(Duration::from_secs(5))
        .permitted_probes(1)
        .successes_to_close(2)
        .failures_to_reopen(1)
        .build()
        .unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(by_status))
        .service(http);
    let get = || {
        http::Request::get(url.as_str())
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    // Healthy.
    for _ in 0..5 {
        let resp = client.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(breaker.state(), State::Closed);

    // Outage: three 500s (returned as responses) open the breaker.
    upstream.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let resp = client.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(breaker.state(), State::Open);
    let served = upstream.served.load(Ordering::SeqCst);
    assert_eq!(served, 8);

    // Open: rejected locally, the upstream sees nothing.
    for _ in 0..10 {
        let err = client.ready().await.unwrap().call(get()).await.unwrap_err();
        let open = find::<CircuitOpen>(&*err).expect("rejected by the breaker");
        assert_eq!(open.name(), Some("loopback"));
    }
    assert_eq!(
        upstream.served.load(Ordering::SeqCst),
        served,
        "no traffic while open"
    );

    // Still down when the first probe goes: it fails, the breaker re-opens.
    tokio::time::advance(Duration::from_secs(5)).await;
    let resp = client.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(breaker.state(), State::Open);

    // Healed: the next probes succeed and close it.
    upstream.failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    for _ in 0..2 {
        let resp = client.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(upstream.served.load(Ordering::SeqCst), served + 3);
    let reasons: Vec<_> = breaker
        .snapshot()
        .history
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        reasons,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn connection_refused_is_a_failure_and_opens_the_breaker() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let breaker = Breaker::builder()
        .without_failure_rate()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(by_status))
        .service(http);
    let url = format!("http://{addr}/");
    for _ in 0..2 {
        let req = http::Request::get(url.as_str())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let err = client.clone().oneshot(req).await.unwrap_err();
        assert!(
            find::<CircuitOpen>(&*err).is_none(),
            "a transport error, not a rejection: {err}"
        );
    }
    assert_eq!(breaker.state(), State::Open);
    let req = http::Request::get(url.as_str())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let err = client.clone().oneshot(req).await.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some());
}
