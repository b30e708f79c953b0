//! [`HedgeLayer`] and its builder.

use super::latency::Latencies;
use super::{Hedge, HedgeShared};
use crate::budget::RetryBudget;
use crate::event::RetryEvent;
use crate::policy::RetryOn;
use crate::replay::CloneReplay;
use bulwark_core::error::ConfigError;
use bulwark_core::event::{Listener, Listeners};
use bulwark_core::DefaultClassifier;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

#[derive(Debug, Clone, Copy, PartialEq)]
enum DelayKind {
    Fixed,
    Percentile {
        percentile: f64,
        min_samples: usize,
        window: usize,
    },
}

/// Sends a speculative extra attempt when the first is slow (see the
/// [module documentation](super)).
///
/// Defaults: 1 hedge at most, the [`DefaultClassifier`] (an `Err` is not
/// acceptable and does not win), requests copied with `Clone`, a budget of
/// 10% of requests plus 1 hedge per second over 10 s.
///
/// Put it where retry would go, inside the total timeout and outside the
/// breaker, so that the breaker sees each hedge.
pub struct HedgeLayer<C = DefaultClassifier, R = CloneReplay> {
    delay: Duration,
    kind: DelayKind,
    max_hedges: u32,
    retry_on: RetryOn,
    classifier: C,
    replay: R,
    budget: RetryBudget,
    listeners: Listeners<RetryEvent>,
}

impl HedgeLayer {
    fn with_kind(delay: Duration, kind: DelayKind) -> Self {
        HedgeLayer {
            delay,
            kind,
            max_hedges: 1,
            retry_on: RetryOn::default(),
            classifier: DefaultClassifier,
            replay: CloneReplay,
            budget: RetryBudget::hedge_default(),
            listeners: Listeners::new(),
        }
    }

    /// Hedges after a fixed `delay` without an answer.
    pub fn fixed(delay: Duration) -> Self {
        Self::with_kind(delay, DelayKind::Fixed)
    }

    /// Hedges after the `percentile` (in (0, 100], e.g. `95.0`) of the
    /// latencies of the last 1000 answers; until
    /// [`min_samples`](Self::min_samples) (default 20) were seen, after the
    /// [`initial_delay`](Self::initial_delay) (default 100 ms).
    ///
    /// # Errors
    ///
    /// When `percentile` is not in (0, 100].
    pub fn percentile(percentile: f64) -> Result<Self, ConfigError> {
        if !(percentile > 0.0 && percentile <= 100.0) {
            return Err(ConfigError::new(
                "hedge",
                "percentile",
                format!("must be in (0, 100], got {percentile}"),
            ));
        }
        Ok(Self::with_kind(
            Duration::from_millis(100),
            DelayKind::Percentile {
                percentile,
                min_samples: 20,
                window: 1000,
            },
        ))
    }
}

impl<C, R> HedgeLayer<C, R> {
    /// At most `n` hedges per call (0 disables hedging).
    pub fn max_hedges(mut self, n: u32) -> Self {
        self.max_hedges = n;
        self
    }

    /// The delay used until enough latencies were observed (percentile mode);
    /// the delay itself in fixed mode.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Observed latencies needed before the percentile is used.
    pub fn min_samples(mut self, n: usize) -> Self {
        if let DelayKind::Percentile { min_samples, .. } = &mut self.kind {
            *min_samples = n;
        }
        self
    }

    /// How many recent latencies the percentile is computed over.
    pub fn window(mut self, samples: usize) -> Self {
        if let DelayKind::Percentile { window, .. } = &mut self.kind {
            *window = samples;
        }
        self
    }

    /// Which outcomes are *not* acceptable answers (by default failures and
    /// throttled answers): they do not win while another attempt may.
    pub fn retry_on(mut self, retry_on: impl Into<RetryOn>) -> Self {
        self.retry_on = retry_on.into();
        self
    }

    /// The budget hedges draw on (share it with the retry layer to bound both
    /// together).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Adds a listener for [`RetryEvent`]s (`HedgeSent`, `HedgeWon`,
    /// `HedgeSkipped`).
    pub fn on_event(mut self, listener: impl Listener<RetryEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// Decides which answers are acceptable.
    pub fn classifier<C2>(self, classifier: C2) -> HedgeLayer<C2, R> {
        HedgeLayer {
            delay: self.delay,
            kind: self.kind,
            max_hedges: self.max_hedges,
            retry_on: self.retry_on,
            classifier,
            replay: self.replay,
            budget: self.budget,
            listeners: self.listeners,
        }
    }

    /// How requests are copied for hedges.
    pub fn replay<R2>(self, replay: R2) -> HedgeLayer<C, R2> {
        HedgeLayer {
            delay: self.delay,
            kind: self.kind,
            max_hedges: self.max_hedges,
            retry_on: self.retry_on,
            classifier: self.classifier,
            replay,
            budget: self.budget,
            listeners: self.listeners,
        }
    }
}

impl<S, C: Clone, R: Clone> Layer<S> for HedgeLayer<C, R> {
    type Service = Hedge<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let latencies = match self.kind {
            DelayKind::Fixed => None,
            DelayKind::Percentile {
                percentile,
                min_samples,
                window,
            } => Some(Latencies::new(percentile, min_samples, window)),
        };
        Hedge {
            inner,
            shared: Arc::new(HedgeShared {
                classifier: self.classifier.clone(),
                replay: self.replay.clone(),
                retry_on: self.retry_on,
                max_hedges: self.max_hedges,
                delay: self.delay,
                latencies,
                budget: self.budget.clone(),
                listeners: self.listeners.clone(),
            }),
        }
    }
}

impl<C: Clone, R: Clone> Clone for HedgeLayer<C, R> {
    fn clone(&self) -> Self {
        HedgeLayer {
            delay: self.delay,
            kind: self.kind,
            max_hedges: self.max_hedges,
            retry_on: self.retry_on,
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
            budget: self.budget.clone(),
            listeners: self.listeners.clone(),
        }
    }
}

impl<C, R> fmt::Debug for HedgeLayer<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("delay", &self.delay)
            .field("kind", &self.kind)
            .field("max_hedges", &self.max_hedges)
            .field("budget", &self.budget)
            .finish()
    }
}
