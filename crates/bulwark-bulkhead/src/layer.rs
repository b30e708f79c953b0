//! The [`BulkheadLayer`] and its [`BulkheadBuilder`].

use crate::adaptive::LimitAlgorithm;
use crate::keyed::KeyedBulkheadLayer;
use crate::limiter::{BulkheadHandle, Limiter};
use crate::sync;
use crate::{Bulkhead, BulkheadEvent};
use bulwark_core::{DefaultClassifier, Listener, Listeners};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

type MakeAlgorithm = Arc<dyn Fn() -> Box<dyn LimitAlgorithm> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) max_concurrent: usize,
    max_wait: Duration,
    max_queued: usize,
    pub(crate) name: Option<Arc<str>>,
    listeners: Listeners<BulkheadEvent>,
    adaptive: Option<MakeAlgorithm>,
}

impl Config {
    pub(crate) fn fail_fast(&self) -> Config {
        Config {
            max_wait: Duration::ZERO,
            ..self.clone()
        }
    }

    pub(crate) fn limiter(&self) -> sync::Arc<Limiter> {
        // A limit of 0 is reported by `validate` and acts as 1.
        let max_concurrent = self.max_concurrent.max(1);
        let max_queued = if self.max_wait.is_zero() {
            0
        } else {
            self.max_queued
        };
        sync::Arc::new(Limiter::new(
            max_concurrent,
            max_queued,
            self.max_wait,
            self.name.clone(),
            self.listeners.clone(),
            self.adaptive.as_ref().map(|make| {
                let mut algorithm = make();
                algorithm.inherit_max_limit(max_concurrent);
                algorithm
            }),
        ))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_concurrent", &self.max_concurrent)
            .field("max_wait", &self.max_wait)
            .field("max_queued", &self.max_queued)
            .field("name", &self.name)
            .field("listeners", &self.listeners)
            .field("adaptive", &self.adaptive.is_some())
            .finish()
    }
}

/// Applies a [`Bulkhead`] to services.
///
/// A layer from [`new`](BulkheadLayer::new) or
/// [`BulkheadBuilder::build`] gives each service it wraps a limit of its own;
/// one from [`BulkheadBuilder::build_shared`] makes every service it wraps
/// share one limit (a global bulkhead, e.g. for several clients of one
/// database).
///
/// ```
/// use bulwark::bulkhead::BulkheadLayer;
/// use std::time::Duration;
///
/// // At most 10 in flight; fail at once when full.
/// let fail_fast = BulkheadLayer::new(10);
///
/// // At most 10 in flight; up to 50 callers wait, each at most 200 ms.
/// let waiting = BulkheadLayer::builder()
///     .name("db")
///     .max_concurrent(10)
///     .max_wait(Duration::from_millis(200))
///     .max_queued(50)
///     .build_shared();
/// let handle = waiting.handle().expect("shared layers have one limit");
/// assert_eq!(handle.limit(), 10);
/// # let _ = fail_fast;
/// ```
///
/// # Where it goes
///
/// Innermost, next to the transport: it limits what actually reaches the
/// upstream. A timeout above it with a readiness limit
/// (`TimeoutLayer::readiness_timeout`) bounds the whole wait; the breaker
/// above it does not count its rejections (they are
/// [`Outcome::Rejected`](bulwark_core::Outcome::Rejected)), and retry does not
/// retry them.
///
/// # Classifier
///
/// An adaptive limit learns from how calls end, as the shared
/// [`Classify`](bulwark_core::Classify) says (by default
/// [`DefaultClassifier`]: `Ok` is a success, `Err` a failure, Bulwark's own
/// rejections neither); give the bulkhead the classifier the breaker and
/// retry use with [`classifier`](BulkheadLayer::classifier). A static limit
/// never classifies.
#[derive(Clone, Debug)]
pub struct BulkheadLayer<C = DefaultClassifier> {
    config: Config,
    shared: Option<sync::Arc<Limiter>>,
    classifier: C,
}

impl BulkheadLayer {
    /// A fail-fast bulkhead of `max_concurrent` permits per service.
    pub fn new(max_concurrent: usize) -> Self {
        Self::builder().max_concurrent(max_concurrent).build()
    }

    /// A builder with the defaults: 64 permits, fail fast, no name, static
    /// limit.
    pub fn builder() -> BulkheadBuilder {
        BulkheadBuilder {
            config: Config {
                max_concurrent: 64,
                max_wait: Duration::ZERO,
                max_queued: 64,
                name: None,
                listeners: Listeners::new(),
                adaptive: None,
            },
            classifier: DefaultClassifier,
        }
    }
}

impl<C> BulkheadLayer<C> {
    /// Classifies results with `classifier` (see [`adaptive`](crate::adaptive)
    /// for what each outcome tells an adaptive limit). A shared layer keeps
    /// its one limit.
    ///
    /// ```
    /// use bulwark::bulkhead::{adaptive::Gradient2, BulkheadLayer};
    /// use bulwark::{BoxError, Outcome};
    ///
    /// // HTTP-like: a 429 is not congestion, a 5xx is.
    /// let layer = BulkheadLayer::builder()
    ///     .adaptive(Gradient2::default())
    ///     .build()
    ///     .classifier(|r: &Result<u16, BoxError>| match r {
    ///         Ok(429) => Outcome::Throttled,
    ///         Ok(s) if *s >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(e) => Outcome::of_error(e),
    ///     });
    /// # let _ = layer;
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> BulkheadLayer<C2> {
        BulkheadLayer {
            config: self.config,
            shared: self.shared,
            classifier,
        }
    }

    /// The handle of the shared limit (`None` for a per-service layer: ask
    /// each [`Bulkhead::handle`] instead).
    pub fn handle(&self) -> Option<BulkheadHandle> {
        self.shared.as_ref().map(|limiter| BulkheadHandle {
            limiter: limiter.clone(),
        })
    }

    pub(crate) fn wrap<S>(&self, inner: S) -> Bulkhead<S, C>
    where
        C: Clone,
    {
        let limiter = match &self.shared {
            Some(shared) => shared.clone(),
            None => self.config.limiter(),
        };
        Bulkhead::with_limiter(inner, limiter, self.classifier.clone())
    }
}

/// `BulkheadLayer::new(max_concurrent)`, so that what takes a layer also
/// takes a bare limit.
///
/// ```
/// use bulwark::bulkhead::BulkheadLayer;
///
/// let layer: BulkheadLayer = 16.into();
/// # drop(layer);
/// ```
impl From<usize> for BulkheadLayer {
    fn from(max_concurrent: usize) -> Self {
        BulkheadLayer::new(max_concurrent)
    }
}

impl<S, C: Clone> Layer<S> for BulkheadLayer<C> {
    type Service = Bulkhead<S, C>;

    fn layer(&self, inner: S) -> Bulkhead<S, C> {
        self.wrap(inner)
    }
}

/// Builds a [`BulkheadLayer`] (or a [`KeyedBulkheadLayer`]).
///
/// ```
/// use bulwark::bulkhead::{adaptive::Vegas, BulkheadEvent, BulkheadLayer};
///
/// let layer = BulkheadLayer::builder()
///     .name("search")
///     .adaptive(Vegas::new(20).min_limit(4).max_limit(200))
///     .on_event(|e: &BulkheadEvent| tracing::info!(?e, "bulkhead"))
///     .build();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct BulkheadBuilder<C = DefaultClassifier> {
    config: Config,
    classifier: C,
}

impl<C> BulkheadBuilder<C> {
    /// At most `n` calls in flight (64 by default; 0 is reported by
    /// [`validate`](Self::validate) and acts as 1). With
    /// [`adaptive`](Self::adaptive), it is the highest the adaptive limit
    /// goes, unless the algorithm's own `max_limit` was set.
    ///
    /// ```
    /// use bulwark::bulkhead::{adaptive::Gradient2, BulkheadLayer};
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .max_concurrent(100) // the adaptive maximum
    ///     .adaptive(Gradient2::new(20))
    ///     .build_shared();
    /// # let _ = layer;
    /// ```
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.config.max_concurrent = n;
        self
    }

    /// Checks that the settings can work: at least one call in flight. A
    /// layer built from a limit of 0 still works, as a limit of 1, and
    /// never panics; call this to turn bad input into a typed error.
    ///
    /// ```
    /// use bulwark::bulkhead::BulkheadLayer;
    ///
    /// let err = BulkheadLayer::builder().max_concurrent(0).validate().unwrap_err();
    /// assert_eq!((err.layer(), err.field()), ("bulkhead", "max_concurrent"));
    /// ```
    pub fn validate(&self) -> Result<(), bulwark_core::error::ConfigError> {
        if self.config.max_concurrent == 0 {
            return Err(bulwark_core::error::ConfigError::new(
                "bulkhead",
                "max_concurrent",
                "must allow at least 1 call",
            ));
        }
        Ok(())
    }

    /// When full, wait up to `max_wait` for a permit in a bounded FIFO queue
    /// instead of failing at once. `Duration::ZERO` (the default) fails fast;
    /// a wait too long to be a deadline (up to `Duration::MAX`) is capped at
    /// [`FAR_FUTURE`](bulwark_core::clock::FAR_FUTURE), i.e. no time limit.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = max_wait;
        self
    }

    /// How many callers may wait at once (64 by default); when the queue is
    /// full, callers are rejected with
    /// [`QueueFull`](crate::error::BulkheadFullReason::QueueFull). Only used
    /// with [`max_wait`](Self::max_wait); 0 fails fast.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.config.max_queued = n;
        self
    }

    /// Names the bulkhead in its errors, events and traces.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Registers a listener for [`BulkheadEvent`]s.
    pub fn on_event(mut self, listener: impl Listener<BulkheadEvent>) -> Self {
        self.config.listeners = self.config.listeners.with(listener);
        self
    }

    /// Moves the limit with `algorithm` (see [`adaptive`](crate::adaptive);
    /// [`Gradient2`](crate::adaptive::Gradient2) is the recommended one):
    /// each limit built from this builder starts from a copy of it, bounded
    /// by [`max_concurrent`](Self::max_concurrent) unless the algorithm's own
    /// maximum is set.
    pub fn adaptive<A>(mut self, algorithm: A) -> Self
    where
        A: LimitAlgorithm + Clone + Sync,
    {
        self.config.adaptive = Some(Arc::new(move || Box::new(algorithm.clone())));
        self
    }

    /// Classifies results with `classifier`, as the breaker and retry do:
    /// an adaptive limit counts only
    /// [`Failure`](bulwark_core::Outcome::Failure)s as drops and learns
    /// latency only from [`Success`](bulwark_core::Outcome::Success)es (see
    /// [`adaptive`](crate::adaptive)). [`DefaultClassifier`] by default.
    ///
    /// ```
    /// use bulwark::bulkhead::{adaptive::Gradient2, BulkheadLayer};
    /// use bulwark::{BoxError, Outcome};
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .adaptive(Gradient2::default())
    ///     .classifier(|r: &Result<u16, BoxError>| match r {
    ///         Ok(429) => Outcome::Throttled,
    ///         Ok(s) if *s >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(e) => Outcome::of_error(e),
    ///     })
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> BulkheadBuilder<C2> {
        BulkheadBuilder {
            config: self.config,
            classifier,
        }
    }

    /// A layer giving each service it wraps a limit of its own.
    pub fn build(self) -> BulkheadLayer<C> {
        BulkheadLayer {
            config: self.config,
            shared: None,
            classifier: self.classifier,
        }
    }

    /// A layer whose services all share one limit.
    pub fn build_shared(self) -> BulkheadLayer<C> {
        let shared = self.config.limiter();
        BulkheadLayer {
            config: self.config,
            shared: Some(shared),
            classifier: self.classifier,
        }
    }
}

impl BulkheadBuilder {
    /// A layer with one limit per key taken from each request by `key`
    /// (e.g. the host), keeping at most `max_keys` partitions; see
    /// [`KeyedBulkheadLayer`]. Keyed partitions fail fast, and classify
    /// with the [`DefaultClassifier`] (so `build_keyed` is only offered
    /// without a [`classifier`](Self::classifier)).
    ///
    /// The key type `K` is usually inferred from `key`'s use; name it with
    /// `build_keyed::<K, _>` when it is not.
    pub fn build_keyed<K, F>(self, key: F, max_keys: usize) -> KeyedBulkheadLayer<F, K> {
        KeyedBulkheadLayer::new(self.config, key, max_keys)
    }
}
