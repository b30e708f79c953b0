//! Shared helpers for the integration tests: loopback servers with injected faults.
