//! Static bulkhead: fail fast, bounded waits, sharing, keys, no leaks.

use bulwark_bulkhead::error::{BulkheadFull, BulkheadFullReason};
use bulwark_bulkhead::{BulkheadEvent, BulkheadLayer};
use bulwark_core::error::find;
use bulwark_core::BoxError;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

type Svc = tower::util::BoxCloneService<u64, u64, BoxError>;

/// Sleeps for the request's milliseconds.
fn sleeper() -> Svc {
    tower::util::BoxCloneService::new(tower::service_fn(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, BoxError>(ms)
    }))
}

fn reason(err: &BoxError) -> BulkheadFullReason {
    find::<BulkheadFull>(&**err)
        .expect("a BulkheadFull")
        .reason()
}

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}
fn noop_cx() -> Context<'static> {
    let waker: &'static Waker = Box::leak(Box::new(Waker::from(Arc::new(NoopWake))));
    Context::from_waker(waker)
}

#[tokio::test(start_paused = true)]
async fn fail_fast_and_release_on_completion_and_drop() {
    let mut svc = BulkheadLayer::new(2).layer(sleeper());
    let h = svc.handle();
    let a = svc.ready().await.unwrap().call(10);
    let b = svc.ready().await.unwrap().call(10);
    assert_eq!(h.in_flight(), 2);
    let err = svc.ready().await.unwrap().call(10).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadFullReason::AtCapacity);
    assert_eq!(err.to_string(), "bulkhead is full");
    assert_eq!(h.rejections(), 1);
    // Dropping a response future gives its permit back.
    drop(a);
    assert_eq!(h.in_flight(), 1);
    // Completing one does too.
    b.await.unwrap();
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn ready_then_dropped_gives_the_permit_back_and_clones_start_empty() {
    let mut svc = BulkheadLayer::new(1).layer(sleeper());
    let h = svc.handle();
    svc.ready().await.unwrap();
    assert_eq!(h.in_flight(), 1);
    // A clone does not inherit the reservation.
    let mut clone = svc.clone();
    assert_eq!(h.in_flight(), 1);
    let err = clone.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadFullReason::AtCapacity);
    drop(svc);
    assert_eq!(h.in_flight(), 0);
    assert_eq!(clone.ready().await.unwrap().call(1).await.unwrap(), 1);
    // poll_ready twice holds one permit only.
    clone.ready().await.unwrap();
    clone.ready().await.unwrap();
    assert_eq!(h.in_flight(), 1);
    let _inner = clone.into_inner();
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn waits_at_most_max_wait_exactly() {
    let mut svc = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(1)
        .max_wait(Duration::from_millis(50))
        .build()
        .layer(sleeper());
    let h = svc.handle();
    let busy = tokio::spawn(svc.clone().oneshot(1_000));
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(), 1);
    let start = Instant::now();
    svc.ready().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    let err = svc.call(1).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadFullReason::WaitTimedOut);
    assert_eq!(
        err.to_string(),
        "bulkhead 'db' is full; waited too long for a permit"
    );
    assert_eq!(h.queued(), 0);
    assert_eq!(h.rejections(), 1);
    busy.await.unwrap().unwrap();
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_the_permit_when_it_frees_up() {
    let svc = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_millis(100))
        .build()
        .layer(sleeper());
    let h = svc.handle();
    let busy = tokio::spawn(svc.clone().oneshot(30));
    tokio::task::yield_now().await;
    let start = Instant::now();
    // Waits 30 ms for the permit, then runs 20 ms.
    assert_eq!(svc.clone().oneshot(20).await.unwrap(), 20);
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    busy.await.unwrap().unwrap();
    assert_eq!((h.in_flight(), h.queued(), h.rejections()), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn queue_is_bounded_and_fifo() {
    let svc = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(10))
        .max_queued(2)
        .build()
        .layer(sleeper());
    let h = svc.handle();
    let t0 = Instant::now();
    let busy = tokio::spawn(svc.clone().oneshot(10));
    tokio::task::yield_now().await;
    let mut waiters = Vec::new();
    for i in 0..2u64 {
        waiters.push(tokio::spawn(svc.clone().oneshot(10 + i)));
        tokio::task::yield_now().await;
    }
    assert_eq!(h.queued(), 2);
    // The queue is full: the third waiter is refused at once.
    let start = Instant::now();
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(reason(&err), BulkheadFullReason::QueueFull);
    busy.await.unwrap().unwrap();
    // FIFO: the first waiter runs 10..20 ms, the second 20..31 ms.
    let mut waiters = waiters.into_iter();
    assert_eq!(waiters.next().unwrap().await.unwrap().unwrap(), 10);
    assert_eq!(t0.elapsed(), Duration::from_millis(20));
    assert_eq!(waiters.next().unwrap().await.unwrap().unwrap(), 11);
    assert_eq!(t0.elapsed(), Duration::from_millis(31));
    assert_eq!((h.in_flight(), h.queued(), h.rejections()), (0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue() {
    let mut svc = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(10))
        .build()
        .layer(sleeper());
    let h = svc.handle();
    svc.ready().await.unwrap(); // holds the only permit
    let mut waiter = svc.clone();
    let mut cx = noop_cx();
    assert!(waiter.poll_ready(&mut cx).is_pending());
    assert_eq!(h.queued(), 1);
    drop(waiter);
    assert_eq!(h.queued(), 0);
    // A waiter granted the permit and then dropped gives it back.
    let mut waiter = svc.clone();
    assert!(waiter.poll_ready(&mut cx).is_pending());
    drop(svc); // grants the permit to the waiter
    assert_eq!((h.in_flight(), h.queued()), (1, 0));
    drop(waiter);
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn shared_limit_across_services() {
    let layer = BulkheadLayer::builder().max_concurrent(2).build_shared();
    let h = layer.handle().unwrap();
    let a = layer.layer(sleeper());
    let b = layer.layer(sleeper());
    assert!(a.handle().same_bulkhead(&b.handle()));
    let fa = tokio::spawn(a.clone().oneshot(10));
    let fb = tokio::spawn(b.clone().oneshot(10));
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(), 2);
    let err = b.clone().oneshot(1).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadFullReason::AtCapacity);
    fa.await.unwrap().unwrap();
    fb.await.unwrap().unwrap();

    // Per-service layers do not share.
    let per = BulkheadLayer::new(1);
    assert!(per.handle().is_none());
    assert!(!per
        .layer(sleeper())
        .handle()
        .same_bulkhead(&per.layer(sleeper()).handle()));
}

#[tokio::test(start_paused = true)]
async fn keyed_partitions_with_bounded_keys() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .build_keyed(|ms: &u64| *ms % 10, 2);
    let h = layer.handle();
    let svc = layer.layer(sleeper());
    let k1 = tokio::spawn(svc.clone().oneshot(101)); // key 1
    let k2 = tokio::spawn(svc.clone().oneshot(102)); // key 2
    tokio::task::yield_now().await;
    assert_eq!((h.in_flight(&1), h.in_flight(&2), h.keys()), (1, 1, 2));
    // Key 1 is full; key 2 too; a third key does not fit while both are busy.
    let err = svc.clone().oneshot(11).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadFullReason::AtCapacity);
    assert!(svc.clone().oneshot(3).await.is_err());
    assert_eq!(h.overflow_rejections(), 1);
    k1.await.unwrap().unwrap();
    // Key 1 is idle now: it makes room for key 3.
    assert_eq!(svc.clone().oneshot(3).await.unwrap(), 3);
    assert_eq!(h.keys(), 2);
    k2.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn events_for_rejections() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut svc = BulkheadLayer::builder()
        .name("x")
        .max_concurrent(1)
        .on_event(move |e: &BulkheadEvent| log.lock().unwrap().push(e.clone()))
        .build()
        .layer(sleeper());
    svc.ready().await.unwrap();
    let _ = svc.clone().oneshot(1).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![BulkheadEvent::Rejected {
            name: Some("x".into()),
            reason: BulkheadFullReason::AtCapacity
        }]
    );
}

/// Counts the maximum number of concurrent calls.
#[derive(Clone)]
struct Probe {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl Service<u64> for Probe {
    type Response = u64;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, yields: u64) -> Self::Future {
        let (now, max) = (self.now.clone(), self.max.clone());
        Box::pin(async move {
            struct Leave(Arc<AtomicUsize>);
            impl Drop for Leave {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            let _leave = Leave(now);
            max.fetch_max(n, Ordering::SeqCst);
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            Ok(yields)
        })
    }
}

async fn stress(layer: BulkheadLayer, limit: usize) {
    let probe = Probe {
        now: Arc::default(),
        max: Arc::default(),
    };
    let max = probe.max.clone();
    let svc = layer.layer(probe);
    let h = svc.handle();
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..64 {
        let (svc, ok) = (svc.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(t);
            for _ in 0..200 {
                let mut svc = svc.clone();
                let yields = rng.u64(0..8);
                match rng.u8(0..4) {
                    // Made ready, then dropped without a call.
                    0 => {
                        let _ = svc.ready().await;
                    }
                    // Called, then the future dropped part-way.
                    1 => {
                        let fut = svc.ready().await.unwrap().call(yields + 4);
                        let _ = tokio::time::timeout(Duration::ZERO, fut).await;
                    }
                    _ => {
                        if svc.ready().await.unwrap().call(yields).await.is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        max.load(Ordering::SeqCst) <= limit,
        "max {} > {limit}",
        max.load(Ordering::SeqCst)
    );
    assert!(max.load(Ordering::SeqCst) >= 1);
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!((h.in_flight(), h.queued()), (0, 0), "no permit leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_more_than_n_in_flight_fail_fast() {
    stress(BulkheadLayer::new(4), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_more_than_n_in_flight_waiting() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(3)
        .max_wait(Duration::from_secs(3600))
        .max_queued(1_000)
        .build();
    stress(layer, 3).await;
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_decides_at_once_and_never_panics() {
    let mut svc = BulkheadLayer::new(1).layer(sleeper());
    let h = svc.handle();
    // A caller's bug: `call` without `poll_ready`. There is room: it runs.
    let a = svc.call(10);
    assert_eq!(h.in_flight(), 1);
    // No room: a BulkheadFull error, not a panic.
    let err = svc.call(10).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadFullReason::AtCapacity);
    assert_eq!(a.await.unwrap(), 10);
    assert_eq!(h.in_flight(), 0);
}
