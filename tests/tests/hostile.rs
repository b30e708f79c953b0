//! Hostile servers (issue 12): raw TCP servers on 127.0.0.1 that answer with
//! garbage status lines, malformed or huge heads, resets and closes in the
//! middle of the head, endless informational answers, or nothing at all.
//! Every request through the HTTP `ClientStack` over hyper-util's legacy
//! client must end in an answer or a typed error within its deadline, and
//! nothing may panic (a panic hook counts panics on every thread, the
//! connection tasks' included).
//!
//! Head- and connection-level faults only: slow and broken bodies are the
//! body deadlines' tests.
//!
//! The cases that answer at once run the default stack (10 s total
//! timeout) and must fail fast with a transport error, not a timeout. The
//! cases that never finish a head need the stack's timers: they run in real
//! time (a paused clock would jump past the deadline while the runtime waits
//! on the socket, so the test could not tell a timeout from a transport
//! error) with a total timeout of 1 s, and must end in a timeout no earlier
//! than that and well before the server would give up.

use bulwark::error::{find, CircuitOpen};
use bulwark::http::ClientStack;
use bulwark::timeout::Elapsed;
use bulwark::BoxError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;

/// Panics anywhere in the process outside this file's own assertions
/// (in hyper, hyper-util, Bulwark, on any thread or task), counted by a
/// hook installed once.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info
                .location()
                .is_some_and(|l| l.file().ends_with("hostile.rs"))
            {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// What a hostile server does with each connection.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// Reads the request, writes these bytes, closes.
    Answer(&'static [u8]),
    /// Reads the request, writes a head with one header of `n` bytes.
    HugeHeader(usize),
    /// Reads the request, writes a head with `n` small headers.
    ManyHeaders(usize),
    /// Reads the request, writes a status line with a reason of `n` bytes.
    HugeReason(usize),
    /// Reads the request, writes these bytes, then resets the connection.
    ResetAfter(&'static [u8]),
    /// Accepts and closes at once, without reading.
    CloseAtOnce,
    /// Accepts and resets at once.
    ResetAtOnce,
    /// Reads the request and closes without a byte of answer.
    CloseAfterRequest,
    /// Reads the request and never answers (holds the connection).
    BlackHole,
    /// Reads the request, then sends `100 Continue` heads forever.
    EndlessContinue,
    /// Reads the request, then sends a valid head one byte every 50 ms.
    DripHead,
}

/// A valid head for the drip, long enough to outlast the deadline.
const DRIP: &[u8] = b"HTTP/1.1 200 OK\r\nx-one: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\ncontent-length: 0\r\n\r\n";

/// Reads a request head (up to its blank line, EOF or 64 KiB).
async fn read_head(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65_536 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[allow(deprecated)] // SO_LINGER 0 to send a reset; `set_zero_linger` is newer than our tokio floor
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// How long a server holds a connection it never answers: far past every
/// deadline here, bounded so that nothing outlives the test.
const HOLD: Duration = Duration::from_secs(20);

async fn act(how: Hostile, mut s: TcpStream) {
    match how {
        Hostile::Answer(bytes) => {
            read_head(&mut s).await;
            let _ = s.write_all(bytes).await;
        }
        Hostile::HugeHeader(n) => {
            read_head(&mut s).await;
            let mut head = b"HTTP/1.1 200 OK\r\nx-huge: ".to_vec();
            head.resize(head.len() + n, b'a');
            head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            let _ = s.write_all(&head).await;
        }
        Hostile::ManyHeaders(n) => {
            read_head(&mut s).await;
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..n {
                head.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
            }
            head.extend_from_slice(b"content-length: 0\r\n\r\n");
            let _ = s.write_all(&head).await;
        }
        Hostile::HugeReason(n) => {
            read_head(&mut s).await;
            let mut head = b"HTTP/1.1 200 ".to_vec();
            head.resize(head.len() + n, b'x');
            head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            let _ = s.write_all(&head).await;
        }
        Hostile::ResetAfter(bytes) => {
            read_head(&mut s).await;
            let _ = s.write_all(bytes).await;
            let _ = s.flush().await;
            reset(s);
            return;
        }
        Hostile::CloseAtOnce => return,
        Hostile::ResetAtOnce => {
            reset(s);
            return;
        }
        Hostile::CloseAfterRequest => read_head(&mut s).await,
        Hostile::BlackHole => {
            read_head(&mut s).await;
            tokio::time::sleep(HOLD).await;
        }
        Hostile::EndlessContinue => {
            read_head(&mut s).await;
            let start = Instant::now();
            while start.elapsed() < HOLD {
                if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Hostile::DripHead => {
            read_head(&mut s).await;
            for b in DRIP {
                if s.write_all(std::slice::from_ref(b)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let _ = s.shutdown().await;
}

/// Starts a hostile server; returns its URL and the connections it took.
async fn hostile(how: Hostile) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(act(how, s));
        }
    });
    (url, accepted)
}

/// How a request ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// An answer with this status, its body read to the end.
    Answer(u16),
    /// The transport's typed error (hyper-util's, or hyper's for the body).
    Transport,
    /// The stack's timeout.
    TimedOut,
    /// The stack's breaker refused.
    CircuitOpen,
}

fn classify(e: &BoxError) -> End {
    let e: &(dyn std::error::Error + 'static) = &**e;
    if find::<Elapsed>(e).is_some() {
        End::TimedOut
    } else if find::<CircuitOpen>(e).is_some() {
        End::CircuitOpen
    } else if find::<hyper_util::client::legacy::Error>(e).is_some()
        || find::<hyper::Error>(e).is_some()
    {
        End::Transport
    } else {
        panic!("an untyped error: {e:?}")
    }
}

/// Sends `n` concurrent GETs through `stack` to `url`; returns how each
/// ended and how long the slowest took.
async fn send(stack: ClientStack, url: &str, n: usize) -> (Vec<End>, Duration) {
    let client = tower::ServiceBuilder::new()
        .layer(stack.build().unwrap())
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let start = Instant::now();
    let calls = (0..n).map(|_| {
        let client = client.clone();
        let req = http::Request::get(url).body(Empty::new()).unwrap();
        async move {
            match client.oneshot(req).await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    match res.into_body().collect().await {
                        Ok(_) => End::Answer(status),
                        Err(e) => classify(&e),
                    }
                }
                Err(e) => classify(&e),
            }
        }
    });
    let ends = futures_join_all(calls).await;
    (ends, start.elapsed())
}

/// `futures::future::join_all` without the dependency: spawn and join.
async fn futures_join_all<F>(calls: impl Iterator<Item = F>) -> Vec<End>
where
    F: std::future::Future<Output = End> + Send + 'static,
{
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut ends = Vec::new();
    for h in handles {
        ends.push(h.await.expect("the request task does not panic"));
    }
    ends
}

/// The heads that answer at once, and the transport error each must give,
/// through the default stack (10 s total timeout), fast.
#[tokio::test]
async fn malformed_heads_fail_fast_with_a_transport_error() {
    count_panics();
    let cases: &[(&str, Hostile)] = &[
        (
            "garbage status code",
            Hostile::Answer(b"HTTP/1.1 abc OK\r\n\r\n"),
        ),
        (
            "status code of 4 digits",
            Hostile::Answer(b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n"),
        ),
        (
            "status code of 2 digits",
            Hostile::Answer(b"HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n"),
        ),
        (
            "unknown version",
            Hostile::Answer(b"HTTP/7.3 200 OK\r\ncontent-length: 0\r\n\r\n"),
        ),
        ("not HTTP", Hostile::Answer(b"SSH-2.0-OpenSSH_9.6\r\n")),
        (
            "binary junk",
            Hostile::Answer(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\xff\xfe\r\n\r\n"),
        ),
        ("empty lines only", Hostile::Answer(b"\r\n\r\n\r\n\r\n")),
        (
            "NUL in the status line",
            Hostile::Answer(b"HTTP/1.1 200 O\x00K\r\ncontent-length: 0\r\n\r\n"),
        ),
        (
            "header without a colon",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 0\r\n\r\n"),
        ),
        (
            "header name with a space",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\nbad name: v\r\ncontent-length: 0\r\n\r\n"),
        ),
        (
            "control byte in a header value",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\nx-a: b\x01c\r\ncontent-length: 0\r\n\r\n"),
        ),
        (
            "content-length not a number",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\n"),
        ),
        (
            "negative content-length",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"),
        ),
        (
            "content-length past u64",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n"),
        ),
        (
            "two different content-lengths",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"),
        ),
        (
            "obsolete line folding",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\nx-a: b\r\n  folded\r\ncontent-length: 0\r\n\r\n"),
        ),
        (
            "head ending without a blank line",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n"),
        ),
        ("1 MiB header", Hostile::HugeHeader(1 << 20)),
        ("10,000 headers", Hostile::ManyHeaders(10_000)),
        ("1 MiB reason phrase", Hostile::HugeReason(1 << 20)),
        (
            "reset in the status line",
            Hostile::ResetAfter(b"HTTP/1.1 20"),
        ),
        (
            "reset in a header",
            Hostile::ResetAfter(b"HTTP/1.1 200 OK\r\ncontent-le"),
        ),
        (
            "closed in a header",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\ncontent-le"),
        ),
        ("closed at once", Hostile::CloseAtOnce),
        ("reset at once", Hostile::ResetAtOnce),
        ("closed after the request", Hostile::CloseAfterRequest),
    ];
    let deadline = Duration::from_secs(10);
    for &(name, how) in cases {
        let (url, accepted) = hostile(how).await;
        let (ends, took) = send(ClientStack::new().total_timeout(deadline), &url, 4).await;
        // A transport error; or, once 10 attempts in a row failed (4
        // requests of 3 attempts each), the host's open breaker.
        for end in &ends {
            assert!(
                matches!(end, End::Transport | End::CircuitOpen),
                "{name}: {ends:?}"
            );
        }
        assert!(ends.contains(&End::Transport), "{name}: {ends:?}");
        // Every request failed fast: no timeout fired, none was waited for.
        assert!(took < deadline / 2, "{name}: took {took:?}");
        assert!(
            accepted.load(Ordering::SeqCst) >= 1,
            "{name}: never connected"
        );
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}

/// Heads hyper reads leniently are answers, judged by the classifier like
/// any other; through the default stack they are not errors.
#[tokio::test]
async fn odd_but_readable_heads_are_answers() {
    count_panics();
    let cases: &[(&str, Hostile, u16)] = &[
        (
            "status 999",
            Hostile::Answer(b"HTTP/1.1 999 Weird\r\ncontent-length: 0\r\n\r\n"),
            999,
        ),
        (
            "no reason phrase",
            Hostile::Answer(b"HTTP/1.1 204\r\n\r\n"),
            204,
        ),
        (
            "HTTP/1.0 without a length, body to the close",
            Hostile::Answer(b"HTTP/1.0 200 OK\r\n\r\nbody"),
            200,
        ),
        // RFC 9112 6.3: a transfer coding not ending in chunked: the body
        // runs to the close.
        (
            "transfer-encoding gzip alone, body to the close",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nzz"),
            200,
        ),
        (
            "bare LF line ends",
            Hostile::Answer(b"HTTP/1.1 200 OK\ncontent-length: 0\n\n"),
            200,
        ),
        (
            "a 100 Continue first",
            Hostile::Answer(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            ),
            200,
        ),
        (
            "the same content-length twice",
            Hostile::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nab"),
            200,
        ),
        (
            "100 KiB header (under hyper's limit)",
            Hostile::HugeHeader(100 << 10),
            200,
        ),
    ];
    for &(name, how, status) in cases {
        let (url, _) = hostile(how).await;
        let (ends, took) = send(ClientStack::new(), &url, 4).await;
        for end in &ends {
            assert_eq!(*end, End::Answer(status), "{name}: {ends:?}");
        }
        assert!(took < Duration::from_secs(5), "{name}: took {took:?}");
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}

/// A server that never completes a head: the stack's deadline ends every
/// request with its timeout, not before the deadline and not long after.
async fn never_finishes(name: &str, how: Hostile) {
    count_panics();
    let deadline = Duration::from_secs(1);
    let (url, accepted) = hostile(how).await;
    let (ends, took) = send(ClientStack::new().total_timeout(deadline), &url, 8).await;
    for end in &ends {
        assert_eq!(*end, End::TimedOut, "{name}: {ends:?}");
    }
    assert!(took >= deadline, "{name}: ended early, {took:?}");
    // Slack for a shared machine; the server holds on for 20 s.
    assert!(took < deadline * 3, "{name}: took {took:?}");
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "{name}: never connected"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}

#[tokio::test]
async fn a_black_hole_ends_at_the_deadline() {
    never_finishes("black hole", Hostile::BlackHole).await;
}

#[tokio::test]
async fn endless_informational_answers_end_at_the_deadline() {
    never_finishes("endless 100 Continue", Hostile::EndlessContinue).await;
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_ends_at_the_deadline() {
    never_finishes("slow-drip head", Hostile::DripHead).await;
}

/// A listener that never accepts: the kernel completes the handshake into
/// its backlog, and nothing more happens.
#[tokio::test]
async fn a_listener_that_never_accepts_ends_at_the_deadline() {
    count_panics();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let deadline = Duration::from_secs(1);
    let (ends, took) = send(ClientStack::new().total_timeout(deadline), &url, 8).await;
    for end in &ends {
        assert_eq!(*end, End::TimedOut, "{ends:?}");
    }
    assert!(took >= deadline && took < deadline * 3, "took {took:?}");
    drop(listener);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}

/// One client stack through a run of hostile servers keeps working: a
/// healthy server on another port is answered afterwards (no state of the
/// stack or of the pool was poisoned), and the hostile hosts' breakers did
/// not cut off the healthy one.
#[tokio::test]
async fn the_stack_survives_hostile_hosts_and_serves_a_healthy_one() {
    count_panics();
    let layer = ClientStack::new()
        .total_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let bulkhead = layer.bulkhead().unwrap();
    let client = tower::ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let mut hosts = Vec::new();
    for how in [
        Hostile::Answer(b"HTTP/1.1 abc OK\r\n\r\n"),
        Hostile::HugeHeader(1 << 20),
        Hostile::ResetAfter(b"HTTP/1.1 200 OK\r\ncontent-le"),
        Hostile::CloseAtOnce,
        Hostile::BlackHole,
    ] {
        hosts.push(hostile(how).await.0);
    }
    let healthy = hostile(Hostile::Answer(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
    ))
    .await
    .0;
    // Enough rounds for the hostile hosts' breakers to open (10 failed
    // attempts in a row).
    for _ in 0..15 {
        let mut calls = Vec::new();
        for url in &hosts {
            let req = http::Request::get(url.as_str()).body(Empty::new()).unwrap();
            calls.push(tokio::spawn(client.clone().oneshot(req)));
        }
        for call in calls {
            let start = Instant::now();
            match call.await.expect("no panic") {
                Ok(res) => panic!("a hostile host answered {}", res.status()),
                // Typed (`classify` panics on anything else).
                Err(e) => drop(classify(&e)),
            }
            assert!(start.elapsed() < Duration::from_secs(2));
        }
    }
    assert!(
        breakers
            .entries()
            .iter()
            .any(|(_, b)| b.state() != bulwark::breaker::State::Closed),
        "failing hosts opened their breakers"
    );
    let req = http::Request::get(healthy.as_str())
        .body(Empty::new())
        .unwrap();
    let res = client.clone().oneshot(req).await.expect("the healthy host");
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    // Nothing is left in flight once every request has ended.
    assert_eq!(bulkhead.in_flight(), 0);
    for (key, b) in breakers.entries() {
        assert_eq!(b.snapshot().probes_in_flight, 0, "{key}");
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}
