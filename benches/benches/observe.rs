//! What metrics cost with no recorder installed: the same layers with and
//! without Bulwark's metrics, over the same no-op service, in the same run.
//!
//! Metric handles are registered once per instance (when the layer or
//! listener is made), so with no recorder each update is a check of an empty
//! handle; the per-call `MetricsLayer` adds one clock read for the duration.
//!
//! Run: `cargo bench -p bulwark-benches --bench observe`

use bulwark_benches::{call_now, keep, Counting, Group, Noop, INSTRUMENTED_SYSTEM};
use bulwark_breaker::{Breaker, CircuitBreakerLayer};
use bulwark_bulkhead::BulkheadLayer;
use bulwark_observe::metrics::{BreakerMetrics, MetricsLayer};
use bulwark_observe::Registry;
use tower::Layer;

#[global_allocator]
static GLOBAL: Counting = &INSTRUMENTED_SYSTEM;

fn main() {
    let rt = bulwark_benches::timer_runtime();
    let _enter = rt.enter();
    let registry = Registry::new();

    // 1. The success path: nothing is emitted, MetricsLayer counts and times.
    let mut bare = Noop;
    let mut plain = CircuitBreakerLayer::new(Breaker::builder().build().unwrap()).layer(Noop);
    let mut observed =
        CircuitBreakerLayer::new(registry.breaker("b", Breaker::builder()).unwrap()).layer(Noop);
    let mut calls = MetricsLayer::new("m").layer(Noop);
    let mut counts = MetricsLayer::new("c").durations(false).layer(Noop);
    let mut both = MetricsLayer::new("mb").layer(
        CircuitBreakerLayer::new(registry.breaker("mb", Breaker::builder()).unwrap()).layer(Noop),
    );
    let mut bulkhead = BulkheadLayer::new(1_000_000).layer(Noop);
    let mut bulkhead_observed = registry
        .bulkhead("k", BulkheadLayer::builder().max_concurrent(1_000_000))
        .layer(Noop);
    Group::new("metrics with no recorder: success path")
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench("CircuitBreaker, no metrics", || {
            keep(call_now(&mut plain, 1))
        })
        .bench(
            "CircuitBreaker from the registry (metrics listener)",
            || keep(call_now(&mut observed, 1)),
        )
        .bench("MetricsLayer alone", || keep(call_now(&mut calls, 1)))
        .bench("MetricsLayer without durations", || {
            keep(call_now(&mut counts, 1))
        })
        .bench("MetricsLayer + CircuitBreaker (registry)", || {
            keep(call_now(&mut both, 1))
        })
        .bench("Bulkhead, no metrics", || keep(call_now(&mut bulkhead, 1)))
        .bench("Bulkhead from the registry (metrics listener)", || {
            keep(call_now(&mut bulkhead_observed, 1))
        })
        .run(GLOBAL);

    // 2. The event path: every call is a rejection the listener counts.
    let open = Breaker::builder().build().unwrap();
    open.force_open();
    let counted = Breaker::builder()
        .on_event(BreakerMetrics::new("open"))
        .build()
        .unwrap();
    counted.force_open();
    let mut open = CircuitBreakerLayer::new(open).layer(Noop);
    let mut counted = CircuitBreakerLayer::new(counted).layer(Noop);
    Group::new("metrics with no recorder: rejections (breaker forced open)")
        .bench("rejection, no listener (baseline)", || {
            keep(call_now(&mut open, 1))
        })
        .bench("rejection, BreakerMetrics listener", || {
            keep(call_now(&mut counted, 1))
        })
        .run(GLOBAL);
}
