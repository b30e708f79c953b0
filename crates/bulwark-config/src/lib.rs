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
//! - Client stacks per upstream from the configuration
//!   ([`ResilienceConfig::client_layer`]), and reloads that apply new
//!   thresholds to live instances without losing their state
//!   ([`ResilienceConfig::apply`]).
//!
//! ```no_run
//! use bulwark::config::ResilienceConfig;
//! use bulwark::BoxError;
//! use bulwark::observe::Registry;
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), BoxError> {
//! let registry = Registry::new();
//! let config = ResilienceConfig::load("bulwark.toml")?;
//! let payments = ServiceBuilder::new()
//!     .layer(config.client_layer("payments", &registry)?)
//!     .service_fn(|req: String| async move { Ok::<_, BoxError>(req) });
//!
//! // Later, on SIGHUP say: new thresholds, same breakers.
//! let config = ResilienceConfig::load("bulwark.toml")?;
//! config.apply(&registry)?;
//! # drop(payments);
//! # Ok(())
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
pub use stack::ClientLayer;
