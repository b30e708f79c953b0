//! Events: observe what a layer does, at no cost when nobody listens.
//!
//! Every layer has its own event type (a breaker's transitions, a retry's
//! attempts, ...). A layer keeps its [`Listeners`] for that type; each
//! listener is any `Fn(&Event) + Send + Sync`. Events are built only when at
//! least one listener is registered, so an unobserved layer pays one branch
//! per event site and allocates nothing.
//!
//! Layers also emit `tracing` events; those cost a cached callsite check when
//! no subscriber is interested.
//!
//! ```
//! use bulwark::event::Listeners;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! #[derive(Debug)]
//! enum MyEvent { Tripped(u32) }
//!
//! let seen = Arc::new(AtomicUsize::new(0));
//! let counter = seen.clone();
//! let listeners = Listeners::new().with(move |e: &MyEvent| {
//!     let MyEvent::Tripped(n) = e;
//!     counter.fetch_add(*n as usize, Ordering::Relaxed);
//! });
//! listeners.emit(|| MyEvent::Tripped(3));
//! assert_eq!(seen.load(Ordering::Relaxed), 3);
//!
//! // With no listener, the event is never even built.
//! Listeners::<MyEvent>::new().emit(|| unreachable!());
//! ```

use std::fmt;
use std::sync::Arc;

/// Receives a layer's events.
///
/// Implemented for every `Fn(&E) + Send + Sync + 'static`. Listeners run
/// inline on the task that caused the event: keep them quick, and hand heavy
/// work to a channel.
pub trait Listener<E>: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &E);
}

impl<E, F> Listener<E> for F
where
    F: Fn(&E) + Send + Sync + 'static,
{
    #[inline]
    fn on_event(&self, event: &E) {
        self(event)
    }
}

/// The listeners registered for one kind of event.
///
/// Cheap to clone (one `Arc`); fixed once the layer is built. Empty by
/// default. One pointer wide (a thin `Arc`), since response futures that
/// may emit an event carry it.
pub struct Listeners<E> {
    #[allow(clippy::redundant_allocation)]
    list: Option<Arc<Vec<Arc<dyn Listener<E>>>>>,
}

impl<E: 'static> Listeners<E> {
    /// No listeners.
    pub const fn new() -> Self {
        Listeners { list: None }
    }

    /// Adds a listener.
    pub fn with(mut self, listener: impl Listener<E>) -> Self {
        self.push(Arc::new(listener));
        self
    }

    /// Adds a listener that may already be shared with other layers.
    pub fn push(&mut self, listener: Arc<dyn Listener<E>>) {
        let mut list: Vec<Arc<dyn Listener<E>>> = match self.list.take() {
            Some(list) => list.iter().cloned().collect(),
            None => Vec::with_capacity(1),
        };
        list.push(listener);
        self.list = Some(Arc::new(list));
    }

    /// Whether no listener is registered.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_none()
    }

    /// How many listeners are registered.
    pub fn len(&self) -> usize {
        self.list.as_ref().map_or(0, |l| l.len())
    }

    /// Builds the event with `make` and hands it to every listener; does
    /// nothing (and never calls `make`) when there is none.
    #[inline]
    pub fn emit(&self, make: impl FnOnce() -> E) {
        if let Some(list) = &self.list {
            let event = make();
            for listener in list.iter() {
                listener.on_event(&event);
            }
        }
    }
}

impl<E: 'static> Default for Listeners<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Clone for Listeners<E> {
    fn clone(&self) -> Self {
        Listeners {
            list: self.list.clone(),
        }
    }
}

impl<E: 'static> fmt::Debug for Listeners<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_listener_sees_every_event_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (seen.clone(), seen.clone());
        let listeners = Listeners::new()
            .with(move |e: &u32| a.lock().unwrap().push(("a", *e)))
            .with(move |e: &u32| b.lock().unwrap().push(("b", *e)));
        assert_eq!(listeners.len(), 2);
        let clone = listeners.clone();
        clone.emit(|| 7);
        assert_eq!(*seen.lock().unwrap(), vec![("a", 7), ("b", 7)]);
    }

    #[test]
    fn empty_listeners_never_build_the_event() {
        let l = Listeners::<u32>::default();
        assert!(l.is_empty());
        l.emit(|| panic!("must not be built"));
    }
}
