//! The stack's defaults, in one place.

use bulwark_breaker::{Breaker, BreakerBuilder};
use bulwark_bulkhead::{BulkheadBuilder, BulkheadLayer};
use bulwark_retry::RetryLayer;
use bulwark_throttle::{AdaptiveThrottleBuilder, AdaptiveThrottleLayer};
use std::time::Duration;

/// What the caller waits at most, unless told.
pub(crate) const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn retry() -> RetryLayer {
    RetryLayer::new()
}

pub(crate) fn breaker() -> BreakerBuilder {
    Breaker::builder()
}

pub(crate) fn bulkhead() -> BulkheadBuilder {
    BulkheadLayer::builder().max_concurrent(100)
}

/// The adaptive throttle's settings when turned on (it is off by default).
pub(crate) fn throttle() -> AdaptiveThrottleBuilder {
    AdaptiveThrottleLayer::builder()
}
