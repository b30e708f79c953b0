//! Which outcomes are retried, and how a server's pushback shapes the retry.
//!
//! Retry decides in two steps. First the layer's classifier (shared with the
//! breaker, fallback and metrics, see [`Classify`](bulwark_core::Classify))
//! gives the result an [`Outcome`]; [`RetryOn`] says which outcomes are worth
//! another attempt (by default [`Failure`](Outcome::Failure) and
//! [`Throttled`](Outcome::Throttled), never a local
//! [`Rejected`](Outcome::Rejected)). Then a [`Pushback`] hook reads the
//! result itself and may set the delay before the next attempt (a server's
//! `Retry-After`) or forbid further attempts.
//!
//! ```
//! use bulwark_core::{BoxError, Outcome};
//! use bulwark_retry::policy::{Pushback, PushbackHint, RetryOn};
//! use std::time::Duration;
//!
//! assert!(RetryOn::default().contains(Outcome::Failure));
//! assert!(!RetryOn::default().contains(Outcome::Rejected));
//!
//! // A status code stands in for a response: 503 carries a Retry-After of 2 s,
//! // 501 means the server will never do it.
//! let pushback = |result: &Result<u16, BoxError>| match result {
//!     Ok(503) => PushbackHint::After(Duration::from_secs(2)),
//!     Ok(501) => PushbackHint::Stop,
//!     _ => PushbackHint::None,
//! };
//! assert_eq!(pushback.pushback(&Ok(503)), PushbackHint::After(Duration::from_secs(2)));
//! assert_eq!(().pushback(&Ok::<u16, BoxError>(503)), PushbackHint::None);
//! ```

use bulwark_core::{BoxError, Outcome};
use std::fmt;
use std::time::Duration;

/// The set of [`Outcome`]s that are retried.
///
/// The default is [`Failure`](Outcome::Failure) and
/// [`Throttled`](Outcome::Throttled). Retrying a
/// [`Rejected`](Outcome::Rejected) outcome (an open breaker, a full bulkhead
/// further in) only burns the budget, so it is left out unless asked for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryOn {
    bits: u8,
}

const fn bit(outcome: Outcome) -> u8 {
    1 << outcome as u8
}

impl RetryOn {
    /// Retries nothing.
    pub const fn none() -> Self {
        RetryOn { bits: 0 }
    }

    /// [`Failure`](Outcome::Failure) and [`Throttled`](Outcome::Throttled).
    pub const fn failures() -> Self {
        RetryOn {
            bits: bit(Outcome::Failure) | bit(Outcome::Throttled),
        }
    }

    /// Adds `outcome` to the set.
    pub const fn with(self, outcome: Outcome) -> Self {
        RetryOn {
            bits: self.bits | bit(outcome),
        }
    }

    /// Removes `outcome` from the set.
    pub const fn without(self, outcome: Outcome) -> Self {
        RetryOn {
            bits: self.bits & !bit(outcome),
        }
    }

    /// Whether `outcome` is retried.
    #[inline]
    pub const fn contains(self, outcome: Outcome) -> bool {
        self.bits & bit(outcome) != 0
    }
}

impl Default for RetryOn {
    fn default() -> Self {
        Self::failures()
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Throttled,
            Outcome::Rejected,
            Outcome::Ignored,
        ];
        f.debug_set()
            .entries(all.iter().filter(|o| self.contains(**o)))
            .finish()
    }
}

impl<const N: usize> From<[Outcome; N]> for RetryOn {
    fn from(outcomes: [Outcome; N]) -> Self {
        outcomes.into_iter().fold(RetryOn::none(), RetryOn::with)
    }
}

/// What a server's answer says about the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PushbackHint {
    /// Nothing: the backoff decides the delay.
    #[default]
    None,
    /// Wait this long before the next attempt (capped by the layer's
    /// [`max_pushback`](crate::RetryLayer::max_pushback)).
    After(Duration),
    /// Do not retry this call at all.
    Stop,
}

/// Reads a server's pushback from the result of an attempt.
///
/// Consulted only for outcomes that would be retried. The HTTP crate
/// implements it for `Retry-After` and `grpc-retry-pushback-ms`; any
/// `Fn(&Result<Res, BoxError>) -> PushbackHint` is one too, and `()` reads
/// nothing.
///
/// Since it sees the whole result, a pushback hook is also the place for a
/// retry predicate finer than [`RetryOn`]: return [`PushbackHint::Stop`] for
/// results that must not be retried.
pub trait Pushback<Res> {
    /// The hint carried by `result`.
    fn pushback(&self, result: &Result<Res, BoxError>) -> PushbackHint;
}

impl<Res> Pushback<Res> for () {
    #[inline]
    fn pushback(&self, _: &Result<Res, BoxError>) -> PushbackHint {
        PushbackHint::None
    }
}

impl<Res, F> Pushback<Res> for F
where
    F: Fn(&Result<Res, BoxError>) -> PushbackHint,
{
    #[inline]
    fn pushback(&self, result: &Result<Res, BoxError>) -> PushbackHint {
        self(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_sets() {
        let d = RetryOn::default();
        assert!(d.contains(Outcome::Failure) && d.contains(Outcome::Throttled));
        assert!(!d.contains(Outcome::Rejected));
        assert!(!d.contains(Outcome::Success));
        assert!(!d.contains(Outcome::Ignored));
        let custom = RetryOn::from([Outcome::Failure, Outcome::Rejected]).without(Outcome::Failure);
        assert!(custom.contains(Outcome::Rejected) && !custom.contains(Outcome::Failure));
        assert_eq!(format!("{d:?}"), "{Failure, Throttled}");
        assert_eq!(RetryOn::none(), RetryOn::from([]));
    }
}
