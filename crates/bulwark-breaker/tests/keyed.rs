//! Keyed breakers: independent per key, bounded, idle ones evicted.

use bulwark_breaker::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
use bulwark_breaker::{Breaker, State};
use bulwark_core::error::{find, CircuitOpen};
use bulwark_core::BoxError;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

fn breakers(max: usize) -> KeyedBreakers<String> {
    Breaker::builder()
        .name("hosts")
        .without_failure_rate()
        .consecutive_failures(2)
        .open_for(Duration::from_secs(10))
        .keyed()
        .max_keys(max)
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Requests are (host, fail?).
async fn send<S>(svc: &mut S, host: &str, fail: bool) -> Result<(), BoxError>
where
    S: Service<(String, bool), Response = (), Error = BoxError>,
{
    svc.ready().await?.call((host.to_string(), fail)).await
}

#[tokio::test(start_paused = true)]
async fn one_failing_host_does_not_open_the_others() {
    let set = breakers(100);
    let mut svc = ServiceBuilder::new()
        .layer(KeyedCircuitBreakerLayer::new(
            set.clone(),
            |r: &(String, bool)| r.0.clone(),
        ))
        .service_fn(|(_, fail): (String, bool)| async move {
            if fail {
                Err::<(), BoxError>("down".into())
            } else {
                Ok(())
            }
        });
    send(&mut svc, "a", true).await.unwrap_err();
    send(&mut svc, "a", true).await.unwrap_err();
    let err = send(&mut svc, "a", false).await.unwrap_err();
    let open = find::<CircuitOpen>(&*err).expect("a is open");
    assert_eq!(open.name(), Some("hosts/a"));
    send(&mut svc, "b", false).await.unwrap();
    assert_eq!(set.get(&"a".into()).unwrap().state(), State::Open);
    assert_eq!(set.get(&"b".into()).unwrap().state(), State::Closed);
    assert_eq!(set.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_keys_stays_bounded() {
    let set = breakers(100);
    let svc = ServiceBuilder::new()
        .layer(KeyedCircuitBreakerLayer::new(
            set.clone(),
            |r: &(String, bool)| r.0.clone(),
        ))
        .service_fn(|_: (String, bool)| async { Ok::<_, BoxError>(()) });
    for i in 0..10_000 {
        svc.clone()
            .oneshot((format!("host-{i}"), false))
            .await
            .unwrap();
        assert!(set.len() <= 100);
    }
    assert_eq!(set.len(), 100);
    assert_eq!(set.evicted(), 9_900);
}

#[tokio::test(start_paused = true)]
async fn least_recently_used_goes_first_and_idle_ones_are_swept() {
    let set = breakers(2);
    set.get_or_create(&"a".into());
    tokio::time::advance(Duration::from_secs(1)).await;
    set.get_or_create(&"b".into());
    tokio::time::advance(Duration::from_secs(1)).await;
    set.get_or_create(&"a".into()); // a is now the most recent
    set.get_or_create(&"c".into());
    let mut keys: Vec<_> = set.entries().into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(keys, ["a", "c"]);

    // Idle for the timeout: swept out when room is needed, before any LRU.
    let set = breakers(1_000);
    for i in 0..63 {
        set.get_or_create(&format!("old-{i}"));
    }
    tokio::time::advance(Duration::from_secs(60)).await;
    set.get_or_create(&"new".into());
    assert_eq!(set.len(), 1, "63 idle breakers swept");
    assert_eq!(set.evicted(), 63);
}
