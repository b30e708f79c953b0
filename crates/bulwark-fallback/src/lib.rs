//! Fallback for tower services: replace failed calls with a value, a
//! closure of the error, a backup service's answer, or the last good
//! response (stale-if-error).
//!
//! A [`Fallback`] runs the primary call; when a [`Trigger`](trigger::Trigger)
//! says its result calls for it, a [`Source`](source::Source) provides a
//! replacement. By default the trigger is the shared classifier: results
//! classified [`Failure`](bulwark_core::Outcome::Failure),
//! [`Throttled`](bulwark_core::Outcome::Throttled) or
//! [`Rejected`](bulwark_core::Outcome::Rejected) fall back;
//! [`Success`](bulwark_core::Outcome::Success) and
//! [`Ignored`](bulwark_core::Outcome::Ignored) do not.
//! [`FallbackLayer::on_error`] narrows it to chosen error types, found
//! anywhere in the error's `source()` chain.
//!
//! ```
//! use bulwark::fallback::FallbackLayer;
//! use bulwark::error::CircuitOpen;
//! use bulwark::BoxError;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Recommendations: when the breaker is open, an empty list.
//! let svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::value(Vec::<u32>::new()).on_error::<CircuitOpen>())
//!     .service_fn(|open: bool| async move {
//!         if open {
//!             Err::<Vec<u32>, BoxError>(Box::new(CircuitOpen::new(None)))
//!         } else {
//!             Err("database on fire".into())
//!         }
//!     });
//! assert_eq!(svc.clone().oneshot(true).await.unwrap(), Vec::<u32>::new());
//! // Other errors are not hidden.
//! assert_eq!(svc.oneshot(false).await.unwrap_err().to_string(), "database on fire");
//! # }
//! ```
//!
//! # Sources
//!
//! - [`FallbackLayer::value`]: a fixed value.
//! - [`FallbackLayer::from_fn`]: a closure of the error.
//! - [`FallbackLayer::service`]: a backup service, called with a copy of the
//!   request (`Req: Clone`).
//! - [`FallbackLayer::stale_if_error`]: the last good response for the same
//!   key, if it is not older than a maximum age, for a bounded number of keys.
//! - [`FallbackLayer::fail_open`] / [`FallbackLayer::fail_closed`]: `true` /
//!   `false` for boolean checks (a permission check fails closed; a
//!   feature-flag lookup may fail open).
//!
//! # The fallback's own failure
//!
//! Is reported, not hidden: the caller gets a
//! [`FallbackFailed`] carrying both the primary error
//! (also its `source()`) and the fallback's.
//!
//! # Where it goes
//!
//! Outermost in a stack: `fallback → total timeout → retry → breaker →
//! attempt timeout → bulkhead → transport`. It then sees only what nothing
//! else could save.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod future;
mod layer;
mod service;
pub mod source;
pub mod trigger;

pub use error::FallbackFailed;
pub use layer::FallbackLayer;
pub use service::Fallback;

use bulwark_core::Outcome;

/// What a fallback reports to its listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallbackEvent {
    /// The primary result was replaced by the fallback.
    FellBack {
        /// How the primary result was classified.
        outcome: Outcome,
    },
    /// The fallback failed too; the caller gets both errors.
    FallbackFailed,
}
