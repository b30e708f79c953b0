//! [`ClientStack`]: the recommended client stack for any tower service.

use crate::optional::{Optional, OptionalLayer};
use bulwark_breaker::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
use bulwark_breaker::{Breaker, BreakerBuilder, CircuitBreakerLayer};
use bulwark_bulkhead::{Bulkhead, BulkheadBuilder, BulkheadLayer};
use bulwark_core::error::ConfigError;
use bulwark_core::DefaultClassifier;
use bulwark_retry::replay::CloneReplay;
use bulwark_retry::{Retry, RetryLayer};
use bulwark_throttle::{AdaptiveThrottle, AdaptiveThrottleBuilder, AdaptiveThrottleLayer};
use bulwark_timeout::{Timeout, TimeoutLayer};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// One breaker for every request (the default of [`ClientStack`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct OneBreaker;

/// One breaker per key of the request (see
/// [`ClientStack::breaker_per_key`]).
pub struct KeyedBy<F, K> {
    key: F,
    max_keys: usize,
    _key: PhantomData<fn() -> K>,
}

impl<F: Clone, K> Clone for KeyedBy<F, K> {
    fn clone(&self) -> Self {
        KeyedBy {
            key: self.key.clone(),
            max_keys: self.max_keys,
            _key: PhantomData,
        }
    }
}

impl<F, K> fmt::Debug for KeyedBy<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBy")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// Makes the breaker part of a stack: one breaker ([`OneBreaker`]), or one
/// per key ([`KeyedBy`]).
pub trait MakeBreaker<C> {
    /// The layer made.
    type Layer: Clone;

    /// Makes it from the stack's breakers (its template, and the registry
    /// they come from, if any) and classifier.
    fn make(&self, breakers: &BreakerParts, classifier: C) -> Result<Self::Layer, ConfigError>;
}

impl<C: Clone> MakeBreaker<C> for OneBreaker {
    type Layer = CircuitBreakerLayer<C>;

    fn make(&self, breakers: &BreakerParts, classifier: C) -> Result<Self::Layer, ConfigError> {
        Ok(CircuitBreakerLayer::new(breakers.one()?).classifier(classifier))
    }
}

impl<C: Clone, F: Clone, K> MakeBreaker<C> for KeyedBy<F, K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    type Layer = KeyedCircuitBreakerLayer<K, F, C>;

    fn make(&self, breakers: &BreakerParts, classifier: C) -> Result<Self::Layer, ConfigError> {
        // The keyed breakers' own default idle timeout.
        let breakers = breakers.keyed(self.max_keys, Duration::from_secs(600))?;
        Ok(KeyedCircuitBreakerLayer::new(breakers, self.key.clone()).classifier(classifier))
    }
}

/// A part of a stack: its settings, kept when the part is turned off, so
/// that turning it on again starts from them.
#[derive(Debug, Clone)]
struct Part<T> {
    settings: T,
    on: bool,
}

impl<T> Part<T> {
    fn on(settings: T) -> Self {
        Part { settings, on: true }
    }

    fn off(settings: T) -> Self {
        Part {
            settings,
            on: false,
        }
    }

    fn edit(self, edit: impl FnOnce(T) -> T) -> Self {
        Part::on(edit(self.settings))
    }

    fn turned_off(self) -> Self {
        Part::off(self.settings)
    }

    fn get(self) -> Option<T> {
        self.on.then_some(self.settings)
    }

    fn as_ref(&self) -> Option<&T> {
        self.on.then_some(&self.settings)
    }
}

/// Builds the recommended client stack around any tower service, outermost
/// first:
///
/// ```text
///  request ─▶ total timeout ─▶ retry (budget) ─▶ circuit breaker ─▶ attempt timeout ─▶ bulkhead ─▶ service
/// ```
///
/// One classifier decides for retry and the breaker; one seed makes every
/// random draw of the stack repeatable. Every part can be turned off, and
/// every default was chosen by what it does in `bulwark-sim`'s scenarios
/// (see the [crate docs](crate) for the table and the reasons).
///
/// ```
/// use bulwark::stack::ClientStack;
/// use bulwark::{BoxError, Outcome};
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// let stack = ClientStack::new()
///     .name("inventory")
///     .total_timeout(Duration::from_secs(2))
///     .classifier(|r: &Result<u16, BoxError>| match r {
///         Ok(s) if *s >= 500 => Outcome::Failure,
///         Ok(_) => Outcome::Success,
///         Err(e) => Outcome::of_error(e),
///     })
///     .build()?;
/// let breaker = stack.breaker().unwrap().breaker().clone();
/// let svc = ServiceBuilder::new()
///     .layer(stack)
///     .service_fn(|_: ()| async { Ok::<u16, BoxError>(200) });
/// assert_eq!(svc.oneshot(()).await?, 200);
/// assert_eq!(breaker.name(), Some("inventory"));
/// # Ok(())
/// # }
/// ```
pub struct ClientStack<C = DefaultClassifier, P = (), R = CloneReplay, M = OneBreaker> {
    name: Option<Arc<str>>,
    total_timeout: Option<Duration>,
    attempt_timeout: Option<Option<Duration>>,
    retry: Part<RetryLayer>,
    throttle: Part<AdaptiveThrottleBuilder>,
    breaker: Part<BreakerBuilder>,
    mode: M,
    bulkhead: Part<BulkheadBuilder>,
    classifier: C,
    pushback: P,
    replay: R,
    seed: Option<u64>,
    #[cfg(feature = "observe")]
    registry: Option<bulwark_observe::Registry>,
}

impl ClientStack {
    /// The defaults (see the [crate docs](crate)).
    pub fn new() -> Self {
        ClientStack {
            name: None,
            total_timeout: Some(crate::defaults::TOTAL_TIMEOUT),
            attempt_timeout: None,
            retry: Part::on(crate::defaults::retry()),
            throttle: Part::off(crate::defaults::throttle()),
            breaker: Part::on(crate::defaults::breaker()),
            mode: OneBreaker,
            bulkhead: Part::on(crate::defaults::bulkhead()),
            classifier: DefaultClassifier,
            pushback: (),
            replay: CloneReplay,
            seed: None,
            #[cfg(feature = "observe")]
            registry: None,
        }
    }
}

impl Default for ClientStack {
    fn default() -> Self {
        Self::new()
    }
}

/// # Settings
///
/// One shape for every part, here and in `bulwark-http`'s stacks: a part
/// with one setting (a timeout) takes its value; a part with a builder
/// (retry, breaker, bulkhead, adaptive throttle) takes a closure that
/// edits the stack's default builder, so what you do not set keeps the
/// stack's default; `no_PART()` turns a part off, and setting it again
/// turns it back on from the settings it had.
///
/// ```
/// use bulwark::stack::ClientStack;
/// use std::time::Duration;
///
/// let layer = ClientStack::new()
///     .total_timeout(Duration::from_secs(2))
///     .retry(|r| r.max_attempts(2))
///     // Only the failure rate changes: the window, the minimum number of
///     // calls and the open duration stay the stack's.
///     .breaker(|b| b.failure_rate(0.3))
///     .bulkhead(|b| b.max_concurrent(16))
///     .build()?;
/// assert_eq!(layer.bulkhead().unwrap().limit(), 16);
/// # Ok::<(), bulwark::error::ConfigError>(())
/// ```
impl<C, P, R, M> ClientStack<C, P, R, M> {
    /// Names the stack: its breaker (or breakers, `name/key`) and bulkhead
    /// carry the name in events, errors and metrics.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Names the stack `name` and registers its parts in `registry`
    /// (feature `observe`), so that health and metrics show them: the
    /// breaker as breaker `NAME` (or keyed breakers `NAME` with
    /// [`breaker_per_key`](Self::breaker_per_key)), the bulkhead as the
    /// shared bulkhead `NAME`, retry as retry `NAME` drawing on the retry
    /// budget `NAME`, the timeouts as `NAME/total` and `NAME/attempt`.
    ///
    /// The registry makes each instance on first use and gives the same one
    /// to every later build under that name: stacks rebuilt (after a reload)
    /// keep their breaker's state. The registry's instance wins over this
    /// stack's settings for a breaker template or bulkhead limit made
    /// earlier (change those live with `Breaker::reconfigure` and
    /// `BulkheadHandle::set_limit`).
    ///
    /// ```
    /// use bulwark::observe::Registry;
    /// use bulwark::stack::ClientStack;
    ///
    /// let registry = Registry::new();
    /// let layer = ClientStack::new().registry(&registry, "inventory").build()?;
    /// assert!(registry.get_breaker("inventory").is_some());
    /// assert_eq!(registry.health().bulkheads[0].name, "inventory");
    /// # drop(layer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "observe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
    pub fn registry(mut self, registry: &bulwark_observe::Registry, name: &str) -> Self {
        self.name = Some(name.into());
        self.registry = Some(registry.clone());
        self
    }

    /// Bounds the whole call, retries and backoff included, and is the
    /// deadline retry plans within (default 10 s). Set it to what your
    /// caller waits.
    pub fn total_timeout(mut self, limit: Duration) -> Self {
        self.total_timeout = Some(limit);
        self
    }

    /// No total timeout.
    pub fn no_total_timeout(mut self) -> Self {
        self.total_timeout = None;
        self
    }

    /// Bounds each attempt (default: half the total timeout, see
    /// [`default_attempt_timeout`](crate::default_attempt_timeout)).
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = Some(Some(limit));
        self
    }

    /// No attempt timeout.
    pub fn no_attempt_timeout(mut self) -> Self {
        self.attempt_timeout = Some(None);
        self
    }

    /// Edits the retry settings (attempts, backoff, budget, pushback cap,
    /// listeners), starting from the stack's: [`RetryLayer::new`]'s (3
    /// attempts, budget 20%). The stack gives retry its classifier,
    /// pushback, replay, seed and deadline. One attempt means no retry:
    /// the same as `no_retry()`, with no retry layer and so no retry or
    /// retry budget in the registry's health and metrics.
    ///
    /// ```
    /// use bulwark::backoff::BackoffPolicy;
    /// use bulwark::stack::ClientStack;
    /// use std::time::Duration;
    ///
    /// let stack = ClientStack::new()
    ///     .retry(|r| r.max_attempts(5).backoff(BackoffPolicy::constant(Duration::from_millis(50))));
    /// # let _ = stack.build()?;
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    pub fn retry(mut self, edit: impl FnOnce(RetryLayer) -> RetryLayer) -> Self {
        self.retry = self.retry.edit(edit);
        self
    }

    /// No retry.
    pub fn no_retry(mut self) -> Self {
        self.retry = self.retry.turned_off();
        self
    }

    /// Turns on client-side adaptive throttling (see `bulwark-throttle`)
    /// between retry and the breaker, with the settings `edit` makes from
    /// [`AdaptiveThrottleLayer::builder`]'s (off by default): it sheds a
    /// share of attempts locally as the upstream's accept rate falls. The
    /// stack gives it its name, seed and classifier.
    ///
    /// ```
    /// use bulwark::stack::ClientStack;
    ///
    /// let layer = ClientStack::new().adaptive_throttle(|t| t).build()?;
    /// assert!(layer.throttle().is_some());
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    pub fn adaptive_throttle(
        mut self,
        edit: impl FnOnce(AdaptiveThrottleBuilder) -> AdaptiveThrottleBuilder,
    ) -> Self {
        self.throttle = self.throttle.edit(edit);
        self
    }

    /// No adaptive throttling.
    pub fn no_adaptive_throttle(mut self) -> Self {
        self.throttle = self.throttle.turned_off();
        self
    }

    /// Edits the breaker's template, starting from the stack's:
    /// [`Breaker::builder`](bulwark_breaker::Breaker::builder)'s defaults,
    /// each chosen in the simulator. What `edit` does not set keeps the
    /// stack's default. The stack gives it its name and seed.
    ///
    /// ```
    /// use bulwark::stack::ClientStack;
    ///
    /// // Trips at 30% failures; window, minimum calls, open time: the stack's.
    /// let stack = ClientStack::new().breaker(|b| b.failure_rate(0.3));
    /// # let _ = stack.build()?;
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    pub fn breaker(mut self, edit: impl FnOnce(BreakerBuilder) -> BreakerBuilder) -> Self {
        self.breaker = self.breaker.edit(edit);
        self
    }

    /// No breaker.
    pub fn no_breaker(mut self) -> Self {
        self.breaker = self.breaker.turned_off();
        self
    }

    /// Edits the bulkhead, starting from the stack's: at most 100 calls in
    /// flight, fail fast. In `bulwark-sim`'s `black-hole` it fills within
    /// half a second at 200 requests/s, so callers are refused locally
    /// instead of waiting out their deadlines, and in `overload` it keeps
    /// 49.6% of twice the upstream's capacity, the ceiling being 50%; the
    /// adaptive limits lost there and collapsed in `brownout`. Every
    /// service the layer makes shares it.
    ///
    /// ```
    /// use bulwark::stack::ClientStack;
    /// use std::time::Duration;
    ///
    /// let layer = ClientStack::new()
    ///     .bulkhead(|b| b.max_concurrent(8).max_wait(Duration::from_millis(20)))
    ///     .build()?;
    /// assert_eq!(layer.bulkhead().unwrap().limit(), 8);
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    pub fn bulkhead(mut self, edit: impl FnOnce(BulkheadBuilder) -> BulkheadBuilder) -> Self {
        self.bulkhead = self.bulkhead.edit(edit);
        self
    }

    /// No bulkhead.
    pub fn no_bulkhead(mut self) -> Self {
        self.bulkhead = self.bulkhead.turned_off();
        self
    }

    /// Seeds every random draw of the stack (retry jitter, the breaker's
    /// open-time jitter), for runs that repeat exactly.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Decides, for retry and the breaker alike, what each result was.
    pub fn classifier<C2>(self, classifier: C2) -> ClientStack<C2, P, R, M> {
        self.with_parts(|_, p, r, m| (classifier, p, r, m))
    }

    /// Reads a server's pushback from results, for retry (see
    /// [`Pushback`](bulwark_retry::policy::Pushback)).
    pub fn pushback<P2>(self, pushback: P2) -> ClientStack<C, P2, R, M> {
        self.with_parts(|c, _, r, m| (c, pushback, r, m))
    }

    /// How requests are copied for another attempt (see
    /// [`Replay`](bulwark_retry::replay::Replay)): return `None` for
    /// requests that must not be sent twice.
    pub fn replay<R2>(self, replay: R2) -> ClientStack<C, P, R2, M> {
        self.with_parts(|c, p, _, m| (c, p, replay, m))
    }

    /// One breaker per key of the request (a host, a tenant), keeping at
    /// most `max_keys` of them, so one bad key does not cut off the others.
    ///
    /// ```
    /// use bulwark::stack::ClientStack;
    ///
    /// // Requests are (host, path) pairs here.
    /// let stack = ClientStack::new()
    ///     .breaker_per_key(|req: &(u32, String)| req.0, 1_000)
    ///     .build()
    ///     .unwrap();
    /// # let _ = stack;
    /// ```
    pub fn breaker_per_key<F, Req, K>(
        self,
        key: F,
        max_keys: usize,
    ) -> ClientStack<C, P, R, KeyedBy<F, K>>
    where
        F: Fn(&Req) -> K + Clone,
    {
        self.with_parts(|c, p, r, _| {
            let mode = KeyedBy {
                key,
                max_keys,
                _key: PhantomData,
            };
            (c, p, r, mode)
        })
    }

    /// The same settings with the typed parts (classifier, pushback,
    /// replay, breaker mode) changed by `f`.
    fn with_parts<C2, P2, R2, M2>(
        self,
        f: impl FnOnce(C, P, R, M) -> (C2, P2, R2, M2),
    ) -> ClientStack<C2, P2, R2, M2> {
        let (classifier, pushback, replay, mode) =
            f(self.classifier, self.pushback, self.replay, self.mode);
        ClientStack {
            name: self.name,
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry,
            throttle: self.throttle,
            breaker: self.breaker,
            mode,
            bulkhead: self.bulkhead,
            classifier,
            pushback,
            replay,
            seed: self.seed,
            #[cfg(feature = "observe")]
            registry: self.registry,
        }
    }

    fn attempt_limit(&self) -> Option<Duration> {
        self.attempt_timeout
            .unwrap_or_else(|| Some(crate::default_attempt_timeout(self.total_timeout)))
    }
}

impl<C: Clone, P, R, M> ClientStack<C, P, R, M> {
    /// Validates the settings and wires every part the same way for every
    /// stack built on this one (`bulwark-http`'s `ClientStack` is): the
    /// stack's name, seed and classifier given to each part, the total
    /// timeout as retry's deadline, and, with a
    /// [`registry`](Self::registry), each part the registry's instance.
    /// [`build`](Self::build) puts the parts in their order; a stack with
    /// layer types of its own (HTTP's, which also bound the response
    /// body) puts them in the same order.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), except for the breaker's settings: they
    /// are checked when [`BreakerParts`] makes the breakers.
    pub fn into_parts(self) -> Result<ClientParts<C, P, R>, ConfigError> {
        self.split().map(|(parts, _)| parts)
    }

    /// The parts, and the breaker mode for [`build`](Self::build).
    fn split(self) -> Result<(ClientParts<C, P, R>, M), ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::new("client stack", field, reason));
        let attempt = self.attempt_limit();
        if self.total_timeout.is_some_and(|t| t.is_zero()) {
            return invalid("total_timeout", "must be longer than zero".into());
        }
        if attempt.is_some_and(|t| t.is_zero()) {
            return invalid("attempt_timeout", "must be longer than zero".into());
        }
        let retries = self
            .retry
            .as_ref()
            .is_some_and(|r| r.get_max_attempts() > 1);
        if let (Some(total), Some(attempt), true, true) = (
            self.total_timeout,
            attempt,
            retries,
            self.attempt_timeout.is_some(),
        ) {
            if attempt >= total {
                return invalid(
                    "attempt_timeout",
                    format!(
                        "{attempt:?} is not shorter than the total timeout of {total:?}, so no retry could ever run"
                    ),
                );
            }
        }
        #[cfg(feature = "observe")]
        let registry = match (&self.registry, &self.name) {
            (Some(r), Some(name)) => Some((r.clone(), name.clone())),
            _ => None,
        };
        let retry = match self.retry.get() {
            None => None,
            Some(retry) => {
                retry.validate()?;
                (retry.get_max_attempts() > 1).then(|| {
                    let retry = retry
                        .classifier(self.classifier.clone())
                        .pushback(self.pushback)
                        .replay(self.replay);
                    let retry = match self.seed {
                        Some(seed) => retry.seed(seed),
                        None => retry,
                    };
                    #[cfg(feature = "observe")]
                    let retry = match &registry {
                        Some((r, name)) => {
                            let budget = r.retry_budget(name, retry.get_budget().clone());
                            retry.budget(budget).on_event(r.retry_listener(name))
                        }
                        None => retry,
                    };
                    match self.total_timeout {
                        Some(total) => retry.deadline(total),
                        None => retry,
                    }
                })
            }
        };
        let breaker = self.breaker.get().map(|mut template| {
            if let Some(name) = &self.name {
                template = template.name(name.clone());
            }
            if let Some(seed) = self.seed {
                template = template.seed(seed);
            }
            BreakerParts {
                template,
                #[cfg(feature = "observe")]
                registry: registry.clone(),
            }
        });
        let bulkhead = match self.bulkhead.get() {
            None => None,
            Some(b) => {
                b.validate()?;
                #[cfg(feature = "observe")]
                let made = match &registry {
                    Some((r, name)) => r.bulkhead(name, b),
                    None => named(b, &self.name).build_shared(),
                };
                #[cfg(not(feature = "observe"))]
                let made = named(b, &self.name).build_shared();
                Some(made)
            }
        };
        let throttle = match self.throttle.get() {
            None => None,
            Some(mut t) => {
                if let Some(name) = &self.name {
                    t = t.name(name.clone());
                }
                if let Some(seed) = self.seed {
                    t = t.seed(seed);
                }
                Some(t.build()?.classifier(self.classifier.clone()))
            }
        };
        let parts = ClientParts {
            classifier: self.classifier,
            name: self.name,
            total_timeout: self.total_timeout,
            attempt_timeout: attempt,
            retry,
            throttle,
            breaker,
            bulkhead,
            #[cfg(feature = "observe")]
            registry,
        };
        Ok((parts, self.mode))
    }
}

/// The bulkhead builder named `name`, if the stack has one.
fn named(b: BulkheadBuilder, name: &Option<Arc<str>>) -> BulkheadBuilder {
    match name {
        Some(name) => b.name(name.clone()),
        None => b,
    }
}

impl<C, P, R, M> ClientStack<C, P, R, M>
where
    C: Clone,
    M: MakeBreaker<C>,
{
    /// Validates the settings and builds the layer. Refuses what cannot
    /// work, naming the setting: a zero timeout, an attempt timeout not
    /// shorter than the total timeout (retry could never run), an invalid
    /// retry, breaker or bulkhead (their errors name their own layer and
    /// setting, e.g. `circuit breaker`, `failure_rate`).
    pub fn build(self) -> Result<ClientLayer<C, P, R, M::Layer>, ConfigError> {
        let (parts, mode) = self.split()?;
        let classifier = parts.classifier.clone();
        let breaker = match &parts.breaker {
            Some(b) => Some(mode.make(b, classifier.clone())?),
            None => None,
        };
        let timeout = |limit: Duration, _part: &str| {
            let layer = TimeoutLayer::new(limit);
            #[cfg(feature = "observe")]
            if let Some(l) = parts.timeout_listener(_part) {
                return layer.on_event(l);
            }
            layer
        };
        Ok(ClientLayer {
            total: parts.total_timeout.map(|t| timeout(t, "total")),
            attempt: parts.attempt_timeout.map(|t| timeout(t, "attempt")),
            retry: parts.retry,
            throttle: parts.throttle,
            breaker,
            bulkhead: parts.bulkhead.map(|b| b.classifier(classifier)),
        })
    }
}

/// The parts of a [`ClientStack`], validated and wired, from
/// [`ClientStack::into_parts`]: for stacks that put their own layer types
/// in the stack's order (`bulwark-http`'s `ClientStack` is one), so that
/// the settings, their checks and the registry wiring exist once.
#[non_exhaustive]
pub struct ClientParts<C, P, R> {
    /// The classifier every part judges by.
    pub classifier: C,
    /// The stack's name, if it has one.
    pub name: Option<Arc<str>>,
    /// The total timeout's limit, `None` without one.
    pub total_timeout: Option<Duration>,
    /// The attempt timeout's limit in force (as set, or
    /// [`default_attempt_timeout`](crate::default_attempt_timeout)), `None`
    /// without one.
    pub attempt_timeout: Option<Duration>,
    /// Retry, with the stack's classifier, pushback, replay, seed and the
    /// total timeout as its deadline (and with a registry, the registry's
    /// budget and listener); `None` without retry or with one attempt.
    pub retry: Option<RetryLayer<C, P, R>>,
    /// The adaptive throttle, named, seeded and classified; `None` without
    /// one.
    pub throttle: Option<AdaptiveThrottleLayer<C>>,
    /// Where the breakers come from; `None` without a breaker.
    pub breaker: Option<BreakerParts>,
    /// The bulkhead, named, shared by every service it makes (with a
    /// registry, the registry's); `None` without one.
    pub bulkhead: Option<BulkheadLayer>,
    #[cfg(feature = "observe")]
    registry: Option<(bulwark_observe::Registry, Arc<str>)>,
}

impl<C, P, R> ClientParts<C, P, R> {
    /// The registry's listener for the timeout `part` (`total`,
    /// `attempt`): it is registered as the timeout `NAME/PART`. `None`
    /// without a registry.
    #[cfg(feature = "observe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
    pub fn timeout_listener(&self, part: &str) -> Option<bulwark_observe::TimeoutListener> {
        self.registry
            .as_ref()
            .map(|(r, name)| r.timeout_listener(&format!("{name}/{part}")))
    }
}

impl<C, P, R> fmt::Debug for ClientParts<C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientParts")
            .field("name", &self.name)
            .field("total_timeout", &self.total_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("retry", &self.retry)
            .field("throttle", &self.throttle.is_some())
            .field("breaker", &self.breaker)
            .field("bulkhead", &self.bulkhead.is_some())
            .finish_non_exhaustive()
    }
}

/// The breaker part of a stack: the template (named and seeded by the
/// stack) and where its instances come from: made here, or, with a
/// registry, the registry's instances of the stack's name.
#[derive(Debug)]
pub struct BreakerParts {
    template: BreakerBuilder,
    #[cfg(feature = "observe")]
    registry: Option<(bulwark_observe::Registry, Arc<str>)>,
}

impl BreakerParts {
    /// The template every breaker is made from.
    pub fn template(&self) -> &BreakerBuilder {
        &self.template
    }

    /// One breaker (the registry's breaker `NAME`, with a registry).
    ///
    /// # Errors
    ///
    /// The template's settings, refused.
    pub fn one(&self) -> Result<Breaker, ConfigError> {
        #[cfg(feature = "observe")]
        if let Some((r, name)) = &self.registry {
            return r.breaker(name, self.template.clone());
        }
        self.template.clone().build()
    }

    /// One breaker per key, at most `max_keys`, each dropped once unused
    /// for `idle` (the registry's keyed breakers `NAME`, with a registry).
    ///
    /// # Errors
    ///
    /// The template's settings or `max_keys`, refused.
    pub fn keyed<K>(&self, max_keys: usize, idle: Duration) -> Result<KeyedBreakers<K>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        #[cfg(feature = "observe")]
        if let Some((r, name)) = &self.registry {
            return r.keyed_breakers::<K>(name, self.template.clone(), max_keys, Some(idle));
        }
        self.template
            .clone()
            .keyed()
            .max_keys(max_keys)
            .idle_timeout(idle)
            .build()
    }
}

impl<C, P, R, M: fmt::Debug> fmt::Debug for ClientStack<C, P, R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStack")
            .field("name", &self.name)
            .field("total_timeout", &self.total_timeout)
            .field("attempt_timeout", &self.attempt_limit())
            .field("retry", &self.retry.as_ref())
            .field("throttle", &self.throttle.as_ref())
            .field("breaker", &self.breaker.as_ref())
            .field("mode", &self.mode)
            .field("bulkhead", &self.bulkhead.as_ref())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

/// The layer [`ClientStack::build`] makes; see [`ClientStack`] for the
/// order. A cheap clone: every service it makes shares the breaker, the
/// retry budget and the bulkhead.
pub struct ClientLayer<C, P, R, B> {
    total: Option<TimeoutLayer>,
    retry: Option<RetryLayer<C, P, R>>,
    throttle: Option<AdaptiveThrottleLayer<C>>,
    breaker: Option<B>,
    attempt: Option<TimeoutLayer>,
    bulkhead: Option<BulkheadLayer<C>>,
}

impl<C, P, R, B> ClientLayer<C, P, R, B> {
    /// The breaker layer ([`CircuitBreakerLayer::breaker`] or
    /// [`KeyedCircuitBreakerLayer::breakers`] give the handles), `None`
    /// without a breaker.
    pub fn breaker(&self) -> Option<&B> {
        self.breaker.as_ref()
    }

    /// The retry budget, `None` without retry.
    pub fn retry_budget(&self) -> Option<&bulwark_retry::RetryBudget> {
        self.retry.as_ref().map(RetryLayer::get_budget)
    }

    /// The adaptive throttle's handle, `None` without one.
    pub fn throttle(&self) -> Option<bulwark_throttle::AdaptiveThrottleHandle> {
        self.throttle.as_ref().map(AdaptiveThrottleLayer::handle)
    }

    /// The bulkhead's handle, `None` without a bulkhead.
    pub fn bulkhead(&self) -> Option<bulwark_bulkhead::BulkheadHandle> {
        self.bulkhead.as_ref().and_then(BulkheadLayer::handle)
    }
}

impl<C: Clone, P: Clone, R: Clone, B: Clone> Clone for ClientLayer<C, P, R, B> {
    fn clone(&self) -> Self {
        ClientLayer {
            total: self.total.clone(),
            retry: self.retry.clone(),
            throttle: self.throttle.clone(),
            breaker: self.breaker.clone(),
            attempt: self.attempt.clone(),
            bulkhead: self.bulkhead.clone(),
        }
    }
}

impl<C, P, R, B> fmt::Debug for ClientLayer<C, P, R, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLayer")
            .field("total", &self.total)
            .field("retry", &self.retry)
            .field("throttle", &self.throttle.is_some())
            .field("breaker", &self.breaker.is_some())
            .field("attempt", &self.attempt)
            .field("bulkhead", &self.bulkhead.is_some())
            .finish()
    }
}

/// The bulkhead part of a [`ClientService`].
pub type StackBulkhead<S, C> = Optional<Bulkhead<S, C>, S>;
/// The attempt-timeout part of a [`ClientService`].
pub type StackAttempt<S, C> = Optional<Timeout<StackBulkhead<S, C>>, StackBulkhead<S, C>>;
/// The breaker part of a [`ClientService`].
pub type StackBreaker<S, C, B> =
    Optional<<B as Layer<StackAttempt<S, C>>>::Service, StackAttempt<S, C>>;
/// The adaptive-throttle part of a [`ClientService`].
pub type StackThrottle<S, C, B> =
    Optional<AdaptiveThrottle<StackBreaker<S, C, B>, C>, StackBreaker<S, C, B>>;
/// The retry part of a [`ClientService`].
pub type StackRetry<S, C, P, R, B> =
    Optional<Retry<StackThrottle<S, C, B>, C, P, R>, StackThrottle<S, C, B>>;
/// The whole client stack around a service `S`.
pub type ClientService<S, C, P, R, B> =
    Optional<Timeout<StackRetry<S, C, P, R, B>>, StackRetry<S, C, P, R, B>>;

impl<S, C, P, R, B> Layer<S> for ClientLayer<C, P, R, B>
where
    C: Clone,
    P: Clone,
    R: Clone,
    B: Layer<StackAttempt<S, C>> + Clone,
{
    type Service = ClientService<S, C, P, R, B>;

    fn layer(&self, inner: S) -> Self::Service {
        let s = OptionalLayer::new(self.bulkhead.clone()).layer(inner);
        let s = OptionalLayer::new(self.attempt.clone()).layer(s);
        let s = OptionalLayer::new(self.breaker.clone()).layer(s);
        let s = OptionalLayer::new(self.throttle.clone()).layer(s);
        let s = OptionalLayer::new(self.retry.clone()).layer(s);
        OptionalLayer::new(self.total.clone()).layer(s)
    }
}
