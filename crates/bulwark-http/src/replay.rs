//! Which HTTP requests are retried: idempotent ones, by default.
//!
//! Sending a request twice is only safe when doing it twice has the effect
//! of doing it once. [`HttpReplay`] is the retry layer's
//! [`Replay`] hook for HTTP: it copies requests whose method is idempotent
//! (`GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`, `TRACE`) or that carry an
//! `Idempotency-Key` header, and returns `None` for the others, which are
//! then sent once (the retry layer reports
//! [`GiveUpReason::NotReplayable`](bulwark_retry::GiveUpReason::NotReplayable)
//! if they fail). [`retry_all`](HttpReplay::retry_all) opts in to retrying
//! every method.
//!
//! ```
//! use bulwark::http::replay::HttpReplay;
//! use bulwark::retry::Replay;
//!
//! let get = http::Request::get("http://a/").body(String::new()).unwrap();
//! let post = http::Request::post("http://a/").body(String::from("{}")).unwrap();
//! let keyed = http::Request::post("http://a/")
//!     .header("idempotency-key", "8e03978e")
//!     .body(String::from("{}"))
//!     .unwrap();
//! assert!(HttpReplay::new().replay(&get).is_some());
//! assert!(HttpReplay::new().replay(&post).is_none());
//! assert!(HttpReplay::new().replay(&keyed).is_some());
//! assert!(HttpReplay::new().retry_all().replay(&post).is_some());
//! ```

use crate::parts::RequestParts;
use bulwark_retry::Replay;
use http::Method;

/// The `Idempotency-Key` header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether `method` is idempotent (RFC 9110, section 9.2.2).
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a request may be sent again: an idempotent method, or an
/// `Idempotency-Key` header.
pub fn is_retryable<R: RequestParts>(request: &R) -> bool {
    is_idempotent_method(request.method()) || request.headers().contains_key(IDEMPOTENCY_KEY)
}

/// The retry layer's [`Replay`] hook for HTTP requests; see the
/// [module docs](self).
///
/// Implemented for `http::Request<B>` with a `Clone` body (such as
/// [`ReplayBody`](crate::body::ReplayBody), `Full<Bytes>`, `String`) and,
/// with the `reqwest` feature, for `reqwest::Request` (whose streaming bodies
/// cannot be copied and are sent once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpReplay {
    all: bool,
}

impl HttpReplay {
    /// Copies idempotent requests and requests with an `Idempotency-Key`.
    pub const fn new() -> Self {
        HttpReplay { all: false }
    }

    /// Copies every request, whatever its method: the caller vouches that
    /// sending it twice is safe.
    pub const fn retry_all(mut self) -> Self {
        self.all = true;
        self
    }

    /// Whether this hook would copy `request` (if its body can be copied).
    pub fn allows<R: RequestParts>(&self, request: &R) -> bool {
        self.all || is_retryable(request)
    }
}

impl<B: Clone> Replay<http::Request<B>> for HttpReplay {
    #[inline]
    fn replay(&self, request: &http::Request<B>) -> Option<http::Request<B>> {
        if self.allows(request) {
            Some(request.clone())
        } else {
            None
        }
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl Replay<reqwest::Request> for HttpReplay {
    #[inline]
    fn replay(&self, request: &reqwest::Request) -> Option<reqwest::Request> {
        if self.allows(request) {
            request.try_clone()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_methods() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ] {
            assert!(is_idempotent_method(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent_method(&m), "{m}");
        }
        let patch = http::Request::patch("/").body(()).unwrap();
        assert!(HttpReplay::new().replay(&patch).is_none());
    }
}
