//! Sliding windows of recent outcomes: O(1) per call, fixed memory.

use std::time::Duration;

/// Counts in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Counts {
    #[inline]
    fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failures += u32::from(failed);
        self.slow += u32::from(slow);
    }
}

/// The last `N` calls, as a ring of 2-bit records.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[u8]>,
    next: usize,
    counts: Counts,
}

const FAILED: u8 = 0b01;
const SLOW: u8 = 0b10;

impl CountWindow {
    pub(crate) fn new(size: usize) -> Self {
        CountWindow {
            slots: vec![0; size.max(1)].into_boxed_slice(),
            next: 0,
            counts: Counts::default(),
        }
    }

    /// Whether the window is full and every call in it succeeded quickly:
    /// then one more such call changes nothing.
    pub(crate) fn is_full_of_successes(&self) -> bool {
        self.counts.calls as usize == self.slots.len()
            && self.counts.failures == 0
            && self.counts.slow == 0
    }

    #[inline]
    pub(crate) fn record(&mut self, failed: bool, slow: bool) -> Counts {
        let size = self.slots.len();
        if self.counts.calls as usize == size {
            // Full: the oldest record leaves as the new one comes in.
            let old = self.slots[self.next];
            self.counts.failures -= u32::from(old & FAILED != 0);
            self.counts.slow -= u32::from(old & SLOW != 0);
        } else {
            self.counts.calls += 1;
        }
        let bits = (u8::from(failed) * FAILED) | (u8::from(slow) * SLOW);
        self.slots[self.next] = bits;
        self.counts.failures += u32::from(failed);
        self.counts.slow += u32::from(slow);
        self.next += 1;
        if self.next == size {
            self.next = 0;
        }
        self.counts
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    pub(crate) fn clear(&mut self) {
        self.slots.fill(0);
        self.next = 0;
        self.counts = Counts::default();
    }
}

/// The calls of the last `length` of time, in `buckets` equal buckets. A
/// bucket leaves the window as a whole when its time has passed.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    /// Empty until the first call is recorded (an idle breaker of a keyed
    /// set carries no buckets).
    buckets: Box<[Counts]>,
    /// How many buckets, once made.
    len: u32,
    bucket_nanos: u64,
    /// The absolute index (time / bucket length) of the newest bucket.
    head: u64,
    /// When the bucket after `head` starts (saturating): before then a call
    /// falls in the newest bucket, found without a division.
    next_at: u64,
    counts: Counts,
}

impl TimeWindow {
    pub(crate) fn new(length: Duration, buckets: u32) -> Self {
        let buckets = buckets.max(1);
        let nanos = u64::try_from(length.as_nanos()).unwrap_or(u64::MAX);
        let bucket_nanos = (nanos / u64::from(buckets)).max(1);
        TimeWindow {
            buckets: Box::default(),
            len: buckets,
            bucket_nanos,
            head: 0,
            next_at: bucket_nanos,
            counts: Counts::default(),
        }
    }

    /// Moves the window to `now` (nanoseconds since the breaker's time base),
    /// dropping the buckets that fell out. At most one pass over the buckets,
    /// however long the gap.
    #[inline]
    pub(crate) fn advance(&mut self, now: u64) {
        if now < self.next_at {
            // Still in the newest bucket.
            return;
        }
        let epoch = now / self.bucket_nanos;
        if epoch <= self.head {
            return;
        }
        self.next_at = (epoch + 1).saturating_mul(self.bucket_nanos);
        if self.buckets.is_empty() {
            // Nothing recorded yet: nothing to drop.
            self.head = epoch;
            return;
        }
        let n = self.buckets.len() as u64;
        let steps = (epoch - self.head).min(n);
        for i in 1..=steps {
            let idx = ((self.head + i) % n) as usize;
            let gone = std::mem::take(&mut self.buckets[idx]);
            self.counts.calls -= gone.calls;
            self.counts.failures -= gone.failures;
            self.counts.slow -= gone.slow;
        }
        self.head = epoch;
    }

    #[inline]
    pub(crate) fn record(&mut self, now: u64, failed: bool, slow: bool) -> Counts {
        self.advance(now);
        if self.buckets.is_empty() {
            self.buckets = vec![Counts::default(); self.len as usize].into_boxed_slice();
        }
        let idx = (self.head % self.buckets.len() as u64) as usize;
        self.buckets[idx].add(failed, slow);
        self.counts.add(failed, slow);
        self.counts
    }

    pub(crate) fn counts(&mut self, now: u64) -> Counts {
        self.advance(now);
        self.counts
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.fill(Counts::default());
        self.counts = Counts::default();
    }
}

/// Either window.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Records one call and returns the counts after it.
    #[inline]
    pub(crate) fn record(&mut self, now: u64, failed: bool, slow: bool) -> Counts {
        match self {
            Window::Count(w) => w.record(failed, slow),
            Window::Time(w) => w.record(now, failed, slow),
        }
    }

    pub(crate) fn counts(&mut self, now: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now),
        }
    }

    pub(crate) fn is_full_of_successes(&self) -> bool {
        match self {
            Window::Count(w) => w.is_full_of_successes(),
            // Successes always count in a time window (they move the rates).
            Window::Time(_) => false,
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn count_window_slides() {
        let mut w = CountWindow::new(10);
        for _ in 0..1000 {
            w.record(false, false);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 10,
                failures: 0,
                slow: 0
            }
        );
        for _ in 0..5 {
            w.record(true, false);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 10,
                failures: 5,
                slow: 0
            }
        );
        for _ in 0..10 {
            w.record(false, true);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 10,
                failures: 0,
                slow: 10
            }
        );
    }

    #[test]
    fn time_window_drops_whole_buckets() {
        let s = 1_000_000_000u64;
        let mut w = TimeWindow::new(Duration::from_secs(10), 10);
        w.record(0, true, false);
        w.record(s / 2, false, false);
        w.record(5 * s, false, true);
        assert_eq!(
            w.counts(9 * s),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        // At 10 s the bucket [0, 1 s) leaves.
        assert_eq!(
            w.counts(10 * s),
            Counts {
                calls: 1,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts(15 * s), Counts::default());
        // A long gap clears everything in one pass.
        w.record(16 * s, true, true);
        assert_eq!(w.counts(1_000 * s), Counts::default());
    }

    proptest! {
        /// The count window always equals a naive "last N" computed from the
        /// full history.
        #[test]
        fn count_window_matches_naive(size in 1usize..20, calls in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..200)) {
            let mut w = CountWindow::new(size);
            for (i, &(f, s)) in calls.iter().enumerate() {
                w.record(f, s);
                let recent = &calls[(i + 1).saturating_sub(size)..=i];
                let expected = Counts {
                    calls: recent.len() as u32,
                    failures: recent.iter().filter(|c| c.0).count() as u32,
                    slow: recent.iter().filter(|c| c.1).count() as u32,
                };
                prop_assert_eq!(w.counts(), expected);
            }
        }

        /// The time window equals a naive filter of the calls whose bucket is
        /// among the last `buckets` ones.
        #[test]
        fn time_window_matches_naive(buckets in 1u32..8, steps in proptest::collection::vec((0u64..3_000, any::<bool>(), any::<bool>()), 0..100)) {
            let bucket = 1_000u64;
            let mut w = TimeWindow::new(Duration::from_nanos(bucket * u64::from(buckets)), buckets);
            let mut now = 0u64;
            let mut log = Vec::new();
            for &(dt, f, s) in &steps {
                now += dt;
                w.record(now, f, s);
                log.push((now, f, s));
                let head = now / bucket;
                let live: Vec<_> = log.iter().filter(|c| c.0 / bucket + u64::from(buckets) > head).collect();
                let expected = Counts {
                    calls: live.len() as u32,
                    failures: live.iter().filter(|c| c.1).count() as u32,
                    slow: live.iter().filter(|c| c.2).count() as u32,
                };
                prop_assert_eq!(w.counts(now), expected);
            }
        }
    }
}
