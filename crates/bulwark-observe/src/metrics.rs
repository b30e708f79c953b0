//! Metrics through the [`metrics`] facade (feature `metrics`).
//!
//! Bulwark reports to whatever recorder the program installs
//! (`metrics-exporter-prometheus`, a StatsD or OpenTelemetry bridge, ...).
//! Three sources feed it, and none of them touches a layer's hot path:
//!
//! - **listeners** turn each layer's events into counters and gauges:
//!   [`BreakerMetrics`], [`KeyedBreakerMetrics`], [`RetryMetrics`],
//!   [`TimeoutMetrics`], [`BulkheadMetrics`], [`FallbackMetrics`]. Register
//!   them with the layer's `on_event` (the [`Registry`](crate::Registry) does
//!   it for the instances it makes, and for timeout and retry layers through
//!   [`Registry::timeout_listener`](crate::Registry::timeout_listener) and
//!   [`Registry::retry_listener`](crate::Registry::retry_listener); the
//!   ready-made stacks' `.registry(&registry, name)` does all of it);
//! - **gauges read from handles** ([`BreakerMetrics::record`],
//!   [`BulkheadMetrics::record`], [`RetryBudgetMetrics::record`], or
//!   [`Registry::update_gauges`](crate::Registry::update_gauges) for all of
//!   them) just before a scrape;
//! - the per-call [`MetricsLayer`]: calls by outcome and their durations,
//!   judged by the same [`Classify`] as the other layers;
//!   `bulwark::http::metrics::BodyMetricsLayer` (feature `metrics` of
//!   bulwark-http) judges HTTP and gRPC calls when their response body ends
//!   (a stream that breaks off is a failure, one the caller cancels is
//!   `ignored`), as the breaker of `bulwark-http`'s client stack does.
//!
//! Every metric handle is registered once, when the listener or layer is
//! made, never per call: with no recorder installed each update is a check
//! of an empty handle. Install the recorder **before** building the layers,
//! as with any `metrics` user: handles made before it stay no-ops.
//!
//! # Names and labels
//!
//! The names are stable; `name` is the instance's name.
//!
//! | metric | type | labels | from |
//! |---|---|---|---|
//! | `bulwark_calls_total` | counter | `name`, `outcome` (`success`, `failure`, `throttled`, `rejected`, `ignored`) | [`MetricsLayer`] |
//! | `bulwark_call_duration_seconds` | histogram | `name`, `outcome` | [`MetricsLayer`] |
//! | `bulwark_breaker_state` | gauge, 1 for the current state, 0 for the others | `name`, `state` (`closed`, `open`, `half_open`, `forced_open`, `forced_closed`, `metrics_only`) | [`BreakerMetrics`] |
//! | `bulwark_breaker_transitions_total` | counter | `name`, `to` (a state) | [`BreakerMetrics`], [`KeyedBreakerMetrics`] |
//! | `bulwark_breaker_rejected_total` | counter | `name` | [`BreakerMetrics`], [`KeyedBreakerMetrics`] |
//! | `bulwark_breaker_failure_rate` | gauge (0..1; 0 until the minimum number of calls) | `name` | [`BreakerMetrics::record`] |
//! | `bulwark_breaker_slow_call_rate` | gauge (0..1) | `name` | [`BreakerMetrics::record`] |
//! | `bulwark_breaker_window_calls` | gauge | `name` | [`BreakerMetrics::record`] |
//! | `bulwark_keyed_breaker_keys` | gauge | `name` | [`KeyedBreakerMetrics::record`] |
//! | `bulwark_keyed_breaker_open_keys` | gauge (keys open, half-open or forced open) | `name` | [`KeyedBreakerMetrics::record`] |
//! | `bulwark_retries_total` | counter (attempts after the first) | `name` | [`RetryMetrics`] |
//! | `bulwark_retry_gave_up_total` | counter | `name`, `reason` (`attempts_exhausted`, `budget_exhausted`, `deadline`, `pushback`, `not_replayable`, `rejected`: a retry refused by a breaker or bulkhead below) | [`RetryMetrics`] |
//! | `bulwark_retry_budget_denied_total` | counter (retries and hedges the budget refused) | `name` | [`RetryMetrics`] |
//! | `bulwark_hedges_total` | counter | `name` | [`RetryMetrics`] |
//! | `bulwark_retry_budget_available` | gauge | `name` | [`RetryBudgetMetrics::record`] |
//! | `bulwark_timeouts_total` | counter | `name`, `limit` (`request`, `readiness`) | [`TimeoutMetrics`] |
//! | `bulwark_bulkhead_in_flight` | gauge | `name` | [`BulkheadMetrics::record`] |
//! | `bulwark_bulkhead_queued` | gauge | `name` | [`BulkheadMetrics::record`] |
//! | `bulwark_bulkhead_limit` | gauge | `name` | [`BulkheadMetrics`] |
//! | `bulwark_bulkhead_rejected_total` | counter | `name`, `reason` (`at_capacity`, `queue_full`, `wait_timed_out`) | [`BulkheadMetrics`] |
//! | `bulwark_fallbacks_total` | counter | `name`, `outcome` (the primary's outcome) | [`FallbackMetrics`] |
//! | `bulwark_fallback_failures_total` | counter | `name` | [`FallbackMetrics`] |
//!
//! ```
//! use bulwark::breaker::Breaker;
//! use bulwark::observe::metrics::{BreakerMetrics, MetricsLayer};
//! use bulwark::breaker::CircuitBreakerLayer;
//! use bulwark::BoxError;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Install a recorder first (e.g. metrics-exporter-prometheus).
//! let metrics = BreakerMetrics::new("payments");
//! let breaker = Breaker::builder()
//!     .name("payments")
//!     .on_event(metrics.clone())
//!     .build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(MetricsLayer::new("payments"))
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
//! svc.oneshot(1).await?;
//! // Before each scrape: the rates.
//! metrics.record(&breaker.snapshot());
//! # Ok(())
//! # }
//! ```

use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::{BreakerEvent, BreakerEventKind, Snapshot, State};
use bulwark_bulkhead::{BulkheadEvent, BulkheadFullReason, BulkheadHandle};
use bulwark_core::clock::Instant;
use bulwark_core::event::Listener;
use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};
use bulwark_fallback::FallbackEvent;
use bulwark_retry::event::{GiveUpReason, RetryEvent};
use bulwark_retry::RetryBudget;
use bulwark_timeout::error::Limit;
use bulwark_timeout::TimeoutEvent;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// The metric names, as constants.
pub mod names {
    /// Calls by outcome (counter; `name`, `outcome`).
    pub const CALLS_TOTAL: &str = "bulwark_calls_total";
    /// Call durations in seconds (histogram; `name`, `outcome`).
    pub const CALL_DURATION_SECONDS: &str = "bulwark_call_duration_seconds";
    /// 1 for a breaker's current state, 0 for the others (gauge; `name`, `state`).
    pub const BREAKER_STATE: &str = "bulwark_breaker_state";
    /// Breaker transitions (counter; `name`, `to`).
    pub const BREAKER_TRANSITIONS_TOTAL: &str = "bulwark_breaker_transitions_total";
    /// Calls a breaker rejected (counter; `name`).
    pub const BREAKER_REJECTED_TOTAL: &str = "bulwark_breaker_rejected_total";
    /// A breaker's failure rate over its window (gauge; `name`).
    pub const BREAKER_FAILURE_RATE: &str = "bulwark_breaker_failure_rate";
    /// A breaker's slow-call rate over its window (gauge; `name`).
    pub const BREAKER_SLOW_CALL_RATE: &str = "bulwark_breaker_slow_call_rate";
    /// Calls in a breaker's window (gauge; `name`).
    pub const BREAKER_WINDOW_CALLS: &str = "bulwark_breaker_window_calls";
    /// Keys held by a set of keyed breakers (gauge; `name`).
    pub const KEYED_BREAKER_KEYS: &str = "bulwark_keyed_breaker_keys";
    /// Keys whose breaker rejects calls (gauge; `name`).
    pub const KEYED_BREAKER_OPEN_KEYS: &str = "bulwark_keyed_breaker_open_keys";
    /// Retries: attempts after the first (counter; `name`).
    pub const RETRIES_TOTAL: &str = "bulwark_retries_total";
    /// Calls retry gave up on (counter; `name`, `reason`).
    pub const RETRY_GAVE_UP_TOTAL: &str = "bulwark_retry_gave_up_total";
    /// Retries and hedges the budget refused (counter; `name`).
    pub const RETRY_BUDGET_DENIED_TOTAL: &str = "bulwark_retry_budget_denied_total";
    /// Hedged attempts sent (counter; `name`).
    pub const HEDGES_TOTAL: &str = "bulwark_hedges_total";
    /// Retries a budget would allow now (gauge; `name`).
    pub const RETRY_BUDGET_AVAILABLE: &str = "bulwark_retry_budget_available";
    /// Timeouts (counter; `name`, `limit`).
    pub const TIMEOUTS_TOTAL: &str = "bulwark_timeouts_total";
    /// Calls holding a bulkhead permit (gauge; `name`).
    pub const BULKHEAD_IN_FLIGHT: &str = "bulwark_bulkhead_in_flight";
    /// Callers waiting for a bulkhead permit (gauge; `name`).
    pub const BULKHEAD_QUEUED: &str = "bulwark_bulkhead_queued";
    /// A bulkhead's limit (gauge; `name`).
    pub const BULKHEAD_LIMIT: &str = "bulwark_bulkhead_limit";
    /// Calls a bulkhead rejected (counter; `name`, `reason`).
    pub const BULKHEAD_REJECTED_TOTAL: &str = "bulwark_bulkhead_rejected_total";
    /// Fallbacks used (counter; `name`, `outcome`).
    pub const FALLBACKS_TOTAL: &str = "bulwark_fallbacks_total";
    /// Fallbacks that failed too (counter; `name`).
    pub const FALLBACK_FAILURES_TOTAL: &str = "bulwark_fallback_failures_total";
}

use names::*;

/// Registers the description and unit of every Bulwark metric with the
/// installed recorder (exporters show them as `# HELP` lines). Optional;
/// call it once after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(CALLS_TOTAL, "Calls by outcome.");
    describe_histogram!(
        CALL_DURATION_SECONDS,
        Unit::Seconds,
        "Call durations by outcome."
    );
    describe_gauge!(
        BREAKER_STATE,
        "1 for the breaker's current state, 0 for the others."
    );
    describe_counter!(BREAKER_TRANSITIONS_TOTAL, "Breaker state transitions.");
    describe_counter!(BREAKER_REJECTED_TOTAL, "Calls rejected by a breaker.");
    describe_gauge!(
        BREAKER_FAILURE_RATE,
        "Failure rate over the breaker's window."
    );
    describe_gauge!(
        BREAKER_SLOW_CALL_RATE,
        "Slow-call rate over the breaker's window."
    );
    describe_gauge!(BREAKER_WINDOW_CALLS, "Calls in the breaker's window.");
    describe_gauge!(KEYED_BREAKER_KEYS, "Keys held by a set of keyed breakers.");
    describe_gauge!(
        KEYED_BREAKER_OPEN_KEYS,
        "Keys whose breaker is open, half-open or forced open."
    );
    describe_counter!(RETRIES_TOTAL, "Attempts after the first.");
    describe_counter!(RETRY_GAVE_UP_TOTAL, "Calls retry gave up on, by reason.");
    describe_counter!(
        RETRY_BUDGET_DENIED_TOTAL,
        "Retries and hedges refused by the retry budget."
    );
    describe_counter!(HEDGES_TOTAL, "Hedged attempts sent.");
    describe_gauge!(RETRY_BUDGET_AVAILABLE, "Retries the budget allows now.");
    describe_counter!(TIMEOUTS_TOTAL, "Timeouts, by the limit that fired.");
    describe_gauge!(BULKHEAD_IN_FLIGHT, "Calls holding a bulkhead permit.");
    describe_gauge!(BULKHEAD_QUEUED, "Callers waiting for a bulkhead permit.");
    describe_gauge!(BULKHEAD_LIMIT, "The bulkhead's limit.");
    describe_counter!(BULKHEAD_REJECTED_TOTAL, "Calls rejected by a bulkhead.");
    describe_counter!(FALLBACKS_TOTAL, "Fallbacks used, by the primary's outcome.");
    describe_counter!(FALLBACK_FAILURES_TOTAL, "Fallbacks that failed too.");
}

const OUTCOMES: [Outcome; 5] = [
    Outcome::Success,
    Outcome::Failure,
    Outcome::Throttled,
    Outcome::Rejected,
    Outcome::Ignored,
];

const STATES: [State; 6] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::ForcedClosed,
    State::MetricsOnly,
];

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Throttled => 2,
        Outcome::Rejected => 3,
        Outcome::Ignored => 4,
    }
}

fn state_index(state: State) -> usize {
    match state {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
        State::ForcedOpen => 3,
        State::ForcedClosed => 4,
        State::MetricsOnly => 5,
    }
}

fn per_state(name: &str, metric: &'static str, label: &'static str, g: bool) -> [Handle; 6] {
    STATES.map(|s| {
        if g {
            Handle::Gauge(gauge!(metric, "name" => name.to_owned(), label => s.as_str()))
        } else {
            Handle::Counter(counter!(metric, "name" => name.to_owned(), label => s.as_str()))
        }
    })
}

#[derive(Clone)]
enum Handle {
    Counter(Counter),
    Gauge(Gauge),
}

impl Handle {
    fn increment(&self) {
        if let Handle::Counter(c) = self {
            c.increment(1);
        }
    }

    fn set(&self, v: f64) {
        if let Handle::Gauge(g) = self {
            g.set(v);
        }
    }
}

fn one(metric: &'static str, name: &str) -> Counter {
    counter!(metric, "name" => name.to_owned())
}

fn one_gauge(metric: &'static str, name: &str) -> Gauge {
    gauge!(metric, "name" => name.to_owned())
}

macro_rules! debug_name {
    ($t:ty) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("name", &self.0.name)
                    .finish()
            }
        }
    };
}

// ----- breaker -------------------------------------------------------------

/// A breaker's metrics: a listener for its events (state gauge,
/// transitions, rejections) and [`record`](Self::record) for the rates.
///
/// Made, the state gauge reads `closed`, as a new breaker is. Clones share
/// the handles.
#[derive(Clone)]
pub struct BreakerMetrics(Arc<BreakerInner>);

struct BreakerInner {
    name: String,
    state: [Handle; 6],
    transitions: [Handle; 6],
    rejected: Counter,
    failure_rate: Gauge,
    slow_call_rate: Gauge,
    window_calls: Gauge,
}

debug_name!(BreakerMetrics);

impl BreakerMetrics {
    /// Registers the handles of breaker `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let m = BreakerInner {
            state: per_state(&name, BREAKER_STATE, "state", true),
            transitions: per_state(&name, BREAKER_TRANSITIONS_TOTAL, "to", false),
            rejected: one(BREAKER_REJECTED_TOTAL, &name),
            failure_rate: one_gauge(BREAKER_FAILURE_RATE, &name),
            slow_call_rate: one_gauge(BREAKER_SLOW_CALL_RATE, &name),
            window_calls: one_gauge(BREAKER_WINDOW_CALLS, &name),
            name,
        };
        m.set_state(State::Closed);
        BreakerMetrics(Arc::new(m))
    }

    /// Sets the state gauge, rates and window count from a snapshot (call
    /// it before a scrape; the state gauge is also kept by the listener).
    pub fn record(&self, snapshot: &Snapshot) {
        let m = &self.0;
        m.set_state(snapshot.state);
        m.failure_rate.set(snapshot.failure_rate.unwrap_or(0.0));
        m.slow_call_rate.set(snapshot.slow_call_rate.unwrap_or(0.0));
        m.window_calls.set(f64::from(snapshot.calls));
    }
}

impl BreakerInner {
    /// Every state's gauge, so no old state stays at 1.
    fn set_state(&self, current: State) {
        let at = state_index(current);
        for (i, g) in self.state.iter().enumerate() {
            g.set(if i == at { 1.0 } else { 0.0 });
        }
    }
}

impl Listener<BreakerEvent> for BreakerMetrics {
    fn on_event(&self, event: &BreakerEvent) {
        match &event.kind {
            BreakerEventKind::StateChanged(t) => {
                self.0.set_state(t.to);
                self.0.transitions[state_index(t.to)].increment();
            }
            BreakerEventKind::Rejected { .. } => self.0.rejected.increment(1),
            _ => {}
        }
    }
}

/// The metrics of a set of keyed breakers, labelled with the set's name
/// (never the keys, which would make the label set unbounded): transitions
/// and rejections of every key, and with [`record`](Self::record) the
/// number of keys and of keys that reject calls.
#[derive(Clone)]
pub struct KeyedBreakerMetrics(Arc<KeyedInner>);

struct KeyedInner {
    name: String,
    transitions: [Handle; 6],
    rejected: Counter,
    keys: Gauge,
    open_keys: Gauge,
}

debug_name!(KeyedBreakerMetrics);

impl KeyedBreakerMetrics {
    /// Registers the handles of the keyed breakers `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        KeyedBreakerMetrics(Arc::new(KeyedInner {
            transitions: per_state(&name, BREAKER_TRANSITIONS_TOTAL, "to", false),
            rejected: one(BREAKER_REJECTED_TOTAL, &name),
            keys: one_gauge(KEYED_BREAKER_KEYS, &name),
            open_keys: one_gauge(KEYED_BREAKER_OPEN_KEYS, &name),
            name,
        }))
    }

    /// Sets the key gauges from the set.
    pub fn record<K>(&self, breakers: &KeyedBreakers<K>)
    where
        K: Hash + Eq + Clone + fmt::Display,
    {
        let entries = breakers.entries();
        let open = entries
            .iter()
            .filter(|(_, b)| b.state().is_rejecting())
            .count();
        self.0.keys.set(entries.len() as f64);
        self.0.open_keys.set(open as f64);
    }
}

impl Listener<BreakerEvent> for KeyedBreakerMetrics {
    fn on_event(&self, event: &BreakerEvent) {
        match &event.kind {
            BreakerEventKind::StateChanged(t) => self.0.transitions[state_index(t.to)].increment(),
            BreakerEventKind::Rejected { .. } => self.0.rejected.increment(1),
            _ => {}
        }
    }
}

// ----- retry ---------------------------------------------------------------

const GIVE_UP: [(GiveUpReason, &str); 6] = [
    (GiveUpReason::AttemptsExhausted, "attempts_exhausted"),
    (GiveUpReason::BudgetExhausted, "budget_exhausted"),
    (GiveUpReason::Deadline, "deadline"),
    (GiveUpReason::Pushback, "pushback"),
    (GiveUpReason::NotReplayable, "not_replayable"),
    (GiveUpReason::Rejected, "rejected"),
];

/// A retry (or hedge) layer's metrics, as a listener for its
/// [`RetryEvent`]s: retries, give-ups by reason, budget denials, hedges.
#[derive(Clone)]
pub struct RetryMetrics(Arc<RetryInner>);

struct RetryInner {
    name: String,
    retries: Counter,
    gave_up: [Counter; GIVE_UP.len()],
    budget_denied: Counter,
    hedges: Counter,
}

debug_name!(RetryMetrics);

impl RetryMetrics {
    /// Registers the handles of retry layer `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        RetryMetrics(Arc::new(RetryInner {
            retries: one(RETRIES_TOTAL, &name),
            gave_up: GIVE_UP.map(|(_, reason)| {
                counter!(RETRY_GAVE_UP_TOTAL, "name" => name.clone(), "reason" => reason)
            }),
            budget_denied: one(RETRY_BUDGET_DENIED_TOTAL, &name),
            hedges: one(HEDGES_TOTAL, &name),
            name,
        }))
    }
}

impl Listener<RetryEvent> for RetryMetrics {
    fn on_event(&self, event: &RetryEvent) {
        let m = &self.0;
        match event {
            RetryEvent::RetryScheduled { .. } => m.retries.increment(1),
            RetryEvent::GaveUp { reason, .. } => {
                if let Some(i) = GIVE_UP.iter().position(|(r, _)| r == reason) {
                    m.gave_up[i].increment(1);
                }
                if *reason == GiveUpReason::BudgetExhausted {
                    m.budget_denied.increment(1);
                }
            }
            RetryEvent::HedgeSent { .. } => m.hedges.increment(1),
            RetryEvent::HedgeSkipped {
                reason: GiveUpReason::BudgetExhausted,
                ..
            } => m.budget_denied.increment(1),
            _ => {}
        }
    }
}

/// A retry budget's gauge: how many retries it allows now.
#[derive(Clone)]
pub struct RetryBudgetMetrics(Arc<BudgetInner>);

struct BudgetInner {
    name: String,
    available: Gauge,
}

debug_name!(RetryBudgetMetrics);

impl RetryBudgetMetrics {
    /// Registers the handle of budget `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        RetryBudgetMetrics(Arc::new(BudgetInner {
            available: one_gauge(RETRY_BUDGET_AVAILABLE, &name),
            name,
        }))
    }

    /// Sets the gauge (`+Inf` for an unlimited budget).
    pub fn record(&self, budget: &RetryBudget) {
        let available = budget.available();
        self.0.available.set(if available == u64::MAX {
            f64::INFINITY
        } else {
            available as f64
        });
    }
}

// ----- timeout -------------------------------------------------------------

/// A timeout layer's metrics, as a listener for its [`TimeoutEvent`]s.
#[derive(Clone)]
pub struct TimeoutMetrics(Arc<TimeoutInner>);

struct TimeoutInner {
    name: String,
    request: Counter,
    readiness: Counter,
}

debug_name!(TimeoutMetrics);

impl TimeoutMetrics {
    /// Registers the handles of timeout layer `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        TimeoutMetrics(Arc::new(TimeoutInner {
            request: counter!(TIMEOUTS_TOTAL, "name" => name.clone(), "limit" => "request"),
            readiness: counter!(TIMEOUTS_TOTAL, "name" => name.clone(), "limit" => "readiness"),
            name,
        }))
    }
}

impl Listener<TimeoutEvent> for TimeoutMetrics {
    fn on_event(&self, event: &TimeoutEvent) {
        if let TimeoutEvent::Elapsed(e) = event {
            match e.limit() {
                Limit::Readiness => self.0.readiness.increment(1),
                _ => self.0.request.increment(1),
            }
        }
    }
}

// ----- bulkhead ------------------------------------------------------------

/// A bulkhead's metrics: a listener for its events (rejections by reason,
/// limit changes) and [`record`](Self::record) for in-flight, queued and
/// limit.
#[derive(Clone)]
pub struct BulkheadMetrics(Arc<BulkheadInner>);

struct BulkheadInner {
    name: String,
    in_flight: Gauge,
    queued: Gauge,
    limit: Gauge,
    rejected: [Counter; 3],
}

debug_name!(BulkheadMetrics);

fn reason_index(reason: BulkheadFullReason) -> usize {
    match reason {
        BulkheadFullReason::AtCapacity => 0,
        BulkheadFullReason::QueueFull => 1,
        _ => 2,
    }
}

impl BulkheadMetrics {
    /// Registers the handles of bulkhead `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        BulkheadMetrics(Arc::new(BulkheadInner {
            in_flight: one_gauge(BULKHEAD_IN_FLIGHT, &name),
            queued: one_gauge(BULKHEAD_QUEUED, &name),
            limit: one_gauge(BULKHEAD_LIMIT, &name),
            rejected: ["at_capacity", "queue_full", "wait_timed_out"].map(|reason| {
                counter!(BULKHEAD_REJECTED_TOTAL, "name" => name.clone(), "reason" => reason)
            }),
            name,
        }))
    }

    /// Sets in-flight, queued and limit from the handle.
    pub fn record(&self, handle: &BulkheadHandle) {
        self.0.in_flight.set(handle.in_flight() as f64);
        self.0.queued.set(handle.queued() as f64);
        self.0.limit.set(handle.limit() as f64);
    }
}

impl Listener<BulkheadEvent> for BulkheadMetrics {
    fn on_event(&self, event: &BulkheadEvent) {
        match event {
            BulkheadEvent::Rejected { reason, .. } => {
                self.0.rejected[reason_index(*reason)].increment(1);
            }
            BulkheadEvent::LimitChanged { to, .. } => self.0.limit.set(*to as f64),
            _ => {}
        }
    }
}

// ----- fallback ------------------------------------------------------------

/// A fallback layer's metrics, as a listener for its [`FallbackEvent`]s.
#[derive(Clone)]
pub struct FallbackMetrics(Arc<FallbackInner>);

struct FallbackInner {
    name: String,
    used: [Counter; 5],
    failed: Counter,
}

debug_name!(FallbackMetrics);

impl FallbackMetrics {
    /// Registers the handles of fallback layer `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        FallbackMetrics(Arc::new(FallbackInner {
            used: OUTCOMES.map(
                |o| counter!(FALLBACKS_TOTAL, "name" => name.clone(), "outcome" => o.as_str()),
            ),
            failed: one(FALLBACK_FAILURES_TOTAL, &name),
            name,
        }))
    }
}

impl Listener<FallbackEvent> for FallbackMetrics {
    fn on_event(&self, event: &FallbackEvent) {
        match event {
            FallbackEvent::FellBack { outcome } => {
                self.0.used[outcome_index(*outcome)].increment(1);
            }
            FallbackEvent::FallbackFailed => self.0.failed.increment(1),
            _ => {}
        }
    }
}

// ----- per call ------------------------------------------------------------

struct CallMetrics {
    name: String,
    calls: [Counter; 5],
    durations: [Histogram; 5],
}

impl CallMetrics {
    #[inline]
    fn record(&self, outcome: Outcome, start: Option<Instant>) {
        let i = outcome_index(outcome);
        self.calls[i].increment(1);
        if let Some(start) = start {
            self.durations[i].record(start.elapsed().as_secs_f64());
        }
    }
}

/// Counts calls by [`Outcome`] (`bulwark_calls_total`) and records their
/// durations (`bulwark_call_duration_seconds`), judging each result with
/// the shared [`Classify`] ([`DefaultClassifier`] unless told otherwise).
///
/// Counting costs next to nothing without a recorder; timing costs two
/// clock reads per call, recorder or not (the `metrics` facade cannot tell a
/// handle that records from one that does not): turn it off with
/// [`durations(false)`](MetricsLayer::durations) where that matters.
///
/// Where it stands decides what it sees: outermost, one call per request
/// (with retries inside); just outside the breaker, every attempt including
/// the breaker's rejections (`outcome="rejected"`).
///
/// ```
/// use bulwark::BoxError;
/// use bulwark::observe::metrics::MetricsLayer;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let svc = ServiceBuilder::new()
///     .layer(MetricsLayer::new("search"))
///     .service_fn(|q: &'static str| async move { Ok::<_, BoxError>(q.len()) });
/// assert_eq!(svc.oneshot("rust").await?, 4);
/// # Ok(())
/// # }
/// ```
pub struct MetricsLayer<C = DefaultClassifier> {
    metrics: Arc<CallMetrics>,
    classifier: C,
    durations: bool,
}

impl MetricsLayer {
    /// Registers the handles of `name` (once: every service of the layer
    /// shares them).
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let calls = OUTCOMES
            .map(|o| counter!(CALLS_TOTAL, "name" => name.clone(), "outcome" => o.as_str()));
        let durations = OUTCOMES.map(
            |o| histogram!(CALL_DURATION_SECONDS, "name" => name.clone(), "outcome" => o.as_str()),
        );
        MetricsLayer {
            metrics: Arc::new(CallMetrics {
                name,
                calls,
                durations,
            }),
            classifier: DefaultClassifier,
            durations: true,
        }
    }
}

impl<C> MetricsLayer<C> {
    /// Judges outcomes with `classifier` (share the breaker's).
    pub fn classifier<C2>(self, classifier: C2) -> MetricsLayer<C2> {
        MetricsLayer {
            metrics: self.metrics,
            classifier,
            durations: self.durations,
        }
    }

    /// Whether to time calls (`bulwark_call_duration_seconds`); on by
    /// default. Off, no clock is read and only the counters are kept.
    pub fn durations(mut self, on: bool) -> Self {
        self.durations = on;
        self
    }
}

impl<C: Clone> Clone for MetricsLayer<C> {
    fn clone(&self) -> Self {
        MetricsLayer {
            metrics: self.metrics.clone(),
            classifier: self.classifier.clone(),
            durations: self.durations,
        }
    }
}

impl<C> fmt::Debug for MetricsLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("name", &self.metrics.name)
            .finish()
    }
}

impl<S, C: Clone> Layer<S> for MetricsLayer<C> {
    type Service = Metrics<S, C>;

    fn layer(&self, inner: S) -> Metrics<S, C> {
        Metrics {
            inner,
            metrics: self.metrics.clone(),
            classifier: self.classifier.clone(),
            durations: self.durations,
        }
    }
}

/// The service of a [`MetricsLayer`].
pub struct Metrics<S, C = DefaultClassifier> {
    inner: S,
    metrics: Arc<CallMetrics>,
    classifier: C,
    durations: bool,
}

impl<S, C> Metrics<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for Metrics<S, C> {
    fn clone(&self) -> Self {
        Metrics {
            inner: self.inner.clone(),
            metrics: self.metrics.clone(),
            classifier: self.classifier.clone(),
            durations: self.durations,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Metrics<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("name", &self.metrics.name)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for Metrics<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            metrics: Some(self.metrics.clone()),
            classifier: self.classifier.clone(),
            start: self.durations.then(Instant::now),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Metrics`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        metrics: Option<Arc<CallMetrics>>,
        classifier: C,
        start: Option<Instant>,
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.inner.poll(cx) {
            Poll::Ready(r) => r.map_err(Into::into),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(metrics) = this.metrics.take() {
            metrics.record(this.classifier.classify(&result), *this.start);
        }
        Poll::Ready(result)
    }
}

// ----- the counters, for layers that judge calls elsewhere ------------------

/// The counters and histograms of one [`MetricsLayer`]
/// (`bulwark_calls_total` and `bulwark_call_duration_seconds` of its name),
/// for a layer that takes its verdict somewhere else than at the response,
/// such as `bulwark::http::metrics::BodyMetricsLayer`, which judges a call
/// when its response body ends.
///
/// ```
/// use bulwark::observe::metrics::MetricsLayer;
/// use bulwark::Outcome;
///
/// let (recorder, _classifier, _durations) = MetricsLayer::new("inventory").into_parts();
/// assert_eq!(recorder.name(), "inventory");
/// recorder.record(Outcome::Success, None);
/// ```
#[derive(Clone)]
pub struct CallRecorder {
    metrics: Arc<CallMetrics>,
}

impl CallRecorder {
    /// Counts one call that ended as `outcome`, and its duration since
    /// `start` when given.
    #[inline]
    pub fn record(&self, outcome: Outcome, start: Option<Instant>) {
        self.metrics.record(outcome, start);
    }

    /// The `name` label.
    pub fn name(&self) -> &str {
        &self.metrics.name
    }
}

impl fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallRecorder")
            .field("name", &self.metrics.name)
            .finish()
    }
}

impl<C> MetricsLayer<C> {
    /// The layer's counters, its classifier, and whether it records
    /// durations: for a layer that judges calls elsewhere (see
    /// [`CallRecorder`]).
    pub fn into_parts(self) -> (CallRecorder, C, bool) {
        (
            CallRecorder {
                metrics: self.metrics,
            },
            self.classifier,
            self.durations,
        )
    }
}
