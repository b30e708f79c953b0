//! Status-based classification for HTTP and gRPC.
//!
//! [`HttpClassifier`] and [`GrpcClassifier`] implement Bulwark's
//! [`Classify`] for any response type with [`ResponseParts`]
//! (`http::Response<B>`, and `reqwest::Response` with the `reqwest`
//! feature), so the breaker, retry, fallback and metrics all read the same
//! decision:
//!
//! | answer | HTTP default | gRPC default | breaker | retry |
//! |---|---|---|---|---|
//! | server broken | `5xx`, `408` | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN` | failure | yes |
//! | asks for less load | `429`; a failure status marked `bulwark-shed` | `RESOURCE_EXHAUSTED` | **not counted** | after the pushback |
//! | caller's fault | other `4xx` | `INVALID_ARGUMENT`, `NOT_FOUND`, ... | not counted | no |
//! | transport error | connect refused, reset, timeout | same | failure | yes |
//! | Bulwark rejection | open breaker, full bulkhead | same | not counted | no |
//!
//! A server whose own timer for the call's `grpc-timeout` (the deadline the
//! client propagated) runs out answers `CANCELLED` "Timeout expired" (tonic
//! does; [`DEADLINE_CANCEL_MESSAGE`]): [`GrpcClassifier`] always judges that
//! answer [`Ignored`](Outcome::Ignored), even when `CANCELLED` is made a
//! failure: it is the caller's deadline, not a broken upstream, and a retry
//! would start after it.
//!
//! Throttling is its own class ([`Outcome::Throttled`]): a server that says
//! "slow down" is alive, and opening the breaker on it would throw away the
//! capacity it still grants.
//!
//! A Bulwark server that sheds a request (its bulkhead is full) answers 503
//! (or 429) with `Retry-After` and the [`SHED_HEADER`] marker
//! (`bulwark-shed: 1`, see [`response`](crate::response)); the classifiers
//! judge a marked answer whose status would be a failure as throttled, so a
//! Bulwark client in front of a full Bulwark server backs off instead of
//! opening its breaker on it. A bare 503, even with a `Retry-After`, is still
//! a failure: that is how a server that is down says when to come back (and
//! the breaker then stays open that long, see
//! [`ServerOpenHint`](crate::breaker::ServerOpenHint)).
//! [`HttpClassifier::ignore_shed_marker`] turns the marker off.
//!
//! ```
//! use bulwark::{BoxError, Classify, Outcome};
//! use bulwark::http::classify::HttpClassifier;
//! use http::{Response, StatusCode};
//!
//! let c = HttpClassifier::new().failure(StatusCode::NOT_IMPLEMENTED.as_u16()..=501);
//! let res = |s: u16| Ok::<_, BoxError>(Response::builder().status(s).body(()).unwrap());
//! assert_eq!(c.classify(&res(503)), Outcome::Failure);
//! assert_eq!(c.classify(&res(429)), Outcome::Throttled);
//! assert_eq!(c.classify(&res(404)), Outcome::Ignored);
//! assert_eq!(c.classify(&res(200)), Outcome::Success);
//! let refused: Result<Response<()>, BoxError> = Err("connection refused".into());
//! assert_eq!(c.classify(&refused), Outcome::Failure);
//! ```

use crate::parts::ResponseParts;
pub use crate::response::SHED_HEADER;
use bulwark_core::{BoxError, Classify, Outcome};
use http::{HeaderMap, HeaderName};

/// `grpc-status`, built once: a lookup by `&str` parses the name each time.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The message tonic's server (and channel) give the `CANCELLED` status they
/// answer when a call's `grpc-timeout` runs out.
pub const DEADLINE_CANCEL_MESSAGE: &str = "Timeout expired";

/// Whether `headers` (a head or trailers) say `CANCELLED` because the call's
/// own deadline ran out at the server: the deadline the caller sent, not a
/// sign that the upstream is broken, and nothing a retry could fix in time.
fn is_deadline_cancel(headers: &HeaderMap) -> bool {
    headers
        .get(&GRPC_STATUS)
        .is_some_and(|v| v.as_bytes() == b"1")
        && headers.get(&GRPC_MESSAGE).is_some_and(|m| {
            // Percent-encoded on the wire (tonic encodes the space), or not.
            m.as_bytes() == b"Timeout%20expired"
                || m.as_bytes() == DEADLINE_CANCEL_MESSAGE.as_bytes()
        })
}
use std::fmt;
use std::ops::RangeInclusive;
use tower_http::classify::{
    ClassifiedResponse, ClassifyEos, ClassifyResponse, GrpcErrorsAsFailures,
};

pub use tower_http::classify::GrpcCode;

/// A set of status codes 0..1024 (HTTP statuses are 100..=999).
#[derive(Clone, Copy, PartialEq, Eq)]
struct StatusSet([u64; 16]);

impl StatusSet {
    const EMPTY: StatusSet = StatusSet([0; 16]);

    const fn contains(&self, status: u16) -> bool {
        let s = status as usize;
        s < 1024 && self.0[s / 64] & (1 << (s % 64)) != 0
    }

    fn set(&mut self, range: RangeInclusive<u16>, on: bool) {
        for s in range {
            let s = s as usize;
            if s < 1024 {
                if on {
                    self.0[s / 64] |= 1 << (s % 64);
                } else {
                    self.0[s / 64] &= !(1 << (s % 64));
                }
            }
        }
    }
}

/// Classifies HTTP responses by status code; see the [module docs](self).
///
/// Defaults: `5xx` and `408 Request Timeout` are failures, `429 Too Many
/// Requests` is throttled, `1xx`-`3xx` succeed, other `4xx` are
/// [`Ignored`](Outcome::Ignored) (the caller's fault says nothing about the
/// upstream). An `Err` is a failure unless it is a Bulwark rejection.
/// A status in no set succeeds if below 400 and is ignored otherwise. An
/// answer marked as shed ([`SHED_HEADER`]) whose status would be a failure
/// is throttled (see the [module docs](self)).
///
/// ```
/// use bulwark::{BoxError, Classify, Outcome};
/// use bulwark::http::classify::HttpClassifier;
///
/// // 503 only asks for less load here; 404 counts as a failure.
/// let c = HttpClassifier::new().throttled(503..=503).failure(404..=404);
/// let res = |s: u16| Ok::<_, BoxError>(http::Response::builder().status(s).body(()).unwrap());
/// assert_eq!(c.classify(&res(503)), Outcome::Throttled);
/// assert_eq!(c.classify(&res(404)), Outcome::Failure);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HttpClassifier {
    failure: StatusSet,
    throttled: StatusSet,
    // Whether a failure status marked as shed is throttled.
    shed_marker: bool,
}

impl HttpClassifier {
    /// The defaults: `5xx` and `408` fail, `429` is throttled.
    pub fn new() -> Self {
        let mut c = HttpClassifier {
            failure: StatusSet::EMPTY,
            throttled: StatusSet::EMPTY,
            shed_marker: true,
        };
        c.failure.set(500..=599, true);
        c.failure.set(408..=408, true);
        c.throttled.set(429..=429, true);
        c
    }

    /// Counts the statuses in `range` as failures (and no longer as
    /// throttled).
    pub fn failure(mut self, range: RangeInclusive<u16>) -> Self {
        self.throttled.set(range.clone(), false);
        self.failure.set(range, true);
        self
    }

    /// Counts the statuses in `range` as throttled (and no longer as
    /// failures).
    pub fn throttled(mut self, range: RangeInclusive<u16>) -> Self {
        self.failure.set(range.clone(), false);
        self.throttled.set(range, true);
        self
    }

    /// Counts the statuses in `range` as neither failures nor throttled:
    /// below 400 they succeed, from 400 on they are ignored.
    pub fn not_failure(mut self, range: RangeInclusive<u16>) -> Self {
        self.failure.set(range.clone(), false);
        self.throttled.set(range, false);
        self
    }

    /// Judges answers marked as shed ([`SHED_HEADER`]) by their status alone,
    /// like any other answer (by default, a marked answer whose status would
    /// be a failure is throttled).
    ///
    /// ```
    /// use bulwark::{BoxError, Classify, Outcome};
    /// use bulwark::http::classify::{HttpClassifier, SHED_HEADER};
    ///
    /// let shed = Ok::<_, BoxError>(
    ///     http::Response::builder().status(503).header(SHED_HEADER, "1").body(()).unwrap(),
    /// );
    /// assert_eq!(HttpClassifier::new().classify(&shed), Outcome::Throttled);
    /// assert_eq!(HttpClassifier::new().ignore_shed_marker().classify(&shed), Outcome::Failure);
    /// ```
    pub const fn ignore_shed_marker(mut self) -> Self {
        self.shed_marker = false;
        self
    }

    /// The class of an answer: its status, and the shed marker.
    #[inline]
    pub fn classify_response<Res: ResponseParts>(&self, res: &Res) -> Outcome {
        match self.classify_status(res.status()) {
            Outcome::Failure
                if self.shed_marker
                    && res
                        .headers()
                        .contains_key(&crate::response::SHED_HEADER_NAME) =>
            {
                Outcome::Throttled
            }
            outcome => outcome,
        }
    }

    /// The class of one status code (without the shed marker, which is in
    /// the headers: see [`classify_response`](Self::classify_response)).
    #[inline]
    pub const fn classify_status(&self, status: http::StatusCode) -> Outcome {
        let s = status.as_u16();
        if self.failure.contains(s) {
            Outcome::Failure
        } else if self.throttled.contains(s) {
            Outcome::Throttled
        } else if s < 400 {
            Outcome::Success
        } else {
            Outcome::Ignored
        }
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |set: &StatusSet| (100..1000u16).filter(|s| set.contains(*s)).count();
        f.debug_struct("HttpClassifier")
            .field("failure_statuses", &list(&self.failure))
            .field("throttled_statuses", &list(&self.throttled))
            .finish()
    }
}

impl<Res: ResponseParts> Classify<Res> for HttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome {
        match result {
            Ok(res) => self.classify_response(res),
            Err(e) => Outcome::of_error(e),
        }
    }
}

const fn code_bit(code: GrpcCode) -> u32 {
    1 << code_number(code)
}

/// The number of a gRPC code (`OK` is 0, `UNAUTHENTICATED` 16).
pub const fn code_number(code: GrpcCode) -> i32 {
    // tower-http's `GrpcCode` is `#[repr(i32)]` with the codes' numbers.
    code as i32
}

const ALL_CODES: [GrpcCode; 17] = [
    GrpcCode::Ok,
    GrpcCode::Cancelled,
    GrpcCode::Unknown,
    GrpcCode::InvalidArgument,
    GrpcCode::DeadlineExceeded,
    GrpcCode::NotFound,
    GrpcCode::AlreadyExists,
    GrpcCode::PermissionDenied,
    GrpcCode::ResourceExhausted,
    GrpcCode::FailedPrecondition,
    GrpcCode::Aborted,
    GrpcCode::OutOfRange,
    GrpcCode::Unimplemented,
    GrpcCode::Internal,
    GrpcCode::Unavailable,
    GrpcCode::DataLoss,
    GrpcCode::Unauthenticated,
];

/// Classifies gRPC responses by their `grpc-status`; see the
/// [module docs](self).
///
/// The status is read with tower-http's [`GrpcErrorsAsFailures`] from the
/// response headers (a "trailers-only" response, which is how servers send
/// an error returned before any message). A response without `grpc-status`
/// in its headers carries it in its trailers: it is a success when the
/// headers arrive, and [`classify_trailers`](Self::classify_trailers) judges
/// the trailers at the end of the stream. A response whose HTTP status is
/// not 2xx is judged by the HTTP defaults ([`HttpClassifier`], shed marker
/// included). With the
/// `tonic` feature, an `Err` carrying a `tonic::Status` is judged by its
/// code.
///
/// Defaults: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL` and `UNKNOWN`
/// fail; `RESOURCE_EXHAUSTED` is throttled; `OK` succeeds; every other code
/// is ignored.
///
/// ```
/// use bulwark::{BoxError, Classify, Outcome};
/// use bulwark::http::classify::{GrpcClassifier, GrpcCode};
///
/// let c = GrpcClassifier::new();
/// let res = |code: &str| Ok::<_, BoxError>(
///     http::Response::builder().header("grpc-status", code).body(()).unwrap(),
/// );
/// assert_eq!(c.classify(&res("14")), Outcome::Failure); // UNAVAILABLE
/// assert_eq!(c.classify(&res("8")), Outcome::Throttled); // RESOURCE_EXHAUSTED
/// assert_eq!(c.classify(&res("3")), Outcome::Ignored); // INVALID_ARGUMENT
/// assert_eq!(c.classify(&res("0")), Outcome::Success);
///
/// // Make ABORTED a failure too.
/// let c = c.failure(GrpcCode::Aborted);
/// assert_eq!(c.classify(&res("10")), Outcome::Failure);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    failure: u32,
    throttled: u32,
    http: HttpClassifier,
}

impl GrpcClassifier {
    /// The defaults listed above.
    pub const fn new() -> Self {
        GrpcClassifier {
            failure: code_bit(GrpcCode::Unavailable)
                | code_bit(GrpcCode::DeadlineExceeded)
                | code_bit(GrpcCode::Internal)
                | code_bit(GrpcCode::Unknown),
            throttled: code_bit(GrpcCode::ResourceExhausted),
            http: HttpClassifier {
                failure: StatusSet::EMPTY,
                throttled: StatusSet::EMPTY,
                shed_marker: true,
            },
        }
        .with_http_defaults()
    }

    const fn with_http_defaults(mut self) -> Self {
        // `HttpClassifier::new` is not const; build the same sets by hand.
        let mut i = 500;
        while i < 600 {
            self.http.failure.0[i / 64] |= 1 << (i % 64);
            i += 1;
        }
        self.http.failure.0[408 / 64] |= 1 << (408 % 64);
        self.http.throttled.0[429 / 64] |= 1 << (429 % 64);
        self
    }

    /// Counts `code` as a failure.
    pub const fn failure(mut self, code: GrpcCode) -> Self {
        self.throttled &= !code_bit(code);
        self.failure |= code_bit(code);
        self
    }

    /// Counts `code` as throttled.
    pub const fn throttled(mut self, code: GrpcCode) -> Self {
        self.failure &= !code_bit(code);
        self.throttled |= code_bit(code);
        self
    }

    /// Counts `code` as neither a failure nor throttled.
    pub const fn not_failure(mut self, code: GrpcCode) -> Self {
        self.failure &= !code_bit(code);
        self.throttled &= !code_bit(code);
        self
    }

    /// The class of one gRPC status code (unknown numbers are `UNKNOWN`).
    pub fn classify_code(&self, code: i32) -> Outcome {
        let bit = match code {
            0 => return Outcome::Success,
            1..=16 => 1u32 << code,
            _ => code_bit(GrpcCode::Unknown),
        };
        if self.failure & bit != 0 {
            Outcome::Failure
        } else if self.throttled & bit != 0 {
            Outcome::Throttled
        } else {
            Outcome::Ignored
        }
    }

    /// tower-http's classifier with every code we do not act on as a
    /// success, so that it reports exactly the codes we act on.
    fn tower_http(&self) -> GrpcErrorsAsFailures {
        let acted = self.failure | self.throttled;
        ALL_CODES
            .into_iter()
            .filter(|c| acted & code_bit(*c) == 0)
            .fold(GrpcErrorsAsFailures::new(), |t, c| t.with_success(c))
    }

    fn classify_failure(&self, class: tower_http::classify::GrpcFailureClass) -> Outcome {
        match class {
            tower_http::classify::GrpcFailureClass::Status(status) => {
                self.classify_code(status.code_raw())
            }
            // A malformed status, and whatever tower-http adds later.
            _ => Outcome::Failure,
        }
    }

    /// The class of a stream's end, from its trailers (`None`: the stream
    /// ended without trailers, which gRPC servers do not do on success, but
    /// tower-http treats as success and so do we).
    ///
    /// ```
    /// use bulwark::Outcome;
    /// use bulwark::http::classify::GrpcClassifier;
    ///
    /// let mut trailers = http::HeaderMap::new();
    /// trailers.insert("grpc-status", "14".parse().unwrap());
    /// assert_eq!(GrpcClassifier::new().classify_trailers(Some(&trailers)), Outcome::Failure);
    /// ```
    pub fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> Outcome {
        if trailers.is_some_and(is_deadline_cancel) {
            return Outcome::Ignored;
        }
        let head = http::Response::new(());
        match self.tower_http().classify_response(&head) {
            ClassifiedResponse::RequiresEos(eos) => match eos.classify_eos(trailers) {
                Ok(()) => match trailers.and_then(|t| t.get(&GRPC_STATUS)) {
                    Some(v) if v.as_bytes() == b"0" => Outcome::Success,
                    Some(v) => std::str::from_utf8(v.as_bytes())
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        .map_or(Outcome::Success, |c| self.classify_code(c)),
                    None => Outcome::Success,
                },
                Err(class) => self.classify_failure(class),
            },
            ClassifiedResponse::Ready(_) => Outcome::Success,
        }
    }

    /// Whether the verdict on `res` is in its trailers: a 2xx head without
    /// `grpc-status` (a trailers-only answer carries it in the head, and a
    /// non-2xx answer is judged by its HTTP status). Such a head
    /// [classifies](Self::classify_head) as a success; the
    /// [`GrpcHostBreakerLayer`](crate::breaker::GrpcHostBreakerLayer) waits
    /// for the trailers instead.
    ///
    /// ```
    /// use bulwark::http::GrpcClassifier;
    ///
    /// let c = GrpcClassifier::new();
    /// let streaming = http::Response::new(());
    /// let trailers_only = http::Response::builder().header("grpc-status", "14").body(()).unwrap();
    /// assert!(c.needs_trailers(&streaming));
    /// assert!(!c.needs_trailers(&trailers_only));
    /// ```
    #[inline]
    pub fn needs_trailers<Res: ResponseParts>(&self, res: &Res) -> bool {
        res.status().is_success() && !res.headers().contains_key(&GRPC_STATUS)
    }

    /// The class of a response head: its `grpc-status` if present, its HTTP
    /// status otherwise.
    pub fn classify_head<Res: ResponseParts>(&self, res: &Res) -> Outcome {
        let status = res.status();
        if !status.is_success() && res.headers().get(&GRPC_STATUS).is_none() {
            return self.http.classify_response(res);
        }
        let value = match res.headers().get(&GRPC_STATUS) {
            // The common answer, without building anything.
            Some(v) if v.as_bytes() == b"0" => return Outcome::Success,
            Some(_) if is_deadline_cancel(res.headers()) => return Outcome::Ignored,
            Some(v) => v.clone(),
            None => return Outcome::Success,
        };
        let mut head = http::Response::new(());
        head.headers_mut().insert(GRPC_STATUS, value);
        match self.tower_http().classify_response(&head) {
            ClassifiedResponse::Ready(Ok(())) => {
                // Success or one of the codes we do not act on.
                let code = head
                    .headers()
                    .get(&GRPC_STATUS)
                    .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .unwrap_or(0);
                self.classify_code(code)
            }
            ClassifiedResponse::Ready(Err(class)) => self.classify_failure(class),
            ClassifiedResponse::RequiresEos(_) => Outcome::Success,
        }
    }

    /// The class of an error: a `tonic::Status` anywhere in its chain is
    /// judged by its code (with the `tonic` feature); anything else as
    /// [`Outcome::of_error`].
    pub fn classify_error(&self, error: &BoxError) -> Outcome {
        #[cfg(feature = "tonic")]
        if !bulwark_core::error::is_rejection(&**error) {
            if let Some(status) = bulwark_core::error::find::<tonic::Status>(&**error) {
                if status.code() == tonic::Code::Cancelled
                    && status.message() == DEADLINE_CANCEL_MESSAGE
                {
                    return Outcome::Ignored;
                }
                return self.classify_code(status.code() as i32);
            }
        }
        Outcome::of_error(error)
    }
}

/// The end-of-stream half of a [`GrpcClassifier`]: its codes, without the
/// HTTP status sets, small enough (8 bytes) to travel with every response
/// body whose verdict is in its trailers
/// ([`VerdictBody`](crate::verdict::VerdictBody)).
///
/// ```
/// use bulwark::Outcome;
/// use bulwark::http::GrpcClassifier;
///
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap());
/// assert_eq!(GrpcClassifier::new().end().classify_trailers(Some(&trailers)), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcEnd {
    failure: u32,
    throttled: u32,
}

impl GrpcEnd {
    /// As [`GrpcClassifier::classify_trailers`].
    pub fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> Outcome {
        GrpcClassifier {
            failure: self.failure,
            throttled: self.throttled,
            // Not read by the trailers' verdict.
            http: HttpClassifier {
                failure: StatusSet::EMPTY,
                throttled: StatusSet::EMPTY,
                shed_marker: true,
            },
        }
        .classify_trailers(trailers)
    }
}

impl GrpcClassifier {
    /// Its end-of-stream half ([`GrpcEnd`]).
    pub const fn end(&self) -> GrpcEnd {
        GrpcEnd {
            failure: self.failure,
            throttled: self.throttled,
        }
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for GrpcClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClassifier")
            .field("failure", &format_args!("{:#019b}", self.failure))
            .field("throttled", &format_args!("{:#019b}", self.throttled))
            .finish()
    }
}

impl<Res: ResponseParts> Classify<Res> for GrpcClassifier {
    #[inline]
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome {
        match result {
            Ok(res) => self.classify_head(res),
            Err(e) => self.classify_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_core::error::CircuitOpen;

    fn res(status: u16) -> Result<http::Response<()>, BoxError> {
        Ok(http::Response::builder().status(status).body(()).unwrap())
    }

    fn grpc(code: &str) -> Result<http::Response<()>, BoxError> {
        Ok(http::Response::builder()
            .header("grpc-status", code)
            .body(())
            .unwrap())
    }

    #[test]
    fn http_defaults() {
        let c = HttpClassifier::new();
        for (s, o) in [
            (200, Outcome::Success),
            (204, Outcome::Success),
            (301, Outcome::Success),
            (400, Outcome::Ignored),
            (404, Outcome::Ignored),
            (408, Outcome::Failure),
            (429, Outcome::Throttled),
            (500, Outcome::Failure),
            (503, Outcome::Failure),
            (599, Outcome::Failure),
            (999, Outcome::Ignored),
        ] {
            assert_eq!(c.classify(&res(s)), o, "status {s}");
        }
        let open: Result<http::Response<()>, BoxError> = Err(CircuitOpen::new(None).into());
        assert_eq!(c.classify(&open), Outcome::Rejected);
        let c = c.not_failure(500..=599).failure(404..=404);
        assert_eq!(c.classify(&res(503)), Outcome::Ignored);
        assert_eq!(c.classify(&res(404)), Outcome::Failure);
    }

    fn marked(status: u16, retry_after: bool) -> Result<http::Response<()>, BoxError> {
        let mut res = http::Response::builder()
            .status(status)
            .header(SHED_HEADER, "1");
        if retry_after {
            res = res.header("retry-after", "1");
        }
        Ok(res.body(()).unwrap())
    }

    #[test]
    fn shed_answers_are_throttled_not_failures() {
        let http = HttpClassifier::new();
        let grpc = GrpcClassifier::new();
        for retry_after in [false, true] {
            // What a Bulwark server sheds with.
            assert_eq!(http.classify(&marked(503, retry_after)), Outcome::Throttled);
            assert_eq!(http.classify(&marked(429, retry_after)), Outcome::Throttled);
            assert_eq!(grpc.classify(&marked(503, retry_after)), Outcome::Throttled);
            // The marker does not turn other answers into throttling.
            assert_eq!(http.classify(&marked(200, retry_after)), Outcome::Success);
            assert_eq!(http.classify(&marked(404, retry_after)), Outcome::Ignored);
            // Turned off, the status decides.
            let off = http.ignore_shed_marker();
            assert_eq!(off.classify(&marked(503, retry_after)), Outcome::Failure);
        }
        // Without the marker a 503 fails, Retry-After or not: a server that
        // is down says when to come back that way.
        let down = Ok::<_, BoxError>(
            http::Response::builder()
                .status(503)
                .header("retry-after", "20")
                .body(())
                .unwrap(),
        );
        assert_eq!(http.classify(&down), Outcome::Failure);
        assert_eq!(grpc.classify(&down), Outcome::Failure);
        // A gRPC answer is judged by its grpc-status, marker or not.
        let grpc_answer = Ok::<_, BoxError>(
            http::Response::builder()
                .header("grpc-status", "14")
                .header(SHED_HEADER, "1")
                .body(())
                .unwrap(),
        );
        assert_eq!(grpc.classify(&grpc_answer), Outcome::Failure);
    }

    #[test]
    fn grpc_defaults() {
        let c = GrpcClassifier::new();
        for (code, o) in [
            ("0", Outcome::Success),
            ("1", Outcome::Ignored),
            ("2", Outcome::Failure),
            ("3", Outcome::Ignored),
            ("4", Outcome::Failure),
            ("5", Outcome::Ignored),
            ("8", Outcome::Throttled),
            ("13", Outcome::Failure),
            ("14", Outcome::Failure),
            ("99", Outcome::Failure),  // unknown numbers are UNKNOWN
            ("abc", Outcome::Success), // tower-http: unparsable is not a failure
        ] {
            assert_eq!(c.classify(&grpc(code)), o, "code {code}");
        }
        // No grpc-status in the headers: the trailers decide later.
        assert_eq!(c.classify(&res(200)), Outcome::Success);
        // Not a gRPC answer at all.
        assert_eq!(c.classify(&res(503)), Outcome::Failure);
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "4".parse().unwrap());
        assert_eq!(c.classify_trailers(Some(&t)), Outcome::Failure);
        t.insert("grpc-status", "8".parse().unwrap());
        assert_eq!(c.classify_trailers(Some(&t)), Outcome::Throttled);
        t.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(c.classify_trailers(Some(&t)), Outcome::Success);
        assert_eq!(c.classify_trailers(None), Outcome::Success);
        let c = c
            .not_failure(GrpcCode::Unavailable)
            .throttled(GrpcCode::Aborted);
        assert_eq!(c.classify(&grpc("14")), Outcome::Ignored);
        assert_eq!(c.classify(&grpc("10")), Outcome::Throttled);
    }

    #[test]
    fn a_deadline_cancel_is_ignored_even_when_cancelled_fails() {
        let c = GrpcClassifier::new().failure(GrpcCode::Cancelled);
        for msg in ["Timeout%20expired", "Timeout expired"] {
            let head: Result<_, BoxError> = Ok(http::Response::builder()
                .header("grpc-status", "1")
                .header("grpc-message", msg)
                .body(())
                .unwrap());
            assert_eq!(c.classify(&head), Outcome::Ignored, "{msg}");
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "1".parse().unwrap());
            trailers.insert("grpc-message", msg.parse().unwrap());
            assert_eq!(c.classify_trailers(Some(&trailers)), Outcome::Ignored);
        }
        // CANCELLED for another reason is what the caller configured.
        assert_eq!(c.classify(&grpc("1")), Outcome::Failure);
        #[cfg(feature = "tonic")]
        {
            let e: BoxError = tonic::Status::cancelled(DEADLINE_CANCEL_MESSAGE).into();
            assert_eq!(c.classify_error(&e), Outcome::Ignored);
            let e: BoxError = tonic::Status::cancelled("by the user").into();
            assert_eq!(c.classify_error(&e), Outcome::Failure);
        }
    }
}
