//! [`RetryLayer`]: the retry middleware and its builder.

use crate::budget::RetryBudget;
use crate::event::RetryEvent;
use crate::policy::RetryOn;
use crate::replay::CloneReplay;
use crate::service::{Retry, Shared};
use bulwark_core::backoff::{Backoff, Jitter, Random};
use bulwark_core::error::ConfigError;
use bulwark_core::event::{Listener, Listeners};
use bulwark_core::DefaultClassifier;
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// What a retry layer does, apart from its hooks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Config {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) retry_on: RetryOn,
    pub(crate) max_pushback: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) seed: Option<u64>,
}

/// Retries calls whose outcome is worth another attempt, with backoff,
/// under a shared budget.
///
/// Built by value: every method returns the changed layer. The defaults are
/// safe:
///
/// | setting | default |
/// |---|---|
/// | [`max_attempts`](Self::max_attempts) | 3 (the original and 2 retries) |
/// | [`backoff`](Self::backoff) | exponential from 100 ms, factor 2, full jitter, at most 10 s |
/// | [`classifier`](Self::classifier) | [`DefaultClassifier`]: `Err` fails, `Ok` succeeds |
/// | [`retry_on`](Self::retry_on) | failures and throttled answers, never local rejections |
/// | [`budget`](Self::budget) | 20% of requests + 10/s over 10 s ([`RetryBudget::default`]) |
/// | [`pushback`](Self::pushback) | none; [`max_pushback`](Self::max_pushback) 30 s |
/// | [`deadline`](Self::deadline) | none |
/// | [`replay`](Self::replay) | [`CloneReplay`]: requests must be `Clone` |
///
/// Every service made by one layer (and every clone of those services) draws
/// on the layer's one budget.
///
/// # Where it goes in a stack
///
/// Retry sits outside the breaker and the per-attempt timeout, so that the
/// breaker sees every attempt and each attempt gets its own time, and inside
/// the total timeout (or give it a [`deadline`](Self::deadline)):
///
/// ```text
/// total timeout → retry → breaker → attempt timeout → bulkhead → transport
/// ```
///
/// ```
/// use bulwark_retry::RetryLayer;
/// use bulwark_core::backoff::{Backoff, Jitter};
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), bulwark_core::BoxError> {
/// let svc = ServiceBuilder::new()
///     .layer(
///         RetryLayer::new()
///             .max_attempts(4)
///             .backoff(Backoff::exponential(Duration::from_millis(50), 2.0).with_jitter(Jitter::Equal))
///             .deadline(Duration::from_secs(2)),
///     )
///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }));
/// assert_eq!(svc.oneshot(21).await?, 42);
/// # Ok(())
/// # }
/// ```
///
/// A timeout placed *outside* retry bounds the whole call, retries included:
///
/// ```
/// # use bulwark_retry::RetryLayer;
/// # use tower::{service_fn, ServiceBuilder, ServiceExt};
/// # use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow_and_failing = service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_millis(600)).await;
///     Err::<(), _>(std::io::Error::other("down"))
/// });
/// let svc = ServiceBuilder::new()
///     .timeout(Duration::from_secs(1))
///     .layer(RetryLayer::new())
///     .service(slow_and_failing);
/// // The second attempt cannot finish within the second.
/// let err = svc.oneshot(()).await.unwrap_err();
/// assert!(err.is::<tower::timeout::error::Elapsed>());
/// # }
/// ```
pub struct RetryLayer<C = DefaultClassifier, P = (), R = CloneReplay> {
    pub(crate) config: Config,
    pub(crate) classifier: C,
    pub(crate) pushback: P,
    pub(crate) replay: R,
    pub(crate) budget: RetryBudget,
    pub(crate) listeners: Listeners<RetryEvent>,
}

impl RetryLayer {
    /// A layer with the safe defaults listed above.
    pub fn new() -> Self {
        RetryLayer {
            config: Config {
                max_attempts: 3,
                backoff: Backoff::exponential(Duration::from_millis(100), 2.0)
                    .with_jitter(Jitter::Full)
                    .with_max(Duration::from_secs(10)),
                retry_on: RetryOn::default(),
                max_pushback: Duration::from_secs(30),
                deadline: None,
                seed: None,
            },
            classifier: DefaultClassifier,
            pushback: (),
            replay: CloneReplay,
            budget: RetryBudget::default(),
            listeners: Listeners::new(),
        }
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, P, R> RetryLayer<C, P, R> {
    /// At most `n` attempts per call, the original included (`1` disables
    /// retries). A call is always made once: `0` is reported by
    /// [`validate`](Self::validate) and acts as `1`.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// The delays between attempts (see [`Backoff`]). A backoff that
    /// [`Backoff::validate`] rejects is reported by
    /// [`validate`](Self::validate) and used as `Backoff` sanitises it (a
    /// factor below 1 acts as 1; the cap wins over the initial delay).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Checks that the settings can work: at least one attempt and a valid
    /// backoff. Layers built from an invalid configuration still work (as
    /// described on each setting) and never panic; call this to turn bad
    /// input, such as a configuration file, into a typed error.
    ///
    /// ```
    /// use bulwark_retry::RetryLayer;
    ///
    /// let err = RetryLayer::new().max_attempts(0).validate().unwrap_err();
    /// assert_eq!(err.field(), "max_attempts");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.config.max_attempts == 0 {
            return Err(ConfigError::new(
                "retry",
                "max_attempts",
                "must be at least 1 (the original call counts)",
            ));
        }
        self.config
            .backoff
            .validate()
            .map_err(|e| ConfigError::new("retry", "backoff", e.to_string()))
    }

    /// Which outcomes are retried (by default failures and throttled
    /// answers).
    pub fn retry_on(mut self, retry_on: impl Into<RetryOn>) -> Self {
        self.config.retry_on = retry_on.into();
        self
    }

    /// The budget retries draw on. Pass clones of one budget to several
    /// layers to share it; [`RetryBudget::unlimited`] removes the limit.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The longest delay a server's pushback may impose; longer hints are
    /// cut to it.
    pub fn max_pushback(mut self, max: Duration) -> Self {
        self.config.max_pushback = max;
        self
    }

    /// A total time budget for the whole call, counted from `call`: a retry
    /// whose delay would end after it is not started, and the last outcome
    /// is returned.
    ///
    /// It does not cut an attempt short; put a timeout around the layer for
    /// that.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// Seeds the jitter, for exact delays in tests. Each call still gets its
    /// own jitter sequence, forked from the seeded source in call order.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Adds a listener for [`RetryEvent`]s.
    pub fn on_event(mut self, listener: impl Listener<RetryEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// Decides the [`Outcome`](bulwark_core::Outcome) of every attempt;
    /// share one classifier with the breaker and fallback.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, P, R> {
        RetryLayer {
            config: self.config,
            classifier,
            pushback: self.pushback,
            replay: self.replay,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// Reads a server's pushback from each retried result (see
    /// [`Pushback`](crate::policy::Pushback)).
    pub fn pushback<P2>(self, pushback: P2) -> RetryLayer<C, P2, R> {
        RetryLayer {
            config: self.config,
            classifier: self.classifier,
            pushback,
            replay: self.replay,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// How requests are copied for another attempt (see
    /// [`Replay`](crate::replay::Replay)); needed for requests that are not
    /// `Clone`.
    pub fn replay<R2>(self, replay: R2) -> RetryLayer<C, P, R2> {
        RetryLayer {
            config: self.config,
            classifier: self.classifier,
            pushback: self.pushback,
            replay,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// The budget this layer's services draw on.
    pub fn get_budget(&self) -> &RetryBudget {
        &self.budget
    }
}

impl<C: Clone, P: Clone, R: Clone> RetryLayer<C, P, R> {
    pub(crate) fn shared(&self) -> Arc<Shared<C, P, R>> {
        let mut config = self.config;
        config.max_attempts = config.max_attempts.max(1);
        Arc::new(Shared {
            config,
            classifier: self.classifier.clone(),
            pushback: self.pushback.clone(),
            replay: self.replay.clone(),
            budget: self.budget.clone(),
            random: self.config.seed.map(|s| Mutex::new(Random::seeded(s))),
            listeners: self.listeners.clone(),
        })
    }
}

impl<S, C: Clone, P: Clone, R: Clone> Layer<S> for RetryLayer<C, P, R> {
    type Service = Retry<S, C, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, self.shared())
    }
}

impl<C: Clone, P: Clone, R: Clone> Clone for RetryLayer<C, P, R> {
    fn clone(&self) -> Self {
        RetryLayer {
            config: self.config,
            classifier: self.classifier.clone(),
            pushback: self.pushback.clone(),
            replay: self.replay.clone(),
            budget: self.budget.clone(),
            listeners: self.listeners.clone(),
        }
    }
}

impl<C, P, R> fmt::Debug for RetryLayer<C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("max_attempts", &self.config.max_attempts)
            .field("backoff", &self.config.backoff)
            .field("retry_on", &self.config.retry_on)
            .field("max_pushback", &self.config.max_pushback)
            .field("deadline", &self.config.deadline)
            .field("budget", &self.budget)
            .field("classifier", &std::any::type_name::<C>())
            .field("listeners", &self.listeners)
            .finish()
    }
}
