//! Adaptive limits in paused time: they fall when latency rises, recover
//! when it falls, and keep goodput near an overloaded upstream's capacity
//! where a plain queue lets requests wait past their callers' deadlines.

use bulwark_bulkhead::adaptive::{Aimd, Gradient2, LimitAlgorithm, Sample, SampleKind, Vegas};
use bulwark_bulkhead::{Bulkhead, BulkheadHandle, BulkheadLayer};
use bulwark_core::error::BulkheadFull;
use bulwark_core::{BoxError, Outcome};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, ServiceExt};

// A concrete error type: with `BoxError` as the inner error, rustc cannot
// prove `async` blocks holding the response future `Send` (a known
// higher-ranked lifetime limitation that tower's own layers share).
type Upstream = tower::util::BoxCloneService<(), (), Infallible>;

/// An upstream whose latency is set from outside, with no capacity limit.
fn variable_latency(latency_ms: Arc<AtomicU64>) -> Upstream {
    tower::util::BoxCloneService::new(tower::service_fn(move |()| {
        let ms = latency_ms.load(Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Infallible>(())
        }
    }))
}

/// Keeps `workers` callers busy until `stop`; rejected callers back off 1 ms.
fn saturate(svc: Bulkhead<Upstream>, workers: usize, stop: Arc<AtomicBool>) {
    for _ in 0..workers {
        let (svc, stop) = (svc.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if svc.clone().oneshot(()).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
    }
}

async fn phases<A: LimitAlgorithm + Clone + Sync>(algorithm: A) -> [usize; 3] {
    let latency = Arc::new(AtomicU64::new(10));
    let svc = BulkheadLayer::builder()
        .adaptive(algorithm)
        .build()
        .layer(variable_latency(latency.clone()));
    let handle: BulkheadHandle = svc.handle();
    let stop = Arc::new(AtomicBool::new(false));
    saturate(svc, 64, stop.clone());
    let mut limits = [0; 3];
    for (i, ms) in [10, 50, 10].into_iter().enumerate() {
        latency.store(ms, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3)).await;
        limits[i] = handle.limit();
    }
    stop.store(true, Ordering::SeqCst);
    limits
}

#[tokio::test(start_paused = true)]
async fn vegas_falls_when_latency_rises_and_recovers_when_it_falls() {
    // A long probe interval: this test is about the reaction to latency, not
    // about re-learning the base latency.
    let [fast, slow, again] = phases(Vegas::new(10).min_limit(4).max_limit(48)).await;
    assert_eq!(fast, 48, "no queueing: the limit climbs to its maximum");
    // Latency ×5 with no more load: Vegas reads it as a queue of
    // `limit × 0.8` calls and lowers the limit (by `log` per window) towards
    // where that estimate is between 3 and 6 (3·log and 6·log at small
    // limits).
    assert!(
        (4..=10).contains(&slow),
        "latency ×5: the limit falls (to {slow})"
    );
    assert_eq!(again, 48, "latency back: the limit recovers");
}

#[tokio::test(start_paused = true)]
async fn aimd_falls_when_latency_rises_and_recovers_when_it_falls() {
    let aimd = Aimd::new(10)
        .min_limit(4)
        .max_limit(48)
        .latency_threshold(Duration::from_millis(30));
    let [fast, slow, again] = phases(aimd).await;
    assert_eq!(fast, 48);
    assert_eq!(slow, 4);
    assert_eq!(again, 48);
}

/// An upstream that serves 10 calls at a time, 10 ms each (1000 calls/s);
/// more calls queue inside it.
fn overloaded_upstream() -> Upstream {
    let workers = Arc::new(tokio::sync::Semaphore::new(10));
    tower::util::BoxCloneService::new(tower::service_fn(move |()| {
        let workers = workers.clone();
        async move {
            let _worker = workers.acquire().await.expect("open");
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, Infallible>(())
        }
    }))
}

struct Report {
    good: usize,
    late: usize,
    rejected: usize,
}

/// Offers 3 calls per ms (3× the upstream's capacity) for 2 s; each caller
/// gives up after 100 ms. Counts calls answered within the deadline, calls
/// that ran out of time (waiting or being served), and rejected ones.
async fn offer_load(svc: Bulkhead<Upstream>) -> Report {
    let good = Arc::new(AtomicUsize::new(0));
    let late = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2_000 {
        for _ in 0..3 {
            let (svc, good, late, rejected) =
                (svc.clone(), good.clone(), late.clone(), rejected.clone());
            tasks.push(tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_millis(100), svc.oneshot(())).await {
                    Ok(Ok(())) => good.fetch_add(1, Ordering::SeqCst),
                    Ok(Err(_)) => rejected.fetch_add(1, Ordering::SeqCst),
                    Err(_) => late.fetch_add(1, Ordering::SeqCst),
                };
            }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    Report {
        good: good.load(Ordering::SeqCst),
        late: late.load(Ordering::SeqCst),
        rejected: rejected.load(Ordering::SeqCst),
    }
}

#[tokio::test(start_paused = true)]
async fn adaptive_keeps_goodput_near_capacity_where_a_plain_queue_does_not() {
    let capacity = 2_000; // 1000 calls/s for 2 s

    // A plain queue, even with the limit set to exactly the upstream's
    // capacity: callers wait in line past their deadlines.
    let queue = BulkheadLayer::builder()
        .max_concurrent(10)
        .max_wait(Duration::from_secs(60))
        .max_queued(100_000)
        .build()
        .layer(overloaded_upstream());
    let plain = offer_load(queue).await;

    // Adaptive (Vegas), failing fast: it must find the capacity by itself,
    // starting from a limit twice too high.
    let adaptive = BulkheadLayer::builder()
        .adaptive(Vegas::new(20).min_limit(1).max_limit(200))
        .build()
        .layer(overloaded_upstream());
    let handle = adaptive.handle();
    let vegas = offer_load(adaptive).await;

    println!(
        "plain queue: good {} late {} rejected {}; vegas: good {} late {} rejected {} (limit {})",
        plain.good,
        plain.late,
        plain.rejected,
        vegas.good,
        vegas.late,
        vegas.rejected,
        handle.limit()
    );
    assert!(
        vegas.good * 10 >= capacity * 9,
        "vegas goodput {} < 90% of {capacity}",
        vegas.good
    );
    assert!(
        vegas.late * 100 <= capacity,
        "vegas: {} calls ran past their deadline",
        vegas.late
    );
    assert!(
        plain.good * 10 <= capacity,
        "plain queue goodput {} > 10%",
        plain.good
    );
    assert!(
        plain.late > 5_000,
        "the queue made {} callers wait past their deadline",
        plain.late
    );
    // The upstream serves 10 at a time and is overloaded from the first
    // call, so the no-load latency Vegas learns (an average over 200 calls)
    // already holds a queue: the limit settles at a small queue above the
    // 10 workers, with every answer within its deadline (asserted above).
    assert!(
        (10..=40).contains(&handle.limit()),
        "limit {}",
        handle.limit()
    );
}

/// Records what the bulkhead tells its algorithm.
#[derive(Clone, Default)]
struct Recorder(Arc<std::sync::Mutex<Vec<SampleKind>>>);

impl LimitAlgorithm for Recorder {
    fn initial_limit(&self) -> usize {
        10
    }
    fn update(&mut self, sample: &Sample) -> usize {
        self.0.lock().unwrap().push(sample.kind());
        10
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_limit_follows_the_shared_classifier() {
    let recorder = Recorder::default();
    let svc = BulkheadLayer::builder()
        .adaptive(recorder.clone())
        .classifier(|r: &Result<u16, BoxError>| match r {
            Ok(429) => Outcome::Throttled,
            Ok(404) => Outcome::Ignored,
            Ok(s) if *s >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::of_error(e),
        })
        .build()
        .layer(tower::service_fn(|status: u16| async move {
            match status {
                0 => Err::<u16, BoxError>(Box::new(BulkheadFull::at_capacity())),
                1 => Err("connection reset".into()),
                9 => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(200)
                }
                s => Ok(s),
            }
        }));
    for status in [200, 429, 404, 503, 0, 1] {
        let _ = svc.clone().oneshot(status).await;
    }
    // Abandoned by a timeout further out.
    let slow = tokio::time::timeout(Duration::from_secs(1), svc.clone().oneshot(9)).await;
    assert!(slow.is_err());
    assert_eq!(
        *recorder.0.lock().unwrap(),
        [
            SampleKind::Success,   // 200
            SampleKind::Dropped,   // 503
            SampleKind::Dropped,   // a transport error
            SampleKind::Abandoned, // dropped by the timeout: neutral, not a drop
        ],
        "429 (throttled), 404 (ignored) and a rejection further in give no sample"
    );
}

#[test]
fn max_concurrent_is_the_adaptive_maximum_unless_the_algorithm_sets_one() {
    let limit = |layer: BulkheadLayer| layer.handle().unwrap().limit();
    // The initial limit is clamped to the bulkhead's maximum...
    let inherited = BulkheadLayer::builder()
        .max_concurrent(30)
        .adaptive(Gradient2::new(50))
        .build_shared();
    assert_eq!(limit(inherited), 30);
    // ...unless the algorithm's own maximum was set.
    let explicit = BulkheadLayer::builder()
        .max_concurrent(30)
        .adaptive(Gradient2::new(50).max_limit(80))
        .build_shared();
    assert_eq!(limit(explicit), 50);
    // The default `max_concurrent` (64) applies too.
    let default = BulkheadLayer::builder()
        .adaptive(Vegas::new(500))
        .build_shared();
    assert_eq!(limit(default), 64);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gradient2_falls_when_latency_rises_and_recovers_when_it_falls() {
    let [fast, slow, again] = phases(Gradient2::new(10).min_limit(4).max_limit(48)).await;
    assert_eq!(fast, 48);
    // Latency ×5 with no more load: the limit shrinks by 40% with the
    // latency staying ×5, which says the latency is the service's own, not
    // a queue this limit lets in; the long term takes it and the limit
    // grows back (a latency that falls with the limit keeps it falling: see
    // the unit tests).
    assert!(
        slow >= 40,
        "latency ×5, not queueing: the limit holds ({slow})"
    );
    assert_eq!(again, 48);
}
