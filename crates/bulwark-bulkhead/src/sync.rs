//! The synchronisation primitives of the limiter, swapped for loom's when
//! the crate is built with `--cfg bulwark_loom`, so that the hand-written
//! permit and wait-queue protocol can be model-checked (see the `loom`
//! tests in `limiter.rs`).

#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::Arc;

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(bulwark_loom)]
pub(crate) use loom::sync::Arc;

/// A short-critical-section mutex: `parking_lot`'s, or loom's under loom.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(
    #[cfg(not(bulwark_loom))] parking_lot::Mutex<T>,
    #[cfg(bulwark_loom)] loom::sync::Mutex<T>,
);

#[cfg(not(bulwark_loom))]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(parking_lot::Mutex::new(value))
    }

    #[inline]
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        self.0.lock()
    }
}

#[cfg(bulwark_loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0.lock().expect("not poisoned")
    }
}
