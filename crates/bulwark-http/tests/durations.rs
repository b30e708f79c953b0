//! Every public duration setting, driven with 0, 1 ns, `Duration::MAX` and
//! random values, with a call made through what it builds, in paused time.
//!
//! The class of bug this keeps out: `Instant + Duration` (and friends)
//! panicking when a duration is too long to be a deadline. Each check also
//! asserts a sensible outcome: a limit longer than the work lets it finish, a
//! shorter one fires, "too long to represent" means "never", and settings a
//! builder refuses come back as a typed error naming the setting.

use bulwark_breaker::{Breaker, CircuitBreakerLayer, State};
use bulwark_bulkhead::error::{BulkheadFull, BulkheadFullReason};
use bulwark_bulkhead::BulkheadLayer;
use bulwark_core::backoff::{BackoffPolicy, Jitter};
use bulwark_core::error::{find, CircuitOpen};
use bulwark_core::BoxError;
use bulwark_http::deadline::{
    format_grpc_timeout, parse_grpc_timeout, Deadline, DeadlineLayer, PropagateDeadlineLayer,
    ServerDeadline,
};
use bulwark_http::pushback::{pushback_from_headers, ServerPushback};
use bulwark_http::{ClientStack, ServerStack};
use bulwark_retry::hedge::HedgeLayer;
use bulwark_retry::{PushbackHint, RetryBudget, RetryLayer};
use bulwark_timeout::error::{Elapsed, Limit};
use bulwark_timeout::TimeoutLayer;
use proptest::prelude::*;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// How long the inner service works.
const WORK: Duration = Duration::from_millis(10);
/// How long a check waits before it calls a wait "forever".
const DAY: Duration = Duration::from_secs(86_400);
/// Tokio's timer counts whole milliseconds: deadlines this close to a
/// boundary may land on either side of it.
const TICK: Duration = Duration::from_millis(1);

fn near(d: Duration, boundary: Duration) -> bool {
    d.max(boundary) - d.min(boundary) <= TICK
}

/// Answers after `WORK`.
async fn work(n: u32) -> Result<u32, BoxError> {
    tokio::time::sleep(WORK).await;
    Ok(n)
}

/// Fails its first call, then succeeds.
fn fails_once() -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    let calls = Arc::new(AtomicU32::new(0));
    tower::service_fn(move |n: u32| {
        let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            tokio::time::sleep(WORK).await;
            if first {
                Err::<u32, BoxError>("first call fails".into())
            } else {
                Ok(n)
            }
        }
    })
}

/// Never ready.
#[derive(Clone, Debug)]
struct NeverReady;

impl Service<u32> for NeverReady {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Pending
    }

    fn call(&mut self, _: u32) -> Self::Future {
        unreachable!("never ready, so never called")
    }
}

/// Runs `f` until it ends or a day (of paused time) has passed.
async fn within_a_day<F: Future>(f: F) -> Option<F::Output> {
    tokio::time::timeout(DAY, f).await.ok()
}

async fn timeout_request(d: Duration) {
    for per_request in [false, true] {
        let start = Instant::now();
        let result = if per_request {
            ServiceBuilder::new()
                .layer(TimeoutLayer::per_request(move |_: &u32| Some(d)))
                .service_fn(work)
                .oneshot(1)
                .await
        } else {
            ServiceBuilder::new()
                .layer(TimeoutLayer::new(d))
                .service_fn(work)
                .oneshot(1)
                .await
        };
        match result {
            Ok(1) => assert!(d.saturating_add(TICK) >= WORK, "{d:?}: answered in time"),
            Ok(n) => panic!("{d:?}: answered {n}"),
            Err(e) => {
                assert!(d < WORK, "{d:?}: a limit longer than the work fired");
                let e = find::<Elapsed>(&*e).expect("an Elapsed");
                assert_eq!((e.limit(), e.duration()), (Limit::Request, d));
                assert!(start.elapsed() <= d.saturating_add(TICK));
            }
        }
    }
}

async fn timeout_readiness(d: Duration) {
    let start = Instant::now();
    let mut svc = TimeoutLayer::new(d).readiness_timeout(d).layer(NeverReady);
    let result = within_a_day(async {
        svc.ready().await?;
        svc.call(1).await
    })
    .await;
    match result {
        None => assert!(
            d.saturating_add(TICK) >= DAY,
            "{d:?}: the readiness limit did not fire"
        ),
        Some(Ok(_)) => panic!("{d:?}: a never-ready service answered"),
        Some(Err(e)) => {
            assert!(d <= DAY, "{d:?}: fired before its limit");
            let e = find::<Elapsed>(&*e).expect("an Elapsed");
            assert_eq!((e.limit(), e.duration()), (Limit::Readiness, d));
            let waited = start.elapsed();
            assert!(
                waited >= d && waited <= d + TICK,
                "{d:?}: waited {waited:?}"
            );
        }
    }
}

async fn bulkhead_max_wait(d: Duration) {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(d)
        .build_shared();
    let svc = layer.layer(tower::service_fn(work));
    // Hold the only permit for WORK.
    let mut first = svc.clone();
    first.ready().await.unwrap();
    let held = tokio::spawn(first.call(1));
    let result = within_a_day(svc.clone().oneshot(2)).await;
    assert_eq!(held.await.unwrap().unwrap(), 1);
    match result {
        None => panic!("{d:?}: a waiter was never served although the permit freed up"),
        Some(Ok(2)) => assert!(
            d.saturating_add(TICK) >= WORK,
            "{d:?}: got a permit it could not wait for"
        ),
        Some(Ok(n)) => panic!("{d:?}: answered {n}"),
        Some(Err(e)) => {
            let reason = find::<BulkheadFull>(&*e).expect("a BulkheadFull").reason();
            if d.is_zero() {
                assert_eq!(reason, BulkheadFullReason::AtCapacity);
            } else {
                assert_eq!(reason, BulkheadFullReason::WaitTimedOut, "{d:?}");
                assert!(d <= WORK, "{d:?}: gave up before max_wait");
            }
        }
    }
    let handle = layer.handle().unwrap();
    assert_eq!((handle.in_flight(), handle.queued()), (0, 0), "{d:?}");
}

/// What the breaker's next probe delay should be after `d`: capped "never".
fn capped(d: Duration) -> Duration {
    d.min(bulwark_core::clock::FAR_FUTURE)
}

async fn breaker_open_for(d: Duration) {
    let breaker = Breaker::builder()
        .consecutive_failures(1)
        .open_for(d)
        .build()
        .expect("any open time is accepted");
    let _ = breaker.call_sync(|| Err::<(), _>("boom"));
    if !d.is_zero() {
        assert_eq!(breaker.state(), State::Open, "{d:?}");
        assert_eq!(breaker.snapshot().next_probe_in, Some(capped(d)), "{d:?}");
    }
    tokio::time::sleep(d.min(DAY)).await;
    let probe = breaker.try_acquire();
    assert_eq!(probe.is_ok(), d <= DAY, "{d:?}: probe after the open time");
    if let Err(open) = probe {
        let _: CircuitOpen = open;
    }
}

async fn breaker_hold_open_for(d: Duration) {
    let breaker = Breaker::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .build()
        .unwrap();
    let _ = breaker.call_sync(|| Err::<(), _>("boom"));
    let extended = breaker.hold_open_for(d);
    assert_eq!(extended, d > Duration::from_secs(1), "{d:?}");
    let expected = capped(d).max(Duration::from_secs(1));
    assert_eq!(breaker.snapshot().next_probe_in, Some(expected), "{d:?}");
    assert_eq!(breaker.state(), State::Open);
}

async fn breaker_open_backoff(d: Duration) {
    let backoffs = [
        BackoffPolicy::exponential(d, 2.0).with_max(Duration::MAX),
        BackoffPolicy::exponential(Duration::from_millis(1), 1e300).with_max(d),
        BackoffPolicy::linear(d, d).with_jitter(Jitter::Equal),
        BackoffPolicy::constant(d).with_jitter(Jitter::Full),
        BackoffPolicy::exponential(d, 3.0).with_jitter(Jitter::Decorrelated),
    ];
    for backoff in backoffs {
        let Ok(breaker) = Breaker::builder()
            .consecutive_failures(1)
            .open_backoff(backoff)
            .seed(7)
            .build()
        else {
            continue;
        };
        // Trip, wait out the open time, fail the probe: five times.
        for _ in 0..5 {
            let _ = breaker.call_sync(|| Err::<(), _>("boom"));
            match breaker.snapshot().next_probe_in {
                Some(wait) if wait <= DAY => tokio::time::sleep(wait).await,
                Some(_) => break,
                None => {}
            }
        }
    }
}

async fn breaker_slow_calls(d: Duration) {
    let built = Breaker::builder()
        .without_failure_rate()
        .slow_calls(d, 1.0)
        .count_window(1)
        .minimum_calls(1)
        .build();
    let breaker = match built {
        Ok(b) => b,
        Err(e) => {
            assert!(d.is_zero(), "{d:?}: refused: {e}");
            assert_eq!(e.field(), "slow_call_duration");
            return;
        }
    };
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(tower::service_fn(work));
    svc.oneshot(1).await.unwrap();
    if !near(d, WORK) {
        let slow = d <= WORK;
        assert_eq!(breaker.state() == State::Open, slow, "{d:?}");
    }
}

async fn breaker_time_window(d: Duration) {
    let built = Breaker::builder()
        .time_window(d, 10)
        .failure_rate(0.5)
        .minimum_calls(2)
        .build();
    let breaker = match built {
        Ok(b) => b,
        Err(e) => {
            assert!(d.as_nanos() < 10, "{d:?}: refused: {e}");
            return;
        }
    };
    for i in 0..4 {
        let _ = breaker.call_sync(|| if i % 2 == 0 { Err("boom") } else { Ok(()) });
        tokio::time::sleep(d.min(DAY) / 3).await;
    }
    let _ = breaker.snapshot();
}

async fn keyed_breaker_idle(d: Duration) {
    let keyed = Breaker::builder()
        .consecutive_failures(1)
        .keyed()
        .max_keys(2)
        .idle_timeout(d)
        .build::<u32>()
        .expect("any idle timeout is accepted");
    for key in 0..6 {
        let _ = keyed.get_or_create(&key);
        tokio::time::sleep(d.min(DAY) / 2).await;
    }
    assert!(keyed.len() <= 2);
}

async fn retry_backoff(d: Duration) {
    let backoffs = [
        BackoffPolicy::constant(d),
        BackoffPolicy::linear(d, d),
        BackoffPolicy::exponential(d, 2.0).with_max(d),
        BackoffPolicy::exponential(d, 2.0).with_jitter(Jitter::Full),
        BackoffPolicy::exponential(d, 2.0).with_jitter(Jitter::Decorrelated),
    ];
    for backoff in backoffs {
        let start = Instant::now();
        let svc = RetryLayer::new()
            .max_attempts(2)
            .backoff(backoff)
            .budget(RetryBudget::unlimited())
            .seed(3)
            .layer(fails_once());
        match within_a_day(svc.oneshot(5)).await {
            Some(Ok(5)) => assert!(start.elapsed() >= 2 * WORK),
            Some(other) => panic!("{d:?}: {other:?}"),
            None => assert!(d > DAY / 2, "{d:?}: the retry never ran"),
        }
    }
}

async fn retry_pushback_and_deadline(d: Duration) {
    // The server asks for `d`; the layer caps it at `d` too.
    let start = Instant::now();
    let svc = RetryLayer::new()
        .max_attempts(2)
        .budget(RetryBudget::unlimited())
        .max_pushback(d)
        .pushback(move |_: &Result<u32, BoxError>| PushbackHint::After(Duration::MAX))
        .layer(fails_once());
    match within_a_day(svc.oneshot(5)).await {
        Some(Ok(5)) => assert!(start.elapsed() >= 2 * WORK + d.min(DAY)),
        Some(other) => panic!("{d:?}: {other:?}"),
        None => assert!(
            d.saturating_add(3 * WORK) >= DAY,
            "{d:?}: waited past the pushback"
        ),
    }
    // A deadline of `d` for the whole call.
    let start = Instant::now();
    let svc = RetryLayer::new()
        .max_attempts(3)
        .budget(RetryBudget::unlimited())
        .backoff(BackoffPolicy::constant(Duration::from_millis(5)))
        .deadline(d)
        .layer(fails_once());
    match within_a_day(svc.oneshot(5)).await {
        // The retry starts when its delay (after the failed attempt) ends
        // at least `min_time_left` before the deadline: after WORK + 5 ms.
        Some(Ok(5)) => assert!(
            d.saturating_add(TICK)
                >= WORK + Duration::from_millis(5) + bulwark_retry::DEFAULT_MIN_TIME_LEFT,
            "{d:?}: retried past the deadline"
        ),
        Some(Ok(n)) => panic!("{d:?}: answered {n}"),
        Some(Err(_)) => assert!(
            d <= WORK + Duration::from_millis(5) + bulwark_retry::DEFAULT_MIN_TIME_LEFT + TICK,
            "{d:?}"
        ),
        None => panic!("{d:?}: a deadline made the call hang"),
    }
    assert!(start.elapsed() <= DAY);
}

async fn retry_budget_window(d: Duration) {
    match RetryBudget::ratio(0.2, 10, d) {
        Ok(budget) => {
            let svc = RetryLayer::new()
                .max_attempts(2)
                .backoff(BackoffPolicy::constant(Duration::from_millis(1)))
                .budget(budget)
                .layer(fails_once());
            // A short window may hold no retry at all: then the first
            // failure is the answer.
            match svc.oneshot(5).await {
                Ok(n) => assert_eq!(n, 5, "{d:?}"),
                Err(e) => assert_eq!(e.to_string(), "first call fails", "{d:?}"),
            }
        }
        Err(e) => assert_eq!(e.field(), "window", "{d:?}"),
    }
}

async fn hedge_delay(d: Duration) {
    let layers = [
        HedgeLayer::fixed(d),
        HedgeLayer::percentile(90.0)
            .unwrap()
            .initial_delay(d)
            .min_samples(1),
    ];
    for layer in layers {
        let svc = layer
            .budget(RetryBudget::unlimited())
            .layer(tower::service_fn(work));
        for n in 0..3 {
            let answer = within_a_day(svc.clone().oneshot(n)).await;
            assert_eq!(answer.map(|r| r.unwrap()), Some(n), "{d:?}");
        }
    }
}

fn http_ok() -> impl Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = BoxError,
    Future: Send,
> + Clone {
    tower::service_fn(|_: http::Request<String>| async {
        tokio::time::sleep(WORK).await;
        Ok::<_, BoxError>(http::Response::new(String::from("ok")))
    })
}

fn get() -> http::Request<String> {
    http::Request::get("http://a.example/")
        .header("grpc-timeout", "99999999H")
        .body(String::new())
        .unwrap()
}

async fn client_stack(d: Duration) {
    let stacks = [
        (
            &["total_timeout"][..],
            ClientStack::new().total_timeout(d).no_attempt_timeout(),
        ),
        (
            &["attempt_timeout"],
            ClientStack::new()
                .attempt_timeout(d)
                .no_total_timeout()
                .propagate_deadline_always(),
        ),
        (
            &["total_timeout", "attempt_timeout"],
            ClientStack::new()
                .total_timeout(d)
                .attempt_timeout(d)
                .no_retry(),
        ),
        (
            &["max_pushback"],
            ClientStack::new().retry(|r| r.max_pushback(d)),
        ),
        (
            &["backoff"],
            ClientStack::new().retry(|r| r.backoff(BackoffPolicy::constant(d))),
        ),
        (
            &["open_duration", "slow_call_duration"],
            ClientStack::new().breaker(|b| {
                b.open_for(d)
                    .slow_calls(d.max(Duration::from_nanos(1)), 1.0)
            }),
        ),
    ];
    for (fields, stack) in stacks {
        let layer = match stack.build() {
            Ok(layer) => layer,
            Err(e) => {
                assert!(fields.contains(&e.field()), "{d:?}: {e}");
                // Refused: zero, or an attempt timeout (3 s by default) not
                // shorter than the total.
                assert!(d.is_zero() || d >= Duration::from_secs(3), "{d:?}: {e}");
                continue;
            }
        };
        let svc = layer.layer(http_ok());
        match within_a_day(svc.oneshot(get())).await {
            Some(Ok(res)) => assert_eq!(res.status(), 200),
            Some(Err(e)) => {
                let e = find::<Elapsed>(&*e).expect("only a timeout can fail this call");
                assert!(e.duration() <= WORK, "{d:?} ({fields:?}): {e}");
            }
            None => panic!("{d:?} ({fields:?}): a call never ended"),
        }
    }
}

async fn server_stack(d: Duration) {
    let stacks = [
        (
            "max_wait",
            ServerStack::new().bulkhead(|b| b.max_concurrent(1).max_wait(d)),
        ),
        ("timeout", ServerStack::new().timeout(d)),
    ];
    for (field, stack) in stacks {
        let layer = match stack.build() {
            Ok(layer) => layer,
            Err(e) => {
                assert_eq!(e.field(), field, "{d:?}: {e}");
                assert!(d.is_zero(), "{d:?}: {e}");
                continue;
            }
        };
        let svc = layer.layer(http_ok());
        let (a, b) = tokio::join!(svc.clone().oneshot(get()), svc.clone().oneshot(get()));
        for res in [a.unwrap(), b.unwrap()] {
            assert!(
                [200, 503, 504].contains(&res.status().as_u16()),
                "{d:?} ({field}): {}",
                res.status()
            );
        }
    }
}

async fn deadlines(d: Duration) {
    let deadline = Deadline::after(d);
    assert!(deadline.remaining() <= d);
    let header = format_grpc_timeout(d);
    let parsed = parse_grpc_timeout(header.as_bytes()).expect("a valid grpc-timeout");
    assert!(parsed <= d, "{d:?}: sent {parsed:?}");
    let policy = ServerDeadline::new(Some(d));
    assert_eq!(
        bulwark_timeout::TimeoutPolicy::timeout(&policy, &get()),
        Some(d.min(Duration::from_secs(99_999_999 * 3600)))
    );
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Some(d)))
        .layer(PropagateDeadlineLayer::new().max(d))
        .service(http_ok());
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
    // Pushback of any size, capped by any max.
    let mut headers = http::HeaderMap::new();
    headers.insert("retry-after", "99999999999999999999999".parse().unwrap());
    let _ = pushback_from_headers(&headers, d);
    headers.insert("retry-after", "18446744073709551615".parse().unwrap());
    match pushback_from_headers(&headers, d) {
        PushbackHint::After(after) => assert!(after <= d),
        other => assert!(d.is_zero() || other == PushbackHint::None, "{other:?}"),
    }
    let res: Result<http::Response<()>, BoxError> = Ok(http::Response::builder()
        .status(503)
        .header("retry-after", "18446744073709551615")
        .body(())
        .unwrap());
    let _ = ServerPushback::new().max(d).hint(&res);
}

/// Every check, for one duration, in a fresh paused runtime.
fn drive_all(d: Duration) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(async move {
            timeout_request(d).await;
            timeout_readiness(d).await;
            bulkhead_max_wait(d).await;
            breaker_open_for(d).await;
            breaker_hold_open_for(d).await;
            breaker_open_backoff(d).await;
            breaker_slow_calls(d).await;
            breaker_time_window(d).await;
            keyed_breaker_idle(d).await;
            retry_backoff(d).await;
            retry_pushback_and_deadline(d).await;
            retry_budget_window(d).await;
            hedge_delay(d).await;
            client_stack(d).await;
            server_stack(d).await;
            deadlines(d).await;
        });
}

#[test]
fn edge_durations() {
    let year = Duration::from_secs(365 * 86_400);
    for d in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
        WORK - Duration::from_nanos(1),
        WORK,
        WORK + Duration::from_nanos(1),
        Duration::from_secs(3),
        DAY,
        year,
        bulwark_core::clock::FAR_FUTURE,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(u64::MAX / 2),
        Duration::MAX - Duration::from_nanos(1),
        Duration::MAX,
    ] {
        drive_all(d);
    }
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0u64..50_000_000).prop_map(Duration::from_nanos),
        (0u64..100_000).prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_durations(d in any_duration()) {
        drive_all(d);
    }
}
