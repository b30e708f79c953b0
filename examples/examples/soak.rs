//! Run with: cargo run --release --example soak -- --minutes 10
//!
//! A soak test of the HTTP client stack (not run in CI): the default
//! `bulwark::http::ClientStack` (1 s total timeout) over hyper-util's pooled
//! client sends open-loop traffic (`--rate`, 300 requests/s by default) for
//! `--minutes` (or `--seconds`) to three flaky servers on 127.0.0.1:
//!
//! - `shedding`: behind a `ServerStack` of 24 in flight (shed answers are
//!   503 + `Retry-After`); 5% 503, 3% 429 with `Retry-After: 1`, 3% slow
//!   (700 ms, past the 500 ms attempt timeout), the rest within 5 ms; for
//!   5 s of every minute every answer takes 300 ms, which fills its 24
//!   permits, so it sheds;
//! - `outages`: answers 500 to everything for 10 s of every minute, 1% 503
//!   otherwise (its breaker opens, probes, closes);
//! - `black-hole`: for 5 s of every minute accepts requests and never
//!   answers (for 30 s), 1% hangs otherwise.
//!
//! It prints a line every `--every` seconds (10 by default) and checks, at
//! the end, and exits non-zero if any fails:
//!
//! - every request ended in an answer or in a typed error (a timeout, an
//!   open breaker, a full bulkhead, a transport error) within its deadline
//!   (1 s, plus 250 ms of scheduling slack on a busy machine);
//! - no permit and no probe leaked: once the load stops and the last
//!   request ended, every breaker has 0 probes in flight and both bulkheads
//!   (the client's and the shedding server's) 0 calls in flight or queued;
//! - the resident memory (RSS of the whole process: client and servers) is
//!   flat: after the first fifth of the run (warm-up: pools, buffers) it grows
//!   by at most 10% or 8 MiB, whichever is more.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bulwark::error::{find, BulkheadFull, CircuitOpen, ThrottledLocally};
use bulwark::http::{ClientStack, ServerStack};
use bulwark::timeout::Elapsed;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

/// The caller's deadline: the stack's total timeout.
const DEADLINE: Duration = Duration::from_secs(1);
/// Scheduling slack allowed past the deadline on a shared machine.
const SLACK: Duration = Duration::from_millis(250);

/// What a host does, by the second of the minute and a random draw.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Shedding,
    Outages,
    BlackHole,
}

struct Host {
    kind: Kind,
    start: Instant,
    rng: AtomicU64,
}

impl Host {
    /// A uniform draw in [0, 1) (splitmix64 over a shared counter).
    fn draw(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn handler(State(host): State<Arc<Host>>) -> Response {
    let second = host.start.elapsed().as_secs() % 60;
    let p = host.draw();
    let status = |s: StatusCode| s.into_response();
    match host.kind {
        Kind::Shedding => {
            if (50..55).contains(&second) {
                // A slow spell: 300 ms per request fills the 24 permits.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return "ok".into_response();
            }
            if p < 0.05 {
                return status(StatusCode::SERVICE_UNAVAILABLE);
            }
            if p < 0.08 {
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
            }
            if p < 0.11 {
                tokio::time::sleep(Duration::from_millis(700)).await;
            } else {
                tokio::time::sleep(Duration::from_micros((p * 50_000.0) as u64 % 5_000)).await;
            }
        }
        Kind::Outages => {
            if (20..30).contains(&second) {
                return status(StatusCode::INTERNAL_SERVER_ERROR);
            }
            if p < 0.01 {
                return status(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        Kind::BlackHole => {
            if (40..45).contains(&second) || p < 0.01 {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
    "ok".into_response()
}

/// Starts a host on 127.0.0.1 and returns its URL.
async fn serve(host: Arc<Host>) -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = Router::new().route("/", get(handler)).with_state(host);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts of outcomes, and a latency histogram by millisecond (fixed
/// memory, so that the tally itself does not grow the RSS).
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    status_5xx: AtomicU64,
    status_429: AtomicU64,
    other_status: AtomicU64,
    timed_out: AtomicU64,
    circuit_open: AtomicU64,
    bulkhead_full: AtomicU64,
    throttled: AtomicU64,
    transport: AtomicU64,
    untyped: AtomicU64,
    late: AtomicU64,
    hung: AtomicU64,
    max_us: AtomicU64,
    by_ms: Vec<AtomicU64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            by_ms: (0..=10_000).map(|_| AtomicU64::new(0)).collect(),
            ..Tally::default()
        }
    }

    fn latency(&self, took: Duration) {
        let ms = (took.as_millis() as usize).min(10_000);
        self.by_ms[ms].fetch_add(1, Ordering::Relaxed);
        self.max_us
            .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
        if took > DEADLINE + SLACK {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn percentile_ms(&self, q: f64) -> usize {
        let counts: Vec<u64> = self
            .by_ms
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let rank = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (ms, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank.max(1) {
                return ms;
            }
        }
        10_000
    }

    fn error(&self, e: &BoxError) {
        let e: &(dyn std::error::Error + 'static) = &**e;
        let counter = if find::<Elapsed>(e).is_some() {
            &self.timed_out
        } else if find::<CircuitOpen>(e).is_some() {
            &self.circuit_open
        } else if find::<BulkheadFull>(e).is_some() {
            &self.bulkhead_full
        } else if find::<ThrottledLocally>(e).is_some() {
            &self.throttled
        } else if find::<hyper_util::client::legacy::Error>(e).is_some()
            || find::<hyper::Error>(e).is_some()
        {
            &self.transport
        } else {
            if self.untyped.load(Ordering::Relaxed) < 5 {
                eprintln!("untyped error: {e:?}");
            }
            &self.untyped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

struct Args {
    run: Duration,
    rate: u32,
    every: Duration,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        run: Duration::from_secs(600),
        rate: 300,
        every: Duration::from_secs(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--minutes" => a.run = Duration::from_secs_f64(number(&value)? * 60.0),
            "--seconds" => a.run = Duration::from_secs_f64(number(&value)?),
            "--rate" => a.rate = number(&value)? as u32,
            "--every" => a.every = Duration::from_secs_f64(number(&value)?),
            _ => {
                return Err(format!(
                    "unknown flag {flag}: --minutes, --seconds, --rate, --every"
                ))
            }
        }
    }
    if a.rate == 0 || a.every.is_zero() {
        return Err("--rate and --every must be more than 0".into());
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = args()?;
    let start = Instant::now();
    let host = |kind, seed| {
        Arc::new(Host {
            kind,
            start,
            rng: AtomicU64::new(seed),
        })
    };
    let server_layer = ServerStack::new()
        .bulkhead(|b| b.max_concurrent(24))
        .build()?;
    let server_bulkhead = server_layer.bulkhead().ok_or("server bulkhead")?;
    // The shedding host is behind the server stack, whose bulkhead is
    // watched.
    let shedding = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let app = Router::new()
            .route("/", get(handler))
            .with_state(host(Kind::Shedding, 1))
            .layer(server_layer);
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    };
    let urls = [
        shedding,
        serve(host(Kind::Outages, 2)).await?,
        serve(host(Kind::BlackHole, 3)).await?,
    ];

    let layer = ClientStack::new().total_timeout(DEADLINE).build()?;
    let breakers = layer.breakers().ok_or("client breakers")?.clone();
    let bulkhead = layer.bulkhead().ok_or("client bulkhead")?;
    let client = tower::ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    println!(
        "soak: {:.0} s at {} requests/s, deadline {:?}, hosts {:?}",
        args.run.as_secs_f64(),
        args.rate,
        DEADLINE,
        urls
    );
    println!(
        "{:>6} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>5} {:>9}  breakers",
        "t (s)", "requests", "ok", "5xx/429", "timeout", "open", "other", "p99", "RSS (KiB)"
    );

    let tally = Arc::new(Tally::new());
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut rss = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_report = args.every;
    let mut n: u64 = 0;
    let load_start = Instant::now();
    while load_start.elapsed() < args.run {
        tick.tick().await;
        let url = &urls[(n % 3) as usize];
        n += 1;
        let req = http::Request::get(url.as_str()).body(Empty::new())?;
        let client = client.clone();
        let tally_ = tally.clone();
        let outstanding_ = outstanding.clone();
        outstanding_.fetch_add(1, Ordering::SeqCst);
        tally_.sent.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let (tally, outstanding) = (tally_, outstanding_);
            let began = Instant::now();
            let call = async {
                match client.oneshot(req).await {
                    Ok(res) => {
                        let status = res.status();
                        match res.into_body().collect().await {
                            Ok(_) => {
                                let counter = if status.is_success() {
                                    &tally.ok
                                } else if status.is_server_error() {
                                    &tally.status_5xx
                                } else if status == StatusCode::TOO_MANY_REQUESTS {
                                    &tally.status_429
                                } else {
                                    &tally.other_status
                                };
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => tally.error(&e),
                        }
                    }
                    Err(e) => tally.error(&e),
                }
            };
            // A watchdog far past the deadline, so that a request that never
            // ends is counted instead of hanging the run.
            match tokio::time::timeout(DEADLINE + Duration::from_secs(5), call).await {
                Ok(()) => tally.latency(began.elapsed()),
                Err(_) => {
                    tally.hung.fetch_add(1, Ordering::Relaxed);
                }
            }
            outstanding.fetch_sub(1, Ordering::SeqCst);
        });
        if load_start.elapsed() >= next_report {
            next_report += args.every;
            let kib = rss_kib();
            rss.push((load_start.elapsed(), kib));
            let t = &tally;
            let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let states: Vec<String> = breakers
                .entries()
                .iter()
                .map(|(k, b)| format!("{}={}", k.port_u16().unwrap_or(0), b.state()))
                .collect();
            println!(
                "{:>6.0} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>5} {:>9}  {}",
                load_start.elapsed().as_secs_f64(),
                get(&t.sent),
                get(&t.ok),
                get(&t.status_5xx) + get(&t.status_429),
                get(&t.timed_out),
                get(&t.circuit_open),
                get(&t.bulkhead_full)
                    + get(&t.throttled)
                    + get(&t.transport)
                    + get(&t.other_status)
                    + get(&t.untyped),
                format!("{}ms", t.percentile_ms(0.99)),
                kib,
                states.join(" ")
            );
        }
    }
    let offered = load_start.elapsed();

    // Let every request end (each has a 1 s deadline; the watchdog 6 s).
    let drain = Instant::now();
    while outstanding.load(Ordering::SeqCst) > 0 && drain.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The shedding server's slow answers end within 700 ms.
    while server_bulkhead.in_flight() > 0 && drain.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let t = &tally;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let answered = get(&t.ok) + get(&t.status_5xx) + get(&t.status_429) + get(&t.other_status);
    let typed = get(&t.timed_out)
        + get(&t.circuit_open)
        + get(&t.bulkhead_full)
        + get(&t.throttled)
        + get(&t.transport);
    println!();
    println!(
        "sent {} in {:.0} s ({:.0}/s): answered {} (200: {}, 5xx: {}, 429: {}, other: {}); typed errors {} (timeout {}, circuit open {}, bulkhead full {}, throttled {}, transport {}); untyped {}; hung {}",
        get(&t.sent),
        offered.as_secs_f64(),
        get(&t.sent) as f64 / offered.as_secs_f64(),
        answered,
        get(&t.ok),
        get(&t.status_5xx),
        get(&t.status_429),
        get(&t.other_status),
        typed,
        get(&t.timed_out),
        get(&t.circuit_open),
        get(&t.bulkhead_full),
        get(&t.throttled),
        get(&t.transport),
        get(&t.untyped),
        get(&t.hung),
    );
    println!(
        "latency: p50 {} ms, p99 {} ms, p99.9 {} ms, max {:.1} ms; over the deadline + {} ms: {}",
        t.percentile_ms(0.5),
        t.percentile_ms(0.99),
        t.percentile_ms(0.999),
        get(&t.max_us) as f64 / 1000.0,
        SLACK.as_millis(),
        get(&t.late),
    );

    let mut failures = Vec::new();
    if get(&t.untyped) > 0 {
        failures.push(format!("{} untyped errors", get(&t.untyped)));
    }
    if get(&t.hung) > 0 || outstanding.load(Ordering::SeqCst) > 0 {
        failures.push(format!(
            "{} requests hung past the watchdog, {} still outstanding",
            get(&t.hung),
            outstanding.load(Ordering::SeqCst)
        ));
    }
    if get(&t.late) > 0 {
        failures.push(format!(
            "{} requests ended past their deadline",
            get(&t.late)
        ));
    }
    if answered + typed + get(&t.untyped) + get(&t.hung) != get(&t.sent) {
        failures.push("some requests were not counted".into());
    }

    let mut leaks = Vec::new();
    for (key, breaker) in breakers.entries() {
        let s = breaker.snapshot();
        println!(
            "breaker {key}: {}, probes in flight {}, rejected {}, transitions {}",
            s.state,
            s.probes_in_flight,
            s.rejected,
            s.history.len()
        );
        if s.probes_in_flight != 0 {
            leaks.push(format!(
                "breaker {key}: {} probes in flight",
                s.probes_in_flight
            ));
        }
    }
    for (name, b) in [("client", &bulkhead), ("server", &server_bulkhead)] {
        println!(
            "{name} bulkhead: in flight {}, queued {}, rejections {}",
            b.in_flight(),
            b.queued(),
            b.rejections()
        );
        if b.in_flight() != 0 || b.queued() != 0 {
            leaks.push(format!(
                "{name} bulkhead: {} in flight, {} queued",
                b.in_flight(),
                b.queued()
            ));
        }
    }
    failures.extend(leaks);

    let warm = rss
        .iter()
        .find(|(at, _)| *at >= offered / 5)
        .map(|&(_, k)| k)
        .unwrap_or(0);
    let peak_after = rss
        .iter()
        .filter(|(at, _)| *at >= offered / 5)
        .map(|&(_, k)| k)
        .max()
        .unwrap_or(0);
    let last = rss.last().map(|&(_, k)| k).unwrap_or(0);
    let allowed = (warm / 10).max(8 * 1024);
    println!(
        "RSS: {} KiB after warm-up ({:.0} s), peak after it {} KiB, at the end {} KiB (growth {:+} KiB, allowed {} KiB)",
        warm,
        (offered / 5).as_secs_f64(),
        peak_after,
        last,
        peak_after as i64 - warm as i64,
        allowed
    );
    if rss.len() >= 2 && peak_after > warm + allowed {
        failures.push(format!(
            "RSS grew from {warm} KiB to {peak_after} KiB after warm-up"
        ));
    }

    if failures.is_empty() {
        println!("soak: ok");
        Ok(())
    } else {
        for f in &failures {
            eprintln!("soak: FAILED: {f}");
        }
        std::process::exit(1);
    }
}
