//! Shortcuts on `tower::ServiceBuilder` for Bulwark's layers.

use tower::layer::util::Stack;
use tower::ServiceBuilder;

/// A builder with a retry layer on top of `L`.
#[cfg(feature = "retry")]
type WithRetry<C, P, R, D, I, L> =
    ServiceBuilder<Stack<bulwark_retry::RetryLayer<C, P, R, D, I>, L>>;

/// Adds Bulwark's layers to a `tower::ServiceBuilder` by name.
///
/// Each method is `.layer(...)` with the matching Bulwark layer, and each
/// takes that layer. Three also take the one value their layer is usually
/// built from: a [`Breaker`](bulwark_breaker::Breaker) for
/// [`circuit_breaker`](Self::circuit_breaker), a `Duration` for
/// [`timeout_after`](Self::timeout_after) and a `usize` for
/// [`bulkhead`](Self::bulkhead); pass the layer itself to set anything else
/// (a classifier, listeners). The names avoid tower's own `.timeout`,
/// `.retry` and `.concurrency_limit` (and the trait's name avoids
/// tower-http's `ServiceBuilderExt`).
///
/// ```
/// use bulwark::prelude::*;
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// let breaker = Breaker::builder().build().unwrap();
/// let _stack = ServiceBuilder::new()
///     .circuit_breaker(breaker)
///     .timeout_after(Duration::from_millis(500))
///     .bulkhead(16)
///     .service_fn(|_: ()| async { Ok::<_, BoxError>(()) });
///
/// // The same, with listeners on the timeout.
/// let timeout = TimeoutLayer::new(Duration::from_millis(500))
///     .on_event(|event: &bulwark::timeout::TimeoutEvent| println!("{event:?}"));
/// let _stack = ServiceBuilder::new()
///     .timeout_after(timeout)
///     .bulkhead(BulkheadLayer::new(16))
///     .service_fn(|_: ()| async { Ok::<_, BoxError>(()) });
/// ```
pub trait ResilienceBuilderExt<L>: sealed::Sealed {
    /// Guards the service with a circuit breaker: a
    /// [`CircuitBreakerLayer`](bulwark_breaker::CircuitBreakerLayer), or a
    /// [`Breaker`](bulwark_breaker::Breaker) with the default classifier.
    #[cfg(feature = "breaker")]
    fn circuit_breaker<C, H>(
        self,
        layer: impl Into<bulwark_breaker::CircuitBreakerLayer<C, H>>,
    ) -> ServiceBuilder<Stack<bulwark_breaker::CircuitBreakerLayer<C, H>, L>>;

    /// Retries with `layer`'s policy.
    #[cfg(feature = "retry")]
    fn retry_with<C, P, R, D, I>(
        self,
        layer: bulwark_retry::RetryLayer<C, P, R, D, I>,
    ) -> WithRetry<C, P, R, D, I, L>;

    /// Fails calls that take longer than `limit` with
    /// [`Elapsed`](bulwark_timeout::Elapsed): a `Duration`, or a
    /// [`TimeoutLayer`](bulwark_timeout::TimeoutLayer) (with listeners, or
    /// named in a registry: `registry.timeout("payments", limit)`, so that
    /// its timeouts show in health and `bulwark_timeouts_total`).
    ///
    /// ```
    /// # #[cfg(feature = "observe")] {
    /// // Features `layers` and `observe`.
    /// use bulwark::observe::Registry;
    /// use bulwark::prelude::*;
    /// use std::time::Duration;
    /// use tower::ServiceBuilder;
    ///
    /// let registry = Registry::new();
    /// let _svc = ServiceBuilder::new()
    ///     .timeout_after(registry.timeout("payments", Duration::from_secs(2)))
    ///     .bulkhead(registry.bulkhead("payments", BulkheadLayer::builder().max_concurrent(16)))
    ///     .service_fn(|_: ()| async { Ok::<_, BoxError>(()) });
    /// assert_eq!(registry.list().len(), 2);
    /// # }
    /// ```
    #[cfg(feature = "timeout")]
    fn timeout_after<P>(
        self,
        layer: impl Into<bulwark_timeout::TimeoutLayer<P>>,
    ) -> ServiceBuilder<Stack<bulwark_timeout::TimeoutLayer<P>, L>>;

    /// Limits the calls in flight: a
    /// [`BulkheadLayer`](bulwark_bulkhead::BulkheadLayer), or a `usize`
    /// (at most that many, failing fast beyond).
    #[cfg(feature = "bulkhead")]
    fn bulkhead<C>(
        self,
        layer: impl Into<bulwark_bulkhead::BulkheadLayer<C>>,
    ) -> ServiceBuilder<Stack<bulwark_bulkhead::BulkheadLayer<C>, L>>;

    /// Falls back as `layer` says.
    #[cfg(feature = "fallback")]
    fn fallback<P, T>(
        self,
        layer: bulwark_fallback::FallbackLayer<P, T>,
    ) -> ServiceBuilder<Stack<bulwark_fallback::FallbackLayer<P, T>, L>>;

    /// Sheds calls locally as `layer`'s upstream stops accepting them
    /// (client-side adaptive throttling).
    ///
    /// ```
    /// use bulwark::prelude::*;
    /// use tower::ServiceBuilder;
    ///
    /// let _stack = ServiceBuilder::new()
    ///     .adaptive_throttle(AdaptiveThrottleLayer::new())
    ///     .bulkhead(16)
    ///     .service_fn(|_: ()| async { Ok::<_, BoxError>(()) });
    /// ```
    #[cfg(feature = "throttle")]
    fn adaptive_throttle<C>(
        self,
        layer: bulwark_throttle::AdaptiveThrottleLayer<C>,
    ) -> ServiceBuilder<Stack<bulwark_throttle::AdaptiveThrottleLayer<C>, L>>;
}

impl<L> ResilienceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn circuit_breaker<C, H>(
        self,
        layer: impl Into<bulwark_breaker::CircuitBreakerLayer<C, H>>,
    ) -> ServiceBuilder<Stack<bulwark_breaker::CircuitBreakerLayer<C, H>, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "retry")]
    fn retry_with<C, P, R, D, I>(
        self,
        layer: bulwark_retry::RetryLayer<C, P, R, D, I>,
    ) -> WithRetry<C, P, R, D, I, L> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn timeout_after<P>(
        self,
        layer: impl Into<bulwark_timeout::TimeoutLayer<P>>,
    ) -> ServiceBuilder<Stack<bulwark_timeout::TimeoutLayer<P>, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead<C>(
        self,
        layer: impl Into<bulwark_bulkhead::BulkheadLayer<C>>,
    ) -> ServiceBuilder<Stack<bulwark_bulkhead::BulkheadLayer<C>, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "fallback")]
    fn fallback<P, T>(
        self,
        layer: bulwark_fallback::FallbackLayer<P, T>,
    ) -> ServiceBuilder<Stack<bulwark_fallback::FallbackLayer<P, T>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "throttle")]
    fn adaptive_throttle<C>(
        self,
        layer: bulwark_throttle::AdaptiveThrottleLayer<C>,
    ) -> ServiceBuilder<Stack<bulwark_throttle::AdaptiveThrottleLayer<C>, L>> {
        self.layer(layer)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
