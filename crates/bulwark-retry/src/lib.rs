//! Retry and hedging for tower services.
//!
//! [`RetryLayer`] retries calls whose outcome is worth another attempt:
//!
//! - **backoff** between attempts, constant, linear or exponential, with none,
//!   full, equal or decorrelated jitter and a cap ([`BackoffPolicy`]); jitter is drawn
//!   independently for every call, and can be seeded for exact tests;
//! - **which outcomes retry** is decided by the classifier shared with the
//!   other Bulwark layers ([`Classify`](bulwark_core::Classify)) and a
//!   [`RetryOn`] set: failures and throttled answers by
//!   default, never a local rejection by Bulwark's breaker or bulkhead;
//! - a **retry budget** shared by every clone of the layer, and optionally by
//!   several layers ([`budget`]), so retries can never become a storm;
//! - **server pushback** ([`Pushback`]): the result of an
//!   attempt may set the next delay (`Retry-After`) or forbid retries;
//! - **deadline-aware**: with a deadline (the layer's own, or one the
//!   request carries, read by a [`RequestDeadline`] hook), a retry whose
//!   delay would end after it is not made, and the last answer is returned
//!   at once instead of waiting for the caller's timeout;
//! - a **retry predicate** that sees the request ([`RetryIf`],
//!   [`RetryLayer::retry_request_if`]), so "only idempotent requests" is one
//!   line;
//! - **readiness** polled again before every attempt, and requests copied only
//!   when another attempt may be needed ([`Replay`]).
//!
//! When no other attempt is made, the last result is returned as it was: an
//! HTTP 503 stays a response. When a retry is turned away by a local
//! rejection (the breaker opened during the call), the last upstream answer
//! is returned instead, or a [`RetryRejected`] error
//! that tells both ([`error`]). [`event`]s (and `tracing`) tell how many
//! attempts ran and why retrying stopped.
//!
//! [`hedge::HedgeLayer`] sends speculative extra attempts when the first is
//! slow, under the same kind of budget.
//!
//! # Example
//!
//! ```
//! use bulwark::retry::RetryLayer;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), bulwark::BoxError> {
//! // An upstream that fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! let flaky = service_fn(move |req: &'static str| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         if n < 2 { Err(std::io::Error::other("connection reset")) } else { Ok(req.len()) }
//!     }
//! });
//!
//! let svc = ServiceBuilder::new().layer(RetryLayer::new()).service(flaky);
//! assert_eq!(svc.oneshot("hello").await?, 5);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(())
//! # }
//! ```
//!
//! [`BackoffPolicy`]: bulwark_core::backoff::BackoffPolicy
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod budget;
mod budget_policy;
pub mod error;
pub mod event;
pub mod future;
pub mod hedge;
mod layer;
pub mod policy;
pub mod replay;
mod service;

pub use budget::RetryBudget;
pub use bulwark_core::backoff::{BackoffPolicy, Jitter};
pub use event::{GiveUpReason, RetryEvent};
pub use hedge::{Hedge, HedgeLayer};

pub use error::RetryRejected;
pub use layer::{RetryLayer, DEFAULT_MIN_TIME_LEFT};
pub use policy::{Pushback, PushbackHint, RequestDeadline, RequestIf, RetryIf, RetryOn};
pub use replay::Replay;
pub use service::Retry;
