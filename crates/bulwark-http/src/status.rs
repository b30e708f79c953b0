//! Bulwark errors as `tonic::Status`.
//!
//! [`to_status`] walks the error's `source()` chain (as
//! `tonic::Status::try_from_error` does for tower's own errors) and picks the
//! code a gRPC client expects:
//!
//! | error | code |
//! |---|---|
//! | a `tonic::Status` | itself |
//! | [`CircuitOpen`] | `UNAVAILABLE`, with `grpc-retry-pushback-ms` when the next probe is known |
//! | [`RateLimited`] | `RESOURCE_EXHAUSTED` + `grpc-retry-pushback-ms` |
//! | [`BulkheadFull`] | `RESOURCE_EXHAUSTED` |
//! | [`Elapsed`] (a timeout; also the source of a body's [`ResponseElapsed`](crate::response_timeout::ResponseElapsed)) | `DEADLINE_EXCEEDED` |
//! | a transport error (anything else) | `UNAVAILABLE` |
//!
//! ```
//! use bulwark_core::{error::CircuitOpen, BoxError};
//! use bulwark_http::status::to_status;
//! use std::time::Duration;
//!
//! let open: BoxError = CircuitOpen::new(Some(Duration::from_millis(250))).into();
//! let status = to_status(open);
//! assert_eq!(status.code(), tonic::Code::Unavailable);
//! assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "250");
//! ```
//!
//! [`CircuitOpen`]: bulwark_core::error::CircuitOpen
//! [`BulkheadFull`]: bulwark_core::error::BulkheadFull
//! [`RateLimited`]: bulwark_core::error::RateLimited
//! [`Elapsed`]: bulwark_timeout::Elapsed

use crate::pushback::GRPC_RETRY_PUSHBACK_MS;
use bulwark_core::error::{find, is_caused_by, BulkheadFull, CircuitOpen, RateLimited};
use bulwark_core::BoxError;
use bulwark_timeout::Elapsed;
use tonic::{Code, Status};

/// The `tonic::Status` for `error`; see the [module docs](self).
pub fn to_status(error: BoxError) -> Status {
    let error = match error.downcast::<Status>() {
        Ok(status) => return *status,
        Err(e) => e,
    };
    if let Some(status) = find::<Status>(&*error) {
        return status.clone();
    }
    if let Some(open) = find::<CircuitOpen>(&*error) {
        let mut status = Status::new(Code::Unavailable, error.to_string());
        if let Some(after) = open.retry_after() {
            let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
            if let Ok(v) = ms.to_string().parse() {
                status.metadata_mut().insert(GRPC_RETRY_PUSHBACK_MS, v);
            }
        }
        return status;
    }
    if let Some(limited) = find::<RateLimited>(&*error) {
        let mut status = Status::new(Code::ResourceExhausted, error.to_string());
        let ms = u64::try_from(limited.retry_after().as_millis()).unwrap_or(u64::MAX);
        if let Ok(v) = ms.to_string().parse() {
            status.metadata_mut().insert(GRPC_RETRY_PUSHBACK_MS, v);
        }
        return status;
    }
    if is_caused_by::<BulkheadFull>(&*error) {
        return Status::new(Code::ResourceExhausted, error.to_string());
    }
    if is_caused_by::<Elapsed>(&*error) {
        return Status::new(Code::DeadlineExceeded, error.to_string());
    }
    Status::new(Code::Unavailable, error.to_string())
}

/// Answers a gRPC call that failed with a Bulwark error: the status of
/// [`to_status`] as a trailers-only HTTP response. Use it with
/// [`MapErrorsLayer`](crate::MapErrorsLayer) in front of a tonic server:
/// `MapErrorsLayer::new(bulwark_http::status::grpc_error_response)`.
pub fn grpc_error_response(error: BoxError) -> http::Response<tonic::body::Body> {
    to_status(error).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_timeout::error::Limit;
    use std::time::Duration;

    #[test]
    fn codes() {
        let full: BoxError = BulkheadFull::at_capacity().into();
        assert_eq!(to_status(full).code(), Code::ResourceExhausted);
        let late: BoxError = Elapsed::new(Limit::Request, Duration::from_secs(1)).into();
        assert_eq!(to_status(late).code(), Code::DeadlineExceeded);
        // A body that ran out of time, as the body's error says it.
        use crate::response_timeout::{Phase, ResponseElapsed, Scope};
        let body: BoxError =
            ResponseElapsed::new(Scope::Total, Phase::Body, Duration::from_secs(2)).into();
        let status = to_status(body);
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("response body"), "{status}");
        let reset: BoxError = std::io::Error::other("reset").into();
        assert_eq!(to_status(reset).code(), Code::Unavailable);
        let own: BoxError = Status::invalid_argument("bad").into();
        assert_eq!(to_status(own).code(), Code::InvalidArgument);
        let res = grpc_error_response(CircuitOpen::new(None).into());
        assert_eq!(res.headers()["grpc-status"], "14");
        let limited = to_status(RateLimited::new(Duration::from_millis(250)).into());
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert_eq!(
            limited.metadata().get(GRPC_RETRY_PUSHBACK_MS).unwrap(),
            "250"
        );
    }
}
