//! Every shared layer through the Redis Cluster client, against a real
//! cluster started by the test: one node holding all 16,384 slots (a real
//! cluster: multi-key commands across slots are refused with CROSSSLOT),
//! then three nodes with the slots split and introduced by CLUSTER MEET.
//! Each layer's script touches several keys: they share a hash tag, so the
//! script runs.
#![cfg(feature = "cluster")]

mod support;

use bulwark_core::BoxError;
use bulwark_fleet::{Fleet, FleetRateLimiter, FleetState, SharedBreakerLayer, SharedRetryBudget};
use bulwark_ratelimit::Admit;
use std::time::Duration;
use support::{command, eventually, Cluster};
use tower::{service_fn, Layer, ServiceExt};

fn fleet(url: &str, prefix: &str) -> Fleet {
    Fleet::builder()
        .url(url)
        .prefix(prefix)
        .sync_interval(Duration::from_millis(50))
        .op_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// Two instances' breakers, a budget and a limiter on `url`: the fleet's
/// breaker opens on both, the budget grants a share of its ratio, the
/// limiter leases tokens, none of them degraded.
async fn every_layer_works(url: &str, prefix: &str) {
    let fleets = [fleet(url, prefix), fleet(url, prefix)];
    assert!(fleets[0].is_cluster());
    let breakers: Vec<SharedBreakerLayer> = fleets
        .iter()
        .map(|f| {
            SharedBreakerLayer::builder(f, "payments")
                .minimum_calls(20)
                .open_for(Duration::from_secs(5))
                .build()
                .unwrap()
        })
        .collect();
    let budget =
        SharedRetryBudget::new(&fleets[0], "payments", 0.5, 1, Duration::from_secs(10)).unwrap();
    let limiter = FleetRateLimiter::builder(&fleets[1], "payments")
        .limit(1000, Duration::from_secs(1))
        .build()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || breakers
            .iter()
            .all(|b| !b.snapshot().degraded)
            && !budget.snapshot().degraded
            && !limiter.is_degraded())
        .await
        .is_some(),
        "every layer reaches the cluster"
    );
    // 15 failures through each instance: 30 in the fleet's window, more
    // than its minimum of 20, so the fleet (not either instance) trips.
    for b in &breakers {
        let svc = b.layer(service_fn(|()| async { Err::<(), BoxError>("503".into()) }));
        for _ in 0..15 {
            let _ = svc.clone().oneshot(()).await;
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || breakers
            .iter()
            .all(|b| b.snapshot().state == FleetState::Open))
        .await
        .is_some(),
        "both instances see the fleet open: {:?}",
        breakers.iter().map(|b| b.snapshot()).collect::<Vec<_>>()
    );
    let generations: Vec<u64> = breakers.iter().map(|b| b.snapshot().generation).collect();
    assert_eq!(generations[0], generations[1]);
    assert!(generations[0] >= 1);
    // The budget: requests published, a share of ratio × requests granted.
    let retry_budget = budget.budget();
    for _ in 0..100 {
        retry_budget.deposit();
    }
    assert!(
        eventually(Duration::from_secs(5), || budget.snapshot().fleet_requests
            >= 100)
        .await
        .is_some(),
        "{:?}",
        budget.snapshot()
    );
    assert!(
        eventually(Duration::from_secs(5), || budget.snapshot().share > 0)
            .await
            .is_some()
    );
    // The limiter: a lease granted by the GCRA script.
    let _ = limiter.admit();
    assert!(
        eventually(Duration::from_secs(5), || limiter.snapshot().granted > 0)
            .await
            .is_some(),
        "{:?}",
        limiter.snapshot()
    );
    assert!(!limiter.is_degraded() && !budget.snapshot().degraded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_cluster_runs_every_script() {
    let Some(cluster) = Cluster::start(1).await else {
        return;
    };
    let port = cluster.ports[0];
    // A real cluster: keys of two slots in one script are refused...
    let refused = command(port, &["EVAL", "return 1", "2", "{a}:x", "{b}:y"]).await;
    assert!(refused.contains("CROSSSLOT"), "{refused}");
    // ...keys of one hash tag are not.
    let ok = command(port, &["EVAL", "return 1", "2", "{a}:x", "{a}:y"]).await;
    assert_eq!(ok.trim(), ":1");
    let prefix = format!("c{}", fastrand::u32(..));
    every_layer_works(&cluster.url(), &prefix).await;
    // The breaker's keys are where the slot of its hash tag says.
    let gen = format!("{{{prefix}:b:payments}}:gen");
    assert_eq!(command(port, &["EXISTS", &gen]).await.trim(), ":1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_spreads_the_layers() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let prefix = format!("c{}", fastrand::u32(..));
    every_layer_works(&cluster.url(), &prefix).await;
    // Each layer's keys sit together on the node that owns their tag's slot.
    for (kind, part) in [("b", "gen"), ("rb", "members"), ("rl", "members")] {
        let key = format!("{{{prefix}:{kind}:payments}}:{part}");
        let owner = cluster.node_of(&key).await;
        assert_eq!(
            command(owner, &["EXISTS", &key]).await.trim(),
            ":1",
            "{key} on {owner}"
        );
        for other in cluster.ports.iter().filter(|p| **p != owner) {
            let moved = command(*other, &["EXISTS", &key]).await;
            assert!(moved.starts_with("-MOVED"), "{key} on {other}: {moved}");
        }
    }
    // One seed node is enough: the client learns the others from it.
    let seed = format!("redis+cluster://127.0.0.1:{}", cluster.ports[2]);
    let f = fleet(&seed, &prefix);
    let gate = SharedBreakerLayer::builder(&f, "payments").build().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !gate.snapshot().degraded)
            .await
            .is_some()
    );
    assert_eq!(
        gate.snapshot().state,
        FleetState::Open,
        "it reads the trip of the others"
    );
}
