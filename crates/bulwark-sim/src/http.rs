//! The simulated upstream over HTTP, for stacks that take `http::Request`s
//! (Bulwark's [`ClientStack`](bulwark_http::ClientStack), tower-http, your
//! own).
//!
//! [`HttpUpstream`] answers as an HTTP server would: `200` for a success,
//! `503` for a failure, `429` with `Retry-After` (in whole seconds, rounded
//! up) for a rate-limited answer. Requests go to `http://host-N/r/ID`:
//! the authority picks the host, the path carries the request's id (so
//! retries are counted per request), and `GET` is idempotent where `POST`
//! is not. [`HttpAdapter`] turns a stack over HTTP back into a service of
//! [`SimRequest`]s for the runner, mapping answers back the same way.

use crate::upstream::{SimRequest, SimResponse, Upstream, UpstreamError};
use bulwark_core::BoxError;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tower::ServiceExt;
use tower_service::Service;

/// The body of every simulated request and answer.
pub type SimBody = Full<Bytes>;

/// The simulated upstream, speaking HTTP (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    inner: Upstream,
}

impl HttpUpstream {
    /// Serves `upstream` over HTTP.
    pub fn new(upstream: Upstream) -> Self {
        HttpUpstream { inner: upstream }
    }

    /// The upstream behind it.
    pub fn get_ref(&self) -> &Upstream {
        &self.inner
    }
}

/// The request for `req`: `GET` (or `POST` when not idempotent)
/// `http://host-N/r/ID`.
pub fn to_http(req: SimRequest) -> Request<SimBody> {
    let method = if req.idempotent {
        Method::GET
    } else {
        Method::POST
    };
    Request::builder()
        .method(method)
        .uri(format!("http://host-{}/r/{}", req.host, req.id))
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

/// Reads a [`SimRequest`] back from its HTTP form; anything unexpected goes
/// to host 0 as request `u64::MAX`.
pub fn from_http<B>(req: &Request<B>) -> SimRequest {
    let host = req
        .uri()
        .host()
        .and_then(|h| h.strip_prefix("host-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let id = req
        .uri()
        .path()
        .strip_prefix("/r/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    SimRequest {
        id,
        host,
        idempotent: req.method().is_idempotent(),
    }
}

fn to_response(result: Result<SimResponse, UpstreamError>) -> Response<SimBody> {
    let mut res = Response::new(Full::new(Bytes::new()));
    match result {
        Ok(_) => {}
        Err(e) => match e.retry_after() {
            None => *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
            Some(after) => {
                *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    secs.to_string().parse().expect("digits"),
                );
            }
        },
    }
    res
}

/// Maps an HTTP answer back: `2xx` is a success, `429` a rate-limited
/// answer (with its `Retry-After`), anything else a failure.
pub fn from_response<B>(id: u64, res: &Response<B>) -> Result<SimResponse, UpstreamError> {
    let status = res.status();
    if status.is_success() {
        return Ok(SimResponse { id });
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let after = res
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        return Err(UpstreamError::rate_limited(after));
    }
    Err(UpstreamError::failed())
}

impl<B> Service<Request<B>> for HttpUpstream {
    type Response = Response<SimBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<SimBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let call = self.inner.clone().oneshot(from_http(&req));
        Box::pin(async move { Ok(to_response(call.await)) })
    }
}

/// A stack over HTTP seen as a service of [`SimRequest`]s (see the
/// [module docs](self)).
#[derive(Clone)]
pub struct HttpAdapter<S> {
    inner: S,
}

impl<S> HttpAdapter<S> {
    /// Wraps a stack over HTTP.
    pub fn new(inner: S) -> Self {
        HttpAdapter { inner }
    }
}

impl<S> fmt::Debug for HttpAdapter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAdapter").finish_non_exhaustive()
    }
}

impl<S, B> Service<SimRequest> for HttpAdapter<S>
where
    S: Service<Request<SimBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = SimResponse;
    type Error = BoxError;
    type Future = AdapterFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: SimRequest) -> Self::Future {
        AdapterFuture {
            id: req.id,
            inner: self.inner.call(to_http(req)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`HttpAdapter`].
    pub struct AdapterFuture<F> {
        id: u64,
        #[pin]
        inner: F,
    }
}

impl<F> fmt::Debug for AdapterFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterFuture")
            .field("id", &self.id)
            .finish()
    }
}

impl<F, B, E> Future for AdapterFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<SimResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx)).map_err(Into::into)?;
        Poll::Ready(from_response(*this.id, &res).map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip() {
        let req = SimRequest {
            id: 42,
            host: 3,
            idempotent: false,
        };
        let http = to_http(req);
        assert_eq!(http.method(), Method::POST);
        assert_eq!(from_http(&http), req);
        let limited = to_response(Err(UpstreamError::rate_limited(Duration::from_millis(
            1500,
        ))));
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            from_response(1, &limited),
            Err(UpstreamError::rate_limited(Duration::from_secs(2)))
        );
        let failed = to_response(Err(UpstreamError::failed()));
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(from_response(1, &failed), Err(UpstreamError::failed()));
        assert_eq!(
            from_response(1, &to_response(Ok(SimResponse { id: 1 }))),
            Ok(SimResponse { id: 1 })
        );
    }
}
