//! [`SharedRetryBudget`]: one retry budget for every instance.

use crate::fleet::{spawn, FleetInner, Link, TaskGuard};
use crate::Fleet;
use bulwark_core::error::ConfigError;
use bulwark_core::Outcome;
use bulwark_retry::budget::{BudgetPolicy, RetryBudget};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Adds this instance's requests to the current one-second bucket (Redis's
/// clock), grants it its share of the retries the fleet has left (counted
/// as spent at once, so that instances cannot overspend between syncs),
/// and returns the fleet's totals over the window and the instances seen.
const SYNC_SCRIPT: &str = r"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local dr, stock, w, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local ratio_ppm, floor = tonumber(ARGV[6]), tonumber(ARGV[7])
if dr > 0 then redis.call('HINCRBY', KEYS[1], 'r:' .. sec, dr) end
redis.call('PEXPIRE', KEYS[1], (w + 2) * 1000)
for s = sec - w - 5, sec - w do redis.call('HDEL', KEYS[1], 'r:' .. s, 't:' .. s) end
local requests, retries = 0, 0
for s = sec - w + 1, sec do
  requests = requests + tonumber(redis.call('HGET', KEYS[1], 'r:' .. s) or 0)
  retries = retries + tonumber(redis.call('HGET', KEYS[1], 't:' .. s) or 0)
end
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], ms, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms - ttl)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
local members = redis.call('ZCARD', KEYS[2])
local left = math.floor(requests * ratio_ppm / 1000000) + floor - retries
local grant = 0
if left > 0 then
  grant = math.ceil(left / members) - stock
  if grant > left then grant = left end
  if grant < 0 then grant = 0 end
end
if grant > 0 then
  redis.call('HINCRBY', KEYS[1], 't:' .. sec, grant)
  retries = retries + grant
end
return {requests, retries, members, grant}
";

/// A retry budget for the whole fleet: its retries stay within `ratio` of
/// the fleet's requests (plus a floor), however the traffic is spread
/// over the instances.
///
/// Each instance counts its requests in an atomic and publishes them every
/// sync interval (one Lua script, one round trip); the script grants it a
/// lease of retries, its share of what the fleet has left,
/// `(ratio × requests + floor − retries) / instances`, counted as spent at
/// once, which it spends locally. So the fleet never retries more than
/// its ratio allows (a lease left unused is budget the fleet forgoes until
/// the window moves on). Without Redis it
/// falls back to a local ratio budget with the same settings (an event
/// and a metric), fed all along so that it is warm.
///
/// Pass [`budget`](Self::budget) to a retry or hedge layer.
///
/// ```no_run
/// use bulwark::fleet::{Fleet, SharedRetryBudget};
/// use bulwark::retry::RetryLayer;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fleet = Fleet::new("redis://127.0.0.1:6379").unwrap();
/// let shared = SharedRetryBudget::new(&fleet, "inventory", 0.1, 10, Duration::from_secs(10)).unwrap();
/// let retry = RetryLayer::new().budget(shared.budget());
/// # drop(retry);
/// # }
/// ```
#[derive(Clone)]
pub struct SharedRetryBudget {
    state: Arc<State>,
    budget: RetryBudget,
    _task: Arc<TaskGuard>,
}

struct State {
    name: Arc<str>,
    link: Link,
    keys: [String; 2],
    ratio: f64,
    floor: u64,
    window_s: u64,
    local: RetryBudget,
    requests: AtomicU64,
    /// Retries leased to this instance and not spent yet.
    tokens: AtomicI64,
    fleet_requests: AtomicU64,
    fleet_retries: AtomicU64,
    members: AtomicU32,
}

/// What a [`SharedRetryBudget`] knows of the fleet now.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SharedRetryBudgetSnapshot {
    /// Requests of the fleet in the window, as of the last sync.
    pub fleet_requests: u64,
    /// Retries of the fleet in the window, as of the last sync.
    pub fleet_retries: u64,
    /// Retries leased to this instance and not spent yet.
    pub share: i64,
    /// Instances seen.
    pub instances: u32,
    /// Whether it decides locally now.
    pub degraded: bool,
}

impl SharedRetryBudget {
    /// A budget `name` for the fleet: over the last `window` (whole
    /// seconds of Redis's clock, 1 s to 10 min), the fleet's retries at
    /// most `ratio` × its requests, plus `min_per_sec` × window.
    pub fn new(
        fleet: &Fleet,
        name: impl Into<Arc<str>>,
        ratio: f64,
        min_per_sec: u32,
        window: Duration,
    ) -> Result<Self, ConfigError> {
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&window) {
            return Err(ConfigError::new(
                "shared retry budget",
                "window",
                format!("must be from 1s to 10min, got {window:?}"),
            ));
        }
        let local = RetryBudget::ratio(ratio, min_per_sec, window)?;
        let name = name.into();
        let inner = fleet.inner.clone();
        let window_s = window.as_secs().max(1);
        let state = Arc::new(State {
            link: Link::new(format!("retry-budget:{name}")),
            keys: [
                inner.key("rb", &name, "w"),
                inner.key("rb", &name, "members"),
            ],
            ratio,
            floor: u64::from(min_per_sec) * window_s,
            window_s,
            local,
            name,
            requests: AtomicU64::new(0),
            tokens: AtomicI64::new(0),
            fleet_requests: AtomicU64::new(0),
            fleet_retries: AtomicU64::new(0),
            members: AtomicU32::new(1),
        });
        let task = spawn("shared retry budget", sync(inner.clone(), state.clone()))?;
        let shared = SharedRetryBudget {
            budget: RetryBudget::from_policy(Policy(state.clone())),
            state,
            _task: Arc::new(task),
        };
        #[cfg(feature = "observe")]
        inner.register(&shared.state.name, shared.clone());
        Ok(shared)
    }

    /// The handle to give retry and hedge layers.
    pub fn budget(&self) -> RetryBudget {
        self.budget.clone()
    }

    /// The budget's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// What it knows now.
    pub fn snapshot(&self) -> SharedRetryBudgetSnapshot {
        let s = &*self.state;
        SharedRetryBudgetSnapshot {
            fleet_requests: s.fleet_requests.load(Ordering::Relaxed),
            fleet_retries: s.fleet_retries.load(Ordering::Relaxed),
            share: s.tokens.load(Ordering::Relaxed),
            instances: s.members.load(Ordering::Relaxed),
            degraded: s.link.is_degraded(),
        }
    }
}

impl fmt::Debug for SharedRetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRetryBudget")
            .field("name", &self.state.name)
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "observe")]
impl bulwark_observe::FleetView for SharedRetryBudget {
    fn fleet_health(&self) -> bulwark_observe::health::FleetHealth {
        let s = self.snapshot();
        self.state.link.health(
            &self.state.name,
            bulwark_observe::health::FleetDetail::RetryBudget {
                requests: s.fleet_requests,
                retries: s.fleet_retries,
                share: s.share,
                instances: s.instances,
            },
        )
    }
}

struct Policy(Arc<State>);

impl BudgetPolicy for Policy {
    #[inline]
    fn deposit(&self) {
        self.0.local.deposit();
        self.0.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn withdraw(&self) -> bool {
        let s = &*self.0;
        if s.link.is_degraded() {
            s.local.withdraw()
        } else {
            s.tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    (t > 0).then(|| t - 1)
                })
                .is_ok()
        }
    }

    fn would_allow(&self) -> bool {
        self.available() > 0
    }

    #[inline]
    fn record(&self, outcome: Outcome) {
        self.0.local.record(outcome);
    }

    fn available(&self) -> u64 {
        let s = &*self.0;
        if s.link.is_degraded() {
            s.local.available()
        } else {
            s.tokens.load(Ordering::Relaxed).max(0).unsigned_abs()
        }
    }
}

async fn sync(fleet: Arc<FleetInner>, s: Arc<State>) {
    let script = redis::Script::new(SYNC_SCRIPT);
    let mut fell_back = false;
    let ttl = (3 * fleet.sync_interval.as_millis() as u64).max(1_000);
    let mut first = true;
    loop {
        if !std::mem::replace(&mut first, false) {
            tokio::time::sleep(fleet.sync_interval).await;
        }
        let requests = s.requests.swap(0, Ordering::AcqRel);
        let stock = s.tokens.load(Ordering::Acquire).max(0);
        let answer = fleet
            .run(|mut conn| {
                let mut call = script.prepare_invoke();
                call.key(&s.keys[0])
                    .key(&s.keys[1])
                    .arg(requests)
                    .arg(stock)
                    .arg(s.window_s)
                    .arg(&*fleet.instance)
                    .arg(ttl)
                    .arg((s.ratio * 1_000_000.0).round() as u64)
                    .arg(s.floor);
                async move { call.invoke_async::<(u64, u64, u32, i64)>(&mut conn).await }
            })
            .await;
        match answer {
            Ok((fleet_requests, fleet_retries, members, grant)) => {
                if grant > 0 {
                    s.tokens.fetch_add(grant, Ordering::AcqRel);
                }
                s.fleet_requests.store(fleet_requests, Ordering::Relaxed);
                s.fleet_retries.store(fleet_retries, Ordering::Relaxed);
                s.members.store(members, Ordering::Relaxed);
                s.link.ok(&fleet, &mut fell_back);
            }
            Err(reason) => {
                s.requests.fetch_add(requests, Ordering::AcqRel);
                s.link.failed(&fleet, &mut fell_back, reason);
            }
        }
    }
}
