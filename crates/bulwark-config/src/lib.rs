//! # Configuring Bulwark from files and the environment
//!
//! - Every layer's settings as a `serde` struct with documented defaults and
//!   humantime durations (`"30s"`, `"250ms"`): [`BreakerConfig`],
//!   [`RetryConfig`], [`RetryBudgetConfig`], [`TimeoutConfig`],
//!   [`BulkheadConfig`], [`KeyedBreakerConfig`].
//! - A whole [`ResilienceConfig`] from a TOML file with `BULWARK_`
//!   environment overrides (read with [figment](https://docs.rs/figment)):
//!   shared defaults, named instances overriding them, and a global switch
//!   that turns every layer into a pass-through.
//! - `[fleet]` ([`FleetConfig`]): the Redis that layers with
//!   `shared = true` sync through (`bulwark-fleet`, feature `fleet`), and
//!   `[ratelimit.NAME]` ([`RateLimitConfig`]): a rate limit per upstream,
//!   local or fleet-wide.
//! - Validation that names the setting and the reason ([`LoadError`]);
//!   never a panic, never a silent default. Durations are bounded by
//!   [`MAX_DURATION`] (one year): longer ones are refused.
//! - The stacks built from it, registered for health and metrics: the HTTP
//!   and gRPC client stack of an upstream
//!   ([`ResilienceConfig::http_client_stack`], feature `http`), the server
//!   stack of this service ([`ResilienceConfig::server_stack`]), the
//!   generic stack for any other `tower::Service`
//!   ([`ResilienceConfig::client_layer`]), and fleet-wide rate limits and
//!   breaker gates in front of them ([`ResilienceConfig::fleet_layer`]).
//! - Reloads: [`ResilienceConfig::apply`] gives live instances their new
//!   thresholds and limits without losing their state, and the
//!   `reload::Reloader` (feature `reload`, the facade's `config-reload`)
//!   watches the file and SIGHUP, applies what it can in place and reports
//!   what needs a rebuild or a restart, and which `BULWARK_` variables
//!   override the file.
//!
//! ```no_run
//! # #[cfg(feature = "http")] {
//! // Features `config` and `http` of `bulwark` (`reqwest` for its client).
//! use bulwark::config::ResilienceConfig;
//! use bulwark::observe::Registry;
//! use tower::ServiceBuilder;
//!
//! # fn run() -> Result<(), bulwark::BoxError> {
//! let registry = Registry::new();
//! let config = ResilienceConfig::load("bulwark.toml")?;
//! # let transport = tower::service_fn(|_: http::Request<String>| async {
//! #     Ok::<_, std::io::Error>(http::Response::new(String::new()))
//! # });
//! // The upstream's HTTP stack over its transport (`reqwest::Client::new()`,
//! // a hyper client): `[timeout.payments]`, `[retry.payments]`,
//! // `[breaker.payments]` (each host's breaker), `[bulkhead.payments]`.
//! let payments = ServiceBuilder::new()
//!     .layer(config.http_client_stack("payments", &registry)?.build()?)
//!     .service(transport);
//! // This service's own: `[bulkhead.server]`, `[timeout.server]`; for axum,
//! // `Router::new().route(..).layer(server)`.
//! let server = config.server_stack("server", &registry).build()?;
//!
//! // Later, on SIGHUP say (or let `reload::Reloader` do it): new thresholds,
//! // same breakers and bulkheads.
//! let config = ResilienceConfig::load("bulwark.toml")?;
//! config.apply(&registry)?;
//! # drop((payments, server));
//! # Ok(())
//! # }
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod fleet;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
mod http;
pub mod layers;
mod load;
#[cfg(feature = "reload")]
#[cfg_attr(docsrs, doc(cfg(feature = "reload")))]
pub mod reload;
mod shared;
mod stack;

pub use error::{LoadError, ReloadError};
pub use fleet::FleetConfig;
pub use layers::{
    BreakerConfig, BulkheadConfig, KeyedBreakerConfig, RateLimitConfig, RetryBudgetConfig,
    RetryConfig, TimeoutConfig, MAX_DURATION,
};
pub use load::{Defaults, Loader, ResilienceConfig};
pub use shared::FleetLayer;
pub use stack::UpstreamLayer;
