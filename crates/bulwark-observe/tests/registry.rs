//! The registry from many tasks at once, control by name, and health.

use bulwark_breaker::{Breaker, CircuitBreakerLayer, State};
use bulwark_bulkhead::BulkheadLayer;
use bulwark_core::BoxError;
use bulwark_observe::health::{FleetDetail, FleetHealth, FleetLink};
use bulwark_observe::{Kind, Registry, Status};
use bulwark_retry::RetryBudget;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

async fn work(fail: bool) -> Result<(), BoxError> {
    tokio::task::yield_now().await;
    if fail {
        Err("boom".into())
    } else {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_get_the_same_instances_and_share_state() {
    let registry = Registry::new();
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            let breaker = registry
                .breaker(
                    "shared",
                    Breaker::builder()
                        .count_window(1000)
                        .minimum_calls(1000)
                        .without_consecutive_failures(),
                )
                .unwrap();
            let bulkhead = registry.bulkhead("pool", BulkheadLayer::builder().max_concurrent(8));
            let budget = registry.retry_budget("retries", RetryBudget::default());
            let svc = ServiceBuilder::new()
                .layer(CircuitBreakerLayer::new(breaker.clone()))
                .layer(bulkhead)
                .service_fn(work);
            // Each task records one failure and does some control.
            let _ = svc.oneshot(true).await;
            if i % 16 == 0 {
                let _ = registry.health();
                let _ = registry.list();
            }
            (breaker, budget)
        }));
    }
    let mut first = None;
    for t in tasks {
        let (breaker, budget) = t.await.unwrap();
        let (b0, budget0) = first.get_or_insert_with(|| (breaker.clone(), budget.clone()));
        assert!(b0.ptr_eq(&breaker), "one breaker per name");
        assert!(budget0.same_as(&budget), "one budget per name");
    }
    let snapshots = registry.snapshots();
    assert_eq!(snapshots.len(), 1);
    // Every call reached the shared breaker as a failure, unless the shared
    // bulkhead (8 permits, fail fast) turned it away first.
    let turned_away = registry.get_bulkhead("pool").unwrap().rejections();
    assert_eq!(u64::from(snapshots["shared"].failures) + turned_away, 64);
    assert_eq!(
        registry.list(),
        vec![
            (Kind::Breaker, "shared".to_owned()),
            (Kind::Bulkhead, "pool".to_owned()),
            (Kind::RetryBudget, "retries".to_owned()),
        ]
    );
    assert_eq!(registry.get_bulkhead("pool").unwrap().in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_by_name_from_many_tasks() {
    let registry = Registry::new();
    let breaker = registry.breaker("b", Breaker::builder()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => registry.force_open("b").unwrap(),
                1 => registry.force_closed("b").unwrap(),
                _ => registry.reset("b").unwrap(),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Whatever order they ran in, the last word is ours.
    registry.force_open("b").unwrap();
    assert_eq!(breaker.state(), State::ForcedOpen);
    registry.reset("b").unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(registry.reset("nope").unwrap_err().name(), "nope");
    assert_eq!(
        registry.force_open("nope").unwrap_err().to_string(),
        "no breaker named `nope`"
    );
}

#[test]
fn a_bad_configuration_is_an_error_and_registers_nothing() {
    let registry = Registry::new();
    let err = registry
        .breaker("bad", Breaker::builder().failure_rate(2.0))
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate");
    assert!(registry.get_breaker("bad").is_none());
    assert!(registry.list().is_empty());
    // The name is still free for a good one.
    registry.breaker("bad", Breaker::builder()).unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn health_reports_every_instance_and_degrades() {
    let registry = Registry::new();
    let payments = registry
        .breaker(
            "payments",
            Breaker::builder()
                .consecutive_failures(2)
                .open_for(Duration::from_secs(30)),
        )
        .unwrap();
    registry.breaker("search", Breaker::builder()).unwrap();
    let layer = registry.bulkhead("db", BulkheadLayer::builder().max_concurrent(1));
    registry.retry_budget("payments", RetryBudget::unlimited());
    let hosts = registry
        .keyed_breakers("hosts", Breaker::builder().consecutive_failures(1), 8, None)
        .unwrap();
    hosts.get_or_create(&"a".to_owned());

    let h = registry.health();
    assert_eq!(h.status, Status::Healthy);
    assert_eq!(h.breakers.len(), 2);
    assert_eq!(h.bulkheads[0].limit, 1);
    assert_eq!(h.retry_budgets[0].available, None);
    assert_eq!(h.keyed_breakers[0].keys, 1);

    // A saturated bulkhead degrades.
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|()| async { Ok::<_, BoxError>(()) });
    let held = svc.ready().await.unwrap().call(());
    let h = registry.health();
    assert_eq!(h.status, Status::Degraded);
    assert!(h.bulkheads[0].saturated);
    held.await.unwrap();
    assert!(registry.health().is_healthy());

    // An open breaker degrades, with when it probes next.
    for _ in 0..2 {
        payments.call_sync(|| Err::<(), _>("down")).unwrap_err();
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    let h = registry.health();
    assert_eq!(h.status, Status::Degraded);
    let p = &h.breakers[0];
    assert_eq!(p.name, "payments");
    assert_eq!(p.state, State::Open);
    assert!(!p.healthy);
    assert_eq!(p.consecutive_failures, 2);
    assert_eq!(p.time_in_state_ms, 5_000);
    assert_eq!(p.next_probe_in_ms, Some(25_000));
    assert!(h.breakers[1].healthy);

    // A key's breaker open degrades too, and is listed by key.
    registry.reset("payments").unwrap();
    hosts
        .get_or_create(&"a".to_owned())
        .call_sync(|| Err::<(), _>("down"))
        .unwrap_err();
    let h = registry.health();
    assert_eq!(h.status, Status::Degraded);
    assert_eq!(h.keyed_breakers[0].unhealthy_keys[0].name, "a");
    registry.reset("hosts").unwrap();
    assert!(registry.health().is_healthy());
}

#[test]
fn health_serialises_to_the_documented_json() {
    let registry = Registry::new();
    let b = registry.breaker("payments", Breaker::builder()).unwrap();
    b.force_open();
    let json = serde_json::to_value(registry.health()).unwrap();
    assert_eq!(json["status"], "degraded");
    let p = &json["breakers"][0];
    assert_eq!(p["name"], "payments");
    assert_eq!(p["state"], "forced_open");
    assert_eq!(p["healthy"], false);
    assert_eq!(p["failure_rate"], serde_json::Value::Null);
    for field in [
        "calls",
        "failures",
        "slow_calls",
        "slow_call_rate",
        "consecutive_failures",
        "rejected",
        "time_in_state_ms",
        "next_probe_in_ms",
    ] {
        assert!(p.get(field).is_some(), "{field} missing");
    }
    // The breaker's thresholds, as configured now: the defaults here.
    assert_eq!(
        p["thresholds"],
        serde_json::json!({
            "failure_rate": 0.5, "slow_call_rate": null, "slow_call_ms": null,
            "consecutive_failures": 10, "minimum_calls": 20,
        })
    );
    assert!(json["keyed_breakers"].as_array().unwrap().is_empty());
}

#[derive(Clone)]
struct View(FleetHealth);

impl bulwark_observe::FleetView for View {
    fn fleet_health(&self) -> FleetHealth {
        self.0.clone()
    }
}

fn fleet_breaker(state: &'static str) -> FleetHealth {
    FleetHealth::new(
        "payments",
        FleetDetail::Breaker {
            state,
            generation: 2,
            calls: 40,
            failures: 30,
            probing: false,
        },
    )
}

#[test]
fn the_fleets_view_shows_next_to_the_local_one() {
    let registry = Registry::new();
    registry.fleet_view("payments", View(fleet_breaker("closed")));
    assert!(registry.health().is_healthy());
    // A fall-back is not degraded: calls go on, decided locally.
    registry.fleet_view(
        "payments",
        View(fleet_breaker("closed").link(FleetLink::Fallback, Some(Duration::from_millis(1500)))),
    );
    let health = registry.health();
    assert!(health.is_healthy());
    assert_eq!(
        health.fleet.len(),
        1,
        "the same name and type replace the view"
    );
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["fleet"][0]["link"], "fallback");
    assert_eq!(json["fleet"][0]["fallback_for_ms"], 1500);
    assert_eq!(json["fleet"][0]["kind"], "breaker");
    // The fleet holding its breaker open degrades the status, as a local one does.
    registry.fleet_view("payments", View(fleet_breaker("open")));
    assert!(!registry.health().is_healthy());
    assert!(registry.get_fleet_view::<View>("payments").is_some());
    assert!(registry.get_fleet_view::<View>("other").is_none());
}
