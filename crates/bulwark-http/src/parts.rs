//! What Bulwark needs to read from a request or a response, whatever the
//! client library.
//!
//! The classifiers, pushback readers and replay hooks of this crate work on
//! [`http::Request`]/[`http::Response`] (hyper, axum, tonic) and, with the
//! `reqwest` feature, on `reqwest::Request`/`reqwest::Response`, through these
//! two small traits. Implement them for another client's types to reuse
//! everything else.
//!
//! ```
//! use bulwark::http::parts::{RequestParts, ResponseParts};
//!
//! let req = http::Request::get("http://api.example:8080/users").body(()).unwrap();
//! assert_eq!(req.authority_key().as_str(), "api.example:8080");
//!
//! let res = http::Response::builder().status(503).body(()).unwrap();
//! assert_eq!(ResponseParts::status(&res), http::StatusCode::SERVICE_UNAVAILABLE);
//! ```

use http::uri::Authority;
use http::{HeaderMap, Method, StatusCode};

/// The parts of a request that resilience decisions read.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request Bulwark's HTTP layers can read",
    label = "Bulwark reads `http::Request<B>`, and `reqwest::Request` with the `reqwest` feature",
    note = "bulwark-http implements `RequestParts` for `http::Request<B>` (http 1.x) and, with its `reqwest` feature, for `reqwest::Request` of reqwest 0.13",
    note = "with another reqwest or http version in your tree (`cargo tree -d -i reqwest`), use the supported one, or implement `bulwark::http::parts::RequestParts` for your type"
)]
pub trait RequestParts {
    /// The request method.
    fn method(&self) -> &Method;
    /// The request headers.
    fn headers(&self) -> &HeaderMap;
    /// The upstream this request goes to (`host[:port]`), used to key
    /// per-host breakers: the URI's authority, else an
    /// [`Origin`](crate::origin::Origin) in the extensions, else the `Host`
    /// header. Requests with none share the key `unknown` (and a warning is
    /// logged the first time).
    fn authority_key(&self) -> Authority;
}

/// The parts of a response that resilience decisions read.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a response Bulwark's HTTP layers can read",
    label = "Bulwark reads `http::Response<B>`, and `reqwest::Response` with the `reqwest` feature",
    note = "bulwark-http implements `ResponseParts` for `http::Response<B>` (http 1.x) and, with its `reqwest` feature, for `reqwest::Response` of reqwest 0.13",
    note = "with another reqwest or http version in your tree (`cargo tree -d -i reqwest`), use the supported one, or implement `bulwark::http::parts::ResponseParts` for your type"
)]
pub trait ResponseParts {
    /// The status code.
    fn status(&self) -> StatusCode;
    /// The response headers.
    fn headers(&self) -> &HeaderMap;
    /// The response extensions (where Bulwark leaves marks such as
    /// [`NotReplayed`](crate::body::NotReplayed)).
    fn extensions(&self) -> &http::Extensions;
}

pub(crate) fn unknown_authority() -> Authority {
    Authority::from_static("unknown")
}

/// Says once per process that requests are keyed `unknown`: every such
/// request then shares one breaker, which is rarely what was meant.
fn warn_unknown_once() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "a request with no authority (URI, `Host` header or `bulwark::http::origin::Origin`) \
             is keyed `unknown`: every such request shares one per-host breaker; \
             above a tonic Channel use `bulwark::http::grpc::GrpcClientStack`, \
             else insert an `Origin` in the request's extensions"
        );
    }
}

impl<B> RequestParts for http::Request<B> {
    #[inline]
    fn method(&self) -> &Method {
        self.method()
    }

    #[inline]
    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn authority_key(&self) -> Authority {
        if let Some(a) = self.uri().authority() {
            return a.clone();
        }
        if let Some(origin) = self.extensions().get::<crate::origin::Origin>() {
            return origin.authority().clone();
        }
        self.headers()
            .get(http::header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            .unwrap_or_else(|| {
                warn_unknown_once();
                unknown_authority()
            })
    }
}

impl<B> ResponseParts for http::Response<B> {
    #[inline]
    fn status(&self) -> StatusCode {
        self.status()
    }

    #[inline]
    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    #[inline]
    fn extensions(&self) -> &http::Extensions {
        self.extensions()
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl RequestParts for reqwest::Request {
    #[inline]
    fn method(&self) -> &Method {
        self.method()
    }

    #[inline]
    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn authority_key(&self) -> Authority {
        let url = self.url();
        let text = match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return unknown_authority(),
        };
        Authority::try_from(text).unwrap_or_else(|_| unknown_authority())
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl ResponseParts for reqwest::Response {
    #[inline]
    fn status(&self) -> StatusCode {
        self.status()
    }

    #[inline]
    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    #[inline]
    fn extensions(&self) -> &http::Extensions {
        self.extensions()
    }
}

/// Wraps a response body: a body deadline
/// ([`TimeoutBody`](crate::response_timeout::TimeoutBody)) or an
/// end-of-body verdict ([`VerdictBody`](crate::verdict::VerdictBody)).
///
/// The layers of this crate that watch a body hand one of these to
/// [`ResponseBody::wrap_body`], so they work on any response type that
/// implements it.
pub trait WrapBody {
    /// The wrapped body.
    type Body<B>;

    /// Wraps `body`.
    fn wrap<B>(self, body: B) -> Self::Body<B>;

    /// The response's body cannot be watched (a `reqwest::Response`): the
    /// wrapper settles at the head (a verdict is recorded at once).
    fn unwatched(self)
    where
        Self: Sized,
    {
    }
}

/// A response whose body a [`WrapBody`] can wrap: `http::Response<B>`
/// (the body becomes `W::Body<B>`) and, with the `reqwest` feature,
/// `reqwest::Response`, whose body stays reqwest's (bound it with
/// reqwest's own `timeout`; its verdict is taken at the head).
///
/// ```
/// use bulwark::http::parts::{ResponseBody, WrapBody};
///
/// /// Puts the body in a `Vec` of one.
/// struct InVec;
/// impl WrapBody for InVec {
///     type Body<B> = Vec<B>;
///     fn wrap<B>(self, body: B) -> Vec<B> { vec![body] }
/// }
/// let res = http::Response::new("hi").wrap_body(InVec);
/// assert_eq!(res.body(), &vec!["hi"]);
/// ```
pub trait ResponseBody<W: WrapBody>: Sized {
    /// The response with its body wrapped.
    type Output;

    /// Wraps the body with `wrapper`.
    fn wrap_body(self, wrapper: W) -> Self::Output;
}

impl<B, W: WrapBody> ResponseBody<W> for http::Response<B> {
    type Output = http::Response<W::Body<B>>;

    #[inline]
    fn wrap_body(self, wrapper: W) -> Self::Output {
        self.map(|body| wrapper.wrap(body))
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl<W: WrapBody> ResponseBody<W> for reqwest::Response {
    type Output = reqwest::Response;

    #[inline]
    fn wrap_body(self, wrapper: W) -> Self::Output {
        wrapper.unwatched();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_from_uri_host_header_or_unknown() {
        let r = http::Request::get("http://a.example/x").body(()).unwrap();
        assert_eq!(r.authority_key(), "a.example");
        let r = http::Request::get("/x")
            .header("host", "b.example:81")
            .body(())
            .unwrap();
        assert_eq!(r.authority_key(), "b.example:81");
        let r = http::Request::get("/x").body(()).unwrap();
        assert_eq!(r.authority_key(), "unknown");
    }

    #[test]
    fn an_origin_keys_requests_without_an_authority() {
        let origin: crate::origin::Origin = "http://10.0.0.7:50051".parse().unwrap();
        assert_eq!(origin.authority(), "10.0.0.7:50051");
        // The origin comes before the Host header, after the URI.
        let mut r = http::Request::post("/pkg.Svc/Get")
            .header("host", "b.example")
            .body(())
            .unwrap();
        r.extensions_mut().insert(origin.clone());
        assert_eq!(r.authority_key(), "10.0.0.7:50051");
        let mut r = http::Request::get("http://a.example/").body(()).unwrap();
        r.extensions_mut().insert(origin);
        assert_eq!(r.authority_key(), "a.example");
        assert!("not a host".parse::<crate::origin::Origin>().is_err());
        assert_eq!(
            "payments"
                .parse::<crate::origin::Origin>()
                .unwrap()
                .to_string(),
            "payments"
        );
    }
}
