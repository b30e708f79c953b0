//! A layer that may be turned off, with one error type either way.
//!
//! tower's `Option<L>` layer gives an `Either` whose two sides must fail with
//! the same error type; a Bulwark layer fails with `BoxError` and the
//! transport it wraps with its own error. [`OptionalLayer`] converts both to
//! `BoxError`, so every part of a ready-made stack can be turned off without
//! changing the stack's type.
//!
//! ```
//! use bulwark::stack::optional::OptionalLayer;
//! use bulwark::timeout::TimeoutLayer;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let maybe_timeout: Option<Duration> = None;
//! let svc = ServiceBuilder::new()
//!     .layer(OptionalLayer::new(maybe_timeout.map(TimeoutLayer::new)))
//!     .service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
//! assert_eq!(svc.oneshot(7).await.unwrap(), 7);
//! # }
//! ```

use bulwark_core::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Applies its layer when it has one; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct OptionalLayer<L> {
    layer: Option<L>,
}

impl<L> OptionalLayer<L> {
    /// Applies `layer` if it is `Some`.
    pub const fn new(layer: Option<L>) -> Self {
        OptionalLayer { layer }
    }

    /// The layer, if on.
    pub fn get(&self) -> Option<&L> {
        self.layer.as_ref()
    }
}

impl<S, L: Layer<S>> Layer<S> for OptionalLayer<L> {
    type Service = Optional<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.layer {
            Some(l) => Optional::On {
                inner: l.layer(inner),
            },
            None => Optional::Off { inner },
        }
    }
}

/// The service of [`OptionalLayer`]: the layered service, or the inner one.
#[derive(Debug, Clone)]
pub enum Optional<A, B> {
    /// The layer is on.
    On {
        /// The layered service.
        inner: A,
    },
    /// The layer is off.
    Off {
        /// The inner service.
        inner: B,
    },
}

impl<A, B, Req> Service<Req> for Optional<A, B>
where
    A: Service<Req>,
    A::Error: Into<BoxError>,
    B: Service<Req, Response = A::Response>,
    B::Error: Into<BoxError>,
{
    type Response = A::Response;
    type Error = BoxError;
    type Future = OptionalFuture<A::Future, B::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Optional::On { inner } => inner.poll_ready(cx).map_err(Into::into),
            Optional::Off { inner } => inner.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Optional::On { inner } => OptionalFuture::On {
                fut: inner.call(req),
            },
            Optional::Off { inner } => OptionalFuture::Off {
                fut: inner.call(req),
            },
        }
    }
}

pin_project! {
    /// The response future of [`Optional`] (its one field is the future).
    #[project = OptionalProj]
    #[allow(missing_docs)]
    pub enum OptionalFuture<A, B> {
        /// The layered service's future.
        On { #[pin] fut: A },
        /// The inner service's future.
        Off { #[pin] fut: B },
    }
}

impl<A, B> fmt::Debug for OptionalFuture<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptionalFuture::On { .. } => "OptionalFuture::On",
            OptionalFuture::Off { .. } => "OptionalFuture::Off",
        })
    }
}

impl<A, B, T, EA, EB> Future for OptionalFuture<A, B>
where
    A: Future<Output = Result<T, EA>>,
    B: Future<Output = Result<T, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            OptionalProj::On { fut } => fut.poll(cx).map_err(Into::into),
            OptionalProj::Off { fut } => fut.poll(cx).map_err(Into::into),
        }
    }
}
