//! Server pushback: `Retry-After` and `grpc-retry-pushback-ms`.
//!
//! A server that is overloaded or briefly down says when to come back. The
//! parsers here read what it said, robustly: a header is untrusted input, so
//! garbage is ignored, a date in the past means "now", and nothing panics or
//! overflows. Huge values are capped by whoever uses them
//! ([`ServerPushback::max`], the retry layer's `max_pushback`).
//!
//! [`ServerPushback`] is a [`Pushback`] for Bulwark's retry layer: the delay
//! before the next attempt honours the server's wish instead of the backoff.
//! The client stack also feeds it to the breaker: an open breaker stays open
//! at least as long as the server asked.
//!
//! ```
//! use bulwark::http::pushback::{parse_grpc_retry_pushback, parse_retry_after};
//! use bulwark::retry::PushbackHint;
//! use std::time::{Duration, SystemTime};
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
//! assert_eq!(parse_retry_after(b"120", now), Some(Duration::from_secs(120)));
//! assert_eq!(
//!     parse_retry_after(b"Wed, 21 Oct 2015 07:28:30 GMT", now),
//!     Some(Duration::from_secs(30)),
//! );
//! assert_eq!(parse_retry_after(b"-1", now), None);
//! assert_eq!(parse_retry_after(b"soon", now), None);
//!
//! assert_eq!(parse_grpc_retry_pushback(b"250"), PushbackHint::After(Duration::from_millis(250)));
//! // gRPC: a negative or malformed pushback means "do not retry".
//! assert_eq!(parse_grpc_retry_pushback(b"-1"), PushbackHint::Stop);
//! ```

use crate::body::NotReplayed;
use crate::parts::ResponseParts;
use bulwark_core::BoxError;
use bulwark_retry::{Pushback, PushbackHint};
use http::HeaderMap;
use std::time::{Duration, SystemTime};

/// The `grpc-retry-pushback-ms` metadata key.
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, and the two obsolete formats),
/// relative to `now`.
///
/// Returns `None` for anything else (empty, negative, fractional, text). A
/// date in the past gives [`Duration::ZERO`]. Seconds too large for a `u64`
/// saturate; callers cap the result.
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and overflow means "a very long
        // time".
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a `grpc-retry-pushback-ms` value as gRPC's retry design says: a
/// non-negative integer is the delay in milliseconds; anything else
/// (negative, malformed) means the server asks not to retry.
pub fn parse_grpc_retry_pushback(value: &[u8]) -> PushbackHint {
    let text = match std::str::from_utf8(value) {
        Ok(t) => t.trim(),
        Err(_) => return PushbackHint::Stop,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return PushbackHint::Stop;
    }
    let ms = text.parse::<u64>().unwrap_or(u64::MAX);
    PushbackHint::After(Duration::from_millis(ms))
}

/// Reads the pushback in response headers (or trailers): the gRPC key if
/// present, `Retry-After` otherwise, with long delays capped at `max`.
pub fn pushback_from_headers(headers: &HeaderMap, max: Duration) -> PushbackHint {
    if let Some(v) = headers.get(GRPC_RETRY_PUSHBACK_MS) {
        return match parse_grpc_retry_pushback(v.as_bytes()) {
            PushbackHint::After(d) => PushbackHint::After(d.min(max)),
            other => other,
        };
    }
    match headers.get(http::header::RETRY_AFTER) {
        Some(v) => match parse_retry_after(v.as_bytes(), SystemTime::now()) {
            Some(d) => PushbackHint::After(d.min(max)),
            None => PushbackHint::None,
        },
        None => PushbackHint::None,
    }
}

/// Honours server pushback in Bulwark's retry layer.
///
/// For a response: `grpc-retry-pushback-ms` (a delay, or "do not retry"),
/// else `Retry-After`, capped at [`max`](Self::max) (default 60 s). A
/// response marked [`NotReplayed`] (its streaming body went over the replay
/// cap) stops retries. For an error (with the `tonic` feature): the
/// pushback in a `tonic::Status`'s metadata.
///
/// ```
/// use bulwark::BoxError;
/// use bulwark::http::pushback::ServerPushback;
/// use bulwark::retry::{Pushback, PushbackHint};
/// use std::time::Duration;
///
/// let p = ServerPushback::new().max(Duration::from_secs(10));
/// let res: Result<_, BoxError> =
///     Ok(http::Response::builder().status(429).header("retry-after", "3").body(()).unwrap());
/// assert_eq!(p.pushback(&res), PushbackHint::After(Duration::from_secs(3)));
/// let res: Result<_, BoxError> =
///     Ok(http::Response::builder().status(503).header("retry-after", "86400").body(()).unwrap());
/// assert_eq!(p.pushback(&res), PushbackHint::After(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPushback {
    max: Duration,
}

impl ServerPushback {
    /// Reads pushback, capped at 60 s.
    pub const fn new() -> Self {
        ServerPushback {
            max: Duration::from_secs(60),
        }
    }

    /// Caps the delays read at `max`.
    pub const fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The cap.
    pub const fn get_max(&self) -> Duration {
        self.max
    }

    /// The hint carried by one result.
    pub fn hint<Res: ResponseParts>(&self, result: &Result<Res, BoxError>) -> PushbackHint {
        match result {
            Ok(res) => {
                if res.extensions().get::<NotReplayed>().is_some() {
                    return PushbackHint::Stop;
                }
                pushback_from_headers(res.headers(), self.max)
            }
            Err(e) => {
                if bulwark_core::error::is_caused_by::<crate::body::BodyNotReplayable>(&**e) {
                    return PushbackHint::Stop;
                }
                #[cfg(feature = "tonic")]
                if let Some(status) = bulwark_core::error::find::<tonic::Status>(&**e) {
                    return pushback_from_headers(status.metadata().as_ref(), self.max);
                }
                PushbackHint::None
            }
        }
    }
}

impl Default for ServerPushback {
    fn default() -> Self {
        Self::new()
    }
}

impl<Res: ResponseParts> Pushback<Res> for ServerPushback {
    #[inline]
    fn pushback(&self, result: &Result<Res, BoxError>) -> PushbackHint {
        self.hint(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480) // 07:28:00
    }

    #[test]
    fn retry_after_forms() {
        let n = now();
        assert_eq!(parse_retry_after(b"0", n), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(b" 7 ", n), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(b"99999999999999999999999999", n),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after(b"-5", n), None);
        assert_eq!(parse_retry_after(b"1.5", n), None);
        assert_eq!(parse_retry_after(b"", n), None);
        assert_eq!(parse_retry_after(b"\xff\xfe", n), None);
        // The three HTTP-date formats.
        for date in [
            "Wed, 21 Oct 2015 07:28:10 GMT",
            "Wednesday, 21-Oct-15 07:28:10 GMT",
            "Wed Oct 21 07:28:10 2015",
        ] {
            assert_eq!(
                parse_retry_after(date.as_bytes(), n),
                Some(Duration::from_secs(10)),
                "{date}"
            );
        }
        // In the past: now.
        assert_eq!(
            parse_retry_after(b"Wed, 21 Oct 2015 07:00:00 GMT", n),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn grpc_pushback_forms() {
        assert_eq!(
            parse_grpc_retry_pushback(b"0"),
            PushbackHint::After(Duration::ZERO)
        );
        assert_eq!(parse_grpc_retry_pushback(b"x"), PushbackHint::Stop);
        assert_eq!(parse_grpc_retry_pushback(b"-100"), PushbackHint::Stop);
        let mut h = HeaderMap::new();
        h.insert(GRPC_RETRY_PUSHBACK_MS, "999999999999".parse().unwrap());
        h.insert("retry-after", "1".parse().unwrap());
        assert_eq!(
            pushback_from_headers(&h, Duration::from_secs(5)),
            PushbackHint::After(Duration::from_secs(5))
        );
    }

    #[test]
    fn not_replayed_stops() {
        let mut res = http::Response::builder().status(503).body(()).unwrap();
        res.extensions_mut().insert(NotReplayed);
        let r: Result<_, BoxError> = Ok(res);
        assert_eq!(ServerPushback::new().hint(&r), PushbackHint::Stop);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), secs in any::<u64>()) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs % (1 << 40));
            let _ = parse_retry_after(&bytes, now);
            let _ = parse_grpc_retry_pushback(&bytes);
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert("retry-after", v.clone());
                let hint = pushback_from_headers(&h, Duration::from_secs(60));
                if let PushbackHint::After(d) = hint {
                    prop_assert!(d <= Duration::from_secs(60));
                }
                h.insert(GRPC_RETRY_PUSHBACK_MS, v);
                let _ = pushback_from_headers(&h, Duration::from_secs(60));
            }
        }

        #[test]
        fn dates_round_trip(offset in 0u64..10_000_000) {
            let n = now();
            let at = n + Duration::from_secs(offset);
            let text = httpdate::fmt_http_date(at);
            prop_assert_eq!(parse_retry_after(text.as_bytes(), n), Some(Duration::from_secs(offset)));
        }

        #[test]
        fn digits_parse(secs in any::<u64>()) {
            prop_assert_eq!(parse_retry_after(secs.to_string().as_bytes(), now()), Some(Duration::from_secs(secs)));
        }
    }
}
