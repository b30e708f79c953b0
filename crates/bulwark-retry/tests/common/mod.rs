//! Test doubles shared by the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use bulwark_core::clock::Instant;
use bulwark_core::{BoxError, Outcome};
use bulwark_retry::RetryEvent;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

#[derive(Debug)]
pub struct MockError(pub &'static str);

impl std::fmt::Display for MockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for MockError {}

/// How the mock answers its `n`-th call (0-based): after a latency, a status
/// or an error.
pub type Respond = dyn Fn(usize, u32) -> (Duration, Result<u16, MockError>) + Send + Sync;

pub struct Inner {
    respond: Box<Respond>,
    /// When each call was made.
    pub calls: Mutex<Vec<Instant>>,
    /// How many `poll_ready` calls return `Pending` before each `Ready`.
    unready_polls: u32,
    /// Futures dropped before they finished.
    pub cancelled: AtomicUsize,
    /// Futures that finished.
    pub finished: AtomicUsize,
    pub polls_pending: AtomicUsize,
}

/// A service that panics when called without a successful `poll_ready`
/// since its last call.
pub struct Mock {
    pub inner: Arc<Inner>,
    ready: bool,
    pending_left: u32,
}

impl Clone for Mock {
    fn clone(&self) -> Self {
        // A clone starts unready, like any tower service clone.
        Mock {
            inner: self.inner.clone(),
            ready: false,
            pending_left: self.inner.unready_polls,
        }
    }
}

impl Mock {
    pub fn new(
        respond: impl Fn(usize, u32) -> (Duration, Result<u16, MockError>) + Send + Sync + 'static,
    ) -> Self {
        Self::with_unready_polls(0, respond)
    }

    pub fn with_unready_polls(
        unready_polls: u32,
        respond: impl Fn(usize, u32) -> (Duration, Result<u16, MockError>) + Send + Sync + 'static,
    ) -> Self {
        Mock {
            inner: Arc::new(Inner {
                respond: Box::new(respond),
                calls: Mutex::new(Vec::new()),
                unready_polls,
                cancelled: AtomicUsize::new(0),
                finished: AtomicUsize::new(0),
                polls_pending: AtomicUsize::new(0),
            }),
            ready: false,
            pending_left: unready_polls,
        }
    }

    /// Always answers `status` at once.
    pub fn status(status: u16) -> Self {
        Self::new(move |_, _| (Duration::ZERO, Ok(status)))
    }

    /// Always fails at once.
    pub fn failing() -> Self {
        Self::new(|_, _| (Duration::ZERO, Err(MockError("upstream failed"))))
    }

    pub fn calls(&self) -> usize {
        self.inner.calls.lock().unwrap().len()
    }

    pub fn call_times(&self) -> Vec<Instant> {
        self.inner.calls.lock().unwrap().clone()
    }
}

/// Counts how a call's future ended.
struct Guard {
    inner: Arc<Inner>,
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            self.inner.finished.fetch_add(1, Ordering::SeqCst);
        } else {
            self.inner.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl tower::Service<u32> for Mock {
    type Response = u16;
    type Error = MockError;
    type Future = Pin<Box<dyn Future<Output = Result<u16, MockError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MockError>> {
        if self.pending_left > 0 {
            self.pending_left -= 1;
            self.inner.polls_pending.fetch_add(1, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        assert!(self.ready, "Mock called without being polled ready first");
        self.ready = false;
        self.pending_left = self.inner.unready_polls;
        let n = {
            let mut calls = self.inner.calls.lock().unwrap();
            calls.push(Instant::now());
            calls.len() - 1
        };
        let (latency, result) = (self.inner.respond)(n, req);
        let mut guard = Guard {
            inner: self.inner.clone(),
            done: false,
        };
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            guard.done = true;
            drop(guard);
            result
        })
    }
}

/// HTTP-like: 5xx fails, 429 is throttled, the rest succeeds.
pub fn by_status(result: &Result<u16, BoxError>) -> Outcome {
    match result {
        Ok(429) => Outcome::Throttled,
        Ok(s) if *s >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::of_error(e),
    }
}

/// A listener that records every event.
pub fn recorder() -> (
    Arc<Mutex<Vec<RetryEvent>>>,
    impl Fn(&RetryEvent) + Send + Sync + 'static,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |e: &RetryEvent| {
        sink.lock().unwrap().push(e.clone())
    })
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
