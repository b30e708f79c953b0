//! Adaptive limits against a processor-sharing model of an upstream, in
//! paused time: capacity `C = 60` calls served at full speed, each needing
//! about 20 ms of work (log-normal, median 20 ms, so the fastest calls take
//! 4–6 ms); beyond `C` in flight, every call slows in proportion (`C / n` of
//! full speed each). Offered load is twice what the upstream can serve.
//!
//! What must hold: Vegas and Gradient2 converge near `C` (an old Vegas,
//! comparing every call with the fastest one seen, held its limit at 5–13),
//! and neither collapses when 2% of the calls become very slow.

use bulwark_bulkhead::adaptive::{Gradient2, Vegas};
use bulwark_bulkhead::{Bulkhead, BulkheadLayer};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};

const CAPACITY: usize = 60;
const MS: Duration = Duration::from_millis(1);

type Upstream = tower::util::BoxCloneService<(), (), Infallible>;

struct Job {
    remaining_ms: f64,
    done: oneshot::Sender<()>,
}

/// The processor-sharing upstream and its 1 ms scheduler.
#[derive(Clone)]
struct Model {
    jobs: Arc<Mutex<Vec<Job>>>,
    rng: Arc<Mutex<fastrand::Rng>>,
    /// When set, 2% of the calls wait this long on top of their work
    /// (holding their permit, not the upstream's capacity).
    tail: Arc<Mutex<Option<Duration>>>,
}

impl Model {
    fn start(seed: u64) -> Model {
        let model = Model {
            jobs: Arc::default(),
            rng: Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))),
            tail: Arc::default(),
        };
        let jobs = model.jobs.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MS);
            loop {
                tick.tick().await;
                let mut jobs = jobs.lock().unwrap();
                // Water-filling: `CAPACITY` ms of work per ms, at most 1 ms
                // per call; what a finishing call leaves goes to the others.
                let mut capacity = CAPACITY as f64;
                loop {
                    if jobs.is_empty() {
                        break;
                    }
                    let share = (capacity / jobs.len() as f64).min(1.0);
                    let before = jobs.len();
                    let mut i = 0;
                    while i < jobs.len() {
                        if jobs[i].remaining_ms <= share {
                            let job = jobs.swap_remove(i);
                            capacity -= job.remaining_ms;
                            let _ = job.done.send(());
                        } else {
                            i += 1;
                        }
                    }
                    if jobs.len() == before {
                        for job in jobs.iter_mut() {
                            job.remaining_ms -= share;
                        }
                        break;
                    }
                }
            }
        });
        model
    }

    fn service(&self) -> Upstream {
        let model = self.clone();
        tower::util::BoxCloneService::new(tower::service_fn(move |()| {
            let (work, extra) = {
                let mut rng = model.rng.lock().unwrap();
                // Log-normal, median 20 ms, sigma 0.5 (Box-Muller).
                let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let work = 20.0 * (0.5 * z).exp();
                let slow = rng.f64() < 0.02;
                (work, model.tail.lock().unwrap().filter(|_| slow))
            };
            let (done, wait) = oneshot::channel();
            model.jobs.lock().unwrap().push(Job {
                remaining_ms: work,
                done,
            });
            async move {
                let _ = wait.await;
                if let Some(extra) = extra {
                    tokio::time::sleep(extra).await;
                }
                Ok::<_, Infallible>(())
            }
        }))
    }
}

#[derive(Debug, Default)]
struct Report {
    /// The limit at the end of each phase: overload, then overload with a
    /// 2% slow tail.
    limits: [usize; 2],
    /// Calls answered within their 1 s deadline, in each phase.
    good: [usize; 2],
}

/// Offers 6 calls per ms (≈ 2.3× the ≈ 2,650 calls/s the model serves) for
/// 10 s, then 10 s more with 2% of the calls 300 ms slower. Each caller
/// gives up after 1 s.
async fn overload(layer: BulkheadLayer) -> Report {
    let model = Model::start(7);
    let svc: Bulkhead<Upstream> = layer.layer(model.service());
    let handle = svc.handle();
    let good = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let phase = Arc::new(AtomicBool::new(false));
    let mut report = Report::default();
    for p in 0..2 {
        if p == 1 {
            *model.tail.lock().unwrap() = Some(300 * MS);
            phase.store(true, Ordering::SeqCst);
        }
        for _ in 0..10_000 {
            for _ in 0..6 {
                let (svc, good, phase) = (svc.clone(), good.clone(), phase.clone());
                tokio::spawn(async move {
                    let p = usize::from(phase.load(Ordering::SeqCst));
                    if let Ok(Ok(())) = tokio::time::timeout(1000 * MS, svc.oneshot(())).await {
                        good[p].fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            tokio::time::sleep(MS).await;
        }
        report.limits[p] = handle.limit();
    }
    // Let the last calls finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.good = [
        good[0].load(Ordering::SeqCst),
        good[1].load(Ordering::SeqCst),
    ];
    report
}

/// `near` is the range (in multiples of the capacity, in tenths) the limit
/// must reach under overload.
fn check(name: &str, r: &Report, near: std::ops::RangeInclusive<usize>) {
    let [overload, tail] = r.limits;
    println!(
        "{name}: limits {overload} (overload), {tail} (+2% slow tail); good {:?}",
        r.good
    );
    assert!(
        near.contains(&(overload * 10 / CAPACITY)),
        "{name}: limit {overload} is not near the capacity {CAPACITY}"
    );
    assert!(
        tail * 10 >= overload * 8,
        "{name}: a 2% slow tail collapsed the limit from {overload} to {tail}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn vegas_converges_near_capacity_and_survives_a_slow_tail() {
    let r = overload(
        BulkheadLayer::builder()
            .max_concurrent(1000)
            .adaptive(Vegas::new(20))
            .build(),
    )
    .await;
    // Within [0.5 C, 1.5 C].
    check("vegas", &r, 5..=14);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gradient2_converges_near_capacity_and_survives_a_slow_tail() {
    let r = overload(
        BulkheadLayer::builder()
            .max_concurrent(1000)
            .adaptive(Gradient2::new(20))
            .build(),
    )
    .await;
    // Never below the capacity (no goodput lost), at most 2 C: the
    // tolerance lets it queue a little, and the long term slowly learns
    // that queue (see `Gradient2`'s docs).
    check("gradient2", &r, 10..=19);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gradient2_keeps_the_goodput_of_a_fixed_bulkhead() {
    let fixed = overload(BulkheadLayer::new(100)).await;
    let adaptive = overload(
        BulkheadLayer::builder()
            .max_concurrent(100)
            .adaptive(Gradient2::default())
            .build(),
    )
    .await;
    println!(
        "fixed 100: good {:?}; gradient2 (max 100): good {:?}, limits {:?}",
        fixed.good, adaptive.good, adaptive.limits
    );
    for phase in 0..2 {
        assert!(
            adaptive.good[phase] * 1000 >= fixed.good[phase] * 990,
            "phase {phase}: gradient2 {} vs fixed {}",
            adaptive.good[phase],
            fixed.good[phase]
        );
    }
    assert!(
        adaptive.limits.iter().all(|&l| l <= 100),
        "max_concurrent is the maximum"
    );
}
