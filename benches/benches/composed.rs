//! The five Bulwark layers composed, against tower's own layers composed,
//! over the same no-op service in the same run.
//!
//! Run: `cargo bench -p bulwark-benches --bench composed`

use bulwark_benches::{
    call_now, future_size, keep, print_sizes, BudgetedNeverRetry, Counting, Group, NeverRetry,
    Noop, INSTRUMENTED_SYSTEM, NEVER,
};
use bulwark_breaker::{Breaker, CircuitBreakerLayer};
use bulwark_bulkhead::BulkheadLayer;
use bulwark_fallback::FallbackLayer;
use bulwark_retry::RetryLayer;
use bulwark_timeout::TimeoutLayer;
use tower::Layer;
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
    // tower-resilience's five, as close to Bulwark's settings as it goes.
    type Inner = tower_resilience::bulkhead::BulkheadServiceError<std::convert::Infallible>;
    type Timed = tower_resilience::timelimiter::TimeLimiterError<Inner>;
    type Broken = tower_resilience::circuitbreaker::CircuitBreakerError<Timed>;
    let resilience_stack = || {
        let bulkhead = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(1_000_000)
            .build()
            .unwrap();
        let timeout = tower_resilience::timelimiter::TimeLimiterLayer::builder()
            .timeout_duration(NEVER)
            .build();
        let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
            .failure_rate_threshold(0.5)
            .sliding_window_size(100)
            .build()
            .unwrap();
        let retry = tower_resilience::retry::RetryLayer::<u32, u32, Broken>::builder()
            .max_attempts(3)
            .build();
        let fallback = tower_resilience::fallback::FallbackLayer::<u32, u32, Broken>::value(0);
        fallback.layer(retry.layer(breaker.layer(timeout.layer(bulkhead.layer(Noop)))))
    };
    let mut resilience = resilience_stack();
    let bulwark_five = || {
        ServiceBuilder::new()
            .layer(FallbackLayer::value(0u32))
            .layer(RetryLayer::new())
            .layer(CircuitBreakerLayer::new(
                Breaker::builder().count_window(100).build().unwrap(),
            ))
            .layer(TimeoutLayer::new(NEVER))
            .layer(BulkheadLayer::new(1_000_000))
            .service(Noop)
    };
    let tower_four = || {
        ServiceBuilder::new()
            .retry(NeverRetry)
            .load_shed()
            .timeout(NEVER)
            .concurrency_limit(1_000_000)
            .service(Noop)
    };
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
        .bench(
            "tower-resilience Fallback + Retry + CB + TimeLimiter + Bulkhead",
            || keep(call_now(&mut resilience, 1)),
        )
        .run(GLOBAL);
    if r.len() == 5 {
        println!(
            "\nbulwark stack vs tower stack: {:.2}x (vs tower with a budgeted retry: {:.2}x); tower-resilience's five vs bulwark's: {:.1}x",
            r[3].median_ns / r[1].median_ns,
            r[3].median_ns / r[2].median_ns,
            r[4].median_ns / r[3].median_ns
        );
    }
    print_sizes(
        "composed future sizes, bytes",
        &[
            ("no-op service", future_size(&mut Noop), 0),
            (
                "tower Retry(never) + LoadShed + Timeout + ConcurrencyLimit",
                future_size(&mut tower_four()),
                std::mem::size_of_val(&tower_four()),
            ),
            (
                "bulwark Fallback + Retry + Breaker + Timeout + Bulkhead",
                future_size(&mut bulwark_five()),
                std::mem::size_of_val(&bulwark_five()),
            ),
            (
                "bulwark Fallback alone",
                future_size(&mut FallbackLayer::value(0u32).layer(Noop)),
                std::mem::size_of_val(&FallbackLayer::value(0u32).layer(Noop)),
            ),
            (
                "bulwark Retry alone",
                future_size(&mut RetryLayer::new().layer(Noop)),
                std::mem::size_of_val(&RetryLayer::new().layer(Noop)),
            ),
            (
                "bulwark Timeout alone",
                future_size(&mut TimeoutLayer::new(NEVER).layer(Noop)),
                std::mem::size_of_val(&TimeoutLayer::new(NEVER).layer(Noop)),
            ),
            (
                "bulwark Bulkhead alone",
                future_size(&mut BulkheadLayer::new(1_000_000).layer(Noop)),
                std::mem::size_of_val(&BulkheadLayer::new(1_000_000).layer(Noop)),
            ),
            (
                "bulwark Retry + Breaker + Timeout + Bulkhead (no fallback)",
                future_size(
                    &mut ServiceBuilder::new()
                        .layer(RetryLayer::new())
                        .layer(CircuitBreakerLayer::new(
                            Breaker::builder().count_window(100).build().unwrap(),
                        ))
                        .layer(TimeoutLayer::new(NEVER))
                        .layer(BulkheadLayer::new(1_000_000))
                        .service(Noop),
                ),
                0,
            ),
            (
                "tower-resilience five (boxed futures)",
                future_size(&mut resilience_stack()),
                std::mem::size_of_val(&resilience_stack()),
            ),
        ],
    );
}
