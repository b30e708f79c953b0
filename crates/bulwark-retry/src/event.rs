//! What retry and hedging report: [`RetryEvent`].
//!
//! Register listeners with [`RetryLayer::on_event`](crate::RetryLayer::on_event)
//! or [`HedgeLayer::on_event`](crate::hedge::HedgeLayer::on_event). Events are
//! built only when a listener is registered. The same facts go to `tracing`
//! (target `bulwark_retry`) at `debug` level.
//!
//! ```
//! use bulwark::retry::event::{GiveUpReason, RetryEvent};
//! use bulwark::retry::RetryLayer;
//! use std::sync::{Arc, Mutex};
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! let layer = RetryLayer::new().on_event(move |e: &RetryEvent| {
//!     if let RetryEvent::GaveUp { reason: GiveUpReason::BudgetExhausted, .. } = e {
//!         sink.lock().unwrap().push(e.clone());
//!     }
//! });
//! # drop(layer);
//! ```

use bulwark_core::Outcome;
use std::fmt;
use std::time::Duration;

/// Why a call that could have been retried was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// Every allowed attempt was made.
    AttemptsExhausted,
    /// The retry budget (or gRPC retry throttling) refused another attempt:
    /// either when the attempt ended (the budget was already empty, so the
    /// call does not wait for the backoff), or when the scheduled retry was
    /// about to be sent (others had emptied it meanwhile).
    BudgetExhausted,
    /// The next attempt could not start [`min_time_left`] before the call's
    /// deadline: decided when the attempt ended (no wait), or while the retry
    /// waited for the inner service to be ready.
    ///
    /// [`min_time_left`]: crate::RetryLayer::min_time_left
    Deadline,
    /// The server's pushback said not to retry.
    Pushback,
    /// The request could not be copied for another attempt (see
    /// [`Replay`](crate::replay::Replay)).
    NotReplayable,
    /// A retry was sent and a layer below refused it without calling the
    /// upstream (an open breaker, a full bulkhead): the call ends with the
    /// previous attempt's response, or a
    /// [`RetryRejected`](crate::RetryRejected) carrying both errors. The
    /// event's outcome is [`Outcome::Rejected`].
    Rejected,
}

impl GiveUpReason {
    /// The lowercase name used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::AttemptsExhausted => "attempts exhausted",
            GiveUpReason::BudgetExhausted => "budget exhausted",
            GiveUpReason::Deadline => "deadline",
            GiveUpReason::Pushback => "pushback",
            GiveUpReason::NotReplayable => "not replayable",
            GiveUpReason::Rejected => "rejected",
        }
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a retry or hedge layer did.
///
/// Attempt numbers count from 1 (the original attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryEvent {
    /// Attempt `attempt` will be sent after `delay`, because the previous one
    /// ended as `outcome`. The budget is paid when it is sent; if it cannot
    /// be sent then, a [`GaveUp`](RetryEvent::GaveUp) follows instead.
    RetryScheduled {
        /// The number of the attempt that will be sent.
        attempt: u32,
        /// How long the layer waits before sending it.
        delay: Duration,
        /// The outcome of the previous attempt.
        outcome: Outcome,
        /// Whether the server's pushback set the delay (instead of the
        /// backoff).
        pushback: bool,
    },
    /// The call succeeded after `attempts` attempts.
    Succeeded {
        /// How many attempts ran (1 when no retry was needed).
        attempts: u32,
    },
    /// The call ended with an outcome that is not retried (by default:
    /// ignored, or a first attempt rejected below; a rejected retry is a
    /// [`GaveUp`](RetryEvent::GaveUp) with [`GiveUpReason::Rejected`]), or
    /// that the layer's [`RetryIf`](crate::policy::RetryIf) predicate
    /// refused.
    NotRetried {
        /// How many attempts ran.
        attempts: u32,
        /// The final outcome.
        outcome: Outcome,
    },
    /// The last attempt's outcome would have been retried, but was returned
    /// as it was.
    GaveUp {
        /// How many attempts ran.
        attempts: u32,
        /// The outcome returned.
        outcome: Outcome,
        /// Why no other attempt was made.
        reason: GiveUpReason,
    },
    /// A hedge (a speculative extra attempt) was sent because no answer came
    /// within `after`.
    HedgeSent {
        /// The number of the attempt that was sent (2 for the first hedge).
        attempt: u32,
        /// How long the call had waited for an answer.
        after: Duration,
    },
    /// A hedge that was due was not sent.
    HedgeSkipped {
        /// The number the attempt would have had.
        attempt: u32,
        /// Why it was not sent.
        reason: GiveUpReason,
    },
    /// The first acceptable answer came from attempt `attempt`; every other
    /// attempt still in flight was dropped.
    HedgeWon {
        /// The winning attempt (1 is the original).
        attempt: u32,
        /// How many attempts had been sent.
        attempts: u32,
    },
}
