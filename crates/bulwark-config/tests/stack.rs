//! Client stacks from a configuration, the global switch, and reloads that
//! keep state. Paused time throughout.

use bulwark_breaker::State;
use bulwark_config::ResilienceConfig;
use bulwark_core::BoxError;
use bulwark_observe::Registry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

fn config(toml: &str) -> ResilienceConfig {
    ResilienceConfig::from_toml_str(toml).unwrap()
}

/// Fails while `fail` is set; counts calls; sleeps `ms` ms per call.
fn upstream(
    calls: Arc<AtomicUsize>,
    fail: bool,
    ms: u64,
) -> impl Service<u32, Response = u32, Error = BoxError, Future = impl Send> + Clone + Send {
    tower::service_fn(move |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if fail {
                Err::<u32, BoxError>("upstream failed".into())
            } else {
                Ok(x)
            }
        }
    })
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_stack_retries_inside_the_total_timeout_and_the_breaker_sees_every_attempt() {
    let c = config(
        r#"
        [retry.p]
        max_attempts = 3
        backoff = "constant"
        initial_backoff = "10ms"
        jitter = "none"
        [retry_budget.p]
        min_per_sec = 100
        [breaker.p]
        consecutive_failures = 10
        [timeout.p]
        total = "1s"
        attempt = "100ms"
        "#,
    );
    let registry = Registry::new();
    let calls = Arc::new(AtomicUsize::new(0));
    // Every attempt takes 200 ms: each one times out.
    let svc = ServiceBuilder::new()
        .layer(c.client_layer("p", &registry).unwrap())
        .service(upstream(calls.clone(), false, 200));
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(
        bulwark_core::error::find::<bulwark_timeout::Elapsed>(&*err).is_some(),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3, "three attempts");
    let breaker = registry.get_breaker("p").unwrap();
    assert_eq!(breaker.snapshot().consecutive_failures, 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_global_switch_makes_a_pass_through() {
    let c = config("enabled = false\n[breaker.p]\nconsecutive_failures = 1");
    let registry = Registry::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = c.client_layer("p", &registry).unwrap();
    assert!(!layer.is_enabled());
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(upstream(calls.clone(), true, 0));
    for _ in 0..5 {
        let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
        assert_eq!(err.to_string(), "upstream failed");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "no retry, no breaker");
    assert!(registry.list().is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stacks_of_one_name_share_the_registry_instances() {
    let c = config("[breaker.p]\nconsecutive_failures = 2\n[retry.p]\nmax_attempts = 1");
    let registry = Registry::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let a = ServiceBuilder::new()
        .layer(c.client_layer("p", &registry).unwrap())
        .service(upstream(calls.clone(), true, 0));
    let b = ServiceBuilder::new()
        .layer(c.client_layer("p", &registry).unwrap())
        .service(upstream(calls.clone(), true, 0));
    a.oneshot(1).await.unwrap_err();
    b.oneshot(1).await.unwrap_err();
    assert_eq!(registry.get_breaker("p").unwrap().state(), State::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reload_applies_thresholds_and_keeps_counts_and_open_breakers() {
    let registry = Registry::new();
    let before = config(
        r#"
        [breaker.p]
        consecutive_failures = 5
        open_for = "60s"
        open_backoff_factor = 1.0
        open_jitter = "none"
        [retry.p]
        max_attempts = 1
        [bulkhead.p]
        max_concurrent = 1
        "#,
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(before.client_layer("p", &registry).unwrap())
        .service(upstream(calls.clone(), true, 0));
    for _ in 0..3 {
        svc.ready().await.unwrap().call(1).await.unwrap_err();
    }
    let breaker = registry.get_breaker("p").unwrap();
    assert_eq!(breaker.snapshot().consecutive_failures, 3);

    // The new threshold applies to the counts already there.
    let after = config(
        r#"
        [breaker.p]
        consecutive_failures = 4
        open_for = "5s"
        open_backoff_factor = 1.0
        open_jitter = "none"
        [retry.p]
        max_attempts = 1
        [bulkhead.p]
        max_concurrent = 8
        "#,
    );
    after.apply(&registry).unwrap();
    assert_eq!(breaker.snapshot().consecutive_failures, 3, "counts kept");
    assert_eq!(registry.get_bulkhead("p").unwrap().limit(), 8);
    // Health shows the new threshold, so an operator can see it applied.
    let health = registry.health();
    assert_eq!(health.breakers[0].thresholds.consecutive_failures, Some(4));
    svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    // It opened with the new open duration.
    assert_eq!(
        breaker.snapshot().next_probe_in,
        Some(Duration::from_secs(5))
    );

    // Reloading again keeps it open, with its probe time.
    tokio::time::advance(Duration::from_secs(2)).await;
    before.apply(&registry).unwrap();
    let snap = breaker.snapshot();
    assert_eq!(snap.state, State::Open);
    assert_eq!(snap.next_probe_in, Some(Duration::from_secs(3)));
    assert_eq!(registry.get_bulkhead("p").unwrap().limit(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_reload_that_cannot_apply_says_so_and_applies_the_rest() {
    let registry = Registry::new();
    let c = config("[breaker.a]\nfailure_rate = 0.5\n[breaker.b]\nfailure_rate = 0.5");
    c.client_layer::<u32>("a", &registry).unwrap();
    c.client_layer::<u32>("b", &registry).unwrap();
    let next = config(
        r#"
        [breaker.a]
        window = "count"
        [breaker.b]
        consecutive_failures = 1
        "#,
    );
    let err = next.apply(&registry).unwrap_err();
    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].path(), "breaker.a.window");
    // b took its new settings.
    let b = registry.get_breaker("b").unwrap();
    b.call_sync(|| Err::<(), _>("down")).unwrap_err();
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_classifier_for_retry_and_breaker() {
    // Answers are status codes; 503 is a failure although it is an `Ok`.
    let classify = |r: &Result<u16, BoxError>| match r {
        Ok(503) | Err(_) => bulwark_core::Outcome::Failure,
        Ok(_) => bulwark_core::Outcome::Success,
    };
    let c = config(
        "[breaker.p]\nconsecutive_failures = 2\n[retry.p]\nmax_attempts = 2\ninitial_backoff = \"1ms\"",
    );
    let registry = Registry::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(c.client_layer("p", &registry).unwrap().classifier(classify))
        .service_fn(move |_: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<u16, BoxError>(503) }
        });
    assert_eq!(svc.oneshot(1).await.unwrap(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the 503 was retried");
    assert_eq!(registry.get_breaker("p").unwrap().state(), State::Open);
}
