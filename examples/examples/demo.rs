//! Run with: cargo run --example demo
//!
//! One flaky upstream, the same load through two clients: a plain HTTP
//! client, and the same client wrapped in Bulwark's client stack with its
//! defaults (total timeout → retry → per-host breaker → attempt timeout →
//! bulkhead, with a fallback in front for when the breaker is open).
//!
//! The upstream, on 127.0.0.1, goes through scripted phases:
//!
//! | time | phase | what the upstream does |
//! |---|---|---|
//! | 0-4 s | healthy | answers in 5 ms |
//! | 4-9 s | hard outage | every request: 503 |
//! | 9-13 s | slow brownout | 30% of requests take 800 ms |
//! | 13-17 s | rate limiting | 50% of requests: 429 with `Retry-After: 1` |
//! | 17-21 s | recovery | healthy again |
//!
//! Each client sends 40 requests a second (a new request every 25 ms,
//! whether the last one finished or not). Live lines show what happens
//! (per second: requests that finished, how many succeeded, retries,
//! fallbacks, and what the upstream had to serve); a table compares the
//! two at the end.
//!
//! Reading the table: during the outage the breaker stops the Bulwark
//! client from sending (the upstream serves a handful of probes instead of
//! 40 requests a second) and the fallback answers; under rate limiting it
//! retries after the server's `Retry-After`, which is why its p99 is about
//! the second the server asked for, while the plain client fails those
//! requests at once. The price of the breaker is the open duration: it
//! notices the upstream is back at its next probe (within half a second
//! with the defaults), not at once.

use bulwark::breaker::{BreakerEvent, BreakerEventKind, State};
use bulwark::error::CircuitOpen;
use bulwark::fallback::{FallbackEvent, FallbackLayer};
use bulwark::http::ClientStack;
use bulwark::retry::RetryEvent;
use bulwark::BoxError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

const RATE_PER_SEC: u64 = 40;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Healthy,
    Outage,
    Brownout,
    RateLimited,
    Recovery,
}

const SCRIPT: [(Phase, u64, &str); 5] = [
    (Phase::Healthy, 4, "healthy (5 ms answers)"),
    (Phase::Outage, 5, "hard outage (every request 503)"),
    (Phase::Brownout, 4, "slow brownout (30% take 800 ms)"),
    (
        Phase::RateLimited,
        4,
        "rate limiting (50% 429, Retry-After: 1)",
    ),
    (Phase::Recovery, 4, "recovery (healthy)"),
];

static START: OnceLock<Instant> = OnceLock::new();

fn now() -> f64 {
    START.get().map_or(0.0, |s| s.elapsed().as_secs_f64())
}

fn phase_at(t: f64) -> Phase {
    let mut end = 0.0;
    for (phase, secs, _) in SCRIPT {
        end += secs as f64;
        if t < end {
            return phase;
        }
    }
    Phase::Recovery
}

fn phase_start(p: Phase) -> f64 {
    let mut start = 0.0;
    for (phase, secs, _) in SCRIPT {
        if phase == p {
            return start;
        }
        start += secs as f64;
    }
    start
}

/// What the upstream served, per client.
#[derive(Default)]
struct Served {
    plain: AtomicUsize,
    bulwark: AtomicUsize,
    counter: AtomicU64,
}

async fn upstream(
    axum::extract::State(served): axum::extract::State<Arc<Served>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if headers.get("x-client").is_some_and(|c| c == "bulwark") {
        served.bulwark.fetch_add(1, Ordering::Relaxed);
    } else {
        served.plain.fetch_add(1, Ordering::Relaxed);
    }
    // A deterministic spread: request n of every 10.
    let n = served.counter.fetch_add(1, Ordering::Relaxed) % 10;
    match phase_at(now()) {
        Phase::Healthy | Phase::Recovery => {
            tokio::time::sleep(Duration::from_millis(5)).await;
            "ok".into_response()
        }
        Phase::Outage => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        Phase::Brownout => {
            let slow = if n < 3 { 800 } else { 5 };
            tokio::time::sleep(Duration::from_millis(slow)).await;
            "ok".into_response()
        }
        Phase::RateLimited => {
            if n % 2 == 0 {
                (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    "slow down",
                )
                    .into_response()
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                "ok".into_response()
            }
        }
    }
}

/// How one request ended.
#[derive(Clone, Copy)]
struct Sample {
    started: f64,
    ended: f64,
    ok: bool,
    fallback: bool,
}

#[derive(Default)]
struct Record {
    samples: Mutex<Vec<Sample>>,
    retries: AtomicUsize,
    fallbacks: AtomicUsize,
    breaker_opened_at: Mutex<Vec<f64>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Transport = tower::util::BoxCloneService<
    http::Request<Empty<Bytes>>,
    http::Response<hyper::body::Incoming>,
    BoxError,
>;

/// hyper-util's pooled client (the body is read by [`read_body`]).
fn transport() -> Transport {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    tower::util::BoxCloneService::new(tower::service_fn(
        move |req: http::Request<Empty<Bytes>>| {
            let client = client.clone();
            let fut: BoxFuture<Result<http::Response<hyper::body::Incoming>, BoxError>> =
                Box::pin(async move { Ok(client.request(req).await?) });
            fut
        },
    ))
}

/// Reads a whole answer.
async fn read_body<B>(res: http::Response<B>) -> Result<http::Response<Bytes>, BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
    Ok(http::Response::from_parts(parts, bytes))
}

async fn drive<S>(name: &'static str, svc: S, url: String, record: Arc<Record>, until: f64)
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<Bytes>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE_PER_SEC));
    let mut inflight = tokio::task::JoinSet::new();
    while now() < until {
        tick.tick().await;
        let svc = svc.clone();
        let record = record.clone();
        let req = http::Request::get(url.as_str())
            .header("x-client", name)
            .body(Empty::new())
            .unwrap();
        inflight.spawn(async move {
            let started = now();
            let result = svc.oneshot(req).await;
            let (ok, fallback) = match &result {
                Ok(res) => (
                    res.status().is_success() && !res.headers().contains_key("x-fallback"),
                    res.headers().contains_key("x-fallback"),
                ),
                Err(_) => (false, false),
            };
            record.samples.lock().unwrap().push(Sample {
                started,
                ended: now(),
                ok,
                fallback,
            });
        });
    }
    while inflight.join_next().await.is_some() {}
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Summary {
    success: f64,
    answered: f64,
    p50: f64,
    p99: f64,
    requests: usize,
    served: usize,
    detect: Option<f64>,
    recover: Option<f64>,
}

fn summarize(record: &Record, served: usize) -> Summary {
    let samples = record.samples.lock().unwrap().clone();
    let n = samples.len().max(1) as f64;
    let ok = samples.iter().filter(|s| s.ok).count() as f64;
    let fb = samples.iter().filter(|s| s.fallback).count() as f64;
    let mut lat: Vec<f64> = samples
        .iter()
        .map(|s| (s.ended - s.started) * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let outage = phase_start(Phase::Outage);
    let healed = phase_start(Phase::Brownout);
    let detect = record
        .breaker_opened_at
        .lock()
        .unwrap()
        .iter()
        .copied()
        .find(|t| *t >= outage)
        .map(|t| t - outage);
    let recover = samples
        .iter()
        .filter(|s| s.ok && s.ended >= healed)
        .map(|s| s.ended)
        .min_by(f64::total_cmp)
        .map(|t| t - healed);
    Summary {
        success: ok / n * 100.0,
        answered: (ok + fb) / n * 100.0,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        requests: samples.len(),
        served,
        detect,
        recover,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let served = Arc::new(Served::default());
    let app = axum::Router::new()
        .route("/", axum::routing::get(upstream))
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let plain_record = Arc::new(Record::default());
    let bulwark_record = Arc::new(Record::default());

    // The Bulwark client: the ready-made stack, tuned for a demo that lasts
    // seconds rather than minutes, and a fallback for an open breaker.
    let on_breaker = {
        let record = bulwark_record.clone();
        move |e: &BreakerEvent| {
            if let BreakerEventKind::StateChanged(t) = &e.kind {
                let what = match t.to {
                    State::Open => {
                        record.breaker_opened_at.lock().unwrap().push(now());
                        "OPENED: calls fail fast, the fallback answers"
                    }
                    State::HalfOpen => "half-open: probing",
                    State::Closed => "CLOSED: traffic flows again",
                    _ => "changed",
                };
                println!("{:6.2}s  bulwark  breaker {what} ({})", now(), t.reason);
            }
        }
    };
    let on_retry = {
        let record = bulwark_record.clone();
        move |e: &RetryEvent| {
            if matches!(e, RetryEvent::RetryScheduled { .. }) {
                record.retries.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let on_fallback = {
        let record = bulwark_record.clone();
        move |e: &FallbackEvent| {
            if matches!(e, FallbackEvent::FellBack { .. }) {
                record.fallbacks.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    // The defaults, told only what the caller waits (2.5 s); the breaker
    // keeps its defaults too and gets a listener for the live lines.
    let stack = ClientStack::new()
        .total_timeout(Duration::from_millis(2500))
        .breaker(|b| b.name("demo").on_event(on_breaker))
        .retry(|r| r.on_event(on_retry))
        .build()?;
    let fallback = FallbackLayer::from_fn(|_e: &BoxError| {
        let mut res = http::Response::new(Bytes::from_static(b"cached"));
        res.headers_mut()
            .insert("x-fallback", http::HeaderValue::from_static("1"));
        Ok(res)
    })
    .on_error::<CircuitOpen>()
    .on_event(on_fallback);
    let bulwark_client = ServiceBuilder::new()
        .layer(fallback)
        // The stack's body is bounded by its timeouts and judged by its
        // breaker when it ends: read it inside the fallback.
        .and_then(read_body)
        .layer(stack)
        .service(transport());
    let plain_client = ServiceBuilder::new()
        .and_then(read_body)
        .service(transport());

    let total: u64 = SCRIPT.iter().map(|(_, s, _)| s).sum();
    println!("Bulwark demo: one flaky upstream on {url}, {RATE_PER_SEC} requests/s through each client, {total} s.\n");
    START.set(Instant::now()).unwrap();

    // Live lines: phase changes, and once a second what each client saw.
    let reporter = {
        let (plain, bulwark, served) =
            (plain_record.clone(), bulwark_record.clone(), served.clone());
        tokio::spawn(async move {
            let mut current = None;
            let mut last = (0usize, 0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let t = now();
                let phase = phase_at(t);
                if current != Some(phase) {
                    current = Some(phase);
                    let label = SCRIPT.iter().find(|(p, _, _)| *p == phase).unwrap().2;
                    println!("{t:6.2}s  ── upstream phase: {label}");
                }
                let count = |r: &Record| {
                    let s = r.samples.lock().unwrap();
                    (s.iter().filter(|s| s.ok).count(), s.len())
                };
                let (p_ok, p_n) = count(&plain);
                let (b_ok, b_n) = count(&bulwark);
                let p_served = served.plain.load(Ordering::Relaxed);
                let b_served = served.bulwark.load(Ordering::Relaxed);
                let retries = bulwark.retries.load(Ordering::Relaxed);
                let fallbacks = bulwark.fallbacks.load(Ordering::Relaxed);
                if t > 0.5 {
                    println!(
                        "{t:6.2}s  plain    {:>3}/{:<3} ok, upstream served {:>3}   | bulwark {:>3}/{:<3} ok, {:>2} retries, {:>2} fallbacks, upstream served {:>3}",
                        p_ok - last.0, p_n - last.1, p_served - last.2,
                        b_ok - last.3, b_n - last.4, retries - last.5, fallbacks,
                        b_served - last.6,
                    );
                }
                last = (p_ok, p_n, p_served, b_ok, b_n, retries, b_served);
                bulwark.fallbacks.store(0, Ordering::Relaxed);
            }
        })
    };

    let until = total as f64;
    tokio::join!(
        drive(
            "plain",
            plain_client,
            url.clone(),
            plain_record.clone(),
            until
        ),
        drive(
            "bulwark",
            bulwark_client,
            url.clone(),
            bulwark_record.clone(),
            until
        ),
    );
    reporter.abort();

    let p = summarize(&plain_record, served.plain.load(Ordering::Relaxed));
    let b = summarize(&bulwark_record, served.bulwark.load(Ordering::Relaxed));
    let secs = |d: Option<f64>, none: &str| d.map_or(none.to_owned(), |d| format!("{d:.2} s"));
    println!("\n{:<38} {:>14} {:>14}", "", "plain", "bulwark");
    println!(
        "{:<38} {:>13.1}% {:>13.1}%",
        "success rate (real answers)", p.success, b.success
    );
    println!(
        "{:<38} {:>13.1}% {:>13.1}%",
        "answered (incl. fallback)", p.answered, b.answered
    );
    println!(
        "{:<38} {:>11.1} ms {:>11.1} ms",
        "latency p50", p.p50, b.p50
    );
    println!(
        "{:<38} {:>11.1} ms {:>11.1} ms",
        "latency p99", p.p99, b.p99
    );
    println!(
        "{:<38} {:>14} {:>14}",
        "client requests", p.requests, b.requests
    );
    println!(
        "{:<38} {:>14} {:>14}",
        "upstream requests served (amplif.)",
        format!(
            "{} ({:.2}x)",
            p.served,
            p.served as f64 / p.requests.max(1) as f64
        ),
        format!(
            "{} ({:.2}x)",
            b.served,
            b.served as f64 / b.requests.max(1) as f64
        ),
    );
    println!(
        "{:<38} {:>14} {:>14}",
        "time to detect the outage",
        secs(p.detect, "never"),
        secs(b.detect, "never")
    );
    println!(
        "{:<38} {:>14} {:>14}",
        "time to recover after the outage",
        secs(p.recover, "never"),
        secs(b.recover, "never")
    );
    Ok(())
}
