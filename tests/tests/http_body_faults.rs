//! The default HTTP `ClientStack` against raw HTTP/1.1 servers on
//! 127.0.0.1 that misbehave after their response head: a slow-drip body, a
//! connection reset or closed in the middle of the body, a bad chunk size,
//! a connection closed before the head; plus a caller that drops the body
//! early, and a quiet client against a dead server.
//!
//! Time is paused. A paused clock jumps to the next timer whenever the
//! runtime is idle, which could fire a timeout while a loopback connect is
//! still in flight in the kernel; a ticker task (a 5 ms timer, always
//! pending) makes every jump at most 5 ms, so socket work always lands
//! first. Bounds are asserted with slack, never to the tick.

use bulwark::breaker::State;
use bulwark::error::{find, CircuitOpen};
use bulwark::http::response_timeout::{Phase, ResponseElapsed, Scope};
use bulwark::http::ClientStack;
use bulwark::retry::RetryRejected;
use bulwark::BoxError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the server does after reading a request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A 200 head at once, then a chunk of one byte every 100 ms, forever.
    Drip,
    /// A 200 head announcing 100 bytes, 10 of them, then a TCP reset.
    Reset,
    /// The same, then a FIN.
    Truncate,
    /// A chunked 200 whose second chunk size is not a number.
    BadChunk,
    /// Closes the connection without answering.
    CloseBeforeHead,
}

const HEAD_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
const HEAD_100: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";

/// Reads one request head; `false` at the end of the connection.
async fn read_head(sock: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

async fn answer(mut sock: TcpStream, fault: Fault, served: Arc<AtomicUsize>) {
    if !read_head(&mut sock).await {
        return;
    }
    served.fetch_add(1, Ordering::SeqCst);
    match fault {
        Fault::Drip => {
            if sock.write_all(HEAD_CHUNKED).await.is_err() {
                return;
            }
            while sock.write_all(b"1\r\nx\r\n").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Fault::Reset | Fault::Truncate => {
            let _ = sock.write_all(HEAD_100).await;
            if matches!(fault, Fault::Reset) {
                // SO_LINGER 0: the close sends a RST (it does not block
                // here: the socket's buffer is flushed to loopback).
                #[allow(deprecated)]
                sock.set_linger(Some(Duration::ZERO)).unwrap();
            }
        }
        Fault::BadChunk => {
            let _ = sock.write_all(HEAD_CHUNKED).await;
            let _ = sock.write_all(b"5\r\nhello\r\nzz\r\n").await;
            let _ = sock.flush().await;
            // Wait for the client to give up on the connection.
            let _ = sock.read(&mut [0u8; 16]).await;
        }
        Fault::CloseBeforeHead => {}
    }
}

/// Serves `fault` on 127.0.0.1; returns its URL and how many requests it
/// read.
async fn serve(fault: Fault) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(answer(sock, fault, count.clone()));
        }
    });
    (format!("http://{addr}/"), served)
}

/// Keeps every jump of the paused clock to at most 5 ms (see the module
/// docs).
fn ticker() {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>()
}

fn get(url: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(url).body(Empty::new()).unwrap()
}

/// Sends one GET and reads its whole body: the body's length, or the error
/// of the head or of the body.
async fn fetch<S, B>(client: S, url: String) -> Result<usize, BoxError>
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<B>, Error = BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let res = client.oneshot(get(&url)).await?;
    let body = res.into_body().collect().await.map_err(Into::into)?;
    Ok(body.to_bytes().len())
}

/// [`fetch`], failing the test if it has not ended after 5 s (virtual): a
/// body that outlives every timeout (as it did before issue 15).
async fn fetch_within<S, B>(client: S, url: String) -> Result<usize, BoxError>
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<B>, Error = BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    tokio::time::timeout(Duration::from_secs(5), fetch(client, url))
        .await
        .expect("the call ends within its timeouts")
}

fn elapsed_of(e: &BoxError) -> &ResponseElapsed {
    find::<ResponseElapsed>(&**e).unwrap_or_else(|| panic!("a ResponseElapsed in {e}"))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_slow_drip_body_ends_with_the_body_deadline_within_the_total_timeout() {
    ticker();
    let (url, served) = serve(Fault::Drip).await;
    // The setting: total 2 s, attempt 500 ms, the default stack.
    let layer = ClientStack::new()
        .total_timeout(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let client = ServiceBuilder::new().layer(layer).service(http());
    let start = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(fetch_within(client.clone(), url.clone())))
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        let e = elapsed_of(&err);
        // The attempt's deadline, carried into the body, fired first.
        assert_eq!(
            (e.scope(), e.phase()),
            (Scope::Attempt, Phase::Body),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "attempt timeout of 500ms ran out while receiving the response body"
        );
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(2),
        "every body ended at the attempt deadline, within the total timeout: {took:?}"
    );
    // The heads were in time: no retry; each body's deadline is a failure
    // for the host's breaker (10 in a row open it).
    assert_eq!(served.load(Ordering::SeqCst), 20);
    assert_eq!(breakers.entries().pop().unwrap().1.state(), State::Open);

    // Without an attempt timeout, the total timeout bounds the body.
    let layer = ClientStack::new()
        .total_timeout(Duration::from_secs(2))
        .no_attempt_timeout()
        .no_breaker()
        .build()
        .unwrap();
    let client = ServiceBuilder::new().layer(layer).service(http());
    let start = Instant::now();
    let err = fetch_within(client, url.clone()).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(
        (elapsed_of(&err).scope(), elapsed_of(&err).phase()),
        (Scope::Total, Phase::Body)
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
        "{took:?}"
    );

    // An idle limit shorter than the drip's 100 ms: the first wait stalls,
    // a failure for the breaker.
    let layer = ClientStack::new()
        .body_idle_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let client = ServiceBuilder::new().layer(layer).service(http());
    let err = fetch_within(client, url.clone()).await.unwrap_err();
    assert_eq!(
        (elapsed_of(&err).scope(), elapsed_of(&err).phase()),
        (Scope::Attempt, Phase::Idle)
    );
    assert_eq!(elapsed_of(&err).duration(), Duration::from_millis(50));
    let snap = breakers.entries().pop().unwrap().1.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_broken_mid_way_is_a_failure_and_opens_the_breaker() {
    ticker();
    for faults in [
        [Fault::Reset, Fault::Truncate],
        [Fault::BadChunk, Fault::BadChunk],
    ] {
        let servers = [serve(faults[0]).await, serve(faults[1]).await];
        // Both servers on one host:port would share a breaker; these are
        // two ports of 127.0.0.1, so one breaker each: 5 calls to each.
        let layer = ClientStack::new()
            .breaker(|b| b.consecutive_failures(5).open_for(Duration::from_secs(30)))
            .build()
            .unwrap();
        let breakers = layer.breakers().unwrap().clone();
        let client = ServiceBuilder::new().layer(layer).service(http());
        for (url, served) in &servers {
            for _ in 0..5 {
                let err = fetch(client.clone(), url.clone()).await.unwrap_err();
                assert!(find::<ResponseElapsed>(&*err).is_none(), "{err}");
            }
            // The head came: nothing was retried.
            assert_eq!(served.load(Ordering::SeqCst), 5, "{faults:?}");
            let err = fetch(client.clone(), url.clone()).await.unwrap_err();
            assert!(find::<CircuitOpen>(&*err).is_some(), "{faults:?}: {err}");
            assert_eq!(
                served.load(Ordering::SeqCst),
                5,
                "an open breaker sends nothing"
            );
        }
        for (_, host) in breakers.entries() {
            let snap = host.snapshot();
            assert_eq!((snap.state, snap.failures), (State::Open, 5), "{faults:?}");
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_the_caller_drops_is_not_a_failure() {
    ticker();
    let (url, _) = serve(Fault::Drip).await;
    let layer = ClientStack::new().build().unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let client = ServiceBuilder::new().layer(layer).service(http());
    // 20 callers read one chunk of an endless body, then drop it: more than
    // the breaker's 10 in a row, had they counted as failures.
    for _ in 0..20 {
        let res = client.clone().oneshot(get(&url)).await.unwrap();
        let mut body = res.into_body();
        assert!(body.frame().await.unwrap().unwrap().is_data());
        drop(body);
    }
    let host = breakers.entries().pop().unwrap().1;
    let snap = host.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failures),
        (State::Closed, 0, 0)
    );
    // A caller that reads only the head: the head's verdict, a success.
    for _ in 0..3 {
        let res = client.clone().oneshot(get(&url)).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let snap = host.snapshot();
    assert_eq!((snap.calls, snap.failures), (3, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn when_the_breaker_opens_mid_call_the_error_carries_the_last_upstream_error() {
    ticker();
    let (url, served) = serve(Fault::CloseBeforeHead).await;
    let layer = ClientStack::new()
        .breaker(|b| {
            b.consecutive_failures(2)
                .without_failure_rate()
                .open_for(Duration::from_secs(30))
        })
        .seed(7)
        .build()
        .unwrap();
    let client = ServiceBuilder::new().layer(layer).service(http());
    // Attempt 1 and 2 reach the server and fail; the breaker opens; the
    // third attempt is refused locally.
    let err = fetch(client, url.clone()).await.unwrap_err();
    assert_eq!(served.load(Ordering::SeqCst), 2);
    let rejected = err
        .downcast_ref::<RetryRejected>()
        .unwrap_or_else(|| panic!("a RetryRejected: {err}"));
    assert_eq!(rejected.attempts(), 3);
    let last = rejected.last_error();
    assert!(
        find::<hyper_util::client::legacy::Error>(last).is_some(),
        "the upstream's own error: {last}"
    );
    let text = err.to_string();
    assert!(text.contains("open"), "{text}");
    assert!(text.contains(&last.to_string()), "{text}");
    assert_eq!(
        std::error::Error::source(&*err).unwrap().to_string(),
        last.to_string(),
        "the source is the upstream's error"
    );
    assert!(
        find::<CircuitOpen>(&*err).is_some(),
        "the rejection is still found"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_quiet_client_against_a_dead_server_is_bounded() {
    ticker();
    // A port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", dead.local_addr().unwrap());
    drop(dead);
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    let transport = tower::service_fn(move |req: http::Request<Empty<Bytes>>| {
        count.fetch_add(1, Ordering::SeqCst);
        http().request(req)
    });
    // The measure: breaker off, so only the retry budget bounds it.
    let layer = ClientStack::new().no_breaker().build().unwrap();
    let client = ServiceBuilder::new().layer(layer).service(transport);
    let calls = 100;
    for _ in 0..calls {
        assert!(fetch(client.clone(), url.clone()).await.is_err());
        // One call a second: a quiet client.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let sent = sent.load(Ordering::SeqCst);
    println!("{sent} requests for {calls} calls");
    // The budget's bound (bulwark-retry's budget docs): attempts per call
    // at most 1 + ratio × 10/11 + floor / (rate × T) = 1 + 0.2 × 10/11 +
    // 10 / (1 × ~100 s) ≈ 1.28; it used to be 2.2.
    let bound = calls as f64 * (1.0 + 0.2 * 10.0 / 11.0 + 10.0 / calls as f64);
    assert!(
        sent >= calls && (sent as f64) <= bound.ceil(),
        "{sent} requests for {calls} calls (bound {bound:.0})"
    );
}
