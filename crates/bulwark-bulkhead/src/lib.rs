//! A concurrency bulkhead for tower services: at most N calls in flight,
//! failing fast or waiting in a bounded queue, per service, shared, keyed or
//! with an adaptive limit.
//!
//! A [`Bulkhead`] keeps a slow upstream from taking every task, connection
//! and buffer of its caller: past its limit, calls are refused locally with
//! [`BulkheadFull`] instead of piling up.
//!
//! ```
//! use bulwark::bulkhead::{error::{BulkheadFull, BulkheadFullReason}, BulkheadLayer};
//! use bulwark::error::find;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut svc = ServiceBuilder::new()
//!     .layer(BulkheadLayer::new(1))
//!     .service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) });
//! let handle = svc.handle();
//!
//! // The first caller reserves the only permit...
//! let first = svc.ready().await.unwrap().call(1);
//! assert_eq!(handle.in_flight(), 1);
//! // ...so a second one is refused at once (from `call`, not `poll_ready`).
//! let mut other = svc.clone();
//! let err = other.ready().await.unwrap().call(2).await.unwrap_err();
//! assert_eq!(find::<BulkheadFull>(&*err).unwrap().reason(), BulkheadFullReason::AtCapacity);
//!
//! assert_eq!(first.await.unwrap(), 1);
//! assert_eq!(handle.in_flight(), 0);
//! assert_eq!(handle.rejections(), 1);
//! # }
//! ```
//!
//! # Permits
//!
//! `poll_ready` reserves a permit; `call` moves it into the response future,
//! which gives it back when it completes *or is dropped*; a service made ready
//! and dropped without a call gives it back too, so no permit can leak. When
//! none is free, `poll_ready` still answers `Ready(Ok(()))` (an `Err` would
//! mean the service is dead) and `call` returns an immediately ready
//! `BulkheadFull` error. Clones share the limit and start without a permit.
//!
//! # Waiting
//!
//! With [`max_wait`](BulkheadBuilder::max_wait), a caller that finds the
//! bulkhead full waits in `poll_ready`, in a FIFO queue of at most
//! [`max_queued`](BulkheadBuilder::max_queued) callers, up to `max_wait`.
//! A full queue ([`QueueFull`](error::BulkheadFullReason::QueueFull)) or a
//! wait that ran out ([`WaitTimedOut`](error::BulkheadFullReason::WaitTimedOut))
//! rejects the call. Waiting costs nothing to callers that do not wait: the
//! permit count is an atomic, and the queue's short lock is taken only while
//! someone waits.
//!
//! # Shared and keyed
//!
//! [`BulkheadBuilder::build_shared`] makes every service a layer wraps share
//! one limit; [`BulkheadBuilder::build_keyed`] keeps one limit per key taken
//! from the request, for a bounded number of keys (see [`keyed`]).
//!
//! # Adaptive
//!
//! [`BulkheadBuilder::adaptive`] lets the limit move between a minimum and a
//! maximum ([`max_concurrent`](BulkheadBuilder::max_concurrent) unless the
//! algorithm sets its own) from observed latency and failures:
//! [`adaptive::Gradient2`] (recommended), [`adaptive::Vegas`],
//! [`adaptive::Aimd`]. What a result means to the limit is decided by the
//! shared classifier ([`BulkheadBuilder::classifier`]): only failures are
//! congestion. See [`adaptive`] for the algorithms and why Gradient2.
//!
//! # Observing
//!
//! A [`BulkheadHandle`] reads in-flight, queued, limit and rejections;
//! listeners ([`BulkheadBuilder::on_event`]) get a [`BulkheadEvent`] for each
//! rejection and limit change, and `tracing` gets the same at `debug`/`trace`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adaptive;
pub mod error;
pub mod future;
pub mod keyed;
mod layer;
mod limiter;
mod service;
mod sync;

use std::sync::Arc;

pub use error::{BulkheadFull, BulkheadFullReason};
pub use keyed::{KeyedBulkhead, KeyedBulkheadLayer, KeyedHandle};
pub use layer::{BulkheadBuilder, BulkheadLayer};
pub use limiter::BulkheadHandle;
pub use service::Bulkhead;

/// What a bulkhead reports to its listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadEvent {
    /// A call was refused.
    Rejected {
        /// The bulkhead's name, if it has one.
        name: Option<Arc<str>>,
        /// Why.
        reason: BulkheadFullReason,
    },
    /// An adaptive limit moved.
    LimitChanged {
        /// The bulkhead's name, if it has one.
        name: Option<Arc<str>>,
        /// The limit before.
        from: usize,
        /// The limit now.
        to: usize,
    },
}
