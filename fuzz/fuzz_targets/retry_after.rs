//! `Retry-After`: the parser, and the pushback a response carrying it gives
//! (never over its cap), at any `now`.
#![no_main]

use bulwark::http::pushback::{parse_retry_after, pushback_from_headers, ServerPushback};
use bulwark::retry::PushbackHint;
use bulwark::BoxError;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    // The first 5 bytes choose `now` (up to 2^40 s after the epoch), the
    // rest is the header value.
    let (head, value) = data.split_at(data.len().min(5));
    let mut secs = 0u64;
    for &b in head {
        secs = secs << 8 | u64::from(b);
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let parsed = parse_retry_after(value, now);
    if let Ok(text) = std::str::from_utf8(value) {
        let t = text.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            assert!(parsed.is_some(), "delta-seconds {t:?} refused");
        }
    }
    let max = Duration::from_secs(30);
    if let Ok(v) = http::HeaderValue::from_bytes(value) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, v.clone());
        if let PushbackHint::After(d) = pushback_from_headers(&headers, max) {
            assert!(d <= max, "{d:?} over the cap");
        }
        let res: Result<_, BoxError> = Ok(http::Response::builder()
            .status(503)
            .header(http::header::RETRY_AFTER, v)
            .body(())
            .expect("a response"));
        if let PushbackHint::After(d) = ServerPushback::new().max(max).hint(&res) {
            assert!(d <= max, "{d:?} over the cap");
        }
    }
});
