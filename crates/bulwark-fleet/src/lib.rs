//! Fleet-wide resilience on Redis: one rate limit and one circuit breaker
//! for all the instances of a service, with the local layer still
//! authoritative and fast.
//!
//! A service that runs as N instances learns alone today: each breaker
//! sees 1/N of the traffic, and a limit such as "at most 500 requests/s to
//! the payments provider" cannot be said at all. This crate shares coarse
//! state through Redis, *asynchronously*: a background task per shared
//! layer publishes and reads state every sync interval, and the request
//! path reads only what that task last learned, from atomics. Redis being
//! slow or gone never blocks or fails a request: each layer falls back to
//! a local decision within a bounded time, says so (an event, a metric)
//! and rejoins by itself.
//!
//! - [`FleetRateLimiter`]: GCRA in one atomic Lua script per limiter on
//!   Redis's clock, with a local lease of tokens (no Redis call per
//!   request); behind [`bulwark_ratelimit::RateLimitLayer`].
//! - [`SharedBreakerLayer`]: a fleet-wide gate in front of a local breaker:
//!   the instances publish their window counts in batches, the gate opens
//!   everywhere when the fleet's failure rate crosses its threshold, and
//!   half-open probes are limited fleet-wide by a short lease.
//! - [`SharedRetryBudget`]: the fleet's retries stay within their ratio of
//!   the fleet's requests (one budget, not N).
//!
//! ```no_run
//! use bulwark_fleet::{Fleet, FleetRateLimiter, SharedBreakerLayer};
//! use bulwark_ratelimit::RateLimitLayer;
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fleet = Fleet::builder().url("redis://127.0.0.1:6379").prefix("checkout").build().unwrap();
//! let limiter = FleetRateLimiter::builder(&fleet, "payments")
//!     .limit(500, Duration::from_secs(1))
//!     .build()
//!     .unwrap();
//! let shared = SharedBreakerLayer::builder(&fleet, "payments")
//!     .failure_rate(0.5)
//!     .minimum_calls(20)
//!     .open_for(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(shared)
//!     .layer(RateLimitLayer::new(limiter))
//!     .service_fn(|req: u32| async move { Ok::<_, bulwark_core::BoxError>(req) });
//! # drop(svc);
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod budget;
mod fleet;
mod limiter;

pub use breaker::{
    FleetState, ResponseFuture, ShareBreaker, SharedBreaker, SharedBreakerBuilder,
    SharedBreakerLayer, SharedBreakerSnapshot,
};
pub use budget::{SharedRetryBudget, SharedRetryBudgetSnapshot};
pub use fleet::{Fleet, FleetBuilder, FleetEvent};
pub use limiter::{FleetRateLimiter, FleetRateLimiterBuilder, FleetRateLimiterSnapshot};
