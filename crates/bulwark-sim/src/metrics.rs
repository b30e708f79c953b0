//! What one run of one stack through one scenario measured.

use crate::scenario::Scenario;
use crate::upstream::{slot_of, Tally, UpstreamError, SLOT};
use bulwark_core::error::{find, is_rejection, CircuitOpen};
use bulwark_core::BoxError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Why a request of the load did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The upstream's own failure reached the caller.
    Upstream,
    /// A rate-limited answer reached the caller.
    RateLimited,
    /// A timeout in the stack fired.
    Timeout,
    /// An open circuit breaker refused the call.
    CircuitOpen,
    /// Another local refusal: a full bulkhead, load shedding, throttling.
    Rejected,
    /// The caller's deadline passed before the stack answered.
    Deadline,
    /// Any other error.
    Other,
}

impl FailureKind {
    /// Every kind, in report order.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Upstream,
        FailureKind::RateLimited,
        FailureKind::Timeout,
        FailureKind::CircuitOpen,
        FailureKind::Rejected,
        FailureKind::Deadline,
        FailureKind::Other,
    ];

    /// The kind of an error a stack returned, found anywhere in its
    /// `source()` chain (a refusal wins over what it may carry).
    pub fn of(error: &BoxError) -> FailureKind {
        let e: &(dyn std::error::Error + 'static) = &**error;
        if find::<CircuitOpen>(e).is_some() {
            FailureKind::CircuitOpen
        } else if is_rejection(e) || find::<tower::load_shed::error::Overloaded>(e).is_some() {
            FailureKind::Rejected
        } else if bulwark_timeout::error::is_timeout(e) {
            FailureKind::Timeout
        } else if let Some(u) = find::<UpstreamError>(e) {
            if u.is_rate_limited() {
                FailureKind::RateLimited
            } else {
                FailureKind::Upstream
            }
        } else {
            FailureKind::Other
        }
    }

    /// The lowercase name used in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Upstream => "upstream",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Timeout => "timeout",
            FailureKind::CircuitOpen => "circuit_open",
            FailureKind::Rejected => "rejected",
            FailureKind::Deadline => "deadline",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request of the load, as the caller saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) id: u64,
    pub(crate) host: u32,
    pub(crate) start: Duration,
    pub(crate) latency: Duration,
    pub(crate) failure: Option<FailureKind>,
}

/// The figures of one (scenario, stack) run. Times are virtual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Requests the load generator started.
    pub requests: u64,
    /// Requests that succeeded within their deadline.
    pub successes: u64,
    /// `successes / requests`.
    pub goodput: f64,
    /// Goodput of the requests started during the fault window.
    pub fault_goodput: Option<f64>,
    /// Goodput of the requests to hosts no phase touches (scenarios with
    /// several hosts, one of them bad).
    pub healthy_hosts_goodput: Option<f64>,
    /// Median latency of the successes.
    #[serde(with = "humantime_serde")]
    pub p50: Option<Duration>,
    /// 99th percentile latency of the successes.
    #[serde(with = "humantime_serde")]
    pub p99: Option<Duration>,
    /// Requests the upstream received per request of the load.
    pub amplification: f64,
    /// The same, over the fault window (upstream receipts in the window per
    /// request started in it).
    pub fault_amplification: Option<f64>,
    /// Requests the upstream received.
    pub upstream_received: u64,
    /// Requests the upstream answered successfully.
    pub upstream_served: u64,
    /// Requests the upstream answered successfully during the fault window.
    pub fault_upstream_served: Option<u64>,
    /// The most requests in progress at the upstream at once.
    pub peak_upstream_in_flight: u64,
    /// From the fault's start to the first request the stack refused without
    /// sending it upstream: how long the stack took to notice. `None` when
    /// it never did.
    #[serde(with = "humantime_serde")]
    pub detected_in: Option<Duration>,
    /// From the fault's end until a 5 s window of requests is at least 95%
    /// good. `None` when that never happened in the run.
    #[serde(with = "humantime_serde")]
    pub recovered_in: Option<Duration>,
    /// Retries that reached the upstream before the `Retry-After` of the
    /// request's previous answer had passed.
    pub early_retries: u64,
    /// Failures of each kind.
    pub failures: BTreeMap<FailureKind, u64>,
    /// The slowest 1% of the failures of each kind took at least this long
    /// (how fast a caller learns it failed).
    pub failure_p99: BTreeMap<FailureKind, Duration>,
    /// What the upstream received and served in each phase (repeats listed
    /// one by one).
    pub phases: Vec<PhaseCounts>,
}

/// What the upstream received and answered successfully during one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCounts {
    /// When the phase started.
    #[serde(with = "humantime_serde")]
    pub from: Duration,
    /// When it ended.
    #[serde(with = "humantime_serde")]
    pub until: Duration,
    /// Requests the upstream received (retries included).
    pub received: u64,
    /// Requests it answered successfully.
    pub served: u64,
}

/// Goodput and upstream load over time, for pictures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The width of a point, in seconds.
    pub step_secs: f64,
    /// Goodput of the requests started in each step (`None` without any).
    pub goodput: Vec<Option<f64>>,
    /// Requests the upstream received per request started, in each step.
    pub amplification: Vec<Option<f64>>,
    /// Sampled values of what the stack asked to watch (e.g. a breaker's
    /// state: 0 closed, 0.5 half-open, 1 open), as `(seconds, value)`.
    pub watched: BTreeMap<String, Vec<(f64, f64)>>,
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

pub(crate) fn compute(scenario: &Scenario, records: &[Record], tally: &Tally) -> Metrics {
    let requests = records.len() as u64;
    let ok = |r: &Record| r.failure.is_none();
    let successes = records.iter().filter(|r| ok(r)).count() as u64;
    let window = scenario.fault_window();
    let in_fault =
        |r: &Record| window.is_some_and(|(from, until)| r.start >= from && r.start < until);
    let fault_requests = records.iter().filter(|r| in_fault(r)).count() as u64;
    let fault_successes = records.iter().filter(|r| in_fault(r) && ok(r)).count() as u64;

    let healthy_hosts = scenario.healthy_hosts();
    let healthy_hosts_goodput = (scenario.hosts > 1 && !healthy_hosts.is_empty())
        .then(|| {
            let mine = records.iter().filter(|r| healthy_hosts.contains(&r.host));
            let (n, good) = mine.fold((0, 0), |(n, g), r| (n + 1, g + u64::from(ok(r))));
            ratio(good, n)
        })
        .flatten();

    let mut latencies: Vec<Duration> = records
        .iter()
        .filter(|r| ok(r))
        .map(|r| r.latency)
        .collect();
    latencies.sort_unstable();

    let received: u64 = tally.received.iter().map(|n| u64::from(*n)).sum();

    let served: u64 = tally.served.iter().map(|n| u64::from(*n)).sum();
    let in_slots = |counts: &[u32], from: Duration, until: Duration| -> u64 {
        let range = slot_of(from).min(counts.len())..slot_of(until).min(counts.len());
        counts[range].iter().map(|n| u64::from(*n)).sum()
    };
    let phases = scenario
        .phase_windows()
        .into_iter()
        .map(|(from, until)| PhaseCounts {
            from,
            until,
            received: in_slots(&tally.received, from, until),
            served: in_slots(&tally.served, from, until),
        })
        .collect();
    let fault_upstream_served = window.map(|(from, until)| in_slots(&tally.served, from, until));
    let fault_amplification = window
        .and_then(|(from, until)| ratio(in_slots(&tally.received, from, until), fault_requests));
    let detected_in = window.and_then(|(from, until)| {
        records
            .iter()
            .filter(|r| r.start >= from && r.start < until && r.failure.is_some())
            .filter(|r| tally.attempts.get(r.id as usize).copied().unwrap_or(0) == 0)
            .map(|r| (r.start + r.latency).saturating_sub(from))
            .min()
    });

    let recovered_in = window.and_then(|(_, until)| recovery(records, until, scenario.duration));

    let mut failures = BTreeMap::new();
    let mut failure_latencies: BTreeMap<FailureKind, Vec<Duration>> = BTreeMap::new();
    for r in records {
        if let Some(kind) = r.failure {
            *failures.entry(kind).or_insert(0) += 1;
            failure_latencies.entry(kind).or_default().push(r.latency);
        }
    }
    let failure_p99 = failure_latencies
        .into_iter()
        .filter_map(|(k, mut v)| {
            v.sort_unstable();
            percentile(&v, 0.99).map(|p| (k, p))
        })
        .collect();

    Metrics {
        requests,
        successes,
        goodput: ratio(successes, requests).unwrap_or(1.0),
        fault_goodput: ratio(fault_successes, fault_requests),
        healthy_hosts_goodput,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        amplification: ratio(received, requests).unwrap_or(0.0),
        fault_amplification,
        upstream_received: received,
        upstream_served: served,
        fault_upstream_served,
        peak_upstream_in_flight: tally.peak_in_flight,
        detected_in,
        recovered_in,
        early_retries: tally.early_retries,
        failures,
        failure_p99,
        phases,
    }
}

/// The first time from `fault_end` (in steps of 100 ms) at which the
/// requests started in the next 5 s are at least 95% good.
fn recovery(records: &[Record], fault_end: Duration, duration: Duration) -> Option<Duration> {
    const WINDOW: Duration = Duration::from_secs(5);
    let slots = slot_of(duration) + 1;
    let mut total = vec![0u32; slots];
    let mut good = vec![0u32; slots];
    for r in records {
        let s = slot_of(r.start).min(slots - 1);
        total[s] += 1;
        good[s] += u32::from(r.failure.is_none());
    }
    let per_window = slot_of(WINDOW);
    let first = slot_of(fault_end);
    (first..slots.saturating_sub(per_window)).find_map(|s| {
        let n: u32 = total[s..s + per_window].iter().sum();
        let g: u32 = good[s..s + per_window].iter().sum();
        (n > 0 && f64::from(g) >= 0.95 * f64::from(n))
            .then(|| (SLOT * s as u32).saturating_sub(fault_end))
    })
}

pub(crate) fn series(
    scenario: &Scenario,
    records: &[Record],
    tally: &Tally,
    watched: BTreeMap<String, Vec<(f64, f64)>>,
) -> Series {
    let step = Duration::from_secs(1);
    let steps = (scenario.duration.as_secs_f64() / step.as_secs_f64()).ceil() as usize;
    let mut total = vec![0u64; steps];
    let mut good = vec![0u64; steps];
    for r in records {
        let i = ((r.start.as_secs_f64() / step.as_secs_f64()) as usize).min(steps - 1);
        total[i] += 1;
        good[i] += u64::from(r.failure.is_none());
    }
    let per_step = (step.as_nanos() / SLOT.as_nanos()) as usize;
    let amplification = (0..steps)
        .map(|i| {
            let received: u64 = tally
                .received
                .iter()
                .skip(i * per_step)
                .take(per_step)
                .map(|n| u64::from(*n))
                .sum();
            ratio(received, total[i])
        })
        .collect();
    Series {
        step_secs: step.as_secs_f64(),
        goodput: (0..steps).map(|i| ratio(good[i], total[i])).collect(),
        amplification,
        watched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn recovery_finds_the_first_good_window() {
        let rec = |start_ms: u64, good: bool| Record {
            id: 0,
            host: 0,
            start: Duration::from_millis(start_ms),
            latency: Duration::from_millis(1),
            failure: (!good).then_some(FailureKind::Upstream),
        };
        // Bad until 12 s, good after; the fault ended at 10 s.
        let records: Vec<Record> = (0..300).map(|i| rec(i * 100, i >= 120)).collect();
        let r = recovery(&records, Duration::from_secs(10), Duration::from_secs(30));
        // A window of 50 requests may hold 2 bad ones and still be 95%
        // good: the first starts at 11.8 s.
        assert_eq!(r, Some(Duration::from_millis(1800)));
    }

    #[test]
    fn failure_kinds_are_found_in_the_chain() {
        let open: BoxError = Box::new(CircuitOpen::new(None));
        assert_eq!(FailureKind::of(&open), FailureKind::CircuitOpen);
        let limited: BoxError = Box::new(UpstreamError::rate_limited(Duration::from_secs(1)));
        assert_eq!(FailureKind::of(&limited), FailureKind::RateLimited);
        let failed: BoxError = Box::new(UpstreamError::failed());
        assert_eq!(FailureKind::of(&failed), FailureKind::Upstream);
        let shed: BoxError = Box::new(tower::load_shed::error::Overloaded::new());
        assert_eq!(FailureKind::of(&shed), FailureKind::Rejected);
    }
}
