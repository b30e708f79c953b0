//! Retry budgets: how many retries (and hedges) the recent traffic allows.
//!
//! A retry budget keeps retries from turning a partial outage into a storm. A
//! [`RetryBudget`] is a cheap handle (one `Arc`): every clone of a retry
//! layer's service shares the layer's budget, and several layers may be given
//! the same budget so they draw on one pool.
//!
//! Two kinds are offered:
//!
//! - [`RetryBudget::ratio`] (Finagle, Envoy, linkerd): over a sliding time
//!   window, retries may add at most a fraction of the requests seen, plus a
//!   small floor so that a quiet client whose upstream is healthy can still
//!   retry. Every request deposits `ratio` of a retry; every retry withdraws
//!   one. The arithmetic is exact integer arithmetic in millionths of a
//!   retry, so a ratio of 0.3 allows 3 retries per 10 requests, not 3.33
//!   (the rounding of `1 / ratio` in tower's `TpsBudget`, tower issue #857,
//!   is not repeated).
//! - [`RetryBudget::token_bucket`] (gRPC retry throttling): a bucket of
//!   `max_tokens` tokens; every failed attempt takes one, every successful one
//!   gives back `token_ratio`; retries and hedges are allowed only while the
//!   bucket is more than half full.
//!
//! Retries are paid for when they are sent: a retry that is scheduled and
//! then abandoned (its caller gave up during the backoff) costs nothing.
//!
//! ```
//! use bulwark::Outcome;
//! use bulwark::retry::budget::RetryBudget;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 20% of the requests over 10 seconds, plus a floor of 1 retry per second.
//! let budget = RetryBudget::ratio(0.2, 1, Duration::from_secs(10)).unwrap();
//! assert_eq!(budget.available(), 1); // the floor: one second's worth
//! for _ in 0..100 {
//!     budget.deposit();
//! }
//! assert_eq!(budget.available(), 21); // + 20% of 100 requests
//! assert!(budget.withdraw());
//! assert_eq!(budget.available(), 20);
//! # }
//! ```
//!
//! # The floor, and the bound on amplification
//!
//! The ratio alone bounds retries at any volume where it matters, but it
//! would leave a quiet client (one request a minute) no retry at all. The
//! floor fills that gap without becoming a storm of its own:
//!
//! - it holds at most `min_per_sec` retries (one second's worth), full when
//!   the budget is made;
//! - it refills at `min_per_sec` per second, but only for time in which some
//!   attempt succeeded ([`RetryBudget::record`] with
//!   [`Outcome::Success`]): the upstream is alive, a retry of a one-off
//!   failure is worth it;
//! - it is used only when the ratio has nothing left.
//!
//! So against an upstream that never succeeds, the floor pays for at most
//! `min_per_sec` retries in all, however long the outage lasts, and the
//! ratio for the rest. At a steady `r` requests per second, each request
//! counts for the window `W` and each retry for `W + W/10` (see below), so
//! the ratio pays for at most `ratio × r × W / (W + W/10)` retries per second.
//! Over an outage of `T` seconds, the attempts per call are at most
//!
//! ```text
//! 1 + ratio × 10/11 + min_per_sec / (r × T)      (and never more than max_attempts)
//! ```
//!
//! With the default budget (`ratio` 0.2, floor 10/s) over 60 s of a dead
//! upstream: 1.35 attempts per call at 1 request/s, 1.22 at 5/s, 1.20 at
//! 10/s, tending to 1.18 at any rate as the outage lasts (the floor used to
//! be `min_per_sec × W` retries available at all times: 2.2 attempts per call
//! for a quiet client, with 3 attempts allowed). The crate's tests measure
//! these figures.
//!
//! # Window accuracy
//!
//! The window is kept in ten slots. Requests are counted with one relaxed
//! atomic add and no clock read; they are assigned to a slot when the budget
//! next reads the clock (on every withdrawal and every 64th request), and
//! always to the slot of the *previous* reading. Both approximations make the
//! budget stricter, never looser: a request is never counted for longer than
//! the window, and a retry always for at least the window.

use bulwark_core::clock::{duration_nanos, TimeBase};
use bulwark_core::error::ConfigError;
use bulwark_core::Outcome;
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One retry, in the budget's fixed-point unit (millionths).
const UNIT: u64 = 1_000_000;
/// Slots in the sliding window.
const SLOTS: usize = 10;
/// Requests between two clock readings made for bookkeeping alone.
const TICK_EVERY: u64 = 64;

/// A pool of retries shared by every service that holds a clone of it.
///
/// See the [module documentation](self).
#[derive(Clone)]
pub struct RetryBudget {
    kind: Arc<Kind>,
}

// Allocated once per budget, behind an `Arc`: the size difference is moot.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Unlimited,
    Ratio(RatioBudget),
    Tokens(TokenBucket),
    Policy(Arc<dyn crate::budget_policy::BudgetPolicy>),
}

pub use crate::budget_policy::BudgetPolicy;

impl RetryBudget {
    /// A sliding-window budget: over the last `window`, retries may be at most
    /// `ratio` × requests, plus a floor of at most `min_per_sec` retries,
    /// refilled at `min_per_sec` per second while attempts succeed (see
    /// [the floor](self#the-floor-and-the-bound-on-amplification)).
    /// `min_per_sec` of 0 means no floor.
    ///
    /// `ratio` is kept to the nearest millionth.
    ///
    /// ```
    /// use bulwark::Outcome;
    /// use bulwark::retry::budget::RetryBudget;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let budget = RetryBudget::ratio(0.0, 2, Duration::from_secs(10)).unwrap();
    /// assert!(budget.withdraw() && budget.withdraw());
    /// assert!(!budget.withdraw());
    /// // A second passes with a success: the floor is full again.
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// budget.record(Outcome::Success);
    /// assert_eq!(budget.available(), 2);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// When `ratio` is negative, not finite or above 1000, or `window` is
    /// shorter than 10 ms or longer than an hour.
    pub fn ratio(ratio: f64, min_per_sec: u32, window: Duration) -> Result<Self, ConfigError> {
        if !(ratio.is_finite() && (0.0..=1000.0).contains(&ratio)) {
            return Err(ConfigError::new(
                "retry budget",
                "ratio",
                format!("must be between 0 and 1000, got {ratio}"),
            ));
        }
        if !(window >= Duration::from_millis(10) && window <= Duration::from_secs(3600)) {
            return Err(ConfigError::new(
                "retry budget",
                "window",
                format!("must be between 10 ms and 1 hour, got {window:?}"),
            ));
        }
        Ok(Self::ratio_unchecked(ratio, min_per_sec, window))
    }

    fn ratio_unchecked(ratio: f64, min_per_sec: u32, window: Duration) -> Self {
        let ratio_ppm = (ratio * UNIT as f64).round() as u64;
        let floor_per_sec = u64::from(min_per_sec) * UNIT;
        let slot_nanos = (duration_nanos(window) / SLOTS as u64).max(1);
        RetryBudget {
            kind: Arc::new(Kind::Ratio(RatioBudget {
                ratio_ppm,
                floor_per_sec,
                floor_max: floor_per_sec,
                slot_nanos,
                pending: AtomicU64::new(0),
                succeeded: AtomicBool::new(false),
                base: TimeBase::new(),
                window: Mutex::new(Window {
                    current: 0,
                    deposits: [0; SLOTS],
                    withdrawals: [0; SLOTS + 1],
                    // A new client may retry at once, within the floor.
                    floor: floor_per_sec,
                    floor_at: 0,
                }),
            })),
        }
    }

    /// gRPC retry throttling: a bucket of `max_tokens` tokens, full at first;
    /// each failed or throttled attempt removes one token, each successful
    /// attempt adds `token_ratio` (up to `max_tokens`); retries and hedges are
    /// allowed only while more than `max_tokens / 2` tokens remain.
    ///
    /// Tokens are kept to the thousandth, as gRPC specifies.
    ///
    /// # Errors
    ///
    /// When `max_tokens` is 0 or above 1000, or `token_ratio` is not in
    /// `(0, max_tokens]`.
    pub fn token_bucket(max_tokens: u32, token_ratio: f64) -> Result<Self, ConfigError> {
        if !(1..=1000).contains(&max_tokens) {
            return Err(ConfigError::new(
                "retry budget",
                "max_tokens",
                format!("must be between 1 and 1000, got {max_tokens}"),
            ));
        }
        if !(token_ratio.is_finite() && token_ratio > 0.0 && token_ratio <= f64::from(max_tokens)) {
            return Err(ConfigError::new(
                "retry budget",
                "token_ratio",
                format!("must be in (0, max_tokens], got {token_ratio}"),
            ));
        }
        let max = u64::from(max_tokens) * 1000;
        Ok(RetryBudget {
            kind: Arc::new(Kind::Tokens(TokenBucket {
                max,
                ratio: ((token_ratio * 1000.0).round() as u64).max(1),
                tokens: AtomicU64::new(max),
            })),
        })
    }

    /// The hedge layer's default: 10% of requests plus 1 per second over
    /// 10 s.
    pub(crate) fn hedge_default() -> Self {
        Self::ratio_unchecked(0.1, 1, Duration::from_secs(10))
    }

    /// No limit: every retry and hedge is allowed. Use with care.
    pub fn unlimited() -> Self {
        RetryBudget {
            kind: Arc::new(Kind::Unlimited),
        }
    }

    /// Records a new request (not a retry). Called by the layers once per
    /// call; call it yourself only when driving a budget by hand.
    #[inline]
    pub fn deposit(&self) {
        match &*self.kind {
            Kind::Ratio(r) => r.deposit(),
            Kind::Policy(p) => p.deposit(),
            _ => {}
        }
    }

    /// Takes one retry (or hedge) from the budget; `false` when none is left.
    ///
    /// The layers call it when a retry is sent, not when it is scheduled.
    pub fn withdraw(&self) -> bool {
        match &*self.kind {
            Kind::Unlimited => true,
            Kind::Ratio(r) => r.withdraw(),
            Kind::Tokens(t) => t.allows(),
            Kind::Policy(p) => p.withdraw(),
        }
    }

    /// Whether [`withdraw`](Self::withdraw) would succeed now, without
    /// taking anything.
    pub(crate) fn would_allow(&self) -> bool {
        match &*self.kind {
            Kind::Unlimited => true,
            Kind::Ratio(r) => r.would_allow(),
            Kind::Tokens(t) => t.allows(),
            Kind::Policy(p) => p.would_allow(),
        }
    }

    /// Records how an attempt ended: a success lets a ratio budget's floor
    /// refill; the gRPC token bucket counts every outcome. The layers call
    /// it for every attempt; call it yourself only when driving a budget by
    /// hand.
    #[inline]
    pub fn record(&self, outcome: Outcome) {
        match &*self.kind {
            Kind::Unlimited => {}
            Kind::Ratio(r) => {
                if outcome == Outcome::Success {
                    r.succeeded();
                }
            }
            Kind::Tokens(t) => t.record(outcome),
            Kind::Policy(p) => p.record(outcome),
        }
    }

    /// How many retries the budget would allow right now (`u64::MAX` when
    /// unlimited). For a token bucket: how many failures it takes to stop
    /// retries.
    pub fn available(&self) -> u64 {
        match &*self.kind {
            Kind::Unlimited => u64::MAX,
            Kind::Ratio(r) => r.available(),
            Kind::Policy(p) => p.available(),
            Kind::Tokens(t) => {
                let tokens = t.tokens.load(Ordering::Relaxed);
                let half = t.max / 2;
                // Retries are allowed while tokens > half.
                tokens.saturating_sub(half).div_ceil(1000)
            }
        }
    }

    /// Whether two handles share the same pool.
    pub fn same_as(&self, other: &RetryBudget) -> bool {
        Arc::ptr_eq(&self.kind, &other.kind)
    }
}

impl RetryBudget {
    pub(crate) fn from_policy_arc(policy: Arc<dyn BudgetPolicy>) -> Self {
        RetryBudget {
            kind: Arc::new(Kind::Policy(policy)),
        }
    }
}

impl Default for RetryBudget {
    /// 20% of requests over 10 seconds (Finagle's and linkerd's ratio), plus
    /// a floor of 10 retries, refilled at 10 per second while attempts
    /// succeed.
    fn default() -> Self {
        RetryBudget::ratio_unchecked(0.2, 10, Duration::from_secs(10))
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            Kind::Unlimited => f.write_str("RetryBudget::Unlimited"),
            Kind::Ratio(r) => f
                .debug_struct("RetryBudget::Ratio")
                .field("ratio_ppm", &r.ratio_ppm)
                .field("window", &Duration::from_nanos(r.slot_nanos * SLOTS as u64))
                .field("available", &r.available())
                .finish(),
            Kind::Tokens(t) => f
                .debug_struct("RetryBudget::TokenBucket")
                .field("max_tokens", &(t.max as f64 / 1000.0))
                .field(
                    "tokens",
                    &(t.tokens.load(Ordering::Relaxed) as f64 / 1000.0),
                )
                .finish(),
            Kind::Policy(p) => f
                .debug_struct("RetryBudget::Policy")
                .field("available", &p.available())
                .finish(),
        }
    }
}

struct RatioBudget {
    /// Millionths of a retry deposited per request.
    ratio_ppm: u64,
    /// Millionths of a floor retry earned per second while attempts succeed.
    floor_per_sec: u64,
    /// The most floor retries kept, in millionths: one second's worth.
    floor_max: u64,
    slot_nanos: u64,
    /// Requests not yet assigned to a slot.
    pending: AtomicU64,
    /// Whether an attempt succeeded since the floor was last refilled.
    succeeded: AtomicBool,
    base: TimeBase,
    window: Mutex<Window>,
}

struct Window {
    /// Absolute number of the slot of the last clock reading.
    current: u64,
    /// Requests per slot, for the current slot and the 9 before it: a
    /// request counts for at most the window.
    deposits: [u64; SLOTS],
    /// Retries paid by the ratio, per slot, for the current slot and the 10
    /// before it: a retry counts for at least the window.
    withdrawals: [u64; SLOTS + 1],
    /// Floor retries left, in millionths.
    floor: u64,
    /// When the floor was last refilled (nanoseconds since `base`).
    floor_at: u64,
}

impl RatioBudget {
    #[inline]
    fn deposit(&self) {
        let before = self.pending.fetch_add(1, Ordering::Relaxed);
        if before % TICK_EVERY == TICK_EVERY - 1 {
            // Bookkeeping only: skip it if someone else holds the lock.
            if let Some(mut window) = self.window.try_lock() {
                self.advance(&mut window);
            }
        }
    }

    #[inline]
    fn succeeded(&self) {
        // The common case, the flag already set, is one load and no write.
        if !self.succeeded.load(Ordering::Relaxed) {
            self.succeeded.store(true, Ordering::Relaxed);
        }
    }

    /// Assigns pending requests to the slot of the last reading, then moves
    /// the window to now, and refills the floor for the time since the last
    /// reading if an attempt succeeded in it.
    fn advance(&self, w: &mut Window) {
        let pending = self.pending.swap(0, Ordering::Relaxed);
        let i = (w.current % SLOTS as u64) as usize;
        w.deposits[i] = w.deposits[i].saturating_add(pending);
        let now_nanos = self.base.now_nanos();
        let now = now_nanos / self.slot_nanos;
        let steps = now.saturating_sub(w.current).min(SLOTS as u64 + 1);
        for s in 1..=steps {
            let slot = w.current + s;
            w.deposits[(slot % SLOTS as u64) as usize] = 0;
            w.withdrawals[(slot % (SLOTS as u64 + 1)) as usize] = 0;
        }
        w.current = w.current.max(now);
        if self.floor_max > 0 {
            let elapsed = now_nanos.saturating_sub(w.floor_at);
            if self.succeeded.swap(false, Ordering::Relaxed) {
                // per-second × ns / 1e9, in u128: no overflow.
                let earned = u128::from(self.floor_per_sec) * u128::from(elapsed) / 1_000_000_000;
                let earned = u64::try_from(earned).unwrap_or(u64::MAX);
                w.floor = w.floor.saturating_add(earned).min(self.floor_max);
            }
            w.floor_at = w.floor_at.max(now_nanos);
        }
    }

    /// What the ratio allows now, in millionths (never negative).
    fn ratio_balance(&self, w: &Window) -> u64 {
        let deposits: u64 = w.deposits.iter().sum();
        let withdrawals: u64 = w.withdrawals.iter().sum();
        let balance = i128::from(self.ratio_ppm) * i128::from(deposits)
            - i128::from(UNIT) * i128::from(withdrawals);
        u64::try_from(balance.max(0)).unwrap_or(u64::MAX)
    }

    fn withdraw(&self) -> bool {
        let mut w = self.window.lock();
        self.advance(&mut w);
        // The ratio pays first; the floor is kept for when it cannot.
        if self.ratio_balance(&w) >= UNIT {
            let i = (w.current % (SLOTS as u64 + 1)) as usize;
            w.withdrawals[i] += 1;
            true
        } else if w.floor >= UNIT {
            w.floor -= UNIT;
            true
        } else {
            false
        }
    }

    fn would_allow(&self) -> bool {
        let mut w = self.window.lock();
        self.advance(&mut w);
        self.ratio_balance(&w) >= UNIT || w.floor >= UNIT
    }

    fn available(&self) -> u64 {
        let mut w = self.window.lock();
        self.advance(&mut w);
        (self.ratio_balance(&w) / UNIT).saturating_add(w.floor / UNIT)
    }
}

struct TokenBucket {
    /// Capacity, in thousandths of a token.
    max: u64,
    /// Thousandths of a token given back per success.
    ratio: u64,
    tokens: AtomicU64,
}

impl TokenBucket {
    #[inline]
    fn record(&self, outcome: Outcome) {
        match outcome {
            Outcome::Success => {
                // The common case, a full bucket, costs one load.
                if self.tokens.load(Ordering::Relaxed) < self.max {
                    let _ = self
                        .tokens
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                            Some((t + self.ratio).min(self.max))
                        });
                }
            }
            Outcome::Failure | Outcome::Throttled => {
                let _ = self
                    .tokens
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                        Some(t.saturating_sub(1000))
                    });
            }
            Outcome::Rejected | Outcome::Ignored => {}
        }
    }

    fn allows(&self) -> bool {
        self.tokens.load(Ordering::Relaxed) > self.max / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_arithmetic_is_exact() {
        // 0.3 must allow exactly 3 retries per 10 requests (tower #857 would
        // allow one per 3 requests).
        let b = RetryBudget::ratio(0.3, 0, secs(10)).unwrap();
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.available(), 3);
        assert!(b.withdraw() && b.withdraw() && b.withdraw());
        assert!(!b.withdraw());
        // 0.1: 9 requests are not enough for one retry, 10 are.
        let b = RetryBudget::ratio(0.1, 0, secs(10)).unwrap();
        for _ in 0..9 {
            b.deposit();
        }
        assert!(!b.withdraw());
        b.deposit();
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn floor_holds_one_second_and_refills_only_while_attempts_succeed() {
        let b = RetryBudget::ratio(0.0, 2, secs(5)).unwrap();
        // Full when made: one second's worth, not min_per_sec × window.
        assert_eq!(b.available(), 2);
        assert!(b.withdraw() && b.withdraw());
        assert!(!b.withdraw());
        // Time alone refills nothing: the upstream may be dead.
        advance(secs(60)).await;
        b.record(Outcome::Failure);
        b.record(Outcome::Throttled);
        assert_eq!(b.available(), 0);
        // Time with a success refills at 2/s, up to 2.
        b.record(Outcome::Success);
        advance(Duration::from_millis(500)).await;
        assert_eq!(b.available(), 1);
        assert!(b.withdraw());
        assert_eq!(b.available(), 0, "the flag was spent by the last reading");
        b.record(Outcome::Success);
        advance(secs(30)).await;
        assert_eq!(b.available(), 2, "capped at one second's worth");
    }

    #[tokio::test(start_paused = true)]
    async fn the_ratio_pays_before_the_floor() {
        let b = RetryBudget::ratio(0.5, 1, secs(10)).unwrap();
        for _ in 0..4 {
            b.deposit();
        }
        assert_eq!(b.available(), 3); // 2 from the ratio, 1 floor
        assert!(b.withdraw() && b.withdraw());
        assert_eq!(b.available(), 1, "the floor is left");
        assert!(b.withdraw());
        assert!(!b.withdraw());
        // No floor at all.
        let none = RetryBudget::ratio(0.0, 0, secs(10)).unwrap();
        none.record(Outcome::Success);
        advance(secs(10)).await;
        assert!(!none.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_within_the_window() {
        let b = RetryBudget::ratio(1.0, 0, secs(10)).unwrap();
        for _ in 0..5 {
            b.deposit();
        }
        assert_eq!(b.available(), 5);
        advance(Duration::from_millis(9_999)).await;
        assert_eq!(b.available(), 5);
        advance(Duration::from_millis(1)).await;
        assert_eq!(b.available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_between_readings_count_from_the_previous_reading() {
        let b = RetryBudget::ratio(1.0, 0, secs(10)).unwrap();
        assert_eq!(b.available(), 0); // a reading at t = 0
        advance(secs(9)).await;
        b.deposit(); // made at 9 s, no reading: assigned to the slot of t = 0
        advance(secs(1)).await;
        assert_eq!(b.available(), 0, "stricter, never looser");
    }

    #[tokio::test(start_paused = true)]
    async fn every_64th_request_reads_the_clock() {
        let b = RetryBudget::ratio(1.0, 0, secs(10)).unwrap();
        assert_eq!(b.available(), 0); // a reading at t = 0
        advance(secs(9)).await;
        // The 64th request reads the clock: these 64 go to the slot of t = 0,
        // and the window moves to 9 s...
        for _ in 0..64 {
            b.deposit();
        }
        // ...so the next 64 go to the slot of 9 s.
        for _ in 0..64 {
            b.deposit();
        }
        advance(secs(1)).await;
        assert_eq!(b.available(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_above_one_and_clones_share() {
        let b = RetryBudget::ratio(1.5, 0, secs(1)).unwrap();
        let c = b.clone();
        assert!(b.same_as(&c));
        b.deposit();
        b.deposit();
        assert_eq!(c.available(), 3);
        assert!(!b.same_as(&RetryBudget::default()));
    }

    #[test]
    fn token_bucket_follows_grpc() {
        let b = RetryBudget::token_bucket(10, 0.1).unwrap();
        assert!(b.withdraw());
        // 10 tokens: retries allowed while > 5 remain.
        for _ in 0..4 {
            b.record(Outcome::Failure);
        }
        assert!(b.withdraw()); // 6 tokens
        b.record(Outcome::Throttled); // 5 tokens
        assert!(!b.withdraw());
        b.record(Outcome::Rejected);
        b.record(Outcome::Ignored);
        assert!(!b.withdraw());
        b.record(Outcome::Success); // 5.1
        assert!(b.withdraw());
        for _ in 0..100 {
            b.record(Outcome::Success);
        }
        assert_eq!(b.available(), 5);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let field = |r: Result<RetryBudget, ConfigError>| r.expect_err("rejected").field();
        assert_eq!(field(RetryBudget::ratio(-0.1, 0, secs(1))), "ratio");
        assert_eq!(field(RetryBudget::ratio(f64::NAN, 0, secs(1))), "ratio");
        assert_eq!(
            field(RetryBudget::ratio(0.2, 0, Duration::from_millis(1))),
            "window"
        );
        assert_eq!(field(RetryBudget::ratio(0.2, 0, secs(7200))), "window");
        assert_eq!(field(RetryBudget::token_bucket(0, 0.1)), "max_tokens");
        assert_eq!(field(RetryBudget::token_bucket(10, 0.0)), "token_ratio");
        assert_eq!(field(RetryBudget::token_bucket(10, 11.0)), "token_ratio");
    }

    #[test]
    fn unlimited() {
        let b = RetryBudget::unlimited();
        assert!((0..1000).all(|_| b.withdraw()));
        assert_eq!(b.available(), u64::MAX);
    }
}
