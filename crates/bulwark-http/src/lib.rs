//! HTTP and gRPC for Bulwark: make the resilience layers fit hyper, axum,
//! tonic and reqwest as if they were part of them.
//!
//! - [`classify`]: status-based classification ([`HttpClassifier`]: `5xx`
//!   and `408` fail, `429` and answers marked as shed ([`SHED_HEADER`]) are
//!   throttled) and `grpc-status` classification
//!   ([`GrpcClassifier`], reusing tower-http's parser; a streaming answer's
//!   trailers are judged by [`GrpcClassifier::classify_trailers`]).
//! - [`pushback`]: `Retry-After` and `grpc-retry-pushback-ms`, parsed
//!   robustly, as a retry [`Pushback`](bulwark_retry::Pushback)
//!   ([`ServerPushback`]) and fed to the breaker.
//! - [`replay`]: only idempotent requests (or those with an
//!   `Idempotency-Key`) are retried by default ([`HttpReplay`]).
//! - [`body`]: [`ReplayBody`](body::ReplayBody) keeps a streaming body up to a
//!   cap so it can be sent again.
//! - [`response`]: Bulwark errors become responses (503 with `Retry-After`
//!   for an open breaker, 503 with `Retry-After` and `bulwark-shed: 1` for a
//!   shed request, 504 for a dependency's timeout, 503 for the server's
//!   own, ...) without a
//!   `HandleErrorLayer` closure ([`ErrorMapping`], [`MapErrorsLayer`]); with
//!   the `tonic` feature, [`status`] maps them to `tonic::Status`.
//! - [`deadline`]: `grpc-timeout` (and an optional HTTP header) bounds the
//!   work of a server (the [`ServerStack`] honours it) and is set on
//!   outgoing requests from the time left (`DeadlineLayer`,
//!   `PropagateDeadlineLayer`; the [`ClientStack`] does it for gRPC calls,
//!   from its total timeout).
//! - [`stack`]: ready-made [`ClientStack`] and [`ServerStack`] in the order
//!   that works.
//! - `grpc` (feature `tonic`): the gRPC presets, `GrpcClientStack` for a
//!   tonic `Channel` (per-origin breakers, replay, errors as
//!   `tonic::Status`) and `GrpcServerStack`.
//! - `middleware` (feature `reqwest-middleware`): the client stack as a
//!   `reqwest-middleware` middleware, keeping `client.get(url).send()`.
//! - [`origin`]: the upstream of a request whose URI has none, for the
//!   per-host breakers.
//!
//! # Importing
//!
//! Through the facade this crate is `bulwark::http`, the name of the `http`
//! crate that every HTTP program also uses. `use bulwark::http;` hides that
//! crate in its scope, so this module carries the `http` crate's names
//! (re-exported): every type of `http`'s root (`Request`, `Response`,
//! `StatusCode`, `Method`, `Uri`, `Version`, `HeaderMap`, `HeaderName`,
//! `HeaderValue`, `Extensions`, `Error`, `Result`) and its modules
//! `header`, `method`, `request`, `uri` and `version`; the two modules whose
//! names ours take, [`response`] and [`status`], carry `http`'s items of the
//! same names (`http::response::{Builder, Parts}`,
//! `http::status::{StatusCode, InvalidStatusCode}`). Nothing of Bulwark's has
//! a name of `http`'s root. So both styles work, and `http::…` means the same
//! types in either (those of http 1.x, the version Bulwark is built on):
//!
//! ```
//! use bulwark::http; // Bulwark's HTTP module, and the `http` crate's names
//! use bulwark::http::ClientStack;
//!
//! let req = http::Request::builder()
//!     .method(http::Method::POST)
//!     .uri("http://api.local/orders")
//!     .header(http::header::CONTENT_TYPE, "application/json")
//!     .body(String::new())?;
//! let res = http::Response::builder().status(http::StatusCode::CREATED).body(())?;
//! let (parts, ()): (http::response::Parts, ()) = res.into_parts();
//! assert_eq!(parts.status, http::status::StatusCode::CREATED);
//! assert_eq!(req.method(), http::Method::POST);
//! let _layer = ClientStack::new().build()?;
//! # Ok::<(), bulwark::BoxError>(())
//! ```
//!
//! You can still depend on `http` yourself and write `use http::…`
//! elsewhere: it is the same crate (check `cargo tree -d -i http` if the
//! compiler says two `Request` types differ).
//!
//! # Supported versions
//!
//! The integrations are implemented for these releases (the workspace's
//! `tests/tests/supported_versions.rs` fails CI when they drift):
//!
//! | crate | version | feature |
//! |---|---|---|
//! | http, http-body | 1.x | always |
//! | hyper, hyper-util | 1.x, 0.1 | always (any `tower::Service<http::Request<B>>`) |
//! | tower-http | 0.7 (its gRPC classification) | always |
//! | axum | 0.8 | `axum` |
//! | tonic | 0.14 | `tonic` |
//! | reqwest | 0.13 (no TLS backend chosen: enable yours in your `Cargo.toml`) | `reqwest` |
//! | reqwest-middleware | 0.5 (on reqwest 0.13) | `reqwest-middleware` |
//!
//! Rust 1.88 or later (tonic 0.14's `rust-version`). Your project must
//! resolve the same major versions: a `reqwest::Request` of another reqwest
//! is not a request Bulwark knows, and the compiler's error names the
//! missing [`RequestParts`](parts::RequestParts) implementation. Where the
//! compiler cannot name it (an `E0599` "the method `oneshot` exists for enum
//! `Optional<Timeout<...>>`, but its trait bounds were not satisfied" on a
//! stack around your transport), the cause is the same: the transport's
//! request or response is not `http::Request`/`http::Response` of http 1.x
//! or reqwest 0.13's `Request`/`Response` (check `cargo tree -d -i reqwest`
//! and `cargo tree -d -i http`). The `grpc` presets and the
//! `reqwest-middleware` middleware take concrete types and avoid that
//! error altogether.
//!
//! # Example: a client stack
//!
//! ```
//! use bulwark::http::ClientStack;
//! use http_body_util::BodyExt;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), bulwark::BoxError> {
//! let layer = ClientStack::new()
//!     .total_timeout(Duration::from_secs(5))
//!     .attempt_timeout(Duration::from_secs(1))
//!     .build()?;
//! // Any `tower::Service<http::Request<B>>` with a `Clone` body: hyper-util's
//! // client, a tonic channel, or here a stand-in.
//! let client = ServiceBuilder::new().layer(layer).service_fn(|req: http::Request<String>| async move {
//!     Ok::<_, std::io::Error>(http::Response::new(req.uri().path().to_owned()))
//! });
//! let res = client.oneshot(http::Request::get("http://api.local/users").body(String::new())?).await?;
//! // The total and attempt timeouts cover the body too.
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "/users");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod breaker;
pub mod classify;
pub mod deadline;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
pub use bulwark_stack::optional;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod middleware;
pub mod origin;
pub mod parts;
pub mod pushback;
pub mod replay;
pub mod response;
pub mod response_timeout;
pub mod stack;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod status;
// Without `tonic`, `status` is the `http` crate's, so that `http::status::*`
// works after `use bulwark::http;` either way.
#[cfg(not(feature = "tonic"))]
#[doc(no_inline)]
pub use http::status;
pub mod verdict;

pub use classify::{GrpcClassifier, HttpClassifier};
pub use pushback::ServerPushback;
pub use replay::HttpReplay;
pub use response::{ErrorMapping, MapErrorsLayer, SHED_HEADER};
pub use stack::{ClientStack, ServerStack};

// The `http` crate's names (see "Importing" above): `use bulwark::http;`
// hides the `http` crate in that scope, so its paths must keep working
// through this one. `response` and `status` are ours and carry `http`'s
// items of the same modules. (The facade inlines this crate, so its pages
// list these types too; rustdoc drops `no_inline` and `hidden` there.)
#[doc(no_inline)]
pub use http::{
    header, method, request, uri, version, Error, Extensions, HeaderMap, HeaderName, HeaderValue,
    Method, Request, Response, Result, StatusCode, Uri, Version,
};
