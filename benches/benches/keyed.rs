//! Keyed breakers at their bound: what a new key costs when every new key
//! evicts one (a flood of distinct hosts), at 1,000, 100,000 and 1,000,000
//! keys, and how many bytes each kept key takes.
//!
//! Run: `cargo bench -p bulwark-benches --bench keyed`
//!
//! Each group's baseline is a lookup of a key that is already kept, on the
//! same set, in the same run. Keys are `u64` so that the numbers are the
//! set's cost (each breaker's name, `"hosts/{key}"`, is still formatted).

use bulwark_benches::{keep, Counting, Group, Region, INSTRUMENTED_SYSTEM};
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::Breaker;
use bulwark_core::Outcome;
use std::time::Duration;

#[global_allocator]
static GLOBAL: Counting = &INSTRUMENTED_SYSTEM;

/// The breakers of the HTTP client stack's defaults, keyed by host.
fn set(max_keys: usize) -> KeyedBreakers<u64> {
    Breaker::builder()
        .name("hosts")
        .keyed()
        .max_keys(max_keys)
        .idle_timeout(Duration::from_secs(600))
        .build()
        .expect("valid keyed breakers")
}

/// Net bytes held per key after `n` keys were made (and, when `fail`, one
/// failed call recorded on each, as a flood of failing hosts does).
fn bytes_per_key(n: usize, fail: bool) -> f64 {
    let region = Region::new(GLOBAL);
    let set = set(n);
    for key in 0..n as u64 {
        let breaker = set.get_or_create(&key);
        if fail {
            breaker
                .try_acquire()
                .expect("a new breaker is closed")
                .record(Outcome::Failure);
        }
    }
    let stats = region.change();
    assert_eq!(set.len(), n);
    let net = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64
        + stats.bytes_reallocated as f64;
    drop(set);
    net / n as f64
}

fn main() {
    let rt = bulwark_benches::timer_runtime();
    let _enter = rt.enter();
    let bench = bulwark_benches::is_bench();

    for (n, label) in [(1_000usize, "1k"), (100_000, "100k"), (1_000_000, "1M")] {
        let title = format!("keyed breakers at the bound of {label} keys: a new key evicts one");
        if !bulwark_benches::selected(&title) {
            continue;
        }
        // Fewer keys in a smoke run; the real run fills the whole bound.
        let n = if bench { n } else { n.min(1_000) };
        let set = set(n);
        for key in 0..n as u64 {
            set.get_or_create(&key);
        }
        let mut hit = 0u64;
        let next = std::cell::Cell::new(n as u64);
        // Enough calls per round to time, few enough that a slow set still
        // finishes (a set that scans its keys costs milliseconds at 1M).
        let iters = (20_000_000 / n as u64).clamp(20, 20_000);
        let r = Group::new(title)
            .iters(iters)
            .bench("lookup of a kept key (baseline)", || {
                // Keys well inside the set, never the ones about to go.
                hit = (hit + 1) % (n as u64 / 2);
                keep(set.get_or_create(&(next.get() - 1 - hit)));
            })
            .bench("new key at the bound (evicts one)", || {
                keep(set.get_or_create(&next.get()));
                next.set(next.get() + 1);
            })
            .run(GLOBAL);
        assert_eq!(set.len(), n);
        if !r.is_empty() {
            println!("\nevicted: {}", set.evicted());
        }
    }

    let title = "bytes per kept key";
    if bulwark_benches::selected(title) {
        let n = if bench { 100_000 } else { 1_000 };
        println!("\n## {title} ({n} keys, counting allocator, net bytes)\n");
        println!("| {:<40} | {:>12} |", "keys", "bytes/key");
        println!("|{:-<42}|{:->14}|", "", "");
        println!(
            "| {:<40} | {:>12.0} |",
            "made, never called",
            bytes_per_key(n, false)
        );
        println!(
            "| {:<40} | {:>12.0} |",
            "one failed call each",
            bytes_per_key(n, true)
        );
    }
}
