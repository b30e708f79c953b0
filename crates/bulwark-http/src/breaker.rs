//! A circuit breaker per upstream host that honours server pushback.
//!
//! [`HostBreakerLayer`] keeps one breaker per request authority
//! (`host:port`) in a bounded [`KeyedBreakers`] set, judges answers with
//! the shared classifier, and, when an answer that counted against a host
//! carries `Retry-After` or `grpc-retry-pushback-ms`, keeps that host's
//! breaker open at least that long ([`Breaker::hold_open_for`]): the server
//! said when it expects to be back.
//!
//! ```
//! use bulwark_breaker::Breaker;
//! use bulwark_http::breaker::HostBreakerLayer;
//! use bulwark_http::HttpClassifier;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bulwark_core::BoxError> {
//! let breakers = Breaker::builder().consecutive_failures(5).keyed().max_keys(100).build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(HostBreakerLayer::new(breakers.clone(), HttpClassifier::new()))
//!     .service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
//! svc.oneshot(http::Request::get("http://a.example/").body(())?).await?;
//! assert!(breakers.get(&"a.example".parse()?).is_some());
//! # Ok(())
//! # }
//! ```
//!
//! [`Breaker::hold_open_for`]: bulwark_breaker::Breaker::hold_open_for

use crate::parts::{RequestParts, ResponseParts};
use crate::pushback::pushback_from_headers;
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::{Breaker, Permit};
use bulwark_core::error::CircuitOpen;
use bulwark_core::{BoxError, Classify, Outcome};
use bulwark_retry::PushbackHint;
use http::uri::Authority;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// One breaker per upstream authority; see the [module docs](self).
#[derive(Clone)]
pub struct HostBreakerLayer<C> {
    breakers: KeyedBreakers<Authority>,
    classifier: C,
    max_pushback: Duration,
}

impl<C> HostBreakerLayer<C> {
    /// Guards each request with its authority's breaker from `breakers`.
    /// Pushback longer than 5 minutes is capped.
    pub fn new(breakers: KeyedBreakers<Authority>, classifier: C) -> Self {
        HostBreakerLayer {
            breakers,
            classifier,
            max_pushback: Duration::from_secs(300),
        }
    }

    /// Caps how long a server's pushback may hold a breaker open.
    pub fn max_pushback(mut self, max: Duration) -> Self {
        self.max_pushback = max;
        self
    }

    /// The breakers, as a handle.
    pub fn breakers(&self) -> &KeyedBreakers<Authority> {
        &self.breakers
    }
}

impl<C> fmt::Debug for HostBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBreakerLayer")
            .field("breakers", &self.breakers)
            .field("max_pushback", &self.max_pushback)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for HostBreakerLayer<C> {
    type Service = HostBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        HostBreaker {
            inner,
            breakers: self.breakers.clone(),
            classifier: self.classifier.clone(),
            max_pushback: self.max_pushback,
        }
    }
}

/// The service of [`HostBreakerLayer`].
///
/// The key is known only in `call`, so `poll_ready` waits for the inner
/// service alone; a refusal is an immediately ready
/// [`CircuitOpen`] error.
#[derive(Clone)]
pub struct HostBreaker<S, C> {
    inner: S,
    breakers: KeyedBreakers<Authority>,
    classifier: C,
    max_pushback: Duration,
}

impl<S, C> HostBreaker<S, C> {
    /// The breakers, as a handle.
    pub fn breakers(&self) -> &KeyedBreakers<Authority> {
        &self.breakers
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, C> fmt::Debug for HostBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBreaker")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for HostBreaker<S, C>
where
    Req: RequestParts,
    S: Service<Req>,
    S::Response: ResponseParts,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = HostBreakerFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let breaker = self.breakers.get_or_create(&req.authority_key());
        match breaker.try_acquire() {
            Ok(permit) => HostBreakerFuture {
                state: State::Called {
                    fut: self.inner.call(req),
                    permit: Some(permit),
                    breaker,
                    classifier: self.classifier.clone(),
                    max_pushback: self.max_pushback,
                },
            },
            Err(open) => HostBreakerFuture {
                state: State::Rejected { error: Some(open) },
            },
        }
    }
}

pin_project! {
    /// The response future of [`HostBreaker`].
    pub struct HostBreakerFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        Called {
            #[pin]
            fut: F,
            permit: Option<Permit>,
            breaker: Breaker,
            classifier: C,
            max_pushback: Duration,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> fmt::Debug for HostBreakerFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBreakerFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for HostBreakerFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    T: ResponseParts,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                fut,
                permit,
                breaker,
                classifier,
                max_pushback,
            } => {
                let result = ready!(fut.poll(cx)).map_err(Into::into);
                let outcome = classifier.classify(&result);
                if let Some(permit) = permit.take() {
                    permit.record(outcome);
                }
                if outcome == Outcome::Failure {
                    if let Ok(res) = &result {
                        if let PushbackHint::After(d) =
                            pushback_from_headers(res.headers(), *max_pushback)
                        {
                            if breaker.hold_open_for(d) {
                                tracing::info!(
                                    target: "bulwark::http",
                                    breaker = breaker.name().unwrap_or(""),
                                    open_for = ?d,
                                    "breaker held open as the server asked"
                                );
                            }
                        }
                    }
                }
                Poll::Ready(result)
            }
            StateProj::Rejected { error } => Poll::Ready(Err(match error.take() {
                Some(e) => Box::new(e),
                None => "breaker future polled after completion".into(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HttpClassifier;
    use bulwark_breaker::State as BState;
    use tower::{service_fn, ServiceExt};

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_host_that_asks_for_time_gets_it() {
        let breakers = Breaker::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_secs(1))
            .keyed()
            .build()
            .unwrap();
        let layer = HostBreakerLayer::new(breakers.clone(), HttpClassifier::new());
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
