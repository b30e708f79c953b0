//! Timeout behaviour in paused time: exact limits, per-request limits,
//! readiness coverage, clones and drops.

use bulwark_core::error::find;
use bulwark_core::BoxError;
use bulwark_timeout::error::{Elapsed, Limit};
use bulwark_timeout::{TimeoutEvent, TimeoutLayer};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

fn sleeper() -> impl Service<
    u64,
    Response = u64,
    Error = BoxError,
    Future = impl Future<Output = Result<u64, BoxError>> + Send,
> + Clone {
    tower::service_fn(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, BoxError>(ms)
    })
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let waker = futures_noop_waker();
    f.poll(&mut Context::from_waker(&waker))
}

fn futures_noop_waker() -> std::task::Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    std::task::Waker::from(Arc::new(Noop))
}

#[tokio::test(start_paused = true)]
async fn fires_at_exactly_the_limit_not_before() {
    let mut svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .service(sleeper());
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(1_000).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let e = find::<Elapsed>(&*err).unwrap();
    assert_eq!(e.limit(), Limit::Request);
    assert_eq!(e.duration(), Duration::from_millis(100));
    assert_eq!(err.to_string(), "request timed out after 100ms");

    // 1 ms before the limit, the future is still pending; at the limit it
    // fails.
    let mut fut = pin!(svc.ready().await.unwrap().call(1_000));
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(poll_once(fut.as_mut()).is_pending());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(matches!(poll_once(fut.as_mut()), Poll::Ready(Err(_))));
}

#[tokio::test(start_paused = true)]
async fn a_response_ready_at_the_limit_wins() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .service(sleeper());
    assert_eq!(svc.clone().oneshot(100).await.unwrap(), 100);
    assert_eq!(svc.oneshot(99).await.unwrap(), 99);
}

#[tokio::test(start_paused = true)]
async fn per_request_limits() {
    // The request is the time the upstream takes; the limit depends on it:
    // "health checks" (< 1000) get 1 s, "reports" get 2 min, 0 gets none.
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::per_request(|ms: &u64| match *ms {
            0 => None,
            m if m < 1_000 => Some(Duration::from_secs(1)),
            _ => Some(Duration::from_secs(120)),
        }))
        .service(tower::service_fn(|ms: u64| async move {
            // Health checks hang; reports take 100 s.
            let wait = if ms < 1_000 { 3_600_000 } else { 100_000 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Ok::<_, BoxError>(ms)
        }));

    let start = Instant::now();
    let err = svc.clone().oneshot(5).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(
        find::<Elapsed>(&*err).unwrap().duration(),
        Duration::from_secs(1)
    );

    let start = Instant::now();
    assert_eq!(svc.clone().oneshot(5_000).await.unwrap(), 5_000);
    assert_eq!(start.elapsed(), Duration::from_secs(100));

    // No limit: waits the whole hour.
    let start = Instant::now();
    let res = svc.oneshot(0).await;
    assert!(res.is_ok());
    assert_eq!(start.elapsed(), Duration::from_secs(3_600));
}

/// A service that becomes ready only after `ready_after`, counting calls.
struct SlowReady {
    ready_at: Instant,
    calls: Arc<AtomicUsize>,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl SlowReady {
    fn new(after: Duration) -> Self {
        SlowReady {
            ready_at: Instant::now() + after,
            calls: Arc::default(),
            sleep: None,
        }
    }
}

impl Service<()> for SlowReady {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let at = self.ready_at;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        sleep.as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, _: ()) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_is_not_covered_by_default() {
    let inner = SlowReady::new(Duration::from_secs(5));
    let calls = inner.calls.clone();
    let svc = TimeoutLayer::new(Duration::from_millis(100)).layer_on(inner);
    let start = Instant::now();
    svc.oneshot(()).await.unwrap();
    // Waited for readiness far past the request limit, as tower does.
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_covered_when_asked() {
    let inner = SlowReady::new(Duration::from_secs(5));
    let calls = inner.calls.clone();
    let events = Arc::new(AtomicUsize::new(0));
    let seen = events.clone();
    let mut svc = TimeoutLayer::new(Duration::from_millis(100))
        .readiness_timeout(Duration::from_millis(250))
        .on_event(move |e: &TimeoutEvent| {
            if let TimeoutEvent::Elapsed(e) = e {
                assert!(e.is_readiness());
            }
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .layer_on(inner);
    let start = Instant::now();
    // poll_ready succeeds (never Err for a policy decision)...
    svc.ready().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    // ...and the call fails at once without calling the inner service.
    let err = svc.call(()).await.unwrap_err();
    let e = find::<Elapsed>(&*err).unwrap();
    assert_eq!(e.limit(), Limit::Readiness);
    assert_eq!(e.duration(), Duration::from_millis(250));
    assert_eq!(err.to_string(), "service was not ready within 250ms");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(events.load(Ordering::SeqCst), 1);

    // A new wait gets a fresh limit: 250 ms more (t = 500 ms) still not ready.
    svc.ready().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert!(svc.call(()).await.is_err());

    // Once the inner service is ready in time, calls go through.
    tokio::time::advance(Duration::from_secs(5)).await;
    svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn ready_in_time_is_not_affected() {
    let inner = SlowReady::new(Duration::from_millis(249));
    let calls = inner.calls.clone();
    let svc = TimeoutLayer::new(Duration::from_millis(100))
        .readiness_timeout(Duration::from_millis(250))
        .layer_on(inner);
    svc.oneshot(()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_boxed() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .service_fn(|()| async { Err::<(), _>(std::io::Error::other("boom")) });
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(find::<std::io::Error>(&*err).is_some());
    assert!(find::<Elapsed>(&*err).is_none());
}

#[tokio::test(start_paused = true)]
async fn nested_timeouts_inner_fires_first() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .service(sleeper());
    let start = Instant::now();
    let err = svc.oneshot(60_000).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(
        find::<Elapsed>(&*err).unwrap().duration(),
        Duration::from_secs(2)
    );
}

/// `layer.layer(svc)` without importing `Layer` at every call site.
trait LayerOn<S> {
    type Out;
    fn layer_on(&self, s: S) -> Self::Out;
}
impl<S, L: tower::Layer<S>> LayerOn<S> for L {
    type Out = L::Service;
    fn layer_on(&self, s: S) -> L::Service {
        self.layer(s)
    }
}
