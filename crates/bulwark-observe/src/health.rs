//! Health: an aggregate status with per-instance details, serialisable.
//!
//! [`Registry::health`](crate::Registry::health) gives a [`Health`]: the
//! status is [`Degraded`](Status::Degraded) when any breaker is open,
//! half-open or forced open (for keyed breakers: any key), or any bulkhead
//! is saturated (every permit taken); otherwise [`Healthy`](Status::Healthy).
//! A breaker an operator forced closed or put in metrics-only mode lets calls
//! through and counts as healthy; its state still shows.
//!
//! # Which probe for what
//!
//! | question | answer | use it for |
//! |---|---|---|
//! | is this process alive? | your own plain `200` route | liveness probes (restart on failure) |
//! | can this replica take more requests? | [`Readiness`] ([`Registry::readiness`](crate::Registry::readiness), `GET /health/ready`) | readiness probes, load balancers |
//! | how are its dependencies doing? | [`Health`] ([`Registry::health`](crate::Registry::health), `GET /health/resilience`) | dashboards, alerts, operators |
//!
//! Readiness looks only at this service's own capacity: the bulkheads in
//! front of its handlers ([`Registry::serving_bulkhead`](crate::Registry::serving_bulkhead),
//! which a `ServerStack` registered with `.registry(..)` uses). A dependency's
//! open breaker never makes a replica unready: every replica sees the same
//! dependency fail at the same moment, and a probe that followed it would
//! take them all out of the load balancer at once, turning a partial outage
//! (some endpoints fail) into a total one. [`Health`] is informational: it
//! says which dependencies fail, and its status is for people and alerts.
//!
//! Durations are in milliseconds. The JSON looks like this:
//!
//! ```json
//! {
//!   "status": "degraded",
//!   "breakers": [{
//!     "name": "payments", "state": "open", "healthy": false,
//!     "calls": 20, "failures": 12, "slow_calls": 0,
//!     "failure_rate": 0.6, "slow_call_rate": null,
//!     "consecutive_failures": 4, "rejected": 31,
//!     "time_in_state_ms": 1250, "next_probe_in_ms": 28750,
//!     "thresholds": { "failure_rate": 0.5, "slow_call_rate": null, "slow_call_ms": null, "consecutive_failures": 10, "minimum_calls": 20 }
//!   }],
//!   "keyed_breakers": [{ "name": "hosts", "healthy": true, "keys": 3, "evicted": 0, "unhealthy_keys": [] }],
//!   "bulkheads": [{ "name": "db", "healthy": true, "in_flight": 3, "queued": 0, "limit": 32, "rejections": 0, "saturated": false, "serving": false }],
//!   "retry_budgets": [{ "name": "payments", "available": 12 }],
//!   "timeouts": [{ "name": "payments/total", "request": 2, "readiness": 0 }],
//!   "retries": [{ "name": "payments", "retries": 9, "gave_up": 1 }],
//!   "fleet": [{
//!     "name": "payments", "kind": "breaker", "healthy": false,
//!     "link": "up", "fallback_for_ms": null, "last_sync_ms_ago": 120,
//!     "state": "open", "generation": 3, "calls": 0, "failures": 0, "probing": false
//!   }]
//! }
//! ```
//!
//! `fleet` lists the layers shared through Redis (`bulwark-fleet`, see
//! [`FleetView`](crate::FleetView)): the fleet's view, as this instance
//! last read it, next to the local instances above. `link` is `up` (the
//! last sync reached Redis), `fallback` (Redis out of reach: the layer
//! decides locally, for `fallback_for_ms`) or `connecting` (not reached
//! yet). A shared breaker the fleet holds open or half-open makes the
//! status degraded, as a local one does; a fallback does not (calls go on,
//! decided locally), it shows in `link` and in the metrics.

use bulwark_breaker::{Snapshot, State};
use bulwark_bulkhead::BulkheadHandle;
use serde::{Serialize, Serializer};
use std::time::Duration;

/// The aggregate status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every breaker lets calls through and no bulkhead is full.
    Healthy,
    /// Some breaker rejects calls, or some bulkhead is full.
    Degraded,
}

/// The health of every instance in a [`Registry`](crate::Registry).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The aggregate status.
    pub status: Status,
    /// Each breaker, by name.
    pub breakers: Vec<BreakerHealth>,
    /// Each set of keyed breakers, by name.
    pub keyed_breakers: Vec<KeyedBreakersHealth>,
    /// Each bulkhead, by name.
    pub bulkheads: Vec<BulkheadHealth>,
    /// Each retry budget, by name.
    pub retry_budgets: Vec<RetryBudgetHealth>,
    /// Each timeout layer registered with
    /// [`Registry::timeout_listener`](crate::Registry::timeout_listener),
    /// by name (timeouts never make the status degraded).
    pub timeouts: Vec<TimeoutHealth>,
    /// Each retry layer registered with
    /// [`Registry::retry_listener`](crate::Registry::retry_listener), by
    /// name (retries never make the status degraded).
    pub retries: Vec<RetryHealth>,
    /// Each layer shared with the fleet, registered with
    /// [`Registry::fleet_view`](crate::Registry::fleet_view), by name.
    pub fleet: Vec<FleetHealth>,
}

impl Health {
    /// Whether the status is [`Status::Healthy`].
    pub fn is_healthy(&self) -> bool {
        self.status == Status::Healthy
    }

    pub(crate) fn new(
        breakers: Vec<BreakerHealth>,
        keyed_breakers: Vec<KeyedBreakersHealth>,
        bulkheads: Vec<BulkheadHealth>,
        retry_budgets: Vec<RetryBudgetHealth>,
        fleet: Vec<FleetHealth>,
    ) -> Health {
        let healthy = breakers.iter().all(|b| b.healthy)
            && keyed_breakers.iter().all(|k| k.healthy)
            && bulkheads.iter().all(|b| b.healthy)
            && fleet.iter().all(|f| f.healthy);
        Health {
            status: if healthy {
                Status::Healthy
            } else {
                Status::Degraded
            },
            breakers,
            keyed_breakers,
            bulkheads,
            retry_budgets,
            timeouts: Vec::new(),
            retries: Vec::new(),
            fleet,
        }
    }
}

fn state_str<S: Serializer>(state: &State, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One breaker's health, from its [`Snapshot`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BreakerHealth {
    /// The breaker's name.
    pub name: String,
    /// Its state (`closed`, `open`, `half_open`, `forced_open`, `forced_closed`,
    /// `metrics_only`).
    #[serde(serialize_with = "state_str")]
    pub state: State,
    /// Whether it lets calls through (not open, half-open or forced open).
    pub healthy: bool,
    /// Calls in the window.
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Failure rate, once the window holds the minimum number of calls.
    pub failure_rate: Option<f64>,
    /// Slow-call rate, once the window holds the minimum number of calls
    /// (and a slow-call rule is set).
    pub slow_call_rate: Option<f64>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
    /// How long it has been in its state, in milliseconds.
    pub time_in_state_ms: u64,
    /// For an open breaker: in how many milliseconds it admits a probe.
    pub next_probe_in_ms: Option<u64>,
    /// What trips it, as configured now: a reload's new thresholds show
    /// here.
    pub thresholds: BreakerThresholds,
}

/// What trips a breaker, in its [`BreakerHealth`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerThresholds {
    /// The failure rate that trips it, once the window holds
    /// `minimum_calls` calls (`None`: not judged).
    pub failure_rate: Option<f64>,
    /// The slow-call rate that trips it (`None`: not judged).
    pub slow_call_rate: Option<f64>,
    /// The duration above which a call is slow, in milliseconds.
    pub slow_call_ms: Option<u64>,
    /// Failures in a row that trip it (`None`: not judged).
    pub consecutive_failures: Option<u32>,
    /// Calls the window must hold before a rate is judged.
    pub minimum_calls: u32,
}

impl BreakerHealth {
    /// The health of breaker `name` from its snapshot.
    pub fn from_snapshot(name: impl Into<String>, s: &Snapshot) -> Self {
        BreakerHealth {
            name: name.into(),
            state: s.state,
            healthy: !s.state.is_rejecting(),
            calls: s.calls,
            failures: s.failures,
            slow_calls: s.slow_calls,
            failure_rate: s.failure_rate,
            slow_call_rate: s.slow_call_rate,
            consecutive_failures: s.consecutive_failures,
            rejected: s.rejected,
            time_in_state_ms: millis(s.time_in_state),
            next_probe_in_ms: s.next_probe_in.map(millis),
            thresholds: BreakerThresholds {
                failure_rate: s.thresholds.failure_rate,
                slow_call_rate: s.thresholds.slow_call.map(|(_, rate)| rate),
                slow_call_ms: s.thresholds.slow_call.map(|(slow, _)| millis(slow)),
                consecutive_failures: s.thresholds.consecutive_failures,
                minimum_calls: s.thresholds.minimum_calls,
            },
        }
    }
}

/// A set of keyed breakers' health: how many keys, and the details of the
/// keys whose breaker is not closed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KeyedBreakersHealth {
    /// The set's name.
    pub name: String,
    /// Whether every key's breaker lets calls through.
    pub healthy: bool,
    /// Keys held now.
    pub keys: usize,
    /// Keys evicted so far (idle or least recently used).
    pub evicted: u64,
    /// The keys whose breaker is not closed, named by key.
    pub unhealthy_keys: Vec<BreakerHealth>,
}

/// One bulkhead's health.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BulkheadHealth {
    /// The bulkhead's name.
    pub name: String,
    /// Whether it has a free permit.
    pub healthy: bool,
    /// Calls holding a permit.
    pub in_flight: usize,
    /// Callers waiting for one.
    pub queued: usize,
    /// The limit.
    pub limit: usize,
    /// Calls rejected since it was built.
    pub rejections: u64,
    /// Whether every permit is taken.
    pub saturated: bool,
    /// Whether it guards this service's own handlers
    /// ([`Registry::serving_bulkhead`](crate::Registry::serving_bulkhead)),
    /// so that it counts for [`Readiness`].
    pub serving: bool,
}

impl BulkheadHealth {
    /// The health of bulkhead `name` from its handle.
    pub fn from_handle(name: impl Into<String>, h: &BulkheadHandle) -> Self {
        let (in_flight, limit) = (h.in_flight(), h.limit());
        let saturated = in_flight >= limit;
        BulkheadHealth {
            name: name.into(),
            healthy: !saturated,
            in_flight,
            queued: h.queued(),
            limit,
            rejections: h.rejections(),
            saturated,
            serving: false,
        }
    }
}

/// One retry budget's state (budgets never make the status degraded).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RetryBudgetHealth {
    /// The budget's name.
    pub name: String,
    /// Retries it allows now (`null` for an unlimited budget).
    pub available: Option<u64>,
}

/// One timeout layer's counts, from
/// [`Registry::timeout_listener`](crate::Registry::timeout_listener).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TimeoutHealth {
    /// The layer's name.
    pub name: String,
    /// Calls that ran out of time.
    pub request: u64,
    /// Calls that waited too long for the inner service to be ready.
    pub readiness: u64,
}

/// One retry layer's counts, from
/// [`Registry::retry_listener`](crate::Registry::retry_listener).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RetryHealth {
    /// The layer's name.
    pub name: String,
    /// Attempts after the first.
    pub retries: u64,
    /// Calls retry gave up on (attempts, budget, deadline, pushback, or a
    /// request that cannot be sent again).
    pub gave_up: u64,
}

/// Whether this service can take more requests, from
/// [`Registry::readiness`](crate::Registry::readiness): not ready while a
/// bulkhead in front of its own handlers has every permit taken. See the
/// [module docs](self) for which probe to use for what.
///
/// ```
/// use bulwark::bulkhead::BulkheadLayer;
/// use bulwark::observe::Registry;
///
/// let registry = Registry::new();
/// let _server = registry.serving_bulkhead("server", BulkheadLayer::builder().max_concurrent(1));
/// let ready = registry.readiness();
/// assert!(ready.ready);
/// assert_eq!(serde_json::to_value(&ready).unwrap()["ready"], true);
/// ```
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// Whether every serving bulkhead has a free permit.
    pub ready: bool,
    /// The serving bulkheads, by name.
    pub bulkheads: Vec<BulkheadHealth>,
}

/// Whether a layer shared with the fleet reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FleetLink {
    /// Not reached Redis yet (the layer decides locally meanwhile).
    Connecting,
    /// The last sync reached Redis: the layer shares its state.
    Up,
    /// Redis is out of reach (failed, or slower than the operation
    /// timeout): the layer decides locally until it rejoins by itself.
    Fallback,
}

/// What one layer shared with the fleet knows, by kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FleetDetail {
    /// A shared breaker gate: the fleet's state and window, as last read.
    Breaker {
        /// The fleet's state: `closed`, `open` or `half_open`.
        state: &'static str,
        /// Trips and closes so far, the same on every instance that saw
        /// them.
        generation: u64,
        /// Calls in the fleet's window.
        calls: u64,
        /// Failures in the fleet's window.
        failures: u64,
        /// Whether this instance holds the fleet's half-open probe lease.
        probing: bool,
    },
    /// A shared retry budget: the fleet's requests and retries in its
    /// window, and this instance's share.
    RetryBudget {
        /// The fleet's requests in the window.
        requests: u64,
        /// The fleet's retries in the window.
        retries: u64,
        /// Retries leased to this instance and not spent yet.
        share: i64,
        /// Instances seen.
        instances: u32,
    },
    /// A fleet-wide rate limiter.
    RateLimiter {
        /// The fleet's limit, in calls per second.
        limit_per_sec: f64,
        /// Tokens leased to this instance and not spent yet.
        leased: i64,
        /// Tokens granted to this instance since it started.
        granted: u64,
        /// Instances that asked for tokens recently.
        instances: u32,
    },
    /// The connection to Redis itself.
    Connection {
        /// The key prefix.
        prefix: String,
        /// This instance's id in the fleet.
        instance: String,
        /// Whether it talks to a Redis Cluster.
        cluster: bool,
    },
}

/// One layer shared with the fleet (`bulwark-fleet`): the fleet's view as
/// this instance last read it, and the state of its link to Redis. Made by
/// a [`FleetView`](crate::FleetView).
///
/// ```
/// use bulwark::observe::health::{FleetDetail, FleetHealth, FleetLink};
/// use std::time::Duration;
///
/// let h = FleetHealth::new("payments", FleetDetail::RetryBudget {
///     requests: 1000, retries: 40, share: 3, instances: 4,
/// })
/// .last_sync(Some(Duration::from_millis(80)));
/// assert_eq!(h.link, FleetLink::Up);
/// let json = serde_json::to_value(&h).unwrap();
/// assert_eq!(json["kind"], "retry_budget");
/// assert_eq!(json["last_sync_ms_ago"], 80);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FleetHealth {
    /// The layer's name (its Redis keys' name).
    pub name: String,
    /// Whether it lets calls through: `false` for a shared breaker the
    /// fleet holds open or half-open.
    pub healthy: bool,
    /// Whether it reaches Redis.
    pub link: FleetLink,
    /// For a fallback: how long it has been deciding locally, in
    /// milliseconds.
    pub fallback_for_ms: Option<u64>,
    /// How long ago its last sync reached Redis, in milliseconds (`null`:
    /// never).
    pub last_sync_ms_ago: Option<u64>,
    /// The fleet's view, by kind (`kind` in the JSON).
    #[serde(flatten)]
    pub detail: FleetDetail,
}

impl FleetHealth {
    /// A healthy layer `name` whose link is [`Up`](FleetLink::Up), with
    /// no sync time yet.
    pub fn new(name: impl Into<String>, detail: FleetDetail) -> Self {
        let healthy = !matches!(
            detail,
            FleetDetail::Breaker {
                state: "open" | "half_open",
                ..
            }
        );
        FleetHealth {
            name: name.into(),
            healthy,
            link: FleetLink::Up,
            fallback_for_ms: None,
            last_sync_ms_ago: None,
            detail,
        }
    }

    /// The link's state; with [`Fallback`](FleetLink::Fallback), `since`
    /// is how long ago it fell back.
    pub fn link(mut self, link: FleetLink, since: Option<Duration>) -> Self {
        self.link = link;
        self.fallback_for_ms = match link {
            FleetLink::Fallback => since.map(millis),
            _ => None,
        };
        self
    }

    /// How long ago the last sync reached Redis (`None`: never).
    pub fn last_sync(mut self, ago: Option<Duration>) -> Self {
        self.last_sync_ms_ago = ago.map(millis);
        self
    }
}
