//! The client stack as a `reqwest-middleware` middleware against an axum
//! server on 127.0.0.1 with injected failures: `client.get(url).send()`
//! keeps working, a GET is retried, a POST is not, and an open breaker is an
//! error whose chain names it.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bulwark::backoff::BackoffPolicy;
use bulwark::error::CircuitOpen;
use bulwark::http::middleware::BulwarkMiddleware;
use bulwark::http::ClientStack;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A server whose next `fail` answers are 503; counts its calls.
struct Script {
    fail: AtomicUsize,
    seen: AtomicUsize,
}

async fn serve() -> (String, Arc<Script>) {
    let script = Arc::new(Script {
        fail: AtomicUsize::new(0),
        seen: AtomicUsize::new(0),
    });
    let s = script.clone();
    let handler = move || {
        let s = s.clone();
        async move {
            s.seen.fetch_add(1, Ordering::SeqCst);
            let down = s
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if down {
                (StatusCode::SERVICE_UNAVAILABLE, "down")
            } else {
                (StatusCode::OK, "hello")
            }
        }
    };
    let app = Router::new().route("/", get(handler.clone()).post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, script)
}

fn set(script: &Script, fail: usize) {
    script.fail.store(fail, Ordering::SeqCst);
    script.seen.store(0, Ordering::SeqCst);
}

#[tokio::test]
async fn send_keeps_working_with_retries_and_breakers() {
    let (url, script) = serve().await;
    let stack = ClientStack::new()
        .retry(|r| r.backoff(BackoffPolicy::constant(Duration::from_millis(1))))
        .breaker(|b| b.consecutive_failures(3))
        .build()
        .unwrap();
    let middleware = BulwarkMiddleware::new(stack);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware.clone())
        .build();

    // A GET through two 503s: retried, the caller sees the 200.
    set(&script, 2);
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "hello");
    assert_eq!(script.seen.load(Ordering::SeqCst), 3);

    // A POST is sent once: the caller sees the 503.
    set(&script, 1);
    let res = client.post(&url).body("order").send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(script.seen.load(Ordering::SeqCst), 1, "not retried");

    // Down for good: three failures in a row open the host's breaker...
    set(&script, usize::MAX);
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 503);
    // ...and the next call is refused without reaching the server.
    set(&script, usize::MAX);
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(script.seen.load(Ordering::SeqCst), 0);
    assert!(
        matches!(err, reqwest_middleware::Error::Middleware(_)),
        "{err:?}"
    );
    assert!(
        bulwark::error::find::<CircuitOpen>(&err).is_some(),
        "the chain names the open breaker: {err:?}"
    );
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    assert_eq!(
        middleware.breakers().unwrap().get(&host).unwrap().state(),
        bulwark::breaker::State::Open
    );
}
