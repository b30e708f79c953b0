//! # The recommended client stack, for any tower service
//!
//! [`ClientStack`] puts Bulwark's layers in the order that works, gives
//! them one classifier and one seed, and starts from defaults chosen by
//! what they do in `bulwark-sim`'s scenarios:
//!
//! ```text
//!  request ─▶ total timeout ─▶ retry (budget) ─▶ circuit breaker ─▶ attempt timeout ─▶ bulkhead ─▶ service
//! ```
//!
//! - the **total timeout** bounds what the caller waits, and is the
//!   deadline retry plans within: no retry is started that could not end
//!   before it;
//! - **retry** sits outside the breaker, so the breaker sees every attempt
//!   and retry does not retry its refusals;
//! - the **attempt timeout** sits inside the breaker, so a hung attempt is
//!   a failure it counts;
//! - the **bulkhead** is innermost: it bounds what really reaches the
//!   service, and its refusals are local, not counted by the breaker.
//!
//! # The defaults, and the scenario that chose each
//!
//! | part | default | chosen by (`cargo run --example simulate`; figures in `BENCHMARKS.md`) |
//! |---|---|---|
//! | total timeout | 10 s: set it to what your caller waits | — |
//! | retry | [`RetryLayer::new`](bulwark_retry::RetryLayer::new): 3 attempts, budget 20% | `brownout` (85.0% against 70.2% without, for 1.21 requests per request) |
//! | breaker | [`Breaker::builder`](bulwark_breaker::Breaker::builder)'s (see its table) | `brownout`, `outage`, `black-hole`, `flapping`, `slow-recovery` |
//! | attempt timeout | half the total ([`default_attempt_timeout`]) | `brownout` against `black-hole` |
//! | bulkhead | 100 in flight, fail fast | `black-hole`, `overload` |
//! | adaptive throttle | off | `flapping`, `outage`: it kept shedding after recovery |
//!
//! For HTTP and gRPC, `bulwark-http`'s stack adds status classification,
//! `Retry-After`, idempotent replay and per-host breakers on the same
//! order.
//!
//! ```
//! use bulwark::stack::ClientStack;
//! use bulwark::BoxError;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(ClientStack::new().total_timeout(Duration::from_secs(2)).build()?)
//!     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) });
//! assert_eq!(svc.oneshot(41).await?, 42);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod defaults;
pub mod optional;

/// The attempt timeout a stack uses unless told otherwise: half the total
/// timeout (5 s without one), at least 1 ns.
///
/// Chosen in `bulwark-sim`'s `brownout` (answers 10× slower, 30% failing,
/// a 2 s deadline): a quarter of the total (500 ms) cut the slow answers
/// that would have succeeded and retried them into an upstream already
/// near its capacity (80.4% goodput during the fault); half (1 s) lets
/// them finish and still leaves time for a retry (85.0%, and 1.21 requests
/// per request, as with 500 ms). A black hole is still noticed within
/// 0.5 s, by the bulkhead filling up.
///
/// ```
/// use std::time::Duration;
///
/// let total = Duration::from_secs(2);
/// assert_eq!(bulwark::stack::default_attempt_timeout(Some(total)), Duration::from_secs(1));
/// assert_eq!(bulwark::stack::default_attempt_timeout(None), Duration::from_secs(5));
/// ```
pub fn default_attempt_timeout(total: Option<std::time::Duration>) -> std::time::Duration {
    use std::time::Duration;
    total
        .map_or(Duration::from_secs(5), |t| t / 2)
        .max(Duration::from_nanos(1))
}

pub use client::{
    BreakerParts, ClientLayer, ClientParts, ClientService, ClientStack, KeyedBy, MakeBreaker,
    OneBreaker, StackAttempt, StackBreaker, StackBulkhead, StackRetry, StackThrottle,
};
