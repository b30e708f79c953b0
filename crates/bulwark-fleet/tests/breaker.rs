//! The shared breaker against a real `redis-server`: the fleet trips on
//! its aggregate rate although no instance alone has enough calls, every
//! instance stops within a sync interval of the trip, one probe goes
//! fleet-wide, and Redis going away leaves the local decision. Real time
//! (Redis is real), short and bounded.

mod support;

use bulwark_core::error::{find, CircuitOpen};
use bulwark_core::BoxError;
use bulwark_fleet::{Fleet, FleetEvent, FleetState, SharedBreakerLayer};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{eventually, Redis};
use tower::{service_fn, Layer, ServiceExt};

struct Upstream {
    down: AtomicBool,
    calls: AtomicUsize,
}

fn instances(
    url: &str,
    prefix: &str,
    n: usize,
    events: &Arc<Mutex<Vec<FleetEvent>>>,
) -> Vec<SharedBreakerLayer> {
    (0..n)
        .map(|_| {
            let events = events.clone();
            let fleet = Fleet::builder()
                .url(url)
                .prefix(prefix)
                .sync_interval(Duration::from_millis(50))
                .op_timeout(Duration::from_secs(1))
                .on_event(move |e: &FleetEvent| events.lock().push(e.clone()))
                .build()
                .unwrap();
            SharedBreakerLayer::builder(&fleet, "payments")
                .minimum_calls(20)
                .failure_rate(0.5)
                .open_for(Duration::from_millis(600))
                .probe_lease(Duration::from_millis(300))
                .build()
                .unwrap()
        })
        .collect()
}

async fn call(layer: &SharedBreakerLayer, up: &Arc<Upstream>) -> Result<(), BoxError> {
    let up = up.clone();
    let svc = layer.layer(service_fn(move |()| {
        let up = up.clone();
        async move {
            up.calls.fetch_add(1, Ordering::SeqCst);
            if up.down.load(Ordering::SeqCst) {
                Err::<(), BoxError>("503".into())
            } else {
                Ok(())
            }
        }
    }));
    svc.oneshot(()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_trips_together_and_probes_once() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let events: Arc<Mutex<Vec<FleetEvent>>> = Arc::default();
    let prefix = format!("b{}", fastrand::u32(..));
    let fleet = instances(&redis.url(), &prefix, 3, &events);
    assert!(
        eventually(Duration::from_secs(5), || fleet
            .iter()
            .all(|l| !l.snapshot().degraded))
        .await
        .is_some(),
        "did not reach redis"
    );
    let up = Arc::new(Upstream {
        down: AtomicBool::new(true),
        calls: AtomicUsize::new(0),
    });
    // 8 failures per instance: each alone is below the minimum of 20
    // calls; the fleet's 24 are above it.
    for layer in &fleet {
        for _ in 0..8 {
            assert!(call(layer, &up).await.is_err());
        }
    }
    let open = eventually(Duration::from_secs(2), || {
        fleet.iter().all(|l| l.snapshot().state == FleetState::Open)
    })
    .await;
    assert!(open.is_some(), "the fleet did not open");
    let generations: Vec<u64> = fleet.iter().map(|l| l.snapshot().generation).collect();
    assert!(
        generations.iter().all(|g| *g == generations[0] && *g > 0),
        "{generations:?}"
    );
    // Every instance refuses, without calling the upstream.
    let before = up.calls.load(Ordering::SeqCst);
    for layer in &fleet {
        let err = call(layer, &up).await.unwrap_err();
        let open = find::<CircuitOpen>(&*err).expect("circuit open");
        assert_eq!(open.name(), Some("payments"));
        assert!(open.retry_after().unwrap() <= Duration::from_millis(600));
    }
    assert_eq!(up.calls.load(Ordering::SeqCst), before);

    // The upstream heals; after the open time, one probe goes fleet-wide
    // and its success closes the breaker everywhere.
    up.down.store(false, Ordering::SeqCst);
    let start = tokio::time::Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(4) && !closed {
        for layer in &fleet {
            let _ = call(layer, &up).await;
        }
        closed = fleet
            .iter()
            .all(|l| l.snapshot().state == FleetState::Closed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(closed, "the fleet did not close");
    // One probe, plus the calls of instances that learnt "closed" at their
    // sync before the last one did.
    let probes_and_after = up.calls.load(Ordering::SeqCst) - before;
    assert!(probes_and_after >= 1);
    let events = events.lock();
    let opened = events
        .iter()
        .filter(|e| matches!(e, FleetEvent::BreakerOpened { .. }))
        .count();
    assert_eq!(opened, 3, "{events:?}");
    let closes: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            FleetEvent::BreakerClosed { generation, .. } => Some(*generation),
            _ => None,
        })
        .collect();
    assert_eq!(closes.len(), 3, "{events:?}");
    assert!(closes
        .iter()
        .all(|g| *g == closes[0] && *g > generations[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sends_one_probe_per_lease_fleet_wide() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let events: Arc<Mutex<Vec<FleetEvent>>> = Arc::default();
    let prefix = format!("p{}", fastrand::u32(..));
    let fleet = instances(&redis.url(), &prefix, 3, &events);
    assert!(eventually(Duration::from_secs(5), || fleet
        .iter()
        .all(|l| !l.snapshot().degraded))
    .await
    .is_some());
    let up = Arc::new(Upstream {
        down: AtomicBool::new(true),
        calls: AtomicUsize::new(0),
    });
    for layer in &fleet {
        for _ in 0..8 {
            let _ = call(layer, &up).await;
        }
    }
    assert!(eventually(Duration::from_secs(2), || fleet
        .iter()
        .all(|l| l.snapshot().state == FleetState::Open))
    .await
    .is_some());
    // The upstream stays down: hammer it from all three instances for
    // 1.5 s. The fleet opens for 600 ms after each failed probe, so it
    // sends one probe per 600 ms or so: at most 3 in 1.5 s, not 3 × that.
    let before = up.calls.load(Ordering::SeqCst);
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1_500) {
        for layer in &fleet {
            let _ = call(layer, &up).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let probes = up.calls.load(Ordering::SeqCst) - before;
    assert!((1..=3).contains(&probes), "{probes} probes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_gate_leaves_the_local_decision() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let events: Arc<Mutex<Vec<FleetEvent>>> = Arc::default();
    let prefix = format!("d{}", fastrand::u32(..));
    let fleet = instances(&redis.url(), &prefix, 1, &events);
    assert!(
        eventually(Duration::from_secs(5), || !fleet[0].snapshot().degraded)
            .await
            .is_some()
    );
    redis.down().await;
    assert!(
        eventually(Duration::from_secs(3), || fleet[0].snapshot().degraded)
            .await
            .is_some(),
        "did not notice redis was gone"
    );
    let up = Arc::new(Upstream {
        down: AtomicBool::new(false),
        calls: AtomicUsize::new(0),
    });
    for _ in 0..100 {
        call(&fleet[0], &up).await.unwrap();
    }
    assert_eq!(up.calls.load(Ordering::SeqCst), 100);
    assert!(events
        .lock()
        .iter()
        .any(|e| matches!(e, FleetEvent::FellBack { .. })));
    redis.up().await;
    assert!(
        eventually(Duration::from_secs(5), || !fleet[0].snapshot().degraded)
            .await
            .is_some(),
        "did not rejoin"
    );
}
