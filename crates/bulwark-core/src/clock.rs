//! Time, always through tokio's clock.
//!
//! Every Bulwark layer reads time with [`Instant::now`] from `tokio::time`,
//! never `std::time::Instant`, so tests can run in paused, virtual time
//! (`#[tokio::test(start_paused = true)]`) and be exact.
//!
//! [`TimeBase`] turns instants into nanosecond offsets that fit an atomic,
//! for state read on hot paths without a lock.
//!
//! [`saturating_add`] is how every layer turns a configured duration into a
//! deadline: `Instant + Duration` panics when the sum does not fit (a limit
//! of [`Duration::MAX`], a pushback of ten years), so a duration past
//! [`FAR_FUTURE`] is taken to mean "never" and capped there instead.
//!
//! ```
//! use bulwark::clock::{Instant, TimeBase};
//! use std::time::Duration;
//!
//! let base = TimeBase::new();
//! let later = base.start() + Duration::from_millis(5);
//! assert_eq!(base.nanos(later), 5_000_000);
//! assert_eq!(base.instant(5_000_000), later);
//! ```

use std::time::Duration;

pub use tokio::time::Instant;

/// A fixed starting instant, to store later instants as `u64` nanoseconds
/// since it (enough for 584 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBase {
    start: Instant,
}

impl TimeBase {
    /// A base at the current time of tokio's clock.
    pub fn new() -> Self {
        TimeBase {
            start: Instant::now(),
        }
    }

    /// The base instant.
    pub const fn start(&self) -> Instant {
        self.start
    }

    /// Nanoseconds from the base to `t` (0 when `t` is earlier, saturating at
    /// `u64::MAX`).
    #[inline]
    pub fn nanos(&self, t: Instant) -> u64 {
        duration_nanos(t.saturating_duration_since(self.start))
    }

    /// Nanoseconds from the base to now.
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        self.nanos(Instant::now())
    }

    /// The instant `nanos` after the base.
    #[inline]
    pub fn instant(&self, nanos: u64) -> Instant {
        let d = Duration::from_nanos(nanos);
        self.start
            .checked_add(d)
            .unwrap_or_else(|| saturating_add(self.start, d))
    }
}

impl Default for TimeBase {
    fn default() -> Self {
        Self::new()
    }
}

/// How far ahead "never" is: 100 years, longer than any process lives, and
/// short enough that `Instant + FAR_FUTURE` fits on every platform tokio
/// supports and that a [`TimeBase`] (584 years) still holds the result.
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, never panicking: a `d` beyond [`FAR_FUTURE`] (up to
/// [`Duration::MAX`]) is capped at [`FAR_FUTURE`], i.e. "never".
///
/// ```
/// use bulwark::clock::{saturating_add, Instant, FAR_FUTURE};
/// use std::time::Duration;
///
/// let now = Instant::now();
/// assert_eq!(saturating_add(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// assert_eq!(saturating_add(now, Duration::MAX), now + FAR_FUTURE);
/// ```
#[inline]
pub fn saturating_add(at: Instant, d: Duration) -> Instant {
    // `at + FAR_FUTURE` fits wherever tokio runs (tokio itself schedules
    // "never" 30 years ahead); should it not, `at` keeps this from panicking.
    at.checked_add(d.min(FAR_FUTURE)).unwrap_or(at)
}

/// A duration in whole nanoseconds, saturating at `u64::MAX`.
#[inline]
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
