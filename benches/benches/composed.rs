//! The five Bulwark layers composed, against tower's own layers composed,
//! over the same no-op service in the same run.
//!
//! Run: `cargo bench -p bulwark-benches --bench composed`

use bulwark_benches::{
    call_now, keep, BudgetedNeverRetry, Counting, Group, NeverRetry, Noop, INSTRUMENTED_SYSTEM,
    NEVER,
};
use bulwark_breaker::{Breaker, CircuitBreakerLayer};
use bulwark_bulkhead::BulkheadLayer;
use bulwark_fallback::FallbackLayer;
use bulwark_retry::RetryLayer;
use bulwark_timeout::TimeoutLayer;
use tower::ServiceBuilder;

#[global_allocator]
static GLOBAL: Counting = &INSTRUMENTED_SYSTEM;

fn main() {
    let rt = bulwark_benches::timer_runtime();
    let _enter = rt.enter();

    let mut bare = Noop;
    let mut tower_stack = ServiceBuilder::new()
        .retry(NeverRetry)
        .load_shed()
        .timeout(NEVER)
        .concurrency_limit(1_000_000)
        .service(Noop);
    let mut tower_budgeted = ServiceBuilder::new()
        .retry(BudgetedNeverRetry::new())
        .load_shed()
        .timeout(NEVER)
        .concurrency_limit(1_000_000)
        .service(Noop);
    let breaker = Breaker::builder().count_window(100).build().unwrap();
    let mut bulwark_stack = ServiceBuilder::new()
        .layer(FallbackLayer::value(0u32))
        .layer(RetryLayer::new())
        .layer(CircuitBreakerLayer::new(breaker))
        .layer(TimeoutLayer::new(NEVER))
        .layer(BulkheadLayer::new(1_000_000))
        .service(Noop);
    let r = Group::new("five layers composed, success path")
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench(
            "tower Retry(never) + LoadShed + Timeout + ConcurrencyLimit",
            || keep(call_now(&mut tower_stack, 1)),
        )
        .bench(
            "tower Retry(TpsBudget) + LoadShed + Timeout + ConcurrencyLimit",
            || keep(call_now(&mut tower_budgeted, 1)),
        )
        .bench(
            "bulwark Fallback + Retry + Breaker + Timeout + Bulkhead",
            || keep(call_now(&mut bulwark_stack, 1)),
        )
        .run(GLOBAL);
    if r.len() == 4 {
        println!(
            "\nbulwark stack vs tower stack: {:.2}x (vs tower with a budgeted retry: {:.2}x)",
            r[3].median_ns / r[1].median_ns,
            r[3].median_ns / r[2].median_ns
        );
    }
}
