//! gRPC presets for tonic: a client stack for a `Channel`, a server stack for
//! a `Server`.
//!
//! # Client
//!
//! [`GrpcClientStack`] is the [`ClientStack`] set up for gRPC, in one piece
//! a generated client takes as its transport:
//!
//! - **classification** by `grpc-status` ([`GrpcClassifier`]), a streamed
//!   answer judged by its trailers when it ends;
//! - **replay**: each call's body is kept (up to
//!   [`replay_limit`](GrpcClientStack::replay_limit), 64 KiB by default) so a
//!   failed call can be sent again; a larger body is sent once. Every call
//!   may be retried, whatever its method (every gRPC call is a `POST`), as
//!   gRPC's own retry policy does: the status decides (`UNAVAILABLE` and the
//!   other failures, and `RESOURCE_EXHAUSTED` after the server's pushback);
//! - **one breaker per origin**: above a tonic `Channel`, requests carry no
//!   authority (the channel adds it below), so the stack keys its breakers
//!   on the request's authority when it has one, else on the origin you name
//!   (`GrpcClientStack::new("payments.internal:50051")`), never on a shared
//!   `unknown`. One layer over several channels: give each its origin with
//!   [`GrpcClientLayer::for_origin`], they share breakers, budget and bulkhead;
//! - **errors as `tonic::Status`** ([`to_client_status`]): an open breaker
//!   or a full bulkhead is `UNAVAILABLE`, a timeout `DEADLINE_EXCEEDED`, local
//!   throttling `RESOURCE_EXHAUSTED`, each with its message, instead of the
//!   `UNKNOWN` a generated client makes of other errors;
//! - **deadlines**: each attempt carries `grpc-timeout` (the time left); a
//!   server that runs out of it answers `CANCELLED` "Timeout expired", which
//!   is neither counted against the upstream nor retried (see
//!   [`classify`](crate::classify)).
//!
//! ```
//! use bulwark::http::grpc::GrpcClientStack;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = GrpcClientStack::new("payments.internal:50051")
//!     .client_stack(|s| s.total_timeout(Duration::from_secs(2)))
//!     .build()?;
//! let channel = tonic::transport::Endpoint::from_static("http://payments.internal:50051").connect_lazy();
//! let svc = tower::Layer::layer(&layer, channel);
//! // let mut client = HealthClient::new(svc);  // any generated client
//! # let _ = svc;
//! # Ok(())
//! # }
//! ```
//!
//! # Server
//!
//! [`GrpcServerStack`] is the [`ServerStack`] whose errors answer as gRPC
//! statuses ([`GrpcErrors`]): a shed call `RESOURCE_EXHAUSTED` with
//! `grpc-retry-pushback-ms` (a Bulwark client backs off and retries, its
//! breaker stays closed), a timeout `DEADLINE_EXCEEDED`.
//!
//! A call the server's own timeout ended is a failure for a Bulwark client
//! (`DEADLINE_EXCEEDED`, as [`GrpcClassifier`] counts it): retried within the
//! client's retry budget and deadline, as its own attempt timeouts are, and
//! counted by its breaker, since a server that cannot answer in time is
//! failing. A deadline the *client* sent that ran out on the server is not
//! (it answers `CANCELLED`, see above). To neither retry nor count a
//! server's timeouts, give the client
//! `GrpcClassifier::new().not_failure(GrpcCode::DeadlineExceeded)`.
//!
//! ```
//! use bulwark::http::grpc::GrpcServerStack;
//! use std::time::Duration;
//!
//! let layer = GrpcServerStack::new()
//!     .server_stack(|s| s.bulkhead(|b| b.max_concurrent(64)).timeout(Duration::from_secs(5)))
//!     .build()
//!     .unwrap();
//! // tonic::transport::Server::builder().layer(layer).add_service(..)
//! # let _ = layer;
//! ```
//!
//! # Health and metrics
//!
//! Both presets are registered in one call, as the HTTP stacks are:
//! [`GrpcClientStack::registry`] and [`GrpcServerStack::registry`] (feature
//! `observe`) put every part in a `Registry`, so that `/health/resilience`,
//! `/health/ready` and the `bulwark_*` metrics show them.

use crate::body::{ReplayBody, ReplayGuardLayer, DEFAULT_REPLAY_LIMIT};
use crate::origin::Origin;
use crate::pushback::GRPC_RETRY_PUSHBACK_MS;
use crate::replay::HttpReplay;
use crate::response::ErrorToResponse;
use crate::stack::{ClientLayer, ClientService, ServerLayer};
use crate::status::{to_client_status, to_status};
use crate::{ClientStack, GrpcClassifier, ServerStack};
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_core::error::ConfigError;
use bulwark_core::error::{is_caused_by, BulkheadFull};
use bulwark_core::BoxError;
use bulwark_retry::RetryBudget;
use http::uri::Authority;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

/// The client stack for tonic; see the [module docs](self).
///
/// | part | default |
/// |---|---|
/// | the stack | [`ClientStack`]'s defaults, with [`GrpcClassifier`], every call replayable, breakers named `grpc` ([`default_stack`](Self::default_stack)) |
/// | breaker key | the request's authority, else the origin given to [`new`](Self::new) |
/// | replay | bodies up to 64 KiB ([`replay_limit`](Self::replay_limit)) |
/// | errors | `tonic::Status` ([`to_client_status`]) |
#[derive(Debug)]
pub struct GrpcClientStack {
    origin: String,
    stack: ClientStack<GrpcClassifier>,
    replay_limit: usize,
}

impl GrpcClientStack {
    /// The preset for calls to `origin`: `host[:port]`, a name
    /// (`payments`), or the endpoint's URI (`http://10.0.0.7:50051`). It keys
    /// the breaker of every request that carries no authority of its own.
    pub fn new(origin: impl Into<String>) -> Self {
        GrpcClientStack {
            origin: origin.into(),
            stack: Self::default_stack(),
            replay_limit: DEFAULT_REPLAY_LIMIT,
        }
    }

    /// The client stack the preset starts from: [`ClientStack::new`] with
    /// [`GrpcClassifier`], [`HttpReplay::retry_all`] and its breakers named
    /// `grpc`.
    pub fn default_stack() -> ClientStack<GrpcClassifier> {
        ClientStack::new()
            .breaker(|b| b.name("grpc"))
            .classifier(GrpcClassifier::new())
            .replay(HttpReplay::new().retry_all())
    }

    /// Names the stack `name` and registers every part in `registry`
    /// (feature `observe`), as [`ClientStack::registry`] does: the
    /// per-origin breakers, retry, its budget, the timeouts and the bulkhead
    /// show in health and metrics under `name`.
    ///
    /// ```
    /// use bulwark::http::grpc::GrpcClientStack;
    /// use bulwark::observe::{Kind, Registry};
    ///
    /// let registry = Registry::new();
    /// let layer = GrpcClientStack::new("payments.internal:50051")
    ///     .registry(&registry, "payments")
    ///     .build()
    ///     .unwrap();
    /// assert!(registry.get_keyed_breakers::<http::uri::Authority>("payments").is_some());
    /// assert!(registry.list().contains(&(Kind::Timeout, "payments/total".to_owned())));
    /// # drop(layer);
    /// ```
    #[cfg(feature = "observe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
    pub fn registry(mut self, registry: &bulwark_observe::Registry, name: &str) -> Self {
        self.stack = self.stack.registry(registry, name);
        self
    }

    /// Changes the client stack: timeouts, attempts, backoff, budget,
    /// breaker, bulkhead, classifier codes, listeners.
    ///
    /// ```
    /// use bulwark::http::grpc::GrpcClientStack;
    /// use bulwark::http::GrpcClassifier;
    /// use bulwark::http::classify::GrpcCode;
    /// use std::time::Duration;
    ///
    /// let layer = GrpcClientStack::new("inventory")
    ///     .client_stack(|s| {
    ///         s.attempt_timeout(Duration::from_millis(300))
    ///             .retry(|r| r.max_attempts(2))
    ///             .classifier(GrpcClassifier::new().failure(GrpcCode::Aborted))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn client_stack(
        mut self,
        f: impl FnOnce(ClientStack<GrpcClassifier>) -> ClientStack<GrpcClassifier>,
    ) -> Self {
        self.stack = f(self.stack);
        self
    }

    /// Keeps each call's body up to `bytes` for replay; a call with a larger
    /// body is sent once (default 64 KiB).
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// ```
    /// use bulwark::http::grpc::GrpcClientStack;
    ///
    /// let err = GrpcClientStack::new("not a host").build().unwrap_err();
    /// assert_eq!(err.field(), "origin");
    /// ```
    pub fn build(self) -> Result<GrpcClientLayer, ConfigError> {
        let origin = self.origin.parse::<Origin>().map_err(|e| {
            ConfigError::new(
                "grpc client stack",
                "origin",
                format!(
                    "{:?} is not a host[:port], a name or a URI: {e}",
                    self.origin
                ),
            )
        })?;
        Ok(GrpcClientLayer {
            stack: self.stack.build()?.replay_guard(ReplayGuardLayer::new()),
            origin,
            replay_limit: self.replay_limit,
        })
    }
}

/// The layer built by [`GrpcClientStack::build`]: wrap a tonic `Channel` (or
/// any `Service<http::Request<tonic::body::Body>>`) in it and give the
/// result to a generated client.
///
/// Clones share the breakers, the retry budget and the bulkhead.
#[derive(Clone)]
pub struct GrpcClientLayer {
    stack: ClientLayer<GrpcClassifier, ReplayGuardLayer>,
    origin: Origin,
    replay_limit: usize,
}

impl GrpcClientLayer {
    /// The per-origin breakers (`None` without a breaker).
    pub fn breakers(&self) -> Option<&KeyedBreakers<Authority>> {
        self.stack.breakers()
    }

    /// The retry budget (`None` without retry).
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.stack.retry_budget()
    }

    /// The origin requests without an authority are keyed on.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The same stack (sharing breakers, budget and bulkhead) for calls to
    /// another origin: one layer, one channel per upstream, one breaker
    /// each.
    ///
    /// ```
    /// use bulwark::http::grpc::GrpcClientStack;
    ///
    /// let layer = GrpcClientStack::new("a.internal:50051").build().unwrap();
    /// let b = layer.for_origin("b.internal:50051".parse().unwrap());
    /// assert_eq!(b.origin().to_string(), "b.internal:50051");
    /// assert!(b.breakers().unwrap().is_empty());
    /// ```
    pub fn for_origin(&self, origin: Origin) -> Self {
        GrpcClientLayer {
            stack: self.stack.clone(),
            origin,
            replay_limit: self.replay_limit,
        }
    }
}

impl fmt::Debug for GrpcClientLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClientLayer")
            .field("origin", &self.origin)
            .field("replay_limit", &self.replay_limit)
            .field("stack", &self.stack)
            .finish()
    }
}

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClient<ClientService<ToTonicBody<S>, GrpcClassifier, ReplayGuardLayer>>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClient {
            inner: self.stack.layer(ToTonicBody { inner }),
            origin: self.origin.clone(),
            replay_limit: self.replay_limit,
        }
    }
}

/// The service of [`GrpcClientLayer`]: takes a generated client's
/// `http::Request<tonic::body::Body>`, fails with a `tonic::Status`.
#[derive(Clone)]
pub struct GrpcClient<S> {
    inner: S,
    origin: Origin,
    replay_limit: usize,
}

impl<S> GrpcClient<S> {
    /// The stack inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The stack inside, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The stack inside.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> fmt::Debug for GrpcClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClient")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl<S, ResB> Service<http::Request<Body>> for GrpcClient<S>
where
    S: Service<http::Request<ReplayBody<Body>>, Response = http::Response<ResB>, Error = BoxError>,
{
    type Response = http::Response<ResB>;
    type Error = Status;
    type Future = GrpcClientFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx).map_err(to_client_status)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let limit = self.replay_limit;
        let mut req = req.map(|b| ReplayBody::with_limit(b, limit));
        if req.uri().authority().is_none() && req.extensions().get::<Origin>().is_none() {
            req.extensions_mut().insert(self.origin.clone());
        }
        GrpcClientFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`GrpcClient`].
    pub struct GrpcClientFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F> fmt::Debug for GrpcClientFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClientFuture").finish_non_exhaustive()
    }
}

impl<F, Res> Future for GrpcClientFuture<F>
where
    F: Future<Output = Result<Res, BoxError>>,
{
    type Output = Result<Res, Status>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(to_client_status))
    }
}

/// Hands the transport the `tonic::body::Body` it takes: the innermost
/// piece of the [`GrpcClientLayer`], under the stack's
/// [`ReplayBody`]-wrapped requests.
#[derive(Debug, Clone)]
pub struct ToTonicBody<S> {
    inner: S,
}

impl<S> ToTonicBody<S> {
    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The transport, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The transport.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<http::Request<ReplayBody<Body>>> for ToTonicBody<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: http::Request<ReplayBody<Body>>) -> S::Future {
        self.inner.call(req.map(Body::new))
    }
}

/// The server stack for tonic; see the [module docs](self).
///
/// [`ServerStack`]'s defaults, its errors answered by [`GrpcErrors`].
#[derive(Debug, Clone, Default)]
pub struct GrpcServerStack {
    stack: ServerStack,
    errors: GrpcErrors,
}

impl GrpcServerStack {
    /// [`ServerStack::new`]'s defaults; errors as gRPC statuses.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the stack `name` and registers its parts in `registry`
    /// (feature `observe`), as [`ServerStack::registry`] does: the bulkhead
    /// as the *serving* bulkhead `NAME` (readiness, `/health/ready`; shed
    /// calls in `bulwark_bulkhead_rejected_total`), the request timeout as
    /// the timeout `NAME`.
    ///
    /// ```
    /// use bulwark::http::grpc::GrpcServerStack;
    /// use bulwark::observe::Registry;
    ///
    /// let registry = Registry::new();
    /// let layer = GrpcServerStack::new().registry(&registry, "grpc").build().unwrap();
    /// assert_eq!(registry.readiness().bulkheads[0].name, "grpc");
    /// assert_eq!(registry.health().timeouts[0].name, "grpc");
    /// // tonic::transport::Server::builder().layer(layer).add_service(..)
    /// # drop(layer);
    /// ```
    #[cfg(feature = "observe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
    pub fn registry(mut self, registry: &bulwark_observe::Registry, name: &str) -> Self {
        self.stack = self.stack.registry(registry, name);
        self
    }

    /// Changes the server stack: limit, wait, timeout, deadline header.
    pub fn server_stack(mut self, f: impl FnOnce(ServerStack) -> ServerStack) -> Self {
        self.stack = f(self.stack);
        self
    }

    /// The `grpc-retry-pushback-ms` of a shed call (1 s by default).
    pub fn shed_pushback(mut self, after: Duration) -> Self {
        self.errors.shed_pushback = after;
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<ServerLayer<GrpcErrors>, ConfigError> {
        Ok(self.stack.build()?.map_errors_with(self.errors))
    }
}

/// A server's Bulwark errors as gRPC answers (trailers-only responses):
/// [`to_status`]'s codes, and a shed call (its bulkhead full)
/// `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`.
///
/// ```
/// use bulwark::error::BulkheadFull;
/// use bulwark::http::grpc::GrpcErrors;
/// use bulwark::http::response::ErrorToResponse;
///
/// let res: http::Response<tonic::body::Body> = GrpcErrors::new().to_response(BulkheadFull::at_capacity().into());
/// assert_eq!(res.headers()["grpc-status"], "8");
/// assert_eq!(res.headers()["grpc-retry-pushback-ms"], "1000");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcErrors {
    shed_pushback: Duration,
}

impl GrpcErrors {
    /// Shed calls say "come back in 1 s".
    pub const fn new() -> Self {
        GrpcErrors {
            shed_pushback: Duration::from_secs(1),
        }
    }
}

impl Default for GrpcErrors {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorToResponse<Body> for GrpcErrors {
    fn to_response(&self, error: BoxError) -> http::Response<Body> {
        let shed = is_caused_by::<BulkheadFull>(&*error);
        let mut status = to_status(error);
        if shed && !status.metadata().contains_key(GRPC_RETRY_PUSHBACK_MS) {
            let ms = u64::try_from(self.shed_pushback.as_millis()).unwrap_or(u64::MAX);
            if let Ok(v) = ms.to_string().parse() {
                status.metadata_mut().insert(GRPC_RETRY_PUSHBACK_MS, v);
            }
        }
        status.into_http()
    }
}
