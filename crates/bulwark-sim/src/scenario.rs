//! Scenarios: what the upstream does, and what load it gets, over time.
//!
//! A [`Scenario`] is data: it reads from and writes to TOML or JSON, so a
//! scenario can be written by hand or recorded from production numbers. The
//! upstream follows its [`healthy`](Scenario::healthy) [`Behavior`] except
//! while a [`Phase`] is active, whose settings then override it (for all
//! hosts, or for the hosts it names).
//!
//! ```
//! use bulwark::sim::Scenario;
//!
//! let scenario: Scenario = toml::from_str(r#"
//!     name = "payments-brownout"
//!     duration = "2m"
//!     rate = 150.0
//!     deadline = "1s"
//!
//!     [healthy]
//!     latency = { median = "30ms", spread = 0.4 }
//!     capacity = 40
//!
//!     [[phases]]
//!     from = "30s"
//!     until = "90s"
//!     errors = 0.25
//!     latency_factor = 5.0
//! "#).unwrap();
//! scenario.validate().unwrap();
//! assert_eq!(scenario.fault_window().unwrap().0.as_secs(), 30);
//! ```

use bulwark_core::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One scripted run: load, deadline, the upstream's healthy behaviour, and
/// the phases in which it misbehaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name, used in reports and on the command line.
    pub name: String,
    /// What the scenario shows, in a sentence.
    #[serde(default)]
    pub description: String,
    /// How long load is offered. Every request started gets its whole
    /// deadline, so a run ends `deadline` after this.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Requests per second offered outside phases that set their own rate
    /// (open loop, Poisson arrivals).
    pub rate: f64,
    /// The client's deadline, outside the stack: a request not answered
    /// within it counts as failed (kind `deadline`).
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// The share of requests that are not idempotent (sent once, never
    /// retried by a stack that respects idempotency).
    #[serde(default)]
    pub non_idempotent: f64,
    /// How many upstream hosts the load is spread over (evenly, at random).
    #[serde(default = "one")]
    pub hosts: u32,
    /// What the upstream does when no phase says otherwise.
    #[serde(default)]
    pub healthy: Behavior,
    /// The misbehaviour, in time order or not.
    #[serde(default)]
    pub phases: Vec<Phase>,
}

fn one() -> u32 {
    1
}

/// How an upstream host behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behavior {
    /// How long an answer takes without contention.
    pub latency: Latency,
    /// Requests the host serves at full speed at once. Beyond it, every
    /// answer in progress slows in proportion (processor sharing), so
    /// throughput stays at `capacity / mean latency` and queues build.
    pub capacity: u32,
    /// The share of answers that are errors.
    pub errors: f64,
    /// When set, errors come back after this fixed time without using
    /// capacity (a fast `503`, a refused connection); when unset they take
    /// as long as a normal answer and use capacity like one.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub error_latency: Option<Duration>,
    /// A share of very slow answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow: Option<SlowTail>,
    /// A share of answers that say "retry after D", fast and without using
    /// capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<RateLimit>,
    /// The share of requests that never get an answer (until cancelled).
    pub black_hole: f64,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            latency: Latency::default(),
            capacity: 60,
            errors: 0.0,
            error_latency: None,
            slow: None,
            rate_limited: None,
            black_hole: 0.0,
        }
    }
}

/// A lognormal latency: half the answers are faster than `median`; `spread`
/// is the standard deviation of its logarithm (0 makes it constant, 0.5 is
/// typical of a service, 1 is a wide tail).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// The median.
    #[serde(with = "humantime_serde")]
    pub median: Duration,
    /// The standard deviation of the logarithm.
    #[serde(default)]
    pub spread: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            median: Duration::from_millis(20),
            spread: 0.5,
        }
    }
}

impl Latency {
    /// The mean of the distribution, `median × exp(spread² / 2)`.
    pub fn mean(&self) -> Duration {
        self.median
            .mul_f64((self.spread * self.spread / 2.0).exp().min(1e6))
    }
}

/// A share of answers that take a fixed, long time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowTail {
    /// The share of answers, in `[0, 1]`.
    pub share: f64,
    /// How long each takes (before contention).
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
}

/// A share of answers that ask the client to retry later.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// The share of answers, in `[0, 1]`.
    pub share: f64,
    /// What they ask for (an HTTP `Retry-After`).
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

/// A time range in which the upstream (or some hosts) misbehaves: every
/// setting given overrides the healthy behaviour.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Phase {
    /// When it starts, from the start of the run.
    #[serde(with = "humantime_serde")]
    pub from: Duration,
    /// When it ends.
    #[serde(with = "humantime_serde")]
    pub until: Duration,
    /// The hosts it affects (numbered from 0); all when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<u32>>,
    /// Repeats the phase, shifted by `every` each time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    /// Multiplies every latency (answers, slow tail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_factor: Option<f64>,
    /// Replaces the latency distribution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Replaces the capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// Replaces the share of errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    /// Makes errors fast (see [`Behavior::error_latency`]).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub error_latency: Option<Duration>,
    /// Replaces the slow tail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow: Option<SlowTail>,
    /// Replaces rate limiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<RateLimit>,
    /// Replaces the share of black-holed requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub black_hole: Option<f64>,
    /// The load offered while the phase lasts, in requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// Repeats a phase: `times` in all, each `every` after the one before.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// How many times in all (1 is the phase alone).
    pub times: u32,
    /// From one start to the next.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
}

impl Phase {
    fn new(from_secs: u64, until_secs: u64) -> Self {
        Phase {
            from: Duration::from_secs(from_secs),
            until: Duration::from_secs(until_secs),
            ..Phase::default()
        }
    }

    fn applies_to(&self, host: u32) -> bool {
        self.hosts.as_ref().is_none_or(|h| h.contains(&host))
    }

    /// The phase's occurrences, repeats expanded, as `(from, until)`.
    fn occurrences(&self) -> impl Iterator<Item = (Duration, Duration)> + '_ {
        let (times, every) = self
            .repeat
            .map_or((1, Duration::ZERO), |r| (r.times.max(1), r.every));
        (0..times).map(move |i| {
            let shift = every.saturating_mul(i);
            (
                self.from.saturating_add(shift),
                self.until.saturating_add(shift),
            )
        })
    }

    fn active_at(&self, t: Duration) -> bool {
        self.occurrences()
            .any(|(from, until)| from <= t && t < until)
    }

    fn apply(&self, b: &mut Behavior) {
        if let Some(l) = self.latency {
            b.latency = l;
        }
        if let Some(f) = self.latency_factor {
            b.latency.median = b.latency.median.mul_f64(f);
            if let Some(slow) = &mut b.slow {
                slow.latency = slow.latency.mul_f64(f);
            }
        }
        if let Some(c) = self.capacity {
            b.capacity = c;
        }
        if let Some(e) = self.errors {
            b.errors = e;
        }
        if self.error_latency.is_some() {
            b.error_latency = self.error_latency;
        }
        if let Some(s) = self.slow {
            let factor = self.latency_factor.unwrap_or(1.0);
            b.slow = Some(SlowTail {
                share: s.share,
                latency: s.latency.mul_f64(factor),
            });
        }
        if self.rate_limited.is_some() {
            b.rate_limited = self.rate_limited;
        }
        if let Some(bh) = self.black_hole {
            b.black_hole = bh;
        }
    }
}

impl Scenario {
    /// What host `host` does at `t` from the start of the run.
    pub fn behavior_at(&self, host: u32, t: Duration) -> Behavior {
        let mut b = self.healthy.clone();
        for phase in &self.phases {
            if phase.applies_to(host) && phase.active_at(t) {
                phase.apply(&mut b);
            }
        }
        b
    }

    /// The load offered at `t`, in requests per second.
    pub fn rate_at(&self, t: Duration) -> f64 {
        self.phases
            .iter()
            .rev()
            .filter(|p| p.active_at(t))
            .find_map(|p| p.rate)
            .unwrap_or(self.rate)
    }

    /// From the start of the first phase to the end of the last one: the
    /// window that "during the fault" figures are computed over. `None`
    /// for a scenario without phases.
    pub fn fault_window(&self) -> Option<(Duration, Duration)> {
        let all = || self.phases.iter().flat_map(Phase::occurrences);
        let from = all().map(|(f, _)| f).min()?;
        let until = all().map(|(_, u)| u).max()?;
        Some((from, until))
    }

    /// Every phase's occurrences (repeats expanded), as `(from, until)`, in
    /// the order the phases are listed.
    pub fn phase_windows(&self) -> Vec<(Duration, Duration)> {
        self.phases.iter().flat_map(Phase::occurrences).collect()
    }

    /// The times at which the upstream's behaviour or the load may change.
    pub(crate) fn boundaries(&self) -> Vec<Duration> {
        let mut b: Vec<Duration> = self
            .phases
            .iter()
            .flat_map(Phase::occurrences)
            .flat_map(|(f, u)| [f, u])
            .collect();
        b.sort();
        b.dedup();
        b
    }

    /// The hosts that no phase touches: those whose goodput should not
    /// suffer (used by "one bad host" scenarios). Empty when every phase
    /// applies to every host.
    pub fn healthy_hosts(&self) -> Vec<u32> {
        (0..self.hosts)
            .filter(|h| {
                self.phases
                    .iter()
                    .all(|p| p.hosts.as_ref().is_some_and(|hs| !hs.contains(h)))
            })
            .collect()
    }

    /// Checks that the scenario can run: positive rates and durations,
    /// shares in `[0, 1]`, phases that end after they start, hosts that
    /// exist. The error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: String| {
            Err(ConfigError::new("simulation scenario", field, reason))
        };
        let share = |field: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                bad(field, format!("must be in [0, 1], got {v}"))
            }
        };
        let rate = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1_000_000.0 {
                Ok(())
            } else {
                bad(
                    field,
                    format!("must be in (0, 1000000] requests/s, got {v}"),
                )
            }
        };
        const DAY: Duration = Duration::from_secs(24 * 3600);
        if self.name.is_empty() {
            return bad("name", "must not be empty".into());
        }
        if self.duration.is_zero() || self.duration > DAY {
            return bad(
                "duration",
                format!("must be in (0, 24h], got {:?}", self.duration),
            );
        }
        if self.deadline.is_zero() || self.deadline > DAY {
            return bad(
                "deadline",
                format!("must be in (0, 24h], got {:?}", self.deadline),
            );
        }
        rate("rate", self.rate)?;
        share("non_idempotent", self.non_idempotent)?;
        if !(1..=1024).contains(&self.hosts) {
            return bad(
                "hosts",
                format!("must be between 1 and 1024, got {}", self.hosts),
            );
        }
        let behavior = |b: &Behavior| -> Result<(), ConfigError> {
            if b.capacity == 0 {
                return bad("capacity", "must be at least 1".into());
            }
            let l = b.latency;
            if l.median.is_zero() || l.median > DAY {
                return bad(
                    "latency.median",
                    format!("must be in (0, 24h], got {:?}", l.median),
                );
            }
            if !(l.spread.is_finite() && (0.0..=3.0).contains(&l.spread)) {
                return bad(
                    "latency.spread",
                    format!("must be in [0, 3], got {}", l.spread),
                );
            }
            share("errors", b.errors)?;
            share("black_hole", b.black_hole)?;
            if let Some(s) = b.slow {
                share("slow.share", s.share)?;
                if s.latency > DAY {
                    return bad(
                        "slow.latency",
                        format!("must be at most 24h, got {:?}", s.latency),
                    );
                }
            }
            if let Some(r) = b.rate_limited {
                share("rate_limited.share", r.share)?;
                if r.retry_after > DAY {
                    return bad(
                        "rate_limited.retry_after",
                        format!("must be at most 24h, got {:?}", r.retry_after),
                    );
                }
            }
            if b.error_latency.is_some_and(|d| d > DAY) {
                return bad("error_latency", "must be at most 24h".into());
            }
            Ok(())
        };
        behavior(&self.healthy)?;
        for p in &self.phases {
            if p.until <= p.from {
                return bad(
                    "phases.until",
                    format!("must be after `from` ({:?}), got {:?}", p.from, p.until),
                );
            }
            if let Some(r) = p.repeat {
                if r.times > 10_000 {
                    return bad(
                        "phases.repeat.times",
                        format!("must be at most 10000, got {}", r.times),
                    );
                }
                if r.times > 1 && r.every.is_zero() {
                    return bad("phases.repeat.every", "must be longer than zero".into());
                }
            }
            if let Some(f) = p.latency_factor {
                if !(f.is_finite() && f > 0.0 && f <= 10_000.0) {
                    return bad(
                        "phases.latency_factor",
                        format!("must be in (0, 10000], got {f}"),
                    );
                }
            }
            if let Some(r) = p.rate {
                rate("phases.rate", r)?;
            }
            if let Some(hosts) = &p.hosts {
                if let Some(h) = hosts.iter().find(|h| **h >= self.hosts) {
                    return bad(
                        "phases.hosts",
                        format!("host {h} does not exist (the scenario has {})", self.hosts),
                    );
                }
            }
            let mut b = self.healthy.clone();
            p.apply(&mut b);
            behavior(&b)?;
        }
        Ok(())
    }

    /// Reads scenarios from a TOML document with one `[[scenario]]` table
    /// each, or a JSON array of scenarios (by the first character).
    pub fn parse_many(text: &str) -> Result<Vec<Scenario>, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            scenario: Vec<Scenario>,
        }
        let parsed = if text.trim_start().starts_with('[') && !text.trim_start().starts_with("[[") {
            serde_json::from_str::<Vec<Scenario>>(text).map_err(|e| e.to_string())
        } else {
            toml::from_str::<File>(text)
                .map(|f| f.scenario)
                .map_err(|e| e.to_string())
        };
        let scenarios = parsed.map_err(|e| ConfigError::new("simulation scenario", "file", e))?;
        for s in &scenarios {
            s.validate()?;
        }
        Ok(scenarios)
    }

    /// The built-in scenarios, every one starting and ending healthy.
    ///
    /// All share one setting, after the independent harness that first
    /// measured Bulwark's defaults: open loop at 200 requests/s, an upstream
    /// of capacity 60 in flight with a median latency of 20 ms (lognormal,
    /// spread 0.5), a client deadline of 2 s, 10% of requests not
    /// idempotent.
    ///
    /// | name | the fault |
    /// |---|---|
    /// | `outage` | 110 s of fast errors (every answer fails in 2 ms) |
    /// | `black-hole` | 60 s in which no request is ever answered |
    /// | `brownout` | 180 s with 30% errors and every answer 10× slower |
    /// | `latency-spike` | 60 s in which 2% of answers take 3 s |
    /// | `flapping` | 12 cycles of 10 s of fast errors and 10 s healthy |
    /// | `rate-limited` | 60 s in which half the answers are "retry after 2 s" |
    /// | `overload` | 60 s of load at twice what the upstream can serve |
    /// | `slow-recovery` | 50 s outage, then 60 s back at a tenth of its capacity |
    /// | `one-bad-host` | four hosts; one fails every request for 120 s |
    /// | `quiet-outage` | a client at 2 requests/s through a 60 s outage |
    pub fn builtin() -> Vec<Scenario> {
        let base = |name: &str, description: &str, duration: u64| Scenario {
            name: name.into(),
            description: description.into(),
            duration: Duration::from_secs(duration),
            rate: 200.0,
            deadline: Duration::from_secs(2),
            non_idempotent: 0.1,
            hosts: 1,
            healthy: Behavior::default(),
            phases: Vec::new(),
        };
        let fast_errors = |from, until| Phase {
            errors: Some(1.0),
            error_latency: Some(Duration::from_millis(2)),
            ..Phase::new(from, until)
        };
        let mut all = Vec::new();

        let mut s = base("outage", "every answer fails fast for 110 s", 170);
        s.phases.push(fast_errors(20, 130));
        all.push(s);

        let mut s = base("black-hole", "no request is answered for 60 s", 110);
        s.phases.push(Phase {
            black_hole: Some(1.0),
            ..Phase::new(20, 80)
        });
        all.push(s);

        let mut s = base(
            "brownout",
            "30% of answers fail and every answer is 10x slower for 180 s",
            230,
        );
        s.phases.push(Phase {
            errors: Some(0.3),
            latency_factor: Some(10.0),
            ..Phase::new(20, 200)
        });
        all.push(s);

        let mut s = base("latency-spike", "2% of answers take 3 s for 60 s", 110);
        s.phases.push(Phase {
            slow: Some(SlowTail {
                share: 0.02,
                latency: Duration::from_secs(3),
            }),
            ..Phase::new(20, 80)
        });
        all.push(s);

        let mut s = base(
            "flapping",
            "12 cycles of 10 s failing fast and 10 s healthy",
            290,
        );
        s.phases.push(Phase {
            repeat: Some(Repeat {
                times: 12,
                every: Duration::from_secs(20),
            }),
            ..fast_errors(20, 30)
        });
        all.push(s);

        let mut s = base(
            "rate-limited",
            "half the answers say: retry after 2 s, for 60 s",
            110,
        );
        s.phases.push(Phase {
            rate_limited: Some(RateLimit {
                share: 0.5,
                retry_after: Duration::from_secs(2),
            }),
            ..Phase::new(20, 80)
        });
        all.push(s);

        let mut s = base(
            "overload",
            "load at twice what the upstream can serve, for 60 s",
            110,
        );
        // A smaller upstream, so that twice its throughput stays cheap to
        // simulate: capacity 20 at a mean of 22.7 ms serves 883 requests/s.
        s.healthy.capacity = 20;
        let throughput = 20.0 / s.healthy.latency.mean().as_secs_f64();
        s.phases.push(Phase {
            rate: Some((2.0 * throughput).round()),
            ..Phase::new(20, 80)
        });
        all.push(s);

        let mut s = base(
            "slow-recovery",
            "a 50 s outage, then 60 s back at a tenth of its capacity",
            160,
        );
        s.phases.push(fast_errors(20, 70));
        s.phases.push(Phase {
            capacity: Some(6),
            ..Phase::new(70, 130)
        });
        all.push(s);

        let mut s = base(
            "one-bad-host",
            "four hosts; one fails every request fast for 120 s",
            170,
        );
        s.hosts = 4;
        s.phases.push(Phase {
            hosts: Some(vec![0]),
            ..fast_errors(20, 140)
        });
        all.push(s);

        let mut s = base(
            "quiet-outage",
            "a client at 2 requests/s through a 60 s outage",
            110,
        );
        s.rate = 2.0;
        s.phases.push(fast_errors(20, 80));
        all.push(s);

        all
    }

    /// The built-in scenario called `name`.
    pub fn named(name: &str) -> Option<Scenario> {
        Self::builtin().into_iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_round_trip() {
        for s in Scenario::builtin() {
            s.validate().unwrap();
            let json = serde_json::to_string(&s).unwrap();
            let back: Scenario = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s, "{}", s.name);
            let (from, until) = s.fault_window().unwrap();
            assert!(
                from > Duration::ZERO && until < s.duration,
                "{} must start and end healthy",
                s.name
            );
        }
    }

    #[test]
    fn phases_override_and_repeat() {
        let s = Scenario::named("flapping").unwrap();
        assert_eq!(s.behavior_at(0, Duration::from_secs(25)).errors, 1.0);
        assert_eq!(s.behavior_at(0, Duration::from_secs(35)).errors, 0.0);
        assert_eq!(s.behavior_at(0, Duration::from_secs(245)).errors, 1.0);
        assert_eq!(s.behavior_at(0, Duration::from_secs(265)).errors, 0.0);
        assert_eq!(
            s.fault_window(),
            Some((Duration::from_secs(20), Duration::from_secs(250)))
        );
        let host = Scenario::named("one-bad-host").unwrap();
        assert_eq!(host.behavior_at(0, Duration::from_secs(30)).errors, 1.0);
        assert_eq!(host.behavior_at(1, Duration::from_secs(30)).errors, 0.0);
        assert_eq!(host.healthy_hosts(), vec![1, 2, 3]);
        let overload = Scenario::named("overload").unwrap();
        assert_eq!(overload.rate_at(Duration::from_secs(10)), 200.0);
        assert!(overload.rate_at(Duration::from_secs(30)) > 1700.0);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut s = Scenario::named("brownout").unwrap();
        s.phases[0].errors = Some(1.5);
        assert_eq!(s.validate().unwrap_err().field(), "errors");
        let mut s = Scenario::named("brownout").unwrap();
        s.phases[0].until = s.phases[0].from;
        assert_eq!(s.validate().unwrap_err().field(), "phases.until");
        let mut s = Scenario::named("brownout").unwrap();
        s.rate = f64::NAN;
        assert_eq!(s.validate().unwrap_err().field(), "rate");
        let mut s = Scenario::named("one-bad-host").unwrap();
        s.phases[0].hosts = Some(vec![9]);
        assert_eq!(s.validate().unwrap_err().field(), "phases.hosts");
        let err = Scenario::parse_many("[[scenario]]\nname = \"x\"\nbogus = 1\n").unwrap_err();
        assert_eq!(err.field(), "file");
    }
}
