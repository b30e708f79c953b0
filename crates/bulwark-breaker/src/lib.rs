//! Circuit breaker middleware for [tower] services.
//!
//! A circuit breaker watches how calls to an upstream end and, when too many
//! fail (or are too slow), stops calling it for a while: callers get a
//! [`CircuitOpen`] error at once instead of waiting on a
//! service that is down, and the upstream gets room to recover. After the
//! open duration, a few probe calls test it; enough successes close the
//! breaker again.
//!
//! ```text
//!            trip policy met                open duration elapsed
//!  Closed ───────────────────▶ Open ─────────────────────────────▶ HalfOpen
//!    ▲                          ▲                                    │  │
//!    │                          └──────── a probe fails ─────────────┘  │
//!    └─────────────────────── enough probes succeed ────────────────────┘
//! ```
//!
//! - **Trip policies**: failure rate and slow-call rate over a count-based
//!   window (the last N calls) or a time-based window (buckets), judged once
//!   a minimum number of calls is recorded; and consecutive failures. O(1)
//!   per call, fixed memory.
//! - **Open**: a fixed duration, or one that grows with repeated trips
//!   ([`BackoffPolicy`](bulwark_core::backoff::BackoffPolicy): exponential, capped,
//!   jittered).
//! - **Half-open**: at most N probes in flight across all clones; a probe
//!   that is dropped gives its slot back.
//! - **Control**: a [`Breaker`] is also a handle: state, [`Snapshot`], force
//!   open, force closed, metrics-only, reset.
//! - **Keyed**: [`keyed`] keeps one breaker per key (e.g. per host) with
//!   bounded memory.
//! - **What counts as a failure** is decided by a
//!   [`Classify`](bulwark_core::Classify) shared with Bulwark's other layers.
//!   By default every `Err` is a failure except Bulwark's own local
//!   rejections (a full bulkhead further in is local overload, not an
//!   upstream failure).
//!
//! # Example
//!
//! ```
//! use bulwark::breaker::{Breaker, CircuitBreakerLayer, State};
//! use bulwark::{error::{find, CircuitOpen}, BoxError};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::builder()
//!     .name("search")
//!     .count_window(10)
//!     .minimum_calls(4)
//!     .failure_rate(0.5)
//!     .open_for(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service_fn(|fail: bool| async move {
//!         if fail { Err::<(), BoxError>("upstream error".into()) } else { Ok(()) }
//!     });
//!
//! for fail in [false, true, false, true] {
//!     let _ = svc.ready().await.unwrap().call(fail).await;
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
//! let open = find::<CircuitOpen>(&*err).unwrap();
//! assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
//!
//! tokio::time::advance(Duration::from_secs(5)).await;
//! svc.ready().await.unwrap().call(false).await.unwrap(); // a probe
//! assert_eq!(breaker.state(), State::HalfOpen);
//! # }
//! ```
//!
//! # Where it goes in a stack
//!
//! Put the breaker inside retry (so it sees every attempt, and retry does not
//! retry its rejections) and outside the per-attempt timeout (so a timeout
//! counts as a failure):
//!
//! ```text
//! fallback → total timeout → retry → circuit breaker → attempt timeout → bulkhead → service
//! ```
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod config;
pub mod error;
pub mod event;
pub mod future;
pub mod hint;
pub mod keyed;
mod layer;
mod lru;
mod service;
mod state;
mod window;

pub use breaker::{Breaker, Permit, Snapshot, Thresholds};
pub use config::{BreakerBuilder, WindowKind};
pub use error::{CallError, CircuitOpen, ConfigError};
pub use event::{BreakerEvent, BreakerEventKind};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreaker;
pub use state::{State, Transition, TransitionReason};
