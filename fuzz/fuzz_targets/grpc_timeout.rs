//! `grpc-timeout` (and an HTTP deadline header in the same format or in
//! seconds): the parser, its round trip through the formatter, and a request
//! carrying the value through the `ServerStack`, whose timer must not panic
//! whatever the deadline.
#![no_main]

use bulwark::http::deadline::{format_grpc_timeout, parse_grpc_timeout, ServerDeadline};
use bulwark::http::ServerStack;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tower::ServiceExt;

fuzz_target!(|data: &[u8]| {
    if let Some(d) = parse_grpc_timeout(data) {
        // What is sent back never gives more time than was left, and is
        // stable.
        let formatted = format_grpc_timeout(d);
        let back = parse_grpc_timeout(formatted.as_bytes()).expect("the formatter's own output");
        assert!(back <= d, "{formatted:?} gives {back:?} for {d:?}");
        assert_eq!(format_grpc_timeout(back), formatted);
    }
    // The formatter on any duration, read from the input's first 12 bytes.
    if data.len() >= 12 {
        let secs = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let nanos = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) % 1_000_000_000;
        let d = Duration::new(secs, nanos);
        let back = parse_grpc_timeout(format_grpc_timeout(d).as_bytes()).expect("formatted");
        assert!(back <= d);
    }
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let header = http::HeaderName::from_static("x-request-timeout");
    let mut headers = http::HeaderMap::new();
    headers.insert("grpc-timeout", value.clone());
    headers.insert(header.clone(), value.clone());
    let limit = ServerDeadline::new(Some(Duration::from_secs(30)))
        .http_header(header.clone())
        .incoming(&headers);
    if let Some(grpc) = parse_grpc_timeout(data) {
        assert!(limit.is_some_and(|l| l <= grpc));
    }

    // Through the server stack, in paused time: the handler waits once, so
    // the request's timer is set from the incoming deadline.
    let layer = ServerStack::new()
        .deadline_header(header.clone())
        .build()
        .expect("the default stack");
    let handler = tower::service_fn(|_: http::Request<()>| async {
        tokio::task::yield_now().await;
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    let svc = tower::ServiceBuilder::new().layer(layer).service(handler);
    let req = http::Request::builder()
        .header("grpc-timeout", value.clone())
        .header(header, value)
        .body(())
        .expect("a request");
    let res = bulwark_fuzz::runtime()
        .block_on(svc.oneshot(req))
        .expect("the server stack answers");
    // A zero deadline times out (the server mapping's 503); any other lets
    // the handler answer: paused time does not move while it yields.
    let expected = if limit == Some(Duration::ZERO) {
        503
    } else {
        200
    };
    assert_eq!(res.status(), expected, "deadline {limit:?}");
});
