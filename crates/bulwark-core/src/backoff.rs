//! Backoff: how long to wait before the next attempt.
//!
//! A [`BackoffPolicy`] grows a delay with the attempt number (constant, linear or
//! exponential), caps it, and spreads it with [`Jitter`] so that many clients
//! that failed together do not come back together. The retry layer waits
//! these delays between attempts; the circuit breaker uses one to grow its
//! open duration after repeated trips. (It is a policy value, not tower's
//! `tower::retry::backoff::Backoff` trait, hence the name: both can be
//! imported side by side.)
//!
//! Jitter is drawn from a [`Random`] owned by one sequence of attempts, so two
//! requests never share a jitter sequence; seed it to get exact delays in
//! tests.
//!
//! ```
//! use bulwark::backoff::{BackoffPolicy, Jitter, Random};
//! use std::time::Duration;
//!
//! let backoff = BackoffPolicy::exponential(Duration::from_millis(100), 2.0)
//!     .with_max(Duration::from_secs(1));
//! let delays: Vec<_> = backoff.delays(Random::seeded(7)).take(5).collect();
//! assert_eq!(delays, [100, 200, 400, 800, 1000].map(Duration::from_millis));
//!
//! // Full jitter: anywhere between zero and the un-jittered delay.
//! let jittered = backoff.with_jitter(Jitter::Full);
//! for (n, d) in jittered.delays(Random::seeded(7)).take(5).enumerate() {
//!     assert!(d <= backoff.base_delay(n as u32 + 1));
//! }
//! ```

use crate::error::ConfigError;
use std::time::Duration;

/// How the un-jittered delay grows with the attempt number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Growth {
    Constant,
    Linear { step: Duration },
    Exponential { factor: f64 },
}

/// How a delay is spread at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Jitter {
    /// Exactly the computed delay.
    None,
    /// Uniform in `[0, delay]` (AWS "full jitter"): the best spread.
    #[default]
    Full,
    /// `delay / 2` plus uniform in `[0, delay / 2]`: never much shorter than
    /// the computed delay.
    Equal,
    /// Uniform in `[initial, 3 × previous delay]`, capped (AWS "decorrelated
    /// jitter"). Growth comes from the previous delay, not from the attempt
    /// number.
    Decorrelated,
}

/// A growing, capped, jittered delay between attempts.
///
/// Build it with [`constant`](BackoffPolicy::constant), [`linear`](BackoffPolicy::linear)
/// or [`exponential`](BackoffPolicy::exponential), then set
/// [`with_jitter`](BackoffPolicy::with_jitter) (none by default) and
/// [`with_max`](BackoffPolicy::with_max) (no cap by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    initial: Duration,
    growth: Growth,
    jitter: Jitter,
    max: Duration,
}

impl BackoffPolicy {
    /// The same delay before every attempt.
    pub const fn constant(delay: Duration) -> Self {
        BackoffPolicy {
            initial: delay,
            growth: Growth::Constant,
            jitter: Jitter::None,
            max: Duration::MAX,
        }
    }

    /// `initial`, then `initial + step`, `initial + 2 × step`, ...
    pub const fn linear(initial: Duration, step: Duration) -> Self {
        BackoffPolicy {
            initial,
            growth: Growth::Linear { step },
            jitter: Jitter::None,
            max: Duration::MAX,
        }
    }

    /// `initial`, then `initial × factor`, `initial × factor²`, ...
    ///
    /// `factor` must be finite and at least 1 ([`validate`](BackoffPolicy::validate)
    /// says so).
    pub const fn exponential(initial: Duration, factor: f64) -> Self {
        BackoffPolicy {
            initial,
            growth: Growth::Exponential { factor },
            jitter: Jitter::None,
            max: Duration::MAX,
        }
    }

    /// Spreads every delay with `jitter`.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Caps every delay (before and after jitter) at `max`.
    pub const fn with_max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The jitter in use.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The cap on every delay.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The first un-jittered delay.
    pub const fn initial(&self) -> Duration {
        self.initial
    }

    /// Checks that this backoff can work: an exponential factor must be finite
    /// and at least 1, and the cap at least the initial delay. The error
    /// names the setting (`factor` or `max`) of the layer `backoff`; a layer
    /// that takes a backoff reports it as its own setting.
    ///
    /// ```
    /// use bulwark::backoff::BackoffPolicy;
    /// use std::time::Duration;
    ///
    /// let err = BackoffPolicy::exponential(Duration::from_millis(100), 0.5).validate().unwrap_err();
    /// assert_eq!((err.layer(), err.field()), ("backoff", "factor"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Growth::Exponential { factor } = self.growth {
            if !factor.is_finite() || factor < 1.0 {
                return Err(ConfigError::new(
                    "backoff",
                    "factor",
                    format!("the exponential factor must be finite and at least 1, got {factor}"),
                ));
            }
        }
        if self.max < self.initial {
            return Err(ConfigError::new(
                "backoff",
                "max",
                "the maximum delay must not be shorter than the initial delay",
            ));
        }
        Ok(())
    }

    /// The un-jittered, capped delay before attempt `n` (1-based: `n = 1` is
    /// the first delay). Never panics, whatever `n`.
    pub fn base_delay(&self, n: u32) -> Duration {
        let steps = n.saturating_sub(1);
        let raw = match self.growth {
            Growth::Constant => self.initial,
            Growth::Linear { step } => self.initial.saturating_add(step.saturating_mul(steps)),
            Growth::Exponential { factor } => {
                let factor = if factor.is_finite() && factor >= 1.0 {
                    factor
                } else {
                    1.0
                };
                let secs =
                    self.initial.as_secs_f64() * factor.powi(steps.min(i32::MAX as u32) as i32);
                Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
            }
        };
        raw.min(self.max)
    }

    /// The delays of one sequence of attempts, jittered with `random`.
    ///
    /// The iterator never ends; take as many as you need.
    pub fn delays(&self, random: Random) -> Delays {
        Delays {
            backoff: *self,
            attempt: 0,
            previous: self.initial,
            random,
        }
    }
}

/// The delays of one sequence of attempts: see [`BackoffPolicy::delays`].
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: BackoffPolicy,
    attempt: u32,
    previous: Duration,
    random: Random,
}

impl Delays {
    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let b = &self.backoff;
        let delay = match b.jitter {
            Jitter::None => b.base_delay(self.attempt),
            Jitter::Full => self
                .random
                .between(Duration::ZERO, b.base_delay(self.attempt)),
            Jitter::Equal => {
                let d = b.base_delay(self.attempt);
                let half = d / 2;
                half + self.random.between(Duration::ZERO, d - half)
            }
            Jitter::Decorrelated => {
                let low = b.initial.min(b.max);
                let high = self.previous.saturating_mul(3).min(b.max).max(low);
                self.random.between(low, high)
            }
        };
        let delay = delay.min(b.max);
        self.previous = delay;
        delay
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

/// The random source of jitter: small, fast, and seedable for exact tests.
#[derive(Debug, Clone)]
pub struct Random(fastrand::Rng);

impl Random {
    /// A source seeded from the process-wide generator: independent of every
    /// other `Random`.
    pub fn new() -> Self {
        Random(fastrand::Rng::new())
    }

    /// A source that gives the same numbers for the same seed.
    pub fn seeded(seed: u64) -> Self {
        Random(fastrand::Rng::with_seed(seed))
    }

    /// A new independent source derived from this one (deterministic when this
    /// one is seeded).
    pub fn fork(&mut self) -> Self {
        Random(self.0.fork())
    }

    /// A uniform `f64` in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0.f64()
    }

    /// A uniform `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// A uniform duration in `[low, high]` (at nanosecond resolution; `low`
    /// when `high <= low`).
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        if high <= low {
            return low;
        }
        let span = u64::try_from((high - low).as_nanos()).unwrap_or(u64::MAX);
        low + Duration::from_nanos(self.0.u64(0..=span))
    }
}

impl Default for Random {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exact_sequences_without_jitter() {
        let c = BackoffPolicy::constant(ms(50));
        assert_eq!(
            c.delays(Random::seeded(1)).take(3).collect::<Vec<_>>(),
            [ms(50); 3]
        );
        let l = BackoffPolicy::linear(ms(100), ms(50)).with_max(ms(220));
        assert_eq!(
            l.delays(Random::seeded(1)).take(4).collect::<Vec<_>>(),
            [ms(100), ms(150), ms(200), ms(220)]
        );
        let e = BackoffPolicy::exponential(ms(10), 3.0);
        assert_eq!(
            e.delays(Random::seeded(1)).take(4).collect::<Vec<_>>(),
            [ms(10), ms(30), ms(90), ms(270)]
        );
    }

    #[test]
    fn huge_attempts_saturate_at_the_cap() {
        let e = BackoffPolicy::exponential(ms(10), 10.0).with_max(Duration::from_secs(60));
        assert_eq!(e.base_delay(u32::MAX), Duration::from_secs(60));
        let uncapped = BackoffPolicy::exponential(ms(10), 10.0);
        assert_eq!(uncapped.base_delay(10_000), Duration::MAX);
        let l = BackoffPolicy::linear(Duration::MAX, Duration::MAX);
        assert_eq!(l.base_delay(3), Duration::MAX);
    }

    #[test]
    fn seeded_jitter_is_reproducible_and_independent_per_sequence() {
        let b = BackoffPolicy::exponential(ms(100), 2.0).with_jitter(Jitter::Full);
        let a: Vec<_> = b.delays(Random::seeded(42)).take(5).collect();
        let again: Vec<_> = b.delays(Random::seeded(42)).take(5).collect();
        assert_eq!(a, again);
        let mut root = Random::seeded(42);
        let first: Vec<_> = b.delays(root.fork()).take(5).collect();
        let second: Vec<_> = b.delays(root.fork()).take(5).collect();
        assert_ne!(
            first, second,
            "two requests must not share a jitter sequence"
        );
    }

    #[test]
    fn validation() {
        assert!(BackoffPolicy::exponential(ms(1), 0.5).validate().is_err());
        assert!(BackoffPolicy::exponential(ms(1), f64::NAN)
            .validate()
            .is_err());
        assert!(BackoffPolicy::exponential(ms(1), f64::INFINITY)
            .validate()
            .is_err());
        let err = BackoffPolicy::constant(ms(10))
            .with_max(ms(5))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("maximum delay"));
        assert!(BackoffPolicy::exponential(ms(1), 2.0).validate().is_ok());
    }

    proptest! {
        #[test]
        fn jitter_bounds(seed: u64, initial in 0u64..10_000, factor in 1.0f64..4.0, max in 0u64..100_000, n in 1usize..30) {
            let initial = ms(initial);
            let max = ms(max).max(initial);
            let base = BackoffPolicy::exponential(initial, factor).with_max(max);
            for jitter in [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
                let b = base.with_jitter(jitter);
                let mut previous = initial;
                for (i, d) in b.delays(Random::seeded(seed)).take(n).enumerate() {
                    let cap = b.base_delay(i as u32 + 1);
                    prop_assert!(d <= max);
                    match jitter {
                        Jitter::None => prop_assert_eq!(d, cap),
                        Jitter::Full => prop_assert!(d <= cap),
                        Jitter::Equal => prop_assert!(d >= cap / 2 && d <= cap),
                        Jitter::Decorrelated => {
                            prop_assert!(d >= initial.min(max));
                            prop_assert!(d <= previous.saturating_mul(3).min(max).max(initial));
                        }
                    }
                    previous = d;
                }
            }
        }
    }
}
