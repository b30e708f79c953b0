//! Run with: cargo run --release --example overload -- --mode tuned --seconds 60
//!
//! Overload at 3× a server's capacity (not run in CI). A handler with a
//! fixed capacity (`--capacity` workers, 8 by default, each request holding
//! one for `--service-ms`, 20 ms: 400 requests/s) runs in a child process on
//! 127.0.0.1, behind:
//!
//! - `--mode stack`: Bulwark's default `ServerStack` (512 in flight, 30 s
//!   timeout);
//! - `--mode tuned`: a `ServerStack` of `max_concurrent` twice the workers
//!   (a request waits at most one service time for a worker);
//! - `--mode adaptive`: `ServerStack::new().bulkhead(|b| b.adaptive(Gradient2::new(16)))`,
//!   the bulkhead's limit moved by `Gradient2` (from 16, at most 512)
//!   instead of fixed;
//! - `--mode bare`: nothing (every request queues for a worker).
//!
//! This process offers open-loop load at `--factor` (3) times the capacity
//! for `--seconds` (60) of real time through hyper-util's pooled client
//! (each request gives up after 5 s), and reports: goodput (answers `200`
//! within 1 s, per second), p50/p99 of the successes, what the shed requests
//! got (status, whether `Retry-After` and `bulwark-shed` were there, how fast),
//! and the server process's resident memory (RSS) sampled every 2 s.

use axum::routing::get;
use axum::Router;
use bulwark::bulkhead::adaptive::Gradient2;
use bulwark::http::ServerStack;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's own limit: a request still waiting then is abandoned.
const GIVE_UP: Duration = Duration::from_secs(5);
/// An answer within this is goodput.
const GOOD_WITHIN: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Opts {
    mode: String,
    seconds: f64,
    capacity: usize,
    service_ms: u64,
    factor: f64,
}

fn opts() -> Result<Opts, BoxError> {
    let mut o = Opts {
        mode: "tuned".into(),
        seconds: 60.0,
        capacity: 8,
        service_ms: 20,
        factor: 3.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => o.mode = v,
            "--seconds" => o.seconds = v.parse()?,
            "--capacity" => o.capacity = v.parse()?,
            "--service-ms" => o.service_ms = v.parse()?,
            "--factor" => o.factor = v.parse()?,
            "--serve" => {
                // The child: `--serve PORT` after the other flags.
                let port: u16 = v.parse()?;
                serve(o, port)?;
                std::process::exit(0);
            }
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    if !matches!(o.mode.as_str(), "stack" | "tuned" | "adaptive" | "bare") {
        return Err("--mode is stack, tuned, adaptive or bare".into());
    }
    if o.capacity == 0 || o.service_ms == 0 || o.seconds <= 0.0 || o.factor <= 0.0 {
        return Err("--capacity, --service-ms, --seconds and --factor must be more than 0".into());
    }
    Ok(o)
}

/// The server process: a handler of fixed capacity behind the chosen stack.
fn serve(o: Opts, port: u16) -> Result<(), BoxError> {
    let workers = Arc::new(tokio::sync::Semaphore::new(o.capacity));
    let service = Duration::from_millis(o.service_ms);
    let app = Router::new().route(
        "/",
        get(move || {
            let workers = workers.clone();
            async move {
                let _worker = workers.acquire().await.expect("never closed");
                tokio::time::sleep(service).await;
                "ok"
            }
        }),
    );
    let app = match o.mode.as_str() {
        "stack" => app.layer(ServerStack::new().build()?),
        "tuned" => app.layer(
            ServerStack::new()
                .bulkhead(|b| b.max_concurrent(2 * o.capacity))
                .build()?,
        ),
        "adaptive" => app.layer(
            ServerStack::new()
                .bulkhead(|b| b.adaptive(Gradient2::new(16)))
                .build()?,
        ),
        _ => app,
    };
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A latency histogram by millisecond, up to the client's limit.
struct Histogram(Vec<AtomicU64>);

impl Histogram {
    fn new() -> Self {
        Histogram(
            (0..=GIVE_UP.as_millis() as usize)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }
    fn add(&self, d: Duration) {
        let i = (d.as_millis() as usize).min(self.0.len() - 1);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }
    fn count(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
    fn quantile_ms(&self, q: f64) -> usize {
        let rank = ((q * self.count() as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, c) in self.0.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return ms;
            }
        }
        self.0.len() - 1
    }
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok_good: AtomicU64,
    ok_late: AtomicU64,
    shed: AtomicU64,
    shed_retry_after: AtomicU64,
    shed_marked: AtomicU64,
    shed_status: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
    other: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
    gave_up: AtomicU64,
    transport: AtomicU64,
}

fn main() -> Result<(), BoxError> {
    // The child process (`--serve`) starts its own runtime inside `opts`.
    let o = opts()?;
    tokio::runtime::Runtime::new()?.block_on(load(o))
}

async fn load(o: Opts) -> Result<(), BoxError> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--mode", &o.mode])
        .args(["--capacity", &o.capacity.to_string()])
        .args(["--service-ms", &o.service_ms.to_string()])
        .args(["--serve", &port.to_string()])
        .spawn()?;
    let pid = child.id();
    let url = format!("http://127.0.0.1:{port}/");
    let up = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if up.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err("the server did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let capacity = o.capacity as f64 * 1000.0 / o.service_ms as f64;
    let rate = o.factor * capacity;
    println!(
        "overload: mode {}, capacity {} workers x {} ms = {:.0} requests/s, offered {:.0} requests/s ({}x) open loop for {} s",
        o.mode, o.capacity, o.service_ms, capacity, rate, o.factor, o.seconds
    );

    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .build_http::<Empty<Bytes>>();
    let counts = Arc::new(Counts::default());
    let ok_latency = Arc::new(Histogram::new());
    let shed_latency = Arc::new(Histogram::new());
    let mut rss = Vec::new();
    let start = Instant::now();
    let run = Duration::from_secs_f64(o.seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_sample = Duration::ZERO;
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while start.elapsed() < run {
        tick.tick().await;
        // Open loop: send what is due by now, whatever is still in flight.
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            sent += 1;
            let client = client.clone();
            let req = http::Request::get(url.as_str()).body(Empty::new())?;
            let (counts, ok_latency, shed_latency) =
                (counts.clone(), ok_latency.clone(), shed_latency.clone());
            counts.sent.fetch_add(1, Ordering::Relaxed);
            tasks.spawn(async move {
                let began = Instant::now();
                let res = tokio::time::timeout(GIVE_UP, async {
                    let res = client.oneshot(req).await?;
                    let (parts, body) = res.into_parts();
                    body.collect().await?;
                    Ok::<_, BoxError>(parts)
                })
                .await;
                let took = began.elapsed();
                match res {
                    Err(_) => counts.gave_up.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(_)) => counts.transport.fetch_add(1, Ordering::Relaxed),
                    Ok(Ok(parts)) if parts.status == 200 => {
                        ok_latency.add(took);
                        if took <= GOOD_WITHIN {
                            counts.ok_good.fetch_add(1, Ordering::Relaxed)
                        } else {
                            counts.ok_late.fetch_add(1, Ordering::Relaxed)
                        }
                    }
                    Ok(Ok(parts)) if parts.status == 503 || parts.status == 429 => {
                        shed_latency.add(took);
                        let h = &parts.headers;
                        if h.contains_key(http::header::RETRY_AFTER) {
                            counts.shed_retry_after.fetch_add(1, Ordering::Relaxed);
                        }
                        if h.contains_key(bulwark::http::SHED_HEADER) {
                            counts.shed_marked.fetch_add(1, Ordering::Relaxed);
                        }
                        *counts
                            .shed_status
                            .lock()
                            .unwrap()
                            .entry(parts.status.as_u16())
                            .or_default() += 1;
                        counts.shed.fetch_add(1, Ordering::Relaxed)
                    }
                    Ok(Ok(parts)) => {
                        *counts
                            .other
                            .lock()
                            .unwrap()
                            .entry(parts.status.as_u16())
                            .or_default() += 1;
                        0
                    }
                };
            });
        }
        while tasks.try_join_next().is_some() {}
        if start.elapsed() >= next_sample {
            rss.push((start.elapsed(), rss_kib(pid)));
            next_sample += Duration::from_secs(2);
        }
    }
    let offered_for = start.elapsed();
    // Every request ends within GIVE_UP.
    while tasks.join_next().await.is_some() {}
    rss.push((start.elapsed(), rss_kib(pid)));
    let _ = child.kill();
    let _ = child.wait();

    let c = &counts;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let secs = offered_for.as_secs_f64();
    println!(
        "sent {} ({:.0}/s); 200 within 1 s: {} ({:.0}/s = {:.0}% of capacity); 200 later: {}; shed: {}; other statuses: {:?}; gave up after 5 s: {}; transport errors: {}",
        get(&c.sent),
        get(&c.sent) as f64 / secs,
        get(&c.ok_good),
        get(&c.ok_good) as f64 / secs,
        100.0 * get(&c.ok_good) as f64 / secs / capacity,
        get(&c.ok_late),
        get(&c.shed),
        c.other.lock().unwrap(),
        get(&c.gave_up),
        get(&c.transport),
    );
    println!(
        "successes: p50 {} ms, p99 {} ms",
        ok_latency.quantile_ms(0.5),
        ok_latency.quantile_ms(0.99)
    );
    if get(&c.shed) > 0 {
        println!(
            "shed: statuses {:?}, with Retry-After {:.1}%, with bulwark-shed {:.1}%, answered in p50 {} ms, p99 {} ms",
            c.shed_status.lock().unwrap(),
            100.0 * get(&c.shed_retry_after) as f64 / get(&c.shed) as f64,
            100.0 * get(&c.shed_marked) as f64 / get(&c.shed) as f64,
            shed_latency.quantile_ms(0.5),
            shed_latency.quantile_ms(0.99),
        );
    }
    let kib: Vec<u64> = rss.iter().map(|&(_, k)| k).collect();
    let after_10s: Vec<u64> = rss
        .iter()
        .filter(|(t, _)| *t >= Duration::from_secs(10))
        .map(|&(_, k)| k)
        .collect();
    println!(
        "server RSS (KiB) every 2 s: {}",
        kib.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
    );
    if let (Some(first), Some(max), Some(last)) =
        (after_10s.first(), after_10s.iter().max(), after_10s.last())
    {
        println!(
            "server RSS from 10 s on: first {first} KiB, max {max} KiB, last {last} KiB ({:+.1}% max over first)",
            100.0 * (*max as f64 - *first as f64) / *first as f64
        );
    }
    Ok(())
}
