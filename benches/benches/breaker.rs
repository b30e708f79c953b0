//! Circuit breaker benchmarks, against tower's own layers over the same no-op
//! service in the same run.
//!
//! Run: `cargo bench -p bulwark-benches --bench breaker`

use bulwark_benches::{
    call_now, keep, print_throughput, throughput, Counting, Group, Noop, INSTRUMENTED_SYSTEM, NEVER,
};
use bulwark_breaker::{Breaker, CircuitBreakerLayer};
use std::time::Duration;
use tower::limit::ConcurrencyLimit;
use tower::timeout::Timeout;
use tower::Layer;

#[global_allocator]
static GLOBAL: Counting = &INSTRUMENTED_SYSTEM;

fn count_breaker() -> Breaker {
    Breaker::builder()
        .count_window(100)
        .failure_rate(0.5)
        .build()
        .unwrap()
}

fn time_breaker() -> Breaker {
    Breaker::builder()
        .time_window(Duration::from_secs(3600), 60)
        .failure_rate(0.5)
        .slow_calls(Duration::from_secs(10), 0.5)
        .build()
        .unwrap()
}

fn overhead(results: &[bulwark_benches::Measured], of: usize, against: usize) {
    let bare = results[0].median_ns;
    let a = results[of].median_ns - bare;
    let b = results[against].median_ns - bare;
    println!(
        "\noverhead over the bare service: `{}` {:.1} ns vs `{}` {:.1} ns: ratio {:.2}",
        results[of].name,
        a,
        results[against].name,
        b,
        a / b
    );
}

fn main() {
    let rt = bulwark_benches::timer_runtime();
    let _enter = rt.enter();

    // 1. Closed, count window, all successes.
    let mut bare = Noop;
    let mut limit = ConcurrencyLimit::new(Noop, 1_000_000);
    let mut timeout = Timeout::new(Noop, NEVER);
    let mut breaker = CircuitBreakerLayer::new(count_breaker()).layer(Noop);
    let r = Group::new("breaker closed, count window (100 calls), all successes")
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench("tower ConcurrencyLimit", || keep(call_now(&mut limit, 1)))
        .bench("tower Timeout", || keep(call_now(&mut timeout, 1)))
        .bench("bulwark CircuitBreaker (count window)", || {
            keep(call_now(&mut breaker, 1))
        })
        .run(GLOBAL);
    if !r.is_empty() {
        overhead(&r, 3, 1);
    }

    // 2. Closed, time window with slow-call detection; cost independent of
    //    how many calls the window holds.
    let mut bare = Noop;
    let mut timeout = Timeout::new(Noop, NEVER);
    let full = time_breaker();
    for _ in 0..100_000 {
        full.try_acquire()
            .unwrap()
            .record(bulwark_core::Outcome::Success);
    }
    assert_eq!(full.snapshot().calls, 100_000);
    let few = time_breaker();
    for _ in 0..10 {
        few.try_acquire()
            .unwrap()
            .record(bulwark_core::Outcome::Success);
    }
    let mut with_100k = CircuitBreakerLayer::new(full).layer(Noop);
    let mut with_10 = CircuitBreakerLayer::new(few).layer(Noop);
    let r = Group::new("breaker closed, time window (1 h, 60 buckets) + slow-call detection")
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench("tower Timeout", || keep(call_now(&mut timeout, 1)))
        .bench("bulwark CircuitBreaker, 10 calls in window", || {
            keep(call_now(&mut with_10, 1))
        })
        .bench("bulwark CircuitBreaker, 100,000 calls in window", || {
            keep(call_now(&mut with_100k, 1))
        })
        .run(GLOBAL);
    if !r.is_empty() {
        println!(
            "\n100,000 vs 10 calls in the window: {:.2}x; vs tower Timeout: {:.2}x",
            r[3].median_ns / r[2].median_ns,
            r[3].median_ns / r[1].median_ns
        );
    }

    // 3. Open: rejection.
    let mut bare = Noop;
    let mut limit = ConcurrencyLimit::new(Noop, 1_000_000);
    let open = Breaker::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(3600))
        .build()
        .unwrap();
    open.try_acquire()
        .unwrap()
        .record(bulwark_core::Outcome::Failure);
    let forced = count_breaker();
    forced.force_open();
    let mut open_svc = CircuitBreakerLayer::new(open).layer(Noop);
    let mut forced_svc = CircuitBreakerLayer::new(forced).layer(Noop);
    Group::new("breaker open: rejection")
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench("tower ConcurrencyLimit (admits)", || {
            keep(call_now(&mut limit, 1))
        })
        .bench("bulwark CircuitBreaker open (rejects)", || {
            keep(call_now(&mut open_svc, 1))
        })
        .bench("bulwark CircuitBreaker forced open (rejects)", || {
            keep(call_now(&mut forced_svc, 1))
        })
        .run(GLOBAL);

    // 4. Two threads calling clones of one layer.
    if !bulwark_benches::selected("two threads") {
        return;
    }
    let limit = ConcurrencyLimit::new(Noop, 1_000_000);
    let breaker = CircuitBreakerLayer::new(count_breaker()).layer(Noop);
    let limit_rate = throughput(2, || {
        let mut svc = limit.clone();
        move || keep(call_now(&mut svc, 1))
    });
    let breaker_rate = throughput(2, || {
        let mut svc = breaker.clone();
        move || keep(call_now(&mut svc, 1))
    });
    print_throughput(
        "two threads, clones of one layer (aggregate calls/s, higher is better)",
        &[
            ("tower ConcurrencyLimit", limit_rate),
            ("bulwark CircuitBreaker (count window)", breaker_rate),
        ],
    );
}
