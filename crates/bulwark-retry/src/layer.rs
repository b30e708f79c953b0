//! [`RetryLayer`]: the retry middleware and its builder.

use crate::budget::RetryBudget;
use crate::event::RetryEvent;
use crate::policy::{RequestIf, RetryOn};
use crate::replay::CloneReplay;
use crate::service::{Retry, Shared};
use bulwark_core::backoff::{BackoffPolicy, Jitter, Random};
use bulwark_core::error::ConfigError;
use bulwark_core::event::{Listener, Listeners};
use bulwark_core::DefaultClassifier;
use parking_lot::Mutex;
use std::fmt;
use std::time::Duration;
use tower_layer::Layer;

/// What a retry layer does, apart from its hooks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Config {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: BackoffPolicy,
    pub(crate) retry_on: RetryOn,
    pub(crate) max_pushback: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) min_time_left: Duration,
    pub(crate) seed: Option<u64>,
}

/// The default of [`RetryLayer::min_time_left`].
pub const DEFAULT_MIN_TIME_LEFT: Duration = Duration::from_millis(5);

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
/// | [`deadline`](Self::deadline), [`deadline_from`](Self::deadline_from) | none |
/// | [`min_time_left`](Self::min_time_left) | 5 ms |
/// | [`retry_if`](Self::retry_if), [`retry_request_if`](Self::retry_request_if) | every request |
/// | [`replay`](Self::replay) | [`CloneReplay`]: requests must be `Clone` |
///
/// Measured in `bulwark-sim` (figures in the repository's `BENCHMARKS.md`):
/// in its `brownout` (30% of answers failing, ten times slower) the 20%
/// budget lifts goodput during the fault from 70.2% to 85.0% for 1.21
/// upstream requests per request, above tower's retry (84.0% for 1.27); in
/// its `outage` and `quiet-outage` the budget and its bounded floor keep a
/// dead upstream from seeing more than one request per call even without
/// a breaker in front.
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
/// use bulwark::retry::RetryLayer;
/// use bulwark::backoff::{BackoffPolicy, Jitter};
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), bulwark::BoxError> {
/// let svc = ServiceBuilder::new()
///     .layer(
///         RetryLayer::new()
///             .max_attempts(4)
///             .backoff(BackoffPolicy::exponential(Duration::from_millis(50), 2.0).with_jitter(Jitter::Equal))
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
/// # use bulwark::retry::RetryLayer;
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
pub struct RetryLayer<C = DefaultClassifier, P = (), R = CloneReplay, D = (), I = ()> {
    pub(crate) config: Config,
    pub(crate) classifier: C,
    pub(crate) pushback: P,
    pub(crate) replay: R,
    pub(crate) deadline_from: D,
    pub(crate) retry_if: I,
    pub(crate) budget: RetryBudget,
    pub(crate) listeners: Listeners<RetryEvent>,
}

impl RetryLayer {
    /// A layer with the safe defaults listed above.
    pub fn new() -> Self {
        RetryLayer {
            config: Config {
                max_attempts: 3,
                backoff: BackoffPolicy::exponential(Duration::from_millis(100), 2.0)
                    .with_jitter(Jitter::Full)
                    .with_max(Duration::from_secs(10)),
                retry_on: RetryOn::default(),
                max_pushback: Duration::from_secs(30),
                deadline: None,
                min_time_left: DEFAULT_MIN_TIME_LEFT,
                seed: None,
            },
            classifier: DefaultClassifier,
            pushback: (),
            replay: CloneReplay,
            deadline_from: (),
            retry_if: (),
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

impl<C, P, R, D, I> RetryLayer<C, P, R, D, I> {
    /// At most `n` attempts per call, the original included (`1` disables
    /// retries). A call is always made once: `0` is reported by
    /// [`validate`](Self::validate) and acts as `1`.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// The delays between attempts (see [`BackoffPolicy`]). A backoff that
    /// [`BackoffPolicy::validate`] rejects is reported by
    /// [`validate`](Self::validate) and used as `BackoffPolicy` sanitises it (a
    /// factor below 1 acts as 1; the cap wins over the initial delay).
    pub fn backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Checks that the settings can work: at least one attempt and a valid
    /// backoff. Layers built from an invalid configuration still work (as
    /// described on each setting) and never panic; call this to turn bad
    /// input, such as a configuration file, into a typed error.
    ///
    /// ```
    /// use bulwark::retry::RetryLayer;
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
            .map_err(|e| ConfigError::new("retry", "backoff", e.reason()))
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
    /// whose delay (backoff or pushback) would end less than
    /// [`min_time_left`](Self::min_time_left) before it is not scheduled,
    /// and the last result (the throttled response, the error) is returned
    /// at once, without waiting. Give it the same limit as the total timeout
    /// around the layer, so that a retry that cannot come in time ends the
    /// call with the server's answer instead of the timeout's error.
    ///
    /// It does not cut an attempt short; put a timeout around the layer for
    /// that. A request may also carry its own deadline
    /// ([`deadline_from`](Self::deadline_from)); the earlier one counts.
    /// Arithmetic saturates: `Duration::MAX` means no limit.
    ///
    /// ```
    /// use bulwark::backoff::BackoffPolicy;
    /// use bulwark::clock::Instant;
    /// use bulwark::retry::RetryLayer;
    /// use std::time::Duration;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let down = service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) });
    /// let svc = RetryLayer::new()
    ///     .backoff(BackoffPolicy::constant(Duration::from_secs(3)))
    ///     .deadline(Duration::from_secs(2))
    ///     .layer(down);
    /// let start = Instant::now();
    /// // A retry 3 s later would come after the 2 s deadline: none is tried.
    /// assert_eq!(svc.oneshot(()).await.unwrap_err().to_string(), "down");
    /// assert_eq!(start.elapsed(), Duration::ZERO);
    /// # }
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// The least time that must be left before the call's deadline to start
    /// another attempt (default 5 ms): an attempt with less would almost
    /// surely be cut short by the caller's timeout, and would only load the
    /// upstream. Counted after the delay: a retry is scheduled only if it can
    /// start at least this long before the deadline, and is started only if
    /// that still holds once the inner service is ready. The first attempt
    /// is always made. No effect without a deadline.
    ///
    /// ```
    /// use bulwark::retry::RetryLayer;
    /// use std::time::Duration;
    ///
    /// let layer = RetryLayer::new()
    ///     .deadline(Duration::from_secs(2))
    ///     .min_time_left(Duration::from_millis(50));
    /// # drop(layer);
    /// ```
    pub fn min_time_left(mut self, min: Duration) -> Self {
        self.config.min_time_left = min;
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
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, P, R, D, I> {
        RetryLayer {
            config: self.config,
            classifier,
            pushback: self.pushback,
            replay: self.replay,
            deadline_from: self.deadline_from,
            retry_if: self.retry_if,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// Reads a server's pushback from each retried result (see
    /// [`Pushback`](crate::policy::Pushback)).
    pub fn pushback<P2>(self, pushback: P2) -> RetryLayer<C, P2, R, D, I> {
        RetryLayer {
            config: self.config,
            classifier: self.classifier,
            pushback,
            replay: self.replay,
            deadline_from: self.deadline_from,
            retry_if: self.retry_if,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// How requests are copied for another attempt (see
    /// [`Replay`](crate::replay::Replay)); needed for requests that are not
    /// `Clone`.
    pub fn replay<R2>(self, replay: R2) -> RetryLayer<C, P, R2, D, I> {
        RetryLayer {
            config: self.config,
            classifier: self.classifier,
            pushback: self.pushback,
            replay,
            deadline_from: self.deadline_from,
            retry_if: self.retry_if,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// Reads the deadline each request carries (see
    /// [`RequestDeadline`](crate::policy::RequestDeadline)), so that retry
    /// knows when the caller gives up without being told again. The call's
    /// deadline is the earlier of this and [`deadline`](Self::deadline);
    /// retries that cannot start [`min_time_left`](Self::min_time_left)
    /// before it are not made, and the last result is returned at once.
    ///
    /// ```
    /// use bulwark::backoff::BackoffPolicy;
    /// use bulwark::clock::Instant;
    /// use bulwark::retry::RetryLayer;
    /// use std::time::Duration;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// /// A request that says when its caller gives up.
    /// #[derive(Clone)]
    /// struct Job { due: Instant }
    ///
    /// let down = service_fn(|_: Job| async { Err::<(), _>(std::io::Error::other("down")) });
    /// let svc = RetryLayer::new()
    ///     .backoff(BackoffPolicy::constant(Duration::from_millis(500)))
    ///     .deadline_from(|job: &Job| Some(job.due))
    ///     .layer(down);
    /// let start = Instant::now();
    /// let job = Job { due: start + Duration::from_millis(700) };
    /// // The first retry (at 500 ms) fits, the second (at 1 s) would not.
    /// assert!(svc.oneshot(job).await.is_err());
    /// assert_eq!(start.elapsed(), Duration::from_millis(500));
    /// # }
    /// ```
    pub fn deadline_from<D2>(self, hook: D2) -> RetryLayer<C, P, R, D2, I> {
        RetryLayer {
            config: self.config,
            classifier: self.classifier,
            pushback: self.pushback,
            replay: self.replay,
            deadline_from: hook,
            retry_if: self.retry_if,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// Retries only the results `predicate` accepts: any
    /// [`RetryIf`](crate::policy::RetryIf), such as a
    /// `Fn(&Req, &Result<Res, BoxError>) -> bool`, asked after an attempt
    /// whose outcome [`retry_on`](Self::retry_on) would retry, with the
    /// request's copy and the result. A refused result is returned as it is
    /// ([`RetryEvent::NotRetried`]).
    ///
    /// To decide on the request alone, prefer
    /// [`retry_request_if`](Self::retry_request_if): it is asked before the
    /// request is sent, so a request that may not be retried is never
    /// copied.
    ///
    /// ```
    /// use bulwark::BoxError;
    /// use bulwark::retry::RetryLayer;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let n = calls.clone();
    /// let down = service_fn(move |_: &'static str| {
    ///     n.fetch_add(1, Ordering::SeqCst);
    ///     async { Err::<(), _>(std::io::Error::other("reset")) }
    /// });
    /// // Retry a failed write only when it is marked safe to repeat.
    /// let svc = RetryLayer::new()
    ///     .retry_if(|req: &&'static str, _: &Result<(), BoxError>| req.starts_with("safe"))
    ///     .layer(down);
    /// assert!(svc.clone().oneshot("write").await.is_err());
    /// assert_eq!(calls.load(Ordering::SeqCst), 1);
    /// assert!(svc.oneshot("safe write").await.is_err());
    /// assert_eq!(calls.load(Ordering::SeqCst), 4);
    /// # }
    /// ```
    pub fn retry_if<I2>(self, predicate: I2) -> RetryLayer<C, P, R, D, I2> {
        RetryLayer {
            config: self.config,
            classifier: self.classifier,
            pushback: self.pushback,
            replay: self.replay,
            deadline_from: self.deadline_from,
            retry_if: predicate,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// Retries only the requests `predicate` (a `Fn(&Req) -> bool`)
    /// accepts, decided once per call before the request is sent: a request
    /// it refuses is sent once and never copied (no clone, no buffered
    /// body), and its result is returned as it is
    /// ([`RetryEvent::NotRetried`]). No allocation either way. "Only
    /// idempotent requests" is one line:
    ///
    /// ```
    /// use bulwark::retry::RetryLayer;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let n = calls.clone();
    /// #[derive(Clone)]
    /// struct Call { method: &'static str }
    ///
    /// let down = service_fn(move |_: Call| {
    ///     n.fetch_add(1, Ordering::SeqCst);
    ///     async { Err::<(), _>(std::io::Error::other("reset")) }
    /// });
    /// let svc = RetryLayer::new()
    ///     .retry_request_if(|call: &Call| matches!(call.method, "GET" | "HEAD" | "PUT" | "DELETE"))
    ///     .layer(down);
    /// assert!(svc.clone().oneshot(Call { method: "POST" }).await.is_err());
    /// assert_eq!(calls.load(Ordering::SeqCst), 1, "a POST is sent once");
    /// assert!(svc.oneshot(Call { method: "GET" }).await.is_err());
    /// assert_eq!(calls.load(Ordering::SeqCst), 4, "a GET is retried");
    /// # }
    /// ```
    pub fn retry_request_if<F>(self, predicate: F) -> RetryLayer<C, P, R, D, RequestIf<F>> {
        self.retry_if(RequestIf::new(predicate))
    }

    /// The budget this layer's services draw on.
    pub fn get_budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// The most attempts per call, the original included
    /// ([`max_attempts`](Self::max_attempts)).
    pub fn get_max_attempts(&self) -> u32 {
        self.config.max_attempts
    }

    /// The longest delay a server's pushback may impose
    /// ([`max_pushback`](Self::max_pushback)).
    pub fn get_max_pushback(&self) -> Duration {
        self.config.max_pushback
    }
}

impl<C: Clone, P: Clone, R: Clone, D: Clone, I: Clone> RetryLayer<C, P, R, D, I> {
    pub(crate) fn shared(&self) -> Shared<C, P, R, D, I> {
        let mut config = self.config;
        config.max_attempts = config.max_attempts.max(1);
        Shared {
            config,
            classifier: self.classifier.clone(),
            pushback: self.pushback.clone(),
            replay: self.replay.clone(),
            deadline_from: self.deadline_from.clone(),
            retry_if: self.retry_if.clone(),
            budget: self.budget.clone(),
            random: self.config.seed.map(|s| Mutex::new(Random::seeded(s))),
            listeners: self.listeners.clone(),
        }
    }
}

impl<S, C: Clone, P: Clone, R: Clone, D: Clone, I: Clone> Layer<S> for RetryLayer<C, P, R, D, I> {
    type Service = Retry<S, C, P, R, D, I>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, self.shared())
    }
}

impl<C: Clone, P: Clone, R: Clone, D: Clone, I: Clone> Clone for RetryLayer<C, P, R, D, I> {
    fn clone(&self) -> Self {
        RetryLayer {
            config: self.config,
            classifier: self.classifier.clone(),
            pushback: self.pushback.clone(),
            replay: self.replay.clone(),
            deadline_from: self.deadline_from.clone(),
            retry_if: self.retry_if.clone(),
            budget: self.budget.clone(),
            listeners: self.listeners.clone(),
        }
    }
}

impl<C, P, R, D, I> fmt::Debug for RetryLayer<C, P, R, D, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("max_attempts", &self.config.max_attempts)
            .field("backoff", &self.config.backoff)
            .field("retry_on", &self.config.retry_on)
            .field("max_pushback", &self.config.max_pushback)
            .field("deadline", &self.config.deadline)
            .field("min_time_left", &self.config.min_time_left)
            .field("budget", &self.budget)
            .field("classifier", &std::any::type_name::<C>())
            .field("listeners", &self.listeners)
            .finish()
    }
}
