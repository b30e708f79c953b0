//! The [`AdaptiveThrottleLayer`] and its [`AdaptiveThrottleBuilder`].

use crate::state::State;
use crate::{AdaptiveThrottle, AdaptiveThrottleHandle, ThrottleEvent};
use bulwark_core::clock::duration_nanos;
use bulwark_core::error::ConfigError;
use bulwark_core::{DefaultClassifier, Listener, Listeners};
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

const LAYER: &str = "adaptive throttle";

/// Applies an [`AdaptiveThrottle`] to services; every service it wraps (and
/// every clone of those) shares one window of counts.
///
/// ```
/// use bulwark::throttle::AdaptiveThrottleLayer;
/// use std::time::Duration;
///
/// // The defaults: K = 2, a 10 s window of 20 buckets, at most 90% shed.
/// let layer = AdaptiveThrottleLayer::new();
///
/// // Spelled out, with a name and a seed for exact runs.
/// let tuned = AdaptiveThrottleLayer::builder()
///     .name("inventory")
///     .k(2.0)
///     .window(Duration::from_secs(10))
///     .buckets(20)
///     .max_reject_probability(0.9)
///     .seed(7)
///     .build()
///     .unwrap();
/// assert_eq!(tuned.handle().snapshot().requests(), 0);
/// # let _ = layer;
/// ```
///
/// # Where it goes
///
/// Beside the breaker, inside retry: `retry → adaptive throttle → breaker →
/// attempt timeout → bulkhead → transport`. Inside retry, it sees every
/// attempt and retry does not retry what it sheds
/// ([`ThrottledLocally`](bulwark_core::error::ThrottledLocally) is a local
/// rejection). The breaker stops *all* traffic to an upstream that is down;
/// the throttle sheds only the excess when an upstream accepts part of it
/// (a brownout, a rate limit), and nearly everything in an outage, without
/// the breaker's all-or-nothing steps.
#[derive(Debug, Clone)]
pub struct AdaptiveThrottleLayer<C = DefaultClassifier> {
    state: Arc<State>,
    classifier: C,
}

impl AdaptiveThrottleLayer {
    /// A throttle with the defaults (see [`AdaptiveThrottleBuilder`]).
    pub fn new() -> Self {
        Self::builder().layer()
    }

    /// A builder with the defaults.
    pub fn builder() -> AdaptiveThrottleBuilder {
        AdaptiveThrottleBuilder {
            k: 2.0,
            window: Duration::from_secs(10),
            buckets: 20,
            max_reject_probability: 0.9,
            seed: None,
            name: None,
            listeners: Listeners::new(),
        }
    }
}

impl Default for AdaptiveThrottleLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> AdaptiveThrottleLayer<C> {
    /// Decides what the upstream accepted with `classifier`, the one the
    /// breaker and retry use (see [`AdaptiveThrottle`] for what counts).
    ///
    /// ```
    /// use bulwark::{BoxError, Outcome};
    /// use bulwark::throttle::AdaptiveThrottleLayer;
    ///
    /// let layer = AdaptiveThrottleLayer::new().classifier(|r: &Result<u16, BoxError>| match r {
    ///     Ok(429) => Outcome::Throttled,
    ///     Ok(s) if *s >= 500 => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    ///     Err(e) => Outcome::of_error(e),
    /// });
    /// # let _ = layer;
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveThrottleLayer<C2> {
        AdaptiveThrottleLayer {
            state: self.state,
            classifier,
        }
    }

    /// A handle reading the shared counts.
    pub fn handle(&self) -> AdaptiveThrottleHandle {
        AdaptiveThrottleHandle {
            state: self.state.clone(),
        }
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveThrottleLayer<C> {
    type Service = AdaptiveThrottle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveThrottle::with_state(inner, self.state.clone(), self.classifier.clone())
    }
}

/// Builds an [`AdaptiveThrottleLayer`]; [`build`](Self::build) checks the
/// settings.
///
/// ```
/// use bulwark::throttle::AdaptiveThrottleLayer;
///
/// let err = AdaptiveThrottleLayer::builder().k(0.5).build().unwrap_err();
/// assert_eq!(err.field(), "k");
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveThrottleBuilder {
    k: f64,
    window: Duration,
    buckets: usize,
    max_reject_probability: f64,
    seed: Option<u64>,
    name: Option<Arc<str>>,
    listeners: Listeners<ThrottleEvent>,
}

impl AdaptiveThrottleBuilder {
    /// The SRE book's multiplier `K` (2 by default, at least 1): calls are
    /// shed with probability `(requests − K·accepts) / (requests + 1)`, so
    /// nothing is shed while the upstream accepts at least `1/K` of the
    /// requests. Lower sheds sooner; higher lets more doomed requests
    /// through. With 2, a 30% brownout (70% accepted) sheds nothing.
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// How far back the counts go (10 s by default, between 1 s and 1 h).
    ///
    /// Provisional, to be tuned in the simulator. The SRE book uses 2
    /// minutes, but the formula recovers slowly: after an outage, shedding
    /// ends only when the accepts of the window are back to `1/K` of its
    /// requests, and the accepts grow only as fast as the calls let through
    /// succeed, so recovery takes about 1.5 windows (measured in
    /// `tests/throttle.rs`: 18 s with these defaults after a 60 s outage at
    /// 100 calls/s; a 30 s window took over 30 s, 2 minutes would take
    /// minutes). 10 s still judges a brownout on 2,000 calls at 200 calls/s.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many buckets the window slides by (20 by default, between 1 and
    /// 1000): the window forgets one bucket of counts at a time.
    pub fn buckets(mut self, n: usize) -> Self {
        self.buckets = n;
        self
    }

    /// The most calls ever shed, in `[0, 1]` (0.9 by default). The SRE
    /// formula sheds up to `requests / (requests + 1)` in a total outage, so
    /// almost no call gets through to see the upstream recover and the
    /// throttle can take minutes to open again; letting 10% through keeps
    /// recovery within a fraction of the window. A breaker beside it stops
    /// the rest in a hard outage.
    pub fn max_reject_probability(mut self, p: f64) -> Self {
        self.max_reject_probability = p;
        self
    }

    /// Seeds the random draws, for exact runs and tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Names the throttle in its errors, events and traces.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Registers a listener for [`ThrottleEvent`]s.
    pub fn on_event(mut self, listener: impl Listener<ThrottleEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting: `k` below 1 or not finite,
    /// `window` outside 1 s ..= 1 h, `buckets` outside 1 ..= 1000,
    /// `max_reject_probability` outside `[0, 1]`.
    pub fn build(self) -> Result<AdaptiveThrottleLayer, ConfigError> {
        if !(self.k.is_finite() && self.k >= 1.0) {
            return Err(ConfigError::new(
                LAYER,
                "k",
                format!("must be a number of at least 1, got {}", self.k),
            ));
        }
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                LAYER,
                "window",
                format!("must be between 1s and 1h, got {:?}", self.window),
            ));
        }
        if self.buckets == 0 || self.buckets > 1000 {
            return Err(ConfigError::new(
                LAYER,
                "buckets",
                format!("must be between 1 and 1000, got {}", self.buckets),
            ));
        }
        if !(0.0..=1.0).contains(&self.max_reject_probability) {
            return Err(ConfigError::new(
                LAYER,
                "max_reject_probability",
                format!(
                    "must be between 0 and 1, got {}",
                    self.max_reject_probability
                ),
            ));
        }
        Ok(self.layer())
    }

    /// The layer, from settings already checked.
    fn layer(self) -> AdaptiveThrottleLayer {
        AdaptiveThrottleLayer {
            state: Arc::new(State::new(
                duration_nanos(self.window),
                self.buckets,
                self.k,
                self.max_reject_probability,
                self.seed,
                self.name,
                self.listeners,
            )),
            classifier: DefaultClassifier,
        }
    }
}
