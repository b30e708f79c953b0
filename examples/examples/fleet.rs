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
    breaker_opens_everywhere(&url).await?;
    rate_limit_accuracy(&url).await?;
    Ok(())
}

async fn breaker_opens_everywhere(url: &str) -> Result<(), BoxError> {
    println!(
        "== a shared breaker: 3 instances, each 50 calls/s; the upstream fails from 1 s to 3 s"
    );
    let start = Instant::now();
    let down = Arc::new(AtomicBool::new(false));
    let upstream_calls = Arc::new(AtomicU64::new(0));
    let prefix = format!("example-{}", std::process::id());
    let mut tasks = Vec::new();
    for id in 0..3 {
        let fleet = Fleet::builder()
            .url(url)
            .prefix(prefix.clone())
            .instance(format!("instance-{id}"))
            .sync_interval(Duration::from_millis(100))
            .on_event(move |e: &FleetEvent| {
                let t = start.elapsed().as_secs_f64();
                match e {
                    FleetEvent::BreakerOpened { generation, open_for, .. } => println!(
                        "  t={t:5.2}s  instance-{id}: fleet breaker OPEN   (generation {generation}, for {open_for:?})"
                    ),
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
        let mut svc = ServiceBuilder::new()
            .layer(shared)
            .layer(CircuitBreakerLayer::new(local))
            .service_fn(move |_: ()| {
                calls.fetch_add(1, Ordering::Relaxed);
                let failing = down.load(Ordering::Relaxed);
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
    Ok(())
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
