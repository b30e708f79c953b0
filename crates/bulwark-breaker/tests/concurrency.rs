//! Many tasks on a multi-thread runtime hammering one breaker through clones
//! of one service, with random drops: never more than the permitted probes in
//! flight, and no probe slot ever leaks.
//!
//! No timing is involved: the open duration is zero, so the breaker cycles
//! open → half-open → open as fast as probes fail, and every call that
//! reaches the inner service is a probe.

use bulwark_breaker::{Breaker, CircuitBreakerLayer, State};
use bulwark_core::BoxError;
use futures_util::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_never_exceed_the_limit_and_never_leak() {
    const PROBES: u32 = 3;
    let breaker = Breaker::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_for(Duration::ZERO)
        .permitted_probes(PROBES)
        .successes_to_close(u32::MAX)
        .build()
        .unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(AtomicUsize::new(0));
    let (f, m, r) = (in_flight.clone(), max_seen.clone(), reached.clone());
    let svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service_fn(move |yields: usize| {
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            r.fetch_add(1, Ordering::SeqCst);
            let guard = InFlight(f.clone());
            async move {
                let _guard = guard;
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
                if yields.is_multiple_of(2) {
                    Err::<(), BoxError>("still down".into())
                } else {
                    Ok(())
                }
            }
        });

    // Trip it once, single-threaded.
    svc.clone().oneshot(0).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);

    let tasks: Vec<_> = (0..16)
        .map(|seed| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed);
                for _ in 0..2_000 {
                    let mut svc = svc.clone();
                    let ready = svc.ready().await.expect("poll_ready never fails");
                    match rng.u8(0..4) {
                        // Drop the ready service without calling it.
                        0 => continue,
                        // Poll the call once, then drop it.
                        1 => {
                            let mut fut = Box::pin(ready.call(rng.usize(1..6)));
                            let _ = (&mut fut).now_or_never();
                        }
                        // Run the call to the end.
                        _ => {
                            let _ = ready.call(rng.usize(0..6)).await;
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    let max = max_seen.load(Ordering::SeqCst);
    assert!(
        max <= PROBES as usize,
        "saw {max} probes in flight, limit {PROBES}"
    );
    assert!(
        reached.load(Ordering::SeqCst) > 100,
        "the test must exercise probes"
    );
    assert_eq!(in_flight.load(Ordering::SeqCst), 0);
    assert_eq!(
        breaker.snapshot().probes_in_flight,
        0,
        "a probe slot leaked"
    );
    // Not stuck: a probe is admitted again.
    let permit = breaker.try_acquire().expect("admitted");
    assert!(permit.is_probe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_breaker_counts_every_call_from_every_thread() {
    let breaker = Breaker::builder()
        .count_window(1_000_000)
        .minimum_calls(1)
        .failure_rate(1.0)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>(()) });
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for _ in 0..5_000 {
                    svc.clone().oneshot(()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failures),
        (State::Closed, 40_000, 0)
    );
}
