//! A circuit breaker per upstream host that honours server pushback.
//!
//! [`HostBreakerLayer`] is the breaker crate's keyed breaker, keyed
//! [`ByAuthority`] (`host:port`) in a bounded [`KeyedBreakers`] set, judging
//! answers with the shared classifier, with a [`ServerOpenHint`]: when an
//! answer that counted against a host carries `Retry-After` or
//! `grpc-retry-pushback-ms`, that host's breaker stays open at least that
//! long ([`Breaker::hold_open_for`]): the server said when it expects to be
//! back.
//!
//! ```
//! use bulwark::breaker::Breaker;
//! use bulwark::http::breaker::host_breaker_layer;
//! use bulwark::http::HttpClassifier;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bulwark::BoxError> {
//! let breakers = Breaker::builder().consecutive_failures(5).keyed().max_keys(100).build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(host_breaker_layer(breakers.clone(), HttpClassifier::new()))
//!     .service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
//! svc.oneshot(http::Request::get("http://a.example/").body(())?).await?;
//! assert!(breakers.get(&"a.example".parse()?).is_some());
//! # Ok(())
//! # }
//! ```
//!
//! [`BodyBreakerLayer`] does the same but takes each verdict when the
//! response body ends (see [`body`]): a body that breaks off is a failure
//! for the host. For gRPC, [`GrpcHostBreakerLayer`] is that layer with a
//! `GrpcClassifier`, judging a streamed answer by the `grpc-status` in its
//! trailers (see [`grpc`]). The [`ClientStack`](crate::ClientStack) uses
//! these.
//!
//! [`Breaker::hold_open_for`]: bulwark_breaker::Breaker::hold_open_for
//! [`KeyedBreakers`]: bulwark_breaker::keyed::KeyedBreakers

pub mod body;
pub mod grpc;

pub use body::BodyBreakerLayer;

pub use grpc::GrpcHostBreakerLayer;

use crate::parts::{RequestParts, ResponseParts};
use crate::pushback::pushback_from_headers;
use bulwark_breaker::hint::{KeyFn, OpenHint};
use bulwark_breaker::keyed::{KeyedBreakers, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
use bulwark_core::BoxError;
use bulwark_retry::PushbackHint;
use http::uri::Authority;
use std::time::Duration;

/// One breaker per authority, holding a host's breaker open as long as its
/// server asks: see the [module docs](self).
pub type HostBreakerLayer<C> = KeyedCircuitBreakerLayer<Authority, ByAuthority, C, ServerOpenHint>;

/// The service made by [`HostBreakerLayer`].
pub type HostBreaker<S, C> = KeyedCircuitBreaker<S, Authority, ByAuthority, C, ServerOpenHint>;

/// A [`HostBreakerLayer`] over `breakers`, judging answers with
/// `classifier`, honouring server pushback of up to 5 minutes (change it
/// with `.open_hint(ServerOpenHint::new(max))`).
pub fn host_breaker_layer<C>(
    breakers: KeyedBreakers<Authority>,
    classifier: C,
) -> HostBreakerLayer<C> {
    KeyedCircuitBreakerLayer::new(breakers, ByAuthority)
        .classifier(classifier)
        .open_hint(ServerOpenHint::default())
}

/// Keys a request by its authority (`host:port`), for keyed breakers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByAuthority;

impl<Req: RequestParts> KeyFn<Req, Authority> for ByAuthority {
    #[inline]
    fn key(&self, req: &Req) -> Authority {
        req.authority_key()
    }
}

/// Reads how long a failing server asked to be left alone
/// (`grpc-retry-pushback-ms`, else `Retry-After`), capped, so the breaker
/// stays open at least that long.
#[derive(Debug, Clone, Copy)]
pub struct ServerOpenHint {
    pub(crate) max: Duration,
}

impl ServerOpenHint {
    /// Honours pushback of up to `max`.
    pub const fn new(max: Duration) -> Self {
        ServerOpenHint { max }
    }
}

impl Default for ServerOpenHint {
    /// Up to 5 minutes.
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}

impl<Res: ResponseParts> OpenHint<Res> for ServerOpenHint {
    fn open_hint(&self, result: &Result<Res, BoxError>) -> Option<Duration> {
        match result {
            Ok(res) => match pushback_from_headers(res.headers(), self.max) {
                PushbackHint::After(d) => Some(d),
                _ => None,
            },
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HttpClassifier;
    use bulwark_breaker::{Breaker, State as BState};
    use bulwark_core::error::CircuitOpen;
    use tower::Layer;
    use tower::{service_fn, ServiceExt};

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_host_that_asks_for_time_gets_it() {
        let breakers = Breaker::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_secs(1))
            .keyed()
            .build()
            .unwrap();
        let layer = host_breaker_layer(breakers.clone(), HttpClassifier::new());
        let svc = layer.layer(service_fn(|req: http::Request<()>| async move {
            let down = req.uri().host() == Some("down.example");
            let res = http::Response::builder()
                .status(if down { 503 } else { 200 })
                .header("retry-after", "20")
                .body(())
                .unwrap();
            Ok::<_, std::io::Error>(res)
        }));
        let get = |host: &str| {
            http::Request::get(format!("http://{host}/"))
                .body(())
                .unwrap()
        };
        for _ in 0..2 {
            let _ = svc.clone().oneshot(get("down.example")).await.unwrap();
        }
        let down = breakers.get(&"down.example".parse().unwrap()).unwrap();
        assert_eq!(down.state(), BState::Open);
        assert_eq!(down.snapshot().next_probe_in, Some(Duration::from_secs(20)));
        // The other host is not affected.
        let res = svc.clone().oneshot(get("up.example")).await.unwrap();
        assert_eq!(res.status(), 200);
        let err = svc.clone().oneshot(get("down.example")).await.unwrap_err();
        assert!(err.is::<CircuitOpen>());
    }
}
