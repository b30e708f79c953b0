//! The breaker itself: shared state, admission, recording, control.

use crate::config::{BreakerBuilder, Config, WindowKind};
use crate::error::CallError;
use crate::event::{BreakerEvent, BreakerEventKind};
use crate::state::{State, Transition, TransitionReason};
use crate::window::{CountWindow, Counts, TimeWindow, Window};
use bulwark_core::backoff::{Delays, Random};
use bulwark_core::classify::Outcome;
use bulwark_core::clock::{self, Instant, TimeBase};
use bulwark_core::error::CircuitOpen;
use bulwark_core::event::Listeners;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

// A child module, so it can reach the breaker's private state.
#[path = "reconfigure.rs"]
mod reconfigure;

/// A circuit breaker: the shared state behind every clone of a
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer)'s services, and the
/// handle to watch and control it.
///
/// A `Breaker` is a cheap clone (one `Arc`); every clone is the same breaker.
/// Use it three ways:
///
/// - as a tower layer: [`CircuitBreakerLayer::new(breaker)`](crate::CircuitBreakerLayer::new);
/// - on its own, to guard any future or closure: [`call`](Breaker::call),
///   [`call_sync`](Breaker::call_sync), or [`try_acquire`](Breaker::try_acquire)
///   and [`Permit::record`] by hand;
/// - as a handle: [`state`](Breaker::state), [`snapshot`](Breaker::snapshot),
///   [`force_open`](Breaker::force_open), [`force_closed`](Breaker::force_closed),
///   [`metrics_only`](Breaker::metrics_only), [`reset`](Breaker::reset).
///
/// ```
/// use bulwark::breaker::{Breaker, CallError, State};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = Breaker::builder()
///     .consecutive_failures(2)
///     .build()
///     .unwrap();
///
/// for _ in 0..2 {
///     let r: Result<(), _> = breaker.call(async { Err::<(), _>("upstream down") }).await;
///     assert!(matches!(r, Err(CallError::Inner(_))));
/// }
/// assert_eq!(breaker.state(), State::Open);
///
/// // Open: the future is not even polled.
/// let r = breaker.call(async { Ok::<_, &str>(()) }).await;
/// assert!(matches!(r, Err(CallError::Open(_))));
/// # }
/// ```
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

/// Bits of the state hint: `epoch << EPOCH_SHIFT | CLEAN? | state`.
const EPOCH_SHIFT: u32 = 4;
/// Set while recording a success changes nothing: a count window full of
/// successes in the closed (or metrics-only) state. Successes then skip the
/// lock entirely.
const CLEAN: u64 = 1 << 3;
/// The state's bits in the hint.
const STATE_MASK: u64 = 0b111;

/// Read on every call, written only when it changes: kept on a cache line of
/// its own, away from the `Arc`'s reference counts and the lock. The line
/// also holds what is only ever read (the name, the listeners), which costs
/// no sharing and keeps a breaker small (a keyed set holds many).
#[repr(align(128))]
struct Hot {
    /// `epoch << EPOCH_SHIFT | CLEAN? | state`, written under the lock.
    hint: AtomicU64,
    /// When an open breaker admits a probe, in nanoseconds since `base`.
    open_until: AtomicU64,
    base: TimeBase,
    slow_threshold: Option<Duration>,
    /// Whether recording needs the time (time window or slow calls).
    needs_now: bool,
    name: Option<Arc<str>>,
    listeners: Listeners<BreakerEvent>,
}

struct Shared {
    hot: Hot,
    /// Written on every rejection: away from the hot line, next to the lock
    /// (which a breaker that rejects, being open, seldom takes).
    rejected: AtomicU64,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Shared by every breaker of a keyed set; replaced whole on reconfigure.
    config: Arc<Config>,
    state: State,
    epoch: u64,
    since: Instant,
    window: Window,
    consecutive_failures: u32,
    trips: u32,
    probes_in_flight: u32,
    probe_successes: u32,
    probe_failures: u32,
    open_until: Instant,
    open_delays: Delays,
    random: Random,
    /// Made on the first transition: most breakers of a keyed set never
    /// change state, and each would otherwise carry an empty buffer. Boxed:
    /// 8 bytes instead of a `VecDeque`'s 32 keep the shared state within
    /// three cache lines (see the `footprint` test).
    #[allow(clippy::box_collection)]
    history: Option<Box<VecDeque<Transition>>>,
}

/// Why a call was not admitted, before it is counted and reported.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    state: State,
    retry_after: Option<Duration>,
}

/// An admission without a handle on the breaker: what the tower service
/// keeps between `poll_ready` and `call` (it holds the breaker itself), so
/// that only the call's future takes a reference count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    epoch: u64,
    probe: bool,
    /// `false` for a disabled breaker, which records nothing.
    tracked: bool,
    /// When the call started, in nanoseconds since the breaker's time base
    /// (read only with slow-call detection, which a live breaker cannot
    /// gain or lose).
    start: u64,
}

impl Ticket {
    const UNTRACKED: Ticket = Ticket {
        epoch: 0,
        probe: false,
        tracked: false,
        start: 0,
    };

    /// Whether this admission is a half-open probe.
    #[inline]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }
}

/// What a permit holds to record through: the breaker itself (one
/// reference count on the breaker's shared state), or a tower service's own
/// reference-counted handle on it, so that the calls of a long-lived service
/// write no cache line that other threads' calls write too.
#[derive(Clone)]
pub(crate) enum Handle {
    Shared(Breaker),
    Local(Arc<Breaker>),
}

impl std::ops::Deref for Handle {
    type Target = Breaker;

    #[inline]
    fn deref(&self) -> &Breaker {
        match self {
            Handle::Shared(breaker) => breaker,
            Handle::Local(breaker) => breaker,
        }
    }
}

/// The right to make one call, given by [`Breaker::try_acquire`].
///
/// Report how the call ended with [`record`](Permit::record). A permit dropped
/// without a record (a cancelled call) counts for nothing, and a half-open
/// probe slot it held is given back at once.
#[must_use = "a permit records nothing unless `record` is called"]
pub struct Permit {
    breaker: Option<Handle>,
    /// `epoch << 1 | probe`: 24 bytes in all, carried by every call's future.
    tag: u64,
    /// As [`Ticket`]'s.
    start: u64,
}

/// A point-in-time view of a breaker, from [`Breaker::snapshot`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot {
    /// The breaker's name.
    pub name: Option<Arc<str>>,
    /// The current state.
    pub state: State,
    /// Calls in the window (successes and failures; ignored outcomes are not
    /// recorded).
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Failures over calls in the window, once the window holds the minimum
    /// number of calls.
    pub failure_rate: Option<f64>,
    /// Slow calls over calls in the window, once the window holds the minimum
    /// number of calls.
    pub slow_call_rate: Option<f64>,
    /// Failures in a row, most recent last.
    pub consecutive_failures: u32,
    /// Trips since the breaker was last closed after probing (drives a
    /// growing open duration).
    pub consecutive_trips: u32,
    /// Probes in flight, including probes of an earlier half-open period
    /// that have not finished yet (they count against the limit).
    pub probes_in_flight: u32,
    /// Successful probes so far (half-open).
    pub probe_successes: u32,
    /// Failed or slow probes so far (half-open).
    pub probe_failures: u32,
    /// How long the breaker has been in its state.
    pub time_in_state: Duration,
    /// How long until an open breaker admits a probe.
    pub next_probe_in: Option<Duration>,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
    /// The last transitions, oldest first.
    pub history: Vec<Transition>,
    /// What trips the breaker, as configured now (after any
    /// [`reconfigure`](Breaker::reconfigure)).
    pub thresholds: Thresholds,
}

/// What trips a breaker, as configured now: in a [`Snapshot`], so that an
/// operator can see that a reload took effect.
///
/// A threshold lowered by [`reconfigure`](Breaker::reconfigure) is judged
/// at the next recorded call, not at once: a breaker that already counts
/// more failures in a row than the new threshold trips on its next failure.
///
/// ```
/// use bulwark::breaker::Breaker;
///
/// let breaker = Breaker::builder().consecutive_failures(5).build().unwrap();
/// breaker.reconfigure(&Breaker::builder().consecutive_failures(2)).unwrap();
/// let t = breaker.snapshot().thresholds;
/// assert_eq!((t.consecutive_failures, t.failure_rate, t.minimum_calls), (Some(2), Some(0.5), 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Thresholds {
    /// The failure rate that trips it, once the window holds
    /// `minimum_calls` calls (`None`: not judged).
    pub failure_rate: Option<f64>,
    /// The slow-call rate that trips it, with the duration above which a
    /// call is slow (`None`: not judged).
    pub slow_call: Option<(Duration, f64)>,
    /// Failures in a row that trip it, whatever the window holds (`None`:
    /// not judged).
    pub consecutive_failures: Option<u32>,
    /// Calls the window must hold before a rate is judged.
    pub minimum_calls: u32,
}

impl Breaker {
    /// A builder with the defaults (see [`BreakerBuilder`]).
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder::new()
    }

    pub(crate) fn from_parts(
        name: Option<Arc<str>>,
        config: Arc<Config>,
        listeners: Listeners<BreakerEvent>,
    ) -> Breaker {
        let base = TimeBase::new();
        let now = base.start();
        let window = match config.window {
            WindowKind::Count { size } => Window::Count(CountWindow::new(size as usize)),
            WindowKind::Time { length, buckets } => Window::Time(TimeWindow::new(length, buckets)),
        };
        let mut random = config.seed.map_or_else(Random::new, Random::seeded);
        let open_delays = config.open.delays(random.fork());
        let shared = Shared {
            hot: Hot {
                hint: AtomicU64::new(State::Closed.to_bits()),
                open_until: AtomicU64::new(0),
                base,
                slow_threshold: config.slow_call.map(|(d, _)| d),
                needs_now: config.slow_call.is_some()
                    || matches!(config.window, WindowKind::Time { .. }),
                name,
                listeners,
            },
            rejected: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                history: None,
                config,
                state: State::Closed,
                epoch: 0,
                since: now,
                window,
                consecutive_failures: 0,
                trips: 0,
                probes_in_flight: 0,
                probe_successes: 0,
                probe_failures: 0,
                open_until: now,
                open_delays,
                random,
            }),
        };
        Breaker {
            shared: Arc::new(shared),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> Option<&str> {
        self.shared.hot.name.as_deref()
    }

    /// The current state, without taking the lock.
    ///
    /// An open breaker whose open duration has elapsed still reads `Open`
    /// until the next call moves it to half-open; the
    /// [`snapshot`](Breaker::snapshot) says when (`next_probe_in` of zero).
    pub fn state(&self) -> State {
        State::from_bits(self.shared.hot.hint.load(Ordering::Acquire))
    }

    /// Asks for the right to make one call.
    ///
    /// Closed (or forced closed, or metrics-only): always granted. Open: refused
    /// with the time until a probe, until the open duration has elapsed; the
    /// first call after that moves the breaker to half-open. Half-open:
    /// granted while fewer than the permitted number of probes are in flight.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        self.admit().map_err(|refusal| self.reject(refusal))
    }

    /// Decides admission without counting or reporting a refusal: the tower
    /// service asks in `poll_ready` (maybe several times) and reports the
    /// refusal once, in `call`, with [`reject`](Self::reject).
    #[inline]
    pub(crate) fn admit(&self) -> Result<Permit, Refusal> {
        self.admit_ticket().map(|ticket| self.permit(ticket))
    }

    /// [`admit`](Self::admit) without a handle on the breaker in the result:
    /// the tower service, which holds one, keeps only the ticket between
    /// `poll_ready` and `call` (a probe's ticket must be made a [`Permit`]
    /// at once, so that its slot is given back if it is dropped).
    #[inline]
    pub(crate) fn admit_ticket(&self) -> Result<Ticket, Refusal> {
        let hint = self.shared.hot.hint.load(Ordering::Acquire);
        if hint & STATE_MASK == State::Closed.to_bits() {
            return Ok(self.ticket(hint >> EPOCH_SHIFT, false));
        }
        self.admit_not_closed(hint)
    }

    fn admit_not_closed(&self, hint: u64) -> Result<Ticket, Refusal> {
        let s = &self.shared.hot;
        let epoch = hint >> EPOCH_SHIFT;
        match State::from_bits(hint) {
            State::Closed | State::MetricsOnly => Ok(self.ticket(epoch, false)),
            State::ForcedClosed => Ok(Ticket::UNTRACKED),
            State::ForcedOpen => Err(Refusal {
                state: State::ForcedOpen,
                retry_after: None,
            }),
            State::Open => {
                let until = s.open_until.load(Ordering::Acquire);
                let now = s.base.now_nanos();
                if now < until {
                    return Err(Refusal {
                        state: State::Open,
                        retry_after: Some(Duration::from_nanos(until - now)),
                    });
                }
                self.admit_locked()
            }
            State::HalfOpen => self.admit_locked(),
        }
    }

    #[inline]
    fn ticket(&self, epoch: u64, probe: bool) -> Ticket {
        Ticket {
            epoch,
            probe,
            tracked: true,
            start: match self.shared.hot.slow_threshold {
                Some(_) => self.shared.hot.base.now_nanos(),
                None => 0,
            },
        }
    }

    /// The permit of an admission: it holds a handle on the breaker (one
    /// reference count) unless the admission tracks nothing.
    #[inline]
    pub(crate) fn permit(&self, ticket: Ticket) -> Permit {
        self.permit_with(ticket, || Handle::Shared(self.clone()))
    }

    /// [`permit`](Self::permit) recording through the handle `handle` makes
    /// (asked only if the admission tracks anything).
    #[inline]
    pub(crate) fn permit_with(&self, ticket: Ticket, handle: impl FnOnce() -> Handle) -> Permit {
        Permit {
            breaker: ticket.tracked.then(handle),
            tag: ticket.epoch << 1 | u64::from(ticket.probe),
            start: ticket.start,
        }
    }

    /// Whether the breaker changed state since `ticket` was given.
    #[inline]
    pub(crate) fn is_stale(&self, ticket: &Ticket) -> bool {
        ticket.tracked
            && self.shared.hot.hint.load(Ordering::Relaxed) >> EPOCH_SHIFT != ticket.epoch
    }

    #[cold]
    fn admit_locked(&self) -> Result<Ticket, Refusal> {
        let s = &*self.shared;
        let mut transition = None;
        let result = {
            let mut inner = s.inner.lock();
            if inner.state == State::Open {
                let now = Instant::now();
                if now < inner.open_until {
                    return Err(Refusal {
                        state: State::Open,
                        retry_after: Some(inner.open_until - now),
                    });
                }
                transition =
                    Some(inner.transition(s, State::HalfOpen, TransitionReason::OpenElapsed, now));
            }
            let epoch = inner.epoch;
            match inner.state {
                State::Closed | State::MetricsOnly => Ok(self.ticket(epoch, false)),
                State::ForcedClosed => Ok(Ticket::UNTRACKED),
                State::HalfOpen if inner.probes_in_flight < inner.config.probes => {
                    inner.probes_in_flight += 1;
                    Ok(self.ticket(epoch, true))
                }
                // Half-open with every probe slot taken: when a probe
                // completes is unknown.
                state => Err(Refusal {
                    state,
                    retry_after: None,
                }),
            }
        };
        if let Some(t) = transition {
            self.emit_transition(t);
        }
        result
    }

    /// Counts and reports a refusal, and makes the error the caller gets.
    #[cold]
    pub(crate) fn reject(&self, refusal: Refusal) -> CircuitOpen {
        let Refusal { state, retry_after } = refusal;
        let s = &*self.shared;
        s.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            target: "bulwark::breaker",
            breaker = s.hot.name.as_deref().unwrap_or(""),
            state = state.as_str(),
            retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
            "call rejected"
        );
        s.hot.listeners.emit(|| BreakerEvent {
            name: s.hot.name.clone(),
            kind: BreakerEventKind::Rejected { state, retry_after },
        });
        let err = CircuitOpen::new(retry_after);
        match &s.hot.name {
            Some(name) => err.with_name(name.clone()),
            None => err,
        }
    }

    #[inline]
    fn on_outcome(&self, epoch: u64, probe: bool, outcome: Outcome, start: u64) {
        let hot = &self.shared.hot;
        if !probe && !hot.needs_now && outcome == Outcome::Success {
            // A success in a window full of successes changes nothing: no lock.
            let hint = hot.hint.load(Ordering::Acquire);
            if hint & CLEAN != 0 && hint >> EPOCH_SHIFT == epoch {
                return;
            }
        }
        self.record_locked(epoch, probe, outcome, start);
    }

    #[inline(never)]
    fn record_locked(&self, epoch: u64, probe: bool, outcome: Outcome, start: u64) {
        let s = &*self.shared;
        let counted = matches!(outcome, Outcome::Success | Outcome::Failure);
        if !probe && !counted {
            return;
        }
        let now = if s.hot.needs_now {
            Some(Instant::now())
        } else {
            None
        };
        // The time read once, as nanoseconds since the base, for the slow
        // call and the time window alike.
        let now_nanos = now.map_or(0, |n| s.hot.base.nanos(n));
        let slow = match (s.hot.slow_threshold, now) {
            (Some(threshold), Some(_)) => {
                now_nanos.saturating_sub(start) >= clock::duration_nanos(threshold)
            }
            _ => false,
        };
        if !probe && !slow && outcome == Outcome::Success {
            // A success in a window full of successes changes nothing: no lock.
            let hint = s.hot.hint.load(Ordering::Acquire);
            if hint & CLEAN != 0 && hint >> EPOCH_SHIFT == epoch {
                return;
            }
        }
        let transition = {
            let mut inner = s.inner.lock();
            if probe {
                // Probes in flight are counted across states, so that at most
                // the permitted number are ever in flight at once.
                inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
            }
            if inner.epoch != epoch {
                // Admitted in an earlier state: its outcome no longer counts.
                return;
            }
            if probe {
                let now = now.unwrap_or_else(Instant::now);
                let failed = match outcome {
                    Outcome::Failure => Some(TransitionReason::ProbeFailed),
                    Outcome::Success if slow => Some(TransitionReason::ProbeSlow),
                    _ => None,
                };
                match outcome {
                    _ if failed.is_some() => {
                        inner.probe_failures += 1;
                        (inner.probe_failures >= inner.config.failures_to_reopen).then(|| {
                            let reason = failed.unwrap_or(TransitionReason::ProbeFailed);
                            inner.transition(s, State::Open, reason, now)
                        })
                    }
                    Outcome::Success => {
                        inner.probe_successes += 1;
                        let n = inner.probe_successes;
                        (n >= inner.config.successes_to_close).then(|| {
                            inner.transition(
                                s,
                                State::Closed,
                                TransitionReason::ProbesSucceeded(n),
                                now,
                            )
                        })
                    }
                    _ => None,
                }
            } else {
                let failed = outcome == Outcome::Failure;
                let counts = inner.window.record(now_nanos, failed, slow);
                inner.consecutive_failures = if failed {
                    inner.consecutive_failures + 1
                } else {
                    0
                };
                let trip = if inner.state == State::Closed {
                    inner.trip_reason(counts)
                } else {
                    None
                };
                match trip {
                    Some(reason) => Some(inner.transition(
                        s,
                        State::Open,
                        reason,
                        now.unwrap_or_else(Instant::now),
                    )),
                    None => {
                        inner.publish(s);
                        None
                    }
                }
            }
        };
        if let Some(t) = transition {
            self.emit_transition(t);
        }
    }

    fn release_probe(&self) {
        let mut inner = self.shared.inner.lock();
        inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
    }

    fn emit_transition(&self, t: Transition) {
        let s = &*self.shared;
        let name = s.hot.name.as_deref().unwrap_or("");
        if t.to == State::Open {
            tracing::warn!(target: "bulwark::breaker", breaker = name, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "circuit breaker opened");
        } else {
            tracing::info!(target: "bulwark::breaker", breaker = name, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "circuit breaker state changed");
        }
        s.hot.listeners.emit(|| BreakerEvent {
            name: s.hot.name.clone(),
            kind: BreakerEventKind::StateChanged(t),
        });
    }

    fn manual(&self, to: State) {
        let s = &*self.shared;
        let t = {
            let mut inner = s.inner.lock();
            if inner.state == to && to != State::Closed {
                return;
            }
            inner.transition(s, to, TransitionReason::Manual, Instant::now())
        };
        self.emit_transition(t);
    }

    /// Opens the breaker until an operator says otherwise: every call is
    /// rejected (with no probe time) until [`reset`](Breaker::reset),
    /// [`force_closed`](Breaker::force_closed) or [`metrics_only`](Breaker::metrics_only).
    pub fn force_open(&self) {
        self.manual(State::ForcedOpen);
    }

    /// Forces the breaker closed: every call passes and nothing is recorded,
    /// until [`reset`](Breaker::reset) or another manual transition.
    pub fn force_closed(&self) {
        self.manual(State::ForcedClosed);
    }

    /// Lets every call pass while still recording outcomes: the rates stay
    /// visible in the snapshot, but the breaker never trips.
    pub fn metrics_only(&self) {
        self.manual(State::MetricsOnly);
    }

    /// Closes the breaker and forgets every recorded outcome and trip.
    pub fn reset(&self) {
        self.manual(State::Closed);
    }

    /// Calls rejected since the breaker was built.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// A consistent view of the breaker's state, counts and recent history.
    pub fn snapshot(&self) -> Snapshot {
        let s = &*self.shared;
        let now = Instant::now();
        let mut inner = s.inner.lock();
        let counts = inner.window.counts(s.hot.base.nanos(now));
        let judged = counts.calls >= inner.config.minimum_calls && counts.calls > 0;
        let rate = |n: u32| judged.then(|| f64::from(n) / f64::from(counts.calls));
        Snapshot {
            name: s.hot.name.clone(),
            state: inner.state,
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            failure_rate: rate(counts.failures),
            slow_call_rate: inner.config.slow_call.and(rate(counts.slow)),
            consecutive_failures: inner.consecutive_failures,
            consecutive_trips: inner.trips,
            probes_in_flight: inner.probes_in_flight,
            probe_successes: inner.probe_successes,
            probe_failures: inner.probe_failures,
            time_in_state: now.saturating_duration_since(inner.since),
            next_probe_in: (inner.state == State::Open)
                .then(|| inner.open_until.saturating_duration_since(now)),
            rejected: s.rejected.load(Ordering::Relaxed),
            history: inner
                .history
                .iter()
                .flat_map(|h| h.iter().copied())
                .collect(),
            thresholds: Thresholds {
                failure_rate: inner.config.failure_rate,
                slow_call: inner.config.slow_call,
                consecutive_failures: inner.config.consecutive_failures,
                minimum_calls: inner.config.minimum_calls,
            },
        }
    }

    /// Runs `fut` if the breaker admits it, counting `Ok` as a success and
    /// `Err` as a failure. When the breaker refuses, `fut` is dropped without
    /// being polled. If the returned future is dropped before it completes,
    /// nothing is recorded and a probe slot is given back.
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_classified(fut, |r| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .await
    }

    /// Like [`call`](Breaker::call), with your own classification of the
    /// result (e.g. an `Ok` response with a 503 status is a failure).
    pub async fn call_classified<T, E, F, C>(&self, fut: F, classify: C) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
    {
        let permit = self.try_acquire().map_err(CallError::Open)?;
        let result = fut.await;
        permit.record(classify(&result));
        result.map_err(CallError::Inner)
    }

    /// Runs a blocking closure if the breaker admits it, counting `Ok` as a
    /// success and `Err` as a failure.
    ///
    /// ```
    /// use bulwark::breaker::Breaker;
    ///
    /// let breaker = Breaker::builder().build().unwrap();
    /// let parsed = breaker.call_sync(|| "42".parse::<u32>());
    /// assert_eq!(parsed.unwrap(), 42);
    /// ```
    pub fn call_sync<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        let permit = self.try_acquire().map_err(CallError::Open)?;
        let result = f();
        permit.record(if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        });
        result.map_err(CallError::Inner)
    }

    /// Keeps an open breaker open for at least `at_least` from now, because
    /// the upstream asked for it (a `Retry-After` or
    /// `grpc-retry-pushback-ms` on the answer that tripped it).
    ///
    /// Only lengthens: an open time already longer is kept, and a breaker
    /// that is not [`Open`](State::Open) is left alone (a server asking for
    /// less load is not a reason to stop calling it). Returns whether the
    /// open time was extended. A duration too long to represent (up to
    /// `Duration::MAX`) saturates: the breaker stays open until reset, so
    /// callers should cap what a server may ask.
    ///
    /// ```
    /// use bulwark::breaker::{Breaker, State};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let breaker = Breaker::builder().consecutive_failures(1).open_for(Duration::from_secs(1)).build().unwrap();
    /// assert!(!breaker.hold_open_for(Duration::from_secs(30))); // closed: nothing to do
    /// let _ = breaker.call_sync(|| Err::<(), _>("503"));
    /// assert!(breaker.hold_open_for(Duration::from_secs(30)));
    /// assert_eq!(breaker.snapshot().next_probe_in, Some(Duration::from_secs(30)));
    /// # }
    /// ```
    pub fn hold_open_for(&self, at_least: Duration) -> bool {
        let s = &*self.shared;
        let mut inner = s.inner.lock();
        if inner.state != State::Open {
            return false;
        }
        // Too long to represent: held open "forever" (until reset).
        let until = clock::saturating_add(Instant::now(), at_least);
        if until <= inner.open_until {
            return false;
        }
        inner.open_until = until;
        s.hot
            .open_until
            .store(s.hot.base.nanos(until), Ordering::Release);
        drop(inner);
        tracing::info!(
            target: "bulwark::breaker",
            breaker = s.hot.name.as_deref().unwrap_or(""),
            open_for_ms = at_least.as_millis() as u64,
            "circuit breaker held open as the upstream asked"
        );
        true
    }

    /// Whether two handles are the same breaker.
    pub fn ptr_eq(&self, other: &Breaker) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Inner {
    /// Publishes the state hint read without the lock. Stores only when it
    /// changed, so steady traffic does not bounce the hot cache line.
    fn publish(&self, s: &Shared) {
        let clean = matches!(self.state, State::Closed | State::MetricsOnly)
            && self.consecutive_failures == 0
            && self.window.is_full_of_successes();
        let hint = self.epoch << EPOCH_SHIFT | if clean { CLEAN } else { 0 } | self.state.to_bits();
        if s.hot.hint.load(Ordering::Relaxed) != hint {
            s.hot.hint.store(hint, Ordering::Release);
        }
    }

    fn trip_reason(&self, counts: Counts) -> Option<TransitionReason> {
        if let Some(n) = self.config.consecutive_failures {
            if self.consecutive_failures >= n {
                return Some(TransitionReason::ConsecutiveFailures(
                    self.consecutive_failures,
                ));
            }
        }
        if counts.calls == 0 || counts.calls < self.config.minimum_calls {
            return None;
        }
        let calls = f64::from(counts.calls);
        // A rate of zero reaches no threshold above zero: the divisions are
        // made only when there is something to divide (a window of
        // successes, the common case, makes none).
        if let Some(threshold) = self.config.failure_rate {
            if counts.failures > 0 || threshold <= 0.0 {
                let rate = f64::from(counts.failures) / calls;
                if rate >= threshold {
                    return Some(TransitionReason::FailureRate(rate));
                }
            }
        }
        if let Some((_, threshold)) = self.config.slow_call {
            if counts.slow > 0 || threshold <= 0.0 {
                let rate = f64::from(counts.slow) / calls;
                if rate >= threshold {
                    return Some(TransitionReason::SlowCallRate(rate));
                }
            }
        }
        None
    }

    fn transition(
        &mut self,
        s: &Shared,
        to: State,
        reason: TransitionReason,
        now: Instant,
    ) -> Transition {
        let from = self.state;
        self.state = to;
        self.epoch += 1;
        self.since = now;
        self.probe_successes = 0;
        self.probe_failures = 0;
        match to {
            State::Open => {
                self.trips = self.trips.saturating_add(1);
                let delay = self.open_delays.next_delay();
                // A delay too long to represent means "until reset".
                self.open_until = clock::saturating_add(now, delay);
                s.hot
                    .open_until
                    .store(s.hot.base.nanos(self.open_until), Ordering::Release);
            }
            State::Closed => {
                self.window.clear();
                self.consecutive_failures = 0;
                self.trips = 0;
                self.open_delays = self.config.open.delays(self.random.fork());
            }
            _ => {}
        }
        self.publish(s);
        let t = Transition {
            from,
            to,
            reason,
            at: now,
        };
        if self.config.history > 0 {
            let history = self.history.get_or_insert_with(Default::default);
            if history.len() >= self.config.history {
                history.pop_front();
            }
            history.push_back(t);
        }
        t
    }
}

impl Permit {
    /// Whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.tag & 1 != 0
    }

    #[inline]
    fn epoch(&self) -> u64 {
        self.tag >> 1
    }

    /// The breaker this permit was given by (`None` for a forced-closed
    /// breaker, which tracks nothing).
    pub fn breaker(&self) -> Option<&Breaker> {
        self.breaker.as_deref()
    }

    /// Reports how the call ended. Only successes and failures are counted in
    /// the window; any other outcome just gives a probe slot back. A call
    /// admitted before the breaker last changed state counts for nothing.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    /// [`record`](Self::record) in place, for a permit kept inside a future
    /// (no move of the permit): records once, then the permit is spent.
    #[inline]
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if let Some(breaker) = self.breaker.take() {
            breaker.on_outcome(self.epoch(), self.is_probe(), outcome, self.start);
        }
    }

    /// Whether the breaker changed state since this permit was given: a
    /// service holding one from `poll_ready` asks for a new one.
    pub(crate) fn is_stale(&self) -> bool {
        match &self.breaker {
            Some(b) => b.shared.hot.hint.load(Ordering::Relaxed) >> EPOCH_SHIFT != self.epoch(),
            None => false,
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            if self.is_probe() {
                breaker.release_probe();
            }
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.is_probe())
            .field("epoch", &self.epoch())
            .finish()
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.shared.hot.name)
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn hold_open_for_only_lengthens_an_open_breaker() {
        let breaker = Breaker::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(10))
            .successes_to_close(1)
            .build()
            .unwrap();
        assert!(!breaker.hold_open_for(Duration::from_secs(30)));
        let _ = breaker.call_sync(|| Err::<(), _>("down"));
        assert_eq!(breaker.state(), State::Open);
        // Shorter than the open time: kept.
        assert!(!breaker.hold_open_for(Duration::from_secs(5)));
        assert!(breaker.hold_open_for(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(29)).await;
        let err = breaker.try_acquire().unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let permit = breaker.try_acquire().expect("probe admitted");
        assert!(permit.is_probe());
        permit.record(Outcome::Success);
        assert_eq!(breaker.state(), State::Closed);
        // Too long to represent: held open "forever", until a reset.
        let _ = breaker.call_sync(|| Err::<(), _>("down"));
        assert!(breaker.hold_open_for(Duration::MAX));
        assert_eq!(
            breaker.snapshot().next_probe_in,
            Some(bulwark_core::clock::FAR_FUTURE)
        );
        breaker.reset();
        assert_eq!(breaker.state(), State::Closed);
    }
}

#[cfg(test)]
mod footprint {
    /// A keyed set holds one breaker per host: its shared state must stay
    /// three cache lines past the `Arc`'s counts (the hot line, then the
    /// lock and what it guards), whatever is added to it.
    #[test]
    fn a_breaker_stays_small() {
        assert!(std::mem::size_of::<super::Shared>() <= 384);
        assert_eq!(std::mem::size_of::<super::Hot>(), 128);
    }
}
