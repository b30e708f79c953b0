//! Run with: cargo run --example fleet
//!
//! Three instances of a service share one circuit breaker through Redis
//! (`bulwark::fleet`): the upstream starts failing, and the fleet's breaker
//! opens on every instance within one sync interval, although no instance
//! alone has seen enough calls to judge; one probe (fleet-wide) closes it
//! when the upstream is back. Then ten instances share one rate limit of
//! 1,000 calls/s while offering 5,000/s, and the upstream's rate is printed
//! per second and over the 10 s window.
//!
//! Uses `REDIS_URL` when set; otherwise starts a `redis-server` on a free
//! loopback port (`apt-get install redis-server`).

use bulwark::breaker::{Breaker, CircuitBreakerLayer};
use bulwark::fleet::{Fleet, FleetEvent, FleetRateLimiter, ShareBreaker};
use bulwark::ratelimit::{Admit, RateLimitLayer};
use bulwark::BoxError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (url, _server) = redis().await?;
    println!("redis at {url}\n");
    let fleet = breaker_opens_everywhere(&url).await?;
    let alone = one_instance_alone().await?;
    println!(
        "  detection: the fleet (3 × 50/s) opened {:.2} s after the fault on its first instance, {:.2} s on its last;\n  one instance alone with all 150/s and the same thresholds: {:.2} s.\n  upstream calls during the outage: fleet {}, one instance alone {} (ratio {:.2})\n",
        fleet.0, fleet.1, alone.0, fleet.2, alone.1, fleet.2 as f64 / alone.1.max(1) as f64
    );
    rate_limit_accuracy(&url).await?;
    Ok(())
}

/// Returns when the first and the last instance saw the fleet open
/// (seconds after the fault) and the upstream calls during the outage.
async fn breaker_opens_everywhere(url: &str) -> Result<(f64, f64, u64), BoxError> {
    println!(
        "== a shared breaker: 3 instances, each 50 calls/s; the upstream fails from 1 s to 3 s"
    );
    let start = Instant::now();
    let down = Arc::new(AtomicBool::new(false));
    let upstream_calls = Arc::new(AtomicU64::new(0));
    let during_outage = Arc::new(AtomicU64::new(0));
    let opened: Arc<parking_lot::Mutex<Vec<f64>>> = Arc::default();
    let prefix = format!("example-{}", std::process::id());
    let mut tasks = Vec::new();
    for id in 0..3 {
        let opened = opened.clone();
        let fleet = Fleet::builder()
            .url(url)
            .prefix(prefix.clone())
            .instance(format!("instance-{id}"))
            .sync_interval(Duration::from_millis(100))
            .on_event(move |e: &FleetEvent| {
                let t = start.elapsed().as_secs_f64();
                match e {
                    FleetEvent::BreakerOpened { generation, open_for, .. } => {
                        if *generation == 1 {
                            opened.lock().push(t - 1.0);
                        }
                        println!(
                            "  t={t:5.2}s  instance-{id}: fleet breaker OPEN   (generation {generation}, for {open_for:?})"
                        )
                    }
                    FleetEvent::BreakerHalfOpen { generation, .. } => println!(
                        "  t={t:5.2}s  instance-{id}: fleet breaker half-open (generation {generation})"
                    ),
                    FleetEvent::BreakerClosed { generation, .. } => println!(
                        "  t={t:5.2}s  instance-{id}: fleet breaker CLOSED (generation {generation})"
                    ),
                    other => println!("  t={t:5.2}s  instance-{id}: {other:?}"),
                }
            })
            .build()?;
        // Alone, an instance judges on 100 calls of its own (2 s of its
        // traffic); the fleet on 30 calls of everyone's in a 1 s window.
        let local = Breaker::builder()
            .name("payments")
            .without_consecutive_failures()
            .minimum_calls(100)
            .build()?;
        let shared = local
            .shared(&fleet)
            .minimum_calls(30)
            .failure_rate(0.5)
            .window(Duration::from_secs(1))
            .open_for(Duration::from_millis(800))
            .probe_lease(Duration::from_millis(500))
            .build()?;
        let down = down.clone();
        let calls = upstream_calls.clone();
        let outage = during_outage.clone();
        let mut svc = ServiceBuilder::new()
            .layer(shared)
            .layer(CircuitBreakerLayer::new(local))
            .service_fn(move |_: ()| {
                calls.fetch_add(1, Ordering::Relaxed);
                let failing = down.load(Ordering::Relaxed);
                if failing {
                    outage.fetch_add(1, Ordering::Relaxed);
                }
                async move {
                    if failing {
                        Err::<(), BoxError>("503 from the upstream".into())
                    } else {
                        Ok(())
                    }
                }
            });
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let (mut ok, mut failed, mut refused) = (0u32, 0u32, 0u32);
            while start.elapsed() < Duration::from_millis(5_000) {
                tick.tick().await;
                match svc.ready().await.unwrap().call(()).await {
                    Ok(()) => ok += 1,
                    Err(e) if bulwark::error::is_rejection(&*e) => refused += 1,
                    Err(_) => failed += 1,
                }
            }
            (id, ok, failed, refused)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "  t={:5.2}s  upstream starts failing",
        start.elapsed().as_secs_f64()
    );
    down.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "  t={:5.2}s  upstream is back",
        start.elapsed().as_secs_f64()
    );
    down.store(false, Ordering::Relaxed);
    for task in tasks {
        let (id, ok, failed, refused) = task.await?;
        println!("  instance-{id}: {ok} ok, {failed} failed upstream, {refused} refused (fleet or local breaker)");
    }
    println!(
        "  the upstream received {} calls in all\n",
        upstream_calls.load(Ordering::Relaxed)
    );
    let opened = opened.lock().clone();
    let first = opened.iter().copied().fold(f64::INFINITY, f64::min);
    let last = opened.iter().copied().fold(0.0, f64::max);
    Ok((first, last, during_outage.load(Ordering::Relaxed)))
}

/// The baseline: one instance taking all the traffic (150 calls/s) with a
/// local breaker of the fleet's thresholds. Returns when it opened
/// (seconds after the fault) and the upstream calls during the outage.
async fn one_instance_alone() -> Result<(f64, u64), BoxError> {
    println!("== the baseline: one instance alone takes all 150 calls/s, a local breaker of the same thresholds");
    let start = Instant::now();
    let opened_at = Arc::new(parking_lot::Mutex::new(None::<f64>));
    let at = opened_at.clone();
    let breaker = Breaker::builder()
        .name("payments")
        .time_window(Duration::from_secs(1), 10)
        .minimum_calls(30)
        .failure_rate(0.5)
        .without_consecutive_failures()
        .open_for(Duration::from_millis(800))
        .permitted_probes(1)
        .successes_to_close(1)
        .on_event(move |e: &bulwark::breaker::BreakerEvent| {
            if let bulwark::breaker::BreakerEventKind::StateChanged(t) = &e.kind {
                if t.to == bulwark::breaker::State::Open {
                    at.lock().get_or_insert(start.elapsed().as_secs_f64() - 1.0);
                }
            }
        })
        .build()?;
    let down = Arc::new(AtomicBool::new(false));
    let during_outage = Arc::new(AtomicU64::new(0));
    let (d, outage) = (down.clone(), during_outage.clone());
    let mut svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker))
        .service_fn(move |_: ()| {
            let failing = d.load(Ordering::Relaxed);
            if failing {
                outage.fetch_add(1, Ordering::Relaxed);
            }
            async move {
                if failing {
                    Err::<(), BoxError>("503".into())
                } else {
                    Ok(())
                }
            }
        });
    let mut tick = tokio::time::interval(Duration::from_micros(6_667));
    while start.elapsed() < Duration::from_millis(3_000) {
        tick.tick().await;
        if start.elapsed() >= Duration::from_secs(1) {
            down.store(true, Ordering::Relaxed);
        }
        let _ = svc.ready().await?.call(()).await;
    }
    let opened = opened_at.lock().unwrap_or(f64::NAN);
    Ok((opened, during_outage.load(Ordering::Relaxed)))
}

async fn rate_limit_accuracy(url: &str) -> Result<(), BoxError> {
    let seconds: u64 = std::env::var("FLEET_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!("== a shared rate limit: 10 instances, limit 1,000/s, offered 5,000/s, {seconds} s");
    let prefix = format!("example-rl-{}", std::process::id());
    let upstream = Arc::new(AtomicU64::new(0));
    let offered = Arc::new(AtomicU64::new(0));
    let mut limiters = Vec::new();
    for id in 0..10 {
        let fleet = Fleet::builder()
            .url(url)
            .prefix(prefix.clone())
            .instance(format!("instance-{id}"))
            .build()?;
        limiters.push(
            FleetRateLimiter::builder(&fleet, "provider")
                .limit(1_000, Duration::from_secs(1))
                .burst(100)
                .build()?,
        );
    }
    // Let every instance reach Redis before the clock starts.
    while limiters.iter().any(FleetRateLimiter::is_degraded) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    let run = Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for limiter in &limiters {
        let upstream = upstream.clone();
        let offered = offered.clone();
        let mut svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(limiter.clone()))
            .service_fn(move |_: ()| {
                upstream.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, BoxError>(()) }
            });
        tasks.push(tokio::spawn(async move {
            // 500 calls/s per instance, in ticks of 10 ms.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while start.elapsed() < run {
                tick.tick().await;
                for _ in 0..5 {
                    offered.fetch_add(1, Ordering::Relaxed);
                    let _ = svc.ready().await.unwrap().call(()).await;
                }
            }
        }));
    }
    let mut last = 0;
    for s in 1..=seconds {
        tokio::time::sleep_until(start + Duration::from_secs(s)).await;
        let now = upstream.load(Ordering::Relaxed);
        println!("  second {s:2}: upstream received {:5}", now - last);
        last = now;
    }
    for task in tasks {
        task.await?;
    }
    let total = upstream.load(Ordering::Relaxed);
    let rate = total as f64 / seconds as f64;
    println!(
        "  offered {:.0}/s; upstream received {total} in {seconds} s = {rate:.1}/s ({:+.2}% of 1,000/s; the burst of 100 is {:.1}%)",
        offered.load(Ordering::Relaxed) as f64 / seconds as f64,
        (rate / 1_000.0 - 1.0) * 100.0,
        100.0 * 100.0 / (1_000.0 * seconds as f64),
    );
    let degraded = limiters.iter().filter(|l| l.is_degraded()).count();
    println!("  instances deciding locally at the end: {degraded}");
    let _ = limiters[0].admit();
    Ok(())
}

/// `REDIS_URL`, or a `redis-server` of our own on a free port.
async fn redis() -> Result<(String, Option<tokio::process::Child>), BoxError> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start redis-server ({e}); install it or set REDIS_URL"))?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((format!("redis://127.0.0.1:{port}"), Some(child)));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("redis-server did not start".into())
}
