//! The shared retry budget against a real `redis-server`: the fleet's
//! retries stay within the ratio of the fleet's requests.

mod support;

use bulwark_fleet::{Fleet, SharedRetryBudget};
use std::time::Duration;
use support::{eventually, Redis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_retries_within_its_ratio() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let prefix = format!("rb{}", fastrand::u32(..));
    let budgets: Vec<_> = (0..2)
        .map(|_| {
            let fleet = Fleet::builder()
                .url(redis.url())
                .prefix(prefix.clone())
                .sync_interval(Duration::from_millis(50))
                .op_timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            SharedRetryBudget::new(&fleet, "inventory", 0.1, 0, Duration::from_secs(10)).unwrap()
        })
        .collect();
    // Instance 0 takes all the traffic: 200 requests. Instance 1 none.
    let b0 = budgets[0].budget();
    for _ in 0..200 {
        b0.deposit();
    }
    let synced = eventually(Duration::from_secs(3), || {
        budgets
            .iter()
            .all(|b| b.snapshot().fleet_requests == 200 && b.snapshot().instances == 2)
    })
    .await;
    assert!(synced.is_some(), "{:?}", budgets[0].snapshot());
    // 10% of the fleet's 200 requests: 20 retries, half to each instance
    // until the next sync; then what is left.
    let mut taken = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        for b in &budgets {
            if b.budget().withdraw() {
                taken += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(taken, 20);
    assert!(eventually(Duration::from_secs(2), || budgets[1]
        .snapshot()
        .fleet_retries
        == 20)
    .await
    .is_some());

    // Redis gone: each instance falls back to its own local ratio budget
    // (instance 1 has seen no request: no retry).
    redis.down().await;
    assert!(eventually(Duration::from_secs(2), || budgets
        .iter()
        .all(|b| b.snapshot().degraded))
    .await
    .is_some());
    assert!(!budgets[1].budget().withdraw());
}
