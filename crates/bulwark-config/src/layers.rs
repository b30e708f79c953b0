//! The configuration of each layer: serde structs with documented defaults.
//!
//! Durations are written the humantime way: `"250ms"`, `"30s"`, `"5m"`,
//! `"1h 30m"`, and none may be longer than [`MAX_DURATION`] (one year): a
//! longer one (`"18446744073709551615s"`, `"500000000000y"`) is a typo or an
//! attempt to say "never", and is refused with a [`LoadError`] naming the
//! setting rather than left to overflow a deadline. Unknown keys are errors
//! (a typo never silently leaves a default in place). Every struct is `#[serde(default)]`: a key left out
//! takes the shared default (`[defaults.<layer>]`), and that one the
//! built-in default listed on each field.

use crate::error::LoadError;
use bulwark_breaker::{Breaker, BreakerBuilder};
use bulwark_core::backoff::{BackoffPolicy, Jitter};
use bulwark_retry::{RetryBudget, RetryLayer};
use serde::{Deserialize, Serialize};
use std::time::Duration;

fn rate_ok(r: f64) -> bool {
    r > 0.0 && r <= 1.0
}

/// The longest duration any setting accepts: one year (365 days). Longer
/// values are refused, naming the setting.
///
/// ```
/// use bulwark::config::ResilienceConfig;
///
/// let err = ResilienceConfig::from_toml_str("[timeout.p]\ntotal = \"18446744073709551615s\"").unwrap_err();
/// assert_eq!(err.path(), "timeout.p.total");
/// assert!(err.reason().starts_with("must be at most 1 year"));
/// ```
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Refuses the first of `durations` longer than [`MAX_DURATION`].
fn check_durations<const N: usize>(
    at: &str,
    durations: [(&str, Option<Duration>); N],
) -> Result<(), LoadError> {
    for (field, d) in durations {
        if let Some(d) = d.filter(|d| *d > MAX_DURATION) {
            return Err(LoadError::invalid(
                at,
                field,
                format!("must be at most 1 year (365 days), got {d:?}"),
            ));
        }
    }
    Ok(())
}

/// Which calls a breaker's rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The last `window_size` calls.
    Count,
    /// The calls of the last `window_duration`, in `window_buckets` buckets
    /// (the default).
    #[default]
    Time,
}

/// A circuit breaker (`[breaker.NAME]`, `[defaults.breaker]`).
///
/// The built-in defaults are [`Breaker::builder`]'s, where each is
/// explained by the simulator scenario that chose it.
///
/// ```toml
/// [breaker.payments]
/// failure_rate = 0.2
/// minimum_calls = 20
/// open_for = "10s"
/// slow_call_duration = "500ms"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// `time` (default) or `count`.
    pub window: WindowKind,
    /// Calls in a count window (with `window = "count"`). Default 100.
    pub window_size: u32,
    /// Length of a time window. Default `"10s"`.
    #[serde(with = "humantime_serde")]
    pub window_duration: Duration,
    /// Buckets of a time window. Default 10.
    pub window_buckets: u32,
    /// Trip when this share of the window failed, in (0, 1]. Default 0.5.
    pub failure_rate: f64,
    /// Calls at least this long are slow. Default: none (no slow-call rule).
    #[serde(with = "humantime_serde")]
    pub slow_call_duration: Option<Duration>,
    /// Trip when this share of the window was slow, in (0, 1] (with
    /// `slow_call_duration`). Default 0.5.
    pub slow_call_rate: f64,
    /// Also trip after this many failures in a row. Default 10.
    pub consecutive_failures: Option<u32>,
    /// Judge no rate before the window holds this many calls. Default 20.
    pub minimum_calls: u32,
    /// How long to stay open after a trip. Default `"200ms"`.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Multiply the open duration by this after each trip from half-open
    /// (1 keeps it fixed), at least 1. Default 1.5.
    pub open_backoff_factor: f64,
    /// Cap of a growing open duration. Default: 2.5 × `open_for` (500 ms
    /// with the default `open_for`), so setting `open_for` alone keeps the
    /// default shape.
    #[serde(with = "humantime_serde")]
    pub open_for_max: Option<Duration>,
    /// Randomisation of the open duration. Default `equal`.
    pub open_jitter: JitterKind,
    /// Probes allowed at once in half-open. Default 3.
    pub permitted_probes: u32,
    /// Successful probes that close the breaker. Default 2.
    pub successes_to_close: u32,
    /// Failed probes that open it again. Default 2.
    pub failures_to_reopen: u32,
    /// Share this breaker with the fleet (default `false`; needs `[fleet]`
    /// and the `fleet` feature): a gate in front of the local breaker
    /// opens on every instance when the fleet's `failure_rate` over
    /// `window_duration` (1 s to 10 min) crosses the threshold, with at
    /// least `minimum_calls` in the fleet's window, for `open_for`; one
    /// instance at a time probes. The local breaker stays, with all its
    /// settings.
    ///
    /// ```toml
    /// [breaker.payments]
    /// shared = true
    /// failure_rate = 0.5
    /// minimum_calls = 100   # the fleet's calls, not one instance's
    /// window_duration = "10s"
    /// ```
    pub shared: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: WindowKind::Time,
            window_size: 100,
            window_duration: Duration::from_secs(10),
            window_buckets: 10,
            failure_rate: 0.5,
            slow_call_duration: None,
            slow_call_rate: 0.5,
            consecutive_failures: Some(10),
            minimum_calls: 20,
            open_for: Duration::from_millis(200),
            open_backoff_factor: 1.5,
            open_for_max: None,
            open_jitter: JitterKind::Equal,
            permitted_probes: 3,
            successes_to_close: 2,
            failures_to_reopen: 2,
            shared: false,
        }
    }
}

impl BreakerConfig {
    /// Checks every field; `at` is where this configuration sits (e.g.
    /// `breaker.payments`), for the error's path.
    ///
    /// # Errors
    ///
    /// The first field that cannot work, and why.
    pub fn validate(&self, at: &str) -> Result<(), LoadError> {
        let err = |field: &str, reason: String| Err(LoadError::invalid(at, field, reason));
        check_durations(
            at,
            [
                ("window_duration", Some(self.window_duration)),
                ("slow_call_duration", self.slow_call_duration),
                ("open_for", Some(self.open_for)),
                ("open_for_max", self.open_for_max),
            ],
        )?;
        // The size is checked whatever the window kind, so a bad one is
        // never silently ignored.
        if self.window_size == 0 {
            return err("window_size", "must be at least 1 call".into());
        }
        if self.window_size > 1_000_000 {
            return err(
                "window_size",
                format!("must be at most 1000000, got {}", self.window_size),
            );
        }
        match self.window {
            WindowKind::Count => {
                if self.minimum_calls > self.window_size {
                    return err(
                        "minimum_calls",
                        format!(
                            "{} is more than the window of {} calls can hold",
                            self.minimum_calls, self.window_size
                        ),
                    );
                }
            }
            WindowKind::Time => {
                if self.window_duration.is_zero() {
                    return err("window_duration", "must be longer than zero".into());
                }
                if !(1..=10_000).contains(&self.window_buckets) {
                    return err(
                        "window_buckets",
                        format!("must be between 1 and 10000, got {}", self.window_buckets),
                    );
                }
                if self.window_duration.as_nanos() < u128::from(self.window_buckets) {
                    return err(
                        "window_duration",
                        format!(
                            "{:?} is too short for {} buckets (window_buckets): each bucket needs at least 1ns",
                            self.window_duration, self.window_buckets
                        ),
                    );
                }
            }
        }
        if !rate_ok(self.failure_rate) {
            return err(
                "failure_rate",
                format!("must be in (0, 1], got {}", self.failure_rate),
            );
        }
        if !rate_ok(self.slow_call_rate) {
            return err(
                "slow_call_rate",
                format!("must be in (0, 1], got {}", self.slow_call_rate),
            );
        }
        if self.slow_call_duration == Some(Duration::ZERO) {
            return err(
                "slow_call_duration",
                "must be longer than zero, or every call would be slow".into(),
            );
        }
        if self.consecutive_failures == Some(0) {
            return err("consecutive_failures", "must be at least 1".into());
        }

        if self.minimum_calls == 0 {
            return err("minimum_calls", "must be at least 1".into());
        }
        if !(self.open_backoff_factor.is_finite() && self.open_backoff_factor >= 1.0) {
            return err(
                "open_backoff_factor",
                format!("must be at least 1, got {}", self.open_backoff_factor),
            );
        }
        if let Some(max) = self.open_for_max {
            if max < self.open_for {
                return err(
                    "open_for_max",
                    format!(
                        "must not be shorter than open_for ({:?}), got {max:?}",
                        self.open_for
                    ),
                );
            }
        }
        if self.permitted_probes == 0 {
            return err(
                "permitted_probes",
                "must be at least 1, or the breaker could never close again".into(),
            );
        }
        if self.successes_to_close == 0 {
            return err("successes_to_close", "must be at least 1".into());
        }
        if self.failures_to_reopen == 0 {
            return err("failures_to_reopen", "must be at least 1".into());
        }
        // The builder's own checks, in case they know more. The builder
        // calls the window setting `window`; here it is the length or size.
        self.builder().validate().map_err(|e| {
            let field = match (e.field(), self.window) {
                ("window", WindowKind::Count) => "window_size",
                ("window", WindowKind::Time) => "window_duration",
                (field, _) => field,
            };
            LoadError::setting(at, field, e)
        })
    }

    /// A breaker builder with these settings (not named, no listeners).
    pub fn builder(&self) -> BreakerBuilder {
        let mut b = Breaker::builder()
            .failure_rate(self.failure_rate)
            .minimum_calls(self.minimum_calls)
            .permitted_probes(self.permitted_probes)
            .successes_to_close(self.successes_to_close)
            .failures_to_reopen(self.failures_to_reopen);
        b = match self.window {
            WindowKind::Count => b.count_window(self.window_size),
            WindowKind::Time => b.time_window(self.window_duration, self.window_buckets),
        };
        if let Some(d) = self.slow_call_duration {
            b = b.slow_calls(d, self.slow_call_rate);
        }
        b = match self.consecutive_failures {
            Some(n) => b.consecutive_failures(n),
            None => b.without_consecutive_failures(),
        };
        let backoff = if self.open_backoff_factor == 1.0 {
            BackoffPolicy::constant(self.open_for)
        } else {
            BackoffPolicy::exponential(self.open_for, self.open_backoff_factor).with_max(
                self.open_for_max
                    .unwrap_or_else(|| self.open_for.saturating_mul(5) / 2),
            )
        };
        b.open_backoff(backoff.with_jitter(self.open_jitter.into()))
    }
}

/// How retry delays grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// Always `initial_backoff`.
    Constant,
    /// `initial_backoff`, then `backoff_step` more each time.
    Linear,
    /// `initial_backoff`, then times `backoff_factor` each time (default).
    #[default]
    Exponential,
}

impl From<JitterKind> for Jitter {
    fn from(kind: JitterKind) -> Jitter {
        match kind {
            JitterKind::None => Jitter::None,
            JitterKind::Full => Jitter::Full,
            JitterKind::Equal => Jitter::Equal,
            JitterKind::Decorrelated => Jitter::Decorrelated,
        }
    }
}

/// Randomisation of retry and open delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterKind {
    /// The delays as computed.
    None,
    /// Uniform in `[0, delay]` (default).
    #[default]
    Full,
    /// Uniform in `[delay / 2, delay]`.
    Equal,
    /// AWS's decorrelated jitter.
    Decorrelated,
}

/// Retry (`[retry.NAME]`, `[defaults.retry]`).
///
/// ```toml
/// [retry.payments]
/// max_attempts = 2
/// initial_backoff = "50ms"
/// budget = "shared"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts per call, the first included (1 disables retries). Default 3.
    pub max_attempts: u32,
    /// `constant`, `linear` or `exponential` (default).
    pub backoff: BackoffKind,
    /// The first delay. Default `"100ms"`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Growth of an exponential backoff, at least 1. Default 2.
    pub backoff_factor: f64,
    /// Step of a linear backoff. Default `"100ms"`.
    #[serde(with = "humantime_serde")]
    pub backoff_step: Duration,
    /// Longest delay. Default `"10s"`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// `none`, `full` (default), `equal` or `decorrelated`.
    pub jitter: JitterKind,
    /// Longest server pushback honoured. Default `"30s"`.
    #[serde(with = "humantime_serde")]
    pub max_pushback: Duration,
    /// No retry that could not start within this time of the call. Default:
    /// none.
    #[serde(with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// The retry budget (`[retry_budget.NAME]`) to draw on. Default: the one
    /// with this retry's name.
    pub budget: Option<String>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            backoff: BackoffKind::Exponential,
            initial_backoff: Duration::from_millis(100),
            backoff_factor: 2.0,
            backoff_step: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            jitter: JitterKind::Full,
            max_pushback: Duration::from_secs(30),
            deadline: None,
            budget: None,
        }
    }
}

impl RetryConfig {
    /// Checks every field (`at`: e.g. `retry.payments`).
    ///
    /// # Errors
    ///
    /// The first field that cannot work, and why.
    pub fn validate(&self, at: &str) -> Result<(), LoadError> {
        let err = |field: &str, reason: String| Err(LoadError::invalid(at, field, reason));
        check_durations(
            at,
            [
                ("initial_backoff", Some(self.initial_backoff)),
                ("backoff_step", Some(self.backoff_step)),
                ("max_backoff", Some(self.max_backoff)),
                ("max_pushback", Some(self.max_pushback)),
                ("deadline", self.deadline),
            ],
        )?;
        if self.max_attempts == 0 {
            return err(
                "max_attempts",
                "must be at least 1 (the first call counts)".into(),
            );
        }
        if self.max_attempts > 100 {
            return err(
                "max_attempts",
                format!("must be at most 100, got {}", self.max_attempts),
            );
        }
        if !(self.backoff_factor.is_finite() && self.backoff_factor >= 1.0) {
            return err(
                "backoff_factor",
                format!("must be at least 1, got {}", self.backoff_factor),
            );
        }
        if self.max_backoff < self.initial_backoff {
            return err(
                "max_backoff",
                format!(
                    "must not be shorter than initial_backoff ({:?}), got {:?}",
                    self.initial_backoff, self.max_backoff
                ),
            );
        }
        if self.deadline == Some(Duration::ZERO) {
            return err("deadline", "must be longer than zero".into());
        }
        if self.budget.as_deref() == Some("") {
            return err("budget", "must name a retry budget".into());
        }
        self.layer()
            .validate()
            .map_err(|e| LoadError::from_core(at, e))
    }

    /// The backoff these settings describe.
    pub fn backoff(&self) -> BackoffPolicy {
        let b = match self.backoff {
            BackoffKind::Constant => BackoffPolicy::constant(self.initial_backoff),
            BackoffKind::Linear => BackoffPolicy::linear(self.initial_backoff, self.backoff_step),
            BackoffKind::Exponential => {
                BackoffPolicy::exponential(self.initial_backoff, self.backoff_factor)
            }
        };
        b.with_jitter(self.jitter.into()).with_max(self.max_backoff)
    }

    /// A retry layer with these settings and the default budget (set the
    /// shared one with [`RetryLayer::budget`]).
    pub fn layer(&self) -> RetryLayer {
        let layer = RetryLayer::new()
            .max_attempts(self.max_attempts)
            .backoff(self.backoff())
            .max_pushback(self.max_pushback);
        match self.deadline {
            Some(d) => layer.deadline(d),
            None => layer,
        }
    }
}

/// A retry budget (`[retry_budget.NAME]`, `[defaults.retry_budget]`): over
/// `window`, retries may add `ratio` of the requests plus `min_per_sec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryBudgetConfig {
    /// Retries allowed per request, 0 to 1000. Default 0.2.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic. Default 10.
    pub min_per_sec: u32,
    /// How far back requests count, 10 ms to 1 h. Default `"10s"`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Share this budget with the fleet (default `false`; needs `[fleet]`
    /// and the `fleet` feature): the fleet's retries stay within `ratio`
    /// of the fleet's requests plus `min_per_sec` over `window` (1 s to
    /// 10 min), each instance spending a lease of them; without Redis,
    /// a local budget of the same settings.
    ///
    /// ```toml
    /// [retry_budget.payments]
    /// shared = true
    /// ratio = 0.1
    /// ```
    pub shared: bool,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            min_per_sec: 10,
            window: Duration::from_secs(10),
            shared: false,
        }
    }
}

impl RetryBudgetConfig {
    /// Checks every field (`at`: e.g. `retry_budget.payments`).
    ///
    /// # Errors
    ///
    /// The first field that cannot work, and why.
    pub fn validate(&self, at: &str) -> Result<(), LoadError> {
        check_durations(at, [("window", Some(self.window))])?;
        self.budget().map(drop).map_err(|e| e.at(at))
    }

    /// The budget these settings describe.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate), without the path.
    pub fn budget(&self) -> Result<RetryBudget, LoadError> {
        RetryBudget::ratio(self.ratio, self.min_per_sec, self.window)
            .map_err(|e| LoadError::from_core("", e))
    }
}

/// Timeouts (`[timeout.NAME]`, `[defaults.timeout]`); each is off unless
/// set.
///
/// ```toml
/// [timeout.payments]
/// total = "2s"      # the whole call, retries included
/// attempt = "500ms" # each attempt
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// Limit on the whole call, outside retry. Default: none.
    #[serde(with = "humantime_serde")]
    pub total: Option<Duration>,
    /// Limit on each attempt, inside retry. Default: none.
    #[serde(with = "humantime_serde")]
    pub attempt: Option<Duration>,
    /// Limit on waiting for the inner service to be ready (a full
    /// bulkhead), per attempt. Default: none.
    #[serde(with = "humantime_serde")]
    pub readiness: Option<Duration>,
}

impl TimeoutConfig {
    /// Checks every field (`at`: e.g. `timeout.payments`).
    ///
    /// # Errors
    ///
    /// A zero limit, one longer than [`MAX_DURATION`], or an attempt
    /// timeout not shorter than the total.
    pub fn validate(&self, at: &str) -> Result<(), LoadError> {
        check_durations(
            at,
            [
                ("total", self.total),
                ("attempt", self.attempt),
                ("readiness", self.readiness),
            ],
        )?;
        for (field, d) in [
            ("total", self.total),
            ("attempt", self.attempt),
            ("readiness", self.readiness),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(LoadError::invalid(
                    at,
                    field,
                    "must be longer than zero".into(),
                ));
            }
        }
        if self.readiness.is_some() && self.attempt.is_none() {
            return Err(LoadError::invalid(
                at,
                "readiness",
                "needs an attempt timeout: the readiness limit belongs to the attempt".into(),
            ));
        }
        if let (Some(total), Some(attempt)) = (self.total, self.attempt) {
            if attempt >= total {
                return Err(LoadError::invalid(
                    at,
                    "attempt",
                    format!(
                        "must be shorter than the total timeout ({total:?}), got {attempt:?}, or no retry could ever start"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A bulkhead (`[bulkhead.NAME]`, `[defaults.bulkhead]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// Calls in flight at once, at least 1. Default 64.
    pub max_concurrent: usize,
    /// How long a call may wait for a permit (`"0s"` fails fast). Default
    /// `"0s"`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Callers that may wait at once. Default 64.
    pub max_queued: usize,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            max_concurrent: 64,
            max_wait: Duration::ZERO,
            max_queued: 64,
        }
    }
}

impl BulkheadConfig {
    /// Checks every field (`at`: e.g. `bulkhead.payments`).
    ///
    /// # Errors
    ///
    /// A limit of 0, a wait longer than [`MAX_DURATION`], or a wait with no
    /// room to wait in.
    pub fn validate(&self, at: &str) -> Result<(), LoadError> {
        check_durations(at, [("max_wait", Some(self.max_wait))])?;
        if self.max_concurrent == 0 {
            return Err(LoadError::invalid(
                at,
                "max_concurrent",
                "must be at least 1".into(),
            ));
        }
        if !self.max_wait.is_zero() && self.max_queued == 0 {
            return Err(LoadError::invalid(
                at,
                "max_queued",
                "must be at least 1 when max_wait is set, or nobody could wait".into(),
            ));
        }
        Ok(())
    }

    /// A bulkhead builder with these settings.
    pub fn builder(&self) -> bulwark_bulkhead::BulkheadBuilder {
        bulwark_bulkhead::BulkheadLayer::builder()
            .max_concurrent(self.max_concurrent)
            .max_wait(self.max_wait)
            .max_queued(self.max_queued)
    }
}

/// Keyed breakers (`[keyed_breaker.NAME]`): one breaker per key, each
/// configured by `[breaker.NAME]` (or the breaker defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyedBreakerConfig {
    /// Keys kept at most. Default 1024.
    pub max_keys: usize,
    /// Keys idle this long go first. Default `"10m"`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for KeyedBreakerConfig {
    fn default() -> Self {
        KeyedBreakerConfig {
            max_keys: 1024,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

impl KeyedBreakerConfig {
    /// Checks every field (`at`: e.g. `keyed_breaker.hosts`).
    ///
    /// # Errors
    ///
    /// No room for a key, or a zero idle timeout (or one longer than
    /// [`MAX_DURATION`]).
    pub fn validate(&self, at: &str) -> Result<(), LoadError> {
        check_durations(at, [("idle_timeout", Some(self.idle_timeout))])?;
        if self.max_keys == 0 {
            return Err(LoadError::invalid(
                at,
                "max_keys",
                "must be at least 1".into(),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(LoadError::invalid(
                at,
                "idle_timeout",
                "must be longer than zero".into(),
            ));
        }
        Ok(())
    }
}

/// A rate limit (`[ratelimit.NAME]`, `[defaults.ratelimit]`): at most
/// `limit` calls per `per`, at most `burst` at once; with `shared = true`,
/// for the whole fleet (`bulwark-fleet`'s GCRA on Redis, synced through
/// `[fleet]`), else for this instance alone (GCRA in memory).
///
/// Only named sections limit anything (there is no default limit for every
/// upstream): `[defaults.ratelimit]` only fills in what a named section
/// leaves out. It is applied by
/// [`ResilienceConfig::client_layer`](crate::ResilienceConfig::client_layer)
/// (outermost, before the total timeout: it counts calls, not attempts;
/// retries are bounded by the retry budget) and by
/// [`ResilienceConfig::fleet_layer`](crate::ResilienceConfig::fleet_layer),
/// which goes in front of the HTTP stacks. A refused call gets
/// `RateLimited` at once, saying when to retry (HTTP: 429 and
/// `Retry-After`).
///
/// ```toml
/// [ratelimit.payments]
/// limit = 500     # calls
/// per = "1s"      # per second, for all instances together:
/// shared = true   # (needs [fleet])
/// burst = 50
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Calls admitted per `per`, at least 1; required in a named section.
    pub limit: Option<u32>,
    /// The period of the limit. Default `"1s"`.
    #[serde(with = "humantime_serde")]
    pub per: Option<Duration>,
    /// The most calls admitted at once after a quiet spell, at least 1.
    /// Default: `limit`.
    pub burst: Option<u32>,
    /// Share this limit with the fleet (`bulwark-fleet`'s fleet rate
    /// limiter, synced through `[fleet]`; default `false`).
    pub shared: bool,
}

impl RateLimitConfig {
    /// Checks every field (`at`: e.g. `ratelimit.payments`; under
    /// `defaults.` the limit may be left out).
    ///
    /// # Errors
    ///
    /// A missing or zero limit, a zero burst or period, or a rate finer
    /// than 1 µs between calls.
    pub fn validate(&self, at: &str) -> Result<(), LoadError> {
        check_durations(at, [("per", self.per)])?;
        if self.limit.is_none() && !at.starts_with("defaults") {
            return Err(LoadError::invalid(
                at,
                "limit",
                "is required: calls admitted per `per`".into(),
            ));
        }
        if self.limit.is_some() || self.burst.is_some() {
            self.rate(at)?;
        }
        Ok(())
    }

    /// The rate these settings describe (`at` for the error's path).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn rate(&self, at: &str) -> Result<bulwark_ratelimit::Rate, LoadError> {
        let limit = self.limit.unwrap_or(1);
        let rate = bulwark_ratelimit::Rate::new(limit, self.period())
            .map_err(|e| LoadError::invalid(at, e.field(), e.reason().to_owned()))?;
        match self.burst {
            Some(b) => rate
                .burst(b)
                .map_err(|e| LoadError::invalid(at, "burst", e.reason().to_owned())),
            None => Ok(rate),
        }
    }

    /// The period (`per`, default 1 s).
    pub fn period(&self) -> Duration {
        self.per.unwrap_or(Duration::from_secs(1))
    }
}
