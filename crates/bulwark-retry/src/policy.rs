//! Which outcomes are retried, how a server's pushback shapes the retry,
//! which requests may be retried, and when a request must be done by.
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
//! use bulwark::{BoxError, Outcome};
//! use bulwark::retry::policy::{Pushback, PushbackHint, RetryOn};
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
//!
//! Two hooks see the request: a [`RetryIf`] predicate (set with
//! [`RetryLayer::retry_if`](crate::RetryLayer::retry_if) or
//! [`RetryLayer::retry_request_if`](crate::RetryLayer::retry_request_if))
//! decides which requests may be retried, and a [`RequestDeadline`] hook
//! (set with [`RetryLayer::deadline_from`](crate::RetryLayer::deadline_from))
//! reads the deadline a request carries.

use bulwark_core::clock::Instant;
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

/// Which requests (and which of their results) may be retried: the
/// predicate of [`RetryLayer::retry_if`](crate::RetryLayer::retry_if) and
/// [`RetryLayer::retry_request_if`](crate::RetryLayer::retry_request_if).
///
/// It is asked twice, and neither question allocates:
///
/// 1. [`may_retry`](Self::may_retry), once per call, before the request is
///    sent: `false` means the request is sent once and no copy of it is
///    made at all (no clone, no body buffered). This is the place for "only
///    idempotent requests".
/// 2. [`retry`](Self::retry), after an attempt whose outcome
///    [`RetryOn`] would retry, with the copy kept for the next attempt and
///    the result: `false` returns the result as it is.
///
/// A call that a predicate keeps from retrying is reported as
/// [`RetryEvent::NotRetried`](crate::RetryEvent::NotRetried), not as a
/// give-up. It is implemented for `()` (every request may be retried), for
/// every `Fn(&Req, &Result<Res, BoxError>) -> bool` (question 2) and for
/// [`RequestIf`] (question 1).
///
/// ```
/// use bulwark::BoxError;
/// use bulwark::retry::policy::{RequestIf, RetryIf};
///
/// // Question 1: only reads are retried, decided before the call.
/// let reads = RequestIf::new(|method: &&str| *method == "GET");
/// assert!(RetryIf::<&str, u16>::may_retry(&reads, &"GET"));
/// assert!(!RetryIf::<&str, u16>::may_retry(&reads, &"POST"));
///
/// // Question 2: a 503 is retried for GET only.
/// let when = |method: &&str, result: &Result<u16, BoxError>| {
///     *method == "GET" || !matches!(result, Ok(503))
/// };
/// assert!(when.retry(&"GET", &Ok(503)));
/// assert!(!when.retry(&"POST", &Ok(503)));
/// ```
pub trait RetryIf<Req, Res> {
    /// Whether `request` may be retried at all, asked once per call before
    /// it is sent; `false` sends it once without making a copy.
    #[inline]
    fn may_retry(&self, request: &Req) -> bool {
        let _ = request;
        true
    }

    /// Whether the attempt that ended with `result` is retried (asked only
    /// for outcomes that [`RetryOn`] retries). `request` is the copy that
    /// the next attempt would send.
    fn retry(&self, request: &Req, result: &Result<Res, BoxError>) -> bool;
}

impl<Req, Res> RetryIf<Req, Res> for () {
    #[inline]
    fn retry(&self, _: &Req, _: &Result<Res, BoxError>) -> bool {
        true
    }
}

impl<Req, Res, F> RetryIf<Req, Res> for F
where
    F: Fn(&Req, &Result<Res, BoxError>) -> bool,
{
    #[inline]
    fn retry(&self, request: &Req, result: &Result<Res, BoxError>) -> bool {
        self(request, result)
    }
}

/// A [`RetryIf`] predicate on the request alone, asked once per call before
/// it is sent (see [`RetryLayer::retry_request_if`](crate::RetryLayer::retry_request_if)):
/// a request it refuses is sent once, and never copied.
///
/// ```
/// use bulwark::retry::policy::{RequestIf, RetryIf};
///
/// let even = RequestIf::new(|n: &u32| n % 2 == 0);
/// assert!(RetryIf::<u32, ()>::may_retry(&even, &2));
/// assert!(!RetryIf::<u32, ()>::may_retry(&even, &3));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIf<F>(F);

impl<F> RequestIf<F> {
    /// Wraps a `Fn(&Req) -> bool`.
    pub const fn new(predicate: F) -> Self {
        RequestIf(predicate)
    }

    /// The predicate.
    pub fn get_ref(&self) -> &F {
        &self.0
    }
}

impl<Req, Res, F> RetryIf<Req, Res> for RequestIf<F>
where
    F: Fn(&Req) -> bool,
{
    #[inline]
    fn may_retry(&self, request: &Req) -> bool {
        (self.0)(request)
    }

    #[inline]
    fn retry(&self, _: &Req, _: &Result<Res, BoxError>) -> bool {
        true
    }
}

/// The deadline a request carries, if any: the hook of
/// [`RetryLayer::deadline_from`](crate::RetryLayer::deadline_from).
///
/// Read once per call (when retries are possible), before the first
/// attempt. The call's deadline is the earlier of this one and the layer's
/// own [`deadline`](crate::RetryLayer::deadline). Implemented for `()` (no
/// deadline) and for every `Fn(&Req) -> Option<Instant>`; `bulwark-http`
/// implements it for the `Deadline` kept in a request's extensions.
///
/// ```
/// use bulwark::clock::Instant;
/// use bulwark::retry::policy::RequestDeadline;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// /// A request that says when its caller gives up.
/// struct Job { due: Option<Instant> }
/// let hook = |job: &Job| job.due;
/// let due = Instant::now() + Duration::from_secs(1);
/// assert_eq!(hook.deadline(&Job { due: Some(due) }), Some(due));
/// assert_eq!(RequestDeadline::<Job>::deadline(&(), &Job { due: Some(due) }), None);
/// # }
/// ```
pub trait RequestDeadline<Req> {
    /// When the caller of `request` gives up, if it says.
    fn deadline(&self, request: &Req) -> Option<Instant>;
}

impl<Req> RequestDeadline<Req> for () {
    #[inline]
    fn deadline(&self, _: &Req) -> Option<Instant> {
        None
    }
}

impl<Req, F> RequestDeadline<Req> for F
where
    F: Fn(&Req) -> Option<Instant>,
{
    #[inline]
    fn deadline(&self, request: &Req) -> Option<Instant> {
        self(request)
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
