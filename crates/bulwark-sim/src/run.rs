//! Running stacks through scenarios.

use crate::http::{HttpAdapter, HttpUpstream, SimBody};
use crate::metrics::{compute, series, FailureKind, Record};
use crate::report::{Report, Run, ScenarioResult};
use crate::scenario::Scenario;
use crate::upstream::{SimRequest, SimResponse, Upstream};
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::{Breaker, State};
use bulwark_core::error::ConfigError;
use bulwark_core::BoxError;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::ServiceExt;
use tower_service::Service;

/// A stack as the runner drives it: boxed once, at the edge.
pub type SimService = BoxCloneService<SimRequest, SimResponse, BoxError>;

type Factory = Arc<dyn Fn(Upstream, &mut StackContext) -> SimService + Send + Sync>;
type Watcher = Box<dyn Fn() -> f64 + Send>;

/// A named way to build a stack around the simulated upstream.
///
/// The closure is called once per run, inside the run's runtime, with a
/// fresh [`Upstream`]; whatever it returns is called once per request of
/// the load (a clone per request, so any `Clone` tower service works).
///
/// ```
/// use bulwark::sim::{Simulation, Stack, Scenario};
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// let timeout = Stack::new("timeout 500 ms", |upstream, _ctx| {
///     ServiceBuilder::new()
///         .timeout(Duration::from_millis(500))
///         .service(upstream)
/// });
/// let mut scenario = Scenario::named("latency-spike").unwrap();
/// scenario.duration = Duration::from_secs(30); // keep the doctest short
/// let report = Simulation::new().scenario(scenario).stack(timeout).run();
/// assert!(report.results[0].runs[0].metrics.goodput > 0.9);
/// ```
#[derive(Clone)]
pub struct Stack {
    name: String,
    make: Factory,
}

impl Stack {
    /// A stack over [`SimRequest`]s.
    pub fn new<F, S>(name: impl Into<String>, make: F) -> Self
    where
        F: Fn(Upstream, &mut StackContext) -> S + Send + Sync + 'static,
        S: Service<SimRequest, Response = SimResponse> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Stack {
            name: name.into(),
            make: Arc::new(move |upstream, ctx| {
                BoxCloneService::new(make(upstream, ctx).map_err(Into::into))
            }),
        }
    }

    /// A stack over HTTP: it gets an [`HttpUpstream`] and takes
    /// `http::Request`s (see [`http`](crate::http) for how requests and
    /// answers map).
    pub fn http<F, S, B>(name: impl Into<String>, make: F) -> Self
    where
        F: Fn(HttpUpstream, &mut StackContext) -> S + Send + Sync + 'static,
        S: Service<http::Request<SimBody>, Response = http::Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        Stack {
            name: name.into(),
            make: Arc::new(move |upstream, ctx| {
                BoxCloneService::new(HttpAdapter::new(make(HttpUpstream::new(upstream), ctx)))
            }),
        }
    }

    /// The stack's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack").field("name", &self.name).finish()
    }
}

/// What a stack's builder may use and tell the runner.
pub struct StackContext {
    seed: u64,
    scenario: Arc<Scenario>,
    watched: Vec<(String, Watcher)>,
}

impl StackContext {
    /// A seed for the stack's own random draws (jitter), the same for every
    /// stack of a run, so that runs repeat exactly.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The scenario being run (its deadline, say).
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Samples `value` every 250 ms of the run, for the pictures.
    pub fn watch(&mut self, name: impl Into<String>, value: impl Fn() -> f64 + Send + 'static) {
        self.watched.push((name.into(), Box::new(value)));
    }

    /// Samples a breaker's state: 0 closed, 0.5 half-open, 1 open.
    pub fn watch_breaker(&mut self, name: impl Into<String>, breaker: &Breaker) {
        let breaker = breaker.clone();
        self.watch(name, move || breaker_level(breaker.state()));
    }

    /// Samples the worst state of a set of keyed breakers (one per host,
    /// say), as [`watch_breaker`](Self::watch_breaker) does for one.
    pub fn watch_keyed_breakers<K>(&mut self, name: impl Into<String>, breakers: &KeyedBreakers<K>)
    where
        K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        let breakers = breakers.clone();
        self.watch(name, move || {
            breakers
                .entries()
                .iter()
                .map(|(_, b)| breaker_level(b.state()))
                .fold(0.0, f64::max)
        });
    }
}

/// A breaker state as a level for pictures: 0 closed, 0.5 half-open, 1
/// open.
pub fn breaker_level(state: State) -> f64 {
    match state {
        State::Open | State::ForcedOpen => 1.0,
        State::HalfOpen => 0.5,
        _ => 0.0,
    }
}

impl fmt::Debug for StackContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackContext")
            .field("seed", &self.seed)
            .field("scenario", &self.scenario.name)
            .finish_non_exhaustive()
    }
}

/// Where a simulation is, for a progress line.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Progress {
    /// Runs finished.
    pub done: usize,
    /// Runs in all.
    pub total: usize,
    /// The scenario of the run that just finished.
    pub scenario: String,
    /// Its stack.
    pub stack: String,
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Runs every stack through every scenario, each run in its own
/// paused-time runtime, and reports what each did.
///
/// Every stack of a scenario sees exactly the same load (the same arrival
/// times, hosts and idempotency) and the same seed; the upstream's draws
/// follow the same seeded sequence, so differences come from the stacks.
/// Runs are independent and can use several threads; the report does not
/// depend on how many.
#[derive(Clone)]
pub struct Simulation {
    scenarios: Vec<Scenario>,
    stacks: Vec<Stack>,
    seed: u64,
    threads: usize,
    progress: Option<ProgressFn>,
}

impl Default for Simulation {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulation {
    /// No scenarios and no stacks yet; seed 1; one thread.
    pub fn new() -> Self {
        Simulation {
            scenarios: Vec::new(),
            stacks: Vec::new(),
            seed: 1,
            threads: 1,
            progress: None,
        }
    }

    /// Adds a scenario.
    pub fn scenario(mut self, scenario: Scenario) -> Self {
        self.scenarios.push(scenario);
        self
    }

    /// Adds scenarios.
    pub fn scenarios(mut self, scenarios: impl IntoIterator<Item = Scenario>) -> Self {
        self.scenarios.extend(scenarios);
        self
    }

    /// Adds a stack.
    pub fn stack(mut self, stack: Stack) -> Self {
        self.stacks.push(stack);
        self
    }

    /// Adds stacks.
    pub fn stacks(mut self, stacks: impl IntoIterator<Item = Stack>) -> Self {
        self.stacks.extend(stacks);
        self
    }

    /// Seeds every random draw of the load, the upstream and (through
    /// [`StackContext::seed`]) the stacks.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Runs up to `n` runs at once, on threads of their own.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Called after every run.
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Checks every scenario (see [`Scenario::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.scenarios.iter().try_for_each(Scenario::validate)
    }

    /// Runs everything. Scenarios that do not
    /// [`validate`](Scenario::validate) are left out of the report; check
    /// first with [`validate`](Self::validate) to see why.
    pub fn run(&self) -> Report {
        let scenarios: Vec<Arc<Scenario>> = self
            .scenarios
            .iter()
            .filter(|s| s.validate().is_ok())
            .cloned()
            .map(Arc::new)
            .collect();
        let jobs: Vec<(usize, usize)> = (0..scenarios.len())
            .flat_map(|s| (0..self.stacks.len()).map(move |k| (s, k)))
            .collect();
        let results: Vec<Mutex<Option<Run>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(s, k)) = jobs.get(i) else { break };
            let run = run_one(&scenarios[s], &self.stacks[k], self.seed);
            *results[i].lock() = Some(run);
            let done = done.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(progress) = &self.progress {
                progress(&Progress {
                    done,
                    total: jobs.len(),
                    scenario: scenarios[s].name.clone(),
                    stack: self.stacks[k].name.clone(),
                });
            }
        };
        let threads = self.threads.min(jobs.len()).max(1);
        if threads == 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(work);
                }
            });
        }
        let mut runs = results
            .into_iter()
            .map(|r| r.into_inner().expect("every run finished"));
        let results = scenarios
            .iter()
            .map(|s| ScenarioResult {
                scenario: (**s).clone(),
                runs: runs.by_ref().take(self.stacks.len()).collect(),
            })
            .collect();
        Report {
            seed: self.seed,
            results,
        }
    }
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("scenarios", &self.scenarios.len())
            .field("stacks", &self.stacks)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// A seed for one purpose of one scenario's runs.
fn derive(seed: u64, scenario: &str, purpose: u64) -> u64 {
    // FNV-1a over the name: stable across platforms and releases.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in scenario.bytes().chain(purpose.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One stack through one scenario, in a runtime of its own.
fn run_one(scenario: &Arc<Scenario>, stack: &Stack, seed: u64) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime with a paused clock");
    rt.block_on(drive(scenario.clone(), stack, seed))
}

async fn drive(scenario: Arc<Scenario>, stack: &Stack, seed: u64) -> Run {
    let start = tokio::time::Instant::now();
    let upstream = Upstream::new(scenario.clone(), derive(seed, &scenario.name, 1));
    let mut ctx = StackContext {
        seed: derive(seed, &scenario.name, 2),
        scenario: scenario.clone(),
        watched: Vec::new(),
    };
    let service = (stack.make)(upstream.clone(), &mut ctx);

    // Watched values, sampled every 250 ms until the last request ends.
    let end = scenario.duration + scenario.deadline;
    let watchers = std::mem::take(&mut ctx.watched);
    let sampler = tokio::spawn(async move {
        let mut samples: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        while start.elapsed() <= end {
            tick.tick().await;
            let t = start.elapsed().as_secs_f64();
            for (name, value) in &watchers {
                samples.entry(name.clone()).or_default().push((t, value()));
            }
        }
        samples
    });

    let records = Arc::new(Mutex::new(Vec::new()));
    let mut rng = fastrand::Rng::with_seed(derive(seed, &scenario.name, 0));
    let mut handles = Vec::new();
    let mut t = 0.0_f64;
    let mut id = 0u64;
    let duration = scenario.duration.as_secs_f64();
    loop {
        let rate = scenario.rate_at(Duration::from_secs_f64(t));
        // Poisson arrivals: exponential gaps.
        t += -(1.0 - rng.f64()).ln() / rate;
        if t >= duration {
            break;
        }
        let host = rng.u32(0..scenario.hosts);
        let idempotent = rng.f64() >= scenario.non_idempotent;
        let at = Duration::from_secs_f64(t);
        tokio::time::sleep_until(start + at).await;
        let req = SimRequest {
            id,
            host,
            idempotent,
        };
        id += 1;
        let call = service.clone().oneshot(req);
        let records = records.clone();
        let deadline = scenario.deadline;
        handles.push(tokio::spawn(async move {
            let began = start.elapsed();
            let result = tokio::time::timeout(deadline, call).await;
            let failure = match result {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(FailureKind::of(&e)),
                Err(_) => Some(FailureKind::Deadline),
            };
            records.lock().push(Record {
                id: req.id,
                host: req.host,
                start: began,
                latency: start.elapsed() - began,
                failure,
            });
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    drop(service);
    let watched = sampler.await.unwrap_or_default();
    let mut records = std::mem::take(&mut *records.lock());
    records.sort_by_key(|r| r.id);
    let tally = upstream.tally();
    Run {
        stack: stack.name.clone(),
        metrics: compute(&scenario, &records, &tally),
        series: series(&scenario, &records, &tally, watched),
    }
}
