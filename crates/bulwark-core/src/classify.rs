//! Outcome classification: one decision shared by every layer.
//!
//! A layer that reacts to how calls end (the breaker counts failures, retry
//! retries them, fallback replaces them, metrics label them) asks a
//! [`Classify`] implementation what a result was. Giving every layer the same
//! classifier keeps them consistent: a `503` that trips the breaker is the
//! same `503` that retry tries again.
//!
//! The classifier sees the result *after* the inner error was converted into a
//! [`BoxError`], which is what every failing Bulwark layer returns anyway, so
//! a classifier written once works at any depth of a stack.
//!
//! # Example
//!
//! ```
//! use bulwark::{BoxError, Classify, Outcome};
//!
//! /// HTTP-like: 5xx fails, 429 asks for less load, the rest succeeds.
//! fn by_status(result: &Result<u16, BoxError>) -> Outcome {
//!     match result {
//!         Ok(429) => Outcome::Throttled,
//!         Ok(s) if *s >= 500 => Outcome::Failure,
//!         Ok(_) => Outcome::Success,
//!         Err(e) => Outcome::of_error(e),
//!     }
//! }
//!
//! assert_eq!(by_status.classify(&Ok(502)), Outcome::Failure);
//! assert_eq!(by_status.classify(&Ok(429)), Outcome::Throttled);
//! ```

use crate::error::{is_rejection, BoxError};
use std::fmt;

/// What the result of one call means for resilience decisions.
///
/// Each consumer decides what to do with each class; the defaults are:
///
/// | outcome     | breaker            | retry                  | fallback   |
/// |-------------|--------------------|------------------------|------------|
/// | `Success`   | counts a success   | stops                  | not used   |
/// | `Failure`   | counts a failure   | retries                | used       |
/// | `Throttled` | not counted        | retries after pushback | used       |
/// | `Rejected`  | not counted        | does not retry         | used       |
/// | `Ignored`   | not counted        | stops                  | not used   |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call did what was asked.
    Success,
    /// The upstream failed: an error, a timeout, a `5xx`.
    Failure,
    /// The upstream is alive but asks for less load (`429`,
    /// `RESOURCE_EXHAUSTED`). Worth retrying later; not evidence that the
    /// upstream is broken.
    Throttled,
    /// A Bulwark layer refused the call locally (an open breaker, a full
    /// bulkhead). Says nothing about the upstream's health.
    Rejected,
    /// Neither success nor failure for resilience purposes (e.g. a `404` or an
    /// `INVALID_ARGUMENT`: the caller's fault, not the upstream's).
    Ignored,
}

impl Outcome {
    /// The default class of an error: [`Rejected`](Outcome::Rejected) when a
    /// Bulwark rejection ([`CircuitOpen`](crate::error::CircuitOpen),
    /// [`BulkheadFull`](crate::error::BulkheadFull),
    /// [`ThrottledLocally`](crate::error::ThrottledLocally)) is anywhere in its
    /// `source()` chain, [`Failure`](Outcome::Failure) otherwise.
    pub fn of_error(error: &BoxError) -> Outcome {
        if is_rejection(&**error) {
            Outcome::Rejected
        } else {
            Outcome::Failure
        }
    }

    /// The lowercase name used in events, logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Throttled => "throttled",
            Outcome::Rejected => "rejected",
            Outcome::Ignored => "ignored",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides the [`Outcome`] of a call from its result.
///
/// Implemented for [`DefaultClassifier`] and for every
/// `Fn(&Result<Res, BoxError>) -> Outcome`. A classifier is shared by all
/// clones of a layer and consulted once per call, so it should be cheap.
pub trait Classify<Res> {
    /// Classifies one result.
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome;
}

impl<Res, F> Classify<Res> for F
where
    F: Fn(&Result<Res, BoxError>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome {
        self(result)
    }
}

/// The default: every `Ok` is a success, every `Err` a failure, except
/// Bulwark's own local rejections, which are [`Outcome::Rejected`].
///
/// ```
/// use bulwark::{BoxError, Classify, DefaultClassifier, Outcome};
/// use bulwark::error::BulkheadFull;
///
/// let rejected: Result<(), BoxError> = Err(BulkheadFull::at_capacity().into());
/// assert_eq!(DefaultClassifier.classify(&rejected), Outcome::Rejected);
///
/// let failed: Result<(), BoxError> = Err("connection reset".into());
/// assert_eq!(DefaultClassifier.classify(&failed), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<Res> Classify<Res> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::of_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BulkheadFull, CircuitOpen};
    use std::time::Duration;

    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn default_classifier() {
        let ok: Result<(), BoxError> = Ok(());
        assert_eq!(DefaultClassifier.classify(&ok), Outcome::Success);
        let err: Result<(), BoxError> = Err("boom".into());
        assert_eq!(DefaultClassifier.classify(&err), Outcome::Failure);
        let open: Result<(), BoxError> =
            Err(Box::new(CircuitOpen::new(Some(Duration::from_secs(1)))));
        assert_eq!(DefaultClassifier.classify(&open), Outcome::Rejected);
        let shed: Result<(), BoxError> = Err(Box::new(crate::error::ThrottledLocally::new(0.5)));
        assert_eq!(DefaultClassifier.classify(&shed), Outcome::Rejected);
    }

    #[test]
    fn rejection_found_deep_in_the_chain() {
        let inner: BoxError = Box::new(BulkheadFull::queue_full());
        let err: Result<(), BoxError> = Err(Box::new(Wrapper(Box::new(Wrapper(inner)))));
        assert_eq!(DefaultClassifier.classify(&err), Outcome::Rejected);
    }

    #[test]
    fn closures_classify() {
        let c = |r: &Result<u16, BoxError>| match r {
            Ok(s) if *s >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignored,
        };
        assert_eq!(c.classify(&Ok(500)), Outcome::Failure);
        assert_eq!(c.classify(&Ok(200)), Outcome::Success);
        assert_eq!(c.classify(&Err("x".into())), Outcome::Ignored);
        assert_eq!(Outcome::Throttled.to_string(), "throttled");
    }
}
