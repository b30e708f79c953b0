//! The upstream a request goes to when its URI does not say.
//!
//! Per-host breakers key a request by its URI's authority. Some transports
//! take requests without one: above a tonic `Channel`, a generated client
//! sends `/pkg.Service/Method` and the channel adds the authority below the
//! stack. Such requests carry an [`Origin`] in their extensions instead (the
//! gRPC client preset, `bulwark::http::grpc::GrpcClientStack` with the
//! `tonic` feature, inserts its own), and the breakers key on it; without
//! one, on the `Host` header. A request with none of the three is keyed
//! `unknown`, shared by all such requests, and Bulwark logs a warning the
//! first time that happens.
//!
//! ```
//! use bulwark::http::origin::Origin;
//! use bulwark::http::parts::RequestParts;
//!
//! let mut req = http::Request::post("/grpc.health.v1.Health/Check").body(()).unwrap();
//! req.extensions_mut().insert("payments.internal:50051".parse::<Origin>().unwrap());
//! assert_eq!(req.authority_key(), "payments.internal:50051");
//!
//! // A URI's own authority wins.
//! let req = http::Request::get("http://a.example/").body(()).unwrap();
//! assert_eq!(req.authority_key(), "a.example");
//! ```

use http::uri::{Authority, InvalidUri};
use http::Uri;
use std::fmt;
use std::str::FromStr;

/// The upstream (`host[:port]`, or a name) of a request whose URI has no
/// authority; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(Authority);

impl Origin {
    /// The origin `authority`.
    pub fn new(authority: Authority) -> Self {
        Origin(authority)
    }

    /// The authority requests are keyed on.
    pub fn authority(&self) -> &Authority {
        &self.0
    }
}

impl FromStr for Origin {
    type Err = InvalidUri;

    /// `host[:port]`, a name such as `payments`, or a URI such as
    /// `http://10.0.0.7:50051` (its authority).
    fn from_str(s: &str) -> Result<Self, InvalidUri> {
        if s.contains("://") {
            let uri = Uri::from_str(s)?;
            if let Some(a) = uri.authority() {
                return Ok(Origin(a.clone()));
            }
        }
        Authority::from_str(s).map(Origin)
    }
}

impl From<Authority> for Origin {
    fn from(authority: Authority) -> Self {
        Origin(authority)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
