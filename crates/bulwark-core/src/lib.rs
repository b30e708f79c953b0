//! What every Bulwark layer shares.
//!
//! Bulwark's layers (circuit breaker, retry, timeout, bulkhead, fallback) agree
//! on a handful of concepts so that they compose without surprises:
//!
//! - [`classify`]: one way to say whether the result of a call was a
//!   [`Success`](Outcome::Success), a [`Failure`](Outcome::Failure), a
//!   [`Throttled`](Outcome::Throttled) answer, a local
//!   [`Rejected`](Outcome::Rejected) by another Bulwark layer, or
//!   [`Ignored`](Outcome::Ignored). The breaker, retry, fallback and metrics
//!   all read the same [`Classify`] implementation.
//! - [`error`]: the [`BoxError`] every failing layer returns, helpers that find
//!   an error type anywhere in a `source()` chain, and Bulwark's local
//!   rejections ([`CircuitOpen`](error::CircuitOpen),
//!   [`BulkheadFull`](error::BulkheadFull)).
//! - [`event`]: listeners that observe what a layer does, free when nobody
//!   listens.
//! - [`backoff`]: delays that grow with attempts, with jitter; used by retry
//!   and by the breaker's growing open duration.
//! - [`clock`]: time goes through tokio's clock, so every test can run in
//!   paused, virtual time.
//!
//! Most users never name this crate: the `bulwark` facade re-exports what is
//! needed.
//!
//! ```
//! use bulwark::{classify::{Classify, DefaultClassifier, Outcome}, BoxError};
//!
//! let ok: Result<u16, BoxError> = Ok(200);
//! assert_eq!(DefaultClassifier.classify(&ok), Outcome::Success);
//!
//! // Any closure over the result is a classifier too.
//! let by_status = |r: &Result<u16, BoxError>| match r {
//!     Ok(s) if *s >= 500 => Outcome::Failure,
//!     Ok(_) => Outcome::Success,
//!     Err(e) => Outcome::of_error(e),
//! };
//! assert_eq!(by_status.classify(&Ok(503)), Outcome::Failure);
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod classify;
pub mod clock;
pub mod error;
pub mod event;

pub use classify::{Classify, DefaultClassifier, Outcome};
pub use error::BoxError;
pub use event::{Listener, Listeners};
