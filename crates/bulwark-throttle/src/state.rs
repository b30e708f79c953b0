//! The shared state: requests and accepts over a sliding window of time
//! buckets, the reject probability, and the random draw.

use crate::ThrottleEvent;
use bulwark_core::clock::{Instant, TimeBase};
use bulwark_core::Listeners;
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    requests: u64,
    accepts: u64,
}

struct Counts {
    buckets: Box<[Bucket]>,
    /// The newest epoch seen.
    epoch: u64,
    requests: u64,
    accepts: u64,
    random: fastrand::Rng,
}

impl Counts {
    /// Moves the window to `epoch`, forgetting the buckets that left it.
    fn advance(&mut self, epoch: u64) {
        if epoch <= self.epoch {
            return;
        }
        let n = self.buckets.len() as u64;
        let from = self
            .epoch
            .saturating_add(1)
            .max(epoch.saturating_sub(n - 1));
        for e in from..=epoch {
            let slot = &mut self.buckets[(e % n) as usize];
            self.requests -= slot.requests;
            self.accepts -= slot.accepts;
            *slot = Bucket::default();
        }
        self.epoch = epoch;
    }

    fn current(&mut self) -> &mut Bucket {
        let n = self.buckets.len() as u64;
        &mut self.buckets[(self.epoch % n) as usize]
    }

    fn probability(&self, k: f64, max: f64) -> f64 {
        let requests = self.requests as f64;
        let p = (requests - k * self.accepts as f64) / (requests + 1.0);
        p.clamp(0.0, max)
    }
}

pub(crate) struct State {
    counts: Mutex<Counts>,
    base: TimeBase,
    bucket_nanos: u64,
    pub(crate) k: f64,
    pub(crate) max_probability: f64,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) listeners: Listeners<ThrottleEvent>,
}

/// How a call that was sent ended, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// A request the upstream accepted.
    Accepted,
    /// A request it did not accept (failed, throttled, or given up on).
    NotAccepted,
    /// Refused further in, locally: not a request to the upstream at all.
    Uncounted,
}

impl State {
    pub(crate) fn new(
        window_nanos: u64,
        buckets: usize,
        k: f64,
        max_probability: f64,
        seed: Option<u64>,
        name: Option<Arc<str>>,
        listeners: Listeners<ThrottleEvent>,
    ) -> Self {
        let buckets = buckets.max(1);
        State {
            counts: Mutex::new(Counts {
                buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
                epoch: 0,
                requests: 0,
                accepts: 0,
                random: seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            }),
            base: TimeBase::new(),
            bucket_nanos: (window_nanos / buckets as u64).max(1),
            k,
            max_probability,
            name,
            listeners,
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        self.base.nanos(now) / self.bucket_nanos
    }

    /// Decides whether to send a call: `Err(probability)` when it is shed.
    /// A shed call counts as a request at once (that is what makes the
    /// formula shed in proportion); a sent one counts when it ends.
    #[inline]
    pub(crate) fn admit(&self) -> Result<(), f64> {
        let epoch = self.epoch(Instant::now());
        let mut counts = self.counts.lock();
        counts.advance(epoch);
        let p = counts.probability(self.k, self.max_probability);
        if p > 0.0 && counts.random.f64() < p {
            counts.current().requests += 1;
            counts.requests += 1;
            return Err(p);
        }
        Ok(())
    }

    /// Counts a call that was sent.
    #[inline]
    pub(crate) fn end(&self, ended: Ended) {
        if ended == Ended::Uncounted {
            return;
        }
        let accepted = u64::from(ended == Ended::Accepted);
        let epoch = self.epoch(Instant::now());
        let mut counts = self.counts.lock();
        counts.advance(epoch);
        let bucket = counts.current();
        bucket.requests += 1;
        bucket.accepts += accepted;
        counts.requests += 1;
        counts.accepts += accepted;
    }

    /// Requests, accepts and the reject probability now.
    pub(crate) fn snapshot(&self) -> (u64, u64, f64) {
        let epoch = self.epoch(Instant::now());
        let mut counts = self.counts.lock();
        counts.advance(epoch);
        (
            counts.requests,
            counts.accepts,
            counts.probability(self.k, self.max_probability),
        )
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, accepts, probability) = self.snapshot();
        f.debug_struct("State")
            .field("name", &self.name)
            .field("k", &self.k)
            .field("requests", &requests)
            .field("accepts", &accepts)
            .field("probability", &probability)
            .finish()
    }
}
