//! Circuit breaker benchmarks, against tower's own layers over the same no-op
//! service in the same run.
//!
//! Run: `cargo bench -p bulwark-benches --bench breaker`

use bulwark_benches::{
    call_now, future_size, keep, poll_now, print_sizes, print_throughput, throughput, Counting,
    Failed, Group, Noop, INSTRUMENTED_SYSTEM, NEVER,
};
use bulwark_breaker::{Breaker, CircuitBreakerLayer};
use failsafe::futures::CircuitBreaker as _;
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
    // The peers guard a future: the no-op service's own.
    let recloser = recloser::AsyncRecloser::from(
        recloser::Recloser::custom()
            .closed_len(100)
            .error_rate(0.5)
            .build(),
    );
    let failsafe = failsafe::Config::new().build();
    let r = Group::new("breaker closed, count window (100 calls), all successes")
        .bench("bare no-op service (baseline)", || {
            keep(call_now(&mut bare, 1))
        })
        .bench("tower ConcurrencyLimit", || keep(call_now(&mut limit, 1)))
        .bench("tower Timeout", || keep(call_now(&mut timeout, 1)))
        .bench("bulwark CircuitBreaker (count window)", || {
            keep(call_now(&mut breaker, 1))
        })
        .bench("recloser AsyncRecloser (ring of 100)", || {
            keep(poll_now(
                recloser.call(std::future::ready(Ok::<u32, Failed>(1))),
            ))
        })
        .bench("failsafe StateMachine (defaults)", || {
            keep(poll_now(
                failsafe.call(std::future::ready(Ok::<u32, Failed>(1))),
            ))
        })
        .run(GLOBAL);
    if !r.is_empty() {
        overhead(&r, 3, 1);
        overhead(&r, 3, 4);
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
    let open_recloser = recloser::AsyncRecloser::from(
        recloser::Recloser::custom()
            .closed_len(1)
            .open_wait(Duration::from_secs(3600))
            .build(),
    );
    for _ in 0..2 {
        let _ = poll_now(open_recloser.call(std::future::ready(Err::<u32, Failed>(Failed))));
    }
    let open_failsafe = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            1,
            failsafe::backoff::constant(Duration::from_secs(3600)),
        ))
        .build();
    let _ = poll_now(open_failsafe.call(std::future::ready(Err::<u32, Failed>(Failed))));
    assert!(!open_failsafe.is_call_permitted());
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
        .bench("recloser AsyncRecloser open (rejects)", || {
            let r = poll_now(open_recloser.call(std::future::ready(Ok::<u32, Failed>(1))));
            debug_assert!(matches!(r, Err(recloser::Error::Rejected)));
            keep(r)
        })
        .bench("failsafe StateMachine open (rejects)", || {
            let r = poll_now(open_failsafe.call(std::future::ready(Ok::<u32, Failed>(1))));
            debug_assert!(matches!(r, Err(failsafe::Error::Rejected)));
            keep(r)
        })
        .run(GLOBAL);

    // Sizes of the response futures (around the no-op service's 8-byte one).
    print_sizes(
        "breaker future sizes, bytes",
        &[
            ("no-op service", future_size(&mut Noop), 0),
            (
                "bulwark CircuitBreaker (count window)",
                future_size(&mut CircuitBreakerLayer::new(count_breaker()).layer(Noop)),
                std::mem::size_of_val(&CircuitBreakerLayer::new(count_breaker()).layer(Noop)),
            ),
            (
                "tower ConcurrencyLimit",
                future_size(&mut ConcurrencyLimit::new(Noop, 1_000_000)),
                std::mem::size_of_val(&ConcurrencyLimit::new(Noop, 1_000_000)),
            ),
            (
                "tower Timeout",
                future_size(&mut Timeout::new(Noop, NEVER)),
                std::mem::size_of_val(&Timeout::new(Noop, NEVER)),
            ),
        ],
    );

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
