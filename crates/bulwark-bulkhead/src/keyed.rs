//! Keyed partitions: one limit per key taken from the request (a host, a
//! tenant, an operation), with a bounded number of keys.
//!
//! The key is only known in `call`, so a keyed bulkhead cannot reserve its
//! permit in `poll_ready` and does not wait: `poll_ready` waits for the inner
//! service only, and `call` takes a permit of the request's partition or fails
//! at once with [`BulkheadFull`]. When `max_keys`
//! partitions exist, idle ones (nothing in flight) are forgotten to make room;
//! if every partition is busy, a call with a new key is rejected, so memory
//! stays bounded. A call's permit is taken under the same lock that evicts,
//! so a partition is never forgotten while a call for its key is being
//! admitted: the per-key limit holds at every instant.
//!
//! ```
//! use bulwark::bulkhead::BulkheadLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // At most 2 calls in flight per host, at most 1000 hosts remembered.
//! let layer = BulkheadLayer::builder()
//!     .max_concurrent(2)
//!     .build_keyed(|req: &(&'static str, u32)| req.0, 1000);
//! let handle = layer.handle();
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|req: (&'static str, u32)| async move { Ok::<_, std::convert::Infallible>(req.1) });
//! assert_eq!(svc.oneshot(("a.example", 7)).await.unwrap(), 7);
//! assert_eq!(handle.keys(), 1);
//! # }
//! ```

use crate::error::BulkheadFullReason;
use crate::future::ResponseFuture;
use crate::layer::Config;
use crate::limiter::{Limiter, Permit};
use crate::sync::Arc;
use bulwark_core::error::BulkheadFull;
use bulwark_core::BoxError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

struct Partitions<K> {
    map: Mutex<HashMap<K, Arc<Limiter>>>,
    max_keys: usize,
    config: Config,
    overflow: AtomicU64,
}

/// Why a keyed call got no permit.
enum NoPermit {
    /// The key's partition is at its limit.
    Busy(Arc<Limiter>),
    /// Every partition is busy and no new key fits.
    NoRoom,
}

impl<K: Hash + Eq> Partitions<K> {
    /// Takes a permit of `key`'s partition, creating the partition if there
    /// is room.
    ///
    /// The permit is taken while the map lock is held: eviction (which also
    /// runs under the lock) forgets only partitions with nothing in flight,
    /// so a partition can never be forgotten between being looked up and
    /// handing out its permit, and a key never has two limiters at once.
    fn acquire(&self, key: K) -> Result<Permit, NoPermit> {
        let mut map = self.map.lock();
        if let Some(l) = map.get(&key) {
            return if l.try_acquire() {
                Ok(Permit::new(l.clone()))
            } else {
                Err(NoPermit::Busy(l.clone()))
            };
        }
        if map.len() >= self.max_keys {
            map.retain(|_, l| l.in_flight() > 0);
            if map.len() >= self.max_keys {
                return Err(NoPermit::NoRoom);
            }
        }
        let limiter = self.config.fail_fast().limiter();
        let permit = if limiter.try_acquire() {
            Ok(Permit::new(limiter.clone()))
        } else {
            Err(NoPermit::Busy(limiter.clone()))
        };
        map.insert(key, limiter);
        permit
    }
}

/// Applies a [`KeyedBulkhead`]; built by
/// [`BulkheadBuilder::build_keyed`](crate::BulkheadBuilder::build_keyed).
///
/// Every service the layer wraps shares its partitions.
pub struct KeyedBulkheadLayer<F, K> {
    key: F,
    partitions: Arc<Partitions<K>>,
}

impl<F, K> KeyedBulkheadLayer<F, K> {
    pub(crate) fn new(config: Config, key: F, max_keys: usize) -> Self {
        KeyedBulkheadLayer {
            key,
            partitions: Arc::new(Partitions {
                map: Mutex::new(HashMap::new()),
                max_keys: max_keys.max(1),
                config,
                overflow: AtomicU64::new(0),
            }),
        }
    }

    /// A handle to the partitions.
    pub fn handle(&self) -> KeyedHandle<K> {
        KeyedHandle {
            partitions: self.partitions.clone(),
        }
    }
}

impl<F: Clone, K> Clone for KeyedBulkheadLayer<F, K> {
    fn clone(&self) -> Self {
        KeyedBulkheadLayer {
            key: self.key.clone(),
            partitions: self.partitions.clone(),
        }
    }
}

impl<F, K> fmt::Debug for KeyedBulkheadLayer<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadLayer")
            .field("max_keys", &self.partitions.max_keys)
            .field("config", &self.partitions.config)
            .finish()
    }
}

impl<S, F: Clone, K> Layer<S> for KeyedBulkheadLayer<F, K> {
    type Service = KeyedBulkhead<S, F, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBulkhead {
            inner,
            key: self.key.clone(),
            partitions: self.partitions.clone(),
            _key: PhantomData,
        }
    }
}

/// A bulkhead with one fail-fast limit per key (see the
/// [module docs](crate::keyed)).
pub struct KeyedBulkhead<S, F, K> {
    inner: S,
    key: F,
    partitions: Arc<Partitions<K>>,
    _key: PhantomData<fn() -> K>,
}

impl<S, F, K> KeyedBulkhead<S, F, K> {
    /// A handle to the partitions.
    pub fn handle(&self) -> KeyedHandle<K> {
        KeyedHandle {
            partitions: self.partitions.clone(),
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

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, F: Clone, K> Clone for KeyedBulkhead<S, F, K> {
    fn clone(&self) -> Self {
        KeyedBulkhead {
            inner: self.inner.clone(),
            key: self.key.clone(),
            partitions: self.partitions.clone(),
            _key: PhantomData,
        }
    }
}

impl<S: fmt::Debug, F, K> fmt::Debug for KeyedBulkhead<S, F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkhead")
            .field("inner", &self.inner)
            .field("max_keys", &self.partitions.max_keys)
            .finish()
    }
}

impl<S, F, K, Req> Service<Req> for KeyedBulkhead<S, F, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: Fn(&Req) -> K,
    K: Hash + Eq,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key)(&req);
        match self.partitions.acquire(key) {
            Ok(mut permit) => {
                permit.start();
                ResponseFuture::called(self.inner.call(req), permit)
            }
            Err(NoPermit::Busy(limiter)) => {
                ResponseFuture::rejected(limiter.reject(BulkheadFullReason::AtCapacity))
            }
            Err(NoPermit::NoRoom) => {
                self.partitions.overflow.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("keyed bulkhead has no room for another key");
                let full = BulkheadFull::at_capacity();
                ResponseFuture::rejected(match &self.partitions.config.name {
                    Some(name) => full.with_name(name.clone()),
                    None => full,
                })
            }
        }
    }
}

/// A view of a keyed bulkhead's partitions.
pub struct KeyedHandle<K> {
    partitions: Arc<Partitions<K>>,
}

impl<K> Clone for KeyedHandle<K> {
    fn clone(&self) -> Self {
        KeyedHandle {
            partitions: self.partitions.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedHandle")
            .field("keys", &self.partitions.map.lock().len())
            .finish()
    }
}

impl<K: Hash + Eq> KeyedHandle<K> {
    /// How many partitions exist now.
    pub fn keys(&self) -> usize {
        self.partitions.map.lock().len()
    }

    /// Calls in flight for `key` (0 when it has no partition).
    pub fn in_flight(&self, key: &K) -> usize {
        self.partitions
            .map
            .lock()
            .get(key)
            .map_or(0, |l| l.in_flight())
    }

    /// Calls rejected because every partition was busy and no new key fit.
    pub fn overflow_rejections(&self) -> u64 {
        self.partitions.overflow.load(Ordering::Relaxed)
    }
}
