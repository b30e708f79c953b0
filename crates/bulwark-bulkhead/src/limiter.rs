//! The shared state of a bulkhead: permits, the wait queue, the (possibly
//! adaptive) limit and the counters a [`BulkheadHandle`] reads.
//!
//! Permits are an atomic counter: taking one is a compare-and-swap, giving one
//! back a subtraction, and only when callers wait in the queue does either
//! side take the queue's (short, `parking_lot`) lock. The queue is FIFO:
//! while anyone waits, new callers queue behind them instead of barging.

use crate::adaptive::{LimitAlgorithm, Sample};
use crate::error::{BulkheadFull, BulkheadFullReason};
use crate::BulkheadEvent;
use bulwark_core::clock::Instant;
use bulwark_core::Listeners;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

pub(crate) struct Limiter {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    // Callers in the wait queue. Read without the lock on every release.
    queued: AtomicUsize,
    rejections: AtomicU64,
    queue: Mutex<VecDeque<Arc<Slot>>>,
    pub(crate) max_queue: usize,
    pub(crate) max_wait: Duration,
    pub(crate) name: Option<Arc<str>>,
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
        name: Option<Arc<str>>,
        listeners: Listeners<BulkheadEvent>,
        adaptive: Option<Box<dyn LimitAlgorithm>>,
    ) -> Self {
        let limit = adaptive.as_ref().map_or(limit, |a| a.initial_limit());
        Limiter {
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit.max(1)),
            queued: AtomicUsize::new(0),
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

    #[inline]
    fn try_acquire_raw(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= limit {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a permit if one is free and nobody waits for one.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        self.queued.load(Ordering::SeqCst) == 0 && self.try_acquire_raw()
    }

    /// Joins the wait queue (or takes a permit if one freed up meanwhile and
    /// nobody is ahead).
    pub(crate) fn enqueue(&self, waker: &Waker) -> Result<Enqueued, BulkheadFullReason> {
        let mut queue = self.queue.lock();
        if queue.len() >= self.max_queue {
            return Err(BulkheadFullReason::QueueFull);
        }
        // Counted before trying, so that a concurrent release either frees a
        // permit this try sees or sees the waiter and grants it (SeqCst).
        self.queued.fetch_add(1, Ordering::SeqCst);
        if queue.is_empty() && self.try_acquire_raw() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Ok(Enqueued::Acquired);
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
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        false
    }

    #[inline]
    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) != 0 {
            self.grant_waiters();
        }
    }

    #[cold]
    fn grant_waiters(&self) {
        let mut queue = self.queue.lock();
        while !queue.is_empty() && self.try_acquire_raw() {
            let slot = queue.pop_front().expect("not empty");
            self.queued.fetch_sub(1, Ordering::SeqCst);
            slot.granted.store(true, Ordering::Release);
            let waker = slot.waker.lock().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        let old = self.limit.swap(limit, Ordering::SeqCst);
        if limit > old && self.queued.load(Ordering::SeqCst) != 0 {
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
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Feeds one sample to the adaptive algorithm and publishes its limit.
    pub(crate) fn sample(&self, start: Instant, in_flight: usize, dropped: bool) {
        let Some(algorithm) = &self.adaptive else {
            return;
        };
        let sample = Sample::new(start.elapsed(), in_flight, dropped);
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
            if new > old && self.queued.load(Ordering::SeqCst) != 0 {
                self.grant_waiters();
            }
        }
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("in_flight", &self.in_flight)
            .field("limit", &self.limit)
            .field("queued", &self.queued)
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

    /// The call completed; `dropped` when it failed. Gives the permit back.
    #[inline]
    pub(crate) fn complete(mut self, dropped: Option<bool>) {
        if let Some((start, in_flight)) = self.started.take() {
            if let Some(dropped) = dropped {
                self.limiter.sample(start, in_flight, dropped);
            }
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if let Some((start, in_flight)) = self.started.take() {
            // Abandoned before completing (a timeout further out, a caller
            // that gave up): for the limit, that is a drop.
            self.limiter.sample(start, in_flight, true);
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
        self.limiter.in_flight.load(Ordering::Relaxed)
    }

    /// Callers waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.limiter.queued.load(Ordering::Relaxed)
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
    /// use bulwark_bulkhead::BulkheadLayer;
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
