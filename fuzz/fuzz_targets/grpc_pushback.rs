//! `grpc-retry-pushback-ms`: the parser, and the pushback read from
//! headers (never over its cap; the gRPC key wins over `Retry-After`).
#![no_main]

use bulwark::http::pushback::{parse_grpc_retry_pushback, pushback_from_headers};
use bulwark::retry::PushbackHint;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_grpc_retry_pushback(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let t = text.trim();
        let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        assert_eq!(
            matches!(parsed, PushbackHint::After(_)),
            digits,
            "{t:?} gave {parsed:?}"
        );
    }
    let max = Duration::from_secs(30);
    if let Ok(v) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-retry-pushback-ms", v);
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("5"),
        );
        match pushback_from_headers(&headers, max) {
            PushbackHint::After(d) => assert!(d <= max, "{d:?} over the cap"),
            PushbackHint::Stop => {}
            PushbackHint::None => panic!("the gRPC key was ignored"),
        }
    }
});
