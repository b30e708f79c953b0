//! Keyed breakers: independent per key, bounded, idle ones evicted.

use bulwark_breaker::keyed::{KeyedBreakers, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
use bulwark_breaker::{Breaker, State};
use bulwark_core::error::{find, CircuitOpen};
use bulwark_core::{BoxError, Outcome};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

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

/// An inner service whose readiness the test controls: ready only while
/// `open` is set. It counts polls of `poll_ready` and calls made without a
/// `poll_ready` that answered ready on the same instance.
#[derive(Clone)]
struct Gate {
    open: Arc<AtomicBool>,
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    unready_calls: Arc<AtomicUsize>,
    ready: bool,
}

impl Gate {
    fn new(open: bool) -> Self {
        Gate {
            open: Arc::new(AtomicBool::new(open)),
            polls: Arc::default(),
            calls: Arc::default(),
            unready_calls: Arc::default(),
            // A clone starts unready, as tower's contract says.
            ready: false,
        }
    }
}

impl Service<(String, bool)> for Gate {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.open.load(Ordering::SeqCst) {
            self.ready = true;
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, (_, fail): (String, bool)) -> Self::Future {
        if !std::mem::take(&mut self.ready) {
            self.unready_calls.fetch_add(1, Ordering::SeqCst);
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if fail { Err("down".into()) } else { Ok(()) })
    }
}

type ByHost = fn(&(String, bool)) -> String;

fn host(r: &(String, bool)) -> String {
    r.0.clone()
}

fn keyed_over(
    set: &KeyedBreakers<String>,
    gate: Gate,
) -> KeyedCircuitBreaker<Gate, String, ByHost> {
    KeyedCircuitBreakerLayer::new(set.clone(), host as ByHost).layer(gate)
}

fn open_key(set: &KeyedBreakers<String>, key: &str) -> Breaker {
    let breaker = set.get_or_create(&key.to_string());
    for _ in 0..2 {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(breaker.state(), State::Open);
    breaker
}

#[tokio::test(start_paused = true)]
async fn an_open_key_answers_at_once_over_a_never_ready_service() {
    let set = breakers(100);
    let gate = Gate::new(false);
    let mut svc = keyed_over(&set, gate.clone());
    open_key(&set, "down");
    let start = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(1), async {
        svc.ready().await?.call(("down".into(), false)).await
    })
    .await
    .expect("an open breaker answers without waiting for readiness");
    let err = answer.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some(), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(gate.calls.load(Ordering::SeqCst), 0);

    // A closed key still waits for the inner service to be ready.
    let waited = tokio::time::timeout(Duration::from_secs(1), async {
        svc.ready().await?.call(("up".into(), false)).await
    })
    .await;
    assert!(waited.is_err(), "a closed breaker waited for readiness");
    assert!(gate.polls.load(Ordering::SeqCst) > 0);
    assert_eq!(gate.calls.load(Ordering::SeqCst), 0);
    // Once the inner service is ready, the same kind of call goes through.
    gate.open.store(true, Ordering::SeqCst);
    svc.ready()
        .await
        .unwrap()
        .call(("up".into(), false))
        .await
        .unwrap();
    assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_is_polled_before_every_call() {
    let set = breakers(100);
    let gate = Gate::new(true);
    let mut svc = keyed_over(&set, gate.clone());
    for i in 0..50 {
        let host = format!("host-{}", i % 7);
        let _ = svc.ready().await.unwrap().call((host, i % 3 == 0)).await;
    }
    // And through clones, and calls made without `ready` first.
    for i in 0..20 {
        let _ = svc.clone().call((format!("host-{}", i % 5), false)).await;
    }
    let calls = gate.calls.load(Ordering::SeqCst);
    assert!(calls > 0);
    assert_eq!(
        gate.unready_calls.load(Ordering::SeqCst),
        0,
        "{calls} calls"
    );
    assert!(gate.polls.load(Ordering::SeqCst) >= calls);
}

#[tokio::test(start_paused = true)]
async fn a_probe_waiting_for_readiness_is_given_back_when_dropped() {
    let set = breakers(100);
    let gate = Gate::new(false);
    let mut svc = keyed_over(&set, gate.clone());
    let breaker = open_key(&set, "h");
    tokio::time::advance(Duration::from_secs(10)).await;
    let mut fut = Box::pin(svc.ready().await.unwrap().call(("h".into(), false)));
    assert!(tokio::time::timeout(Duration::from_millis(10), &mut fut)
        .await
        .is_err());
    let snap = breaker.snapshot();
    assert_eq!(snap.state, State::HalfOpen);
    assert_eq!(snap.probes_in_flight, 1, "the waiting call holds a probe");
    drop(fut);
    assert_eq!(breaker.snapshot().probes_in_flight, 0, "probe given back");
    // And the slot is usable again: a probe that succeeds closes it.
    gate.open.store(true, Ordering::SeqCst);
    svc.ready()
        .await
        .unwrap()
        .call(("h".into(), false))
        .await
        .unwrap();
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
    assert_eq!(gate.unready_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_before_the_key_opened_is_decided_again_when_ready() {
    let set = breakers(100);
    let gate = Gate::new(false);
    let mut svc = keyed_over(&set, gate.clone());
    let mut fut = Box::pin(svc.ready().await.unwrap().call(("h".into(), false)));
    assert!(tokio::time::timeout(Duration::from_millis(10), &mut fut)
        .await
        .is_err());
    // Other calls open the key's breaker while this one waits.
    open_key(&set, "h");
    gate.open.store(true, Ordering::SeqCst);
    let err = fut.await.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some(), "{err}");
    assert_eq!(gate.calls.load(Ordering::SeqCst), 0);
}
