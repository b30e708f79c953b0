//! Errors returned by the [`Timeout`](crate::Timeout) service.
//!
//! ```
//! use bulwark::timeout::error::{Elapsed, Limit};
//! use bulwark::error::find;
//! use bulwark::BoxError;
//! use std::time::Duration;
//!
//! # let err: BoxError = Box::new(Elapsed::new(Limit::Request, Duration::from_secs(2)));
//! if let Some(elapsed) = find::<Elapsed>(&*err) {
//!     assert_eq!(elapsed.limit(), Limit::Request);
//!     assert_eq!(elapsed.duration(), Duration::from_secs(2));
//! }
//! ```

use std::fmt;
use std::time::Duration;

/// Which limit of a [`Timeout`](crate::Timeout) fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// The response future did not complete in time.
    Request,
    /// The inner service did not become ready in time (only when the layer
    /// was asked to cover readiness).
    Readiness,
}

impl Limit {
    /// The lowercase name used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Limit::Request => "request",
            Limit::Readiness => "readiness",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`Timeout`](crate::Timeout) limit elapsed: the request timed out, or the
/// inner service did not become ready in time.
///
/// It says which [`Limit`] fired and how long that limit was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elapsed {
    limit: Limit,
    duration: Duration,
}

impl Elapsed {
    /// The `limit` of length `duration` elapsed.
    pub const fn new(limit: Limit, duration: Duration) -> Self {
        Elapsed { limit, duration }
    }

    /// Which limit fired.
    pub const fn limit(&self) -> Limit {
        self.limit
    }

    /// How long the limit that fired was.
    pub const fn duration(&self) -> Duration {
        self.duration
    }

    /// Whether the request itself timed out.
    pub const fn is_request(&self) -> bool {
        matches!(self.limit, Limit::Request)
    }

    /// Whether the wait for the inner service's readiness timed out.
    pub const fn is_readiness(&self) -> bool {
        matches!(self.limit, Limit::Readiness)
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Limit::Request => write!(f, "request timed out after {:?}", self.duration),
            Limit::Readiness => write!(f, "service was not ready within {:?}", self.duration),
        }
    }
}

impl std::error::Error for Elapsed {}

/// Whether `error` is a timeout, anywhere in its `source()` chain:
/// Bulwark's [`Elapsed`], or tower's own (`tower::timeout::error::Elapsed`,
/// from a `tower::timeout::TimeoutLayer` anywhere below). Error mappings
/// and classifications use it, so that a timeout answers as one whichever
/// layer measured it.
///
/// ```
/// use bulwark::timeout::error::{is_timeout, Elapsed, Limit};
/// use bulwark::BoxError;
/// use std::time::Duration;
///
/// let ours: BoxError = Elapsed::new(Limit::Request, Duration::from_secs(2)).into();
/// let towers: BoxError = tower::timeout::error::Elapsed::new().into();
/// let reset: BoxError = "connection reset".into();
/// assert!(is_timeout(&*ours) && is_timeout(&*towers) && !is_timeout(&*reset));
/// ```
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    use bulwark_core::error::is_caused_by;
    is_caused_by::<Elapsed>(error) || is_caused_by::<tower::timeout::error::Elapsed>(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_which_limit_and_how_long() {
        let e = Elapsed::new(Limit::Request, Duration::from_millis(1500));
        assert_eq!(e.to_string(), "request timed out after 1.5s");
        assert!(e.is_request() && !e.is_readiness());
        let e = Elapsed::new(Limit::Readiness, Duration::from_secs(1));
        assert_eq!(e.to_string(), "service was not ready within 1s");
        assert_eq!(e.limit().as_str(), "readiness");
    }
}
