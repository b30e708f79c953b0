//! The generic client stack registered in a registry: every part shows in
//! health under the stack's name, and a rebuilt stack keeps the state.
#![cfg(feature = "observe")]

use bulwark_breaker::State;
use bulwark_core::{BoxError, Outcome};
use bulwark_observe::Registry;
use bulwark_stack::ClientStack;
use std::time::Duration;
use tower::{service_fn, ServiceBuilder, ServiceExt};

fn classify(r: &Result<u16, BoxError>) -> Outcome {
    match r {
        Ok(s) if *s >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::of_error(e),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_part_shows_in_health_and_survives_a_rebuild() {
    let registry = Registry::new();
    let build = || {
        ClientStack::new()
            .classifier(classify)
            .retry(|r| r.max_attempts(3))
            .breaker(|b| b.without_failure_rate().consecutive_failures(3))
            .total_timeout(Duration::from_secs(2))
            .attempt_timeout(Duration::from_millis(100))
            .breaker_per_key(|req: &(u32, bool)| req.0, 16)
            .registry(&registry, "inventory")
            .build()
            .unwrap()
    };
    let svc = ServiceBuilder::new().layer(build()).service(service_fn(
        |(_, hang): (u32, bool)| async move {
            if hang {
                std::future::pending().await
            }
            Ok::<u16, BoxError>(503)
        },
    ));
    // Three attempts to host 7, each hung past the attempt timeout.
    let err = svc.clone().oneshot((7, true)).await.unwrap_err();
    assert!(bulwark_core::error::is_caused_by::<bulwark_timeout::Elapsed>(&*err));
    let h = registry.health();
    let timeouts = |name: &str| h.timeouts.iter().find(|t| t.name == name).unwrap().request;
    assert_eq!(timeouts("inventory/attempt"), 3);
    assert_eq!(timeouts("inventory/total"), 0);
    assert_eq!(h.retries[0].name, "inventory");
    assert_eq!(h.retries[0].retries, 2);
    assert_eq!(h.keyed_breakers[0].name, "inventory");
    assert_eq!(h.keyed_breakers[0].unhealthy_keys[0].name, "7");
    assert_eq!(h.bulkheads[0].name, "inventory");
    assert_eq!(h.retry_budgets[0].name, "inventory");
    // Rebuilt (as after a reload): the same breakers, host 7 still open.
    let again = build();
    let breakers = again.breaker().unwrap().breakers();
    assert_eq!(breakers.get(&7).unwrap().state(), State::Open);
    // One breaker (no key): the registry's breaker of that name.
    let one = ClientStack::new()
        .registry(&registry, "one")
        .build()
        .unwrap();
    assert!(one
        .breaker()
        .unwrap()
        .breaker()
        .ptr_eq(&registry.get_breaker("one").unwrap()));
}
