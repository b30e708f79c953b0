//! Client-side adaptive throttling for tower services, after the Google SRE
//! book's "Handling Overload": when the upstream stops accepting requests,
//! shed locally in proportion, before sending them.
//!
//! Over a sliding window, an [`AdaptiveThrottle`] counts `requests` and
//! `accepts` and sheds each call with probability
//! `max(0, (requests − K·accepts) / (requests + 1))`. With the default
//! `K = 2`, nothing is shed while the upstream accepts at least half of the
//! requests (a 30% brownout sheds nothing); as it accepts fewer, the excess
//! is shed, up to nearly everything in an outage, and shedding fades as
//! accepts return. It works without any threshold on latency or state
//! machine, and beside the breaker: the breaker stops everything to an
//! upstream that is down, the throttle only what an upstream in partial
//! failure would refuse anyway.
//!
//! Measured in `bulwark-sim` behind the recommended client stack (figures
//! in the repository's `BENCHMARKS.md`): it sheds nothing in a 30%
//! brownout, but with the 10 s window it keeps shedding for seconds after
//! the upstream recovers, which cost more than it saved when failures come
//! and go (`flapping` 6.9% goodput during the fault against 47.0% without
//! it; `outage` recovered in 17 s instead of at once). So the recommended
//! stacks leave it off (`bulwark-stack`'s `ClientStack::adaptive_throttle` turns
//! it on); it suits clients of an upstream that degrades slowly and stays
//! degraded.
//!
//! ```
//! use bulwark::error::{find, ThrottledLocally};
//! use bulwark::BoxError;
//! use bulwark::throttle::AdaptiveThrottleLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = AdaptiveThrottleLayer::builder()
//!     .max_reject_probability(1.0)
//!     .seed(1)
//!     .build()
//!     .unwrap();
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_: ()| async { Err::<(), BoxError>("upstream down".into()) });
//!
//! // The upstream accepts nothing: after a few calls, most are shed
//! // locally, without reaching it.
//! let mut shed = 0;
//! for _ in 0..100 {
//!     let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//!     if find::<ThrottledLocally>(&*err).is_some() {
//!         shed += 1;
//!     }
//! }
//! assert!(shed > 80, "{shed}");
//! let now = handle.snapshot();
//! assert_eq!(now.requests(), 100);
//! assert_eq!(now.accepts(), 0);
//! assert!(now.probability() > 0.95);
//! # }
//! ```
//!
//! # Counting
//!
//! Which calls the upstream accepted is decided by the shared classifier
//! ([`AdaptiveThrottleLayer::classifier`], the
//! [`Classify`](bulwark_core::Classify) the breaker and retry use): a
//! success or an ignored answer is accepted; a failure, a throttled answer
//! (`429`) or a call given up on is not; a call refused further in (an open
//! breaker below) is not counted at all. A call that was sent counts when
//! it ends; a shed call counts as a request at once, as the SRE formula
//! requires (that is what makes it shed in proportion). The window is made
//! of time buckets on tokio's clock, so tests run in paused time.
//!
//! # Observing
//!
//! An [`AdaptiveThrottleHandle`] reads a [`ThrottleSnapshot`] (requests,
//! accepts, probability); listeners ([`AdaptiveThrottleBuilder::on_event`])
//! get a [`ThrottleEvent`] for each call shed, and `tracing` the same at
//! `trace`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod future;
mod layer;
mod service;
mod state;

use std::fmt;
use std::sync::Arc;

pub use error::ThrottledLocally;
pub use layer::{AdaptiveThrottleBuilder, AdaptiveThrottleLayer};
pub use service::AdaptiveThrottle;

/// What an adaptive throttle reports to its listeners.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ThrottleEvent {
    /// A call was shed locally.
    Shed {
        /// The throttle's name, if it has one.
        name: Option<Arc<str>>,
        /// The reject probability when it was shed.
        probability: f64,
    },
}

/// A view of a throttle's counts; cheap to clone. Get one from
/// [`AdaptiveThrottleLayer::handle`] or [`AdaptiveThrottle::handle`].
///
/// ```
/// use bulwark::throttle::AdaptiveThrottleLayer;
///
/// let handle = AdaptiveThrottleLayer::new().handle();
/// let now = handle.snapshot();
/// assert_eq!((now.requests(), now.accepts(), now.probability()), (0, 0, 0.0));
/// ```
#[derive(Clone)]
pub struct AdaptiveThrottleHandle {
    state: Arc<state::State>,
}

impl AdaptiveThrottleHandle {
    /// The counts of the window now, and the probability they give.
    pub fn snapshot(&self) -> ThrottleSnapshot {
        let (requests, accepts, probability) = self.state.snapshot();
        ThrottleSnapshot {
            requests,
            accepts,
            probability,
        }
    }

    /// The throttle's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.state.name.as_deref()
    }

    /// Whether `self` and `other` observe the same throttle.
    pub fn same_throttle(&self, other: &AdaptiveThrottleHandle) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}

impl fmt::Debug for AdaptiveThrottleHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottleHandle")
            .field("name", &self.name())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// The counts of a throttle's window at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleSnapshot {
    requests: u64,
    accepts: u64,
    probability: f64,
}

impl ThrottleSnapshot {
    /// Requests in the window: calls that ended, and calls shed.
    pub const fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests the upstream accepted.
    pub const fn accepts(&self) -> u64 {
        self.accepts
    }

    /// The probability with which the next call is shed.
    pub const fn probability(&self) -> f64 {
        self.probability
    }
}
