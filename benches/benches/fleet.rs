//! The cost per call of sharing through Redis (`bulwark::fleet`) against
//! the local layer, in the same run: a fleet rate limiter spending its
//! lease against a local GCRA limiter, and a shared breaker gate (closed)
//! in front of a local breaker against the local breaker alone. No Redis
//! call is on the measured path: the background tasks sync on another
//! thread.
//!
//! Needs `redis-server` (started here on a free loopback port); skipped
//! with a message without it.
//!
//! Run: `cargo bench -p bulwark-benches --bench fleet`

use bulwark::fleet::{Fleet, FleetRateLimiter, SharedBreakerLayer};
use bulwark::ratelimit::{RateLimitLayer, RateLimiter};
use bulwark_benches::{call_now, keep, Counting, Group, Noop, INSTRUMENTED_SYSTEM};
use bulwark_breaker::{Breaker, CircuitBreakerLayer};
use std::time::Duration;
use tower::Layer;

#[global_allocator]
static GLOBAL: Counting = &INSTRUMENTED_SYSTEM;

fn ratio(r: &[bulwark_benches::Measured], shared: usize, local: usize) {
    let bare = r[0].median_ns;
    println!(
        "\n`{}` / `{}`: {:.2}x per call ({:.1} ns vs {:.1} ns); overhead over the bare service {:.1} ns vs {:.1} ns",
        r[shared].name,
        r[local].name,
        r[shared].median_ns / r[local].median_ns,
        r[shared].median_ns,
        r[local].median_ns,
        r[shared].median_ns - bare,
        r[local].median_ns - bare,
    );
}

fn main() {
    let Ok(port) =
        std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().unwrap().port())
    else {
        println!("SKIPPED: no loopback port");
        return;
    };
    let server = std::process::Command::new("redis-server")
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
        .spawn();
    let Ok(mut server) = server else {
        println!("SKIPPED: redis-server not found (apt-get install -y redis-server)");
        return;
    };
    // The fleet's tasks run on a worker thread; the bench thread only
    // enters the runtime to build the layers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let url = format!("redis://127.0.0.1:{port}");
    let fleet = Fleet::builder()
        .url(&url)
        .prefix(format!("bench{}", std::process::id()))
        .op_timeout(Duration::from_millis(200))
        .build()
        .unwrap();

    // 1. Rate limit, every call admitted. A burst larger than what the
    //    benchmark spends, so both limiters only ever admit.
    let local = RateLimiter::builder()
        .limit(1_000_000, Duration::from_secs(1))
        .burst(4_000_000)
        .build()
        .unwrap();
    let shared = FleetRateLimiter::builder(&fleet, "bench")
        .limit(1_000_000, Duration::from_secs(1))
        .burst(4_000_000)
        .refill_interval(Duration::from_secs(1))
        .lease_ttl(Duration::from_secs(600))
        .build()
        .unwrap();
    let leased = rt.block_on(async {
        let start = tokio::time::Instant::now();
        while shared.snapshot().leased < 1_000_000 {
            if start.elapsed() > Duration::from_secs(10) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    });
    if !leased {
        println!("SKIPPED: the fleet limiter got no lease from redis in 10 s");
        let _ = server.kill();
        return;
    }
    let mut bare = Noop;
    let mut local_svc = RateLimitLayer::new(local).layer(Noop);
    let mut shared_svc = RateLimitLayer::new(shared.clone()).layer(Noop);
    let r = Group::new("rate limit, every call admitted")
        .iters(20_000)
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench("bulwark RateLimit, local GCRA (governor)", || {
            keep(call_now(&mut local_svc, 1).unwrap())
        })
        .bench("bulwark RateLimit, FleetRateLimiter (lease)", || {
            keep(call_now(&mut shared_svc, 1).unwrap())
        })
        .run(GLOBAL);
    if !r.is_empty() {
        ratio(&r, 2, 1);
        assert!(
            !shared.is_degraded(),
            "the fleet limiter fell back during the run"
        );
    }

    // 2. Breaker closed, all successes: the shared gate in front of the
    //    local breaker, against the local breaker alone.
    let breaker = || {
        Breaker::builder()
            .count_window(100)
            .failure_rate(0.5)
            .build()
            .unwrap()
    };
    let gate = SharedBreakerLayer::builder(&fleet, "bench")
        .build()
        .unwrap();
    let mut bare = Noop;
    let mut local_svc = CircuitBreakerLayer::new(breaker()).layer(Noop);
    let mut shared_svc = gate.layer(CircuitBreakerLayer::new(breaker()).layer(Noop));
    let r = Group::new("breaker closed, all successes")
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench("bulwark CircuitBreaker (local)", || {
            keep(call_now(&mut local_svc, 1).unwrap())
        })
        .bench("bulwark SharedBreaker + CircuitBreaker", || {
            keep(call_now(&mut shared_svc, 1).unwrap())
        })
        .run(GLOBAL);
    if !r.is_empty() {
        ratio(&r, 2, 1);
    }
    let _ = server.kill();
}
