//! Bulwark: resilience for any tower service (facade; filled in with the breaker).
#![forbid(unsafe_code)]
