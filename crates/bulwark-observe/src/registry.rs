//! A registry of named instances: breakers, keyed breakers, bulkheads,
//! retry budgets, and the events of timeouts and retries.

use crate::health::{
    BreakerHealth, BulkheadHealth, FleetHealth, Health, KeyedBreakersHealth, Readiness,
    RetryBudgetHealth, RetryHealth, TimeoutHealth,
};
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::{Breaker, BreakerBuilder, Snapshot};
use bulwark_bulkhead::{BulkheadBuilder, BulkheadHandle, BulkheadLayer};
use bulwark_core::error::ConfigError;
use bulwark_core::event::Listener;
use bulwark_retry::event::RetryEvent;
use bulwark_retry::RetryBudget;
use bulwark_timeout::error::Limit;
use bulwark_timeout::TimeoutEvent;
use parking_lot::RwLock;
use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The named instances of a program, shared by every layer built from them.
///
/// A `Registry` is a cheap clone (one `Arc`); every clone is the same
/// registry, safe to use from any number of tasks and threads.
///
/// - **Get or create by name**: [`breaker`](Self::breaker),
///   [`keyed_breakers`](Self::keyed_breakers), [`bulkhead`](Self::bulkhead),
///   [`retry_budget`](Self::retry_budget) return the instance of that name,
///   made from the given configuration the first time. Later calls return
///   the same instance and ignore the configuration (change a live
///   breaker's with [`Breaker::reconfigure`]). Layers built from what they
///   return share the named instance's state.
/// - **Look at**: [`list`](Self::list), [`snapshots`](Self::snapshots),
///   [`health`](Self::health).
/// - **Control by name**: [`reset`](Self::reset),
///   [`force_open`](Self::force_open), [`force_closed`](Self::force_closed).
///
/// With the `metrics` feature, every instance the registry makes reports
/// metrics (see [`metrics`](crate::metrics)), and
/// [`update_gauges`](Self::update_gauges) refreshes the gauges read from
/// handles.
///
/// ```
/// use bulwark::breaker::{Breaker, CircuitBreakerLayer, State};
/// use bulwark::observe::Registry;
///
/// let registry = Registry::new();
/// let payments = registry.breaker("payments", Breaker::builder().consecutive_failures(3))?;
/// // Anywhere else in the program: the same breaker.
/// let again = registry.breaker("payments", Breaker::builder())?;
/// assert!(payments.ptr_eq(&again));
/// let layer = CircuitBreakerLayer::new(again);
///
/// registry.force_open("payments")?;
/// assert_eq!(payments.state(), State::ForcedOpen);
/// assert!(!registry.health().is_healthy());
/// # drop(layer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    breakers: RwLock<BTreeMap<String, BreakerEntry>>,
    keyed: RwLock<BTreeMap<String, KeyedEntry>>,
    bulkheads: RwLock<BTreeMap<String, BulkheadEntry>>,
    budgets: RwLock<BTreeMap<String, BudgetEntry>>,
    timeouts: RwLock<BTreeMap<String, TimeoutListener>>,
    retries: RwLock<BTreeMap<String, RetryListener>>,
    fleet: RwLock<BTreeMap<(String, TypeId), Arc<dyn FleetView>>>,
}

/// A layer whose state is shared with the fleet (`bulwark-fleet`'s shared
/// breakers, retry budgets, rate limiters and the fleet's connection), as
/// health sees it: register it with [`Registry::fleet_view`] and
/// [`Registry::health`] lists its [`FleetHealth`] under `fleet`.
///
/// `bulwark-fleet` implements it (feature `observe`); with
/// `Fleet::builder().registry(&registry)` every shared layer of that fleet
/// registers itself. It lives here so that this crate needs no Redis
/// client.
///
/// ```
/// use bulwark::observe::health::{FleetDetail, FleetHealth};
/// use bulwark::observe::{FleetView, Registry};
///
/// #[derive(Clone)]
/// struct Quota;
/// impl FleetView for Quota {
///     fn fleet_health(&self) -> FleetHealth {
///         FleetHealth::new("quota", FleetDetail::RateLimiter {
///             limit_per_sec: 100.0, leased: 4, granted: 96, instances: 3,
///         })
///     }
/// }
/// let registry = Registry::new();
/// registry.fleet_view("quota", Quota);
/// assert_eq!(registry.health().fleet[0].name, "quota");
/// assert!(registry.get_fleet_view::<Quota>("quota").is_some());
/// ```
pub trait FleetView: Any + Send + Sync {
    /// What it knows of the fleet now (no I/O: what its last sync read).
    fn fleet_health(&self) -> FleetHealth;
}

#[derive(Clone)]
struct BreakerEntry {
    breaker: Breaker,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::BreakerMetrics,
}

#[derive(Clone)]
struct KeyedEntry {
    /// A `KeyedBreakers<K>` for the `K` it was made with.
    breakers: Arc<dyn KeyedView>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::KeyedBreakerMetrics,
}

/// What the registry reads of a set of keyed breakers, whatever its key.
trait KeyedView: Send + Sync {
    fn entries(&self) -> Vec<(String, Breaker)>;
    fn evicted(&self) -> u64;
    fn as_any(&self) -> &dyn Any;
    #[cfg(feature = "metrics")]
    fn record(&self, metrics: &crate::metrics::KeyedBreakerMetrics);
}

impl<K> KeyedView for KeyedBreakers<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    fn entries(&self) -> Vec<(String, Breaker)> {
        KeyedBreakers::entries(self)
            .into_iter()
            .map(|(k, b)| (k.to_string(), b))
            .collect()
    }

    fn evicted(&self) -> u64 {
        KeyedBreakers::evicted(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    #[cfg(feature = "metrics")]
    fn record(&self, metrics: &crate::metrics::KeyedBreakerMetrics) {
        metrics.record(self);
    }
}

#[derive(Clone)]
struct BulkheadEntry {
    layer: BulkheadLayer,
    handle: BulkheadHandle,
    /// In front of this service's own handlers: counts for readiness.
    serving: bool,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::BulkheadMetrics,
}

#[derive(Clone)]
struct BudgetEntry {
    budget: RetryBudget,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::RetryBudgetMetrics,
}

/// What kind of instance a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// A [`Breaker`].
    Breaker,
    /// A set of [`KeyedBreakers`].
    KeyedBreakers,
    /// A shared bulkhead.
    Bulkhead,
    /// A [`RetryBudget`].
    RetryBudget,
    /// The events of a timeout layer ([`Registry::timeout_listener`]).
    Timeout,
    /// The events of a retry layer ([`Registry::retry_listener`]).
    Retry,
}

impl Kind {
    /// The lowercase name (`breaker`, `keyed_breakers`, `bulkhead`,
    /// `retry_budget`, `timeout`, `retry`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Breaker => "breaker",
            Kind::KeyedBreakers => "keyed_breakers",
            Kind::Bulkhead => "bulkhead",
            Kind::RetryBudget => "retry_budget",
            Kind::Timeout => "timeout",
            Kind::Retry => "retry",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// No breaker (or set of keyed breakers) has that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownInstance {
    name: String,
}

impl UnknownInstance {
    /// The name asked for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no breaker named `{}`", self.name)
    }
}

impl std::error::Error for UnknownInstance {}

fn get_or_insert<E: Clone, Err>(
    map: &RwLock<BTreeMap<String, E>>,
    name: &str,
    make: impl FnOnce() -> Result<E, Err>,
) -> Result<E, Err> {
    if let Some(e) = map.read().get(name) {
        return Ok(e.clone());
    }
    let mut map = map.write();
    // Another task may have made it between the two locks.
    if let Some(e) = map.get(name) {
        return Ok(e.clone());
    }
    let e = make()?;
    map.insert(name.to_owned(), e.clone());
    Ok(e)
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The breaker named `name`, built from `builder` if there is none yet
    /// (its name is set to `name`).
    ///
    /// # Errors
    ///
    /// The builder's validation error, when the breaker had to be made.
    pub fn breaker(&self, name: &str, builder: BreakerBuilder) -> Result<Breaker, ConfigError> {
        get_or_insert(&self.inner.breakers, name, || {
            let builder = builder.name(name);
            #[cfg(feature = "metrics")]
            let (builder, metrics) = {
                let m = crate::metrics::BreakerMetrics::new(name);
                (builder.on_event(m.clone()), m)
            };
            Ok(BreakerEntry {
                breaker: builder.build()?,
                #[cfg(feature = "metrics")]
                metrics,
            })
        })
        .map(|e| e.breaker)
    }

    /// The breaker named `name`, if there is one.
    pub fn get_breaker(&self, name: &str) -> Option<Breaker> {
        self.inner
            .breakers
            .read()
            .get(name)
            .map(|e| e.breaker.clone())
    }

    /// The keyed breakers named `name`, made if there are none yet: one
    /// breaker per key from `template` (named `name/key`), at most
    /// `max_keys` keys, and keys idle for `idle_timeout` dropped first.
    ///
    /// Any key that can be shown works (`String`, `http::uri::Authority`, a
    /// tenant id): health names each key's breaker by its `Display`.
    ///
    /// ```
    /// use bulwark::breaker::Breaker;
    /// use bulwark::observe::Registry;
    /// use std::time::Duration;
    ///
    /// let registry = Registry::new();
    /// let hosts = registry.keyed_breakers::<u32>("shards", Breaker::builder(), 64, Some(Duration::from_secs(600)))?;
    /// hosts.get_or_create(&7);
    /// assert_eq!(registry.health().keyed_breakers[0].keys, 1);
    /// // The same set, by name and key type.
    /// assert!(registry.get_keyed_breakers::<u32>("shards").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The template's validation error, `max_keys` of 0, or a set of that
    /// name already made with another key type.
    pub fn keyed_breakers<K>(
        &self,
        name: &str,
        template: BreakerBuilder,
        max_keys: usize,
        idle_timeout: Option<Duration>,
    ) -> Result<KeyedBreakers<K>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        let entry = get_or_insert(&self.inner.keyed, name, || {
            let template = template.name(name);
            #[cfg(feature = "metrics")]
            let (template, metrics) = {
                let m = crate::metrics::KeyedBreakerMetrics::new(name);
                (template.on_event(m.clone()), m)
            };
            let builder = template.keyed().max_keys(max_keys);
            let builder = match idle_timeout {
                Some(idle) => builder.idle_timeout(idle),
                None => builder.no_idle_timeout(),
            };
            let breakers: KeyedBreakers<K> = builder.build()?;
            Ok(KeyedEntry {
                breakers: Arc::new(breakers),
                #[cfg(feature = "metrics")]
                metrics,
            })
        })?;
        entry
            .breakers
            .as_any()
            .downcast_ref::<KeyedBreakers<K>>()
            .cloned()
            .ok_or_else(|| {
                ConfigError::new(
                    "registry",
                    "keyed_breakers",
                    format!(
                        "`{name}` holds keyed breakers of another key type than {}",
                        std::any::type_name::<K>()
                    ),
                )
            })
    }

    /// The keyed breakers named `name`, if there are, with keys of type `K`.
    pub fn get_keyed_breakers<K>(&self, name: &str) -> Option<KeyedBreakers<K>>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        let entry = self.inner.keyed.read().get(name).cloned()?;
        entry
            .breakers
            .as_any()
            .downcast_ref::<KeyedBreakers<K>>()
            .cloned()
    }

    /// Every key's breaker of the keyed breakers named `name`, keys shown
    /// as text, whatever their type (`None` when there is no such set).
    ///
    /// ```
    /// use bulwark::breaker::Breaker;
    /// use bulwark::observe::Registry;
    ///
    /// let registry = Registry::new();
    /// let hosts = registry.keyed_breakers::<String>("hosts", Breaker::builder(), 8, None)?;
    /// hosts.get_or_create(&"a.example".to_owned());
    /// let entries = registry.keyed_breaker_entries("hosts").unwrap();
    /// assert_eq!(entries[0].0, "a.example");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed_breaker_entries(&self, name: &str) -> Option<Vec<(String, Breaker)>> {
        let entry = self.inner.keyed.read().get(name).cloned()?;
        Some(entry.breakers.entries())
    }

    /// A layer for the shared bulkhead named `name`, built from `builder`
    /// if there is none yet (named `name`). Every service of every layer it
    /// returns shares one limit.
    pub fn bulkhead(&self, name: &str, builder: BulkheadBuilder) -> BulkheadLayer {
        self.bulkhead_entry(name, builder, false)
    }

    /// [`bulkhead`](Self::bulkhead), for the bulkhead in front of this
    /// service's own handlers (a server's load shedding, as
    /// [`ServerStack`](https://docs.rs/bulwark-http) registers it): it
    /// counts for [`readiness`](Self::readiness), while the other instances
    /// (a service's dependencies) count only for [`health`](Self::health).
    ///
    /// ```
    /// use bulwark::bulkhead::BulkheadLayer;
    /// use bulwark::observe::Registry;
    ///
    /// let registry = Registry::new();
    /// let shed = registry.serving_bulkhead("server", BulkheadLayer::builder().max_concurrent(64));
    /// assert!(registry.readiness().ready);
    /// assert_eq!(registry.readiness().bulkheads[0].name, "server");
    /// # drop(shed);
    /// ```
    pub fn serving_bulkhead(&self, name: &str, builder: BulkheadBuilder) -> BulkheadLayer {
        self.bulkhead_entry(name, builder, true)
    }

    fn bulkhead_entry(&self, name: &str, builder: BulkheadBuilder, serving: bool) -> BulkheadLayer {
        let made: Result<_, std::convert::Infallible> =
            get_or_insert(&self.inner.bulkheads, name, || {
                let builder = builder.name(name);
                #[cfg(feature = "metrics")]
                let (builder, metrics) = {
                    let m = crate::metrics::BulkheadMetrics::new(name);
                    (builder.on_event(m.clone()), m)
                };
                let layer = builder.build_shared();
                let handle = layer.handle().expect("a shared layer has a handle");
                #[cfg(feature = "metrics")]
                metrics.record(&handle);
                Ok(BulkheadEntry {
                    layer,
                    handle,
                    serving,
                    #[cfg(feature = "metrics")]
                    metrics,
                })
            });
        let entry = match made {
            Ok(e) => e,
            Err(never) => match never {},
        };
        if serving && !entry.serving {
            if let Some(e) = self.inner.bulkheads.write().get_mut(name) {
                e.serving = true;
            }
        }
        entry.layer
    }

    /// The listener of the timeout layer named `name`, made if there is
    /// none yet: pass it to the layer's `on_event`. The registry then
    /// counts its timeouts by limit ([`Health::timeouts`], and with the
    /// `metrics` feature `bulwark_timeouts_total{name}`). Every listener of
    /// one name shares its counts.
    ///
    /// ```
    /// use bulwark::observe::Registry;
    /// use bulwark::timeout::TimeoutLayer;
    /// use std::time::Duration;
    ///
    /// let registry = Registry::new();
    /// let layer = TimeoutLayer::new(Duration::from_secs(2))
    ///     .on_event(registry.timeout_listener("payments/total"));
    /// assert_eq!(registry.health().timeouts[0].name, "payments/total");
    /// # drop(layer);
    /// ```
    pub fn timeout_listener(&self, name: &str) -> TimeoutListener {
        let made: Result<_, std::convert::Infallible> =
            get_or_insert(&self.inner.timeouts, name, || {
                Ok(TimeoutListener(Arc::new(TimeoutCounts {
                    request: AtomicU64::new(0),
                    readiness: AtomicU64::new(0),
                    #[cfg(feature = "metrics")]
                    metrics: crate::metrics::TimeoutMetrics::new(name),
                })))
            });
        match made {
            Ok(l) => l,
            Err(never) => match never {},
        }
    }

    /// A timeout layer of `limit` whose timeouts the registry counts under
    /// `name` ([`timeout_listener`](Self::timeout_listener)): the one-call
    /// form for `ServiceBuilderExt::timeout_after`.
    ///
    /// ```
    /// use bulwark::observe::Registry;
    /// use bulwark::prelude::*;
    /// use std::time::Duration;
    /// use tower::ServiceBuilder;
    ///
    /// let registry = Registry::new();
    /// let _svc = ServiceBuilder::new()
    ///     .timeout_after(registry.timeout("inventory", Duration::from_millis(300)))
    ///     .service_fn(|_: ()| async { Ok::<_, BoxError>(()) });
    /// assert_eq!(registry.health().timeouts[0].name, "inventory");
    /// ```
    pub fn timeout(&self, name: &str, limit: Duration) -> bulwark_timeout::TimeoutLayer {
        bulwark_timeout::TimeoutLayer::new(limit).on_event(self.timeout_listener(name))
    }

    /// The listener of the retry layer named `name`, made if there is none
    /// yet: pass it to the layer's `on_event`. The registry then counts its
    /// retries and give-ups ([`Health::retries`], and with the `metrics`
    /// feature `bulwark_retries_total{name}` and the other retry metrics).
    ///
    /// ```
    /// use bulwark::observe::Registry;
    /// use bulwark::retry::RetryLayer;
    ///
    /// let registry = Registry::new();
    /// let retry = RetryLayer::new().on_event(registry.retry_listener("payments"));
    /// assert_eq!(registry.health().retries[0].retries, 0);
    /// # drop(retry);
    /// ```
    pub fn retry_listener(&self, name: &str) -> RetryListener {
        let made: Result<_, std::convert::Infallible> =
            get_or_insert(&self.inner.retries, name, || {
                Ok(RetryListener(Arc::new(RetryCounts {
                    retries: AtomicU64::new(0),
                    gave_up: AtomicU64::new(0),
                    #[cfg(feature = "metrics")]
                    metrics: crate::metrics::RetryMetrics::new(name),
                })))
            });
        match made {
            Ok(l) => l,
            Err(never) => match never {},
        }
    }

    /// The handle of the bulkhead named `name`, if there is one.
    pub fn get_bulkhead(&self, name: &str) -> Option<BulkheadHandle> {
        self.inner
            .bulkheads
            .read()
            .get(name)
            .map(|e| e.handle.clone())
    }

    /// The retry budget named `name`, `budget` if there is none yet. Pass
    /// what it returns to every retry layer that should draw on it.
    pub fn retry_budget(&self, name: &str, budget: RetryBudget) -> RetryBudget {
        let made: Result<_, std::convert::Infallible> =
            get_or_insert(&self.inner.budgets, name, || {
                Ok(BudgetEntry {
                    budget,
                    #[cfg(feature = "metrics")]
                    metrics: crate::metrics::RetryBudgetMetrics::new(name),
                })
            });
        match made {
            Ok(e) => e.budget,
            Err(never) => match never {},
        }
    }

    /// The retry budget named `name`, if there is one.
    pub fn get_retry_budget(&self, name: &str) -> Option<RetryBudget> {
        self.inner
            .budgets
            .read()
            .get(name)
            .map(|e| e.budget.clone())
    }

    /// Registers `view`, a layer shared with the fleet, under `name`: health
    /// lists it under `fleet`. It replaces a view of the same type and name
    /// (a layer built again), and is kept (alive) as long as the registry.
    pub fn fleet_view<T: FleetView>(&self, name: &str, view: T) {
        self.inner
            .fleet
            .write()
            .insert((name.to_owned(), TypeId::of::<T>()), Arc::new(view));
    }

    /// The fleet view of type `T` registered under `name` (e.g. a
    /// `bulwark_fleet::SharedBreakerLayer`), so that stacks built again
    /// for `name` share it.
    pub fn get_fleet_view<T: FleetView + Clone>(&self, name: &str) -> Option<T> {
        let view = self
            .inner
            .fleet
            .read()
            .get(&(name.to_owned(), TypeId::of::<T>()))
            .cloned()?;
        let any: Arc<dyn Any + Send + Sync> = view;
        any.downcast::<T>().ok().map(|t| (*t).clone())
    }

    /// Every instance, by kind and then name.
    pub fn list(&self) -> Vec<(Kind, String)> {
        let i = &self.inner;
        let names = |kind: Kind, names: Vec<String>| names.into_iter().map(move |n| (kind, n));
        names(Kind::Breaker, i.breakers.read().keys().cloned().collect())
            .chain(names(
                Kind::KeyedBreakers,
                i.keyed.read().keys().cloned().collect(),
            ))
            .chain(names(
                Kind::Bulkhead,
                i.bulkheads.read().keys().cloned().collect(),
            ))
            .chain(names(
                Kind::RetryBudget,
                i.budgets.read().keys().cloned().collect(),
            ))
            .chain(names(
                Kind::Timeout,
                i.timeouts.read().keys().cloned().collect(),
            ))
            .chain(names(
                Kind::Retry,
                i.retries.read().keys().cloned().collect(),
            ))
            .collect()
    }

    /// A snapshot of every breaker, by name.
    pub fn snapshots(&self) -> BTreeMap<String, Snapshot> {
        self.breaker_entries()
            .into_iter()
            .map(|(name, e)| (name, e.breaker.snapshot()))
            .collect()
    }

    fn breaker_entries(&self) -> Vec<(String, BreakerEntry)> {
        // Cloned out so no snapshot is taken under the registry's lock.
        let map = self.inner.breakers.read();
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn clone_out<E: Clone>(map: &RwLock<BTreeMap<String, E>>) -> Vec<(String, E)> {
        let map = map.read();
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The health of every instance, and the aggregate status.
    pub fn health(&self) -> Health {
        let breakers = self
            .breaker_entries()
            .into_iter()
            .map(|(name, e)| BreakerHealth::from_snapshot(name, &e.breaker.snapshot()))
            .collect();
        let keyed = Self::clone_out(&self.inner.keyed)
            .into_iter()
            .map(|(name, e)| {
                let entries = e.breakers.entries();
                let mut unhealthy: Vec<BreakerHealth> = entries
                    .iter()
                    .filter(|(_, b)| b.state() != bulwark_breaker::State::Closed)
                    .map(|(key, b)| BreakerHealth::from_snapshot(key.clone(), &b.snapshot()))
                    .collect();
                unhealthy.sort_by(|a, b| a.name.cmp(&b.name));
                KeyedBreakersHealth {
                    healthy: unhealthy.iter().all(|b| b.healthy),
                    keys: entries.len(),
                    evicted: e.breakers.evicted(),
                    unhealthy_keys: unhealthy,
                    name,
                }
            })
            .collect();
        let bulkheads = Self::clone_out(&self.inner.bulkheads)
            .into_iter()
            .map(|(name, e)| {
                let mut h = BulkheadHealth::from_handle(name, &e.handle);
                h.serving = e.serving;
                h
            })
            .collect();
        let budgets = Self::clone_out(&self.inner.budgets)
            .into_iter()
            .map(|(name, e)| {
                let available = e.budget.available();
                RetryBudgetHealth {
                    name,
                    available: (available != u64::MAX).then_some(available),
                }
            })
            .collect();
        let timeouts = Self::clone_out(&self.inner.timeouts)
            .into_iter()
            .map(|(name, l)| TimeoutHealth {
                name,
                request: l.0.request.load(Ordering::Relaxed),
                readiness: l.0.readiness.load(Ordering::Relaxed),
            })
            .collect();
        let retries = Self::clone_out(&self.inner.retries)
            .into_iter()
            .map(|(name, l)| RetryHealth {
                name,
                retries: l.0.retries.load(Ordering::Relaxed),
                gave_up: l.0.gave_up.load(Ordering::Relaxed),
            })
            .collect();
        let fleet: Vec<Arc<dyn FleetView>> = self.inner.fleet.read().values().cloned().collect();
        let fleet = fleet.iter().map(|v| v.fleet_health()).collect();
        let mut health = Health::new(breakers, keyed, bulkheads, budgets, fleet);
        health.timeouts = timeouts;
        health.retries = retries;
        health
    }

    /// Whether this service can take more requests: not ready when a
    /// bulkhead in front of its own handlers
    /// ([`serving_bulkhead`](Self::serving_bulkhead), e.g. a
    /// `ServerStack`'s) has every permit taken. Dependencies (their
    /// breakers, the bulkheads of client stacks) never make it unready:
    /// when a dependency fails, every replica sees it at once, and taking
    /// them all out of the load balancer would turn a partial outage into a
    /// total one. See [`health`](crate::health) for which probe to use for
    /// what.
    pub fn readiness(&self) -> Readiness {
        let bulkheads: Vec<BulkheadHealth> = Self::clone_out(&self.inner.bulkheads)
            .into_iter()
            .filter(|(_, e)| e.serving)
            .map(|(name, e)| {
                let mut h = BulkheadHealth::from_handle(name, &e.handle);
                h.serving = true;
                h
            })
            .collect();
        Readiness {
            ready: bulkheads.iter().all(|b| b.healthy),
            bulkheads,
        }
    }

    fn control(&self, name: &str, op: fn(&Breaker)) -> Result<(), UnknownInstance> {
        if let Some(b) = self.get_breaker(name) {
            op(&b);
            return Ok(());
        }
        if let Some(entries) = self.keyed_breaker_entries(name) {
            for (_, b) in entries {
                op(&b);
            }
            return Ok(());
        }
        Err(UnknownInstance {
            name: name.to_owned(),
        })
    }

    /// Closes the breaker named `name` and forgets its counts
    /// ([`Breaker::reset`]); for keyed breakers, every key's.
    ///
    /// # Errors
    ///
    /// When no breaker has that name.
    pub fn reset(&self, name: &str) -> Result<(), UnknownInstance> {
        self.control(name, Breaker::reset)
    }

    /// Opens the breaker named `name` until reset ([`Breaker::force_open`]);
    /// for keyed breakers, every current key's.
    ///
    /// # Errors
    ///
    /// When no breaker has that name.
    pub fn force_open(&self, name: &str) -> Result<(), UnknownInstance> {
        self.control(name, Breaker::force_open)
    }

    /// Forces the breaker named `name` closed, letting every call through
    /// until reset ([`Breaker::force_closed`]); for keyed breakers, every current
    /// key's.
    ///
    /// # Errors
    ///
    /// When no breaker has that name.
    pub fn force_closed(&self, name: &str) -> Result<(), UnknownInstance> {
        self.control(name, Breaker::force_closed)
    }

    /// Refreshes every gauge read from handles: breaker states and rates,
    /// keyed breaker counts, bulkhead in-flight, queued and limit, retry
    /// budgets. Call it just before a scrape.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn update_gauges(&self) {
        for (_, e) in self.breaker_entries() {
            e.metrics.record(&e.breaker.snapshot());
        }
        for (_, e) in Self::clone_out(&self.inner.keyed) {
            e.breakers.record(&e.metrics);
        }
        for (_, e) in Self::clone_out(&self.inner.bulkheads) {
            e.metrics.record(&e.handle);
        }
        for (_, e) in Self::clone_out(&self.inner.budgets) {
            e.metrics.record(&e.budget);
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("instances", &self.list())
            .finish()
    }
}

struct TimeoutCounts {
    request: AtomicU64,
    readiness: AtomicU64,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::TimeoutMetrics,
}

/// A timeout layer's listener from [`Registry::timeout_listener`]: counts
/// its timeouts for health (and metrics, with the `metrics` feature).
/// Clones share the counts.
///
/// ```
/// use bulwark::observe::Registry;
/// use bulwark::timeout::TimeoutLayer;
/// use std::time::Duration;
///
/// let registry = Registry::new();
/// let listener = registry.timeout_listener("inventory");
/// let layer = TimeoutLayer::new(Duration::from_millis(250)).on_event(listener);
/// # drop(layer);
/// ```
#[derive(Clone)]
pub struct TimeoutListener(Arc<TimeoutCounts>);

impl Listener<TimeoutEvent> for TimeoutListener {
    fn on_event(&self, event: &TimeoutEvent) {
        #[allow(irrefutable_let_patterns)]
        if let TimeoutEvent::Elapsed(e) = event {
            match e.limit() {
                Limit::Readiness => self.0.readiness.fetch_add(1, Ordering::Relaxed),
                _ => self.0.request.fetch_add(1, Ordering::Relaxed),
            };
        }
        #[cfg(feature = "metrics")]
        self.0.metrics.on_event(event);
    }
}

impl fmt::Debug for TimeoutListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutListener")
            .field("request", &self.0.request.load(Ordering::Relaxed))
            .field("readiness", &self.0.readiness.load(Ordering::Relaxed))
            .finish()
    }
}

struct RetryCounts {
    retries: AtomicU64,
    gave_up: AtomicU64,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::RetryMetrics,
}

/// A retry layer's listener from [`Registry::retry_listener`]: counts its
/// retries and give-ups for health (and metrics, with the `metrics`
/// feature). Clones share the counts.
///
/// ```
/// use bulwark::observe::Registry;
/// use bulwark::retry::RetryLayer;
///
/// let registry = Registry::new();
/// let retry = RetryLayer::new().on_event(registry.retry_listener("inventory"));
/// # drop(retry);
/// ```
#[derive(Clone)]
pub struct RetryListener(Arc<RetryCounts>);

impl Listener<RetryEvent> for RetryListener {
    fn on_event(&self, event: &RetryEvent) {
        match event {
            RetryEvent::RetryScheduled { .. } => {
                self.0.retries.fetch_add(1, Ordering::Relaxed);
            }
            RetryEvent::GaveUp { .. } => {
                self.0.gave_up.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        #[cfg(feature = "metrics")]
        self.0.metrics.on_event(event);
    }
}

impl fmt::Debug for RetryListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryListener")
            .field("retries", &self.0.retries.load(Ordering::Relaxed))
            .field("gave_up", &self.0.gave_up.load(Ordering::Relaxed))
            .finish()
    }
}
