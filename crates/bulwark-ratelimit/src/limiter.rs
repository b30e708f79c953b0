//! The limiters: [`RateLimiter`] (one limit for every call) and
//! [`KeyedRateLimiter`] (one limit per key), both GCRA from the `governor`
//! crate, read on tokio's clock.

use crate::RateLimitEvent;
use bulwark_core::clock::Instant;
use bulwark_core::error::{ConfigError, RateLimited};
use bulwark_core::event::{Listener, Listeners};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Decides whether one call may go now: the contract between the
/// [`RateLimitLayer`](crate::RateLimitLayer) and a limiter.
///
/// Implemented by [`RateLimiter`] and by the fleet-wide limiter of
/// `bulwark-fleet`; implement it to put any other admission policy behind
/// the same layer. `admit` must answer at once (no I/O, no lock held for
/// long): it runs on every call.
///
/// ```
/// use bulwark::ratelimit::{Admit, RateLimiter};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = RateLimiter::builder().limit(2, Duration::from_secs(1)).build().unwrap();
/// assert!(limiter.admit().is_ok());
/// assert!(limiter.admit().is_ok());
/// let refused = limiter.admit().unwrap_err();
/// assert_eq!(refused.retry_after(), Duration::from_millis(500));
/// # }
/// ```
pub trait Admit {
    /// `Ok` admits one call; `Err` refuses it and says when to retry.
    fn admit(&self) -> Result<(), RateLimited>;
}

impl<A: Admit + ?Sized> Admit for Arc<A> {
    #[inline]
    fn admit(&self) -> Result<(), RateLimited> {
        (**self).admit()
    }
}

/// Decides whether one call for `key` may go now; the keyed counterpart
/// of [`Admit`], implemented by [`KeyedRateLimiter`].
///
/// ```
/// use bulwark::ratelimit::{AdmitKey, RateLimiter};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let per_user = RateLimiter::builder().limit(1, Duration::from_secs(1)).build_keyed::<u64>().unwrap();
/// assert!(per_user.admit_key(&7).is_ok());
/// assert!(per_user.admit_key(&7).is_err());
/// assert!(per_user.admit_key(&8).is_ok()); // another key, another budget
/// # }
/// ```
pub trait AdmitKey<K: ?Sized> {
    /// `Ok` admits one call for `key`; `Err` refuses it and says when to
    /// retry.
    fn admit_key(&self, key: &K) -> Result<(), RateLimited>;
}

impl<K: ?Sized, A: AdmitKey<K> + ?Sized> AdmitKey<K> for Arc<A> {
    #[inline]
    fn admit_key(&self, key: &K) -> Result<(), RateLimited> {
        (**self).admit_key(key)
    }
}

/// governor's clock, read from tokio's: instants are the time since the
/// limiter was built, so paused-time tests drive the limiter exactly.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    base: Instant,
}

impl TokioClock {
    fn new() -> Self {
        TokioClock {
            base: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    #[inline]
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.base)
    }
}

/// The shape of a limit: `permits` calls per `per`, bursts of up to
/// `burst` calls.
///
/// GCRA spaces calls by `per / permits` (the emission interval) and lets a
/// client that has been quiet send up to `burst` at once; over any window
/// of length `T`, at most `burst + T·permits/per` calls are admitted.
///
/// ```
/// use bulwark::ratelimit::Rate;
/// use std::time::Duration;
///
/// let rate = Rate::new(100, Duration::from_secs(1)).unwrap().burst(10).unwrap();
/// assert_eq!(rate.interval(), Duration::from_millis(10));
/// assert_eq!(rate.burst_size(), 10);
/// assert!(Rate::new(0, Duration::from_secs(1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    permits: u32,
    per: Duration,
    burst: u32,
}

impl Rate {
    /// `permits` calls per `per`; the burst is `permits` (a quiet client
    /// may spend a whole period's worth at once), see [`burst`](Self::burst).
    pub fn new(permits: u32, per: Duration) -> Result<Self, ConfigError> {
        if permits == 0 {
            return Err(ConfigError::new(
                "rate limiter",
                "limit",
                "must admit at least 1 call per period, got 0",
            ));
        }
        if per.is_zero() || (per / permits).is_zero() {
            return Err(ConfigError::new(
                "rate limiter",
                "limit",
                format!("period {per:?} is too short for {permits} calls (at least 1ns apart)"),
            ));
        }
        Ok(Rate {
            permits,
            per,
            burst: permits,
        })
    }

    /// The most calls admitted at once after a quiet spell (at least 1).
    pub fn burst(mut self, burst: u32) -> Result<Self, ConfigError> {
        if burst == 0 {
            return Err(ConfigError::new(
                "rate limiter",
                "burst",
                "must be at least 1, got 0",
            ));
        }
        self.burst = burst;
        Ok(self)
    }

    /// Calls per period.
    pub const fn permits(&self) -> u32 {
        self.permits
    }

    /// The period.
    pub const fn per(&self) -> Duration {
        self.per
    }

    /// The largest burst.
    pub const fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The time between two calls at the sustained rate: `per / permits`.
    pub fn interval(&self) -> Duration {
        self.per / self.permits
    }

    /// Calls per second at the sustained rate.
    pub fn per_second(&self) -> f64 {
        f64::from(self.permits) / self.per.as_secs_f64()
    }

    fn quota(&self) -> Quota {
        // Both are checked non-zero by the constructors.
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// Builds a [`RateLimiter`] or a [`KeyedRateLimiter`].
pub struct RateLimiterBuilder {
    name: Option<Arc<str>>,
    rate: Option<Result<Rate, ConfigError>>,
    burst: Option<u32>,
    max_keys: usize,
    listeners: Listeners<RateLimitEvent>,
}

impl fmt::Debug for RateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl RateLimiterBuilder {
    /// Names the limiter (in its errors, events and logs).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// `permits` calls per `per` (required).
    pub fn limit(mut self, permits: u32, per: Duration) -> Self {
        self.rate = Some(Rate::new(permits, per));
        self
    }

    /// The limit as a [`Rate`].
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(Ok(rate));
        self
    }

    /// The most calls admitted at once after a quiet spell (default: the
    /// limit's `permits`).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// For a keyed limiter: how many keys to keep before forgetting those
    /// whose state is the same as a fresh key's (default 10,000). Memory is
    /// bounded by the number of keys active within one burst's refill time.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Adds a listener of the limiter's events.
    pub fn on_event(mut self, listener: impl Listener<RateLimitEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    fn validated(&self) -> Result<Rate, ConfigError> {
        let rate = match &self.rate {
            Some(rate) => rate.clone()?,
            None => {
                return Err(ConfigError::new(
                    "rate limiter",
                    "limit",
                    "is required (calls per period)",
                ))
            }
        };
        match self.burst {
            Some(burst) => rate.burst(burst),
            None => Ok(rate),
        }
    }

    /// A limiter for every call.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        let rate = self.validated()?;
        Ok(RateLimiter {
            inner: Arc::new(Direct {
                limiter: governor::RateLimiter::new(
                    rate.quota(),
                    InMemoryState::default(),
                    TokioClock::new(),
                ),
                rate,
                name: self.name,
                listeners: self.listeners,
            }),
        })
    }

    /// A limiter with one budget per key.
    pub fn build_keyed<K>(self) -> Result<KeyedRateLimiter<K>, ConfigError>
    where
        K: Hash + Eq + Clone,
    {
        let rate = self.validated()?;
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                "rate limiter",
                "max_keys",
                "must be at least 1, got 0",
            ));
        }
        Ok(KeyedRateLimiter {
            inner: Arc::new(Keyed {
                limiter: governor::RateLimiter::new(
                    rate.quota(),
                    HashMapStateStore::default(),
                    TokioClock::new(),
                ),
                rate,
                name: self.name,
                listeners: self.listeners,
                max_keys: self.max_keys,
                calls: AtomicU64::new(0),
            }),
        })
    }
}

/// A rate limit shared by every call through it (and by every clone): GCRA
/// on tokio's clock.
///
/// Cheap to clone (one `Arc`); `admit` is one compare-and-swap on an atomic,
/// no lock, no allocation.
///
/// ```
/// use bulwark::ratelimit::RateLimiter;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = RateLimiter::builder()
///     .name("payments")
///     .limit(500, Duration::from_secs(1))
///     .burst(50)
///     .build()
///     .unwrap();
/// assert_eq!(limiter.rate().interval(), Duration::from_millis(2));
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Direct>,
}

struct Direct {
    limiter: governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>,
    rate: Rate,
    name: Option<Arc<str>>,
    listeners: Listeners<RateLimitEvent>,
}

impl RateLimiter {
    /// A builder; [`limit`](RateLimiterBuilder::limit) is required.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            name: None,
            rate: None,
            burst: None,
            max_keys: 10_000,
            listeners: Listeners::new(),
        }
    }

    /// A limiter of `permits` calls per `per`.
    pub fn new(permits: u32, per: Duration) -> Result<Self, ConfigError> {
        Self::builder().limit(permits, per).build()
    }

    /// The limiter's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The limit.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// Admits `n` calls at once, or none: for a caller that takes tokens in
    /// batches (`bulwark-fleet`'s lease does).
    pub fn admit_n(&self, n: u32) -> Result<(), RateLimited> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        let inner = &*self.inner;
        match inner.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                Err(self.refused(not_until.wait_time_from(inner.limiter.clock().now())))
            }
            Err(_) => Err(self.refused(inner.rate.per)),
        }
    }

    #[cold]
    fn refused(&self, retry_after: Duration) -> RateLimited {
        refused(&self.inner.name, &self.inner.listeners, retry_after)
    }
}

#[inline(never)]
fn refused(
    name: &Option<Arc<str>>,
    listeners: &Listeners<RateLimitEvent>,
    retry_after: Duration,
) -> RateLimited {
    tracing::trace!(
        limiter = name.as_deref(),
        ?retry_after,
        "rate limiter refused a call"
    );
    listeners.emit(|| RateLimitEvent::Refused {
        name: name.clone(),
        retry_after,
    });
    let error = RateLimited::new(retry_after);
    match name {
        Some(name) => error.with_name(name.clone()),
        None => error,
    }
}

impl Admit for RateLimiter {
    #[inline]
    fn admit(&self) -> Result<(), RateLimited> {
        let inner = &*self.inner;
        match inner.limiter.check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                Err(self.refused(not_until.wait_time_from(inner.limiter.clock().now())))
            }
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.name)
            .field("rate", &self.inner.rate)
            .finish_non_exhaustive()
    }
}

/// One rate limit per key (per user, per tenant, per host): GCRA on tokio's
/// clock, the keys in a map (one short lock per call) bounded by
/// [`max_keys`](RateLimiterBuilder::max_keys).
///
/// ```
/// use bulwark::ratelimit::{AdmitKey, RateLimiter};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let per_tenant = RateLimiter::builder()
///     .limit(10, Duration::from_secs(1))
///     .build_keyed::<String>()
///     .unwrap();
/// assert!(per_tenant.admit_key(&"acme".to_string()).is_ok());
/// # }
/// ```
pub struct KeyedRateLimiter<K: Hash + Eq + Clone> {
    inner: Arc<Keyed<K>>,
}

struct Keyed<K: Hash + Eq + Clone> {
    limiter: governor::RateLimiter<K, HashMapStateStore<K>, TokioClock, NoOpMiddleware<Duration>>,
    rate: Rate,
    name: Option<Arc<str>>,
    listeners: Listeners<RateLimitEvent>,
    max_keys: usize,
    calls: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// The limiter's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The limit of each key.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// How many keys are held now.
    pub fn len(&self) -> usize {
        self.inner.limiter.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.inner.limiter.is_empty()
    }

    /// Forgets every key whose state is the same as a fresh key's (done by
    /// itself every 1,024 calls once more than `max_keys` are held).
    pub fn forget_idle(&self) {
        self.inner.limiter.retain_recent();
        self.inner.limiter.shrink_to_fit();
    }
}

impl<K: Hash + Eq + Clone> AdmitKey<K> for KeyedRateLimiter<K> {
    #[inline]
    fn admit_key(&self, key: &K) -> Result<(), RateLimited> {
        let inner = &*self.inner;
        if inner.calls.fetch_add(1, Ordering::Relaxed) % 1024 == 1023
            && inner.limiter.len() > inner.max_keys
        {
            self.forget_idle();
        }
        match inner.limiter.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(refused(
                &inner.name,
                &inner.listeners,
                not_until.wait_time_from(inner.limiter.clock().now()),
            )),
        }
    }
}

impl<K: Hash + Eq + Clone> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        KeyedRateLimiter {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("name", &self.inner.name)
            .field("rate", &self.inner.rate)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}
