//! Time, always through tokio's clock.
//!
//! Every Bulwark layer reads time with [`Instant::now`] from `tokio::time`,
//! never `std::time::Instant`, so tests can run in paused, virtual time
//! (`#[tokio::test(start_paused = true)]`) and be exact.
//!
//! [`TimeBase`] turns instants into nanosecond offsets that fit an atomic,
//! for state read on hot paths without a lock.
//!
//! ```
//! use bulwark_core::clock::{Instant, TimeBase};
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
        self.start + Duration::from_nanos(nanos)
    }
}

impl Default for TimeBase {
    fn default() -> Self {
        Self::new()
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX`.
#[inline]
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
