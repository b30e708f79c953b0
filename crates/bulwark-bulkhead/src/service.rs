//! The [`Bulkhead`] service.

use crate::error::{BulkheadFull, BulkheadFullReason};
use crate::future::ResponseFuture;
use crate::limiter::{BulkheadHandle, Enqueued, Limiter, Permit, Slot};
use crate::sync::Arc;
use bulwark_core::clock::{self, Instant};
use bulwark_core::{BoxError, Classify, DefaultClassifier};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Sleep;
use tower_service::Service;

/// Limits how many calls to the inner service are in flight at once.
///
/// `poll_ready` reserves a permit (waiting for one in a bounded queue, if the
/// bulkhead was built to wait); `call` moves it into the response future,
/// which gives it back when it completes or is dropped. A service made ready
/// and dropped without a call gives its permit back too. When no permit can
/// be had, `poll_ready` still returns `Ready(Ok(()))` and `call` fails at
/// once with [`BulkheadFull`], saying why.
///
/// Clones share the limit; a clone starts without a permit. Under an adaptive
/// limit, the classifier `C` says what each result means to it (see
/// [`adaptive`](crate::adaptive)).
pub struct Bulkhead<S, C = DefaultClassifier> {
    inner: S,
    limiter: Arc<Limiter>,
    classifier: C,
    state: State,
    // Reused by every wait of this service.
    sleep: Option<Pin<Box<Sleep>>>,
}

enum State {
    Idle,
    Waiting(Waiter),
    Ready(Permit),
    Rejected(BulkheadFull),
}

/// A place in the wait queue; leaves it (or gives back a permit granted
/// meanwhile) when dropped.
struct Waiter {
    slot: Arc<Slot>,
    limiter: Arc<Limiter>,
    armed: bool,
}

impl Waiter {
    fn into_permit(mut self) -> Permit {
        // Granted: the permit is ours now, nothing to undo on drop.
        self.armed = false;
        Permit::new(self.limiter.clone())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.armed && self.limiter.cancel(&self.slot) {
            self.limiter.release();
        }
    }
}

impl<S> Bulkhead<S> {
    /// Wraps `inner` with a fail-fast bulkhead of `max_concurrent` permits of
    /// its own. Use [`BulkheadLayer::builder`](crate::BulkheadLayer::builder)
    /// for waiting, sharing, names, adaptive limits and classifiers.
    pub fn new(inner: S, max_concurrent: usize) -> Self {
        crate::BulkheadLayer::new(max_concurrent).wrap(inner)
    }
}

impl<S, C> Bulkhead<S, C> {
    pub(crate) fn with_limiter(inner: S, limiter: Arc<Limiter>, classifier: C) -> Self {
        Bulkhead {
            inner,
            limiter,
            classifier,
            state: State::Idle,
            sleep: None,
        }
    }

    /// A handle to read this bulkhead's in-flight, queued, limit and
    /// rejection counts.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle {
            limiter: self.limiter.clone(),
        }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service (and giving back any
    /// permit it held).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for Bulkhead<S, C> {
    /// Shares the limit; the clone starts without a permit.
    fn clone(&self) -> Self {
        Bulkhead::with_limiter(
            self.inner.clone(),
            self.limiter.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Bulkhead<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Waiting(_) => "waiting",
            State::Ready(_) => "ready",
            State::Rejected(_) => "rejected",
        };
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("state", &state)
            .finish()
    }
}

impl<S, C> Bulkhead<S, C> {
    #[cold]
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::Idle => {
                    if self.limiter.max_queue == 0 || self.limiter.max_wait.is_zero() {
                        self.state =
                            State::Rejected(self.limiter.reject(BulkheadFullReason::AtCapacity));
                        return Poll::Ready(());
                    }
                    match self.limiter.enqueue(cx.waker()) {
                        Err(reason) => {
                            self.state = State::Rejected(self.limiter.reject(reason));
                            return Poll::Ready(());
                        }
                        Ok(Enqueued::Acquired) => {
                            self.state = State::Ready(Permit::new(self.limiter.clone()));
                            return Poll::Ready(());
                        }
                        Ok(Enqueued::Waiting(slot)) => {
                            // A `max_wait` too long for a deadline waits "forever"
                            // (capped far in the future) instead of panicking.
                            let deadline =
                                clock::saturating_add(Instant::now(), self.limiter.max_wait);
                            match &mut self.sleep {
                                Some(sleep) => sleep.as_mut().reset(deadline),
                                None => {
                                    self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline)))
                                }
                            }
                            self.state = State::Waiting(Waiter {
                                slot,
                                limiter: self.limiter.clone(),
                                armed: true,
                            });
                        }
                    }
                }
                State::Waiting(waiter) => {
                    if !waiter.slot.is_granted() {
                        waiter.slot.set_waker(cx.waker());
                    }
                    if waiter.slot.is_granted() {
                        self.grant();
                        return Poll::Ready(());
                    }
                    let sleep = self.sleep.as_mut().expect("a waiter has a timer");
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Waited as long as allowed. Leave the queue, unless a
                    // permit arrived at the last moment.
                    if self.limiter.cancel(&waiter.slot) {
                        self.grant();
                    } else {
                        let State::Waiting(waiter) =
                            std::mem::replace(&mut self.state, State::Idle)
                        else {
                            unreachable!()
                        };
                        // Already out of the queue: dropping it is a no-op.
                        drop(waiter);
                        self.state =
                            State::Rejected(self.limiter.reject(BulkheadFullReason::WaitTimedOut));
                    }
                    return Poll::Ready(());
                }
                State::Ready(_) | State::Rejected(_) => return Poll::Ready(()),
            }
        }
    }

    /// The waiter in `self.state` was granted a permit: take it.
    fn grant(&mut self) {
        let State::Waiting(waiter) = std::mem::replace(&mut self.state, State::Idle) else {
            unreachable!()
        };
        self.state = State::Ready(waiter.into_permit());
    }
}

impl<S, C, Req> Service<Req> for Bulkhead<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.state {
            State::Ready(_) => {}
            State::Rejected(_) => return Poll::Ready(Ok(())),
            State::Idle if self.limiter.try_acquire() => {
                self.state = State::Ready(Permit::new(self.limiter.clone()));
            }
            State::Idle | State::Waiting(_) => {
                if self.poll_wait(cx).is_pending() {
                    return Poll::Pending;
                }
                if let State::Rejected(_) = self.state {
                    return Poll::Ready(Ok(()));
                }
            }
        }
        // Holding a permit: the inner service must be ready too. The permit
        // stays reserved while it is not.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Ready(mut permit) => {
                permit.start();
                ResponseFuture::classified(self.inner.call(req), permit, self.classifier.clone())
            }
            State::Rejected(error) => ResponseFuture::rejected(error),
            // Called without `poll_ready` first (a caller's bug): decide now,
            // without waiting. A waiter dropped here gives its place back.
            State::Idle | State::Waiting(_) => {
                if self.limiter.try_acquire() {
                    let mut permit = Permit::new(self.limiter.clone());
                    permit.start();
                    ResponseFuture::classified(
                        self.inner.call(req),
                        permit,
                        self.classifier.clone(),
                    )
                } else {
                    ResponseFuture::rejected(self.limiter.reject(BulkheadFullReason::AtCapacity))
                }
            }
        }
    }
}
