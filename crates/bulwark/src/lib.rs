//! # Bulwark: resilience for any tower service
//!
//! Bulwark is a set of [tower] layers that make a service resilient by
//! composition: a circuit breaker, retries with backoff and budgets,
//! timeouts, a concurrency bulkhead and fallbacks. They work around any
//! `tower::Service` (hyper, axum, tonic and reqwest clients and servers) and
//! stack in a `tower::ServiceBuilder`; nothing else about the service
//! changes.
//!
//! Every layer is behind a feature of the same name; `layers` (the default)
//! turns them all on:
//!
//! | feature    | module        | what it gives                                         |
//! |------------|---------------|-------------------------------------------------------|
//! | `breaker`  | [`breaker`]   | circuit breaker, keyed breakers                       |
//! | `retry`    | [`retry`]     | retry with backoff, budgets, pushback; hedging        |
//! | `timeout`  | [`timeout`]   | fixed or per-request timeouts                         |
//! | `bulkhead` | [`bulkhead`]  | concurrency limits: fail fast or bounded wait, adaptive |
//! | `fallback` | [`fallback`]  | values, closures, backup services, stale-if-error     |
//! | `stack`    | [`stack`]     | the recommended client stack for any service, in the order that works |
//! | `throttle` | [`throttle`]  | client-side adaptive throttling from the accept rate  |
//! | `ratelimit` | [`ratelimit`] | rate limits (GCRA), global or keyed, failing fast with when to retry |
//!
//! All layers share one [`Classify`] concept (what counts as a failure), the
//! same error helpers ([`error::find`]) and the same cheap event listeners.
//!
//! To run them in production (off by default; `full` turns on all of them):
//!
//! | feature    | module        | what it gives                                         |
//! |------------|---------------|-------------------------------------------------------|
//! | `http`     | `http`        | HTTP and gRPC classifiers, pushback, replay, client and server stacks |
//! | `axum`, `tonic`, `reqwest` | `http` | the glue for each (with `observe`, `axum` also gives the health router); `tonic` gives the gRPC presets (`http::grpc`) |
//! | `reqwest-middleware` | `http::middleware` | the client stack as a `reqwest-middleware` middleware, keeping `client.get(url).send()` |
//! | `observe`  | `observe`     | a registry of named instances, health                 |
//! | `metrics`  | `observe`     | everything reported through the `metrics` facade      |
//! | `config`   | `config`      | TOML files and `BULWARK_` environment variables (with `http`, the HTTP stacks from them) |
//! | `config-reload` | `config::reload` | the reload loop: file watch and SIGHUP |
//! | `fleet`    | `fleet`       | rate limits, breakers and retry budgets shared by every instance through Redis (with `config`: `[fleet]`, `shared = true`) |
//! | `fleet-cluster` | `fleet`  | `fleet` on a Redis Cluster (`redis+cluster://host:port,host:port`) |
//!
//! `bulwark::http` takes the name of the `http` crate, so it carries that
//! crate's names too: after `use bulwark::http;`, `http::Request`,
//! `http::StatusCode`, `http::header::CONTENT_TYPE`, `http::request::Parts`
//! and the rest are the `http` crate's (1.x) types, and Bulwark's are beside
//! them (`http::ClientStack`). Write either `use bulwark::http;` or
//! `use bulwark::http::{ClientStack, ServerStack};` with `http` from your
//! own `Cargo.toml`: both name the same types (see the crate docs of
//! `bulwark::http`, "Importing").
//!
//! `sim`, the virtual-time fault simulator that shows what a stack does while
//! its upstream fails (and a chaos layer for game days), is a tool rather
//! than a runtime part, so `full` leaves it out.
//!
//! # Quick start
//!
//! ```
//! use bulwark::prelude::*;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = Breaker::builder().name("inventory").build()?;
//!
//! // Outermost first: retry sees what the breaker, the attempt timeout and
//! // the bulkhead let through.
//! let svc = ServiceBuilder::new()
//!     .retry_with(RetryLayer::new().max_attempts(3))
//!     .circuit_breaker(breaker.clone())
//!     .timeout_after(Duration::from_secs(2))
//!     .bulkhead(32)
//!     .service_fn(|id: u32| async move { Ok::<_, BoxError>(id * 2) });
//!
//! assert_eq!(svc.oneshot(21).await?, 42);
//! assert_eq!(breaker.state(), State::Closed);
//! # Ok(())
//! # }
//! ```
//!
//! # The order of a stack
//!
//! A typical client, outermost first:
//!
//! ```text
//! fallback → total timeout → retry (budget) → circuit breaker → attempt timeout → bulkhead → transport
//! ```
//!
//! - the **breaker** sits inside retry, so it sees every attempt and retry
//!   does not retry its rejections;
//! - the **attempt timeout** sits inside retry (each attempt gets its own
//!   limit) and inside the breaker (a timeout counts as a failure);
//! - the **total timeout** sits outside retry, bounding the whole call;
//! - the **bulkhead** is innermost, limiting what really reaches the
//!   transport; the breaker above does not count its rejections;
//! - **fallback** is outermost: it sees only what nothing else could save.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use bulwark_core::{backoff, classify, clock, error, event};
pub use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};

#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
#[doc(inline)]
pub use bulwark_breaker as breaker;

#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
#[doc(inline)]
pub use bulwark_retry as retry;

#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
#[doc(inline)]
pub use bulwark_timeout as timeout;

#[cfg(feature = "bulkhead")]
#[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
#[doc(inline)]
pub use bulwark_bulkhead as bulkhead;

#[cfg(feature = "fallback")]
#[cfg_attr(docsrs, doc(cfg(feature = "fallback")))]
#[doc(inline)]
pub use bulwark_fallback as fallback;

#[cfg(feature = "stack")]
#[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
#[doc(inline)]
pub use bulwark_stack as stack;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[doc(inline)]
pub use bulwark_http as http;

#[cfg(feature = "observe")]
#[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
#[doc(inline)]
pub use bulwark_observe as observe;

#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
#[doc(inline)]
pub use bulwark_config as config;

#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
#[doc(inline)]
pub use bulwark_sim as sim;
#[cfg(feature = "throttle")]
#[cfg_attr(docsrs, doc(cfg(feature = "throttle")))]
#[doc(inline)]
pub use bulwark_throttle as throttle;

#[cfg(feature = "ratelimit")]
#[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
#[doc(inline)]
pub use bulwark_ratelimit as ratelimit;

#[cfg(feature = "fleet")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
#[doc(inline)]
pub use bulwark_fleet as fleet;

mod builder;

pub use builder::ResilienceBuilderExt;

/// The names most programs need: `use bulwark::prelude::*;`.
pub mod prelude {
    pub use crate::builder::ResilienceBuilderExt;
    pub use bulwark_core::backoff::{BackoffPolicy, Jitter};
    pub use bulwark_core::error::{
        find, is_caused_by, BulkheadFull, CircuitOpen, RateLimited, ThrottledLocally,
    };
    pub use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};

    #[cfg(feature = "breaker")]
    pub use bulwark_breaker::{Breaker, CircuitBreakerLayer, State};
    #[cfg(feature = "bulkhead")]
    pub use bulwark_bulkhead::BulkheadLayer;
    #[cfg(feature = "fallback")]
    pub use bulwark_fallback::FallbackLayer;
    #[cfg(feature = "ratelimit")]
    pub use bulwark_ratelimit::{RateLimitLayer, RateLimiter};
    #[cfg(feature = "retry")]
    pub use bulwark_retry::{HedgeLayer, RetryBudget, RetryLayer};
    #[cfg(feature = "throttle")]
    pub use bulwark_throttle::AdaptiveThrottleLayer;
    #[cfg(feature = "timeout")]
    pub use bulwark_timeout::{Elapsed, TimeoutLayer};
}

/// The README's code, compiled and run as a doctest so it never goes stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
