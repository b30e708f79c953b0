//! The simulated upstream: a `tower::Service` that follows a scenario.
//!
//! Each host of the [`Upstream`] serves its requests by *processor sharing*:
//! an answer needs an amount of work (its latency without contention, drawn
//! from the phase's distribution); while at most `capacity` requests are in
//! progress each gets a full share, and beyond that every request in
//! progress slows in proportion (`capacity / in progress`). Throughput then
//! stays at `capacity / mean latency` while latency grows with the queue,
//! which is how retry storms and unbounded queues hurt a real server. A
//! request whose caller gives up (a timeout, a dropped future) leaves at
//! once and frees its share.
//!
//! Fast errors and rate-limited answers come back after a fixed time and use
//! no capacity; black-holed requests are never answered and use no capacity
//! either (the packets went nowhere).
//!
//! Every random draw comes from one generator seeded by the run, so a run
//! repeats exactly.

use crate::scenario::{Behavior, Scenario};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tower_service::Service;

/// One request of the simulated load. Retries of a request carry the same
/// `id`, which is how the upstream counts attempts per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SimRequest {
    /// Which request of the run (0, 1, 2, ...).
    pub id: u64,
    /// Which host it goes to.
    pub host: u32,
    /// Whether it may be sent more than once.
    pub idempotent: bool,
}

/// A successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimResponse {
    /// The request it answers.
    pub id: u64,
}

/// An answer that is not a success: a failure, or "retry after".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    retry_after: Option<Duration>,
}

impl UpstreamError {
    /// The upstream failed (a `5xx`, a reset connection).
    pub const fn failed() -> Self {
        UpstreamError { retry_after: None }
    }

    /// The upstream asked to be retried after `after` (a `429` with
    /// `Retry-After`).
    pub const fn rate_limited(after: Duration) -> Self {
        UpstreamError {
            retry_after: Some(after),
        }
    }

    /// What a rate-limited answer asked for; `None` for a failure.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether this is a rate-limited answer.
    pub const fn is_rate_limited(&self) -> bool {
        self.retry_after.is_some()
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            None => f.write_str("upstream failed"),
            Some(d) => write!(f, "upstream rate limited: retry after {d:?}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// Counters are kept per slot of this length.
pub(crate) const SLOT: Duration = Duration::from_millis(100);

/// The simulated upstream (see [the model](crate#the-model)). A cheap clone:
/// every clone is the same upstream.
#[derive(Clone)]
pub struct Upstream {
    shared: Arc<Shared>,
}

struct Shared {
    scenario: Arc<Scenario>,
    /// The scenario's phase boundaries, where capacity may change.
    boundaries: Vec<Duration>,
    start: Instant,
    state: Mutex<State>,
    hosts: Vec<HostQueue>,
}

struct State {
    rng: fastrand::Rng,
    /// Attempts received per request id.
    attempts: Vec<u32>,
    /// Until when a request was asked to wait (after a rate-limited answer).
    wait_until: Vec<Option<Duration>>,
    /// Attempts that came before the answer's retry-after had passed.
    early_retries: u64,
    in_flight: u64,
    peak_in_flight: u64,
    /// Requests received, per slot.
    received: Vec<u32>,
    /// Successful answers, per slot.
    served: Vec<u32>,
}

/// One host's processor-sharing queue.
struct HostQueue {
    ps: Mutex<Ps>,
    wake: Notify,
}

struct Ps {
    /// Work done for each request in progress since the host started, in
    /// seconds: every request in progress has received the same.
    attained: f64,
    /// When `attained` was last brought up to date, from the start.
    last: Duration,
    capacity: f64,
    /// The next phase boundary to cross, as an index into `boundaries`.
    next_boundary: usize,
    /// Requests in progress by the attained work at which they finish.
    jobs: BTreeMap<(u64, u64), oneshot::Sender<()>>,
    seq: u64,
    driver: bool,
}

/// What an arriving request will get.
enum Plan {
    Never,
    After(Duration, Result<(), UpstreamError>),
    Work(f64, Result<(), UpstreamError>),
}

/// What the upstream counted over a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) attempts: Vec<u32>,
    pub(crate) early_retries: u64,
    pub(crate) peak_in_flight: u64,
    pub(crate) received: Vec<u32>,
    pub(crate) served: Vec<u32>,
}

impl Upstream {
    /// An upstream that follows `scenario`, with its clock started now and
    /// its random draws seeded by `seed`. Must be made inside a tokio
    /// runtime (the simulator's runs are).
    pub fn new(scenario: Arc<Scenario>, seed: u64) -> Self {
        let slots = slot_of(scenario.duration + scenario.deadline) + 2;
        let hosts = (0..scenario.hosts)
            .map(|h| HostQueue {
                ps: Mutex::new(Ps {
                    attained: 0.0,
                    last: Duration::ZERO,
                    capacity: f64::from(scenario.behavior_at(h, Duration::ZERO).capacity),
                    next_boundary: 0,
                    jobs: BTreeMap::new(),
                    seq: 0,
                    driver: false,
                }),
                wake: Notify::new(),
            })
            .collect();
        Upstream {
            shared: Arc::new(Shared {
                start: Instant::now(),
                state: Mutex::new(State {
                    rng: fastrand::Rng::with_seed(seed),
                    attempts: Vec::new(),
                    wait_until: Vec::new(),
                    early_retries: 0,
                    in_flight: 0,
                    peak_in_flight: 0,
                    received: vec![0; slots],
                    served: vec![0; slots],
                }),
                hosts,
                boundaries: scenario.boundaries(),
                scenario,
            }),
        }
    }

    /// The scenario it follows.
    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    /// Time since the upstream was made.
    pub fn elapsed(&self) -> Duration {
        self.shared.start.elapsed()
    }

    /// Requests in progress now (black-holed ones included).
    pub fn in_flight(&self) -> u64 {
        self.shared.state.lock().in_flight
    }

    /// Attempts received for request `id` so far.
    pub fn attempts(&self, id: u64) -> u32 {
        let state = self.shared.state.lock();
        usize::try_from(id)
            .ok()
            .and_then(|i| state.attempts.get(i).copied())
            .unwrap_or(0)
    }

    pub(crate) fn tally(&self) -> Tally {
        let s = self.shared.state.lock();
        Tally {
            attempts: s.attempts.clone(),
            early_retries: s.early_retries,
            peak_in_flight: s.peak_in_flight,
            received: s.received.clone(),
            served: s.served.clone(),
        }
    }
}

pub(crate) fn slot_of(t: Duration) -> usize {
    (t.as_nanos() / SLOT.as_nanos()) as usize
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Counts the arrival and decides the answer.
    fn arrive(&self, req: &SimRequest) -> Plan {
        let t = self.now();
        let scenario = &*self.scenario;
        let host = req.host.min(scenario.hosts - 1);
        let b = scenario.behavior_at(host, t);
        let mut s = self.state.lock();
        let i = usize::try_from(req.id).unwrap_or(usize::MAX);
        if i < (1 << 28) {
            if s.attempts.len() <= i {
                s.attempts.resize(i + 1, 0);
                s.wait_until.resize(i + 1, None);
            }
            s.attempts[i] += 1;
            if s.wait_until[i].is_some_and(|until| t < until) {
                s.early_retries += 1;
            }
            s.wait_until[i] = None;
        }
        s.in_flight += 1;
        s.peak_in_flight = s.peak_in_flight.max(s.in_flight);
        let slot = slot_of(t).min(s.received.len() - 1);
        s.received[slot] += 1;
        let plan = plan(&mut s.rng, &b);
        if let (Plan::After(d, Err(e)), true) = (&plan, i < (1 << 28)) {
            if let Some(after) = e.retry_after() {
                s.wait_until[i] = Some(t + *d + after);
            }
        }
        plan
    }

    fn leave(&self, served: bool) {
        let t = self.now();
        let mut s = self.state.lock();
        s.in_flight -= 1;
        if served {
            let slot = slot_of(t).min(s.served.len() - 1);
            s.served[slot] += 1;
        }
    }
}

fn plan(rng: &mut fastrand::Rng, b: &Behavior) -> Plan {
    if b.black_hole > 0.0 && rng.f64() < b.black_hole {
        return Plan::Never;
    }
    if let Some(rl) = b.rate_limited {
        if rng.f64() < rl.share {
            return Plan::After(
                Duration::from_millis(1),
                Err(UpstreamError::rate_limited(rl.retry_after)),
            );
        }
    }
    let fails = b.errors > 0.0 && rng.f64() < b.errors;
    let result = if fails {
        Err(UpstreamError::failed())
    } else {
        Ok(())
    };
    if let (true, Some(after)) = (fails, b.error_latency) {
        return Plan::After(after, result);
    }
    let work = match b.slow {
        Some(slow) if rng.f64() < slow.share => slow.latency.as_secs_f64(),
        _ => lognormal(rng, b.latency.median.as_secs_f64(), b.latency.spread),
    };
    Plan::Work(work.clamp(1e-6, 86_400.0), result)
}

/// A lognormal draw by the Box-Muller transform.
fn lognormal(rng: &mut fastrand::Rng, median: f64, spread: f64) -> f64 {
    if spread == 0.0 {
        return median;
    }
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    median * (spread * z).exp()
}

impl Ps {
    fn rate(&self) -> f64 {
        let n = self.jobs.len() as f64;
        if n <= self.capacity {
            1.0
        } else {
            self.capacity / n
        }
    }

    /// Brings the attained work up to `now`, crossing phase boundaries
    /// (where the capacity may change) on the way.
    fn advance(&mut self, now: Duration, scenario: &Scenario, host: u32, boundaries: &[Duration]) {
        while self.last < now {
            let boundary = boundaries.get(self.next_boundary).copied();
            let until = match boundary {
                Some(b) if b <= now => b,
                _ => now,
            };
            if until > self.last {
                self.attained += (until - self.last).as_secs_f64() * self.rate();
                self.last = until;
            }
            if boundary == Some(until) {
                self.capacity = f64::from(scenario.behavior_at(host, until).capacity);
                self.next_boundary += 1;
            }
        }
        // Boundaries at or before the start of the run.
        while boundaries
            .get(self.next_boundary)
            .is_some_and(|b| *b <= self.last)
        {
            self.capacity = f64::from(scenario.behavior_at(host, self.last).capacity);
            self.next_boundary += 1;
        }
    }

    /// Completes every job whose work is done; returns when the next one
    /// will be, if the rate stays as it is.
    fn complete(&mut self, now: Duration) -> Option<Duration> {
        while let Some(entry) = self.jobs.first_entry() {
            let finish = f64::from_bits(entry.key().0);
            if finish > self.attained + 1e-9 {
                let left = (finish - self.attained) / self.rate();
                return Some(now + Duration::from_secs_f64(left.min(86_400.0)));
            }
            let _ = entry.remove().send(());
        }
        None
    }
}

/// Takes a processor-sharing job out of its queue when the request leaves
/// before its answer (its caller gave up).
struct JobGuard {
    shared: Arc<Shared>,
    host: u32,
    key: (u64, u64),
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let shared = &self.shared;
        let q = &shared.hosts[self.host as usize];
        let mut ps = q.ps.lock();
        ps.advance(
            shared.now(),
            &shared.scenario,
            self.host,
            &shared.boundaries,
        );
        if ps.jobs.remove(&self.key).is_some() {
            drop(ps);
            q.wake.notify_one();
        }
    }
}

/// Counts a request out when its future ends, whatever the reason.
struct InFlight {
    shared: Arc<Shared>,
    served: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.leave(self.served);
    }
}

async fn serve(shared: Arc<Shared>, req: SimRequest) -> Result<SimResponse, UpstreamError> {
    let plan = shared.arrive(&req);
    let mut guard = InFlight {
        shared: shared.clone(),
        served: false,
    };
    let result = match plan {
        Plan::Never => std::future::pending().await,
        Plan::After(after, result) => {
            tokio::time::sleep(after).await;
            result
        }
        Plan::Work(work, result) => {
            let host = req.host.min(shared.scenario.hosts - 1);
            let (rx, _job) = enqueue(&shared, host, work);
            // The sender is only dropped once the work is done.
            let _ = rx.await;
            result
        }
    };
    guard.served = result.is_ok();
    result.map(|()| SimResponse { id: req.id })
}

fn enqueue(shared: &Arc<Shared>, host: u32, work: f64) -> (oneshot::Receiver<()>, JobGuard) {
    let q = &shared.hosts[host as usize];
    let boundaries = &shared.boundaries;
    let (tx, rx) = oneshot::channel();
    let start_driver;
    let key;
    {
        let mut ps = q.ps.lock();
        ps.advance(shared.now(), &shared.scenario, host, boundaries);
        let finish = ps.attained + work;
        ps.seq += 1;
        key = (finish.to_bits(), ps.seq);
        ps.jobs.insert(key, tx);
        start_driver = !std::mem::replace(&mut ps.driver, true);
    }
    if start_driver {
        tokio::spawn(drive(shared.clone(), host));
    } else {
        q.wake.notify_one();
    }
    let guard = JobGuard {
        shared: shared.clone(),
        host,
        key,
    };
    (rx, guard)
}

/// Completes one host's jobs as their work is done; woken early when a job
/// arrives or leaves (the rate changes) and at phase boundaries.
async fn drive(shared: Arc<Shared>, host: u32) {
    let q = &shared.hosts[host as usize];
    let boundaries = &shared.boundaries;
    loop {
        let wake_at = {
            let mut ps = q.ps.lock();
            let now = shared.now();
            ps.advance(now, &shared.scenario, host, boundaries);
            let next_job = ps.complete(now);
            let next_boundary = boundaries.get(ps.next_boundary).copied();
            match (next_job, next_boundary) {
                (Some(j), Some(b)) => Some(j.min(b)),
                (Some(j), None) => Some(j),
                // Nothing in progress: only an arrival changes anything.
                (None, _) => None,
            }
        };
        match wake_at {
            Some(at) => {
                tokio::select! {
                    biased;
                    () = q.wake.notified() => {}
                    () = tokio::time::sleep_until(shared.start + at) => {}
                }
            }
            None => q.wake.notified().await,
        }
    }
}

impl Service<SimRequest> for Upstream {
    type Response = SimResponse;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<SimResponse, UpstreamError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SimRequest) -> Self::Future {
        Box::pin(serve(self.shared.clone(), req))
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("scenario", &self.shared.scenario.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn scenario(capacity: u32, spread: f64) -> Arc<Scenario> {
        let mut s = Scenario::named("brownout").unwrap();
        s.phases.clear();
        s.healthy.capacity = capacity;
        s.healthy.latency.spread = spread;
        Arc::new(s)
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn under_capacity_answers_take_their_latency() {
        let up = Upstream::new(scenario(10, 0.0), 1);
        let t0 = Instant::now();
        let r = up
            .clone()
            .oneshot(SimRequest {
                id: 0,
                host: 0,
                idempotent: true,
            })
            .await;
        assert_eq!(r, Ok(SimResponse { id: 0 }));
        assert_eq!(t0.elapsed(), Duration::from_millis(20));
        assert_eq!(up.attempts(0), 1);
        assert_eq!(up.in_flight(), 0);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn beyond_capacity_answers_share_the_host() {
        // 4 requests at once on a host of capacity 2: each gets half the
        // host, so 20 ms of work takes 40 ms.
        let up = Upstream::new(scenario(2, 0.0), 1);
        let t0 = Instant::now();
        let calls = (0..4).map(|id| {
            up.clone().oneshot(SimRequest {
                id,
                host: 0,
                idempotent: true,
            })
        });
        let results = futures_join(calls).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(t0.elapsed(), Duration::from_millis(40));
        assert_eq!(up.tally().peak_in_flight, 4);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_cancelled_request_frees_its_share() {
        let up = Upstream::new(scenario(1, 0.0), 1);
        let t0 = Instant::now();
        let a = up.clone().oneshot(SimRequest {
            id: 0,
            host: 0,
            idempotent: true,
        });
        let b = tokio::time::timeout(
            Duration::from_millis(10),
            up.clone().oneshot(SimRequest {
                id: 1,
                host: 0,
                idempotent: true,
            }),
        );
        let (a, b) = tokio::join!(a, b);
        assert!(b.is_err());
        assert!(a.is_ok());
        // 10 ms at half speed (5 ms of work), then 15 ms alone.
        assert_eq!(t0.elapsed(), Duration::from_millis(25));
        assert_eq!(up.in_flight(), 0);
    }

    async fn futures_join<F: Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let handles: Vec<_> = futs.map(Box::pin).collect();
        let mut out = Vec::new();
        // Poll them together: spawn-free join.
        let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
        let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut done = true;
            for (i, f) in pending.iter_mut().enumerate() {
                if let Some(fut) = f {
                    match fut.as_mut().poll(cx) {
                        Poll::Ready(v) => {
                            results[i] = Some(v);
                            *f = None;
                        }
                        Poll::Pending => done = false,
                    }
                }
            }
            if done {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        out.extend(
            results
                .into_iter()
                .map(|r| r.expect("every future completed")),
        );
        out
    }
}
