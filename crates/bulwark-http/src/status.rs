//! Bulwark errors as `tonic::Status`.
//!
//! [`to_status`] (for a server's answers) walks the error's `source()` chain (as
//! `tonic::Status::try_from_error` does for tower's own errors) and picks the
//! code a gRPC client expects:
//!
//! | error | code |
//! |---|---|
//! | a `tonic::Status` | itself |
//! | [`CircuitOpen`] | `UNAVAILABLE`, with `grpc-retry-pushback-ms` when the next probe is known |
//! | [`RateLimited`] | `RESOURCE_EXHAUSTED` + `grpc-retry-pushback-ms` |
//! | [`BulkheadFull`] (the server sheds load), `ThrottledLocally` | `RESOURCE_EXHAUSTED` |
//! | [`Elapsed`] (a timeout; also the source of a body's [`ResponseElapsed`](crate::response_timeout::ResponseElapsed)), or tower's own `tower::timeout::error::Elapsed` | `DEADLINE_EXCEEDED` |
//! | a transport error (anything else) | `UNAVAILABLE` |
//!
//! ```
//! use bulwark::{error::CircuitOpen, BoxError};
//! use bulwark::http::status::to_status;
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
use bulwark_core::error::{
    find, is_caused_by, BulkheadFull, CircuitOpen, RateLimited, ThrottledLocally,
};
use bulwark_core::BoxError;
use bulwark_timeout::error::is_timeout;
use tonic::{Code, Status};

// `http::status::{StatusCode, InvalidStatusCode}`, so that they keep their
// paths after `use bulwark::http;` (this module takes the name of `http`'s).
#[doc(no_inline)]
pub use http::status::{InvalidStatusCode, StatusCode};

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
    if is_caused_by::<BulkheadFull>(&*error) || is_caused_by::<ThrottledLocally>(&*error) {
        return Status::new(Code::ResourceExhausted, error.to_string());
    }
    if is_timeout(&*error) {
        return Status::new(Code::DeadlineExceeded, error.to_string());
    }
    Status::new(Code::Unavailable, error.to_string())
}

/// The `tonic::Status` a gRPC *client* returns for `error`, the error of
/// its own client stack (the [`GrpcClientStack`](crate::grpc::GrpcClientStack)
/// returns these):
///
/// | error | code |
/// |---|---|
/// | a `tonic::Status` | itself |
/// | [`CircuitOpen`] (this client's breaker for the upstream) | `UNAVAILABLE` |
/// | [`BulkheadFull`] (this client's own limit of calls in flight) | `UNAVAILABLE` |
/// | [`ThrottledLocally`] (this client's adaptive throttling) | `RESOURCE_EXHAUSTED` |
/// | [`Elapsed`], tower's `Elapsed`, tonic's `TimeoutExpired` (a timeout or deadline) | `DEADLINE_EXCEEDED` |
/// | a transport error (anything else) | as tonic maps it (`UNAVAILABLE` for a refused connection), else `UNAVAILABLE` |
///
/// The message is the error's own (`circuit breaker 'grpc/payments:50051' is open; next
/// probe in 250ms`, `request timed out after 2s`, ...).
/// On a server, a full bulkhead is the server's load and answers
/// `RESOURCE_EXHAUSTED` instead ([`to_status`]).
///
/// ```
/// use bulwark::error::BulkheadFull;
/// use bulwark::http::status::to_client_status;
///
/// let status = to_client_status(BulkheadFull::at_capacity().into());
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// ```
///
/// [`ThrottledLocally`]: bulwark_core::error::ThrottledLocally
/// [`Elapsed`]: bulwark_timeout::Elapsed
pub fn to_client_status(error: BoxError) -> Status {
    let error = match error.downcast::<Status>() {
        Ok(status) => return *status,
        Err(e) => e,
    };
    if let Some(status) = find::<Status>(&*error) {
        return status.clone();
    }
    if is_caused_by::<CircuitOpen>(&*error) || is_caused_by::<BulkheadFull>(&*error) {
        return Status::new(Code::Unavailable, error.to_string());
    }
    if is_caused_by::<ThrottledLocally>(&*error) {
        return Status::new(Code::ResourceExhausted, error.to_string());
    }
    if is_timeout(&*error) || is_caused_by::<tonic::TimeoutExpired>(&*error) {
        return Status::new(Code::DeadlineExceeded, error.to_string());
    }
    let text = error.to_string();
    match Status::try_from_error(error) {
        Ok(status) => status,
        Err(_) => Status::new(Code::Unavailable, text),
    }
}

/// Answers a gRPC call that failed with a Bulwark error: the code (and
/// pushback) of [`to_status`] as a trailers-only HTTP response. Use it with
/// [`MapErrorsLayer`](crate::MapErrorsLayer) in front of a tonic server:
/// `MapErrorsLayer::new(bulwark::http::status::grpc_error_response)`.
///
/// The message is generic (`unavailable`, `deadline exceeded`, ...): an
/// error's own message names dependencies and causes that callers outside
/// should not see; it is logged at debug level (target `bulwark::http`). A
/// `tonic::Status` the service returned itself is sent as it is.
pub fn grpc_error_response(error: BoxError) -> http::Response<tonic::body::Body> {
    let own = error.is::<Status>() || find::<Status>(&*error).is_some();
    let status = to_status(error);
    if own {
        return status.into_http();
    }
    tracing::debug!(target: "bulwark::http", error = %status.message(), "error mapped to a gRPC status");
    let message = generic_message(status.code());
    Status::with_metadata(status.code(), message, status.metadata().clone()).into_http()
}

/// The generic message of a code (its name, in words).
fn generic_message(code: Code) -> &'static str {
    match code {
        Code::Unavailable => "unavailable",
        Code::ResourceExhausted => "resource exhausted",
        Code::DeadlineExceeded => "deadline exceeded",
        _ => "internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_timeout::error::Limit;
    use bulwark_timeout::Elapsed;
    use std::time::Duration;

    #[test]
    fn codes() {
        let full: BoxError = BulkheadFull::at_capacity().into();
        assert_eq!(to_status(full).code(), Code::ResourceExhausted);
        let late: BoxError = Elapsed::new(Limit::Request, Duration::from_secs(1)).into();
        assert_eq!(to_status(late).code(), Code::DeadlineExceeded);
        // tower's own timeout, from a `tower::timeout::TimeoutLayer` below.
        let late: BoxError = tower::timeout::error::Elapsed::new().into();
        assert_eq!(to_status(late).code(), Code::DeadlineExceeded);
        let late: BoxError = tower::timeout::error::Elapsed::new().into();
        assert_eq!(to_client_status(late).code(), Code::DeadlineExceeded);
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
        // A client's own limits say UNAVAILABLE; a deadline DEADLINE_EXCEEDED.
        let full: BoxError = BulkheadFull::at_capacity().into();
        assert_eq!(to_client_status(full).code(), Code::Unavailable);
        let open: BoxError = CircuitOpen::new(None).into();
        assert_eq!(to_client_status(open).code(), Code::Unavailable);
        let late: BoxError = tonic::TimeoutExpired(()).into();
        assert_eq!(to_client_status(late).code(), Code::DeadlineExceeded);
        let late: BoxError = Elapsed::new(Limit::Request, Duration::from_secs(1)).into();
        assert_eq!(to_client_status(late).code(), Code::DeadlineExceeded);
        let slow: BoxError = ThrottledLocally::new(0.5).into();
        assert_eq!(to_client_status(slow).code(), Code::ResourceExhausted);
        let reset: BoxError = std::io::Error::other("reset").into();
        let status = to_client_status(reset);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "reset");
        let res = grpc_error_response(CircuitOpen::new(None).into());
        assert_eq!(res.headers()["grpc-status"], "14");
        let limited = to_status(RateLimited::new(Duration::from_millis(250)).into());
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert_eq!(
            limited.metadata().get(GRPC_RETRY_PUSHBACK_MS).unwrap(),
            "250"
        );
        // Generic messages for Bulwark's and transport errors; a service's
        // own status as it is.
        let res = grpc_error_response(std::io::Error::other("inventory: reset").into());
        assert_eq!(res.headers()["grpc-message"], "unavailable");
        let res = grpc_error_response(CircuitOpen::new(Some(Duration::from_millis(250))).into());
        assert_eq!(res.headers()["grpc-retry-pushback-ms"], "250");
        let res = grpc_error_response(Status::invalid_argument("bad id").into());
        assert_eq!(res.headers()["grpc-message"], "bad%20id");
    }
}
