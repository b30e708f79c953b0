//! The shared state of a bulkhead: permits, the wait queue, the (possibly
//! adaptive) limit and the counters a [`BulkheadHandle`] reads.
//!
//! Permits in use and callers waiting share one atomic word (in flight in
//! the low half, waiting in the high half): taking a permit is a
//! compare-and-swap, giving one back a subtraction, and only when callers
//! wait in the queue does either side take the queue's (short,
//! `parking_lot`) lock. Because both counts live in one word, a release and a
//! caller joining the queue are ordered by that word alone: the release
//! either frees a permit the joiner sees, or sees the joiner and grants it
//! (model-checked with loom, see the tests at the end). The queue is FIFO:
//! while anyone waits, new callers queue behind them instead of barging.

use crate::adaptive::{LimitAlgorithm, Sample, SampleKind};
use crate::error::{BulkheadFull, BulkheadFullReason};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::BulkheadEvent;
use bulwark_core::clock::Instant;
use bulwark_core::Listeners;
use std::collections::VecDeque;
use std::fmt;
use std::task::Waker;
use std::time::Duration;

/// One caller waiting, in the state word.
const WAITER: u64 = 1 << 32;
/// The in-flight half of the state word.
const IN_FLIGHT: u64 = WAITER - 1;

pub(crate) struct Limiter {
    /// `waiting << 32 | in_flight`.
    state: AtomicU64,
    limit: AtomicUsize,
    rejections: AtomicU64,
    queue: Mutex<VecDeque<Arc<Slot>>>,
    pub(crate) max_queue: usize,
    pub(crate) max_wait: Duration,
    pub(crate) name: Option<std::sync::Arc<str>>,
    pub(crate) listeners: Listeners<BulkheadEvent>,
    adaptive: Option<Mutex<Box<dyn LimitAlgorithm>>>,
}

/// One caller waiting for a permit.
pub(crate) struct Slot {
    // Set (under the queue lock) when a permit was handed to this waiter.
    granted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    pub(crate) fn is_granted(&self) -> bool {
        self.granted.load(Ordering::Acquire)
    }

    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut w = self.waker.lock();
        match &*w {
            Some(old) if old.will_wake(waker) => {}
            _ => *w = Some(waker.clone()),
        }
    }
}

pub(crate) enum Enqueued {
    Acquired,
    Waiting(Arc<Slot>),
}

impl Limiter {
    pub(crate) fn new(
        limit: usize,
        max_queue: usize,
        max_wait: Duration,
        name: Option<std::sync::Arc<str>>,
        listeners: Listeners<BulkheadEvent>,
        adaptive: Option<Box<dyn LimitAlgorithm>>,
    ) -> Self {
        let limit = adaptive.as_ref().map_or(limit, |a| a.initial_limit());
        Limiter {
            state: AtomicU64::new(0),
            limit: AtomicUsize::new(limit.max(1)),
            rejections: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
            max_queue,
            max_wait,
            name,
            listeners,
            adaptive: adaptive.map(Mutex::new),
        }
    }

    #[inline]
    pub(crate) fn is_adaptive(&self) -> bool {
        self.adaptive.is_some()
    }

    /// Takes a permit if one is under the limit; `barge` lets it jump
    /// callers already waiting (only the queue's own grants do).
    #[inline]
    fn take_permit(&self, barge: bool) -> bool {
        let limit = self.limit.load(Ordering::Acquire) as u64;
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & IN_FLIGHT >= limit || (!barge && current >= WAITER) {
                return false;
            }
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a permit if one is free and nobody waits for one.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        self.take_permit(false)
    }

    /// Joins the wait queue (or takes a permit if one freed up meanwhile and
    /// nobody is ahead).
    pub(crate) fn enqueue(&self, waker: &Waker) -> Result<Enqueued, BulkheadFullReason> {
        let mut queue = self.queue.lock();
        if queue.len() >= self.max_queue {
            return Err(BulkheadFullReason::QueueFull);
        }
        // Either take a free permit or count ourselves as waiting, in one
        // step on the state word: a release after this sees the waiter.
        let limit = self.limit.load(Ordering::Acquire) as u64;
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let free = current & IN_FLIGHT < limit && queue.is_empty();
            let next = if free { current + 1 } else { current + WAITER };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if free => return Ok(Enqueued::Acquired),
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        let slot = Arc::new(Slot {
            granted: AtomicBool::new(false),
            waker: Mutex::new(Some(waker.clone())),
        });
        queue.push_back(slot.clone());
        Ok(Enqueued::Waiting(slot))
    }

    /// Leaves the queue. Returns `true` when a permit had been granted to the
    /// slot meanwhile: the caller owns it.
    pub(crate) fn cancel(&self, slot: &Arc<Slot>) -> bool {
        let mut queue = self.queue.lock();
        if slot.is_granted() {
            return true;
        }
        if let Some(pos) = queue.iter().position(|s| Arc::ptr_eq(s, slot)) {
            queue.remove(pos);
            self.state.fetch_sub(WAITER, Ordering::AcqRel);
        }
        false
    }

    #[inline]
    pub(crate) fn release(&self) {
        let before = self.state.fetch_sub(1, Ordering::AcqRel);
        if before >= WAITER {
            self.grant_waiters();
        }
    }

    #[cold]
    fn grant_waiters(&self) {
        let mut queue = self.queue.lock();
        while !queue.is_empty() && self.grant_one() {
            let slot = queue.pop_front().expect("not empty");
            slot.granted.store(true, Ordering::Release);
            let waker = slot.waker.lock().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Moves one waiter's count to the in-flight half if a permit is free:
    /// the permit goes to the head of the queue (the queue lock is held).
    fn grant_one(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire) as u64;
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & IN_FLIGHT >= limit || current < WAITER {
                return false;
            }
            match self.state.compare_exchange_weak(
                current,
                current - WAITER + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn waiting(&self) -> usize {
        (self.state.load(Ordering::Acquire) >> 32) as usize
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        let old = self.limit.swap(limit, Ordering::AcqRel);
        if limit > old && self.waiting() != 0 {
            self.grant_waiters();
        }
    }

    #[cold]
    pub(crate) fn reject(&self, reason: BulkheadFullReason) -> BulkheadFull {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            bulkhead = self.name.as_deref(),
            ?reason,
            "bulkhead rejected a call"
        );
        self.listeners.emit(|| BulkheadEvent::Rejected {
            name: self.name.clone(),
            reason,
        });
        let full = BulkheadFull::new(reason);
        match &self.name {
            Some(name) => full.with_name(name.clone()),
            None => full,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        (self.state.load(Ordering::Relaxed) & IN_FLIGHT) as usize
    }

    /// Feeds one sample to the adaptive algorithm and publishes its limit.
    pub(crate) fn sample(&self, start: Instant, in_flight: usize, kind: SampleKind) {
        let Some(algorithm) = &self.adaptive else {
            return;
        };
        let sample = Sample::new(start.elapsed(), in_flight, kind);
        let new = algorithm.lock().update(&sample).max(1);
        let old = self.limit.swap(new, Ordering::SeqCst);
        if old != new {
            tracing::trace!(
                bulkhead = self.name.as_deref(),
                old,
                new,
                "bulkhead limit changed"
            );
            self.listeners.emit(|| BulkheadEvent::LimitChanged {
                name: self.name.clone(),
                from: old,
                to: new,
            });
            if new > old && self.waiting() != 0 {
                self.grant_waiters();
            }
        }
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("in_flight", &self.in_flight())
            .field("limit", &self.limit)
            .field("queued", &self.waiting())
            .field("rejections", &self.rejections)
            .field("adaptive", &self.adaptive.is_some())
            .finish()
    }
}

/// A permit: one call's share of the limit, given back on drop.
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    // Adaptive only: when the call started and how busy the bulkhead was.
    started: Option<(Instant, usize)>,
}

impl Permit {
    #[inline]
    pub(crate) fn new(limiter: Arc<Limiter>) -> Self {
        Permit {
            limiter,
            started: None,
        }
    }

    /// Marks the start of the call (adaptive bulkheads time their calls).
    #[inline]
    pub(crate) fn start(&mut self) {
        if self.limiter.is_adaptive() {
            self.started = Some((Instant::now(), self.limiter.in_flight()));
        }
    }

    /// Whether the call is timed for an adaptive limit (only then is its
    /// outcome worth classifying).
    #[inline]
    pub(crate) fn is_timed(&self) -> bool {
        self.started.is_some()
    }

    /// The call ended; `kind` is its sample (`None`: the outcome says
    /// nothing about congestion). Gives the permit back.
    #[inline]
    pub(crate) fn complete(mut self, kind: Option<SampleKind>) {
        if let Some((start, in_flight)) = self.started.take() {
            if let Some(kind) = kind {
                self.limiter.sample(start, in_flight, kind);
            }
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if let Some((start, in_flight)) = self.started.take() {
            // Abandoned before completing (a timeout further out, a caller
            // that gave up): neutral, not a drop (see `adaptive`).
            self.limiter.sample(start, in_flight, SampleKind::Abandoned);
        }
        self.limiter.release();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

/// A view of a bulkhead's state: in flight, queued, limit, rejections.
///
/// Cheap to clone; every read is an atomic load. Get one from
/// [`Bulkhead::handle`](crate::Bulkhead::handle) or, for a shared bulkhead,
/// [`BulkheadLayer::handle`](crate::BulkheadLayer::handle).
#[derive(Clone)]
pub struct BulkheadHandle {
    pub(crate) limiter: Arc<Limiter>,
}

impl BulkheadHandle {
    /// Calls holding a permit now (including services made ready and not yet
    /// called).
    pub fn in_flight(&self) -> usize {
        self.limiter.in_flight()
    }

    /// Callers waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.limiter.waiting()
    }

    /// The current limit (moving, for an adaptive bulkhead).
    pub fn limit(&self) -> usize {
        self.limiter.limit.load(Ordering::Relaxed)
    }

    /// Calls rejected since the bulkhead was built.
    pub fn rejections(&self) -> u64 {
        self.limiter.rejections.load(Ordering::Relaxed)
    }

    /// The bulkhead's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.limiter.name.as_deref()
    }

    /// Whether `self` and `other` observe the same bulkhead.
    pub fn same_bulkhead(&self, other: &BulkheadHandle) -> bool {
        Arc::ptr_eq(&self.limiter, &other.limiter)
    }

    /// Changes a static limit in place (a configuration reload), keeping the
    /// calls in flight and the queue: a higher limit admits waiters at once;
    /// a lower one admits nobody new until enough calls in flight finish.
    ///
    /// # Errors
    ///
    /// A limit of 0, or an adaptive bulkhead (its algorithm owns the limit).
    ///
    /// ```
    /// use bulwark::bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::builder().max_concurrent(10).build_shared();
    /// let handle = layer.handle().unwrap();
    /// handle.set_limit(20).unwrap();
    /// assert_eq!(handle.limit(), 20);
    /// assert_eq!(handle.set_limit(0).unwrap_err().field(), "max_concurrent");
    /// ```
    pub fn set_limit(&self, limit: usize) -> Result<(), bulwark_core::error::ConfigError> {
        let invalid = |reason: &str| {
            bulwark_core::error::ConfigError::new("bulkhead", "max_concurrent", reason)
        };
        if limit == 0 {
            return Err(invalid("must be at least 1"));
        }
        if self.limiter.is_adaptive() {
            return Err(invalid("an adaptive bulkhead moves its own limit"));
        }
        self.limiter.set_limit(limit);
        Ok(())
    }
}

impl fmt::Debug for BulkheadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadHandle")
            .field("name", &self.name())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .field("limit", &self.limit())
            .field("rejections", &self.rejections())
            .finish()
    }
}

/// Model checking of the permit and wait-queue protocol under every
/// interleaving loom can find:
/// `RUSTFLAGS="--cfg bulwark_loom" cargo test -p bulwark-bulkhead --lib loom`.
#[cfg(all(test, bulwark_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    fn limiter(limit: usize) -> Arc<Limiter> {
        Arc::new(Limiter::new(
            limit,
            8,
            Duration::from_secs(1),
            None,
            Listeners::new(),
            None,
        ))
    }

    fn noop_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        Waker::from(std::sync::Arc::new(Noop))
    }

    /// A release racing a caller joining the queue never strands the caller:
    /// it either takes the freed permit itself or is granted it.
    #[test]
    fn loom_no_lost_wakeup() {
        loom::model(|| {
            let l = limiter(1);
            assert!(l.try_acquire());
            let releaser = {
                let l = l.clone();
                thread::spawn(move || l.release())
            };
            let got = match l.enqueue(&noop_waker()).expect("room in the queue") {
                Enqueued::Acquired => true,
                Enqueued::Waiting(slot) => {
                    releaser.join().unwrap();
                    return assert!(slot.is_granted(), "a waiter was left unwoken");
                }
            };
            releaser.join().unwrap();
            assert!(got);
            assert_eq!(l.in_flight(), 1);
        });
    }

    /// A waiter giving up while a release grants it the permit: the permit is
    /// either the waiter's (cancel says so) or back in the pool; never lost,
    /// never doubled.
    #[test]
    fn loom_cancel_racing_a_grant_leaks_nothing() {
        loom::model(|| {
            let l = limiter(1);
            assert!(l.try_acquire());
            let slot = match l.enqueue(&noop_waker()).expect("room") {
                Enqueued::Waiting(slot) => slot,
                Enqueued::Acquired => unreachable!("the only permit is held"),
            };
            let releaser = {
                let l = l.clone();
                thread::spawn(move || l.release())
            };
            let owned = l.cancel(&slot);
            releaser.join().unwrap();
            if owned {
                assert_eq!(l.in_flight(), 1, "the waiter owns the granted permit");
                l.release();
            }
            assert_eq!(l.in_flight(), 0);
            assert_eq!(l.waiting(), 0);
            assert!(l.try_acquire(), "the permit is free again");
        });
    }

    /// Two callers competing for one permit with the holder releasing: at
    /// most one permit is ever out, and whoever waits is granted it.
    #[test]
    fn loom_never_more_than_the_limit() {
        loom::model(|| {
            let l = limiter(1);
            assert!(l.try_acquire());
            let a = {
                let l = l.clone();
                thread::spawn(move || l.try_acquire())
            };
            l.release();
            let a_got = a.join().unwrap();
            let b_got = l.try_acquire();
            assert!(!(a_got && b_got), "two permits out with a limit of one");
            assert!(l.in_flight() <= 1);
        });
    }
}
