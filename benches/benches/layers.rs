//! Timeout, bulkhead and fallback against tower's own layers, over the same
//! no-op service, in the same run.
//!
//! Run with `cargo bench -p bulwark-benches --bench layers`.

use bulwark_benches::{
    call_now, keep, print_throughput, throughput, Group, NeverRetry, Noop, NEVER,
};
use bulwark_bulkhead::adaptive::Vegas;
use bulwark_bulkhead::BulkheadLayer;
use bulwark_fallback::FallbackLayer;
use bulwark_timeout::TimeoutLayer;
use tower::Layer;

#[global_allocator]
static GLOBAL: bulwark_benches::Counting = &bulwark_benches::INSTRUMENTED_SYSTEM;

fn main() {
    let rt = bulwark_benches::timer_runtime();
    let _guard = rt.enter();

    // Timeout.
    let mut noop = Noop;
    let mut tower_timeout = tower::timeout::Timeout::new(Noop, NEVER);
    let mut timeout = TimeoutLayer::new(NEVER).layer(Noop);
    let mut timeout_ready = TimeoutLayer::new(NEVER)
        .readiness_timeout(NEVER)
        .layer(Noop);
    Group::new("timeout (success path)")
        .bench("Noop (baseline)", || keep(call_now(&mut noop, 1)))
        .bench("tower Timeout", || keep(call_now(&mut tower_timeout, 1)))
        .bench("bulwark Timeout", || keep(call_now(&mut timeout, 1)))
        .bench("bulwark Timeout + readiness limit", || {
            keep(call_now(&mut timeout_ready, 1))
        })
        .bench(
            "calibration: a clock read alone (tokio Instant::now)",
            || keep(tokio::time::Instant::now()),
        )
        .run(GLOBAL);

    // Bulkhead, one thread.
    let mut noop = Noop;
    let mut tower_limit = tower::limit::ConcurrencyLimit::new(Noop, 1_000);
    let mut bulkhead = BulkheadLayer::new(1_000).layer(Noop);
    let mut adaptive = BulkheadLayer::builder()
        .adaptive(Vegas::new(1_000).max_limit(1_000))
        .build()
        .layer(Noop);
    Group::new("bulkhead (success path)")
        .bench("Noop (baseline)", || keep(call_now(&mut noop, 1)))
        .bench("tower ConcurrencyLimit", || {
            keep(call_now(&mut tower_limit, 1))
        })
        .bench("bulwark Bulkhead", || keep(call_now(&mut bulkhead, 1)))
        .bench("bulwark Bulkhead (adaptive Vegas)", || {
            keep(call_now(&mut adaptive, 1))
        })
        .run(GLOBAL);

    // Bulkhead, two threads sharing one limit.
    let tower_shared = tower::limit::ConcurrencyLimit::new(Noop, 1_000);
    let ours_shared = BulkheadLayer::new(1_000).layer(Noop);
    let tower_rate = throughput(2, || {
        let mut s = tower_shared.clone();
        move || keep(call_now(&mut s, 1))
    });
    let ours_rate = throughput(2, || {
        let mut s = ours_shared.clone();
        move || keep(call_now(&mut s, 1))
    });
    print_throughput(
        "bulkhead, two threads sharing one limit",
        &[
            ("tower ConcurrencyLimit", tower_rate),
            ("bulwark Bulkhead", ours_rate),
        ],
    );

    // Fallback.
    let mut noop = Noop;
    let mut tower_retry = tower::retry::Retry::new(NeverRetry, Noop);
    let mut fallback = FallbackLayer::value(0u32).layer(Noop);
    Group::new("fallback (success path)")
        .bench("Noop (baseline)", || keep(call_now(&mut noop, 1)))
        .bench("tower Retry (never retries)", || {
            keep(call_now(&mut tower_retry, 1))
        })
        .bench("bulwark Fallback (value)", || {
            keep(call_now(&mut fallback, 1))
        })
        .run(GLOBAL);
}
