//! The generic client stack: order, shared classifier, deadline, keys,
//! validation. All in paused time.

use bulwark_breaker::State;
use bulwark_core::error::{find, CircuitOpen};
use bulwark_core::{BoxError, Outcome};
use bulwark_retry::policy::PushbackHint;
use bulwark_stack::ClientStack;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// Requests are (host, what the upstream does); answers are status codes.
type Req = (u32, Reply);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    Ok,
    Fail,
    Hang,
    /// A 429 asking for this many ms.
    Throttle(u64),
}

fn classify(r: &Result<u16, BoxError>) -> Outcome {
    match r {
        Ok(429) => Outcome::Throttled,
        Ok(s) if *s >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::of_error(e),
    }
}

fn upstream(
    calls: Arc<AtomicU32>,
) -> impl Service<Req, Response = u16, Error = BoxError, Future: Send> + Clone {
    service_fn(move |(_, reply): Req| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match reply {
                Reply::Ok => Ok(200),
                Reply::Fail => Ok(503),
                Reply::Throttle(_) => Ok(429),
                Reply::Hang => std::future::pending().await,
            }
        }
    })
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_breaker_sees_every_attempt_and_retry_does_not_retry_its_refusals() {
    let calls = Arc::new(AtomicU32::new(0));
    let stack = ClientStack::new()
        .classifier(classify)
        .retry(|r| r.max_attempts(3))
        .breaker(|b| {
            b.without_failure_rate()
                .consecutive_failures(2)
                .open_for(Duration::from_secs(10))
        })
        .seed(1)
        .build()
        .unwrap();
    let breaker = stack.breaker().unwrap().breaker().clone();
    let svc = ServiceBuilder::new()
        .layer(stack)
        .service(upstream(calls.clone()));
    // Two attempts fail and trip the breaker; the third is refused locally
    // and not sent; the caller gets the upstream's last answer.
    let answer = svc.clone().oneshot((0, Reply::Fail)).await.unwrap();
    assert_eq!(answer, 503);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(breaker.state(), State::Open);
    // Now refused at once, and not retried.
    let err = svc.oneshot((0, Reply::Ok)).await.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_attempt_is_a_failure_the_breaker_counts_and_the_total_timeout_bounds_the_call() {
    let calls = Arc::new(AtomicU32::new(0));
    let stack = ClientStack::new()
        .classifier(classify)
        .total_timeout(Duration::from_secs(2))
        .breaker(|b| b.without_failure_rate().consecutive_failures(1))
        .seed(1)
        .build()
        .unwrap();
    let breaker = stack.breaker().unwrap().breaker().clone();
    let svc = ServiceBuilder::new()
        .layer(stack)
        .service(upstream(calls.clone()));
    let start = Instant::now();
    let err = svc.oneshot((0, Reply::Hang)).await.unwrap_err();
    // The attempt timeout (half the total) fired and the breaker opened, so
    // the retry, after its backoff (at most 100 ms the first time), was
    // refused without reaching the upstream.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took <= Duration::from_millis(1100),
        "{took:?}"
    );
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pushback_past_the_deadline_returns_the_answer_at_once() {
    let calls = Arc::new(AtomicU32::new(0));
    let stack = ClientStack::new()
        .classifier(classify)
        .pushback(|r: &Result<u16, BoxError>| match r {
            Ok(429) => PushbackHint::After(Duration::from_secs(5)),
            _ => PushbackHint::None,
        })
        .total_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(stack)
        .service(upstream(calls.clone()));
    let start = Instant::now();
    assert_eq!(svc.oneshot((0, Reply::Throttle(5000))).await.unwrap(), 429);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no wait for a retry that cannot come"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_bad_key_does_not_cut_off_the_others() {
    let calls = Arc::new(AtomicU32::new(0));
    let stack = ClientStack::new()
        .classifier(classify)
        .no_retry()
        .breaker(|b| b.without_failure_rate().consecutive_failures(3))
        .breaker_per_key(|req: &Req| req.0, 16)
        .build()
        .unwrap();
    let breakers = stack.breaker().unwrap().breakers().clone();
    let svc = ServiceBuilder::new()
        .layer(stack)
        .service(upstream(calls.clone()));
    for _ in 0..3 {
        svc.clone().oneshot((1, Reply::Fail)).await.unwrap();
    }
    let refused = svc.clone().oneshot((1, Reply::Ok)).await.unwrap_err();
    assert!(find::<CircuitOpen>(&*refused).is_some());
    assert_eq!(svc.clone().oneshot((2, Reply::Ok)).await.unwrap(), 200);
    assert_eq!(breakers.get(&1).unwrap().state(), State::Open);
    assert_eq!(breakers.get(&2).unwrap().state(), State::Closed);
}

#[test]
fn what_cannot_work_is_refused_naming_the_setting() {
    let err = ClientStack::new()
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "attempt_timeout");
    let err = ClientStack::new()
        .total_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "total_timeout");
    let err = ClientStack::new()
        .retry(|r| r.max_attempts(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_attempts");
    let err = ClientStack::new()
        .breaker(|b| b.failure_rate(2.0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate");
    // The derived attempt timeout never collides with the total, even at
    // the extremes.
    for total in [
        Duration::from_nanos(1),
        Duration::from_millis(3),
        Duration::MAX,
    ] {
        ClientStack::new().total_timeout(total).build().unwrap();
    }
    // Without a retry, an attempt timeout as long as the total is fine.
    ClientStack::new()
        .no_retry()
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn everything_off_is_a_pass_through() {
    let calls = Arc::new(AtomicU32::new(0));
    let stack = ClientStack::new()
        .no_total_timeout()
        .no_retry()
        .no_breaker()
        .no_attempt_timeout()
        .no_bulkhead()
        .build()
        .unwrap();
    assert!(
        stack.breaker().is_none() && stack.retry_budget().is_none() && stack.bulkhead().is_none()
    );
    let svc = ServiceBuilder::new()
        .layer(stack)
        .service(upstream(calls.clone()));
    assert_eq!(svc.oneshot((0, Reply::Fail)).await.unwrap(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
