//! The HTTP client stack against real servers on 127.0.0.1 with injected
//! faults: the per-host breaker opens and recovers, `Retry-After` is
//! honoured (and 429 does not open the breaker), a POST without an
//! idempotency key is not retried, and a streaming body over the replay cap
//! is sent once.
//!
//! Time is paused where the stack has no timeout (a paused clock jumps
//! ahead while the runtime waits on a socket, which would fire a timeout
//! early); waits in these tests are the policies' own delays, never sleeps
//! used to synchronise.

use axum::body::Body as AxumBody;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use bulwark::backoff::BackoffPolicy;
use bulwark::breaker::State;
use bulwark::error::{find, CircuitOpen};
use bulwark::http::body::{NotReplayed, ReplayBody, ReplayEvent, ReplayGuardLayer};
use bulwark::http::ClientStack;
use bulwark::retry::{GiveUpReason, RetryEvent};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

/// The upstream's scripted answers and what it saw.
#[derive(Default)]
struct Upstream {
    /// Status to answer with (0: 200).
    status: AtomicU16,
    /// Answer `status` this many more times, then 200 (usize::MAX: always).
    failures_left: AtomicUsize,
    retry_after: Mutex<Option<&'static str>>,
    served: AtomicUsize,
    body_bytes: Mutex<Vec<usize>>,
}

async fn handler(
    AxumState(up): AxumState<Arc<Upstream>>,
    body: AxumBody,
) -> axum::response::Response {
    up.served.fetch_add(1, Ordering::SeqCst);
    let len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    up.body_bytes.lock().unwrap().push(len);
    let left = up.failures_left.load(Ordering::SeqCst);
    if left > 0 {
        if left != usize::MAX {
            up.failures_left.fetch_sub(1, Ordering::SeqCst);
        }
        let mut res = axum::response::Response::new(AxumBody::from("injected"));
        *res.status_mut() = StatusCode::from_u16(up.status.load(Ordering::SeqCst)).unwrap();
        if let Some(after) = *up.retry_after.lock().unwrap() {
            res.headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        return res;
    }
    axum::response::Response::new(AxumBody::from("fine"))
}

async fn serve() -> (String, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    let app = Router::new()
        .route("/", any(handler))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/"), up)
}

fn fail(up: &Upstream, status: u16, times: usize) {
    up.status.store(status, Ordering::SeqCst);
    up.failures_left.store(times, Ordering::SeqCst);
}

/// A stack without timeouts (see the module docs) and quick, exact backoff.
fn stack() -> ClientStack {
    ClientStack::new()
        .no_total_timeout()
        .no_attempt_timeout()
        .retry(|r| r.backoff(BackoffPolicy::constant(Duration::from_millis(100))))
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_against_a_failing_upstream_and_recovers() {
    let (url, up) = serve().await;
    let layer = stack()
        .no_retry()
        .breaker(|b| {
            b.consecutive_failures(3)
                .without_failure_rate()
                .open_for(Duration::from_secs(5))
                .successes_to_close(1)
        })
        .build()
        .unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new().layer(layer).service(http);
    let get = || http::Request::get(url.as_str()).body(Empty::new()).unwrap();

    fail(&up, 500, usize::MAX);
    for _ in 0..3 {
        let res = client.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(res.status(), 500, "a 5xx stays a response");
    }
    let host = breakers.entries().pop().unwrap().1;
    assert_eq!(host.state(), State::Open);
    let err = client.ready().await.unwrap().call(get()).await.unwrap_err();
    let open = find::<CircuitOpen>(&*err).expect("rejected by the breaker");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(
        up.served.load(Ordering::SeqCst),
        3,
        "an open breaker sends nothing"
    );

    // The upstream heals; after the open duration one probe closes it.
    fail(&up, 500, 0);
    tokio::time::advance(Duration::from_secs(5)).await;
    let res = client.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(res.status(), 200);
    // The verdict is taken when the body ends.
    assert_eq!(host.state(), State::HalfOpen);
    res.into_body().collect().await.unwrap();
    assert_eq!(host.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_429_does_not_open_the_breaker() {
    let (url, up) = serve().await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = stack()
        .retry(|r| {
            r.max_attempts(3)
                .on_event(move |e: &RetryEvent| seen.lock().unwrap().push(e.clone()))
        })
        .breaker(|b| b.consecutive_failures(2).without_failure_rate())
        .build()
        .unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = ServiceBuilder::new().layer(layer).service(http);

    fail(&up, 429, 2);
    *up.retry_after.lock().unwrap() = Some("3");
    let started = tokio::time::Instant::now();
    let res = client
        .clone()
        .oneshot(http::Request::get(url.as_str()).body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.served.load(Ordering::SeqCst), 3);
    // Two waits of the server's 3 s, not the 100 ms backoff.
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let scheduled: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            RetryEvent::RetryScheduled {
                delay, pushback, ..
            } => Some((*delay, *pushback)),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled, vec![(Duration::from_secs(3), true); 2]);
    // Two 429s in a row, with consecutive_failures(2): still closed.
    assert_eq!(breakers.entries().pop().unwrap().1.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn post_without_idempotency_key_is_not_retried() {
    let (url, up) = serve().await;
    let layer = stack()
        .retry(|r| r.max_attempts(3))
        .no_breaker()
        .build()
        .unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new().layer(layer).service(http);
    fail(&up, 503, usize::MAX);
    let send = |req: http::Request<Full<Bytes>>| client.clone().oneshot(req);

    let post = http::Request::post(url.as_str())
        .body(Full::from("{}"))
        .unwrap();
    assert_eq!(send(post).await.unwrap().status(), 503);
    assert_eq!(up.served.swap(0, Ordering::SeqCst), 1, "POST sent once");

    let keyed = http::Request::post(url.as_str())
        .header("idempotency-key", "k-1")
        .body(Full::from("{}"))
        .unwrap();
    assert_eq!(send(keyed).await.unwrap().status(), 503);
    assert_eq!(up.served.swap(0, Ordering::SeqCst), 3, "keyed POST retried");

    let put = http::Request::put(url.as_str())
        .body(Full::from("{}"))
        .unwrap();
    assert_eq!(send(put).await.unwrap().status(), 503);
    assert_eq!(up.served.swap(0, Ordering::SeqCst), 3, "PUT retried");
}

/// A streaming body: `n` chunks of `size` bytes, length unknown up front.
struct Chunks {
    left: usize,
    size: usize,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
    }
}

#[tokio::test(start_paused = true)]
async fn streaming_body_over_the_cap_is_sent_once() {
    let (url, up) = serve().await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = stack()
        .retry(|r| r.max_attempts(3))
        .no_breaker()
        .build()
        .unwrap()
        .replay_guard(
            ReplayGuardLayer::new()
                .on_event(move |e: &ReplayEvent| seen.lock().unwrap().push(e.clone())),
        );
    let http = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Chunks>>();
    let client = ServiceBuilder::new().layer(layer).service(http);
    fail(&up, 503, usize::MAX);
    let upload = |chunks: usize| {
        http::Request::put(url.as_str())
            .body(ReplayBody::new(Chunks {
                left: chunks,
                size: 8 * 1024,
            }))
            .unwrap()
    };

    // 32 KiB: under the 64 KiB cap, replayed in full on every attempt.
    let res = client.clone().oneshot(upload(4)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(*up.body_bytes.lock().unwrap(), vec![32 * 1024; 3]);
    assert!(events.lock().unwrap().is_empty());

    // 128 KiB: over the cap, sent once; the caller gets the first answer.
    up.body_bytes.lock().unwrap().clear();
    let res = client.clone().oneshot(upload(16)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.extensions().get::<NotReplayed>().is_some());
    assert_eq!(*up.body_bytes.lock().unwrap(), vec![128 * 1024]);
    assert_eq!(
        *events.lock().unwrap(),
        vec![ReplayEvent::SentOnce { limit: 64 * 1024 }]
    );
    let _ = GiveUpReason::Pushback;
}
