//! Deadlines that cross the wire: `grpc-timeout` and an optional HTTP header.
//!
//! A caller that will give up after 2 s gains nothing from a server that
//! works for 10. gRPC sends the caller's remaining time in `grpc-timeout`
//! (`"1500m"`, `"2S"`); [`parse_grpc_timeout`] reads it and
//! [`format_grpc_timeout`] writes it. [`ServerDeadline`] is a
//! [`TimeoutPolicy`] that bounds each request by the smaller of the server's
//! own limit and what the caller sent, so the [`ServerStack`] stops work
//! nobody waits for.
//!
//! ```
//! use bulwark::http::deadline::{format_grpc_timeout, parse_grpc_timeout, ServerDeadline};
//! use bulwark::timeout::TimeoutPolicy;
//! use std::time::Duration;
//!
//! assert_eq!(parse_grpc_timeout(b"1500m"), Some(Duration::from_millis(1500)));
//! assert_eq!(format_grpc_timeout(Duration::from_millis(1500)), "1500000u");
//!
//! let policy = ServerDeadline::new(Some(Duration::from_secs(10)));
//! let req = http::Request::get("/").header("grpc-timeout", "2S").body(()).unwrap();
//! assert_eq!(policy.timeout(&req), Some(Duration::from_secs(2)));
//! ```
//!
//! To pass the time left on to the next hop: [`DeadlineLayer`] (server
//! side) stores the request's [`Deadline`] in its extensions; a handler
//! copies it onto its outgoing requests, and [`PropagateDeadlineLayer`]
//! (client side) writes the time then left into their `grpc-timeout` (and
//! an optional HTTP header). Requests copied for a retry keep the extension,
//! so each attempt carries what is left at its own start.
//!
//! ```
//! use bulwark::http::deadline::{Deadline, DeadlineLayer, PropagateDeadlineLayer};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // Downstream: echoes the grpc-timeout it receives.
//! let downstream = ServiceBuilder::new()
//!     .layer(PropagateDeadlineLayer::new())
//!     .service_fn(|req: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(req.headers()["grpc-timeout"].clone())
//!     });
//! // Upstream handler: forwards its deadline to the downstream call.
//! let server = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Some(Duration::from_secs(10))))
//!     .service_fn(move |req: http::Request<()>| {
//!         let downstream = downstream.clone();
//!         async move {
//!             let deadline = *req.extensions().get::<Deadline>().unwrap();
//!             tokio::time::advance(Duration::from_millis(500)).await; // some work
//!             let mut out = http::Request::new(());
//!             out.extensions_mut().insert(deadline);
//!             downstream.oneshot(out).await
//!         }
//!     });
//! let incoming = http::Request::get("/").header("grpc-timeout", "2S").body(()).unwrap();
//! assert_eq!(server.oneshot(incoming).await.unwrap(), "1500000u");
//! # }
//! ```
//!
//! [`ServerStack`]: crate::ServerStack

use crate::parts::RequestParts;
use bulwark_timeout::TimeoutPolicy;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// The `grpc-timeout` header.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The `grpc-timeout` header as a [`HeaderName`], built at compile time:
/// looking a header up by a `&str` parses the name on every request.
pub const GRPC_TIMEOUT_NAME: HeaderName = HeaderName::from_static(GRPC_TIMEOUT);

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`). Anything else is `None`.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `d` as a `grpc-timeout` value: the finest unit whose number fits
/// in 8 digits, rounded down so the receiver never gets more time than is left.
pub fn format_grpc_timeout(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (per, unit) in units {
        let n = nanos / per;
        if n <= MAX {
            return HeaderValue::from_str(&format!("{n}{unit}")).expect("digits and a letter");
        }
    }
    HeaderValue::from_static("99999999H")
}

/// Bounds each request by the server's own limit and the caller's
/// `grpc-timeout` (or another header giving seconds or a gRPC-style value);
/// see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDeadline {
    max: Option<Duration>,
    header: Option<HeaderName>,
}

impl ServerDeadline {
    /// At most `max` per request (`None`: only what callers send), reading
    /// `grpc-timeout`.
    pub const fn new(max: Option<Duration>) -> Self {
        ServerDeadline { max, header: None }
    }

    /// Also reads `header` (e.g. `x-request-timeout`), in the `grpc-timeout`
    /// format or as plain (possibly fractional) seconds.
    pub fn http_header(mut self, header: HeaderName) -> Self {
        self.header = Some(header);
        self
    }

    /// The same, with `max` as the server's own limit instead.
    pub(crate) fn replace_max(self, max: Option<Duration>) -> Self {
        ServerDeadline { max, ..self }
    }

    /// The caller's time limit carried by `headers`, if any.
    pub fn incoming(&self, headers: &http::HeaderMap) -> Option<Duration> {
        let grpc = headers
            .get(&GRPC_TIMEOUT_NAME)
            .and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let http = self
            .header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| {
                parse_grpc_timeout(v.as_bytes()).or_else(|| {
                    let secs: f64 = std::str::from_utf8(v.as_bytes())
                        .ok()?
                        .trim()
                        .parse()
                        .ok()?;
                    (0.0..1e9)
                        .contains(&secs)
                        .then(|| Duration::from_secs_f64(secs))
                })
            });
        match (grpc, http) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl<B> TimeoutPolicy<http::Request<B>> for ServerDeadline {
    fn timeout(&self, req: &http::Request<B>) -> Option<Duration> {
        match (self.max, self.incoming(req.headers())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// When the work for a request must be done by, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// `budget` from now (a budget too long to represent is "never": see
    /// [`saturating_add`](bulwark_core::clock::saturating_add)).
    pub fn after(budget: Duration) -> Self {
        Deadline(bulwark_core::clock::saturating_add(Instant::now(), budget))
    }

    /// The time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A request that can carry a [`Deadline`] and have its headers written:
/// what [`DeadlineLayer`] and [`PropagateDeadlineLayer`] work on.
///
/// `http::Request<B>` keeps the deadline in its extensions. With the
/// `reqwest` feature, `reqwest::Request` is one too, but it has no
/// extensions: it never carries a deadline, so both layers pass it
/// unchanged.
pub trait DeadlineRequest: RequestParts {
    /// The deadline the request carries, if any.
    fn deadline(&self) -> Option<Deadline>;
    /// Makes the request carry `deadline`.
    fn set_deadline(&mut self, deadline: Deadline);
    /// The request headers, to write.
    fn headers_mut(&mut self) -> &mut HeaderMap;
}

impl<B> DeadlineRequest for http::Request<B> {
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Deadline>().copied()
    }

    #[inline]
    fn set_deadline(&mut self, deadline: Deadline) {
        self.extensions_mut().insert(deadline);
    }

    #[inline]
    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl DeadlineRequest for reqwest::Request {
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        None
    }

    #[inline]
    fn set_deadline(&mut self, _: Deadline) {}

    #[inline]
    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }
}

/// The retry hook that reads the [`Deadline`] a request carries (see
/// [`RetryLayer::deadline_from`](bulwark_retry::RetryLayer::deadline_from)),
/// so that retry knows when the caller gives up: a retry that cannot come
/// before it is not made, and the last answer is returned at once. The
/// [`ClientStack`](crate::ClientStack) uses it.
///
/// ```
/// use bulwark::http::deadline::{CarriedDeadline, Deadline};
/// use bulwark::retry::policy::RequestDeadline;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut req = http::Request::new(());
/// assert_eq!(CarriedDeadline.deadline(&req), None);
/// let deadline = Deadline::after(Duration::from_secs(2));
/// req.extensions_mut().insert(deadline);
/// assert_eq!(CarriedDeadline.deadline(&req), Some(deadline.0));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarriedDeadline;

impl<R: DeadlineRequest> bulwark_retry::policy::RequestDeadline<R> for CarriedDeadline {
    #[inline]
    fn deadline(&self, request: &R) -> Option<Instant> {
        DeadlineRequest::deadline(request).map(|d| d.0)
    }
}

/// Whether `headers` say the request is a gRPC call (`content-type:
/// application/grpc...`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Server side: stores each request's [`Deadline`] (the smaller of `max`
/// and what the caller sent) in its extensions; see the
/// [module docs](self). A request that already carries an earlier deadline
/// keeps it: a deadline is never extended.
///
/// The [`ClientStack`](crate::ClientStack) uses it too, with its total
/// timeout as `max`, so that each attempt can send the time then left.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    policy: ServerDeadline,
}

impl DeadlineLayer {
    /// At most `max` per request (`None`: only what callers send).
    pub const fn new(max: Option<Duration>) -> Self {
        DeadlineLayer {
            policy: ServerDeadline::new(max),
        }
    }

    /// Reads callers' deadlines with `policy` (e.g. with an HTTP header).
    pub const fn with_policy(policy: ServerDeadline) -> Self {
        DeadlineLayer { policy }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = SetDeadline<S>;

    fn layer(&self, inner: S) -> SetDeadline<S> {
        SetDeadline {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct SetDeadline<S> {
    inner: S,
    policy: ServerDeadline,
}

impl<S, R> Service<R> for SetDeadline<S>
where
    S: Service<R>,
    R: DeadlineRequest,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: R) -> S::Future {
        let budget = match (self.policy.max, self.policy.incoming(req.headers())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(budget) = budget {
            let new = Deadline::after(budget);
            if req.deadline().is_none_or(|old| new.0 < old.0) {
                req.set_deadline(new);
            }
        }
        self.inner.call(req)
    }
}

/// Client side: writes the time left before the request's [`Deadline`]
/// into `grpc-timeout` (and optionally another header, in seconds); see
/// the [module docs](self). Requests without a deadline pass unchanged.
///
/// ```
/// use bulwark::http::deadline::{Deadline, PropagateDeadlineLayer};
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // gRPC calls only, and never more than 1 s (say, the attempt timeout).
/// let svc = ServiceBuilder::new()
///     .layer(PropagateDeadlineLayer::new().grpc_only().max(Duration::from_secs(1)))
///     .service_fn(|req: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(req.headers().get("grpc-timeout").cloned())
///     });
/// let mut call = http::Request::post("/pkg.Svc/Get")
///     .header("content-type", "application/grpc")
///     .body(())
///     .unwrap();
/// call.extensions_mut().insert(Deadline::after(Duration::from_secs(5)));
/// assert_eq!(svc.clone().oneshot(call).await.unwrap().unwrap(), "1000000u");
/// let mut plain = http::Request::get("/").body(()).unwrap();
/// plain.extensions_mut().insert(Deadline::after(Duration::from_secs(5)));
/// assert_eq!(svc.oneshot(plain).await.unwrap(), None);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PropagateDeadlineLayer {
    http_header: Option<HeaderName>,
    max: Option<Duration>,
    grpc_only: bool,
}

impl PropagateDeadlineLayer {
    /// Writes `grpc-timeout`.
    pub const fn new() -> Self {
        PropagateDeadlineLayer {
            http_header: None,
            max: None,
            grpc_only: false,
        }
    }

    /// Never sends more than `max` (e.g. the attempt timeout, after which
    /// this client gives up on the attempt anyway).
    pub const fn max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }

    /// Only writes to gRPC calls (`content-type: application/grpc...`).
    pub const fn grpc_only(mut self) -> Self {
        self.grpc_only = true;
        self
    }

    /// Also writes `header` with the seconds left (e.g.
    /// `x-request-timeout: 1.250`).
    pub fn http_header(mut self, header: HeaderName) -> Self {
        self.http_header = Some(header);
        self
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> PropagateDeadline<S> {
        PropagateDeadline {
            inner,
            http_header: self.http_header.clone(),
            max: self.max,
            grpc_only: self.grpc_only,
        }
    }
}

/// The service of [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    http_header: Option<HeaderName>,
    max: Option<Duration>,
    grpc_only: bool,
}

impl<S, R> Service<R> for PropagateDeadline<S>
where
    S: Service<R>,
    R: DeadlineRequest,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: R) -> S::Future {
        if self.grpc_only && !is_grpc(req.headers()) {
            return self.inner.call(req);
        }
        if let Some(deadline) = req.deadline() {
            let left = deadline.remaining();
            let left = self.max.map_or(left, |max| max.min(left));
            let caller = req
                .headers()
                .get(&GRPC_TIMEOUT_NAME)
                .and_then(|v| parse_grpc_timeout(v.as_bytes()));
            // Never grant more than the caller already asked for.
            let left = caller.map_or(left, |c| c.min(left));
            req.headers_mut()
                .insert(GRPC_TIMEOUT_NAME, format_grpc_timeout(left));
            if let Some(h) = &self.http_header {
                if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", left.as_secs_f64())) {
                    req.headers_mut().insert(h.clone(), v);
                }
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout(b"10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse_grpc_timeout(b"7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_grpc_timeout(b"123456789S"), None);
        assert_eq!(parse_grpc_timeout(b"S"), None);
        assert_eq!(parse_grpc_timeout(b"-1S"), None);
        assert_eq!(parse_grpc_timeout(b"1x"), None);
        assert_eq!(format_grpc_timeout(Duration::from_secs(2)), "2000000u");
        assert_eq!(
            format_grpc_timeout(Duration::from_secs(1_000_000)),
            "1000000S"
        );
        let d = ServerDeadline::new(None).http_header(HeaderName::from_static("x-request-timeout"));
        let req = http::Request::get("/")
            .header("x-request-timeout", "0.5")
            .body(())
            .unwrap();
        assert_eq!(d.timeout(&req), Some(Duration::from_millis(500)));
        let req = http::Request::get("/").body(()).unwrap();
        assert_eq!(d.timeout(&req), None);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_earlier_deadline_is_kept() {
        use tower::{service_fn, ServiceExt};
        let svc = DeadlineLayer::new(Some(Duration::from_secs(10))).layer(service_fn(
            |req: http::Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.extensions().get::<Deadline>().copied())
            },
        ));
        let earlier = Deadline::after(Duration::from_secs(2));
        let mut req = http::Request::new(());
        req.extensions_mut().insert(earlier);
        assert_eq!(svc.clone().oneshot(req).await.unwrap(), Some(earlier));
        let got = svc.oneshot(http::Request::new(())).await.unwrap().unwrap();
        assert_eq!(got.remaining(), Duration::from_secs(10));
    }

    proptest! {
        #[test]
        fn grpc_timeout_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = parse_grpc_timeout(&bytes);
        }

        #[test]
        fn format_round_trips_without_granting_more(nanos in 0u64..u64::MAX / 4) {
            let d = Duration::from_nanos(nanos);
            let v = format_grpc_timeout(d);
            let back = parse_grpc_timeout(v.as_bytes()).unwrap();
            prop_assert!(back <= d);
            prop_assert!(d - back <= d / 10_000 + Duration::from_nanos(1));
        }
    }
}
