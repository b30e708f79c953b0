use super::*;
use bulwark_core::error::find;
use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::time::{advance, Instant};
use tower::{service_fn, Service, ServiceExt};

fn echo() -> impl Service<
    u32,
    Response = u32,
    Error = BoxError,
    Future = std::future::Ready<Result<u32, BoxError>>,
> + Clone
       + Send {
    service_fn(|x: u32| std::future::ready(Ok::<_, BoxError>(x)))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn burst_then_the_rate_with_an_exact_retry_after() {
    let limiter = RateLimiter::builder()
        .limit(10, Duration::from_secs(1))
        .burst(3)
        .build()
        .unwrap();
    for _ in 0..3 {
        limiter.admit().unwrap();
    }
    let refused = limiter.admit().unwrap_err();
    assert_eq!(refused.retry_after(), Duration::from_millis(100));
    advance(Duration::from_millis(99)).await;
    assert_eq!(
        limiter.admit().unwrap_err().retry_after(),
        Duration::from_millis(1)
    );
    advance(Duration::from_millis(1)).await;
    limiter.admit().unwrap();
    assert!(limiter.admit().is_err());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_overloaded_client_gets_exactly_the_rate() {
    // Offered 5,000/s for 10 s against 1,000/s with a burst of 100.
    let limiter = RateLimiter::builder()
        .limit(1_000, Duration::from_secs(1))
        .burst(100)
        .build()
        .unwrap();
    let mut admitted = 0u32;
    for _ in 0..50_000 {
        if limiter.admit().is_ok() {
            admitted += 1;
        }
        advance(Duration::from_micros(200)).await;
    }
    // 100 at once, then one per millisecond over 10 s (the last tick at
    // 9.9998 s).
    assert!((10_099..=10_100).contains(&admitted), "{admitted}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_layer_refuses_at_once_without_calling_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let limiter = RateLimiter::builder()
        .name("db")
        .limit(1, Duration::from_secs(2))
        .build()
        .unwrap();
    let mut svc = RateLimitLayer::new(limiter).layer_on(service_fn(move |x: u32| {
        counter.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<_, BoxError>(x) }
    }));
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    let limited = find::<RateLimited>(&*err).unwrap();
    assert_eq!(limited.name(), Some("db"));
    assert_eq!(limited.retry_after(), Duration::from_secs(2));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    // A rejection: not counted by a breaker, not retried.
    let res: Result<u32, BoxError> = Err(err);
    assert_eq!(DefaultClassifier.classify(&res), Outcome::Rejected);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_wait_waits_for_the_turn_and_no_longer() {
    let limiter = RateLimiter::builder()
        .limit(10, Duration::from_secs(1))
        .burst(1)
        .build()
        .unwrap();
    let layer = RateLimitLayer::new(limiter).max_wait(Duration::from_millis(150));
    let mut svc = layer.layer_on(echo());
    let start = Instant::now();
    svc.ready().await.unwrap().call(0).await.unwrap();
    svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));

    // Three clones wait for the next turn (at 200 ms): waiting reserves
    // nothing, so one gets it and the other two, whose next turn (300 ms)
    // is past their bound (250 ms), are refused when they wake.
    let asked = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let mut clone = svc.clone();
            tokio::spawn(async move {
                let res = clone.ready().await.unwrap().call(i).await;
                (res.is_ok(), Instant::now() - asked)
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        let (ok, waited) = task.await.unwrap();
        admitted += usize::from(ok);
        assert_eq!(waited, Duration::from_millis(100));
    }
    assert_eq!(admitted, 1);

    // A turn further away than the bound is refused at once.
    let mut impatient = RateLimitLayer::new(svc.limiter().clone())
        .max_wait(Duration::from_millis(50))
        .layer_on(echo());
    let asked = Instant::now();
    let err = impatient.ready().await.unwrap().call(9).await.unwrap_err();
    assert_eq!(asked.elapsed(), Duration::ZERO);
    assert_eq!(
        find::<RateLimited>(&*err).unwrap().retry_after(),
        Duration::from_millis(100)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clone_starts_undecided() {
    let limiter = RateLimiter::new(1, Duration::from_secs(1)).unwrap();
    let mut svc = RateLimitLayer::new(limiter.clone()).layer_on(echo());
    svc.ready().await.unwrap();
    let mut clone = svc.clone();
    // The token is held by `svc`; the clone is refused.
    let err = clone.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(find::<RateLimited>(&*err).is_some());
    assert_eq!(svc.call(2).await.unwrap(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keys_have_their_own_budgets_and_idle_keys_are_forgotten() {
    let limiter = RateLimiter::builder()
        .limit(1, Duration::from_secs(1))
        .max_keys(10)
        .build_keyed::<u32>()
        .unwrap();
    let mut svc = KeyedRateLimitLayer::new(limiter.clone(), |x: &u32| x % 100).layer_on(echo());
    for i in 0..100 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    let err = svc.ready().await.unwrap().call(105).await.unwrap_err();
    assert_eq!(
        find::<RateLimited>(&*err).unwrap().retry_after(),
        Duration::from_secs(1)
    );
    assert_eq!(limiter.len(), 100);
    advance(Duration::from_secs(2)).await;
    // The 1,024th call finds more than `max_keys` keys and forgets the idle.
    for i in 0..923 {
        let _ = svc.ready().await.unwrap().call(1_000 + i).await;
    }
    assert!(limiter.len() <= 100, "{}", limiter.len());
    assert!(limiter.len() < 100 + 20, "{}", limiter.len());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn events_and_batches() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let limiter = RateLimiter::builder()
        .limit(100, Duration::from_secs(1))
        .on_event(move |e: &RateLimitEvent| {
            let RateLimitEvent::Refused { retry_after, .. } = e;
            assert!(!retry_after.is_zero());
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    limiter.admit_n(60).unwrap();
    assert_eq!(
        limiter.admit_n(60).unwrap_err().retry_after(),
        Duration::from_millis(200)
    );
    // More than the burst can never go.
    assert!(limiter.admit_n(101).is_err());
    assert_eq!(seen.load(Ordering::Relaxed), 2);
}

#[test]
fn bad_settings_name_the_setting() {
    let e = RateLimiter::builder().build().unwrap_err();
    assert_eq!(e.field(), "limit");
    let e = RateLimiter::new(0, Duration::from_secs(1)).unwrap_err();
    assert_eq!(e.field(), "limit");
    let e = RateLimiter::new(10, Duration::from_nanos(5)).unwrap_err();
    assert_eq!(e.field(), "limit");
    let e = RateLimiter::builder()
        .limit(1, Duration::from_secs(1))
        .burst(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "burst");
    let e = RateLimiter::builder()
        .limit(1, Duration::from_secs(1))
        .max_keys(0)
        .build_keyed::<u8>()
        .unwrap_err();
    assert_eq!(e.field(), "max_keys");
}

trait LayerOn<S>: tower_layer::Layer<S> + Sized {
    fn layer_on(self, inner: S) -> Self::Service {
        self.layer(inner)
    }
}
impl<S, L: tower_layer::Layer<S>> LayerOn<S> for L {}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Over any window, no more than burst + window × rate calls go.
    #[test]
    fn never_more_than_burst_plus_rate(
        permits in 1u32..200,
        burst in 1u32..50,
        gaps in proptest::collection::vec(0u64..20_000, 1..400),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let limiter = RateLimiter::builder().limit(permits, Duration::from_secs(1)).burst(burst).build().unwrap();
            let start = Instant::now();
            let mut admitted = Vec::new();
            for gap in gaps {
                advance(Duration::from_micros(gap)).await;
                if limiter.admit().is_ok() {
                    admitted.push(Instant::now() - start);
                }
            }
            let interval = Duration::from_secs(1) / permits;
            for (i, first) in admitted.iter().enumerate() {
                for (j, last) in admitted.iter().enumerate().skip(i) {
                    let window = *last - *first;
                    let allowed = u128::from(burst) + window.as_nanos() / interval.as_nanos();
                    proptest::prop_assert!((j - i + 1) as u128 <= allowed, "{} calls in {:?}", j - i + 1, window);
                }
            }
            Ok(())
        })?;
    }
}
