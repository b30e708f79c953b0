//! The [`FallbackLayer`].

use crate::source::{Backup, FromFn, Stale, Value};
use crate::trigger::{Classified, OnError, Or, When};
use crate::{Fallback, FallbackEvent};
use bulwark_core::{DefaultClassifier, Listener, Listeners};
use std::fmt;
use std::time::Duration;
use tower_layer::Layer;

/// Applies a [`Fallback`] to services.
///
/// Pick a source with a constructor ([`value`](Self::value),
/// [`from_fn`](Self::from_fn), [`service`](Self::service),
/// [`stale_if_error`](Self::stale_if_error), [`fail_open`](Self::fail_open),
/// [`fail_closed`](Self::fail_closed)), then, optionally, when it applies: by
/// default on every classified failure, throttling or rejection
/// ([`Classified`]`<DefaultClassifier>`); [`on_error`](Self::on_error) narrows
/// it to chosen error types.
///
/// ```
/// use bulwark::fallback::FallbackLayer;
/// use bulwark::error::CircuitOpen;
///
/// // An empty list when the breaker is open; other errors pass through.
/// let layer = FallbackLayer::value(Vec::<String>::new()).on_error::<CircuitOpen>();
/// # let _ = layer;
/// ```
///
/// # Where it goes
///
/// Outermost: it should see only what every other layer (timeouts, retry,
/// breaker, bulkhead) could not save.
#[derive(Clone)]
pub struct FallbackLayer<P, T = Classified<DefaultClassifier>> {
    source: P,
    trigger: T,
    listeners: Listeners<FallbackEvent>,
}

impl<P> FallbackLayer<P> {
    const fn with_source(source: P) -> Self {
        FallbackLayer {
            source,
            trigger: Classified::new(DefaultClassifier),
            listeners: Listeners::new(),
        }
    }
}

impl<V> FallbackLayer<Value<V>> {
    /// Falls back to `value` (cloned into each call: keep it cheap to clone,
    /// e.g. behind an `Arc`).
    pub const fn value(value: V) -> Self {
        Self::with_source(Value(value))
    }
}

impl FallbackLayer<Value<bool>> {
    /// Fail-open for boolean checks: when the check cannot be made, allow
    /// (`true`). For checks whose failure must not block users (feature
    /// flags, rate-limit lookups).
    pub const fn fail_open() -> Self {
        Self::value(true)
    }

    /// Fail-closed for boolean checks: when the check cannot be made, deny
    /// (`false`). For checks that guard something (permissions).
    pub const fn fail_closed() -> Self {
        Self::value(false)
    }
}

impl<F> FallbackLayer<FromFn<F>> {
    /// Falls back to what `f` makes of the error:
    /// `Fn(&BoxError) -> Result<Res, BoxError>`. An `Err` from `f` is the
    /// fallback's own failure.
    ///
    /// ```
    /// use bulwark::fallback::FallbackLayer;
    /// use bulwark::BoxError;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let svc = ServiceBuilder::new()
    ///     .layer(FallbackLayer::from_fn(|e: &BoxError| Ok(format!("cached page ({e})"))))
    ///     .service_fn(|_: ()| async { Err::<String, BoxError>("upstream down".into()) });
    /// assert_eq!(svc.oneshot(()).await?, "cached page (upstream down)");
    /// # Ok(())
    /// # }
    /// ```
    pub const fn from_fn(f: F) -> Self {
        Self::with_source(FromFn(f))
    }
}

impl<S> FallbackLayer<Backup<S>> {
    /// Falls back to calling `backup` with a copy of the request (the
    /// request type must be `Clone`; it is cloned before every primary call).
    ///
    /// ```
    /// use bulwark::fallback::FallbackLayer;
    /// use bulwark::BoxError;
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let replica = service_fn(|id: u32| async move { Ok::<_, BoxError>(format!("replica: {id}")) });
    /// let svc = ServiceBuilder::new()
    ///     .layer(FallbackLayer::service(replica))
    ///     .service_fn(|_: u32| async { Err::<String, BoxError>("primary down".into()) });
    /// assert_eq!(svc.oneshot(7).await?, "replica: 7");
    /// # Ok(())
    /// # }
    /// ```
    pub const fn service(backup: S) -> Self {
        Self::with_source(Backup(backup))
    }
}

impl<K, F, Res> FallbackLayer<Stale<K, F, Res>> {
    /// Stale-if-error: falls back to the last good response for the
    /// request's key (`key: Fn(&Req) -> K`), if it is at most `max_age` old;
    /// remembers at most `max_keys` keys. Every service the layer wraps
    /// shares the memory.
    ///
    /// ```
    /// use bulwark::fallback::FallbackLayer;
    /// use bulwark::BoxError;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let down = Arc::new(AtomicBool::new(false));
    /// let upstream = down.clone();
    /// let svc = ServiceBuilder::new()
    ///     .layer(FallbackLayer::stale_if_error(|user: &u32| *user, Duration::from_secs(60), 10_000))
    ///     .service_fn(move |user: u32| {
    ///         let down = upstream.load(Ordering::Relaxed);
    ///         async move {
    ///             if down { Err::<String, BoxError>("upstream down".into()) } else { Ok(format!("profile {user}")) }
    ///         }
    ///     });
    /// assert_eq!(svc.clone().oneshot(1).await?, "profile 1");
    /// down.store(true, Ordering::Relaxed);
    /// // The last good answer for user 1, at most 60 s old; nothing for user 2.
    /// assert_eq!(svc.clone().oneshot(1).await?, "profile 1");
    /// assert!(svc.oneshot(2).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn stale_if_error(key: F, max_age: Duration, max_keys: usize) -> Self {
        Self::with_source(Stale::new(key, max_age, max_keys))
    }
}

impl<P, T> FallbackLayer<P, T> {
    /// Falls back on `classifier`'s failures, throttling and rejections
    /// (not on successes or ignored outcomes).
    pub fn classify<C>(self, classifier: C) -> FallbackLayer<P, Classified<C>> {
        self.trigger(Classified::new(classifier))
    }

    /// Falls back only on errors with an `E` anywhere in their `source()`
    /// chain (e.g. only `CircuitOpen`, only `Elapsed`).
    pub fn on_error<E>(self) -> FallbackLayer<P, OnError<E>> {
        self.trigger(OnError::new())
    }

    /// Also falls back on errors with an `E` in their chain.
    pub fn or_on_error<E>(self) -> FallbackLayer<P, Or<T, OnError<E>>> {
        FallbackLayer {
            source: self.source,
            trigger: Or::new(self.trigger, OnError::new()),
            listeners: self.listeners,
        }
    }

    /// Falls back when `predicate(&result)` is true.
    pub fn when<F>(self, predicate: F) -> FallbackLayer<P, When<F>>
    where
        F: Clone,
    {
        self.trigger(When::new(predicate))
    }

    /// Falls back when `trigger` says so (any [`Trigger`](crate::trigger::Trigger)).
    pub fn trigger<U>(self, trigger: U) -> FallbackLayer<P, U> {
        FallbackLayer {
            source: self.source,
            trigger,
            listeners: self.listeners,
        }
    }

    /// Registers a listener for [`FallbackEvent`]s.
    pub fn on_event(mut self, listener: impl Listener<FallbackEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }
}

impl<P: fmt::Debug, T: fmt::Debug> fmt::Debug for FallbackLayer<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("source", &self.source)
            .field("trigger", &self.trigger)
            .field("listeners", &self.listeners)
            .finish()
    }
}

impl<S, P: Clone, T: Clone> Layer<S> for FallbackLayer<P, T> {
    type Service = Fallback<S, P, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::new(inner, self.source.clone(), self.trigger.clone())
            .with_listeners(self.listeners.clone())
    }
}
