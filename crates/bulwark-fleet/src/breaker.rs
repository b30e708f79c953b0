//! [`SharedBreakerLayer`]: a circuit breaker gate shared by the fleet.

use crate::fleet::{spawn, FleetInner, Link, TaskGuard};
use crate::{Fleet, FleetEvent};
use bulwark_core::clock::TimeBase;
use bulwark_core::error::{CircuitOpen, ConfigError};
use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tower_layer::Layer;
use tower_service::Service;

/// One sync of a shared breaker, atomically, on Redis's clock: add this
/// instance's counts to the current bucket (a tenth of the window), sum
/// the window's ten buckets,
/// apply a probe's outcome, trip when the fleet's rate crosses the
/// threshold, and hand the half-open probe lease to one instance.
const SYNC_SCRIPT: &str = r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dc, df, bms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local min_calls, permille, open_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local me, want_probe, result, lease_ms = ARGV[7], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local n = tonumber(ARGV[11])
local b = math.floor(now_ms / bms)
if dc > 0 then redis.call('HINCRBY', KEYS[1], 'c:' .. b, dc) end
if df > 0 then redis.call('HINCRBY', KEYS[1], 'f:' .. b, df) end
redis.call('PEXPIRE', KEYS[1], (n + 2) * bms)
for s = b - n - 5, b - n do redis.call('HDEL', KEYS[1], 'c:' .. s, 'f:' .. s) end
local calls, fails = 0, 0
for s = b - n + 1, b do
  calls = calls + tonumber(redis.call('HGET', KEYS[1], 'c:' .. s) or 0)
  fails = fails + tonumber(redis.call('HGET', KEYS[1], 'f:' .. s) or 0)
end
local gen = tonumber(redis.call('GET', KEYS[5]) or 0)
local function trip()
  gen = redis.call('INCR', KEYS[5])
  redis.call('SET', KEYS[2], gen, 'PX', open_ms)
  redis.call('SET', KEYS[3], gen, 'PX', open_ms + 60000)
  redis.call('DEL', KEYS[1], KEYS[4])
  calls, fails = 0, 0
end
if result > 0 and redis.call('GET', KEYS[4]) == me then
  if result == 1 then
    gen = redis.call('INCR', KEYS[5])
    redis.call('DEL', KEYS[3], KEYS[4], KEYS[1])
    calls, fails = 0, 0
  else
    trip()
  end
end
local open_ttl = redis.call('PTTL', KEYS[2])
local half = redis.call('EXISTS', KEYS[3])
if open_ttl < 0 and half == 0 and calls >= min_calls and calls > 0 and fails * 1000 >= permille * calls then
  trip()
  open_ttl = open_ms
  half = 1
end
local probe = 0
if open_ttl < 0 and half == 1 then
  local holder = redis.call('GET', KEYS[4])
  if holder == me then
    probe = 1
  elseif not holder and want_probe == '1' then
    redis.call('SET', KEYS[4], me, 'PX', lease_ms)
    probe = 1
  end
end
local state = 0
if open_ttl >= 0 then state = 1 elseif half == 1 then state = 2 end
if open_ttl < 0 then open_ttl = 0 end
return {state, open_ttl, gen, calls, fails, probe}
";

/// A quiet instance syncs a closed breaker every this many intervals.
const IDLE_EVERY: u32 = 5;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The fleet's view of a shared breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetState {
    /// Calls pass (to the local breaker).
    Closed,
    /// The fleet tripped: every instance refuses calls.
    Open,
    /// The open time is over; one instance at a time holds the probe lease
    /// and lets one call through.
    HalfOpen,
}

/// What a shared breaker knows of the fleet now (for health).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SharedBreakerSnapshot {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The fleet's state, as last synced.
    pub state: FleetState,
    /// Trips and closes so far, fleet-wide: every instance that saw the
    /// same trip reports the same generation.
    pub generation: u64,
    /// Calls in the fleet's window, as of the last sync.
    pub fleet_calls: u64,
    /// Failures in the fleet's window, as of the last sync.
    pub fleet_failures: u64,
    /// Whether Redis is out of reach (the gate lets every call through to
    /// the local breaker).
    pub degraded: bool,
    /// Whether this instance holds the fleet's probe lease.
    pub probing: bool,
}

/// Builds a [`SharedBreakerLayer`].
#[derive(Debug)]
pub struct SharedBreakerBuilder<C = DefaultClassifier> {
    fleet: Fleet,
    name: Arc<str>,
    failure_rate: f64,
    minimum_calls: u32,
    window: Duration,
    open_for: Duration,
    probe_lease: Duration,
    classifier: C,
}

impl<C> SharedBreakerBuilder<C> {
    /// The fleet's failure rate at which it trips (default 0.5, in `(0, 1]`).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Calls the fleet's window must hold before the rate is judged
    /// (default 100).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// The fleet's window on Redis's clock, a sliding window of ten buckets
    /// (default 10 s, from 1 s to 10 min).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long the fleet stays open after a trip (default 5 s); published
    /// as a relative expiry, so instances' clocks do not matter.
    pub fn open_for(mut self, open_for: Duration) -> Self {
        self.open_for = open_for;
        self
    }

    /// How long one instance holds the half-open probe lease (default 1 s):
    /// the fleet sends at most one probe per lease.
    pub fn probe_lease(mut self, lease: Duration) -> Self {
        self.probe_lease = lease;
        self
    }

    /// What counts as a failure (the shared [`Classify`]; default: `Err`).
    pub fn classifier<C2>(self, classifier: C2) -> SharedBreakerBuilder<C2> {
        SharedBreakerBuilder {
            fleet: self.fleet,
            name: self.name,
            failure_rate: self.failure_rate,
            minimum_calls: self.minimum_calls,
            window: self.window,
            open_for: self.open_for,
            probe_lease: self.probe_lease,
            classifier,
        }
    }

    /// The layer; its sync task starts now.
    pub fn build(self) -> Result<SharedBreakerLayer<C>, ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new("shared breaker", field, reason));
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return err(
                "failure_rate",
                format!("must be in (0, 1], got {}", self.failure_rate),
            );
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.window) {
            return err(
                "window",
                format!("must be from 1s to 10min, got {:?}", self.window),
            );
        }
        if self.open_for < Duration::from_millis(1) {
            return err("open_for", "must be at least 1ms".into());
        }
        if self.probe_lease < Duration::from_millis(1) {
            return err("probe_lease", "must be at least 1ms".into());
        }
        let fleet = self.fleet.inner.clone();
        let key = |part| fleet.key("b", &self.name, part);
        let state = Arc::new(Gate {
            link: Link::new(format!("breaker:{}", self.name)),
            keys: [key("w"), key("open"), key("half"), key("probe"), key("gen")],
            settings: Settings {
                bucket_ms: (self.window.as_millis() as u64 / BUCKETS).max(1),
                minimum_calls: self.minimum_calls,
                permille: (self.failure_rate * 1000.0).round() as u64,
                open_ms: self.open_for.as_millis().max(1) as u64,
                lease_ms: self.probe_lease.as_millis().max(1) as u64,
            },
            name: self.name,
            base: TimeBase::new(),
            state: AtomicU8::new(CLOSED),
            open_until: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            probe_in_flight: AtomicBool::new(false),
            probe_result: AtomicU8::new(0),
            wants_probe: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            fleet_calls: AtomicU64::new(0),
            fleet_failures: AtomicU64::new(0),
            wake: Notify::new(),
        });
        let task = Arc::new(spawn("shared breaker", sync(fleet.clone(), state.clone()))?);
        #[cfg(feature = "observe")]
        fleet.register(
            &state.name,
            SharedBreakerLayer {
                gate: state.clone(),
                classifier: DefaultClassifier,
                _task: task.clone(),
            },
        );
        Ok(SharedBreakerLayer {
            gate: state,
            classifier: self.classifier,
            _task: task,
        })
    }
}

/// Shares a breaker with the fleet: `breaker.shared(&fleet)` starts a
/// [`SharedBreakerBuilder`] named as the breaker.
///
/// ```no_run
/// use bulwark::breaker::{Breaker, CircuitBreakerLayer};
/// use bulwark::fleet::{Fleet, ShareBreaker};
/// use tower::ServiceBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fleet = Fleet::new("redis://127.0.0.1:6379").unwrap();
/// let breaker = Breaker::builder().name("inventory").build().unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(breaker.shared(&fleet).minimum_calls(50).build().unwrap())
///     .layer(CircuitBreakerLayer::new(breaker))
///     .service_fn(|req: u32| async move { Ok::<_, bulwark::BoxError>(req) });
/// # drop(svc);
/// # }
/// ```
pub trait ShareBreaker {
    /// A shared gate for this breaker, keyed by its name (`"breaker"` when
    /// it has none).
    fn shared(&self, fleet: &Fleet) -> SharedBreakerBuilder;
}

impl ShareBreaker for bulwark_breaker::Breaker {
    fn shared(&self, fleet: &Fleet) -> SharedBreakerBuilder {
        SharedBreakerLayer::builder(fleet, self.name().unwrap_or("breaker"))
    }
}

/// Buckets in the fleet's window.
const BUCKETS: u64 = 10;

struct Settings {
    bucket_ms: u64,
    minimum_calls: u32,
    permille: u64,
    open_ms: u64,
    lease_ms: u64,
}

struct Gate {
    name: Arc<str>,
    link: Link,
    keys: [String; 5],
    settings: Settings,
    base: TimeBase,
    state: AtomicU8,
    /// Local nanoseconds since `base` until which the fleet is open.
    open_until: AtomicU64,
    generation: AtomicU64,
    /// This instance holds the probe lease.
    probing: AtomicBool,
    probe_in_flight: AtomicBool,
    /// 0 none, 1 the probe succeeded, 2 it failed: sent on the next sync.
    probe_result: AtomicU8,
    wants_probe: AtomicBool,
    /// Outcomes since the last publish.
    calls: AtomicU64,
    failures: AtomicU64,
    fleet_calls: AtomicU64,
    fleet_failures: AtomicU64,
    wake: Notify,
}

/// A circuit breaker gate that the whole fleet shares, in front of a local
/// breaker (or any service).
///
/// Each instance counts its outcomes (by the shared [`Classify`]) in two
/// atomics and, every sync interval, publishes them with one Lua script
/// per breaker (one round trip) that also returns the fleet's state. The
/// fleet trips when its failure rate over the window crosses the
/// threshold; the trip is published as "open for D, generation G" (a
/// relative expiry on Redis, immune to clock skew), so every instance
/// refuses calls from its next sync on. When the open time is over, one
/// instance at a time holds the probe lease and sends one call: its
/// success closes the fleet (a new generation), its failure opens it again.
///
/// An instance with no calls through a closed breaker syncs it only every
/// fifth interval, so Redis's load follows the breakers in use.
///
/// On the request path the gate reads two atomics; it never waits on
/// Redis. Without Redis (failed, or slower than the fleet's operation
/// timeout) it lets every call through to the local breaker, which stays
/// authoritative, and announces it
/// ([`FleetEvent::FellBack`](crate::FleetEvent::FellBack)); an open time it
/// already knew is still kept.
///
/// A refused call gets [`CircuitOpen`] (named, with the time until the
/// fleet probes again when known), ready at once.
pub struct SharedBreakerLayer<C = DefaultClassifier> {
    gate: Arc<Gate>,
    classifier: C,
    _task: Arc<TaskGuard>,
}

impl SharedBreakerLayer {
    /// A builder for the shared breaker `name` (its keys are
    /// `{PREFIX:b:NAME}:w|open|half|probe|gen`).
    pub fn builder(fleet: &Fleet, name: impl Into<Arc<str>>) -> SharedBreakerBuilder {
        SharedBreakerBuilder {
            fleet: fleet.clone(),
            name: name.into(),
            failure_rate: 0.5,
            minimum_calls: 100,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            probe_lease: Duration::from_secs(1),
            classifier: DefaultClassifier,
        }
    }
}

impl<C> SharedBreakerLayer<C> {
    /// The same gate (its state, its sync task), judging outcomes with
    /// `classifier`: e.g. the one registered in a `Registry` (with
    /// [`DefaultClassifier`]) put in front of an HTTP stack with its
    /// status classifier.
    pub fn classifier<C2>(self, classifier: C2) -> SharedBreakerLayer<C2> {
        SharedBreakerLayer {
            gate: self.gate,
            classifier,
            _task: self._task,
        }
    }

    /// The breaker's name (its keys' name).
    pub fn name(&self) -> &str {
        &self.gate.name
    }

    /// What it knows of the fleet now.
    pub fn snapshot(&self) -> SharedBreakerSnapshot {
        let g = &*self.gate;
        SharedBreakerSnapshot {
            name: g.name.clone(),
            state: match g.state.load(Ordering::Acquire) {
                OPEN => FleetState::Open,
                HALF_OPEN => FleetState::HalfOpen,
                _ => FleetState::Closed,
            },
            generation: g.generation.load(Ordering::Acquire),
            fleet_calls: g.fleet_calls.load(Ordering::Relaxed),
            fleet_failures: g.fleet_failures.load(Ordering::Relaxed),
            degraded: g.link.is_degraded(),
            probing: g.probing.load(Ordering::Relaxed),
        }
    }
}

#[cfg(feature = "observe")]
impl<C: Send + Sync + 'static> bulwark_observe::FleetView for SharedBreakerLayer<C> {
    fn fleet_health(&self) -> bulwark_observe::health::FleetHealth {
        let s = self.snapshot();
        self.gate.link.health(
            &s.name,
            bulwark_observe::health::FleetDetail::Breaker {
                state: s.state.as_str(),
                generation: s.generation,
                calls: s.fleet_calls,
                failures: s.fleet_failures,
                probing: s.probing,
            },
        )
    }
}

impl FleetState {
    /// `closed`, `open` or `half_open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FleetState::Closed => "closed",
            FleetState::Open => "open",
            FleetState::HalfOpen => "half_open",
        }
    }
}

impl<C: Clone> Clone for SharedBreakerLayer<C> {
    fn clone(&self) -> Self {
        SharedBreakerLayer {
            gate: self.gate.clone(),
            classifier: self.classifier.clone(),
            _task: self._task.clone(),
        }
    }
}

impl<C> fmt::Debug for SharedBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreakerLayer")
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for SharedBreakerLayer<C> {
    type Service = SharedBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        SharedBreaker {
            inner,
            gate: self.gate.clone(),
            classifier: self.classifier.clone(),
            _task: self._task.clone(),
        }
    }
}

/// The service of a [`SharedBreakerLayer`].
pub struct SharedBreaker<S, C = DefaultClassifier> {
    inner: S,
    gate: Arc<Gate>,
    classifier: C,
    _task: Arc<TaskGuard>,
}

impl<S: Clone, C: Clone> Clone for SharedBreaker<S, C> {
    fn clone(&self) -> Self {
        SharedBreaker {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
            classifier: self.classifier.clone(),
            _task: self._task.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for SharedBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("inner", &self.inner)
            .field("name", &self.gate.name)
            .finish_non_exhaustive()
    }
}

impl<S, C> SharedBreaker<S, C> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What the gate decided for one call.
enum Pass {
    Counted,
    Probe,
}

impl Gate {
    #[inline]
    fn admit(&self) -> Result<Pass, CircuitOpen> {
        let state = self.state.load(Ordering::Acquire);
        if state == CLOSED {
            return Ok(Pass::Counted);
        }
        self.admit_slow(state)
    }

    #[cold]
    fn admit_slow(&self, state: u8) -> Result<Pass, CircuitOpen> {
        let now = self.base.now_nanos();
        let until = self.open_until.load(Ordering::Acquire);
        if state == OPEN && now < until {
            return Err(CircuitOpen::new(Some(Duration::from_nanos(until - now)))
                .with_name(self.name.clone()));
        }
        if self.link.is_degraded() {
            // Without Redis the local breaker decides.
            return Ok(Pass::Counted);
        }
        // Half-open (or open past its time, before the next sync says so).
        if self.probing.load(Ordering::Acquire)
            && self
                .probe_in_flight
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Ok(Pass::Probe);
        }
        self.wants_probe.store(true, Ordering::Release);
        Err(CircuitOpen::new(None).with_name(self.name.clone()))
    }

    #[inline]
    fn record(&self, pass: &Pass, outcome: Outcome) {
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            _ => {
                if let Pass::Probe = pass {
                    self.probe_in_flight.store(false, Ordering::Release);
                }
                return;
            }
        };
        match pass {
            Pass::Counted => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                if failed {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            Pass::Probe => {
                // One probe per lease: the next sync reports it.
                self.probing.store(false, Ordering::Release);
                self.probe_result
                    .store(if failed { 2 } else { 1 }, Ordering::Release);
                self.probe_in_flight.store(false, Ordering::Release);
                self.wake.notify_one();
            }
        }
    }
}

impl<S, C, Req> Service<Req> for SharedBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.gate.admit() {
            Ok(pass) => ResponseFuture {
                kind: Kind::Called {
                    future: self.inner.call(req),
                    tracker: Some(Tracker {
                        gate: self.gate.clone(),
                        pass,
                    }),
                    classifier: self.classifier.clone(),
                },
            },
            Err(open) => ResponseFuture {
                kind: Kind::Refused { error: Some(open) },
            },
        }
    }
}

/// Records the outcome of a call let through; a probe dropped before it
/// ended gives the lease's probe slot back.
struct Tracker {
    gate: Arc<Gate>,
    pass: Pass,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Pass::Probe = self.pass {
            self.gate.probe_in_flight.store(false, Ordering::Release);
        }
    }
}

pin_project! {
    /// The response of a [`SharedBreaker`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called { #[pin] future: F, tracker: Option<Tracker>, classifier: C },
        Refused { error: Option<CircuitOpen> },
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, T, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                tracker,
                classifier,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(tracker) = tracker.take() {
                    tracker
                        .gate
                        .record(&tracker.pass, classifier.classify(&result));
                }
                Poll::Ready(result)
            }
            KindProj::Refused { error } => Poll::Ready(Err(match error.take() {
                Some(open) => Box::new(open),
                None => "shared breaker response polled after completion".into(),
            })),
        }
    }
}

async fn sync(fleet: Arc<FleetInner>, g: Arc<Gate>) {
    let script = redis::Script::new(SYNC_SCRIPT);
    let mut fell_back = false;
    let mut idle = 0u32;
    loop {
        tokio::select! {
            () = tokio::time::sleep(fleet.sync_interval) => {}
            () = g.wake.notified() => {}
        }
        // An instance with nothing to say about a closed breaker syncs
        // every IDLE_EVERY intervals only (it learns of a trip within one
        // interval of its next call): Redis's load follows the breakers
        // in use, not all the breakers of all the instances.
        let quiet = g.calls.load(Ordering::Acquire) == 0
            && g.probe_result.load(Ordering::Acquire) == 0
            && !g.wants_probe.load(Ordering::Acquire)
            && g.state.load(Ordering::Acquire) == CLOSED
            && !g.link.is_degraded();
        if quiet && idle + 1 < IDLE_EVERY {
            idle += 1;
            continue;
        }
        idle = 0;
        let calls = g.calls.swap(0, Ordering::AcqRel);
        // `failures` is read after `calls`: a failure counted in between is
        // published with the next batch.
        let failures = g.failures.swap(0, Ordering::AcqRel);
        let result = g.probe_result.swap(0, Ordering::AcqRel);
        let want_probe = g.wants_probe.swap(false, Ordering::AcqRel);
        let s = &g.settings;
        let answer = fleet
            .run(|mut conn| {
                let mut call = script.prepare_invoke();
                for key in &g.keys {
                    call.key(key);
                }
                call.arg(calls)
                    .arg(failures)
                    .arg(s.bucket_ms)
                    .arg(s.minimum_calls)
                    .arg(s.permille)
                    .arg(s.open_ms)
                    .arg(&*fleet.instance)
                    .arg(if want_probe { "1" } else { "0" })
                    .arg(result)
                    .arg(s.lease_ms)
                    .arg(BUCKETS);
                async move {
                    call.invoke_async::<(u8, u64, u64, u64, u64, u8)>(&mut conn)
                        .await
                }
            })
            .await;
        match answer {
            Ok((state, open_ms, generation, fleet_calls, fleet_failures, probe)) => {
                g.link.ok(&fleet, &mut fell_back);
                let before = g.generation.swap(generation, Ordering::AcqRel);
                let was = g.state.swap(state, Ordering::AcqRel);
                if state == OPEN {
                    let until = g.base.now_nanos().saturating_add(open_ms * 1_000_000);
                    g.open_until.store(until, Ordering::Release);
                }
                g.probing.store(probe == 1, Ordering::Release);
                g.fleet_calls.store(fleet_calls, Ordering::Relaxed);
                g.fleet_failures.store(fleet_failures, Ordering::Relaxed);
                if was != state || before != generation {
                    announce(&fleet, &g, state, generation, open_ms);
                }
            }
            Err(reason) => {
                // Give back what was not published: it is counted next time.
                g.calls.fetch_add(calls, Ordering::AcqRel);
                g.failures.fetch_add(failures, Ordering::AcqRel);
                if result != 0 {
                    let _ = g.probe_result.compare_exchange(
                        0,
                        result,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                g.probing.store(false, Ordering::Release);
                if g.state.load(Ordering::Acquire) == HALF_OPEN {
                    g.state.store(CLOSED, Ordering::Release);
                }
                if g.state.load(Ordering::Acquire) == OPEN
                    && g.base.now_nanos() >= g.open_until.load(Ordering::Acquire)
                {
                    g.state.store(CLOSED, Ordering::Release);
                }
                g.link.failed(&fleet, &mut fell_back, reason);
            }
        }
    }
}

#[cold]
fn announce(fleet: &FleetInner, g: &Gate, state: u8, generation: u64, open_ms: u64) {
    let layer = || g.link_name();
    match state {
        OPEN => {
            tracing::warn!(target: "bulwark::fleet", breaker = &*g.name, generation, open_ms, "the fleet's breaker is open");
            fleet.emit(|| FleetEvent::BreakerOpened {
                layer: layer(),
                generation,
                open_for: Duration::from_millis(open_ms),
            });
        }
        HALF_OPEN => fleet.emit(|| FleetEvent::BreakerHalfOpen {
            layer: layer(),
            generation,
        }),
        _ => {
            tracing::info!(target: "bulwark::fleet", breaker = &*g.name, generation, "the fleet's breaker is closed");
            fleet.emit(|| FleetEvent::BreakerClosed {
                layer: layer(),
                generation,
            });
        }
    }
}

impl Gate {
    fn link_name(&self) -> Arc<str> {
        format!("breaker:{}", self.name).into()
    }
}
