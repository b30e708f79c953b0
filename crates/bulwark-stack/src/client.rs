//! [`ClientStack`]: the recommended client stack for any tower service.

use crate::optional::{Optional, OptionalLayer};
use bulwark_breaker::keyed::KeyedCircuitBreakerLayer;
use bulwark_breaker::{BreakerBuilder, CircuitBreakerLayer};
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

    /// Makes it from the stack's validated template and classifier.
    fn make(&self, template: BreakerBuilder, classifier: C) -> Result<Self::Layer, ConfigError>;

    /// Makes it as [`make`](Self::make) does, from `registry`'s instance
    /// named `name` (made from `template` on first use), so that health
    /// and metrics see it (feature `observe`). The default makes an
    /// instance of its own.
    #[cfg(feature = "observe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
    fn make_in(
        &self,
        registry: &bulwark_observe::Registry,
        name: &str,
        template: BreakerBuilder,
        classifier: C,
    ) -> Result<Self::Layer, ConfigError> {
        let _ = (registry, name);
        self.make(template, classifier)
    }
}

impl<C: Clone> MakeBreaker<C> for OneBreaker {
    type Layer = CircuitBreakerLayer<C>;

    fn make(&self, template: BreakerBuilder, classifier: C) -> Result<Self::Layer, ConfigError> {
        Ok(CircuitBreakerLayer::new(template.build()?).classifier(classifier))
    }

    #[cfg(feature = "observe")]
    fn make_in(
        &self,
        registry: &bulwark_observe::Registry,
        name: &str,
        template: BreakerBuilder,
        classifier: C,
    ) -> Result<Self::Layer, ConfigError> {
        Ok(CircuitBreakerLayer::new(registry.breaker(name, template)?).classifier(classifier))
    }
}

impl<C: Clone, F: Clone, K> MakeBreaker<C> for KeyedBy<F, K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    type Layer = KeyedCircuitBreakerLayer<K, F, C>;

    fn make(&self, template: BreakerBuilder, classifier: C) -> Result<Self::Layer, ConfigError> {
        let breakers = template.keyed().max_keys(self.max_keys).build()?;
        Ok(KeyedCircuitBreakerLayer::new(breakers, self.key.clone()).classifier(classifier))
    }

    #[cfg(feature = "observe")]
    fn make_in(
        &self,
        registry: &bulwark_observe::Registry,
        name: &str,
        template: BreakerBuilder,
        classifier: C,
    ) -> Result<Self::Layer, ConfigError> {
        // The keyed breakers' own default idle timeout.
        let idle = Some(Duration::from_secs(600));
        let breakers = registry.keyed_breakers::<K>(name, template, self.max_keys, idle)?;
        Ok(KeyedCircuitBreakerLayer::new(breakers, self.key.clone()).classifier(classifier))
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
/// use bulwark_stack::ClientStack;
/// use bulwark_core::{BoxError, Outcome};
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
    retry: Option<RetryLayer>,
    throttle: Option<AdaptiveThrottleBuilder>,
    breaker: Option<BreakerBuilder>,
    mode: M,
    bulkhead: Option<BulkheadBuilder>,
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
            retry: Some(crate::defaults::retry()),
            throttle: crate::defaults::throttle(),
            breaker: Some(crate::defaults::breaker()),
            mode: OneBreaker,
            bulkhead: Some(crate::defaults::bulkhead()),
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
    /// keep their breaker's state, and with a registry the bulkhead is
    /// shared by every service the layer makes.
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

    /// Retry settings (attempts, backoff, budget, pushback cap): start from
    /// [`RetryLayer::new`]. The stack gives it its classifier, pushback,
    /// replay, seed and deadline.
    pub fn retry(mut self, retry: RetryLayer) -> Self {
        self.retry = Some(retry);
        self
    }

    /// No retry.
    pub fn no_retry(mut self) -> Self {
        self.retry = None;
        self
    }

    /// Client-side adaptive throttling (see `bulwark-throttle`) between
    /// retry and the breaker: sheds a share of attempts locally as the
    /// upstream's accept rate falls. The stack gives it its name, seed and
    /// classifier.
    pub fn adaptive_throttle(mut self, throttle: AdaptiveThrottleBuilder) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// No adaptive throttling.
    pub fn no_adaptive_throttle(mut self) -> Self {
        self.throttle = None;
        self
    }

    /// The breaker's template: start from [`Breaker::builder`](bulwark_breaker::Breaker::builder), which has
    /// the same defaults as the stack. The stack gives it its name and seed.
    pub fn breaker(mut self, breaker: BreakerBuilder) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// No breaker.
    pub fn no_breaker(mut self) -> Self {
        self.breaker = None;
        self
    }

    /// The bulkhead (default: at most 100 calls in flight, fail fast; in
    /// `bulwark-sim`'s `black-hole` it fills within half a second at 200
    /// requests/s, so callers are refused locally instead of waiting out
    /// their deadlines, and in `overload` it keeps 49.6% of twice the
    /// upstream's capacity, the ceiling being 50%; the adaptive limits lost
    /// there and collapsed in `brownout`).
    pub fn bulkhead(mut self, bulkhead: BulkheadBuilder) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// No bulkhead.
    pub fn no_bulkhead(mut self) -> Self {
        self.bulkhead = None;
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
    /// use bulwark_stack::ClientStack;
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

impl<C, P, R, M> ClientStack<C, P, R, M>
where
    C: Clone,
    M: MakeBreaker<C>,
{
    /// Validates the settings and builds the layer. Refuses what cannot
    /// work, naming the setting: a zero timeout, an attempt timeout not
    /// shorter than the total timeout (retry could never run), an invalid
    /// retry, breaker or bulkhead.
    pub fn build(self) -> Result<ClientLayer<C, P, R, M::Layer>, ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::new("client stack", field, reason));
        let attempt = self.attempt_limit();
        if self.total_timeout.is_some_and(|t| t.is_zero()) {
            return invalid("total_timeout", "must be longer than zero".into());
        }
        if attempt.is_some_and(|t| t.is_zero()) {
            return invalid("attempt_timeout", "must be longer than zero".into());
        }
        let attempt_set = self.attempt_timeout.is_some();
        if let (Some(total), Some(attempt), Some(_), true) =
            (self.total_timeout, attempt, &self.retry, attempt_set)
        {
            if attempt >= total {
                return invalid(
                    "attempt_timeout",
                    format!(
                        "{attempt:?} is not shorter than the total timeout of {total:?}, so no retry could ever run"
                    ),
                );
            }
        }
        let retry = match self.retry {
            None => None,
            Some(retry) => {
                retry.validate()?;
                let retry = retry
                    .classifier(self.classifier.clone())
                    .pushback(self.pushback)
                    .replay(self.replay);
                let retry = match self.seed {
                    Some(seed) => retry.seed(seed),
                    None => retry,
                };
                #[cfg(feature = "observe")]
                let retry = match (&self.registry, &self.name) {
                    (Some(r), Some(name)) => {
                        let budget = r.retry_budget(name, retry.get_budget().clone());
                        retry.budget(budget).on_event(r.retry_listener(name))
                    }
                    _ => retry,
                };
                Some(match self.total_timeout {
                    Some(total) => retry.deadline(total),
                    None => retry,
                })
            }
        };
        let breaker = match self.breaker {
            None => None,
            Some(mut template) => {
                if let Some(name) = &self.name {
                    template = template.name(name.clone());
                }
                if let Some(seed) = self.seed {
                    template = template.seed(seed);
                }
                #[cfg(feature = "observe")]
                if let (Some(r), Some(name)) = (&self.registry, &self.name) {
                    Some(
                        self.mode
                            .make_in(r, name, template, self.classifier.clone())?,
                    )
                } else {
                    Some(self.mode.make(template, self.classifier.clone())?)
                }
                #[cfg(not(feature = "observe"))]
                Some(self.mode.make(template, self.classifier.clone())?)
            }
        };
        let bulkhead = self.bulkhead.map(|b| {
            #[cfg(feature = "observe")]
            if let (Some(r), Some(name)) = (&self.registry, &self.name) {
                return r.bulkhead(name, b).classifier(self.classifier.clone());
            }
            let b = match &self.name {
                Some(name) => b.name(name.clone()),
                None => b,
            };
            b.classifier(self.classifier.clone()).build()
        });
        let throttle = match self.throttle {
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
        let timeout = |limit: Duration, _part: &str| {
            let layer = TimeoutLayer::new(limit);
            #[cfg(feature = "observe")]
            if let (Some(r), Some(name)) = (&self.registry, &self.name) {
                return layer.on_event(r.timeout_listener(&format!("{name}/{_part}")));
            }
            layer
        };
        Ok(ClientLayer {
            total: self.total_timeout.map(|t| timeout(t, "total")),
            retry,
            throttle,
            breaker,
            attempt: attempt.map(|t| timeout(t, "attempt")),
            bulkhead,
        })
    }
}

impl<C, P, R, M: fmt::Debug> fmt::Debug for ClientStack<C, P, R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStack")
            .field("name", &self.name)
            .field("total_timeout", &self.total_timeout)
            .field("attempt_timeout", &self.attempt_limit())
            .field("retry", &self.retry)
            .field("throttle", &self.throttle)
            .field("breaker", &self.breaker)
            .field("mode", &self.mode)
            .field("bulkhead", &self.bulkhead)
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
