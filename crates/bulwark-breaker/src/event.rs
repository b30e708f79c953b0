//! What a breaker tells its listeners.

use crate::state::{State, Transition};
use std::sync::Arc;
use std::time::Duration;

/// An event of one breaker, handed to the listeners registered with
/// [`BreakerBuilder::on_event`](crate::BreakerBuilder::on_event).
///
/// Events are built only when a listener is registered. The same facts go to
/// `tracing` under the target `bulwark::breaker`: transitions at `INFO` (into
/// open: `WARN`), rejections at `DEBUG`.
#[derive(Debug, Clone)]
pub struct BreakerEvent {
    /// The breaker's name, if it has one.
    pub name: Option<Arc<str>>,
    /// What happened.
    pub kind: BreakerEventKind,
}

/// What happened to a breaker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BreakerEventKind {
    /// The breaker changed state.
    StateChanged(Transition),
    /// A call was refused without reaching the inner service.
    Rejected {
        /// The state that refused it.
        state: State,
        /// When a probe will be admitted, if known.
        retry_after: Option<Duration>,
    },
}
