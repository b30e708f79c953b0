//! The client stack as a [`reqwest-middleware`](reqwest_middleware)
//! middleware: keep writing `client.get(url).send().await`.
//!
//! [`BulwarkMiddleware`] runs a built [`ClientStack`] around the rest of a
//! `reqwest_middleware` chain, so every request sent through the client gets
//! the total timeout, retries (idempotent requests only, after the server's
//! `Retry-After`, under a budget), a breaker per host, the attempt timeout
//! and the bulkhead, exactly as the stack around a `reqwest::Client` does.
//!
//! ```
//! use bulwark::http::middleware::BulwarkMiddleware;
//! use bulwark::http::ClientStack;
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = ClientStack::new().total_timeout(Duration::from_secs(5)).build()?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(BulwarkMiddleware::new(stack))
//!     .build();
//! // let body = client.get("http://api.internal/users").send().await?.text().await?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! - Put it first in the chain (`.with(..)` before the others) so that the
//!   middlewares after it run on every attempt, as the stack's inner layers
//!   do.
//! - Each attempt sees a copy of the request's extensions as they were when
//!   the call reached this middleware.
//! - A request whose body cannot be copied (a stream) is sent once.
//! - Bulwark's errors come back as
//!   [`reqwest_middleware::Error::Middleware`] holding a [`StackFailed`],
//!   whose source is the Bulwark error ([`CircuitOpen`], [`BulkheadFull`],
//!   [`Elapsed`]): find it with [`bulwark::error::find`](bulwark_core::error::find) on the
//!   `reqwest_middleware::Error`; reqwest's own errors come back as
//!   [`reqwest_middleware::Error::Reqwest`].
//!
//! [`CircuitOpen`]: bulwark_core::error::CircuitOpen
//! [`BulkheadFull`]: bulwark_core::error::BulkheadFull
//! [`Elapsed`]: bulwark_timeout::Elapsed

use crate::stack::ClientLayer;
use crate::HttpClassifier;
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_core::BoxError;
use bulwark_retry::RetryBudget;
use http::uri::Authority;
use http::Extensions;
use reqwest_middleware::{Middleware, Next};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

#[cfg(doc)]
use crate::ClientStack;

/// A built [`ClientStack`] as a `reqwest-middleware` middleware; see the
/// [module docs](self).
///
/// Clones share the breakers, the retry budget and the bulkhead.
#[derive(Clone)]
pub struct BulwarkMiddleware {
    stack: ClientLayer<HttpClassifier>,
}

impl BulwarkMiddleware {
    /// The middleware running `stack`.
    pub fn new(stack: ClientLayer<HttpClassifier>) -> Self {
        BulwarkMiddleware { stack }
    }

    /// The per-host breakers (`None` without a breaker).
    pub fn breakers(&self) -> Option<&KeyedBreakers<Authority>> {
        self.stack.breakers()
    }

    /// The retry budget (`None` without retry).
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.stack.retry_budget()
    }
}

impl From<ClientLayer<HttpClassifier>> for BulwarkMiddleware {
    fn from(stack: ClientLayer<HttpClassifier>) -> Self {
        Self::new(stack)
    }
}

impl fmt::Debug for BulwarkMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulwarkMiddleware")
            .field("stack", &self.stack)
            .finish()
    }
}

#[async_trait::async_trait]
impl Middleware for BulwarkMiddleware {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let mut svc = self.stack.layer(Rest {
            next,
            extensions: extensions.clone(),
        });
        let result = match std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
            Ok(()) => svc.call(req).await,
            Err(e) => Err(e),
        };
        result.map_err(to_middleware_error)
    }
}

/// The rest of the middleware chain, then reqwest, as the stack's transport.
#[derive(Clone)]
struct Rest<'a> {
    next: Next<'a>,
    extensions: Extensions,
}

impl<'a> Service<reqwest::Request> for Rest<'a> {
    type Response = reqwest::Response;
    type Error = reqwest_middleware::Error;
    type Future =
        Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: reqwest::Request) -> Self::Future {
        let next = self.next.clone();
        let mut extensions = self.extensions.clone();
        Box::pin(async move { next.run(req, &mut extensions).await })
    }
}

/// The stack's error as `reqwest-middleware`'s: its own and reqwest's
/// errors as they were, Bulwark's as `Middleware`, source chain kept.
fn to_middleware_error(error: BoxError) -> reqwest_middleware::Error {
    let error = match error.downcast::<reqwest_middleware::Error>() {
        Ok(e) => return *e,
        Err(e) => e,
    };
    match error.downcast::<reqwest::Error>() {
        Ok(e) => reqwest_middleware::Error::Reqwest(*e),
        Err(e) => reqwest_middleware::Error::Middleware(anyhow::Error::new(StackFailed(e))),
    }
}

/// A Bulwark error inside [`reqwest_middleware::Error::Middleware`]: its
/// `source()` is the error itself, so [`bulwark::error::find`](bulwark_core::error::find) on the
/// `reqwest_middleware::Error` reaches it.
///
/// ```
/// use bulwark::error::{find, CircuitOpen};
/// use bulwark::http::middleware::StackFailed;
///
/// let err = reqwest_middleware::Error::Middleware(anyhow::Error::new(StackFailed::new(
///     CircuitOpen::new(None).into(),
/// )));
/// assert!(find::<CircuitOpen>(&err).is_some());
/// ```
#[derive(Debug)]
pub struct StackFailed(BoxError);

impl StackFailed {
    /// Wraps `error`.
    pub fn new(error: BoxError) -> Self {
        StackFailed(error)
    }

    /// The Bulwark error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The Bulwark error.
    pub fn into_inner(self) -> BoxError {
        self.0
    }
}

impl fmt::Display for StackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StackFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
