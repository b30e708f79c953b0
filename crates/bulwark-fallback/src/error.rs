//! Errors returned by the [`Fallback`](crate::Fallback) service.
//!
//! When the fallback itself fails, the caller gets a [`FallbackFailed`] that
//! carries both causes: the primary error (also its `source()`, so helpers
//! that walk the chain still find, say, the `CircuitOpen` that triggered the
//! fallback) and the fallback's own error.
//!
//! ```
//! use bulwark::fallback::error::FallbackFailed;
//! use bulwark::error::find;
//! use bulwark::BoxError;
//!
//! let err: BoxError = Box::new(FallbackFailed::new("primary down".into(), "backup down".into()));
//! let failed = find::<FallbackFailed>(&*err).unwrap();
//! assert_eq!(failed.primary().to_string(), "primary down");
//! assert_eq!(failed.fallback().to_string(), "backup down");
//! assert_eq!(err.to_string(), "fallback failed: backup down; after: primary down");
//! ```

use bulwark_core::BoxError;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The fallback failed too. Carries both errors.
#[derive(Debug)]
pub struct FallbackFailed {
    primary: BoxError,
    fallback: BoxError,
}

impl FallbackFailed {
    /// The primary call failed with `primary`, then the fallback with
    /// `fallback`.
    pub fn new(primary: BoxError, fallback: BoxError) -> Self {
        FallbackFailed { primary, fallback }
    }

    /// Why the fallback was used: the primary call's error.
    pub fn primary(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.primary
    }

    /// Why the fallback failed.
    pub fn fallback(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.fallback
    }

    /// Both errors: `(primary, fallback)`.
    pub fn into_parts(self) -> (BoxError, BoxError) {
        (self.primary, self.fallback)
    }
}

impl fmt::Display for FallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fallback failed: {}; after: {}",
            self.fallback, self.primary
        )
    }
}

impl Error for FallbackFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.primary)
    }
}

/// A stale-if-error fallback had no response for the request's key young
/// enough to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoStaleResponse {
    age: Option<Duration>,
    max_age: Duration,
}

impl NoStaleResponse {
    pub(crate) const fn new(age: Option<Duration>, max_age: Duration) -> Self {
        NoStaleResponse { age, max_age }
    }

    /// The age of the response remembered for the key, if there was one (it
    /// was older than the maximum age).
    pub const fn age(&self) -> Option<Duration> {
        self.age
    }

    /// The maximum age a stale response may have.
    pub const fn max_age(&self) -> Duration {
        self.max_age
    }
}

impl fmt::Display for NoStaleResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.age {
            Some(age) => write!(
                f,
                "last good response is too old ({age:?} > {:?})",
                self.max_age
            ),
            None => f.write_str("no good response to fall back to"),
        }
    }
}

impl Error for NoStaleResponse {}

/// The primary call answered, but its response was classified as a failure
/// (e.g. a `503`), so the fallback was used; this is the primary cause a
/// [`FallbackFailed`] then carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedResponse {
    outcome: bulwark_core::Outcome,
}

impl FailedResponse {
    pub(crate) const fn new(outcome: bulwark_core::Outcome) -> Self {
        FailedResponse { outcome }
    }

    /// How the response was classified.
    pub const fn outcome(&self) -> bulwark_core::Outcome {
        self.outcome
    }
}

impl fmt::Display for FailedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response classified as {}", self.outcome)
    }
}

impl Error for FailedResponse {}
