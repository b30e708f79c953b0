//! The adaptive throttle in paused time: exact probabilities, brownout,
//! outage, recovery, the sliding window, shared state and tower's contract.

use bulwark_core::error::{find, BulkheadFull, ThrottledLocally};
use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};
use bulwark_throttle::{AdaptiveThrottleHandle, AdaptiveThrottleLayer, ThrottleEvent};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

/// What the upstream answers next, set from the test.
#[derive(Clone, Default)]
struct Upstream {
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn service(&self) -> impl Service<(), Response = (), Error = BoxError, Future: Send> + Clone {
        let this = self.clone();
        tower::service_fn(move |()| {
            this.calls.fetch_add(1, Ordering::SeqCst);
            let failing = this.failing.load(Ordering::SeqCst);
            async move {
                if failing {
                    Err::<(), BoxError>("boom".into())
                } else {
                    Ok(())
                }
            }
        })
    }
}

fn layer(max: f64, seed: u64) -> AdaptiveThrottleLayer {
    AdaptiveThrottleLayer::builder()
        .max_reject_probability(max)
        .seed(seed)
        .build()
        .unwrap()
}

/// Makes one call; true when it was shed.
async fn call<S>(svc: &mut S) -> bool
where
    S: Service<(), Response = (), Error = BoxError>,
{
    match svc
        .ready()
        .await
        .expect("never fails for a policy")
        .call(())
        .await
    {
        Ok(()) => false,
        Err(e) => find::<ThrottledLocally>(&*e).is_some(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn exact_probabilities_at_known_counts() {
    let upstream = Upstream::default();
    let layer = layer(1.0, 1);
    let handle = layer.handle();
    let mut svc = layer.layer(upstream.service());
    for _ in 0..10 {
        assert!(!call(&mut svc).await);
    }
    let s = handle.snapshot();
    assert_eq!((s.requests(), s.accepts(), s.probability()), (10, 10, 0.0));
    // Failures: nothing shed until requests pass K·accepts = 20.
    upstream.failing.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        assert!(!call(&mut svc).await, "below K·accepts nothing is shed");
    }
    assert!(close(handle.snapshot().probability(), 0.0));
    // Ten more requests, shed or failed, both count: (30 − 20) / 31.
    for _ in 0..10 {
        call(&mut svc).await;
    }
    let s = handle.snapshot();
    assert_eq!((s.requests(), s.accepts()), (30, 10));
    assert!(close(s.probability(), 10.0 / 31.0), "{}", s.probability());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_30_percent_brownout_sheds_almost_nothing() {
    let upstream = Upstream::default();
    let layer = layer(1.0, 2);
    let handle = layer.handle();
    let mut svc = layer.layer(upstream.service());
    let mut rng = fastrand::Rng::with_seed(3);
    let mut shed = 0;
    for _ in 0..3_000 {
        upstream.failing.store(rng.f64() < 0.3, Ordering::SeqCst);
        shed += usize::from(call(&mut svc).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("brownout: shed {shed} of 3000, {:?}", handle.snapshot());
    assert!(shed <= 5, "shed {shed} of 3000 in a 30% brownout");
    // The SRE book's example: 100 requests, 70 accepted, K = 2: 0.
    assert_eq!(handle.snapshot().probability(), 0.0);
}

/// 100 calls/s for `secs` seconds; returns how many were shed.
async fn run<S>(svc: &mut S, secs: u64) -> usize
where
    S: Service<(), Response = (), Error = BoxError>,
{
    let mut shed = 0;
    for _ in 0..secs * 100 {
        shed += usize::from(call(svc).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shed
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn total_failure_sheds_nearly_everything_once_the_window_fills() {
    // The pure SRE formula (no cap).
    let upstream = Upstream::default();
    let mut svc = layer(1.0, 4).layer(upstream.service());
    run(&mut svc, 10).await;
    upstream.failing.store(true, Ordering::SeqCst);
    run(&mut svc, 10).await; // the healthy calls leave the window
    let before = upstream.calls.load(Ordering::SeqCst);
    let shed = run(&mut svc, 10).await;
    let sent = upstream.calls.load(Ordering::SeqCst) - before;
    println!("outage, no cap: shed {shed} of 1000, sent {sent}");
    assert!(shed >= 990, "shed {shed} of 1000");

    // The default cap lets 10% through, to see recovery.
    let upstream = Upstream::default();
    upstream.failing.store(true, Ordering::SeqCst);
    let mut svc = AdaptiveThrottleLayer::builder()
        .seed(5)
        .build()
        .unwrap()
        .layer(upstream.service());
    run(&mut svc, 10).await;
    let shed = run(&mut svc, 10).await;
    println!("outage, default cap 0.9: shed {shed} of 1000");
    assert!((850..=950).contains(&shed), "shed {shed} of 1000");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shedding_fades_as_accepts_return() {
    let upstream = Upstream::default();
    upstream.failing.store(true, Ordering::SeqCst);
    let layer = AdaptiveThrottleLayer::builder().seed(6).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(upstream.service());
    run(&mut svc, 60).await;
    assert!(handle.snapshot().probability() > 0.85);
    upstream.failing.store(false, Ordering::SeqCst);
    let mut seconds = 0;
    while handle.snapshot().probability() > 0.0 {
        run(&mut svc, 1).await;
        seconds += 1;
        assert!(seconds <= 20, "still shedding 20 s after recovery");
    }
    println!("default throttle: shedding ended {seconds} s after the upstream recovered");
    assert_eq!(run(&mut svc, 10).await, 0, "nothing shed once recovered");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_window_slides() {
    let upstream = Upstream::default();
    upstream.failing.store(true, Ordering::SeqCst);
    let layer = AdaptiveThrottleLayer::builder()
        .window(Duration::from_secs(10))
        .buckets(10)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(upstream.service());
    run(&mut svc, 5).await;
    assert_eq!(handle.snapshot().requests(), 500);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = handle.snapshot();
    assert!(s.requests() < 500 && s.requests() > 0, "{s:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        handle.snapshot().requests(),
        0,
        "everything left the window"
    );
    assert_eq!(handle.snapshot().probability(), 0.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_counts() {
    let upstream = Upstream::default();
    let layer = layer(1.0, 7);
    let handle = layer.handle();
    let mut a = layer.layer(upstream.service());
    let mut b = a.clone();
    let mut c = layer.layer(upstream.service());
    call(&mut a).await;
    call(&mut b).await;
    call(&mut c).await;
    assert_eq!(handle.snapshot().requests(), 3);
    assert!(a.handle().same_throttle(&c.handle()));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shed_call_never_reaches_the_inner_service_and_is_a_local_rejection() {
    let upstream = Upstream::default();
    upstream.failing.store(true, Ordering::SeqCst);
    let shed_events = Arc::new(AtomicUsize::new(0));
    let seen = shed_events.clone();
    let layer = AdaptiveThrottleLayer::builder()
        .name("inventory")
        .max_reject_probability(1.0)
        .seed(8)
        .on_event(move |e: &ThrottleEvent| {
            let ThrottleEvent::Shed { name, probability } = e else {
                return;
            };
            assert_eq!(name.as_deref(), Some("inventory"));
            assert!(*probability > 0.0);
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(upstream.service());
    let mut shed = 0;
    let mut error = None;
    for _ in 0..200 {
        // poll_ready never fails for a policy decision.
        let ready = svc.ready().await.expect("ready");
        match ready.call(()).await {
            Err(e) if find::<ThrottledLocally>(&*e).is_some() => {
                shed += 1;
                error = Some(e);
            }
            _ => {}
        }
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 200 - shed);
    assert_eq!(shed_events.load(Ordering::SeqCst), shed);
    let error = error.expect("something was shed");
    let text = error.to_string();
    let result: Result<(), BoxError> = Err(error);
    assert_eq!(DefaultClassifier.classify(&result), Outcome::Rejected);
    assert!(
        text.starts_with("request shed by adaptive throttling 'inventory'"),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn what_counts_follows_the_classifier() {
    let layer = layer(1.0, 9).classifier(|r: &Result<u16, BoxError>| match r {
        Ok(429) => Outcome::Throttled,
        Ok(404) => Outcome::Ignored,
        Ok(s) if *s >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::of_error(e),
    });
    let handle: AdaptiveThrottleHandle = layer.handle();
    let svc = layer.layer(tower::service_fn(|status: u16| async move {
        match status {
            0 => Err::<u16, BoxError>(Box::new(BulkheadFull::at_capacity())),
            9 => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(200)
            }
            s => Ok(s),
        }
    }));
    for status in [200, 404, 200, 200] {
        svc.clone().oneshot(status).await.unwrap();
    }
    let s = handle.snapshot();
    assert_eq!(
        (s.requests(), s.accepts()),
        (4, 4),
        "404 (ignored) is accepted"
    );
    let _ = svc.clone().oneshot(429).await;
    let _ = svc.clone().oneshot(503).await;
    let s = handle.snapshot();
    assert_eq!(
        (s.requests(), s.accepts()),
        (6, 4),
        "429 and 503 are not accepted"
    );
    let _ = svc.clone().oneshot(0).await;
    assert_eq!(
        handle.snapshot().requests(),
        6,
        "a rejection further in is not counted"
    );
    let abandoned = tokio::time::timeout(Duration::from_secs(1), svc.clone().oneshot(9)).await;
    assert!(abandoned.is_err());
    let s = handle.snapshot();
    assert_eq!(
        (s.requests(), s.accepts()),
        (7, 4),
        "given up on: not accepted"
    );
}

#[test]
fn invalid_settings_name_their_field() {
    let field = |b: bulwark_throttle::AdaptiveThrottleBuilder| b.build().unwrap_err().field();
    let b = AdaptiveThrottleLayer::builder;
    assert_eq!(field(b().k(0.9)), "k");
    assert_eq!(field(b().k(f64::NAN)), "k");
    assert_eq!(field(b().k(f64::INFINITY)), "k");
    assert_eq!(field(b().window(Duration::from_millis(999))), "window");
    assert_eq!(field(b().window(Duration::from_secs(3601))), "window");
    assert_eq!(field(b().buckets(0)), "buckets");
    assert_eq!(field(b().buckets(1001)), "buckets");
    assert_eq!(
        field(b().max_reject_probability(1.5)),
        "max_reject_probability"
    );
    assert_eq!(
        field(b().max_reject_probability(f64::NAN)),
        "max_reject_probability"
    );
    assert!(b()
        .k(1.0)
        .window(Duration::from_secs(1))
        .buckets(1000)
        .build()
        .is_ok());
}
