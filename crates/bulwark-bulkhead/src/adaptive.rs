//! Adaptive limits: the concurrency limit moves between a minimum and a
//! maximum from the latency and failures the bulkhead observes.
//!
//! Every call that completes (or is dropped) under an adaptive bulkhead
//! gives a [`Sample`]: its latency, how many calls were in flight when it
//! started, and whether it *dropped* (failed, or was abandoned before it
//! completed, e.g. by a timeout further out). A [`LimitAlgorithm`] turns the
//! samples into a new limit. Two are provided, after Netflix's
//! `concurrency-limits`:
//!
//! - [`Aimd`]: additive increase, multiplicative decrease. Each successful,
//!   fast call with the bulkhead at least half used raises the limit by one;
//!   each drop, and each call slower than a latency threshold, multiplies it
//!   by a backoff ratio (0.9). Simple and robust; reacts to failures and to
//!   an absolute latency threshold.
//! - [`Vegas`]: latency-based, after TCP Vegas. It tracks the lowest latency
//!   seen (`rtt_noload`, re-measured every so often) and estimates how many
//!   calls are queued at the upstream as
//!   `queue = limit × (1 − rtt_noload / rtt)`. With `log = max(1, log10(limit))`:
//!   a queue of at most `log` raises the limit by `6·log`; below `3·log` by
//!   `log`; above `6·log` it lowers it by `log`; a drop lowers it by `log`.
//!   It finds the concurrency at which the upstream starts to queue, without
//!   any threshold to tune, and keeps latency close to the no-load latency.
//!
//! Both ignore successes while the bulkhead is less than half used (an
//! app-limited caller says nothing about the upstream's capacity), and both
//! keep the limit within `[min, max]`.
//!
//! ```
//! use bulwark_bulkhead::{adaptive::{Aimd, LimitAlgorithm, Sample}, BulkheadLayer};
//! use std::time::Duration;
//!
//! let mut aimd = Aimd::new(10).min_limit(2).max_limit(50);
//! let slow = Sample::new(Duration::from_secs(5), 10, false);
//! assert_eq!(aimd.update(&slow), 9); // slower than the 1 s threshold: × 0.9
//! let fast = Sample::new(Duration::from_millis(5), 9, false);
//! assert_eq!(aimd.update(&fast), 10); // fast and busy: + 1
//!
//! let layer = BulkheadLayer::builder()
//!     .adaptive(aimd)
//!     .build();
//! # let _ = layer;
//! ```

use std::fmt;
use std::time::Duration;

/// What one call told the adaptive limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    latency: Duration,
    in_flight: usize,
    dropped: bool,
}

impl Sample {
    /// A call that took `latency`, started with `in_flight` calls in flight
    /// (itself included), and `dropped` (failed or was abandoned) or not.
    pub const fn new(latency: Duration, in_flight: usize, dropped: bool) -> Self {
        Sample {
            latency,
            in_flight,
            dropped,
        }
    }

    /// How long the call took (until it completed or was dropped).
    pub const fn latency(&self) -> Duration {
        self.latency
    }

    /// Calls in flight when this one started, itself included.
    pub const fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the call failed or was abandoned.
    pub const fn dropped(&self) -> bool {
        self.dropped
    }
}

/// Moves a concurrency limit from [`Sample`]s.
///
/// The bulkhead calls [`update`](LimitAlgorithm::update) once per completed
/// call, under a short lock, and publishes the returned limit.
pub trait LimitAlgorithm: Send + 'static {
    /// The limit before any sample.
    fn initial_limit(&self) -> usize;

    /// Takes one sample into account and returns the new limit.
    fn update(&mut self, sample: &Sample) -> usize;
}

/// The range a limit moves in; `min <= max` always holds.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    min: usize,
    max: usize,
}

impl Bounds {
    const DEFAULT: Bounds = Bounds { min: 1, max: 1000 };

    /// At least 1; raises the maximum if it was lower.
    fn with_min(self, min: usize) -> Self {
        let min = min.max(1);
        Bounds {
            min,
            max: self.max.max(min),
        }
    }

    /// Never below the minimum.
    fn with_max(self, max: usize) -> Self {
        Bounds {
            min: self.min,
            max: max.max(self.min),
        }
    }

    fn clamp(self, limit: f64) -> f64 {
        limit.clamp(self.min as f64, self.max as f64)
    }
}

/// Additive increase, multiplicative decrease (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    bounds: Bounds,
    backoff: f64,
    threshold: Duration,
}

impl Aimd {
    /// Starts at `initial` (between 1 and 1000 unless changed), backs off by
    /// × 0.9 on drops and on calls slower than 1 s.
    pub fn new(initial: usize) -> Self {
        Aimd {
            limit: initial.max(1) as f64,
            bounds: Bounds::DEFAULT,
            backoff: 0.9,
            threshold: Duration::from_secs(1),
        }
    }

    /// The lowest the limit goes (at least 1; the highest is raised to it
    /// if it was lower).
    pub fn min_limit(mut self, min: usize) -> Self {
        self.bounds = self.bounds.with_min(min);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// The highest the limit goes.
    pub fn max_limit(mut self, max: usize) -> Self {
        self.bounds = self.bounds.with_max(max);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// The factor applied on a drop, in `[0.5, 1)`.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff = ratio.clamp(0.5, 0.999);
        self
    }

    /// A call slower than this counts as a drop.
    pub fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold;
        self
    }
}

impl LimitAlgorithm for Aimd {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, s: &Sample) -> usize {
        if s.dropped || s.latency > self.threshold {
            self.limit = self.bounds.clamp((self.limit * self.backoff).floor());
        } else if s.in_flight * 2 >= self.limit as usize {
            self.limit = self.bounds.clamp(self.limit + 1.0);
        }
        self.limit as usize
    }
}

/// Latency-based limit after TCP Vegas (see the [module docs](self)).
#[derive(Clone)]
pub struct Vegas {
    limit: f64,
    bounds: Bounds,
    rtt_noload: Option<Duration>,
    probe_multiplier: usize,
    probe_count: usize,
    probe_jitter: f64,
    smoothing: f64,
    random: fastrand::Rng,
}

impl fmt::Debug for Vegas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vegas")
            .field("limit", &self.limit)
            .field("min", &self.bounds.min)
            .field("max", &self.bounds.max)
            .field("rtt_noload", &self.rtt_noload)
            .finish()
    }
}

impl Vegas {
    /// Starts at `initial` (between 1 and 1000 unless changed).
    pub fn new(initial: usize) -> Self {
        Vegas {
            limit: initial.max(1) as f64,
            bounds: Bounds::DEFAULT,
            rtt_noload: None,
            probe_multiplier: 30,
            probe_count: 0,
            probe_jitter: 1.0,
            smoothing: 1.0,
            random: fastrand::Rng::new(),
        }
    }

    /// The lowest the limit goes (at least 1; the highest is raised to it
    /// if it was lower).
    pub fn min_limit(mut self, min: usize) -> Self {
        self.bounds = self.bounds.with_min(min);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// The highest the limit goes.
    pub fn max_limit(mut self, max: usize) -> Self {
        self.bounds = self.bounds.with_max(max);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// Re-measures the no-load latency every `multiplier × limit` samples
    /// (30 by default), so a lasting change of the upstream's base latency is
    /// learnt.
    pub fn probe_multiplier(mut self, multiplier: usize) -> Self {
        self.probe_multiplier = multiplier.max(1);
        self
    }

    /// How much of each change is applied, in `(0, 1]` (1 by default).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing.clamp(0.01, 1.0);
        self
    }

    /// Seeds the jitter of the no-load re-measurements, for exact tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.random = fastrand::Rng::with_seed(seed);
        self
    }

    fn log(limit: f64) -> f64 {
        limit.log10().max(1.0)
    }
}

impl LimitAlgorithm for Vegas {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, s: &Sample) -> usize {
        let rtt = s.latency.max(Duration::from_nanos(1));
        self.probe_count += 1;
        let probe_every = (self.probe_multiplier as f64 * self.limit * self.probe_jitter) as usize;
        if self.probe_count >= probe_every.max(1) {
            // Forget the no-load latency now and then: the upstream's base
            // latency may have changed for good.
            self.probe_count = 0;
            self.probe_jitter = 0.5 + self.random.f64() * 0.5;
            self.rtt_noload = Some(rtt);
            return self.limit as usize;
        }
        let noload = match self.rtt_noload {
            Some(n) if n <= rtt => n,
            _ => {
                self.rtt_noload = Some(rtt);
                return self.limit as usize;
            }
        };
        let log = Self::log(self.limit);
        let target = if s.dropped {
            self.limit - log
        } else if s.in_flight * 2 < self.limit as usize {
            return self.limit as usize;
        } else {
            let queue = (self.limit * (1.0 - noload.as_secs_f64() / rtt.as_secs_f64())).ceil();
            if queue <= log {
                self.limit + 6.0 * log
            } else if queue < 3.0 * log {
                self.limit + log
            } else if queue > 6.0 * log {
                self.limit - log
            } else {
                return self.limit as usize;
            }
        };
        let next = (1.0 - self.smoothing) * self.limit + self.smoothing * target;
        self.limit = self.bounds.clamp(next);
        self.limit as usize
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_minimum_above_the_maximum_raises_it_instead_of_panicking() {
        let sample = Sample::new(Duration::from_millis(1), 1, false);
        let mut a = Aimd::new(10).max_limit(5).min_limit(8);
        assert_eq!(a.update(&sample), 8);
        let mut v = Vegas::new(10).max_limit(5).min_limit(8);
        assert_eq!(v.update(&sample), 8);
    }

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn aimd_moves_within_bounds() {
        let mut a = Aimd::new(4).min_limit(2).max_limit(6);
        for _ in 0..10 {
            a.update(&Sample::new(MS, 6, false));
        }
        assert_eq!(a.initial_limit(), 6);
        // App-limited successes change nothing.
        let mut b = Aimd::new(10);
        assert_eq!(b.update(&Sample::new(MS, 4, false)), 10);
        assert_eq!(b.update(&Sample::new(MS, 5, false)), 11);
        for _ in 0..100 {
            a.update(&Sample::new(MS, 1, true));
        }
        assert_eq!(a.update(&Sample::new(MS, 1, true)), 2);
    }

    #[test]
    fn vegas_falls_with_queueing_and_rises_without() {
        let mut v = Vegas::new(20).max_limit(100).probe_multiplier(1_000);
        assert_eq!(v.update(&Sample::new(10 * MS, 20, false)), 20); // learns rtt_noload
                                                                    // No queueing: + 6·log = + 7.8.
        assert_eq!(v.update(&Sample::new(10 * MS, 20, false)), 27);
        // rtt 4× the no-load: queue = 27 × 0.75 > 6·log: − log.
        let before = v.limit;
        let after = v.update(&Sample::new(40 * MS, 27, false));
        assert!((after as f64) < before);
        // A drop lowers it too.
        let before = v.limit;
        v.update(&Sample::new(10 * MS, 1, true));
        assert!(v.limit < before);
        // Never below the minimum.
        for _ in 0..1_000 {
            v.update(&Sample::new(10 * MS, 1, true));
        }
        assert_eq!(v.limit as usize, 1);
    }
}
