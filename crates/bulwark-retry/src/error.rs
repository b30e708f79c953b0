//! The error retry adds: [`RetryRejected`].
//!
//! Retry returns the last result as it was, with one exception. When a
//! retry is turned away by a local rejection further in (the breaker opened
//! during the call: [`CircuitOpen`]; the bulkhead was full: [`BulkheadFull`])
//! after earlier attempts reached the upstream, the rejection alone would
//! hide what the upstream said. Then:
//!
//! - if the last upstream answer was a response (an `Ok`, such as an HTTP
//!   503), that response is returned, as if the rejected retry had not been
//!   tried;
//! - if it was an error, a [`RetryRejected`] is returned. It says both in its
//!   message, carries the upstream error as its `source()`, and keeps the
//!   rejection findable further down the chain, so
//!   [`find::<CircuitOpen>`](bulwark_core::error::find) and
//!   [`Outcome::of_error`](bulwark_core::Outcome::of_error) still see a local
//!   rejection, and an error mapping still answers 503 with the breaker's
//!   `Retry-After`.
//!
//! The chain is `RetryRejected` → [`LastUpstreamError`] (the upstream's
//! message) → the rejection (and its own sources). The upstream error itself,
//! with its own `source()` chain and concrete type, is at
//! [`RetryRejected::last_error`].
//!
//! ```
//! use bulwark::error::{find, is_rejection, CircuitOpen};
//! use bulwark::BoxError;
//! use bulwark::retry::error::RetryRejected;
//! use bulwark::retry::RetryLayer;
//! use bulwark::backoff::BackoffPolicy;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, ServiceExt};
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // The upstream resets the connection; the breaker opens before the retry.
//! let calls = Arc::new(AtomicU32::new(0));
//! let n = calls.clone();
//! let inner = service_fn(move |_: ()| {
//!     let first = n.fetch_add(1, Ordering::SeqCst) == 0;
//!     async move {
//!         let err: BoxError = if first {
//!             std::io::Error::other("connection reset").into()
//!         } else {
//!             CircuitOpen::new(Some(Duration::from_secs(5))).into()
//!         };
//!         Err::<(), _>(err)
//!     }
//! });
//! let svc = RetryLayer::new().backoff(BackoffPolicy::constant(Duration::from_millis(10))).layer(inner);
//! let err = svc.oneshot(()).await.unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "retry rejected after 2 attempts: circuit breaker is open; next probe in 5s \
//!      (last upstream error: connection reset)"
//! );
//! assert_eq!(err.source().unwrap().to_string(), "connection reset");
//! assert!(is_rejection(&*err));
//! assert!(find::<CircuitOpen>(&*err).is_some());
//! let rejected = err.downcast_ref::<RetryRejected>().unwrap();
//! assert!(rejected.last_error().downcast_ref::<std::io::Error>().is_some());
//! # }
//! ```
//!
//! [`CircuitOpen`]: bulwark_core::error::CircuitOpen
//! [`BulkheadFull`]: bulwark_core::error::BulkheadFull

use bulwark_core::BoxError;
use std::error::Error;
use std::fmt;

/// A retry was refused by a local rejection (an open breaker, a full
/// bulkhead) after earlier attempts had reached the upstream and failed;
/// see the [module docs](self).
///
/// Its `Display` gives both: `retry rejected after 2 attempts: circuit
/// breaker is open (last upstream error: connection reset)`.
#[derive(Debug)]
pub struct RetryRejected {
    attempts: u32,
    last: LastUpstreamError,
}

impl RetryRejected {
    /// A rejection of attempt `attempts` after `last_error`, the upstream's
    /// error from an earlier attempt.
    ///
    /// ```
    /// use bulwark::error::{is_rejection, BulkheadFull};
    /// use bulwark::retry::error::RetryRejected;
    ///
    /// let e = RetryRejected::new(3, Box::new(BulkheadFull::at_capacity()), "timed out".into());
    /// assert_eq!(e.attempts(), 3);
    /// assert_eq!(e.to_string(), "retry rejected after 3 attempts: bulkhead is full (last upstream error: timed out)");
    /// assert!(is_rejection(&e));
    /// ```
    pub fn new(attempts: u32, rejection: BoxError, last_error: BoxError) -> Self {
        RetryRejected {
            attempts,
            last: LastUpstreamError {
                error: last_error,
                rejection,
            },
        }
    }

    /// How many attempts were made, the rejected one included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The error of the last attempt that reached the upstream, with its
    /// own concrete type and `source()` chain.
    pub fn last_error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.last.error
    }

    /// The local rejection that ended the call.
    pub fn rejection(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.last.rejection
    }

    /// The rejection and the last upstream error, in that order.
    pub fn into_parts(self) -> (BoxError, BoxError) {
        (self.last.rejection, self.last.error)
    }
}

impl fmt::Display for RetryRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry rejected after {} attempts: {} (last upstream error: {})",
            self.attempts, self.last.rejection, self.last.error
        )
    }
}

impl Error for RetryRejected {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.last)
    }
}

/// The link of a [`RetryRejected`] chain that stands for the last upstream
/// error: it displays as that error, and its `source()` is the rejection, so
/// that the rejection is found by walking the chain.
///
/// ```
/// use bulwark::error::{find, CircuitOpen};
/// use bulwark::retry::error::{LastUpstreamError, RetryRejected};
/// use std::error::Error;
///
/// let e = RetryRejected::new(2, Box::new(CircuitOpen::new(None)), "reset".into());
/// let link = e.source().unwrap().downcast_ref::<LastUpstreamError>().unwrap();
/// assert_eq!(link.to_string(), "reset");
/// assert_eq!(link.get_ref().to_string(), "reset");
/// assert!(find::<CircuitOpen>(link).is_some());
/// ```
#[derive(Debug)]
pub struct LastUpstreamError {
    error: BoxError,
    rejection: BoxError,
}

impl LastUpstreamError {
    /// The upstream error itself.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl fmt::Display for LastUpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl Error for LastUpstreamError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.rejection)
    }
}
