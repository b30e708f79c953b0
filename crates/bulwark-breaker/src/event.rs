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
///
/// ```
/// use bulwark::breaker::{Breaker, BreakerEvent, BreakerEventKind, State};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let breaker = Breaker::builder()
///     .name("inventory")
///     .consecutive_failures(1)
///     .on_event(move |event: &BreakerEvent| match &event.kind {
///         BreakerEventKind::StateChanged(t) => log.lock().unwrap().push((t.from, t.to)),
///         BreakerEventKind::Rejected { .. } => {}
///         _ => {}
///     })
///     .build()?;
///
/// let _ = breaker.call_sync(|| Err::<(), _>("connection refused"));
/// assert_eq!(*seen.lock().unwrap(), [(State::Closed, State::Open)]);
/// # Ok::<(), bulwark::BoxError>(())
/// ```
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
