//! Keyed bulkhead under partition churn: the per-key limit holds at every
//! instant, whatever the interleaving of calls, completions and evictions.

use bulwark_bulkhead::BulkheadLayer;
use bulwark_core::BoxError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

const KEYS: usize = 5;

/// Counts the calls in flight per key (inside the bulkhead) and remembers
/// the highest count seen for any key.
#[derive(Clone)]
struct PerKeyProbe {
    now: Arc<[AtomicUsize; KEYS]>,
    max: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Service<(usize, u32)> for PerKeyProbe {
    type Response = ();
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (key, spins): (usize, u32)) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let n = this.now[key].fetch_add(1, Ordering::SeqCst) + 1;
            this.max.fetch_max(n, Ordering::SeqCst);
            this.calls.fetch_add(1, Ordering::Relaxed);
            // Stay in flight a little (no sleeping: let the other threads run).
            for _ in 0..spins {
                std::thread::yield_now();
            }
            this.now[key].fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

struct NoopWake;
impl std::task::Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// Polls a future to completion on this thread (the probe never pends).
fn run<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::from(Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// Per-key limit 1, at most 2 partitions, 4 threads calling over 5 keys: new
/// keys keep evicting idle partitions while other threads call the keys
/// being evicted. No key may ever have two calls in flight.
#[test]
fn per_key_limit_holds_under_partition_churn() {
    let probe = PerKeyProbe {
        now: Arc::new(std::array::from_fn(|_| AtomicUsize::new(0))),
        max: Arc::default(),
        calls: Arc::default(),
    };
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .build_keyed(|req: &(usize, u32)| req.0, 2);
    let handle = layer.handle();
    let svc = layer.layer(probe.clone());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let mut svc = svc.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                for _ in 0..100_000 {
                    let key = rng.usize(0..KEYS);
                    let spins = rng.u32(0..3);
                    // Rejections (key busy, no room for a key) are expected.
                    let _ = run(svc.call((key, spins)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no panic");
    }
    let max = probe.max.load(Ordering::SeqCst);
    assert_eq!(max, 1, "a key had {max} calls in flight with a limit of 1");
    assert!(
        probe.calls.load(Ordering::Relaxed) > 1_000,
        "calls got through"
    );
    assert!(handle.keys() <= 2, "at most 2 partitions are kept");
    for key in 0..KEYS {
        assert_eq!(handle.in_flight(&key), 0, "no permit leaked for key {key}");
    }
}
