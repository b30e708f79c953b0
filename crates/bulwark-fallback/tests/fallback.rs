//! Fallback: chosen only for the right results, every source, both causes on
//! the fallback's own failure, stale values only within their age.

use bulwark_core::error::{find, BulkheadFull, CircuitOpen};
use bulwark_core::{BoxError, Outcome};
use bulwark_fallback::error::{FallbackFailed, NoStaleResponse};
use bulwark_fallback::{FallbackEvent, FallbackLayer};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Layer, ServiceExt};

/// What the primary service does with each request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Do {
    Answer(u32),
    Fail,
    Open,
    WrappedOpen,
    Full,
    Timeout,
}

#[derive(Debug)]
struct Wrapped(BoxError);
impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped")
    }
}
impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[derive(Debug)]
struct TimedOut;
impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}
impl std::error::Error for TimedOut {}

fn primary() -> impl tower::Service<Do, Response = u32, Error = BoxError, Future = impl Send> + Clone
{
    tower::service_fn(|d: Do| async move {
        match d {
            Do::Answer(n) => Ok(n),
            Do::Fail => Err("boom".into()),
            Do::Open => Err(Box::new(CircuitOpen::new(None)) as BoxError),
            Do::WrappedOpen => Err(Box::new(Wrapped(Box::new(CircuitOpen::new(None)))) as BoxError),
            Do::Full => Err(Box::new(BulkheadFull::at_capacity()) as BoxError),
            Do::Timeout => Err(Box::new(TimedOut) as BoxError),
        }
    })
}

#[tokio::test]
async fn value_on_classified_failures_only() {
    let svc = FallbackLayer::value(0u32).layer(primary());
    assert_eq!(svc.clone().oneshot(Do::Answer(7)).await.unwrap(), 7);
    for d in [Do::Fail, Do::Open, Do::Full, Do::Timeout, Do::WrappedOpen] {
        assert_eq!(svc.clone().oneshot(d).await.unwrap(), 0, "{d:?}");
    }
    // A classifier that ignores some errors: those pass through.
    let svc = FallbackLayer::value(0u32)
        .classify(|r: &Result<u32, BoxError>| match r {
            Ok(n) if *n >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(e) if e.to_string() == "boom" => Outcome::Ignored,
            Err(e) => Outcome::of_error(e),
        })
        .layer(primary());
    assert_eq!(
        svc.clone().oneshot(Do::Fail).await.unwrap_err().to_string(),
        "boom"
    );
    assert_eq!(svc.clone().oneshot(Do::Open).await.unwrap(), 0);
    // An Ok response classified as a failure (a 503) falls back too.
    assert_eq!(svc.clone().oneshot(Do::Answer(503)).await.unwrap(), 0);
    assert_eq!(svc.oneshot(Do::Answer(200)).await.unwrap(), 200);
}

#[tokio::test]
async fn only_chosen_error_types_anywhere_in_the_chain() {
    let svc = FallbackLayer::value(0u32)
        .on_error::<CircuitOpen>()
        .layer(primary());
    assert_eq!(svc.clone().oneshot(Do::Open).await.unwrap(), 0);
    assert_eq!(svc.clone().oneshot(Do::WrappedOpen).await.unwrap(), 0);
    let err = svc.clone().oneshot(Do::Fail).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    let err = svc.clone().oneshot(Do::Full).await.unwrap_err();
    assert!(find::<BulkheadFull>(&*err).is_some());
    assert!(svc.clone().oneshot(Do::Timeout).await.is_err());

    // Either of two types.
    let svc = FallbackLayer::value(0u32)
        .on_error::<CircuitOpen>()
        .or_on_error::<TimedOut>()
        .layer(primary());
    assert_eq!(svc.clone().oneshot(Do::Timeout).await.unwrap(), 0);
    assert_eq!(svc.clone().oneshot(Do::Open).await.unwrap(), 0);
    assert!(svc.oneshot(Do::Fail).await.is_err());
}

#[tokio::test]
async fn closure_of_the_error_and_its_own_failure_carries_both() {
    let svc = FallbackLayer::from_fn(|e: &BoxError| {
        if find::<CircuitOpen>(&**e).is_some() {
            Ok(1u32)
        } else {
            Err("no fallback for this".into())
        }
    })
    .layer(primary());
    assert_eq!(svc.clone().oneshot(Do::WrappedOpen).await.unwrap(), 1);
    let err = svc.oneshot(Do::Fail).await.unwrap_err();
    let failed = find::<FallbackFailed>(&*err).unwrap();
    assert_eq!(failed.primary().to_string(), "boom");
    assert_eq!(failed.fallback().to_string(), "no fallback for this");
    assert_eq!(
        err.to_string(),
        "fallback failed: no fallback for this; after: boom"
    );
}

#[tokio::test]
async fn backup_service_gets_a_copy_of_the_request() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let backup = tower::service_fn(move |d: Do| {
        log.lock().unwrap().push(d);
        async move {
            match d {
                Do::Timeout => Err::<u32, BoxError>("backup down".into()),
                _ => Ok(99),
            }
        }
    });
    let svc = FallbackLayer::service(backup).layer(primary());
    assert_eq!(svc.clone().oneshot(Do::Answer(5)).await.unwrap(), 5);
    assert_eq!(svc.clone().oneshot(Do::Open).await.unwrap(), 99);
    assert_eq!(*seen.lock().unwrap(), vec![Do::Open]);
    // Both fail: both causes, and the primary is still found in the chain.
    let err = svc.oneshot(Do::Timeout).await.unwrap_err();
    let failed = find::<FallbackFailed>(&*err).unwrap();
    assert_eq!(failed.fallback().to_string(), "backup down");
    assert!(find::<TimedOut>(&*err).is_some());
}

#[tokio::test(start_paused = true)]
async fn stale_served_only_within_its_age() {
    // The key is "which request": everything but the answer; the primary
    // answers Answer(n) and fails otherwise. Key: 0 for all, so a failure
    // gets the last answer.
    let layer = FallbackLayer::stale_if_error(|_: &Do| 0u8, Duration::from_secs(10), 100);
    let svc = layer.layer(primary());
    // Nothing remembered yet.
    let err = svc.clone().oneshot(Do::Fail).await.unwrap_err();
    let failed = find::<FallbackFailed>(&*err).unwrap();
    assert_eq!(
        failed.fallback().to_string(),
        "no good response to fall back to"
    );
    assert_eq!(svc.clone().oneshot(Do::Answer(42)).await.unwrap(), 42);
    tokio::time::advance(Duration::from_secs(10)).await;
    // Exactly at the maximum age: still served.
    assert_eq!(svc.clone().oneshot(Do::Fail).await.unwrap(), 42);
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = svc.clone().oneshot(Do::Fail).await.unwrap_err();
    let failed = find::<FallbackFailed>(&*err).unwrap();
    let stale = find::<NoStaleResponse>(failed.fallback()).unwrap();
    assert_eq!(stale.age(), Some(Duration::from_millis(10_001)));
    assert_eq!(failed.primary().to_string(), "boom");
    // A fresh success refreshes it.
    svc.clone().oneshot(Do::Answer(43)).await.unwrap();
    assert_eq!(svc.oneshot(Do::Open).await.unwrap(), 43);
}

#[tokio::test(start_paused = true)]
async fn stale_is_per_key_and_bounded() {
    // Key: the answer modulo 10 for answers; failures use key 1.
    let layer = FallbackLayer::stale_if_error(
        |d: &Do| match d {
            Do::Answer(n) => n % 10,
            _ => 1,
        },
        Duration::from_secs(60),
        2,
    );
    let svc = layer.layer(primary());
    svc.clone().oneshot(Do::Answer(11)).await.unwrap(); // key 1
    tokio::time::advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(Do::Answer(12)).await.unwrap(); // key 2
    assert_eq!(svc.clone().oneshot(Do::Fail).await.unwrap(), 11);
    tokio::time::advance(Duration::from_secs(1)).await;
    // A third key evicts the oldest (key 1).
    svc.clone().oneshot(Do::Answer(13)).await.unwrap();
    assert!(svc.oneshot(Do::Fail).await.is_err());
}

#[tokio::test]
async fn fail_open_and_fail_closed() {
    let check = tower::service_fn(|allowed: Option<bool>| async move {
        allowed.ok_or_else(|| BoxError::from("permission service down"))
    });
    let closed = FallbackLayer::fail_closed().layer(check);
    let open = FallbackLayer::fail_open().layer(check);
    assert!(closed.clone().oneshot(Some(true)).await.unwrap());
    assert!(!closed.oneshot(None).await.unwrap());
    assert!(!open.clone().oneshot(Some(false)).await.unwrap());
    assert!(open.oneshot(None).await.unwrap());
}

#[tokio::test]
async fn events() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let svc = FallbackLayer::from_fn(|_: &BoxError| Err::<u32, _>("nope".into()))
        .on_event(move |e: &FallbackEvent| {
            match e {
                FallbackEvent::FellBack { outcome } => assert_eq!(*outcome, Outcome::Rejected),
                FallbackEvent::FallbackFailed => {}
                _ => unreachable!(),
            }
            c.fetch_add(1, Ordering::SeqCst);
        })
        .layer(primary());
    assert!(svc.clone().oneshot(Do::Answer(1)).await.is_ok());
    assert_eq!(count.load(Ordering::SeqCst), 0);
    assert!(svc.oneshot(Do::Full).await.is_err());
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_max_age_of_any_duration() {
    // 0, 1 ns, a second, "forever": never a panic; an answer is served as
    // long as its age is within the maximum.
    for max_age in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_secs(1),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ] {
        let layer = FallbackLayer::stale_if_error(|_: &Do| 0u8, max_age, 4);
        let svc = layer.layer(primary());
        assert_eq!(svc.clone().oneshot(Do::Answer(7)).await.unwrap(), 7);
        assert_eq!(
            svc.clone().oneshot(Do::Fail).await.unwrap(),
            7,
            "{max_age:?}"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let served = svc.oneshot(Do::Fail).await.is_ok();
        assert_eq!(served, max_age >= Duration::from_secs(2), "{max_age:?}");
    }
}
