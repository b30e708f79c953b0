//! The retry layer, end to end, in paused time.

mod common;

use bulwark_core::backoff::{BackoffPolicy, Jitter, Random};
use bulwark_core::clock::Instant;
use bulwark_core::error::CircuitOpen;
use bulwark_core::{BoxError, Outcome};
use bulwark_retry::policy::PushbackHint;
use bulwark_retry::replay::NoReplay;
use bulwark_retry::{GiveUpReason, RetryBudget, RetryEvent, RetryLayer};
use common::{by_status, ms, recorder, Mock, MockError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

fn scheduled_delays(events: &[RetryEvent]) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            RetryEvent::RetryScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect()
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn exact_delays_for_every_backoff_kind_and_jitter() {
    let kinds = [
        BackoffPolicy::constant(ms(50)),
        BackoffPolicy::linear(ms(100), ms(50)),
        BackoffPolicy::exponential(ms(100), 2.0),
    ];
    let jitters = [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ];
    for kind in kinds {
        for jitter in jitters {
            let backoff = kind.with_jitter(jitter).with_max(ms(300));
            let mock = Mock::failing();
            let (events, listener) = recorder();
            let svc = RetryLayer::new()
                .max_attempts(5)
                .backoff(backoff)
                .budget(RetryBudget::unlimited())
                .seed(7)
                .on_event(listener)
                .layer(mock.clone());
            let result = svc.oneshot(1).await;
            assert!(result.is_err());
            // The first call's jitter is the first fork of the seeded source.
            let expected: Vec<Duration> =
                backoff.delays(Random::seeded(7).fork()).take(4).collect();
            let events = events.lock().unwrap();
            assert_eq!(scheduled_delays(&events), expected, "{backoff:?}");
            // The attempts really were that far apart in (virtual) time, to
            // the millisecond of tokio's timer.
            let rounded: Vec<Duration> = expected
                .iter()
                .map(|d| ms(d.as_nanos().div_ceil(1_000_000) as u64))
                .collect();
            assert_eq!(gaps(&mock.call_times()), rounded, "{backoff:?}");
            if jitter == Jitter::None {
                let literal: Vec<Duration> = match kind.initial().as_millis() {
                    50 => vec![ms(50); 4],
                    _ if kind == BackoffPolicy::linear(ms(100), ms(50)) => {
                        vec![ms(100), ms(150), ms(200), ms(250)]
                    }
                    _ => vec![ms(100), ms(200), ms(300), ms(300)],
                };
                assert_eq!(expected, literal);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_call_gets_its_own_jitter() {
    let backoff = BackoffPolicy::exponential(ms(100), 2.0).with_jitter(Jitter::Full);
    let (events, listener) = recorder();
    let mut svc = RetryLayer::new()
        .max_attempts(4)
        .backoff(backoff)
        .budget(RetryBudget::unlimited())
        .seed(42)
        .on_event(listener)
        .layer(Mock::failing());
    for _ in 0..2 {
        let _ = svc.ready().await.unwrap().call(0).await;
    }
    let delays = scheduled_delays(&events.lock().unwrap());
    let mut root = Random::seeded(42);
    let first: Vec<_> = backoff.delays(root.fork()).take(3).collect();
    let second: Vec<_> = backoff.delays(root.fork()).take(3).collect();
    assert_ne!(first, second);
    assert_eq!(delays, [first, second].concat());
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_return_the_last_outcome_as_it_was() {
    let mock = Mock::status(503);
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .classifier(by_status)
        .backoff(BackoffPolicy::constant(ms(10)))
        .on_event(listener)
        .layer(mock.clone());
    // A 503 stays a response.
    assert_eq!(svc.oneshot(1).await.unwrap(), 503);
    assert_eq!(mock.calls(), 3);
    let events = events.lock().unwrap();
    assert_eq!(
        events.last(),
        Some(&RetryEvent::GaveUp {
            attempts: 3,
            outcome: Outcome::Failure,
            reason: GiveUpReason::AttemptsExhausted
        })
    );
    assert_eq!(scheduled_delays(&events), [ms(10), ms(10)]);
}

#[tokio::test(start_paused = true)]
async fn success_after_retries_is_reported() {
    let mock = Mock::new(|n, _| (Duration::ZERO, if n < 2 { Ok(500) } else { Ok(200) }));
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .classifier(by_status)
        .backoff(BackoffPolicy::constant(ms(1)))
        .on_event(listener)
        .layer(mock.clone());
    assert_eq!(svc.oneshot(1).await.unwrap(), 200);
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&RetryEvent::Succeeded { attempts: 3 })
    );
}

#[tokio::test(start_paused = true)]
async fn rejections_and_ignored_outcomes_are_not_retried() {
    let mock = Mock::new(|_, _| (Duration::ZERO, Ok(0)));
    let rejecting = tower::service_fn(|_: u32| async {
        Err::<u16, BoxError>(Box::new(CircuitOpen::new(None)))
    });
    let (events, listener) = recorder();
    let svc = RetryLayer::new().on_event(listener).layer(rejecting);
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(
        *events.lock().unwrap(),
        [RetryEvent::NotRetried {
            attempts: 1,
            outcome: Outcome::Rejected
        }]
    );
    // 404-like: ignored by the classifier, not retried.
    let svc = RetryLayer::new()
        .classifier(|_: &Result<u16, BoxError>| Outcome::Ignored)
        .layer(mock.clone());
    assert_eq!(svc.oneshot(1).await.unwrap(), 0);
    assert_eq!(mock.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn inner_service_is_polled_ready_before_every_attempt() {
    // Every readiness check is pending twice first; calling unready panics.
    let mock = Mock::with_unready_polls(2, |n, _| {
        (
            Duration::ZERO,
            if n < 3 { Err(MockError("x")) } else { Ok(200) },
        )
    });
    let mut svc = RetryLayer::new()
        .max_attempts(4)
        .backoff(BackoffPolicy::constant(ms(5)))
        .layer(mock.clone());
    let answer = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(answer, 200);
    assert_eq!(mock.calls(), 4);
    // Two pending polls for the caller's readiness, two before each retry.
    assert_eq!(mock.inner.polls_pending.load(Ordering::SeqCst), 8);
    // The service left behind is a fresh clone: it must be made ready again.
    let answer = svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(answer, 200);
}

#[derive(Debug, PartialEq)]
struct NotClone(u32);

#[tokio::test(start_paused = true)]
async fn requests_without_a_copy_are_not_retried_and_say_so() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let upstream = tower::service_fn(move |_: NotClone| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Err::<u16, _>(MockError("down")) }
    });
    let (events, listener) = recorder();
    // A hook that cannot replay odd requests.
    let svc = RetryLayer::new()
        .replay(|r: &NotClone| r.0.is_multiple_of(2).then_some(NotClone(r.0)))
        .backoff(BackoffPolicy::constant(ms(1)))
        .on_event(listener)
        .layer(upstream);
    assert!(svc.clone().oneshot(NotClone(1)).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&RetryEvent::GaveUp {
            attempts: 1,
            outcome: Outcome::Failure,
            reason: GiveUpReason::NotReplayable
        })
    );
    // Even requests can be replayed: 3 attempts.
    assert!(svc.oneshot(NotClone(2)).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // NoReplay: never a copy.
    let mock = Mock::failing();
    let svc = RetryLayer::new().replay(NoReplay).layer(mock.clone());
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(mock.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn requests_are_copied_only_when_another_attempt_is_possible() {
    let copies = Arc::new(AtomicUsize::new(0));
    let counter = copies.clone();
    let hook = move |r: &u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        Some(*r)
    };
    let svc = RetryLayer::new().max_attempts(1).replay(hook.clone());
    assert!(svc.layer(Mock::failing()).oneshot(1).await.is_err());
    assert_eq!(copies.load(Ordering::SeqCst), 0);
    // Three attempts need two copies: none for the last attempt.
    let svc = RetryLayer::new()
        .backoff(BackoffPolicy::constant(ms(1)))
        .replay(hook)
        .layer(Mock::failing());
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(copies.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn pushback_sets_the_delay_and_is_capped() {
    // 429 asks for 2 s, 503 for an hour.
    let mock = Mock::new(|n, _| (Duration::ZERO, Ok([429, 503, 200][n.min(2)])));
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .classifier(by_status)
        .pushback(|r: &Result<u16, BoxError>| match r {
            Ok(429) => PushbackHint::After(Duration::from_secs(2)),
            Ok(503) => PushbackHint::After(Duration::from_secs(3600)),
            _ => PushbackHint::None,
        })
        .max_pushback(Duration::from_secs(5))
        .on_event(listener)
        .layer(mock.clone());
    assert_eq!(svc.oneshot(1).await.unwrap(), 200);
    assert_eq!(gaps(&mock.call_times()), [ms(2000), ms(5000)]);
    let events = events.lock().unwrap();
    assert_eq!(
        events[0],
        RetryEvent::RetryScheduled {
            attempt: 2,
            delay: ms(2000),
            outcome: Outcome::Throttled,
            pushback: true
        }
    );
    assert_eq!(scheduled_delays(&events), [ms(2000), ms(5000)]);
}

#[tokio::test(start_paused = true)]
async fn pushback_stop_ends_retries_at_once() {
    let mock = Mock::status(503);
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .classifier(by_status)
        .pushback(|_: &Result<u16, BoxError>| PushbackHint::Stop)
        .on_event(listener)
        .layer(mock.clone());
    let start = Instant::now();
    assert_eq!(svc.oneshot(1).await.unwrap(), 503);
    assert_eq!(mock.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        *events.lock().unwrap(),
        [RetryEvent::GaveUp {
            attempts: 1,
            outcome: Outcome::Failure,
            reason: GiveUpReason::Pushback
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn no_retry_is_started_that_would_end_after_the_deadline() {
    // Each attempt takes 100 ms; backoff 300 ms; deadline 1 s.
    // Attempt 1: 0-100, wait to 400; attempt 2: 400-500, wait to 800;
    // attempt 3: 800-900; a wait to 1200 would pass the deadline.
    let mock = Mock::new(|_, _| (ms(100), Err(MockError("slow failure"))));
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .max_attempts(10)
        .backoff(BackoffPolicy::constant(ms(300)))
        .deadline(Duration::from_secs(1))
        .on_event(listener)
        .layer(mock.clone());
    let start = Instant::now();
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(start.elapsed(), ms(900));
    assert_eq!(mock.calls(), 3);
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&RetryEvent::GaveUp {
            attempts: 3,
            outcome: Outcome::Failure,
            reason: GiveUpReason::Deadline
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_must_leave_min_time_left_before_the_deadline() {
    let calls = |backoff: u64, min_left: Option<Duration>| async move {
        let mock = Mock::new(|_, _| (ms(100), Err(MockError("slow failure"))));
        let mut layer = RetryLayer::new()
            .max_attempts(10)
            .backoff(BackoffPolicy::constant(ms(backoff)))
            .deadline(ms(1000));
        if let Some(min) = min_left {
            layer = layer.min_time_left(min);
        }
        assert!(layer.layer(mock.clone()).oneshot(1).await.is_err());
        mock.calls()
    };
    // 0-100, wait to 497, 497-597, wait to 994: 6 ms are left (≥ 5 ms), so
    // the third attempt starts.
    assert_eq!(calls(397, None).await, 3);
    // Wait to 996: 4 ms left, below the 5 ms floor: no third attempt.
    assert_eq!(calls(398, None).await, 2);
    // Without a floor, a retry ending exactly at the deadline is started.
    assert_eq!(calls(400, Some(Duration::ZERO)).await, 3);
    assert_eq!(calls(401, Some(Duration::ZERO)).await, 2);
}

/// 1,000 requests, one every 100 ms, against an upstream that always fails;
/// each may retry 9 times at once. The budget (20% over 10 s, floor 1/s)
/// bounds the attempts.
#[tokio::test(start_paused = true)]
async fn budget_bounds_attempts_exactly() {
    const REQUESTS: u64 = 1_000;
    const EVERY: Duration = Duration::from_millis(100);
    const WINDOW_SECS: u64 = 10;
    const FLOOR: u64 = 1;
    let mock = Mock::failing();
    let budget = RetryBudget::ratio(0.2, FLOOR as u32, Duration::from_secs(WINDOW_SECS)).unwrap();
    let (events, listener) = recorder();
    let mut svc = RetryLayer::new()
        .max_attempts(10)
        .backoff(BackoffPolicy::constant(Duration::ZERO))
        .budget(budget)
        .on_event(listener)
        .layer(mock.clone());
    let start = Instant::now();
    for i in 0..REQUESTS {
        tokio::time::sleep_until(start + EVERY * i as u32).await;
        assert!(svc.ready().await.unwrap().call(1).await.is_err());
    }
    let attempts = mock.calls() as u64;
    // requests × (1 + 20%) + the floor, once: nothing succeeds, so the
    // floor is never refilled. Exact integer arithmetic.
    let bound = REQUESTS + REQUESTS * 2 / 10 + FLOOR;
    assert!(attempts <= bound, "{attempts} attempts > bound {bound}");
    // The budget is not stingy either: a request counts for 10 s and a
    // retry for 11 s, so the ratio pays for up to 20 retries per 11 s (181
    // in 100 s); at least 90% of that.
    assert!(attempts >= REQUESTS + 163, "{attempts}");
    let retries = attempts - REQUESTS;
    let scheduled = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, RetryEvent::RetryScheduled { .. }))
        .count() as u64;
    let budget_refusals = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                RetryEvent::GaveUp {
                    reason: GiveUpReason::BudgetExhausted,
                    ..
                }
            )
        })
        .count() as u64;
    assert_eq!(scheduled, retries);
    // Exactly: the floor's 1, and the ratio's 173 (a little under 20 per
    // 11 s, because requests between two clock readings are counted from
    // the earlier one, which only makes the budget stricter).
    assert_eq!(retries, 174);
    let exhausted = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                RetryEvent::GaveUp {
                    reason: GiveUpReason::AttemptsExhausted,
                    ..
                }
            )
        })
        .count() as u64;
    // Every call gave up and said why.
    assert_eq!(budget_refusals + exhausted, REQUESTS);
    assert!(budget_refusals > 900);
}

#[tokio::test(start_paused = true)]
async fn clones_and_layers_share_one_budget() {
    let budget = RetryBudget::ratio(0.0, 3, Duration::from_secs(3)).unwrap(); // 3 retries
    let layer = RetryLayer::new()
        .max_attempts(10)
        .backoff(BackoffPolicy::constant(Duration::ZERO))
        .budget(budget.clone());
    let mock = Mock::failing();
    let a = layer.layer(mock.clone());
    let b = a.clone();
    let other = RetryLayer::new().budget(budget.clone()).layer(mock.clone());
    assert!(a.budget().same_as(b.budget()) && a.budget().same_as(other.budget()));
    assert!(a.oneshot(1).await.is_err());
    assert_eq!(mock.calls(), 4); // 1 + the 3 retries of the budget
    assert!(b.oneshot(1).await.is_err());
    assert!(other.oneshot(1).await.is_err());
    assert_eq!(
        mock.calls(),
        6,
        "no budget left for the clone or the other layer"
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_token_bucket_throttles_retries() {
    // 4 tokens: retries allowed while more than 2 remain.
    let mock = Mock::failing();
    let (events, listener) = recorder();
    let svc = RetryLayer::new()
        .max_attempts(5)
        .backoff(BackoffPolicy::constant(ms(1)))
        .budget(RetryBudget::token_bucket(4, 0.5).unwrap())
        .on_event(listener)
        .layer(mock.clone());
    // 4 → 3 (retry), → 2 (no retry: not more than half).
    assert!(svc.clone().oneshot(1).await.is_err());
    assert_eq!(mock.calls(), 2);
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(mock.calls(), 3);
    assert!(matches!(
        events.lock().unwrap().last(),
        Some(RetryEvent::GaveUp {
            reason: GiveUpReason::BudgetExhausted,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_dead_service_error_from_poll_ready_is_returned() {
    #[derive(Clone)]
    struct DiesAfterFirstCall(bool);
    impl Service<u32> for DiesAfterFirstCall {
        type Response = u16;
        type Error = MockError;
        type Future = std::future::Ready<Result<u16, MockError>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), MockError>> {
            std::task::Poll::Ready(if self.0 {
                Err(MockError("dead"))
            } else {
                Ok(())
            })
        }
        fn call(&mut self, _: u32) -> Self::Future {
            self.0 = true;
            std::future::ready(Err(MockError("failed")))
        }
    }
    let svc = RetryLayer::new()
        .backoff(BackoffPolicy::constant(ms(1)))
        .layer(DiesAfterFirstCall(false));
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "dead");
}

mod jitter_bounds {
    use super::*;
    use proptest::prelude::*;

    fn delays_through_the_layer(backoff: BackoffPolicy, seed: u64, attempts: u32) -> Vec<Duration> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (events, listener) = recorder();
            let svc = RetryLayer::new()
                .max_attempts(attempts)
                .backoff(backoff)
                .budget(RetryBudget::unlimited())
                .seed(seed)
                .on_event(listener)
                .layer(Mock::failing());
            let _ = svc.oneshot(0).await;
            let delays = scheduled_delays(&events.lock().unwrap());
            delays
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_jitter_kind_stays_in_its_bounds(
            seed: u64,
            initial in 1u64..2_000,
            factor in 1.0f64..3.0,
            max in 1u64..20_000,
            attempts in 2u32..8,
        ) {
            let initial = ms(initial);
            let max = ms(max).max(initial);
            let base = BackoffPolicy::exponential(initial, factor).with_max(max);
            for jitter in [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
                let b = base.with_jitter(jitter);
                let delays = delays_through_the_layer(b, seed, attempts);
                prop_assert_eq!(delays.len() as u32, attempts - 1);
                let mut previous = initial;
                for (i, d) in delays.into_iter().enumerate() {
                    let cap = b.base_delay(i as u32 + 1);
                    prop_assert!(d <= max);
                    match jitter {
                        Jitter::None => prop_assert_eq!(d, cap),
                        Jitter::Full => prop_assert!(d <= cap),
                        Jitter::Equal => prop_assert!(d >= cap / 2 && d <= cap),
                        Jitter::Decorrelated => {
                            prop_assert!(d >= initial);
                            prop_assert!(d <= previous.saturating_mul(3).min(max).max(initial));
                        }
                    }
                    previous = d;
                }
            }
        }
    }
}
