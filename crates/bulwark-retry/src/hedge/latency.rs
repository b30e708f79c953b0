//! Recently observed latencies, and a percentile of them.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const NONE: u64 = u64::MAX;

/// A ring of recent latencies whose percentile is recomputed every few
/// samples and read without a lock.
pub(crate) struct Latencies {
    percentile: f64,
    min_samples: usize,
    cached: AtomicU64,
    ring: Mutex<Ring>,
}

struct Ring {
    samples: Vec<u64>,
    capacity: usize,
    next: usize,
    since: usize,
    scratch: Vec<u64>,
}

impl Latencies {
    /// `percentile` in (0, 100]; no estimate before `min_samples` samples.
    pub(crate) fn new(percentile: f64, min_samples: usize, capacity: usize) -> Self {
        let capacity = capacity.max(min_samples).max(1);
        Latencies {
            percentile,
            min_samples: min_samples.max(1),
            cached: AtomicU64::new(NONE),
            ring: Mutex::new(Ring {
                samples: Vec::with_capacity(capacity),
                capacity,
                next: 0,
                since: 0,
                scratch: Vec::with_capacity(capacity),
            }),
        }
    }

    /// The current estimate, once enough samples were seen.
    #[inline]
    pub(crate) fn estimate(&self) -> Option<Duration> {
        match self.cached.load(Ordering::Relaxed) {
            NONE => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(NONE - 1);
        let mut ring = self.ring.lock();
        let r = &mut *ring;
        if r.samples.len() < r.capacity {
            r.samples.push(nanos);
        } else {
            r.samples[r.next] = nanos;
        }
        r.next = (r.next + 1) % r.capacity;
        r.since += 1;
        let n = r.samples.len();
        // Recompute every n/16 samples: O(1) amortised per sample.
        if n >= self.min_samples && r.since >= (n / 16).max(1) {
            r.since = 0;
            r.scratch.clear();
            r.scratch.extend_from_slice(&r.samples);
            // Nearest rank.
            let rank = ((self.percentile / 100.0) * n as f64).ceil() as usize;
            let index = rank.clamp(1, n) - 1;
            let (_, value, _) = r.scratch.select_nth_unstable(index);
            self.cached.store(*value, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentile_after_min_samples() {
        let l = Latencies::new(90.0, 10, 100);
        for ms in 1..=9 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.estimate(), None);
        l.record(Duration::from_millis(10));
        assert_eq!(l.estimate(), Some(Duration::from_millis(9)));
    }

    #[test]
    fn old_samples_leave_the_ring() {
        let l = Latencies::new(50.0, 4, 4);
        for _ in 0..4 {
            l.record(Duration::from_millis(100));
        }
        assert_eq!(l.estimate(), Some(Duration::from_millis(100)));
        for _ in 0..4 {
            l.record(Duration::from_millis(10));
        }
        assert_eq!(l.estimate(), Some(Duration::from_millis(10)));
    }
}
