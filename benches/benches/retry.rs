//! Retry benchmarks: the success path (no retry needed) against tower's own
//! `Retry` with a never-retrying policy, over the same no-op service in the
//! same run.
//!
//! Run: `cargo bench -p bulwark-benches --bench retry`

use bulwark_benches::{
    call_now, keep, BudgetedNeverRetry, Counting, Group, Measured, NeverRetry, Noop,
    INSTRUMENTED_SYSTEM,
};
use bulwark_retry::hedge::HedgeLayer;
use bulwark_retry::{RetryBudget, RetryLayer};
use std::time::Duration;
use tower::retry::Retry;
use tower::Layer;

#[global_allocator]
static GLOBAL: Counting = &INSTRUMENTED_SYSTEM;

fn overhead(results: &[Measured], of: usize, against: usize) {
    if results.len() <= of.max(against) {
        return;
    }
    let bare = results[0].median_ns;
    let (a, b) = (results[of].median_ns, results[against].median_ns);
    // tower's never-retrying Retry can compile down to the bare service:
    // then only the total ratio and the absolute overhead mean anything.
    let overhead_ratio = if b - bare > 0.5 {
        format!("{:.2}x", (a - bare) / (b - bare))
    } else {
        "n/a".to_owned()
    };
    println!(
        "`{}` vs `{}`: {:.2}x in total; overhead over the bare service {:.1} ns vs {:.1} ns ({overhead_ratio})",
        results[of].name,
        results[against].name,
        a / b,
        a - bare,
        b - bare,
    );
}

fn main() {
    let rt = bulwark_benches::timer_runtime();
    let _enter = rt.enter();

    let mut bare = Noop;
    let mut tower_retry = Retry::new(NeverRetry, Noop);
    let mut tower_budgeted = Retry::new(BudgetedNeverRetry::new(), Noop);
    let mut default = RetryLayer::new().layer(Noop);
    let mut unlimited = RetryLayer::new()
        .budget(RetryBudget::unlimited())
        .layer(Noop);
    let mut grpc = RetryLayer::new()
        .budget(RetryBudget::token_bucket(100, 0.1).unwrap())
        .layer(Noop);
    let mut hedge = HedgeLayer::fixed(Duration::from_secs(3600)).layer(Noop);
    // Calibration: what sharing any state with a response future costs.
    let shared = std::sync::Arc::new(0u64);
    let r = Group::new("retry success path (no retry needed)")
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench("tower Retry (never-retrying policy)", || {
            keep(call_now(&mut tower_retry, 1))
        })
        .bench("tower Retry (policy with a TpsBudget)", || {
            keep(call_now(&mut tower_budgeted, 1))
        })
        .bench("bulwark Retry (defaults: ratio budget)", || {
            keep(call_now(&mut default, 1))
        })
        .bench("bulwark Retry (no budget)", || {
            keep(call_now(&mut unlimited, 1))
        })
        .bench("bulwark Retry (gRPC token bucket)", || {
            keep(call_now(&mut grpc, 1))
        })
        .bench("bulwark Hedge (fixed delay, answered at once)", || {
            keep(call_now(&mut hedge, 1))
        })
        .bench("calibration: Arc clone + drop alone", || {
            keep(std::sync::Arc::clone(&shared))
        })
        .run(GLOBAL);
    if r.len() < 4 {
        return;
    }
    println!();
    for i in 3..r.len() {
        overhead(&r, i, 1);
    }
    println!();
    for i in 3..r.len() - 1 {
        overhead(&r, i, 2);
    }
}
