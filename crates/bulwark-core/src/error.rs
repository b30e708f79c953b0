//! Errors: the boxed error every layer returns, helpers to find a cause in a
//! `source()` chain, and Bulwark's local rejections.
//!
//! Layers that add a way to fail return [`BoxError`], as tower's own layers
//! do, so they stack in any order without nested error enums. To react to one
//! kind of failure, look for its type anywhere in the chain: a layer further
//! out may have wrapped it.
//!
//! ```
//! use bulwark::error::{find, is_caused_by, CircuitOpen};
//! use bulwark::BoxError;
//! use std::time::Duration;
//!
//! let err: BoxError = Box::new(CircuitOpen::new(Some(Duration::from_secs(5))));
//! assert!(is_caused_by::<CircuitOpen>(&*err));
//! let open = find::<CircuitOpen>(&*err).unwrap();
//! assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
//! ```

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The error type of every Bulwark layer that can fail: tower's `BoxError`.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Finds the first error of type `E` in `error` or anywhere in its `source()`
/// chain.
///
/// `downcast_ref` on a boxed error only sees the outermost error; this walks
/// the whole chain, so it still finds a `CircuitOpen` that another layer
/// wrapped.
pub fn find<'a, E>(error: &'a (dyn Error + 'static)) -> Option<&'a E>
where
    E: Error + 'static,
{
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// Whether an error of type `E` is `error` itself or anywhere in its
/// `source()` chain.
pub fn is_caused_by<E>(error: &(dyn Error + 'static)) -> bool
where
    E: Error + 'static,
{
    find::<E>(error).is_some()
}

/// Whether `error` is (or was caused by) a local rejection by a Bulwark layer:
/// [`CircuitOpen`], [`BulkheadFull`], [`ThrottledLocally`] or [`RateLimited`].
///
/// A rejection says nothing about the upstream's health: by default the
/// breaker does not count it and retry does not retry it.
pub fn is_rejection(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        if err.is::<CircuitOpen>()
            || err.is::<BulkheadFull>()
            || err.is::<ThrottledLocally>()
            || err.is::<RateLimited>()
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// A configuration that cannot work: which layer, which setting, and why.
///
/// Every builder that validates returns this, so a program (or a config
/// loader) reports bad settings the same way for every layer.
///
/// ```
/// use bulwark::error::ConfigError;
///
/// let e = ConfigError::new("retry", "max_attempts", "must be at least 1, got 0");
/// assert_eq!(e.to_string(), "invalid retry configuration: `max_attempts` must be at least 1, got 0");
/// assert_eq!(e.field(), "max_attempts");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    layer: &'static str,
    field: &'static str,
    reason: String,
}

impl ConfigError {
    /// An error about `field` of `layer`'s configuration.
    pub fn new(layer: &'static str, field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            layer,
            field,
            reason: reason.into(),
        }
    }

    /// The layer whose configuration is wrong (e.g. `"circuit breaker"`).
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// The offending setting.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why it cannot work.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} configuration: `{}` {}",
            self.layer, self.field, self.reason
        )
    }
}

impl Error for ConfigError {}

/// The circuit breaker is open (or half-open with every probe slot taken) and
/// refused the call without calling the inner service.
///
/// It says when the breaker will let a probe through, if it knows:
/// [`retry_after`](CircuitOpen::retry_after) is `None` when the breaker was
/// forced open by an operator or when it waits for probes already in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    name: Option<Arc<str>>,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A rejection whose breaker lets a probe through after `retry_after`
    /// (`None` when unknown).
    pub const fn new(retry_after: Option<Duration>) -> Self {
        CircuitOpen {
            name: None,
            retry_after,
        }
    }

    /// Names the breaker that refused the call.
    pub fn with_name(mut self, name: Arc<str>) -> Self {
        self.name = Some(name);
        self
    }

    /// The name of the breaker that refused the call, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// How long from the rejection until the breaker admits a probe, when
    /// known. `Some(Duration::ZERO)` means "now": try again.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "circuit breaker '{name}' is open")?,
            None => f.write_str("circuit breaker is open")?,
        }
        if let Some(after) = self.retry_after {
            write!(f, "; next probe in {}", Readable(after))?;
        }
        Ok(())
    }
}

impl Error for CircuitOpen {}

/// A duration as people read it in a message: `250ms`, `1.5s`, `30s`.
struct Readable(Duration);

impl fmt::Display for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = (self.0.as_nanos() + 500_000) / 1_000_000;
        if ms < 1_000 {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms as f64 / 1_000.0)
        }
    }
}

/// Why a bulkhead refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BulkheadFullReason {
    /// Every permit was taken and the bulkhead fails fast.
    AtCapacity,
    /// Every permit was taken and the wait queue was full too.
    QueueFull,
    /// The call waited for a permit as long as it was allowed to.
    WaitTimedOut,
}

/// A bulkhead had no permit for the call: the local concurrency limit was
/// reached. The inner service was not called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    name: Option<Arc<str>>,
    reason: BulkheadFullReason,
}

impl BulkheadFull {
    /// A rejection for the given reason.
    pub const fn new(reason: BulkheadFullReason) -> Self {
        BulkheadFull { name: None, reason }
    }

    /// Every permit was taken and the bulkhead fails fast.
    pub const fn at_capacity() -> Self {
        Self::new(BulkheadFullReason::AtCapacity)
    }

    /// The wait queue was full.
    pub const fn queue_full() -> Self {
        Self::new(BulkheadFullReason::QueueFull)
    }

    /// The call waited as long as it was allowed to.
    pub const fn wait_timed_out() -> Self {
        Self::new(BulkheadFullReason::WaitTimedOut)
    }

    /// Names the bulkhead that refused the call.
    pub fn with_name(mut self, name: Arc<str>) -> Self {
        self.name = Some(name);
        self
    }

    /// The name of the bulkhead, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Why the call was refused.
    pub const fn reason(&self) -> BulkheadFullReason {
        self.reason
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "bulkhead '{name}' is full")?,
            None => f.write_str("bulkhead is full")?,
        }
        f.write_str(match self.reason {
            BulkheadFullReason::AtCapacity => "",
            BulkheadFullReason::QueueFull => "; wait queue full",
            BulkheadFullReason::WaitTimedOut => "; waited too long for a permit",
        })
    }
}

impl Error for BulkheadFull {}

/// Client-side adaptive throttling shed the call locally (the Google SRE
/// book's "Handling Overload"): the upstream has been accepting too few of
/// the recent requests, so this one was not sent. The inner service was not
/// called.
///
/// Named apart from [`Outcome::Throttled`](crate::Outcome::Throttled),
/// which is the *upstream* asking for less load (a `429`): this is a local
/// rejection, [`Outcome::Rejected`](crate::Outcome::Rejected), which the
/// breaker does not count and retry does not retry.
///
/// ```
/// use bulwark::error::{is_rejection, ThrottledLocally};
///
/// let shed = ThrottledLocally::new(0.25);
/// assert_eq!(shed.probability(), 0.25);
/// assert_eq!(shed.to_string(), "request shed by adaptive throttling (reject probability 25%)");
/// assert!(is_rejection(&shed));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottledLocally {
    name: Option<Arc<str>>,
    probability: f64,
}

impl ThrottledLocally {
    /// A call shed while the reject probability was `probability` (clamped
    /// to `[0, 1]`).
    pub fn new(probability: f64) -> Self {
        let probability = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        ThrottledLocally {
            name: None,
            probability,
        }
    }

    /// Names the throttle that shed the call.
    pub fn with_name(mut self, name: Arc<str>) -> Self {
        self.name = Some(name);
        self
    }

    /// The name of the throttle, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The probability with which calls were being shed when this one was.
    pub const fn probability(&self) -> f64 {
        self.probability
    }
}

impl fmt::Display for ThrottledLocally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request shed by adaptive throttling")?;
        if let Some(name) = &self.name {
            write!(f, " '{name}'")?;
        }
        write!(
            f,
            " (reject probability {}%)",
            (self.probability * 100.0).round()
        )
    }
}

impl Error for ThrottledLocally {}

/// A rate limiter refused the call: this client (or this fleet) already sent
/// as many calls as its limit allows for now. The inner service was not
/// called.
///
/// It says when a call would be admitted again
/// ([`retry_after`](RateLimited::retry_after)); `bulwark-http` answers it
/// with `429 Too Many Requests` and that `Retry-After`. Like every local
/// rejection it is [`Outcome::Rejected`](crate::Outcome::Rejected): the
/// breaker does not count it and retry does not retry it.
///
/// ```
/// use bulwark::error::{is_rejection, RateLimited};
/// use std::time::Duration;
///
/// let limited = RateLimited::new(Duration::from_millis(250)).with_name("payments".into());
/// assert_eq!(limited.retry_after(), Duration::from_millis(250));
/// assert_eq!(limited.to_string(), "rate limit 'payments' exceeded; retry in 250ms");
/// assert!(is_rejection(&limited));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    name: Option<Arc<str>>,
    retry_after: Duration,
}

impl RateLimited {
    /// A rejection after which a call is admitted again in `retry_after`.
    pub const fn new(retry_after: Duration) -> Self {
        RateLimited {
            name: None,
            retry_after,
        }
    }

    /// Names the rate limiter that refused the call.
    pub fn with_name(mut self, name: Arc<str>) -> Self {
        self.name = Some(name);
        self
    }

    /// The name of the rate limiter, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// How long from the rejection until the limiter admits a call again.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "rate limit '{name}' exceeded")?,
            None => f.write_str("rate limit exceeded")?,
        }
        write!(f, "; retry in {}", Readable(self.retry_after))
    }
}

impl Error for RateLimited {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(BoxError);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn find_walks_the_chain() {
        let err: BoxError = Box::new(Outer(Box::new(Outer(Box::new(
            CircuitOpen::new(None).with_name("db".into()),
        )))));
        let open = find::<CircuitOpen>(&*err).expect("found");
        assert_eq!(open.name(), Some("db"));
        assert!(is_caused_by::<Outer>(&*err));
        assert!(!is_caused_by::<BulkheadFull>(&*err));
        assert!(is_rejection(&*err));
        let plain: BoxError = "boom".into();
        assert!(!is_rejection(&*plain));
    }

    #[test]
    fn display_is_lowercase_and_informative() {
        let e = CircuitOpen::new(Some(Duration::from_millis(1500))).with_name("payments".into());
        assert_eq!(
            e.to_string(),
            "circuit breaker 'payments' is open; next probe in 1.5s"
        );
        assert_eq!(
            CircuitOpen::new(None).to_string(),
            "circuit breaker is open"
        );
        assert_eq!(BulkheadFull::at_capacity().to_string(), "bulkhead is full");
        assert_eq!(
            BulkheadFull::queue_full()
                .with_name("db".into())
                .to_string(),
            "bulkhead 'db' is full; wait queue full"
        );
        assert_eq!(
            BulkheadFull::wait_timed_out().reason(),
            BulkheadFullReason::WaitTimedOut
        );
    }
}
