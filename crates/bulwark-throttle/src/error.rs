//! Errors returned by the [`AdaptiveThrottle`](crate::AdaptiveThrottle)
//! service.
//!
//! [`ThrottledLocally`] lives in `bulwark-core` so that the other layers (the
//! breaker, retry, fallback) recognise it as a local rejection
//! ([`Outcome::Rejected`](bulwark_core::Outcome::Rejected)); it is
//! re-exported here so that callers can name `throttle::error::ThrottledLocally`.
//!
//! ```
//! use bulwark::error::find;
//! use bulwark::BoxError;
//! use bulwark::throttle::error::ThrottledLocally;
//!
//! let err: BoxError = Box::new(ThrottledLocally::new(0.4));
//! assert_eq!(find::<ThrottledLocally>(&*err).unwrap().probability(), 0.4);
//! ```

pub use bulwark_core::error::ThrottledLocally;
