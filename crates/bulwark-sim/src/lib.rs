//! # bulwark-sim: what a resilience stack does while its upstream fails
//!
//! A resilience layer can work exactly as specified and still hurt: a
//! breaker that trips on half a second of traffic turns a 30% brownout
//! into a total outage; retries without a budget triple the load on a
//! server that is already down. `bulwark-sim` shows what a stack *does*,
//! before it ships: it drives the stack with open-loop load against a
//! simulated upstream that follows a script of failures, in tokio's paused
//! time (minutes of traffic in a fraction of a second, every draw seeded,
//! so a run repeats exactly), and reports goodput, latency, the load the
//! stack added to the upstream, and how fast it noticed and recovered.
//!
//! ```
//! use bulwark::sim::{stacks, Scenario, Simulation};
//! use std::time::Duration;
//!
//! let mut outage = Scenario::named("outage").unwrap();
//! outage.duration = Duration::from_secs(60); // shorter, for the doctest
//! outage.phases[0].until = Duration::from_secs(40);
//! let report = Simulation::new()
//!     .scenario(outage)
//!     .stack(stacks::none())
//!     .stack(stacks::tower())
//!     .run();
//! let result = report.scenario("outage").unwrap();
//! // No resilience sends each request exactly once.
//! assert_eq!(result.run("no resilience").unwrap().metrics.amplification, 1.0);
//! println!("{}", report.to_markdown());
//! ```
//!
//! # The model
//!
//! - **The upstream** ([`Upstream`]) serves each host by processor sharing
//!   with a capacity: up to `capacity` requests in progress run at full
//!   speed, beyond it every request in progress slows in proportion. So
//!   extra load (retries, a queue) makes *every* answer slower, as it does
//!   in a real server, and a request whose caller gave up frees its share.
//!   Its [`Behavior`] (lognormal latency, a slow tail, errors slow or fast,
//!   rate-limited answers with a retry-after, black-holed requests) is set
//!   by the scenario's phases.
//! - **The load** is open loop (Poisson arrivals: it does not slow down
//!   when the upstream does, as real users do not), each request a task of
//!   its own with the caller's deadline outside the stack, spread over the
//!   scenario's hosts, a share of them not idempotent.
//! - **The stacks** are any tower services ([`Stack::new`], or
//!   [`Stack::http`] over an [`HttpUpstream`](http::HttpUpstream)); every
//!   stack of a scenario sees the very same load.
//! - **The figures** ([`Metrics`]) per scenario and stack: goodput overall
//!   and during the fault, p50 and p99 of the successes, amplification
//!   (upstream requests per request) overall and during the fault, the
//!   upstream's peak in flight, time to detect (the first request refused
//!   without reaching the upstream) and to recover (until 5 s of requests
//!   are 95% good), and failures by kind.
//!
//! Latencies are in whole milliseconds (tokio's timer resolution).
//!
//! # Why the baselines get what they get
//!
//! With no resilience a request succeeds exactly when the upstream's first
//! answer does, in time: during an outage nothing succeeds; during the
//! brownout (30% errors) about 70% would, less the answers slowed past the
//! deadline; in the latency spike 98%; under 2× overload the queue grows
//! until nearly every answer takes longer than the deadline, and since the
//! work of a request abandoned at its deadline is wasted, goodput collapses
//! far below the 50% the upstream could serve. tower's layers retry every
//! error (three attempts under a 20% budget) and bound each attempt to
//! 500 ms, which recovers many brownout failures and slow answers, but they
//! cannot tell an outage from a blip: during an outage they add their
//! budget's worth of load, and during overload they shed only what exceeds
//! their concurrency limit. See the simulator's report in the repository's
//! `BENCHMARKS.md` for the numbers.
//!
//! # Fault injection for real services
//!
//! The same faults, for game days against a real service: [`chaos`].
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod chaos;
pub mod http;
mod metrics;
mod report;
mod run;
mod scenario;
pub mod stacks;
mod upstream;

pub use metrics::{FailureKind, Metrics, PhaseCounts, Series};
pub use report::{Report, Run, ScenarioResult};
pub use run::{breaker_level, Progress, SimService, Simulation, Stack, StackContext};
pub use scenario::{Behavior, Latency, Phase, RateLimit, Repeat, Scenario, SlowTail};
pub use upstream::{SimRequest, SimResponse, Upstream, UpstreamError};
