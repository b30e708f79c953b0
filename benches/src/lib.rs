//! The benchmark harness shared by every `cargo bench` target.
//!
//! Each benchmark group measures Bulwark layers and tower's own layers over
//! the same no-op service in the same run, so the numbers compare like with
//! like on a shared, noisy machine:
//!
//! - candidates run in interleaved rounds (A, B, C, A, B, C, ...), so a burst
//!   of noise hits every candidate alike;
//! - each candidate's result is the **median** nanoseconds per call over the
//!   rounds, and its ratio to the group's baseline;
//! - allocations per call are counted by a counting global allocator
//!   (`stats_alloc`) in a separate pass.
//!
//! Calls are driven by polling by hand with a no-op waker (inside a tokio
//! runtime context, for layers that need a timer), so the numbers are the
//! layers' cost, not an executor's.
//!
//! Run everything with `cargo bench -p bulwark-benches`; without `--bench`
//! (as under `cargo test --benches`) each benchmark runs a few iterations only,
//! as a smoke test.

// Benchmarks measure wall-clock time: here, and only here, `std::time::Instant`
// is the right clock (everywhere else tokio's clock is required).
#![allow(clippy::disallowed_types)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;

pub use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// The counting allocator every benchmark binary installs:
///
/// ```ignore
/// #[global_allocator]
/// static GLOBAL: &bulwark_benches::StatsAlloc<std::alloc::System> = &bulwark_benches::INSTRUMENTED_SYSTEM;
/// ```
pub type Counting = &'static StatsAlloc<std::alloc::System>;

/// Whether the binary runs as a real benchmark (`cargo bench`) or as a smoke
/// test.
pub fn is_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A current-thread runtime with a timer, for the layers that need one;
/// benchmarks enter it (`let _enter = rt.enter();`) and poll by hand.
pub fn timer_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
}

/// A service that answers at once and never fails: the cost of the layers
/// around it is what is measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

impl Service<u32> for Noop {
    type Response = u32;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<u32, Self::Error>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: u32) -> Self::Future {
        std::future::ready(Ok(req))
    }
}

/// A service that always fails at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysFail;

/// The error of [`AlwaysFail`].
#[derive(Debug)]
pub struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}

impl std::error::Error for Failed {}

impl Service<u32> for AlwaysFail {
    type Response = u32;
    type Error = Failed;
    type Future = std::future::Ready<Result<u32, Failed>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        std::future::ready(Err(Failed))
    }
}

/// Makes `svc` ready and calls it once, polling by hand; panics if anything
/// is pending (every benchmarked stack answers at once).
#[inline]
pub fn call_now<S: Service<u32>>(svc: &mut S, req: u32) -> Result<S::Response, S::Error> {
    let waker = futures_util::task::noop_waker_ref();
    let mut cx = Context::from_waker(waker);
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("benchmarked service was not ready at once"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("benchmarked future was not ready at once"),
    }
}

/// Polls a future once with a no-op waker; panics if it is pending (for the
/// peers that guard a future rather than a service).
#[inline]
pub fn poll_now<F: Future>(fut: F) -> F::Output {
    let waker = futures_util::task::noop_waker_ref();
    let mut cx = Context::from_waker(waker);
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("benchmarked future was not ready at once"),
    }
}

/// One candidate of a group: a name and a closure that makes one call.
struct Candidate<'a> {
    name: String,
    run: Box<dyn FnMut() + 'a>,
}

/// The result of one candidate.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The candidate's name.
    pub name: String,
    /// Median nanoseconds per call over the rounds.
    pub median_ns: f64,
    /// Allocations per call.
    pub allocs_per_call: f64,
}

/// A group of candidates measured in the same run; the first is the
/// baseline ratios are computed against.
#[allow(missing_debug_implementations)]
pub struct Group<'a> {
    title: String,
    candidates: Vec<Candidate<'a>>,
    rounds: usize,
    iters: u64,
}

impl<'a> Group<'a> {
    /// A new group. Real runs use 31 rounds of 200,000 calls per candidate;
    /// smoke runs 3 rounds of 100.
    pub fn new(title: impl Into<String>) -> Self {
        let (rounds, iters) = if is_bench() { (31, 200_000) } else { (3, 100) };
        Group {
            title: title.into(),
            candidates: Vec::new(),
            rounds,
            iters,
        }
    }

    /// Sets the calls per round (for heavier candidates).
    pub fn iters(mut self, iters: u64) -> Self {
        if is_bench() {
            self.iters = iters;
        }
        self
    }

    /// Adds a candidate; `run` makes exactly one call.
    pub fn bench(mut self, name: impl Into<String>, run: impl FnMut() + 'a) -> Self {
        self.candidates.push(Candidate {
            name: name.into(),
            run: Box::new(run),
        });
        self
    }

    /// Runs the group, prints a table and returns the results (baseline
    /// first). A group whose title does not contain the filter given on the
    /// command line (`cargo bench --bench NAME -- FILTER`) is skipped and
    /// returns nothing.
    pub fn run(mut self, alloc: Counting) -> Vec<Measured> {
        if !selected(&self.title) {
            return Vec::new();
        }
        if let Some((only, calls)) = instruction_mode() {
            // Under callgrind (`benches/scripts/instructions.sh`): one
            // candidate, a fixed number of calls, nothing else.
            for c in self.candidates.iter_mut().filter(|c| c.name == only) {
                for _ in 0..calls {
                    (c.run)();
                }
            }
            return Vec::new();
        }
        // Warm up and count allocations, one candidate at a time.
        let mut allocs = Vec::with_capacity(self.candidates.len());
        for c in &mut self.candidates {
            for _ in 0..self.iters.min(10_000) {
                (c.run)();
            }
            let n = self.iters.min(100_000);
            let region = Region::new(alloc);
            for _ in 0..n {
                (c.run)();
            }
            let stats = region.change();
            allocs.push(stats.allocations as f64 / n as f64);
        }
        // Interleaved rounds.
        let mut samples = vec![Vec::with_capacity(self.rounds); self.candidates.len()];
        for _ in 0..self.rounds {
            for (i, c) in self.candidates.iter_mut().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..self.iters {
                    (c.run)();
                }
                let ns = start.elapsed().as_nanos() as f64 / self.iters as f64;
                samples[i].push(ns);
            }
        }
        let results: Vec<Measured> = self
            .candidates
            .iter()
            .zip(samples)
            .zip(allocs)
            .map(|((c, s), a)| Measured {
                name: c.name.clone(),
                median_ns: median(s),
                allocs_per_call: a,
            })
            .collect();
        print_table(&self.title, &results);
        results
    }
}

/// `BULWARK_BENCH_ONLY=<candidate name>` and `BULWARK_BENCH_CALLS=<n>`: run
/// only that candidate, `n` times, untimed (for counting instructions per
/// call under callgrind; see `benches/scripts/instructions.sh`).
pub fn instruction_mode() -> Option<(String, u64)> {
    let only = std::env::var("BULWARK_BENCH_ONLY").ok()?;
    let calls = std::env::var("BULWARK_BENCH_CALLS").ok()?.parse().ok()?;
    Some((only, calls))
}

/// The size in bytes of `svc`'s response future (made ready and called once;
/// the future is then driven to completion).
pub fn future_size<S: Service<u32>>(svc: &mut S) -> usize {
    let waker = futures_util::task::noop_waker_ref();
    let mut cx = Context::from_waker(waker);
    let _ = svc.poll_ready(&mut cx);
    let fut = svc.call(1);
    let size = std::mem::size_of_val(&fut);
    let _ = pin!(fut).poll(&mut cx);
    size
}

/// Prints the sizes of some response futures (and of their services).
pub fn print_sizes(title: &str, rows: &[(&str, usize, usize)]) {
    if instruction_mode().is_some() || !selected("sizes") && !selected(title) {
        return;
    }
    println!("\n## {title}\n");
    println!(
        "| {:<52} | {:>12} | {:>13} |",
        "candidate", "future bytes", "service bytes"
    );
    println!("|{:-<54}|{:->14}|{:->15}|", "", "", "");
    for (name, fut, svc) in rows {
        println!("| {:<52} | {:>12} | {:>13} |", name, fut, svc);
    }
}

/// Whether a benchmark titled `title` is selected by the command line's
/// filter (the first argument that is not a flag), if any.
pub fn selected(title: &str) -> bool {
    match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(filter) => title.contains(&filter),
        None => true,
    }
}

/// The median of some samples (0 when empty).
pub fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

fn print_table(title: &str, results: &[Measured]) {
    println!("\n## {title}\n");
    println!(
        "| {:<52} | {:>10} | {:>9} | {:>12} |",
        "candidate", "median ns", "ratio", "allocs/call"
    );
    println!("|{:-<54}|{:->12}|{:->11}|{:->14}|", "", "", "", "");
    let base = results
        .first()
        .map_or(1.0, |r| r.median_ns.max(f64::EPSILON));
    for r in results {
        println!(
            "| {:<52} | {:>10.1} | {:>8.2}x | {:>12.2} |",
            r.name,
            r.median_ns,
            r.median_ns / base,
            r.allocs_per_call
        );
    }
}

/// Aggregate throughput of `threads` threads, each running `per_thread` calls
/// of its own closure (made by `make`), repeated for a few rounds; returns the
/// median calls per second.
pub fn throughput<F>(threads: usize, make: impl Fn() -> F + Sync) -> f64
where
    F: FnMut() + Send,
{
    if instruction_mode().is_some() {
        return 0.0;
    }
    let per_thread: u64 = if is_bench() { 500_000 } else { 100 };
    let rounds = if is_bench() { 11 } else { 1 };
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let barrier = std::sync::Barrier::new(threads + 1);
        let elapsed = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let mut f = make();
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        for _ in 0..per_thread {
                            f();
                        }
                    })
                })
                .collect();
            barrier.wait();
            let start = std::time::Instant::now();
            for h in handles {
                h.join().expect("benchmark thread panicked");
            }
            start.elapsed()
        });
        rates.push((threads as u64 * per_thread) as f64 / elapsed.as_secs_f64());
    }
    median(rates)
}

/// Prints a throughput comparison table (first entry is the baseline).
pub fn print_throughput(title: &str, rows: &[(&str, f64)]) {
    println!("\n## {title}\n");
    println!(
        "| {:<52} | {:>14} | {:>9} |",
        "candidate", "calls/s", "ratio"
    );
    println!("|{:-<54}|{:->16}|{:->11}|", "", "", "");
    let base = rows.first().map_or(1.0, |r| r.1.max(f64::EPSILON));
    for (name, rate) in rows {
        println!("| {:<52} | {:>14.0} | {:>8.2}x |", name, rate, rate / base);
    }
}

/// tower's `Retry` at its cheapest: a policy that never retries (but copies
/// the request, as any policy that may retry must).
#[derive(Clone, Copy, Debug)]
pub struct NeverRetry;

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's `Retry` with a budget, as a policy that may retry must keep one:
/// every request deposits into a shared `TpsBudget` (an `Arc`, like
/// Bulwark's budget); it never needs to retry here.
#[derive(Clone, Debug)]
pub struct BudgetedNeverRetry(pub std::sync::Arc<tower::retry::budget::TpsBudget>);

impl BudgetedNeverRetry {
    /// tower's defaults: 10 s window, 10 retries/s floor, 20% of requests.
    pub fn new() -> Self {
        BudgetedNeverRetry(std::sync::Arc::new(tower::retry::budget::TpsBudget::new(
            Duration::from_secs(10),
            10,
            0.2,
        )))
    }
}

impl Default for BudgetedNeverRetry {
    fn default() -> Self {
        Self::new()
    }
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for BudgetedNeverRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        self.0.deposit();
        None
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// Keeps a value from being optimised away.
#[inline]
pub fn keep<T>(value: T) {
    black_box(value);
}

/// A duration long enough never to fire during a benchmark.
pub const NEVER: Duration = Duration::from_secs(3600);
