//! The tower layer.

use crate::service::CircuitBreaker;
use crate::Breaker;
use bulwark_core::classify::DefaultClassifier;
use tower_layer::Layer;

/// Wraps services in a [`CircuitBreaker`] that shares one [`Breaker`].
///
/// Every service this layer makes, and every clone of them, feeds and obeys
/// the same breaker. The classifier decides what counts as a failure
/// (default: every `Err` except Bulwark's own local rejections).
///
/// ```
/// use bulwark::breaker::{Breaker, CircuitBreakerLayer};
/// use bulwark::{BoxError, Outcome};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let breaker = Breaker::builder().name("inventory").build()?;
/// let svc = ServiceBuilder::new()
///     .layer(
///         CircuitBreakerLayer::new(breaker.clone())
///             // An Ok(status >= 500) is a failure too.
///             .classifier(|r: &Result<u16, BoxError>| match r {
///                 Ok(s) if *s >= 500 => Outcome::Failure,
///                 Ok(_) => Outcome::Success,
///                 Err(e) => Outcome::of_error(e),
///             }),
///     )
///     .service_fn(|_req: ()| async { Ok::<u16, BoxError>(200) });
/// assert_eq!(svc.oneshot(()).await?, 200);
/// assert_eq!(breaker.snapshot().calls, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier, H = ()> {
    breaker: Breaker,
    classifier: C,
    hint: H,
}

impl CircuitBreakerLayer {
    /// A layer feeding `breaker`, with the default classifier.
    pub fn new(breaker: Breaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: DefaultClassifier,
            hint: (),
        }
    }
}

/// `CircuitBreakerLayer::new(breaker)`, so that shortcuts taking a layer
/// also take a [`Breaker`].
impl From<Breaker> for CircuitBreakerLayer {
    fn from(breaker: Breaker) -> Self {
        CircuitBreakerLayer::new(breaker)
    }
}

impl<C, H> CircuitBreakerLayer<C, H> {
    /// Uses `classifier` to decide what counts as a success or a failure.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2, H> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
            hint: self.hint,
        }
    }

    /// Holds the breaker open at least as long as a failed answer asks
    /// (an HTTP `Retry-After`, say): see [`OpenHint`](crate::hint::OpenHint).
    pub fn open_hint<H2>(self, hint: H2) -> CircuitBreakerLayer<C, H2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier: self.classifier,
            hint,
        }
    }

    /// The breaker every service of this layer shares.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone, H: Clone> Layer<S> for CircuitBreakerLayer<C, H> {
    type Service = CircuitBreaker<S, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::with_classifier(inner, self.breaker.clone(), self.classifier.clone())
            .with_open_hint(self.hint.clone())
    }
}
