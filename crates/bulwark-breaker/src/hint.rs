//! Open-duration hints and request keys: two small hooks the layers take.
//!
//! An [`OpenHint`] lets the answer that failed say how long the breaker
//! should stay open, when the upstream asked for time (an HTTP
//! `Retry-After`, a gRPC `grpc-retry-pushback-ms`): the breaker is then held
//! open at least that long ([`Breaker::hold_open_for`](crate::Breaker::hold_open_for)).
//! `()` is the no-op default and costs nothing; any
//! `Fn(&Result<Res, BoxError>) -> Option<Duration>` is a hint.
//!
//! A [`KeyFn`] takes the key of a request for
//! [keyed breakers](crate::keyed); any `Fn(&Req) -> K` is one.
//!
//! ```
//! use bulwark::breaker::{Breaker, CircuitBreakerLayer, State};
//! use bulwark::{BoxError, Outcome};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::builder()
//!     .consecutive_failures(1)
//!     .open_for(Duration::from_secs(1))
//!     .build()
//!     .unwrap();
//! // Answers are (status, seconds the server asks us to wait).
//! let mut svc = ServiceBuilder::new()
//!     .layer(
//!         CircuitBreakerLayer::new(breaker.clone())
//!             .classifier(|r: &Result<(u16, u64), BoxError>| match r {
//!                 Ok((s, _)) if *s >= 500 => Outcome::Failure,
//!                 _ => Outcome::Success,
//!             })
//!             .open_hint(|r: &Result<(u16, u64), BoxError>| {
//!                 r.as_ref().ok().map(|(_, secs)| Duration::from_secs(*secs))
//!             }),
//!     )
//!     .service_fn(|_: ()| async { Ok::<_, BoxError>((503, 30)) });
//! svc.ready().await.unwrap().call(()).await.unwrap();
//! assert_eq!(breaker.state(), State::Open);
//! assert_eq!(breaker.snapshot().next_probe_in, Some(Duration::from_secs(30)));
//! # }
//! ```

use bulwark_core::BoxError;
use std::time::Duration;

/// Says, from a failed call's result, how long the breaker should stay open
/// at least (see the [module docs](self)).
pub trait OpenHint<Res> {
    /// The time the upstream asked for, if any. Only consulted for results
    /// classified as failures.
    fn open_hint(&self, result: &Result<Res, BoxError>) -> Option<Duration>;
}

impl<Res> OpenHint<Res> for () {
    #[inline]
    fn open_hint(&self, _: &Result<Res, BoxError>) -> Option<Duration> {
        None
    }
}

impl<Res, F> OpenHint<Res> for F
where
    F: Fn(&Result<Res, BoxError>) -> Option<Duration>,
{
    #[inline]
    fn open_hint(&self, result: &Result<Res, BoxError>) -> Option<Duration> {
        self(result)
    }
}

/// Takes the key of a request, for [keyed breakers](crate::keyed).
///
/// Implemented for every `Fn(&Req) -> K`; implement it on a type of your own
/// when the key function must be nameable (e.g. in a type alias).
pub trait KeyFn<Req, K> {
    /// The key of `req`.
    fn key(&self, req: &Req) -> K;
}

impl<Req, K, F> KeyFn<Req, K> for F
where
    F: Fn(&Req) -> K,
{
    #[inline]
    fn key(&self, req: &Req) -> K {
        self(req)
    }
}
