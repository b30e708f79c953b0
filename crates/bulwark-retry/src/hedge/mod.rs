//! Hedging: if an attempt has not answered after a delay, send another.
//!
//! [`HedgeLayer`] sends the request once, and if no answer came after the
//! hedge delay, sends a copy (a *hedge*), up to
//! [`max_hedges`](HedgeLayer::max_hedges) extra attempts. The first
//! acceptable answer wins; every other attempt still in flight is dropped
//! (cancelled). A failed attempt does not end the call while another is in
//! flight.
//!
//! The delay is fixed ([`HedgeLayer::fixed`]) or a percentile of the latencies
//! recently observed ([`HedgeLayer::percentile`]), so that only the slowest
//! calls are hedged. Every hedge withdraws from a [`RetryBudget`]
//! (by default 10% of requests plus 1/s), so hedging cannot multiply the load
//! without limit; give the hedge and retry layers the same budget to share
//! one pool. The inner service is polled ready before every hedge.
//!
//! ```
//! use bulwark::retry::hedge::HedgeLayer;
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), bulwark::BoxError> {
//! let hedged = ServiceBuilder::new()
//!     // Hedge the calls slower than the 95th percentile; 50 ms until 20
//!     // latencies were seen.
//!     .layer(HedgeLayer::percentile(95.0).unwrap().min_samples(20).initial_delay(Duration::from_millis(50)))
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }));
//! assert_eq!(hedged.oneshot(1).await?, 2);
//! # Ok(())
//! # }
//! ```

mod future;
mod latency;
mod layer;

pub use self::future::ResponseFuture;
pub use self::layer::HedgeLayer;

use self::latency::Latencies;
use crate::budget::RetryBudget;
use crate::event::RetryEvent;
use crate::policy::RetryOn;
use crate::replay::{CloneReplay, Replay};
use bulwark_core::clock::Instant;
use bulwark_core::event::Listeners;
use bulwark_core::{BoxError, Classify, DefaultClassifier};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

pub(crate) struct HedgeShared<C, R> {
    pub(crate) classifier: C,
    pub(crate) replay: R,
    pub(crate) retry_on: RetryOn,
    pub(crate) max_hedges: u32,
    pub(crate) delay: Duration,
    pub(crate) latencies: Option<Latencies>,
    pub(crate) budget: RetryBudget,
    pub(crate) listeners: Listeners<RetryEvent>,
}

impl<C, R> HedgeShared<C, R> {
    /// How long to wait for an answer before the next hedge.
    #[inline]
    pub(crate) fn delay(&self) -> Duration {
        self.latencies
            .as_ref()
            .and_then(Latencies::estimate)
            .unwrap_or(self.delay)
    }
}

/// Sends hedges for slow calls (see [`HedgeLayer`]).
pub struct Hedge<S, C = DefaultClassifier, R = CloneReplay> {
    inner: S,
    shared: Arc<HedgeShared<C, R>>,
}

impl<S, C, R> Hedge<S, C, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The delay before the next hedge, as it stands now.
    pub fn current_delay(&self) -> Duration {
        self.shared.delay()
    }
}

impl<S, C, R, Req> Service<Req> for Hedge<S, C, R>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let copy = if self.shared.max_hedges > 0 {
            self.shared.replay.replay(&request)
        } else {
            None
        };
        self.shared.budget.deposit();
        let start = Instant::now();
        let future = service.call(request);
        ResponseFuture::new(future, service, copy, self.shared.clone(), start)
    }
}

impl<S: Clone, C, R> Clone for Hedge<S, C, R> {
    fn clone(&self) -> Self {
        Hedge {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C, R> fmt::Debug for Hedge<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("max_hedges", &self.shared.max_hedges)
            .field("delay", &self.shared.delay())
            .finish()
    }
}
