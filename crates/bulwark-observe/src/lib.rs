//! # Operating Bulwark in production
//!
//! What people need once the layers run: see what breakers, retries and
//! bulkheads are doing, control them by name, and expose their health.
//!
//! - [`Registry`]: named breakers, keyed breakers, bulkheads and retry
//!   budgets, made on first use and shared by every layer built from them;
//!   list, snapshot, reset or force them by name.
//! - [`Health`]: an aggregate status (healthy, or degraded when a breaker
//!   rejects calls or a bulkhead is full) with per-instance details,
//!   serialisable with serde.
//! - [`metrics`] (feature `metrics`): every layer's events and handles
//!   reported through the [`metrics`](https://docs.rs/metrics) facade under
//!   stable names, and a per-call [`MetricsLayer`](metrics::MetricsLayer).
//! - [`HealthRouter`] (feature `axum`): an axum router serving the health as
//!   JSON, with a liveness, a readiness and optional admin routes.
//!
//! ```
//! use bulwark::breaker::{Breaker, CircuitBreakerLayer};
//! use bulwark::bulkhead::BulkheadLayer;
//! use bulwark::BoxError;
//! use bulwark::observe::{Registry, Status};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let registry = Registry::new();
//! let svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(
//!         registry.breaker("inventory", Breaker::builder().consecutive_failures(5))?,
//!     ))
//!     .layer(registry.bulkhead("inventory", BulkheadLayer::builder().max_concurrent(16)))
//!     .service_fn(|id: u32| async move { Ok::<_, BoxError>(id) });
//! svc.oneshot(7).await?;
//!
//! let health = registry.health();
//! assert_eq!(health.status, Status::Healthy);
//! assert_eq!(health.breakers[0].name, "inventory");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod health;
mod registry;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod router;

pub use health::{Health, Readiness, Status};
pub use registry::{FleetView, Kind, Registry, RetryListener, TimeoutListener, UnknownInstance};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use router::HealthRouter;
