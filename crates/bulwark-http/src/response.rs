//! Bulwark errors as HTTP responses, without a `HandleErrorLayer` closure.
//!
//! A server (or a proxy-like client) whose stack can fail with Bulwark's
//! errors must turn them into responses. [`ErrorMapping`] is the documented,
//! customisable table, and [`MapErrorsLayer`] applies it: its service
//! never fails (`Error = Infallible`), which is what axum's `Router::layer`
//! and hyper's servers want.
//!
//! | error (anywhere in the `source()` chain) | [`dependency`](ErrorMapping::dependency) mapping (a call this server made failed) | [`server`](ErrorMapping::server) mapping (this server's own limits) |
//! |---|---|---|
//! | [`CircuitOpen`] | 503 + `Retry-After` (next probe) | 503 + `Retry-After` |
//! | [`RateLimited`] (a local rate limit) | 429 + `Retry-After` (next admission) | same |
//! | [`BulkheadFull`], [`ThrottledLocally`] (shed) | 503 (or 429) + `Retry-After: 1` + `bulwark-shed: 1` | same |
//! | [`Elapsed`] (a timeout; also the source of a head's or a body's [`ResponseElapsed`](crate::response_timeout::ResponseElapsed)), or tower's own `tower::timeout::error::Elapsed` | 504 Gateway Timeout | 503 (or 408) |
//! | anything else | 500 | 500 |
//!
//! Which mapping applies depends on where the error comes from: the
//! [`ServerStack`](crate::ServerStack) maps its *own* bulkhead and timeout
//! with the server mapping (it ran out of time: 503, the client may try
//! again), while [`BulwarkError`] (feature `axum`), for the errors of calls
//! a handler made, uses the dependency mapping: a dependency that timed out
//! is a `504 Gateway Timeout`, not this server's fault.
//!
//! Every shed answer carries a `Retry-After`, and an open breaker's answer
//! carries one when the breaker knows its next probe.
//!
//! # Bodies
//!
//! The body is generic by default, the status's reason (`service
//! unavailable`, `gateway timeout`, `internal server error`) as
//! `text/plain`: an error's message names dependencies, hosts and causes
//! ("inventory: connection reset") that callers outside have no business
//! seeing. The full error is logged (`tracing`, target `bulwark::http`, at
//! debug level). Turn details on with
//! [`expose_details`](ErrorMapping::expose_details), e.g. for internal
//! services or in development.
//!
//! A shed answer says that the server is alive but full, so that clients do
//! not mistake it for a failure: it carries a `Retry-After` (1 s by default,
//! [`ErrorMapping::shed_retry_after`]) and the [`SHED_HEADER`] marker
//! (`bulwark-shed: 1`). Bulwark's [`HttpClassifier`](crate::HttpClassifier)
//! judges a marked answer as [`Throttled`](bulwark_core::Outcome::Throttled),
//! not as a failure: a client's breaker does not open on a server that sheds
//! load, and its retry waits the `Retry-After` (within its budget) before
//! trying again.
//!
//! ```
//! use bulwark::{error::CircuitOpen, BoxError};
//! use bulwark::http::response::ErrorMapping;
//! use http::StatusCode;
//! use std::time::Duration;
//!
//! let open: BoxError = CircuitOpen::new(Some(Duration::from_millis(1500))).into();
//! let res: http::Response<String> = ErrorMapping::client().response(&open);
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["retry-after"], "2"); // rounded up
//!
//! let shed = ErrorMapping::server().bulkhead_status(StatusCode::TOO_MANY_REQUESTS);
//! let full: BoxError = bulwark::error::BulkheadFull::at_capacity().into();
//! assert_eq!(shed.status(&*full), StatusCode::TOO_MANY_REQUESTS);
//! ```
//!
//! [`CircuitOpen`]: bulwark_core::error::CircuitOpen
//! [`BulkheadFull`]: bulwark_core::error::BulkheadFull
//! [`RateLimited`]: bulwark_core::error::RateLimited
//! [`ThrottledLocally`]: bulwark_core::error::ThrottledLocally
//! [`Elapsed`]: bulwark_timeout::Elapsed

use bulwark_core::error::{
    find, is_caused_by, BulkheadFull, CircuitOpen, RateLimited, ThrottledLocally,
};
use bulwark_core::BoxError;
use bulwark_timeout::error::is_timeout;
use http::{header, HeaderValue, StatusCode};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

// `http::response::{Builder, Parts}`, so that they keep their paths after
// `use bulwark::http;` (this module takes the name of `http`'s).
#[doc(no_inline)]
pub use http::response::{Builder, Parts};

/// The header marking an answer as shed: `bulwark-shed: 1` on every answer
/// an [`ErrorMapping`] makes of a full bulkhead ([`BulkheadFull`]).
///
/// It tells a client that the server refused the request because it is
/// full, not because it is broken; [`HttpClassifier`](crate::HttpClassifier)
/// reads it (see the [module docs](self)). Any server may send it on its own
/// load-shedding answers to get the same treatment.
pub const SHED_HEADER: &str = "bulwark-shed";

/// [`SHED_HEADER`] as a [`HeaderName`](http::HeaderName), built at compile
/// time.
pub const SHED_HEADER_NAME: http::HeaderName = http::HeaderName::from_static(SHED_HEADER);

/// The table from Bulwark errors to HTTP statuses; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorMapping {
    circuit_open: StatusCode,
    bulkhead_full: StatusCode,
    rate_limited: StatusCode,
    timeout: StatusCode,
    other: StatusCode,
    shed_retry_after: Duration,
    details: bool,
}

impl ErrorMapping {
    /// For a client or gateway: a timeout is `504 Gateway Timeout`. The same
    /// as [`dependency`](Self::dependency).
    pub const fn client() -> Self {
        ErrorMapping {
            circuit_open: StatusCode::SERVICE_UNAVAILABLE,
            bulkhead_full: StatusCode::SERVICE_UNAVAILABLE,
            rate_limited: StatusCode::TOO_MANY_REQUESTS,
            timeout: StatusCode::GATEWAY_TIMEOUT,
            other: StatusCode::INTERNAL_SERVER_ERROR,
            shed_retry_after: Duration::from_secs(1),
            details: false,
        }
    }

    /// For the errors of a call this server made to a dependency (what
    /// [`BulwarkError`] answers): the dependency's timeout is `504 Gateway
    /// Timeout`, its open breaker or full bulkhead `503` with `Retry-After`.
    ///
    /// ```
    /// use bulwark::http::response::ErrorMapping;
    /// use bulwark::timeout::{error::Limit, Elapsed};
    /// use bulwark::BoxError;
    /// use std::time::Duration;
    ///
    /// let late: BoxError = Elapsed::new(Limit::Request, Duration::from_secs(2)).into();
    /// assert_eq!(ErrorMapping::dependency().status(&*late), 504);
    /// assert_eq!(ErrorMapping::server().status(&*late), 503);
    /// ```
    pub const fn dependency() -> Self {
        Self::client()
    }

    /// For a server: a timeout is `503 Service Unavailable` (the server ran
    /// out of time, the client may try again); use
    /// [`timeout_status`](Self::timeout_status) for `408`.
    pub const fn server() -> Self {
        ErrorMapping {
            timeout: StatusCode::SERVICE_UNAVAILABLE,
            ..Self::client()
        }
    }

    /// The status for an open breaker (default 503).
    pub const fn circuit_open_status(mut self, status: StatusCode) -> Self {
        self.circuit_open = status;
        self
    }

    /// The status for a full bulkhead (default 503; 429 tells clients it is
    /// about their rate).
    pub const fn bulkhead_status(mut self, status: StatusCode) -> Self {
        self.bulkhead_full = status;
        self
    }

    /// The status for a refused rate limit
    /// ([`RateLimited`], default 429 with
    /// the limiter's `Retry-After`).
    ///
    /// ```
    /// use bulwark::{error::RateLimited, BoxError};
    /// use bulwark::http::response::ErrorMapping;
    /// use std::time::Duration;
    ///
    /// let limited: BoxError = RateLimited::new(Duration::from_millis(300)).into();
    /// let res: http::Response<String> = ErrorMapping::server().response(&limited);
    /// assert_eq!(res.status(), 429);
    /// assert_eq!(res.headers()["retry-after"], "1"); // rounded up
    /// ```
    pub const fn rate_limited_status(mut self, status: StatusCode) -> Self {
        self.rate_limited = status;
        self
    }

    /// The `Retry-After` of a shed answer (a full bulkhead): 1 s by default,
    /// rounded up to whole seconds. Short, because a full server frees up as
    /// soon as calls complete; it only keeps clients from retrying at once.
    ///
    /// ```
    /// use bulwark::{error::BulkheadFull, BoxError};
    /// use bulwark::http::response::{ErrorMapping, SHED_HEADER};
    /// use std::time::Duration;
    ///
    /// let full: BoxError = BulkheadFull::at_capacity().into();
    /// let res: http::Response<String> = ErrorMapping::server().response(&full);
    /// assert_eq!((res.headers()["retry-after"].as_bytes(), res.headers()[SHED_HEADER].as_bytes()), (&b"1"[..], &b"1"[..]));
    /// let res: http::Response<String> = ErrorMapping::server()
    ///     .shed_retry_after(Duration::from_millis(2500))
    ///     .response(&full);
    /// assert_eq!(res.headers()["retry-after"], "3");
    /// ```
    pub const fn shed_retry_after(mut self, after: Duration) -> Self {
        self.shed_retry_after = after;
        self
    }

    /// The status for a timeout.
    pub const fn timeout_status(mut self, status: StatusCode) -> Self {
        self.timeout = status;
        self
    }

    /// The status for any other error (default 500).
    pub const fn other_status(mut self, status: StatusCode) -> Self {
        self.other = status;
        self
    }

    /// Sends the error's message as the body (`yes`), instead of the
    /// generic reason of its status (the default). Messages name
    /// dependencies, hosts and causes: expose them only to callers you
    /// trust (internal services, development).
    ///
    /// ```
    /// use bulwark::http::response::ErrorMapping;
    /// use bulwark::BoxError;
    ///
    /// let reset: BoxError = "inventory: connection reset".into();
    /// let res: http::Response<String> = ErrorMapping::server().response(&reset);
    /// assert_eq!((res.status().as_u16(), res.body().as_str()), (500, "internal server error"));
    /// let res: http::Response<String> = ErrorMapping::server().expose_details(true).response(&reset);
    /// assert_eq!(res.body(), "inventory: connection reset");
    /// ```
    pub const fn expose_details(mut self, yes: bool) -> Self {
        self.details = yes;
        self
    }

    /// The status for `error`, found anywhere in its `source()` chain.
    pub fn status(&self, error: &(dyn Error + 'static)) -> StatusCode {
        if is_caused_by::<CircuitOpen>(error) {
            self.circuit_open
        } else if is_caused_by::<RateLimited>(error) {
            self.rate_limited
        } else if self.is_shed(error) {
            self.bulkhead_full
        } else if is_timeout(error) {
            self.timeout
        } else {
            self.other
        }
    }

    /// The `Retry-After` to send for `error`, rounded up to whole seconds:
    /// the time until an open breaker probes again, until a rate limiter
    /// admits a call again, or for a shed request
    /// (a full bulkhead) the [`shed_retry_after`](Self::shed_retry_after).
    pub fn retry_after(&self, error: &(dyn Error + 'static)) -> Option<Duration> {
        let after = match find::<CircuitOpen>(error) {
            Some(open) => open.retry_after()?,
            None if is_caused_by::<RateLimited>(error) => {
                find::<RateLimited>(error).map_or(Duration::ZERO, RateLimited::retry_after)
            }
            None if self.is_shed(error) => self.shed_retry_after,
            None => return None,
        };
        let secs = after
            .as_secs()
            .saturating_add(u64::from(after.subsec_nanos() > 0));
        Some(Duration::from_secs(secs))
    }

    /// Whether `error` sheds the request: a full bulkhead or local
    /// throttling (and no open breaker, which says something about the
    /// upstream instead).
    fn is_shed(&self, error: &(dyn Error + 'static)) -> bool {
        !is_caused_by::<CircuitOpen>(error)
            && (is_caused_by::<BulkheadFull>(error) || is_caused_by::<ThrottledLocally>(error))
    }

    /// The response for `error`: its status, `Retry-After` when known, the
    /// [`SHED_HEADER`] marker for a shed request, and as a `text/plain` body
    /// the status's reason (or the error's message, with
    /// [`expose_details`](Self::expose_details)).
    pub fn response<B: From<String>>(&self, error: &BoxError) -> http::Response<B> {
        let status = self.status(&**error);
        let body = if self.details {
            error.to_string()
        } else {
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
        };
        let mut res = http::Response::new(B::from(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(after) = self.retry_after(&**error) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
        if self.is_shed(&**error) {
            headers.insert(SHED_HEADER_NAME, HeaderValue::from_static("1"));
        }
        res
    }
}

impl Default for ErrorMapping {
    fn default() -> Self {
        Self::server()
    }
}

/// Turns an error into a response: implemented for [`ErrorMapping`] and for
/// every `Fn(BoxError) -> http::Response<B>`, so a custom mapping is a
/// closure.
pub trait ErrorToResponse<B> {
    /// The response for `error`.
    fn to_response(&self, error: BoxError) -> http::Response<B>;
}

impl<B: From<String>> ErrorToResponse<B> for ErrorMapping {
    fn to_response(&self, error: BoxError) -> http::Response<B> {
        self.response(&error)
    }
}

impl<B, F> ErrorToResponse<B> for F
where
    F: Fn(BoxError) -> http::Response<B>,
{
    fn to_response(&self, error: BoxError) -> http::Response<B> {
        self(error)
    }
}

/// Converts the errors of the service it wraps into responses, so the
/// wrapped service never fails.
///
/// ```
/// use bulwark::{error::BulkheadFull, BoxError};
/// use bulwark::http::response::{ErrorMapping, MapErrorsLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(MapErrorsLayer::new(ErrorMapping::server()))
///     .service_fn(|_: http::Request<()>| async {
///         Err::<http::Response<String>, BoxError>(BulkheadFull::at_capacity().into())
///     });
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.status(), 503);
///
/// // A mapping of your own is a closure.
/// let teapot = MapErrorsLayer::new(|_e: BoxError| {
///     http::Response::builder().status(418).body(String::new()).unwrap()
/// });
/// # let _ = teapot;
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MapErrorsLayer<M = ErrorMapping> {
    mapping: M,
}

impl<M> MapErrorsLayer<M> {
    /// Maps errors with `mapping`.
    pub const fn new(mapping: M) -> Self {
        MapErrorsLayer { mapping }
    }
}

impl<S, M: Clone> Layer<S> for MapErrorsLayer<M> {
    type Service = MapErrors<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        MapErrors {
            inner,
            mapping: self.mapping.clone(),
        }
    }
}

/// The service of [`MapErrorsLayer`].
#[derive(Debug, Clone)]
pub struct MapErrors<S, M = ErrorMapping> {
    inner: S,
    mapping: M,
}

impl<S, M> MapErrors<S, M> {
    /// Wraps `inner`.
    pub const fn new(inner: S, mapping: M) -> Self {
        MapErrors { inner, mapping }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, M, Req, B> Service<Req> for MapErrors<S, M>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    M: ErrorToResponse<B> + Clone,
{
    type Response = http::Response<B>;
    type Error = Infallible;
    type Future = MapErrorsFuture<S::Future, M>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An inner service that cannot become ready is dead; the contract of
        // Bulwark's layers is to never fail readiness for a policy reason,
        // so this only happens for a broken inner service. Report it as
        // ready and let `call` answer with the error.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        MapErrorsFuture {
            inner: self.inner.call(req),
            mapping: Some(self.mapping.clone()),
        }
    }
}

pin_project! {
    /// The response future of [`MapErrors`].
    pub struct MapErrorsFuture<F, M> {
        #[pin]
        inner: F,
        mapping: Option<M>,
    }
}

impl<F, M> fmt::Debug for MapErrorsFuture<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapErrorsFuture").finish_non_exhaustive()
    }
}

impl<F, M, B, E> Future for MapErrorsFuture<F, M>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
    M: ErrorToResponse<B>,
{
    type Output = Result<http::Response<B>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.inner.poll(cx)) {
            Ok(res) => Poll::Ready(Ok(res)),
            Err(e) => {
                let error = e.into();
                tracing::debug!(target: "bulwark::http", %error, "error mapped to a response");
                let mapping = this
                    .mapping
                    .take()
                    .expect("MapErrorsFuture polled after completion");
                Poll::Ready(Ok(mapping.to_response(error)))
            }
        }
    }
}

/// The error of a call a handler made, as an axum response (for handlers and
/// `HandleErrorLayer` closures): `BulwarkError(err).into_response()` maps
/// with [`ErrorMapping::dependency`]: a dependency's timeout is `504
/// Gateway Timeout`, its open breaker `503` with `Retry-After`, and the body
/// is generic (the error is logged at debug level, target `bulwark::http`).
/// For another mapping, call [`ErrorMapping::response`] yourself.
///
/// ```
/// use axum::response::IntoResponse;
/// use bulwark::http::response::BulwarkError;
/// use bulwark::timeout::{error::Limit, Elapsed};
/// use std::time::Duration;
///
/// // In a handler: `payments.oneshot(req).await.map_err(BulwarkError)?`.
/// let res = BulwarkError(Elapsed::new(Limit::Request, Duration::from_secs(2)).into()).into_response();
/// assert_eq!(res.status(), 504);
/// ```
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Debug)]
pub struct BulwarkError(pub BoxError);

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for BulwarkError {
    fn into_response(self) -> axum::response::Response {
        let error = self.0;
        tracing::debug!(target: "bulwark::http", %error, "a dependency's error mapped to a response");
        ErrorMapping::dependency().response(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response_timeout::{Phase, ResponseElapsed, Scope};
    use bulwark_timeout::error::Limit;
    use bulwark_timeout::Elapsed;

    #[test]
    fn statuses() {
        let timeout: BoxError = Elapsed::new(Limit::Request, Duration::from_secs(1)).into();
        assert_eq!(ErrorMapping::client().status(&*timeout), 504);
        assert_eq!(ErrorMapping::server().status(&*timeout), 503);
        // tower's own timeout maps the same.
        let tower: BoxError = tower::timeout::error::Elapsed::new().into();
        assert_eq!(ErrorMapping::client().status(&*tower), 504);
        assert_eq!(ErrorMapping::server().status(&*tower), 503);
        // A head or a body that ran out of time maps as a timeout.
        for phase in [Phase::Head, Phase::Body, Phase::Idle] {
            let e: BoxError =
                ResponseElapsed::new(Scope::Attempt, phase, Duration::from_secs(1)).into();
            assert_eq!(ErrorMapping::client().status(&*e), 504, "{phase}");
            // The body says only the status unless details are asked for.
            let res: http::Response<String> = ErrorMapping::client().response(&e);
            assert_eq!(res.body(), "gateway timeout");
            let res: http::Response<String> =
                ErrorMapping::client().expose_details(true).response(&e);
            assert!(res.body().contains("attempt"), "{}", res.body());
        }
        assert_eq!(
            ErrorMapping::server()
                .timeout_status(StatusCode::REQUEST_TIMEOUT)
                .status(&*timeout),
            408
        );
        let other: BoxError = "boom".into();
        let res: http::Response<String> = ErrorMapping::client().response(&other);
        assert_eq!(res.status(), 500);
        assert_eq!(res.body(), "internal server error");
        let res: http::Response<String> =
            ErrorMapping::client().expose_details(true).response(&other);
        assert_eq!(res.body(), "boom");
        assert!(res.headers().get("retry-after").is_none());
        let open: BoxError = CircuitOpen::new(Some(Duration::from_secs(3))).into();
        let res: http::Response<String> = ErrorMapping::client().response(&open);
        assert_eq!(res.headers()["retry-after"], "3");
        assert!(
            res.headers().get(SHED_HEADER).is_none(),
            "an open breaker is not shedding"
        );
    }

    #[test]
    fn a_rate_limit_is_429_with_its_retry_after() {
        let limited: BoxError = RateLimited::new(Duration::from_millis(2_100))
            .with_name("api".into())
            .into();
        for mapping in [ErrorMapping::client(), ErrorMapping::server()] {
            let res: http::Response<String> = mapping.response(&limited);
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(res.headers()["retry-after"], "3");
            assert!(res.headers().get(SHED_HEADER).is_none());
            let res: http::Response<String> = mapping.expose_details(true).response(&limited);
            assert_eq!(res.body(), "rate limit 'api' exceeded; retry in 2.1s");
        }
        let res: http::Response<String> = ErrorMapping::server()
            .rate_limited_status(StatusCode::SERVICE_UNAVAILABLE)
            .response(&limited);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        // A local rate limit is a rejection for the client's own layers.
        assert_eq!(
            bulwark_core::Outcome::of_error(&limited),
            bulwark_core::Outcome::Rejected
        );
    }

    #[test]
    fn shed_answers_say_so() {
        let full: BoxError = BulkheadFull::at_capacity().into();
        for mapping in [ErrorMapping::client(), ErrorMapping::server()] {
            for status in [
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::TOO_MANY_REQUESTS,
            ] {
                let res: http::Response<String> = mapping.bulkhead_status(status).response(&full);
                assert_eq!(res.status(), status);
                assert_eq!(res.headers()["retry-after"], "1");
                assert_eq!(res.headers()[SHED_HEADER], "1");
            }
        }
        let res: http::Response<String> = ErrorMapping::server()
            .shed_retry_after(Duration::MAX)
            .response(&full);
        assert_eq!(res.headers()["retry-after"], u64::MAX.to_string().as_str());
        // Local throttling of a dependency sheds too.
        let throttled: BoxError = ThrottledLocally::new(0.5).into();
        let res: http::Response<String> = ErrorMapping::dependency().response(&throttled);
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()[SHED_HEADER], "1");
        assert_eq!(res.body(), "service unavailable");
        // A timeout is not shedding: no marker, no Retry-After.
        let timeout: BoxError = Elapsed::new(Limit::Request, Duration::from_secs(1)).into();
        let res: http::Response<String> = ErrorMapping::server().response(&timeout);
        assert!(res.headers().get(SHED_HEADER).is_none());
        assert!(res.headers().get("retry-after").is_none());
    }
}
