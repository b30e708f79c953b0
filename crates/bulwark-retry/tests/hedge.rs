//! Hedging, end to end, in paused time.

mod common;

use bulwark_core::clock::Instant;
use bulwark_retry::hedge::HedgeLayer;
use bulwark_retry::{GiveUpReason, RetryBudget, RetryEvent};
use common::{ms, recorder, Mock, MockError};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_overtaken_and_dropped() {
    // The original takes 1 s, the hedge 10 ms.
    let mock = Mock::new(|n, _| {
        if n == 0 {
            (ms(1000), Ok(1))
        } else {
            (ms(10), Ok(2))
        }
    });
    let (events, listener) = recorder();
    let svc = HedgeLayer::fixed(ms(100))
        .on_event(listener)
        .layer(mock.clone());
    let start = Instant::now();
    assert_eq!(svc.oneshot(7).await.unwrap(), 2);
    assert_eq!(start.elapsed(), ms(110));
    // The loser was dropped (cancelled) as soon as the hedge won.
    assert_eq!(mock.inner.cancelled.load(Ordering::SeqCst), 1);
    assert_eq!(mock.inner.finished.load(Ordering::SeqCst), 1);
    assert_eq!(
        *events.lock().unwrap(),
        [
            RetryEvent::HedgeSent {
                attempt: 2,
                after: ms(100)
            },
            RetryEvent::HedgeWon {
                attempt: 2,
                attempts: 2
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_sends_no_hedge() {
    let mock = Mock::new(|_, _| (ms(50), Ok(1)));
    let (events, listener) = recorder();
    let svc = HedgeLayer::fixed(ms(100))
        .on_event(listener)
        .layer(mock.clone());
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    assert_eq!(mock.calls(), 1);
    assert!(events.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn at_most_max_hedges_and_the_first_acceptable_wins() {
    // Attempts answer 1000, 900, 800, 100 ms after they are sent.
    let mock = Mock::new(|n, _| (ms([1000, 900, 800, 100][n.min(3)]), Ok(n as u16)));
    let (events, listener) = recorder();
    let svc = HedgeLayer::fixed(ms(100))
        .max_hedges(2)
        .budget(RetryBudget::unlimited())
        .on_event(listener)
        .layer(mock.clone());
    let start = Instant::now();
    // Hedges at 100 and 200 ms; no third. Attempt 3 answers at 1000 ms,
    // attempt 1 at 1000 ms too: the original is polled first and wins.
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(mock.calls(), 3);
    assert_eq!(answer, 0);
    assert_eq!(mock.inner.cancelled.load(Ordering::SeqCst), 2);
    let sent: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            RetryEvent::HedgeSent { attempt, after } => Some((*attempt, *after)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [(2, ms(100)), (3, ms(200))]);
}

#[tokio::test(start_paused = true)]
async fn a_failure_does_not_win_while_a_hedge_is_in_flight() {
    // The original fails at 150 ms; the hedge (sent at 100) answers at 300.
    let mock = Mock::new(|n, _| {
        if n == 0 {
            (ms(150), Err(MockError("reset")))
        } else {
            (ms(200), Ok(2))
        }
    });
    let svc = HedgeLayer::fixed(ms(100)).layer(mock.clone());
    let start = Instant::now();
    assert_eq!(svc.oneshot(1).await.unwrap(), 2);
    assert_eq!(start.elapsed(), ms(300));
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_on_the_budget() {
    let mock = Mock::new(|_, _| (ms(500), Ok(1)));
    let (events, listener) = recorder();
    // A floor of 1/s over 1 s: one hedge, then none.
    let budget = RetryBudget::ratio(0.0, 1, Duration::from_secs(1)).unwrap();
    let mut svc = HedgeLayer::fixed(ms(100))
        .budget(budget.clone())
        .on_event(listener)
        .layer(mock.clone());
    svc.ready().await.unwrap().call(1).await.unwrap();
    svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(mock.calls(), 3);
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&RetryEvent::HedgeSkipped {
            attempt: 2,
            reason: GiveUpReason::BudgetExhausted
        })
    );
}

#[tokio::test(start_paused = true)]
async fn the_service_is_polled_ready_before_every_hedge() {
    let mock =
        Mock::with_unready_polls(3, |n, _| (ms(if n == 0 { 1000 } else { 10 }), Ok(n as u16)));
    let svc = HedgeLayer::fixed(ms(100)).layer(mock.clone());
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    // 3 pending polls for the caller, 3 before the hedge.
    assert_eq!(mock.inner.polls_pending.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn percentile_delay_adapts_to_observed_latency() {
    let latency = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(200));
    let l = latency.clone();
    let mock = Mock::new(move |_, _| (ms(l.load(Ordering::SeqCst)), Ok(1)));
    let mut svc = HedgeLayer::percentile(90.0)
        .unwrap()
        .min_samples(10)
        .window(20)
        .initial_delay(ms(1000))
        .layer(mock.clone());
    assert_eq!(svc.current_delay(), ms(1000));
    for _ in 0..10 {
        svc.ready().await.unwrap().call(1).await.unwrap();
    }
    assert_eq!(svc.current_delay(), ms(200));
    // Latency drops: after a window of fast answers, so does the delay.
    latency.store(50, Ordering::SeqCst);
    for _ in 0..20 {
        svc.ready().await.unwrap().call(1).await.unwrap();
    }
    assert_eq!(svc.current_delay(), ms(50));
    // ...and a slow call is now hedged after 50 ms.
    latency.store(400, Ordering::SeqCst);
    let before = mock.calls();
    let start = Instant::now();
    svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(mock.calls(), before + 2);
    assert_eq!(
        start.elapsed(),
        ms(400),
        "both attempts take 400 ms; the original wins"
    );
}
