//! `[fleet]` and `shared = true` build the fleet's layers: two "instances"
//! (each its own registry, so its own connection) configured from the same
//! TOML against a real `redis-server` started by the test see their
//! shared breaker open together, although neither alone has enough calls
//! to trip its local breaker. Real time (Redis is real), short and bounded.
#![cfg(feature = "fleet")]

#[path = "../../bulwark-fleet/tests/support/mod.rs"]
mod support;

use bulwark_config::ResilienceConfig;
use bulwark_core::error::{find, CircuitOpen};
use bulwark_core::BoxError;
use bulwark_observe::Registry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{eventually, Redis};
use tower::{service_fn, Layer, ServiceExt};

fn config(url: &str, prefix: &str) -> ResilienceConfig {
    ResilienceConfig::from_toml_str(&format!(
        r#"
        [fleet]
        redis_url = "{url}"
        prefix = "{prefix}"
        sync_interval = "50ms"
        op_timeout = "1s"

        [breaker.payments]
        shared = true
        failure_rate = 0.5
        minimum_calls = 20
        open_for = "5s"

        [retry.payments]
        max_attempts = 1

        [retry_budget.payments]
        shared = true

        [ratelimit.payments]
        limit = 10000
        shared = true
        "#
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_from_one_config_open_together() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let prefix = format!("cfg{}", std::process::id());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut instances = Vec::new();
    let mut registries = Vec::new();
    for _ in 0..2 {
        let registry = Registry::new();
        let layer = config(&redis.url(), &prefix)
            .client_layer::<bool>("payments", &registry)
            .unwrap();
        let calls = calls.clone();
        // `true` fails, `false` succeeds.
        let svc = layer.layer(service_fn(move |fail: bool| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if fail {
                    Err::<(), BoxError>("503".into())
                } else {
                    Ok(())
                }
            }
        }));
        instances.push(svc);
        registries.push(registry);
    }
    let linked = |registries: &[Registry]| {
        registries.iter().all(|r| {
            let fleet = r.health().fleet;
            fleet.len() == 4
                && fleet
                    .iter()
                    .all(|f| f.link == bulwark_observe::health::FleetLink::Up)
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || linked(&registries))
            .await
            .is_some(),
        "{:?}",
        registries[0].health().fleet
    );
    // Each instance: 16 calls, every other one failing: 50% failures but
    // under its local breaker's minimum of 20 calls (and never 10 failures
    // in a row), so no local breaker trips; the fleet's window holds 32.
    for svc in &instances {
        for i in 0..16 {
            let _ = svc.clone().oneshot(i % 2 == 0).await;
        }
    }
    for r in &registries {
        assert_eq!(
            r.get_breaker("payments").unwrap().state(),
            bulwark_breaker::State::Closed,
            "the local breaker alone does not trip"
        );
    }
    let open = |r: &Registry| {
        r.health()
            .fleet
            .iter()
            .any(|f| f.name == "payments" && !f.healthy)
    };
    assert!(
        eventually(Duration::from_secs(5), || registries.iter().all(open))
            .await
            .is_some(),
        "both instances see the fleet's breaker open: {:?}",
        registries
            .iter()
            .map(|r| r.health().fleet)
            .collect::<Vec<_>>()
    );
    // And refuse calls without reaching the upstream.
    let before = calls.load(Ordering::SeqCst);
    for svc in &instances {
        let err = svc.clone().oneshot(false).await.unwrap_err();
        let open = find::<CircuitOpen>(&*err).unwrap_or_else(|| panic!("{err}"));
        assert_eq!(open.name(), Some("payments"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), before);
    // The status says so, as for a local breaker.
    assert!(!registries[1].health().is_healthy());
    // The same generation everywhere: one trip, seen by both.
    let generation = |r: &Registry| {
        let json = serde_json::to_value(r.health()).unwrap();
        json["fleet"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "breaker")
            .unwrap()["generation"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(generation(&registries[0]), generation(&registries[1]));
    // A layer built again for the name shares the same gate (made once
    // per registry): it refuses at once.
    let again = config(&redis.url(), &prefix)
        .client_layer::<bool>("payments", &registries[0])
        .unwrap()
        .layer(service_fn(|_: bool| async { Ok::<(), BoxError>(()) }));
    assert!(again.oneshot(false).await.is_err());
}

#[cfg(feature = "http")]
#[tokio::test(flavor = "current_thread")]
async fn the_http_stack_needs_the_gate_in_front() {
    let config = config("redis://127.0.0.1:1", "http");
    let registry = Registry::new();
    let e = config.http_client_stack("payments", &registry).unwrap_err();
    assert_eq!(e.path(), "breaker.payments.shared");
    assert!(e.reason().contains("fleet_layer"), "{e}");
    let front = config
        .fleet_layer::<http::Request<String>>("payments", &registry)
        .unwrap();
    assert!(front.shared_breaker().is_some() && front.is_rate_limited());
    assert!(config.http_client_stack("payments", &registry).is_ok());
}
