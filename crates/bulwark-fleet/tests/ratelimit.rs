//! The fleet rate limiter against a real `redis-server`: exact GCRA for the
//! fleet, local fall-back when Redis is killed, slow or cut off, and
//! rejoining by itself. Real time (Redis is real), short and bounded.

mod support;

use bulwark_core::error::RateLimited;
use bulwark_fleet::{Fleet, FleetEvent, FleetRateLimiter};
use bulwark_ratelimit::{Admit, Rate};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use support::{eventually, Proxy, Redis};

fn fleet(url: &str, events: &Arc<Mutex<Vec<FleetEvent>>>) -> Fleet {
    let events = events.clone();
    Fleet::builder()
        .url(url)
        .prefix(format!("t{}", fastrand::u32(..)))
        .sync_interval(Duration::from_millis(50))
        .op_timeout(Duration::from_millis(100))
        .on_event(move |e: &FleetEvent| events.lock().push(e.clone()))
        .build()
        .unwrap()
}

async fn connected(limiters: &[FleetRateLimiter]) {
    let took = eventually(Duration::from_secs(5), || {
        limiters.iter().all(|l| !l.is_degraded())
    })
    .await;
    assert!(took.is_some(), "limiters did not reach redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_shares_one_burst_exactly() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let prefix = format!("exact{}", fastrand::u32(..));
    // Three instances, each with its own connection; 5 calls per 10 s.
    let limiters: Vec<_> = (0..3)
        .map(|_| {
            let f = Fleet::builder()
                .url(redis.url())
                .prefix(prefix.clone())
                .op_timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            FleetRateLimiter::builder(&f, "exact")
                .limit(5, Duration::from_secs(10))
                .build()
                .unwrap()
        })
        .collect();
    connected(&limiters).await;
    let mut admitted = 0;
    let mut refused = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(400) {
        for l in &limiters {
            match l.admit() {
                Ok(()) => admitted += 1,
                Err(e) => {
                    let _: RateLimited = e;
                    refused += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The burst of 5, plus at most one cell refilled (every 2 s) while the
    // test runs.
    assert!((5..=6).contains(&admitted), "admitted {admitted}");
    assert!(refused > 0);
    let granted: u64 = limiters.iter().map(|l| l.snapshot().granted).sum();
    assert_eq!(granted, admitted);
    assert_eq!(limiters[0].snapshot().instances, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_falls_back_and_rejoins() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let events: Arc<Mutex<Vec<FleetEvent>>> = Arc::default();
    let limiters: Vec<_> = (0..3)
        .map(|_| {
            FleetRateLimiter::builder(&fleet(&redis.url(), &events), "killed")
                .limit(3_000, Duration::from_secs(1))
                .build()
                .unwrap()
        })
        .collect();
    connected(&limiters).await;
    // 3 instances × ~200 calls/s: well under the limit, and under the
    // fall-back share (1,000/s each). None may be refused at any time.
    let offer = |limiters: &[FleetRateLimiter]| {
        for l in limiters {
            if let Err(e) = l.admit() {
                panic!("refused under the limit: {e}");
            }
        }
    };
    for _ in 0..50 {
        offer(&limiters);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.down().await;
    let start = tokio::time::Instant::now();
    let mut fell_back_in = None;
    while start.elapsed() < Duration::from_secs(2) {
        offer(&limiters);
        if fell_back_in.is_none() && limiters.iter().all(FleetRateLimiter::is_degraded) {
            fell_back_in = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fell_back_in = fell_back_in.expect("did not fall back");
    assert!(fell_back_in < Duration::from_secs(1), "{fell_back_in:?}");
    assert_eq!(
        events
            .lock()
            .iter()
            .filter(|e| matches!(e, FleetEvent::FellBack { .. }))
            .count(),
        3
    );
    redis.up().await;
    let start = tokio::time::Instant::now();
    let mut rejoined_in = None;
    while start.elapsed() < Duration::from_secs(6) && rejoined_in.is_none() {
        offer(&limiters);
        if limiters.iter().all(|l| !l.is_degraded()) {
            rejoined_in = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rejoined_in = rejoined_in.expect("did not rejoin within 6 s");
    assert!(rejoined_in < Duration::from_secs(5), "{rejoined_in:?}");
    assert_eq!(
        events
            .lock()
            .iter()
            .filter(|e| matches!(e, FleetEvent::Rejoined { .. }))
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_cut_off_redis_never_holds_a_call() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let proxy = Proxy::start(redis.port).await;
    let events: Arc<Mutex<Vec<FleetEvent>>> = Arc::default();
    let limiter = FleetRateLimiter::builder(&fleet(&proxy.url(), &events), "slow")
        .limit(1_000, Duration::from_secs(1))
        .fallback(Rate::new(400, Duration::from_secs(1)).unwrap())
        .build()
        .unwrap();
    connected(std::slice::from_ref(&limiter)).await;

    for (what, fault, heal) in [
        (
            "latency",
            Box::new(|p: &Proxy| p.set_latency(Duration::from_millis(300))) as Box<dyn Fn(&Proxy)>,
            Box::new(|p: &Proxy| p.set_latency(Duration::ZERO)) as Box<dyn Fn(&Proxy)>,
        ),
        (
            "dropped",
            Box::new(|p: &Proxy| p.set_dropping(true)),
            Box::new(|p: &Proxy| p.set_dropping(false)),
        ),
    ] {
        fault(&proxy);
        let fell = eventually(Duration::from_secs(2), || {
            for _ in 0..2 {
                assert!(limiter.admit().is_ok(), "{what}: refused under the limit");
            }
            limiter.is_degraded()
        })
        .await;
        assert!(
            fell.expect(what) < Duration::from_secs(1),
            "{what}: {fell:?}"
        );
        heal(&proxy);
        let back = eventually(Duration::from_secs(6), || {
            assert!(limiter.admit().is_ok(), "{what}: refused under the limit");
            !limiter.is_degraded()
        })
        .await;
        assert!(
            back.expect(what) < Duration::from_secs(5),
            "{what}: {back:?}"
        );
    }
    let events = events.lock();
    assert_eq!(events.len(), 4, "{events:?}");
}

/// Run by `instances_in_separate_processes_share_the_limit` in child
/// processes (this test binary again); does nothing when run alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_instance() {
    let (Ok(url), Ok(prefix)) = (
        std::env::var("BULWARK_FLEET_CHILD_URL"),
        std::env::var("BULWARK_FLEET_CHILD_PREFIX"),
    ) else {
        return;
    };
    let fleet = Fleet::builder()
        .url(url)
        .prefix(prefix)
        .op_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let limiter = FleetRateLimiter::builder(&fleet, "processes")
        .limit(10, Duration::from_secs(60))
        .build()
        .unwrap();
    connected(std::slice::from_ref(&limiter)).await;
    let mut admitted = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(400) {
        if limiter.admit().is_ok() {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("CHILD-ADMITTED {admitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_in_separate_processes_share_the_limit() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let prefix = format!("proc{}", fastrand::u32(..));
    let children: Vec<_> = (0..3)
        .map(|_| {
            tokio::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_instance",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("BULWARK_FLEET_CHILD_URL", redis.url())
                .env("BULWARK_FLEET_CHILD_PREFIX", &prefix)
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("a child instance hung")
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let n: u32 = text
            .lines()
            .find_map(|l| l.split("CHILD-ADMITTED ").nth(1))
            .unwrap_or_else(|| panic!("no count in {text}"))
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .parse()
            .unwrap();
        total += n;
    }
    // Three processes, one burst of 10 per minute between them (plus at
    // most one cell refilled, every 6 s, while they run; each process may
    // also admit locally for the few milliseconds before it first reached
    // Redis, which `connected` waits out).
    assert!((10..=11).contains(&total), "{total}");
}
