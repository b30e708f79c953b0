//! The benchmark harness (filled in with the breaker benchmarks).
