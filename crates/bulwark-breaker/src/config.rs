//! Building a breaker: the builder, its defaults and its validation.

use crate::event::BreakerEvent;
use crate::Breaker;
use bulwark_core::backoff::BackoffPolicy;
use bulwark_core::error::ConfigError;
use bulwark_core::event::{Listener, Listeners};
use std::sync::Arc;
use std::time::Duration;

/// Which recent calls the rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `size` recorded calls.
    Count {
        /// How many calls.
        size: u32,
    },
    /// The calls of the last `length`, kept in `buckets` buckets that leave
    /// the window one at a time.
    Time {
        /// How far back.
        length: Duration,
        /// How many buckets (the window slides in steps of
        /// `length / buckets`).
        buckets: u32,
    },
}

/// A breaker's whole configuration, validated.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) window: WindowKind,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_call: Option<(Duration, f64)>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) minimum_calls: u32,
    pub(crate) open: BackoffPolicy,
    pub(crate) probes: u32,
    pub(crate) successes_to_close: u32,
    pub(crate) failures_to_reopen: u32,
    pub(crate) history: usize,
    pub(crate) seed: Option<u64>,
}

/// Builds a [`Breaker`].
///
/// The defaults, each chosen by what it does in `bulwark-sim`'s scenarios
/// (`cargo run --example simulate`; the numbers are in the repository's
/// `BENCHMARKS.md`), and the same in every stack and in `bulwark-config`:
///
/// | setting | default | chosen by |
/// |---|---|---|
/// | window | the last 10 s, in 10 buckets | `brownout`: a count window of 100 calls judged half a second of traffic and turned a 30% brownout into an outage (13.6% goodput during the fault; 80.5% with this window, 85.0% in the recommended stack) |
/// | failure rate | 50%, once 20 calls are in the window | `brownout` (a partial failure is not an outage) and `one-bad-host` |
/// | consecutive failures | 10 in a row | `outage`, `black-hole`: detects a total failure in tens of milliseconds at 200 requests/s, whatever the window holds |
/// | open time | 200 ms, × 1.5 while probes keep failing, at most 500 ms, equal jitter; back to 200 ms once closed | `outage` (the upstream sees 3% of the traffic, and the breaker closes as soon as it recovers) against `flapping` (every moment open after the upstream came back is lost: a cap of 1 s lost 1 more point of goodput there, a fixed 200 ms sent 5.5% of the outage's traffic as probes) |
/// | half-open | 3 probes; closes on 2 successes, reopens on 2 failures | `slow-recovery`, `brownout`: a majority of 3 instead of "3 of 3", which a 30%-failing upstream passed 3 times in 10 |
/// | slow calls | not judged | |
///
/// Closing starts from an empty window, so the failure rate is judged again
/// only once 20 new calls have been seen.
///
/// ```
/// use bulwark::breaker::Breaker;
/// use std::time::Duration;
///
/// let breaker = Breaker::builder()
///     .name("payments")
///     .time_window(Duration::from_secs(60), 12)
///     .failure_rate(0.25)
///     .slow_calls(Duration::from_millis(500), 0.5)
///     .minimum_calls(20)
///     .open_for(Duration::from_secs(10))
///     .build()
///     .expect("valid configuration");
/// assert_eq!(breaker.name(), Some("payments"));
///
/// // Bad input is a typed error, never a panic.
/// let err = Breaker::builder().failure_rate(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate");
/// ```
#[derive(Debug, Clone)]
pub struct BreakerBuilder {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) config: Config,
    pub(crate) listeners: Listeners<BreakerEvent>,
}

impl Default for BreakerBuilder {
    fn default() -> Self {
        BreakerBuilder {
            name: None,
            config: Config {
                window: WindowKind::Time {
                    length: Duration::from_secs(10),
                    buckets: 10,
                },
                failure_rate: Some(0.5),
                slow_call: None,
                consecutive_failures: Some(10),
                minimum_calls: 20,
                open: default_open(),
                probes: 3,
                successes_to_close: 2,
                failures_to_reopen: 2,
                history: 32,
                seed: None,
            },
            listeners: Listeners::new(),
        }
    }
}

/// The default open time: short at first, growing only while probes keep
/// failing (see the table on [`BreakerBuilder`]).
pub(crate) fn default_open() -> BackoffPolicy {
    BackoffPolicy::exponential(Duration::from_millis(200), 1.5)
        .with_max(Duration::from_millis(500))
        .with_jitter(bulwark_core::backoff::Jitter::Equal)
}

impl BreakerBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the breaker; the name is in every event, log line and
    /// rejection.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Judges rates over the last `size` recorded calls.
    pub fn count_window(mut self, size: u32) -> Self {
        self.config.window = WindowKind::Count { size };
        self
    }

    /// Judges rates over the calls of the last `length`, kept in `buckets`
    /// buckets (more buckets slide more smoothly; each costs 12 bytes).
    pub fn time_window(mut self, length: Duration, buckets: u32) -> Self {
        self.config.window = WindowKind::Time { length, buckets };
        self
    }

    /// Trips when the share of failures in the window reaches `threshold`
    /// (in `(0, 1]`).
    pub fn failure_rate(mut self, threshold: f64) -> Self {
        self.config.failure_rate = Some(threshold);
        self
    }

    /// Never trips on the failure rate (e.g. to trip on consecutive failures
    /// or slow calls only).
    pub fn without_failure_rate(mut self) -> Self {
        self.config.failure_rate = None;
        self
    }

    /// Counts calls that take at least `duration` as slow (whether they
    /// succeed or fail), and trips when the share of slow calls in the window
    /// reaches `rate_threshold` (in `(0, 1]`). A slow probe in half-open
    /// opens the breaker again.
    pub fn slow_calls(mut self, duration: Duration, rate_threshold: f64) -> Self {
        self.config.slow_call = Some((duration, rate_threshold));
        self
    }

    /// Also trips after `count` failures in a row, whatever the window says.
    pub fn consecutive_failures(mut self, count: u32) -> Self {
        self.config.consecutive_failures = Some(count);
        self
    }

    /// Never trips on failures in a row (only on the window's rates).
    pub fn without_consecutive_failures(mut self) -> Self {
        self.config.consecutive_failures = None;
        self
    }

    /// Judges no rate before the window holds at least `count` calls.
    pub fn minimum_calls(mut self, count: u32) -> Self {
        self.config.minimum_calls = count;
        self
    }

    /// Stays open for `duration` after every trip.
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.config.open = BackoffPolicy::constant(duration);
        self
    }

    /// Stays open longer after each consecutive trip (a trip from half-open
    /// before the breaker closed again), following `backoff`: e.g.
    /// `BackoffPolicy::exponential(5s, 2.0).with_max(5min).with_jitter(Jitter::Equal)`.
    /// Closing the breaker starts the sequence over.
    pub fn open_backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.config.open = backoff;
        self
    }

    /// Lets at most `count` probes be in flight at once in half-open, across
    /// all clones.
    pub fn permitted_probes(mut self, count: u32) -> Self {
        self.config.probes = count;
        self
    }

    /// Closes after `count` successful probes.
    pub fn successes_to_close(mut self, count: u32) -> Self {
        self.config.successes_to_close = count;
        self
    }

    /// Opens again after `count` failed (or slow) probes in one half-open
    /// period. With more than one, half-open judges the probes' success
    /// ratio instead of reopening on any failure: `successes_to_close(2)`
    /// with `failures_to_reopen(2)` and 3 probes is a majority vote, which
    /// closes a breaker over an upstream that fails a third of its calls 3
    /// times in 4, where "3 successes, no failure" closes it 3 times in 10.
    pub fn failures_to_reopen(mut self, count: u32) -> Self {
        self.config.failures_to_reopen = count;
        self
    }

    /// Keeps the last `count` transitions for the snapshot.
    pub fn history(mut self, count: usize) -> Self {
        self.config.history = count;
        self
    }

    /// Seeds the jitter of the open duration, for exact tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Adds a listener for the breaker's events (transitions, rejections).
    pub fn on_event(mut self, listener: impl Listener<BreakerEvent>) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Turns this configuration into the template of a set of keyed breakers
    /// (one per host, say): see [`keyed`](crate::keyed).
    pub fn keyed(self) -> crate::keyed::KeyedBreakersBuilder {
        crate::keyed::KeyedBreakersBuilder::new(self)
    }

    /// Validates the configuration and builds the breaker.
    pub fn build(self) -> Result<Breaker, ConfigError> {
        self.validate()?;
        Ok(Breaker::from_parts(
            self.name,
            Arc::new(self.config),
            self.listeners,
        ))
    }

    /// Checks the configuration without building.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        let rate_ok = |r: f64| r > 0.0 && r <= 1.0;
        match c.window {
            WindowKind::Count { size } => {
                if size == 0 {
                    return Err(invalid("window", "a count window needs at least one call"));
                }
                if size > 1_000_000 {
                    return Err(invalid(
                        "window",
                        format!("a count window of {size} calls is too large (at most 1,000,000)"),
                    ));
                }
                if c.minimum_calls > size {
                    return Err(invalid(
                        "minimum_calls",
                        format!(
                            "{} is more than the window of {size} calls can hold, so no rate would ever be judged",
                            c.minimum_calls
                        ),
                    ));
                }
            }
            WindowKind::Time { length, buckets } => {
                if buckets == 0 || buckets > 10_000 {
                    return Err(invalid(
                        "window",
                        format!("a time window needs between 1 and 10,000 buckets, got {buckets}"),
                    ));
                }
                if length.as_nanos() < u128::from(buckets) {
                    return Err(invalid(
                        "window",
                        format!("a time window of {length:?} is too short for {buckets} buckets"),
                    ));
                }
            }
        }
        if let Some(r) = c.failure_rate {
            if !rate_ok(r) {
                return Err(invalid(
                    "failure_rate",
                    format!("must be in (0, 1], got {r}"),
                ));
            }
        }
        if let Some((d, r)) = c.slow_call {
            if !rate_ok(r) {
                return Err(invalid(
                    "slow_call_rate",
                    format!("must be in (0, 1], got {r}"),
                ));
            }
            if d.is_zero() {
                return Err(invalid(
                    "slow_call_duration",
                    "must be longer than zero, or every call would be slow",
                ));
            }
        }
        if c.consecutive_failures == Some(0) {
            return Err(invalid("consecutive_failures", "must be at least 1"));
        }
        if c.failure_rate.is_none() && c.slow_call.is_none() && c.consecutive_failures.is_none() {
            return Err(invalid(
                "failure_rate",
                "no trip policy is set: set a failure rate, a slow-call rate or consecutive failures",
            ));
        }
        if c.minimum_calls == 0 {
            return Err(invalid("minimum_calls", "must be at least 1"));
        }
        if c.probes == 0 {
            return Err(invalid(
                "permitted_probes",
                "must be at least 1, or the breaker could never close again",
            ));
        }
        if c.successes_to_close == 0 {
            return Err(invalid("successes_to_close", "must be at least 1"));
        }
        if c.failures_to_reopen == 0 {
            return Err(invalid("failures_to_reopen", "must be at least 1"));
        }
        c.open
            .validate()
            .map_err(|e| invalid("open_duration", e.reason()))?;
        Ok(())
    }
}

/// Builds the breaker's configuration errors.
fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new("circuit breaker", field, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: BreakerBuilder) -> &'static str {
        b.build().expect_err("must be rejected").field()
    }

    #[test]
    fn every_bad_setting_is_a_typed_error() {
        let b = BreakerBuilder::new;
        assert_eq!(field(b().failure_rate(0.0)), "failure_rate");
        assert_eq!(field(b().failure_rate(f64::NAN)), "failure_rate");
        assert_eq!(field(b().failure_rate(1.01)), "failure_rate");
        assert_eq!(field(b().count_window(0)), "window");
        assert_eq!(field(b().count_window(5).minimum_calls(6)), "minimum_calls");
        assert_eq!(field(b().minimum_calls(0)), "minimum_calls");
        assert_eq!(field(b().time_window(Duration::from_secs(1), 0)), "window");
        assert_eq!(
            field(b().time_window(Duration::from_nanos(5), 10)),
            "window"
        );
        assert_eq!(
            field(b().slow_calls(Duration::from_secs(1), 2.0)),
            "slow_call_rate"
        );
        assert_eq!(
            field(b().slow_calls(Duration::ZERO, 0.5)),
            "slow_call_duration"
        );
        assert_eq!(field(b().consecutive_failures(0)), "consecutive_failures");
        assert_eq!(
            field(b().without_failure_rate().without_consecutive_failures()),
            "failure_rate"
        );
        assert_eq!(field(b().permitted_probes(0)), "permitted_probes");
        assert_eq!(field(b().successes_to_close(0)), "successes_to_close");
        assert_eq!(field(b().failures_to_reopen(0)), "failures_to_reopen");
        assert_eq!(
            field(b().open_backoff(BackoffPolicy::exponential(Duration::from_secs(1), 0.5))),
            "open_duration"
        );
        let msg = b().failure_rate(2.0).build().unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid circuit breaker configuration: `failure_rate` must be in (0, 1], got 2"
        );
    }

    #[test]
    fn good_settings_build() {
        assert!(BreakerBuilder::new().build().is_ok());
        assert!(BreakerBuilder::new()
            .without_failure_rate()
            .consecutive_failures(3)
            .open_for(Duration::ZERO)
            .build()
            .is_ok());
    }
}
