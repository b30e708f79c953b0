//! Errors returned by the [`Bulkhead`](crate::Bulkhead) service.
//!
//! [`BulkheadFull`] lives in `bulwark-core` so that other layers (the breaker,
//! retry, fallback) recognise it as a local rejection; it is re-exported here
//! so that callers can name `bulkhead::error::BulkheadFull`.
//!
//! ```
//! use bulwark::bulkhead::error::{BulkheadFull, BulkheadFullReason};
//! use bulwark::error::find;
//! use bulwark::BoxError;
//!
//! let err: BoxError = Box::new(BulkheadFull::queue_full());
//! let full = find::<BulkheadFull>(&*err).unwrap();
//! assert_eq!(full.reason(), BulkheadFullReason::QueueFull);
//! ```

pub use bulwark_core::error::{BulkheadFull, BulkheadFullReason};
