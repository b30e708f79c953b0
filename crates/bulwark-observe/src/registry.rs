//! A registry of named instances: breakers, keyed breakers, bulkheads and
//! retry budgets.

use crate::health::{
    BreakerHealth, BulkheadHealth, Health, KeyedBreakersHealth, RetryBudgetHealth,
};
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::{Breaker, BreakerBuilder, Snapshot};
use bulwark_bulkhead::{BulkheadBuilder, BulkheadHandle, BulkheadLayer};
use bulwark_core::error::ConfigError;
use bulwark_retry::RetryBudget;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::fmt;
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
/// use bulwark_breaker::{Breaker, CircuitBreakerLayer, State};
/// use bulwark_observe::Registry;
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
}

#[derive(Clone)]
struct BreakerEntry {
    breaker: Breaker,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::BreakerMetrics,
}

#[derive(Clone)]
struct KeyedEntry {
    breakers: KeyedBreakers<String>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::KeyedBreakerMetrics,
}

#[derive(Clone)]
struct BulkheadEntry {
    layer: BulkheadLayer,
    handle: BulkheadHandle,
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
}

impl Kind {
    /// The lowercase name (`breaker`, `keyed_breakers`, `bulkhead`,
    /// `retry_budget`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Breaker => "breaker",
            Kind::KeyedBreakers => "keyed_breakers",
            Kind::Bulkhead => "bulkhead",
            Kind::RetryBudget => "retry_budget",
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
    /// # Errors
    ///
    /// The template's validation error, or `max_keys` of 0.
    pub fn keyed_breakers(
        &self,
        name: &str,
        template: BreakerBuilder,
        max_keys: usize,
        idle_timeout: Option<Duration>,
    ) -> Result<KeyedBreakers<String>, ConfigError> {
        get_or_insert(&self.inner.keyed, name, || {
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
            Ok(KeyedEntry {
                breakers: builder.build()?,
                #[cfg(feature = "metrics")]
                metrics,
            })
        })
        .map(|e| e.breakers)
    }

    /// The keyed breakers named `name`, if there are.
    pub fn get_keyed_breakers(&self, name: &str) -> Option<KeyedBreakers<String>> {
        self.inner
            .keyed
            .read()
            .get(name)
            .map(|e| e.breakers.clone())
    }

    /// A layer for the shared bulkhead named `name`, built from `builder`
    /// if there is none yet (named `name`). Every service of every layer it
    /// returns shares one limit.
    pub fn bulkhead(&self, name: &str, builder: BulkheadBuilder) -> BulkheadLayer {
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
                    #[cfg(feature = "metrics")]
                    metrics,
                })
            });
        match made {
            Ok(e) => e.layer,
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
            .map(|(name, e)| BulkheadHealth::from_handle(name, &e.handle))
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
        Health::new(breakers, keyed, bulkheads, budgets)
    }

    fn control(&self, name: &str, op: fn(&Breaker)) -> Result<(), UnknownInstance> {
        if let Some(b) = self.get_breaker(name) {
            op(&b);
            return Ok(());
        }
        if let Some(k) = self.get_keyed_breakers(name) {
            for (_, b) in k.entries() {
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
            e.metrics.record(&e.breakers);
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
