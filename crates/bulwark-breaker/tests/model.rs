//! Model-based test: random sequences of calls (successes, failures, slow
//! calls, ignored outcomes), drops, time advances and manual controls, run
//! against the real breaker and against a deliberately simple reference model
//! of the state machine. After every step both must agree on the state, the
//! counts and every admission decision.

use bulwark_breaker::{Breaker, Permit, State};
use bulwark_core::backoff::BackoffPolicy;
use bulwark_core::Outcome;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::time::Duration;

const SLOW: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
struct Cfg {
    window: Win,
    failure_rate: Option<f64>,
    slow_rate: Option<f64>,
    consecutive: Option<u32>,
    minimum: u32,
    growing_open: bool,
    probes: u32,
    successes: u32,
    failures: u32,
}

#[derive(Debug, Clone, Copy)]
enum Win {
    Count(u32),
    /// 4 s in 4 buckets.
    Time,
}

#[derive(Debug, Clone)]
enum Op {
    Start,
    Finish(usize, Outcome),
    Drop(usize),
    Advance(u64),
    ForceOpen,
    Disable,
    MetricsOnly,
    Reset,
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (
        prop_oneof![(1u32..8).prop_map(Win::Count), Just(Win::Time)],
        prop_oneof![
            Just(None),
            Just(Some(0.5)),
            Just(Some(1.0)),
            Just(Some(0.3))
        ],
        prop_oneof![Just(None), Just(Some(0.5)), Just(Some(1.0))],
        prop_oneof![Just(None), (1u32..4).prop_map(Some)],
        1u32..5,
        any::<bool>(),
        1u32..4,
        1u32..4,
        1u32..4,
    )
        .prop_map(
            |(
                window,
                failure_rate,
                slow_rate,
                consecutive,
                minimum,
                growing_open,
                probes,
                successes,
                failures,
            )| {
                let minimum = match window {
                    Win::Count(n) => minimum.min(n),
                    Win::Time => minimum,
                };
                // At least one trip policy.
                let consecutive = if failure_rate.is_none() && slow_rate.is_none() {
                    consecutive.or(Some(2))
                } else {
                    consecutive
                };
                Cfg {
                    window,
                    failure_rate,
                    slow_rate,
                    consecutive,
                    minimum,
                    growing_open,
                    probes,
                    successes,
                    failures,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
        1 => Just(Outcome::Rejected),
    ];
    prop_oneof![
        10 => Just(Op::Start),
        10 => (0usize..4, outcome).prop_map(|(i, o)| Op::Finish(i, o)),
        2 => (0usize..4).prop_map(Op::Drop),
        6 => prop_oneof![Just(0u64), Just(50), Just(100), Just(500), Just(1_000), Just(2_000), Just(3_999)].prop_map(Op::Advance),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Disable),
        1 => Just(Op::MetricsOnly),
        1 => Just(Op::Reset),
    ]
}

fn build(cfg: &Cfg) -> Breaker {
    let mut b = Breaker::builder()
        .minimum_calls(cfg.minimum)
        .permitted_probes(cfg.probes)
        .successes_to_close(cfg.successes)
        .failures_to_reopen(cfg.failures)
        .history(0);
    b = match cfg.window {
        Win::Count(n) => b.count_window(n),
        Win::Time => b.time_window(Duration::from_secs(4), 4),
    };
    b = match cfg.failure_rate {
        Some(r) => b.failure_rate(r),
        None => b.without_failure_rate(),
    };
    if let Some(r) = cfg.slow_rate {
        b = b.slow_calls(SLOW, r);
    }
    if let Some(n) = cfg.consecutive {
        b = b.consecutive_failures(n);
    }
    b = if cfg.growing_open {
        b.open_backoff(
            BackoffPolicy::exponential(Duration::from_secs(1), 2.0)
                .with_max(Duration::from_secs(4)),
        )
    } else {
        b.open_for(Duration::from_millis(1_500))
    };
    b.build().expect("generated configurations are valid")
}

/// The reference model: obvious data structures, no optimisation.
#[derive(Debug)]
struct Model {
    cfg: Cfg,
    now: u64,
    state: State,
    epoch: u64,
    /// (time in ms, failed, slow) of every recorded call since the window
    /// was last cleared.
    records: Vec<(u64, bool, bool)>,
    consecutive: u32,
    trips: u32,
    open_until: u64,
    probes_in_flight: u32,
    probe_successes: u32,
    probe_failures: u32,
    rejected: u64,
}

#[derive(Debug, Clone, Copy)]
struct MPermit {
    tracked: bool,
    probe: bool,
    epoch: u64,
    start: u64,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Model {
            cfg,
            now: 0,
            state: State::Closed,
            epoch: 0,
            records: Vec::new(),
            consecutive: 0,
            trips: 0,
            open_until: 0,
            probes_in_flight: 0,
            probe_successes: 0,
            probe_failures: 0,
            rejected: 0,
        }
    }

    fn live(&self) -> Vec<(u64, bool, bool)> {
        match self.cfg.window {
            Win::Count(n) => {
                let n = n as usize;
                self.records[self.records.len().saturating_sub(n)..].to_vec()
            }
            Win::Time => self
                .records
                .iter()
                .copied()
                .filter(|r| r.0 / 1_000 + 4 > self.now / 1_000)
                .collect(),
        }
    }

    fn counts(&self) -> (u32, u32, u32) {
        let live = self.live();
        (
            live.len() as u32,
            live.iter().filter(|r| r.1).count() as u32,
            live.iter().filter(|r| r.2).count() as u32,
        )
    }

    fn go(&mut self, to: State) {
        self.state = to;
        self.epoch += 1;
        self.probe_successes = 0;
        self.probe_failures = 0;
        match to {
            State::Open => {
                self.trips += 1;
                let delay = if self.cfg.growing_open {
                    (1_000u64 << (self.trips - 1).min(10)).min(4_000)
                } else {
                    1_500
                };
                self.open_until = self.now + delay;
            }
            State::Closed => {
                self.records.clear();
                self.consecutive = 0;
                self.trips = 0;
            }
            _ => {}
        }
    }

    fn manual(&mut self, to: State) {
        if self.state == to && to != State::Closed {
            return;
        }
        self.go(to);
    }

    /// `Ok(probe?)` or `Err(retry_after in ms)`.
    fn start(&mut self) -> (Result<bool, Option<u64>>, Option<MPermit>) {
        let permit = |probe| MPermit {
            tracked: true,
            probe,
            epoch: 0,
            start: 0,
        };
        match self.state {
            State::Closed | State::MetricsOnly => {
                let p = MPermit {
                    epoch: self.epoch,
                    start: self.now,
                    ..permit(false)
                };
                (Ok(false), Some(p))
            }
            State::ForcedClosed => (
                Ok(false),
                Some(MPermit {
                    tracked: false,
                    ..permit(false)
                }),
            ),
            State::ForcedOpen => {
                self.rejected += 1;
                (Err(None), None)
            }
            State::Open if self.now < self.open_until => {
                self.rejected += 1;
                (Err(Some(self.open_until - self.now)), None)
            }
            State::Open | State::HalfOpen => {
                if self.state == State::Open {
                    self.go(State::HalfOpen);
                }
                if self.probes_in_flight < self.cfg.probes {
                    self.probes_in_flight += 1;
                    (
                        Ok(true),
                        Some(MPermit {
                            epoch: self.epoch,
                            start: self.now,
                            ..permit(true)
                        }),
                    )
                } else {
                    self.rejected += 1;
                    (Err(None), None)
                }
            }
        }
    }

    fn finish(&mut self, p: MPermit, outcome: Outcome) {
        if !p.tracked {
            return;
        }
        let counted = matches!(outcome, Outcome::Success | Outcome::Failure);
        if !p.probe && !counted {
            return;
        }
        if p.probe {
            self.probes_in_flight -= 1;
        }
        if p.epoch != self.epoch {
            return;
        }
        let slow = self.cfg.slow_rate.is_some() && self.now - p.start >= SLOW.as_millis() as u64;
        if p.probe {
            match outcome {
                Outcome::Failure | Outcome::Success if outcome == Outcome::Failure || slow => {
                    self.probe_failures += 1;
                    if self.probe_failures >= self.cfg.failures {
                        self.go(State::Open);
                    }
                }
                Outcome::Success => {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.cfg.successes {
                        self.go(State::Closed);
                    }
                }
                _ => {}
            }
            return;
        }
        let failed = outcome == Outcome::Failure;
        self.records.push((self.now, failed, slow));
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        if self.state != State::Closed {
            return;
        }
        let (calls, failures, slows) = self.counts();
        let trip = self.cfg.consecutive.is_some_and(|n| self.consecutive >= n)
            || (calls >= self.cfg.minimum
                && (self
                    .cfg
                    .failure_rate
                    .is_some_and(|t| f64::from(failures) / f64::from(calls) >= t)
                    || self
                        .cfg
                        .slow_rate
                        .is_some_and(|t| f64::from(slows) / f64::from(calls) >= t)));
        if trip {
            self.go(State::Open);
        }
    }

    fn drop_permit(&mut self, p: MPermit) {
        if p.tracked && p.probe {
            self.probes_in_flight -= 1;
        }
    }
}

async fn run(cfg: Cfg, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let breaker = build(&cfg);
    let mut model = Model::new(cfg);
    let mut real: VecDeque<Permit> = VecDeque::new();
    let mut modeled: VecDeque<MPermit> = VecDeque::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Start => {
                if real.len() == 4 {
                    continue;
                }
                let got = breaker.try_acquire();
                let (want, permit) = model.start();
                match (&got, want) {
                    (Ok(p), Ok(probe)) => {
                        prop_assert_eq!(p.is_probe(), probe, "step {}: probe?", step)
                    }
                    (Err(e), Err(after)) => prop_assert_eq!(
                        e.retry_after(),
                        after.map(Duration::from_millis),
                        "step {}: retry after",
                        step
                    ),
                    _ => prop_assert!(
                        false,
                        "step {}: real {:?} but model {:?}",
                        step,
                        got.as_ref().map(|p| p.is_probe()),
                        want
                    ),
                }
                if let (Ok(p), Some(m)) = (got, permit) {
                    real.push_back(p);
                    modeled.push_back(m);
                }
            }
            Op::Finish(i, outcome) => {
                if i < real.len() {
                    real.remove(i).unwrap().record(outcome);
                    let m = modeled.remove(i).unwrap();
                    model.finish(m, outcome);
                }
            }
            Op::Drop(i) => {
                if i < real.len() {
                    drop(real.remove(i));
                    let m = modeled.remove(i).unwrap();
                    model.drop_permit(m);
                }
            }
            Op::Advance(ms) => {
                tokio::time::advance(Duration::from_millis(ms)).await;
                model.now += ms;
            }
            Op::ForceOpen => {
                breaker.force_open();
                model.manual(State::ForcedOpen);
            }
            Op::Disable => {
                breaker.force_closed();
                model.manual(State::ForcedClosed);
            }
            Op::MetricsOnly => {
                breaker.metrics_only();
                model.manual(State::MetricsOnly);
            }
            Op::Reset => {
                breaker.reset();
                model.manual(State::Closed);
            }
        }
        let snap = breaker.snapshot();
        prop_assert_eq!(snap.state, model.state, "step {}: state", step);
        prop_assert_eq!(
            (snap.calls, snap.failures, snap.slow_calls),
            model.counts(),
            "step {}: window",
            step
        );
        prop_assert_eq!(
            snap.consecutive_failures,
            model.consecutive,
            "step {}",
            step
        );
        prop_assert_eq!(snap.consecutive_trips, model.trips, "step {}", step);
        prop_assert_eq!(
            snap.probes_in_flight,
            model.probes_in_flight,
            "step {}",
            step
        );
        prop_assert_eq!(snap.probe_successes, model.probe_successes, "step {}", step);
        prop_assert_eq!(snap.probe_failures, model.probe_failures, "step {}", step);
        prop_assert_eq!(snap.rejected, model.rejected, "step {}", step);
        prop_assert!(
            snap.probes_in_flight <= model.cfg.probes,
            "step {}: probe limit",
            step
        );
    }
    // Whatever happened, dropping everything leaves no probe slot taken.
    real.clear();
    prop_assert_eq!(breaker.snapshot().probes_in_flight, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_the_reference_model(cfg in cfg(), ops in proptest::collection::vec(op(), 1..120)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(run(cfg, ops))?;
    }
}
