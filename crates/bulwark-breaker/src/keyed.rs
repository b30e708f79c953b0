//! Keyed breakers: one independent breaker per key taken from the request
//! (a host, an authority, a tenant), with bounded memory.
//!
//! A failing host should not open the breaker for every other host. A
//! [`KeyedCircuitBreakerLayer`] asks a key function for each request's key
//! and guards the call with that key's breaker, made on first use from a
//! template [`BreakerBuilder`].
//!
//! Memory is bounded: at most [`max_keys`](KeyedBreakersBuilder::max_keys)
//! breakers are kept. Breakers idle for longer than
//! [`idle_timeout`](KeyedBreakersBuilder::idle_timeout) are dropped first;
//! when none is idle, the least recently used one goes. A flood of distinct
//! keys therefore costs a bounded map, at worst forgetting the state of the
//! least recently used hosts, and O(1) per key: the breakers are kept in
//! recency order, so finding the one to drop never scans the others (a flood
//! of distinct hosts at a bound of 1,000,000 keys costs about the same per
//! key as at 1,000; the figures are in the repository's `BENCHMARKS.md`).
//!
//! ```
//! use bulwark::breaker::keyed::KeyedCircuitBreakerLayer;
//! use bulwark::breaker::Breaker;
//! use bulwark::BoxError;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breakers = Breaker::builder()
//!     .name("upstream")
//!     .consecutive_failures(3)
//!     .keyed()
//!     .max_keys(1_000)
//!     .idle_timeout(Duration::from_secs(600))
//!     .build()?;
//!
//! // Requests are (host, path) pairs here; the key is the host.
//! let svc = ServiceBuilder::new()
//!     .layer(KeyedCircuitBreakerLayer::new(breakers.clone(), |req: &(String, String)| req.0.clone()))
//!     .service_fn(|req: (String, String)| async move { Ok::<_, BoxError>(req.1) });
//!
//! svc.oneshot(("a.example".into(), "/".into())).await?;
//! assert_eq!(breakers.len(), 1);
//! assert_eq!(breakers.get(&"a.example".to_string()).unwrap().name(), Some("upstream/a.example"));
//! # Ok(())
//! # }
//! ```

use crate::config::{BreakerBuilder, Config};
use crate::error::ConfigError;
use crate::future::KeyedResponseFuture;
use crate::hint::{KeyFn, OpenHint};
use crate::lru::{self, Lru};
use crate::Breaker;
use bulwark_core::classify::{Classify, DefaultClassifier};
use bulwark_core::clock::Instant;
use bulwark_core::BoxError;
use parking_lot::Mutex;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// A bounded set of breakers, one per key, made from one template.
///
/// Cheap to clone; clones share the set. Use it as a handle too: look up a
/// key's breaker, list keys, snapshot them.
pub struct KeyedBreakers<K> {
    inner: Arc<KeyedInner<K>>,
}

struct KeyedInner<K> {
    template: BreakerBuilder,
    /// The template's configuration, shared by every breaker of the set.
    config: Arc<Config>,
    max_keys: usize,
    idle_timeout: Option<Duration>,
    map: Mutex<Lru<K, Entry>>,
    evicted: AtomicU64,
}

struct Entry {
    breaker: Breaker,
    last_used: Instant,
}

/// Builds [`KeyedBreakers`].
#[derive(Debug)]
pub struct KeyedBreakersBuilder {
    template: BreakerBuilder,
    max_keys: usize,
    idle_timeout: Option<Duration>,
}

impl KeyedBreakersBuilder {
    /// A builder whose breakers follow `template`; each key's breaker is
    /// named `"{template name}/{key}"` (or just the key). Same as
    /// [`BreakerBuilder::keyed`].
    pub fn new(template: BreakerBuilder) -> Self {
        KeyedBreakersBuilder {
            template,
            max_keys: 1024,
            idle_timeout: Some(Duration::from_secs(600)),
        }
    }

    /// Keeps at most `max` breakers (default 1,024; at most
    /// 4,294,967,294, a larger bound is lowered to that).
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// Drops a key's breaker once unused for `idle` (default: 10 minutes).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Never drops a breaker for being idle (only for room).
    pub fn no_idle_timeout(mut self) -> Self {
        self.idle_timeout = None;
        self
    }

    /// Validates the template and the bounds.
    pub fn build<K>(self) -> Result<KeyedBreakers<K>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Display,
    {
        self.template.validate()?;
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                "keyed circuit breakers",
                "max_keys",
                "must be at least 1",
            ));
        }
        Ok(KeyedBreakers {
            inner: Arc::new(KeyedInner {
                config: Arc::new(self.template.config.clone()),
                template: self.template,
                max_keys: self.max_keys.min(lru::MAX_LEN),
                idle_timeout: self.idle_timeout,
                map: Mutex::new(Lru::new()),
                evicted: AtomicU64::new(0),
            }),
        })
    }
}

impl<K> KeyedBreakers<K>
where
    K: Hash + Eq + Clone + fmt::Display,
{
    /// The breaker for `key`, made now if there is none.
    ///
    /// O(1): a lookup, and for a new key at the bound one eviction (the
    /// breakers idle for the idle timeout first, then the least recently
    /// used one). The new breaker is made outside the lock.
    pub fn get_or_create(&self, key: &K) -> Breaker {
        let now = Instant::now();
        {
            let mut map = self.inner.map.lock();
            let swept = self.sweep(&mut map, now);
            if let Some(entry) = map.get(key) {
                entry.last_used = now;
                let breaker = entry.breaker.clone();
                drop(map);
                drop(swept);
                return breaker;
            }
        }
        let breaker = self.make(key);
        let mut map = self.inner.map.lock();
        if let Some(entry) = map.get(key) {
            // Another caller made it meanwhile: one breaker per key.
            entry.last_used = now;
            return entry.breaker.clone();
        }
        let mut evicted = None;
        if map.len() >= self.inner.max_keys {
            evicted = map.pop_lru();
            if evicted.is_some() {
                self.inner.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        // `max_keys` is at most `lru::MAX_LEN`, and room was just made.
        let kept = map.push_new(
            key.clone(),
            Entry {
                breaker: breaker.clone(),
                last_used: now,
            },
        );
        drop(map);
        // The last handle of an evicted breaker is freed outside the lock.
        drop(evicted);
        debug_assert!(kept);
        breaker
    }

    /// Drops the least recently used breakers while they have been idle for
    /// the idle timeout: the list is in recency order, so each breaker is
    /// looked at once when it goes, and once per call when it stays.
    /// Returns the last one dropped (for the caller to free outside the
    /// lock; the others, rare, are freed here).
    fn sweep(&self, map: &mut Lru<K, Entry>, now: Instant) -> Option<(K, Entry)> {
        let idle = self.inner.idle_timeout?;
        let mut last = None;
        while map
            .lru()
            .is_some_and(|e| now.saturating_duration_since(e.last_used) >= idle)
        {
            last = map.pop_lru();
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        }
        last
    }

    fn make(&self, key: &K) -> Breaker {
        let t = &self.inner.template;
        let name: Arc<str> = match &t.name {
            Some(prefix) => format!("{prefix}/{key}").into(),
            None => key.to_string().into(),
        };
        Breaker::from_parts(Some(name), self.inner.config.clone(), t.listeners.clone())
    }

    /// The breaker for `key`, if there is one (without counting as a use).
    pub fn get(&self, key: &K) -> Option<Breaker> {
        self.inner.map.lock().peek(key).map(|e| e.breaker.clone())
    }

    /// Every key and its breaker, most recently used first.
    pub fn entries(&self) -> Vec<(K, Breaker)> {
        self.inner
            .map
            .lock()
            .iter()
            .map(|(k, e)| (k.clone(), e.breaker.clone()))
            .collect()
    }

    /// How many breakers are kept.
    pub fn len(&self) -> usize {
        self.inner.map.lock().len()
    }

    /// Whether no breaker is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many breakers were dropped for room or idleness.
    pub fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }
}

impl<K> Clone for KeyedBreakers<K> {
    fn clone(&self) -> Self {
        KeyedBreakers {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedBreakers<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakers")
            .field("keys", &self.inner.map.lock().len())
            .field("max_keys", &self.inner.max_keys)
            .finish()
    }
}

/// Guards every request with the breaker of its key; see the
/// [module docs](self).
#[derive(Clone)]
pub struct KeyedCircuitBreakerLayer<K, F, C = DefaultClassifier, H = ()> {
    breakers: KeyedBreakers<K>,
    key: F,
    classifier: C,
    hint: H,
}

impl<K, F> KeyedCircuitBreakerLayer<K, F> {
    /// A layer keyed by `key(&request)`, with the default classifier.
    pub fn new(breakers: KeyedBreakers<K>, key: F) -> Self {
        KeyedCircuitBreakerLayer {
            breakers,
            key,
            classifier: DefaultClassifier,
            hint: (),
        }
    }
}

impl<K, F, C, H> KeyedCircuitBreakerLayer<K, F, C, H> {
    /// Uses `classifier` to decide what counts as a success or a failure.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, F, C2, H> {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers,
            key: self.key,
            classifier,
            hint: self.hint,
        }
    }

    /// Holds a key's breaker open at least as long as a failed answer asks:
    /// see [`OpenHint`].
    pub fn open_hint<H2>(self, hint: H2) -> KeyedCircuitBreakerLayer<K, F, C, H2> {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers,
            key: self.key,
            classifier: self.classifier,
            hint,
        }
    }

    /// The breakers, as a handle.
    pub fn breakers(&self) -> &KeyedBreakers<K> {
        &self.breakers
    }
}

impl<K, F: Clone, C: Clone, H: Clone, S> Layer<S> for KeyedCircuitBreakerLayer<K, F, C, H> {
    type Service = KeyedCircuitBreaker<S, K, F, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker {
            inner,
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
            hint: self.hint.clone(),
        }
    }
}

impl<K, F, C, H> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

/// A service guarded by one breaker per request key; made by
/// [`KeyedCircuitBreakerLayer`].
///
/// The key is only known in `call`, so `poll_ready` is ready at once and the
/// key's breaker decides in `call`. A refusal is an immediately ready
/// [`CircuitOpen`](crate::error::CircuitOpen) error, without waiting for
/// the inner service's readiness or calling it: an open breaker answers at
/// once even over an inner service that is never ready, as the plain
/// [`CircuitBreaker`](crate::CircuitBreaker) does. An admitted call takes
/// the inner service (leaving a clone in its place, the `mem::replace` idiom
/// of `tower-service`'s docs) and its future waits for that service to be
/// ready, then calls it: readiness is polled before every call, inside the
/// call's future. If the breaker changed state meanwhile, admission is
/// decided again before the call. A half-open probe slot held while waiting
/// is given back if the future is dropped.
///
/// The inner service must therefore be `Clone` (as the services under a
/// per-host breaker are: clients, `Buffer`, bulkheads, timeouts), and the
/// back-pressure of the inner service is felt by awaiting the response
/// future rather than `poll_ready`.
#[derive(Clone)]
pub struct KeyedCircuitBreaker<S, K, F, C = DefaultClassifier, H = ()> {
    inner: S,
    breakers: KeyedBreakers<K>,
    key: F,
    classifier: C,
    hint: H,
}

impl<S, K, F, C, H> KeyedCircuitBreaker<S, K, F, C, H> {
    /// The breakers, as a handle.
    pub fn breakers(&self) -> &KeyedBreakers<K> {
        &self.breakers
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, F, C, H, Req> Service<Req> for KeyedCircuitBreaker<S, K, F, C, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + fmt::Display,
    F: KeyFn<Req, K>,
    C: Classify<S::Response> + Clone,
    H: OpenHint<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = KeyedResponseFuture<S, Req, C, H>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Which breaker decides is known only in `call`; the inner service's
        // readiness is awaited in each admitted call's future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.key.key(&req);
        match self.breakers.get_or_create(&key).try_acquire() {
            Ok(permit) => {
                let clone = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, clone);
                KeyedResponseFuture::waiting(
                    svc,
                    req,
                    permit,
                    self.classifier.clone(),
                    self.hint.clone(),
                )
            }
            Err(open) => KeyedResponseFuture::rejected(open),
        }
    }
}

impl<S: fmt::Debug, K, F, C, H> fmt::Debug for KeyedCircuitBreaker<S, K, F, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}
