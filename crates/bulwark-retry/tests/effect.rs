//! What retry does to callers and upstreams, in paused time: the budget is
//! paid when a retry is sent, a retry that cannot come before the deadline
//! ends the call at once, predicates that see the request, errors that tell
//! the truth, and the bound on amplification at low volume.

mod common;

use bulwark_core::backoff::BackoffPolicy;
use bulwark_core::clock::Instant;
use bulwark_core::error::{find, is_rejection, BulkheadFull, CircuitOpen};
use bulwark_core::{BoxError, Outcome};
use bulwark_retry::error::{LastUpstreamError, RetryRejected};
use bulwark_retry::policy::PushbackHint;
use bulwark_retry::{GiveUpReason, RetryBudget, RetryEvent, RetryLayer};
use common::{by_status, ms, recorder, Mock, MockError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

/// A service whose `n`-th call (0-based) answers `script(n)` at once.
fn scripted(
    script: impl Fn(usize) -> Result<u16, BoxError> + Send + Sync + 'static,
) -> (
    impl Service<u32, Response = u16, Error = BoxError, Future = impl Send> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let script = Arc::new(script);
    let svc = tower::service_fn(move |_: u32| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(script(n))
    });
    (svc, calls)
}

fn gave_up(events: &[RetryEvent]) -> Vec<(u32, GiveUpReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            RetryEvent::GaveUp {
                attempts, reason, ..
            } => Some((*attempts, *reason)),
            _ => None,
        })
        .collect()
}

fn throttle_for(after: Duration) -> impl Fn(&Result<u16, BoxError>) -> PushbackHint + Clone {
    move |r: &Result<u16, BoxError>| match r {
        Ok(429 | 503) => PushbackHint::After(after),
        _ => PushbackHint::None,
    }
}

// ---- the budget is paid when a retry is sent ------------------------------

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_abandoned_retry_costs_the_budget_nothing() {
    let budget = RetryBudget::ratio(0.0, 1, Duration::from_secs(10)).unwrap();
    let mock = Mock::failing();
    let svc = RetryLayer::new()
        .backoff(BackoffPolicy::constant(Duration::from_secs(1)))
        .budget(budget.clone())
        .layer(mock.clone());
    // The caller gives up during the backoff: the retry is never sent...
    let abandoned = tokio::time::timeout(ms(500), svc.clone().oneshot(1)).await;
    assert!(abandoned.is_err());
    assert_eq!(mock.calls(), 1);
    // ...and the budget still holds its one retry.
    assert_eq!(budget.available(), 1);
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(mock.calls(), 3, "the second call gets its retry");
    assert_eq!(budget.available(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_budget_emptied_during_the_backoff_ends_the_call_with_its_last_answer() {
    // One retry for two calls that both fail at t = 0: both are scheduled
    // (the budget has one), the first to be sent (at 100 ms) takes it, the
    // other gives up when its time comes (200 ms) with its own answer.
    let budget = RetryBudget::ratio(0.0, 1, Duration::from_secs(10)).unwrap();
    let (fast_events, fast_listener) = recorder();
    let (slow_events, slow_listener) = recorder();
    let mock = Mock::new(|n, _| (Duration::ZERO, Ok(if n == 1 { 503 } else { 500 })));
    let fast = RetryLayer::new()
        .classifier(by_status)
        .backoff(BackoffPolicy::constant(ms(100)))
        .budget(budget.clone())
        .on_event(fast_listener)
        .layer(mock.clone());
    let slow = RetryLayer::new()
        .classifier(by_status)
        .backoff(BackoffPolicy::constant(ms(200)))
        .budget(budget.clone())
        .on_event(slow_listener)
        .layer(mock.clone());
    let start = Instant::now();
    let (a, b) = tokio::join!(
        async {
            let r = fast.oneshot(1).await;
            (r.unwrap(), start.elapsed())
        },
        async {
            let r = slow.oneshot(2).await;
            (r.unwrap(), start.elapsed())
        }
    );
    // 3 attempts: the two originals and the fast call's retry. The slow
    // call's answer, a 503 response, stays a response.
    assert_eq!(mock.calls(), 3);
    assert_eq!(b, (503, ms(200)));
    assert_eq!(a.1, ms(100));
    let slow_events = slow_events.lock().unwrap();
    assert!(matches!(
        slow_events[0],
        RetryEvent::RetryScheduled { attempt: 2, .. }
    ));
    assert_eq!(
        slow_events[1],
        RetryEvent::GaveUp {
            attempts: 1,
            outcome: Outcome::Failure,
            reason: GiveUpReason::BudgetExhausted
        }
    );
    assert_eq!(
        gave_up(&fast_events.lock().unwrap()),
        [(2, GiveUpReason::BudgetExhausted)],
        "the fast call's second retry finds the budget empty at once"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_empty_budget_gives_up_without_waiting_for_the_backoff() {
    let budget = RetryBudget::ratio(0.0, 0, Duration::from_secs(10)).unwrap();
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .backoff(BackoffPolicy::constant(Duration::from_secs(5)))
        .budget(budget)
        .on_event(listener)
        .layer(Mock::failing());
    let start = Instant::now();
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        *events.lock().unwrap(),
        [RetryEvent::GaveUp {
            attempts: 1,
            outcome: Outcome::Failure,
            reason: GiveUpReason::BudgetExhausted
        }]
    );
}

// ---- deadline-aware ---------------------------------------------------------

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pushback_past_the_deadline_returns_the_throttled_answer_at_once() {
    let mock = Mock::status(429);
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .classifier(by_status)
        .pushback(throttle_for(Duration::from_secs(2)))
        .deadline(Duration::from_secs(2))
        .on_event(listener)
        .layer(mock.clone());
    let start = Instant::now();
    assert_eq!(svc.oneshot(1).await.unwrap(), 429);
    assert_eq!(start.elapsed(), Duration::ZERO, "not a millisecond waited");
    assert_eq!(mock.calls(), 1);
    assert_eq!(
        *events.lock().unwrap(),
        [RetryEvent::GaveUp {
            attempts: 1,
            outcome: Outcome::Throttled,
            reason: GiveUpReason::Deadline
        }]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pushback_within_the_deadline_is_honoured_exactly() {
    let mock = Mock::new(|n, _| (Duration::ZERO, Ok(if n == 0 { 429 } else { 200 })));
    let svc = RetryLayer::new()
        .classifier(by_status)
        .pushback(throttle_for(ms(1500)))
        .deadline(Duration::from_secs(2))
        .layer(mock.clone());
    assert_eq!(svc.oneshot(1).await.unwrap(), 200);
    let times = mock.call_times();
    assert_eq!(times[1] - times[0], ms(1500));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn huge_delays_and_deadlines_saturate() {
    // Retry-After of ten years, uncapped, against a 10 s deadline: at once.
    let ten_years = Duration::from_secs(10 * 365 * 86_400);
    for after in [ten_years, Duration::MAX] {
        let svc = RetryLayer::new()
            .classifier(by_status)
            .pushback(throttle_for(after))
            .max_pushback(Duration::MAX)
            .deadline(Duration::from_secs(10))
            .layer(Mock::status(503));
        let start = Instant::now();
        assert_eq!(svc.oneshot(1).await.unwrap(), 503);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
    // A deadline of Duration::MAX is no limit: the retries run.
    let mock = Mock::failing();
    let svc = RetryLayer::new()
        .backoff(BackoffPolicy::constant(ms(10)))
        .deadline(Duration::MAX)
        .min_time_left(Duration::MAX)
        .deadline_from(|_: &u32| None)
        .layer(mock.clone());
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(mock.calls(), 3);
    // min_time_left of Duration::MAX with a real deadline: no retry, no panic.
    let mock = Mock::failing();
    let svc = RetryLayer::new()
        .deadline(Duration::from_secs(1))
        .min_time_left(Duration::MAX)
        .layer(mock.clone());
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(mock.calls(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_deadline_a_request_carries_is_known_without_repeating_it() {
    // The request is the number of milliseconds its caller waits.
    let (events, listener) = recorder();
    let mock = Mock::failing();
    let svc = RetryLayer::new()
        .max_attempts(10)
        .backoff(BackoffPolicy::constant(ms(100)))
        .deadline(Duration::from_secs(60))
        .deadline_from(|budget_ms: &u32| Some(Instant::now() + ms(u64::from(*budget_ms))))
        .on_event(listener)
        .layer(mock.clone());
    let start = Instant::now();
    assert!(svc.oneshot(250).await.is_err());
    // Attempts at 0, 100, 200; one at 300 would be past 250: give up at 200.
    assert_eq!(start.elapsed(), ms(200));
    assert_eq!(mock.calls(), 3);
    assert_eq!(
        gave_up(&events.lock().unwrap()),
        [(3, GiveUpReason::Deadline)]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn readiness_is_not_awaited_past_the_deadline() {
    /// Ready for its first call only, then never again.
    #[derive(Clone)]
    struct StuckAfterOne(Arc<AtomicUsize>);
    impl Service<u32> for StuckAfterOne {
        type Response = u16;
        type Error = MockError;
        type Future = std::future::Ready<Result<u16, MockError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), MockError>> {
            if self.0.load(Ordering::SeqCst) == 0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
        fn call(&mut self, _: u32) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err(MockError("first attempt failed")))
        }
    }
    let (events, listener) = recorder();
    let budget = RetryBudget::ratio(0.0, 1, Duration::from_secs(10)).unwrap();
    let svc = RetryLayer::new()
        .backoff(BackoffPolicy::constant(ms(100)))
        .deadline(Duration::from_secs(1))
        .budget(budget.clone())
        .on_event(listener)
        .layer(StuckAfterOne(Arc::new(AtomicUsize::new(0))));
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    // The last moment an attempt could start: 1 s − 5 ms.
    assert_eq!(start.elapsed(), ms(995));
    assert_eq!(err.to_string(), "first attempt failed");
    assert_eq!(
        gave_up(&events.lock().unwrap()),
        [(1, GiveUpReason::Deadline)]
    );
    assert_eq!(budget.available(), 1, "never sent, never paid");
}

// ---- retry_if ----------------------------------------------------------------

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_request_if_decides_before_any_copy_is_made() {
    let copies = Arc::new(AtomicUsize::new(0));
    let counter = copies.clone();
    let (events, listener) = recorder();
    let mock = Mock::failing();
    let svc = RetryLayer::new()
        .backoff(BackoffPolicy::constant(ms(1)))
        .retry_request_if(|req: &u32| req.is_multiple_of(2))
        .replay(move |r: &u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            Some(*r)
        })
        .on_event(listener)
        .layer(mock.clone());
    assert!(svc.clone().oneshot(1).await.is_err());
    assert_eq!(mock.calls(), 1);
    assert_eq!(copies.load(Ordering::SeqCst), 0, "never copied");
    assert_eq!(
        *events.lock().unwrap(),
        [RetryEvent::NotRetried {
            attempts: 1,
            outcome: Outcome::Failure
        }]
    );
    assert!(svc.oneshot(2).await.is_err());
    assert_eq!(mock.calls(), 4);
    assert_eq!(copies.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_if_sees_the_request_and_the_result() {
    let (events, listener) = recorder();
    // 503 then 500: retry 503s for any request, 500s only for request 7.
    let mock = Mock::new(|n, _| (Duration::ZERO, Ok(if n % 2 == 0 { 503 } else { 500 })));
    let svc = RetryLayer::new()
        .classifier(by_status)
        .backoff(BackoffPolicy::constant(ms(1)))
        .retry_if(|req: &u32, result: &Result<u16, BoxError>| {
            matches!(result, Ok(503)) || *req == 7
        })
        .on_event(listener)
        .layer(mock.clone());
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 500);
    assert_eq!(mock.calls(), 2);
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&RetryEvent::NotRetried {
            attempts: 2,
            outcome: Outcome::Failure
        })
    );
    // Request 7: 503, 500, 503 (attempts exhausted).
    assert_eq!(svc.oneshot(7).await.unwrap(), 503);
    assert_eq!(mock.calls(), 5);
}

// ---- errors that tell the truth ------------------------------------------

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rejection_after_upstream_errors_carries_the_last_of_them() {
    let (svc, calls) = scripted(|n| match n {
        0 => Err("connection reset".into()),
        1 => Err("connection refused".into()),
        _ => Err(Box::new(CircuitOpen::new(Some(Duration::from_secs(5))))),
    });
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .max_attempts(5)
        .backoff(BackoffPolicy::constant(ms(10)))
        .on_event(listener)
        .layer(svc);
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        err.to_string(),
        "retry rejected after 3 attempts: circuit breaker is open; next probe in 5s \
         (last upstream error: connection refused)"
    );
    let source = err.source().expect("a source");
    assert_eq!(source.to_string(), "connection refused");
    assert!(source.is::<LastUpstreamError>());
    // Still a rejection for every classifier and error mapping.
    assert!(is_rejection(&*err));
    assert_eq!(Outcome::of_error(&err), Outcome::Rejected);
    let open = find::<CircuitOpen>(&*err).expect("the rejection is in the chain");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
    let rejected = err.downcast_ref::<RetryRejected>().unwrap();
    assert_eq!(rejected.attempts(), 3);
    assert_eq!(rejected.last_error().to_string(), "connection refused");
    assert!(rejected.rejection().is::<CircuitOpen>());
    // The retry was refused below: the call gave up, and says why.
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&RetryEvent::GaveUp {
            attempts: 3,
            outcome: Outcome::Rejected,
            reason: GiveUpReason::Rejected,
        })
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rejection_after_an_upstream_response_returns_that_response() {
    let (svc, calls) = scripted(|n| match n {
        0 => Ok(503),
        _ => Err(Box::new(BulkheadFull::at_capacity())),
    });
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .classifier(by_status)
        .backoff(BackoffPolicy::constant(ms(10)))
        .on_event(listener)
        .layer(svc);
    assert_eq!(svc.oneshot(1).await.unwrap(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(matches!(
        events.lock().unwrap().last(),
        Some(RetryEvent::GaveUp {
            reason: GiveUpReason::Rejected,
            ..
        })
    ));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_first_attempt_rejected_below_is_not_a_give_up() {
    let (svc, _) = scripted(|_| Err(Box::new(CircuitOpen::new(None))));
    let (events, listener) = recorder();
    let svc = RetryLayer::new().on_event(listener).layer(svc);
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(
        *events.lock().unwrap(),
        [RetryEvent::NotRetried {
            attempts: 1,
            outcome: Outcome::Rejected
        }]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retried_rejections_keep_the_last_upstream_answer() {
    // Rejections retried on purpose: error, rejection, rejection (exhausted).
    let (svc, _) = scripted(|n| match n {
        0 => Err("timed out".into()),
        _ => Err(Box::new(CircuitOpen::new(None))),
    });
    let svc = RetryLayer::new()
        .retry_on([Outcome::Failure, Outcome::Rejected])
        .backoff(BackoffPolicy::constant(ms(10)))
        .layer(svc);
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "retry rejected after 3 attempts: circuit breaker is open (last upstream error: timed out)"
    );
    // A budget emptied while a retried rejection waits: the call still ends
    // with both. Two retries in the budget: the first is sent at 10 ms, the
    // second is scheduled for 20 ms, and someone else takes it at 15 ms.
    let (svc, _) = scripted(|n| match n {
        0 => Err("timed out".into()),
        _ => Err(Box::new(CircuitOpen::new(None))),
    });
    let budget = RetryBudget::ratio(0.0, 2, Duration::from_secs(10)).unwrap();
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .retry_on([Outcome::Failure, Outcome::Rejected])
        .backoff(BackoffPolicy::constant(ms(10)))
        .budget(budget.clone())
        .on_event(listener)
        .layer(svc);
    let call = tokio::spawn(svc.oneshot(1));
    tokio::time::sleep(ms(15)).await;
    assert!(budget.withdraw());
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "retry rejected after 2 attempts: circuit breaker is open (last upstream error: timed out)"
    );
    assert!(find::<CircuitOpen>(&*err).is_some());
    assert_eq!(
        gave_up(&events.lock().unwrap()),
        [(2, GiveUpReason::BudgetExhausted)]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_first_attempt_rejected_stays_the_rejection() {
    let (svc, _) = scripted(|_| Err(Box::new(CircuitOpen::new(None))));
    let err = RetryLayer::new().layer(svc).oneshot(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

// ---- the budget's bound on amplification ---------------------------------

/// Open loop at `rate` calls per second for `secs` against `upstream`, with
/// the default layer (3 attempts, default budget and backoff, seeded).
/// Returns (calls, attempts).
async fn run_open_loop(rate: u32, secs: u32, mock: Mock) -> (u64, u64) {
    let svc = RetryLayer::new().seed(7).layer(mock.clone());
    let every = Duration::from_secs(1) / rate;
    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let n = rate * secs;
    for i in 0..n {
        tokio::time::sleep_until(start + every * i).await;
        let mut svc = svc.clone();
        calls.spawn(async move {
            let _ = svc.ready().await.unwrap().call(i).await;
        });
    }
    while calls.join_next().await.is_some() {}
    (u64::from(n), mock.calls() as u64)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_quiet_client_does_not_storm_a_dead_upstream() {
    // The bound of the budget module: 1 + ratio × 10/11 + min_per_sec / (r × T)
    // with the default budget (ratio 0.2, floor 10/s), T = 60 s.
    let mut measured = Vec::new();
    for rate in [1u32, 5, 10] {
        let (calls, attempts) = run_open_loop(rate, 60, Mock::failing()).await;
        let amplification = attempts as f64 / calls as f64;
        let bound = 1.0 + 0.2 * 10.0 / 11.0 + 10.0 / (f64::from(rate) * 60.0);
        assert!(
            amplification <= bound,
            "{rate}/s: {attempts} attempts for {calls} calls = {amplification:.3} > {bound:.3}"
        );
        measured.push((rate, amplification));
        println!("{rate} req/s: {attempts} attempts / {calls} calls = {amplification:.3} (bound {bound:.3})");
    }
    // Well below the 2.2 (and, with time, 3.0) a floor of 10/s over 10 s
    // available at all times would allow.
    assert!(measured.iter().all(|(_, a)| *a < 1.4));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_healthy_quiet_client_still_gets_its_retry() {
    for every in [Duration::from_secs(60), Duration::from_secs(1), ms(200)] {
        // Healthy for 10 calls, then one failure, then healthy again.
        let mock = Mock::new(|n, _| {
            (
                Duration::ZERO,
                if n == 10 {
                    Err(MockError("one-off"))
                } else {
                    Ok(200)
                },
            )
        });
        let mut svc = RetryLayer::new().seed(1).layer(mock.clone());
        for _ in 0..12 {
            tokio::time::sleep(every).await;
            assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 200);
        }
        assert_eq!(
            mock.calls(),
            13,
            "the one-off failure was retried ({every:?})"
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_floor_comes_back_when_the_upstream_does() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = healthy.clone();
    // One call a minute: the ratio never pays for a retry, only the floor.
    let mock = Mock::new(move |n, _| {
        let ok = up.load(Ordering::SeqCst) && n % 2 == 0;
        (
            Duration::ZERO,
            if ok { Ok(200) } else { Err(MockError("down")) },
        )
    });
    let mut svc = RetryLayer::new().seed(3).layer(mock.clone());
    // An outage of 30 minutes: at most the floor's 10 retries in all.
    for _ in 0..30 {
        let _ = svc.ready().await.unwrap().call(0).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    assert!(mock.calls() <= 30 + 10, "{}", mock.calls());
    // Back up, but every odd attempt fails once: each call is saved by its
    // retry, paid by the refilled floor.
    healthy.store(true, Ordering::SeqCst);
    let before = mock.calls();
    // Line up on an even attempt so the first call succeeds.
    if before % 2 == 1 {
        let _ = svc.ready().await.unwrap().call(0).await;
    }
    let mut ok = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if svc.ready().await.unwrap().call(0).await.is_ok() {
            ok += 1;
        }
    }
    assert!(ok >= 9, "{ok} of 10 calls answered");
}
