//! Placeholder, filled in with the breaker.
fn main() {}
