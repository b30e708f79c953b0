//! The registry's keyed breakers of any key type, and the listeners of
//! timeout and retry layers.

use bulwark_breaker::Breaker;
use bulwark_core::BoxError;
use bulwark_observe::{Kind, Registry};
use bulwark_retry::RetryLayer;
use bulwark_timeout::TimeoutLayer;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Host(&'static str);

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host:{}", self.0)
    }
}

#[test]
fn keyed_breakers_take_any_displayable_key() {
    let registry = Registry::new();
    let hosts = registry
        .keyed_breakers::<Host>("hosts", Breaker::builder(), 8, None)
        .unwrap();
    hosts.get_or_create(&Host("a")).force_open();
    // The same set again, by name and type.
    let again = registry.get_keyed_breakers::<Host>("hosts").unwrap();
    assert_eq!(again.len(), 1);
    // Another key type under the same name is refused, naming the setting.
    let err = registry
        .keyed_breakers::<String>("hosts", Breaker::builder(), 8, None)
        .unwrap_err();
    assert_eq!(err.field(), "keyed_breakers");
    assert!(registry.get_keyed_breakers::<String>("hosts").is_none());
    // Health names the key by its Display.
    let h = registry.health();
    assert!(!h.is_healthy());
    assert_eq!(h.keyed_breakers[0].unhealthy_keys[0].name, "host:a");
    // Control by name reaches every key.
    registry.reset("hosts").unwrap();
    assert!(registry.health().is_healthy());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timeout_and_retry_listeners_count_for_health() {
    let registry = Registry::new();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(
            TimeoutLayer::new(Duration::from_secs(5))
                .on_event(registry.timeout_listener("p/total")),
        )
        .layer(
            RetryLayer::new()
                .max_attempts(3)
                .on_event(registry.retry_listener("p")),
        )
        .layer(
            TimeoutLayer::new(Duration::from_millis(100))
                .on_event(registry.timeout_listener("p/attempt")),
        )
        .service_fn(move |_: ()| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::pending::<Result<(), BoxError>>()
        });
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(bulwark_core::error::is_caused_by::<bulwark_timeout::Elapsed>(&*err));
    let attempts = calls.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(attempts, 3);
    let h = registry.health();
    let by_name = |n: &str| h.timeouts.iter().find(|t| t.name == n).unwrap().request;
    assert_eq!(by_name("p/attempt"), u64::from(attempts));
    assert_eq!(by_name("p/total"), 0);
    assert_eq!(h.retries[0].retries, u64::from(attempts - 1));
    assert_eq!(h.retries[0].gave_up, 1);
    assert!(h.is_healthy(), "timeouts and retries never degrade");
    let kinds: Vec<Kind> = registry.list().into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [Kind::Timeout, Kind::Timeout, Kind::Retry]);
}
