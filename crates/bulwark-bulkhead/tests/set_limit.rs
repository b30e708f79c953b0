//! Changing a static limit in place (configuration reloads).

use bulwark_bulkhead::adaptive::Aimd;
use bulwark_bulkhead::BulkheadLayer;
use bulwark_core::BoxError;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn raising_the_limit_admits_a_waiter_and_lowering_keeps_calls_in_flight() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(60))
        .build_shared();
    let handle = layer.handle().unwrap();
    let mut svc = layer.layer(tower::service_fn(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, BoxError>(ms)
    }));
    let first = svc.ready().await.unwrap().call(1_000);
    let waiter = tokio::spawn(svc.clone().oneshot(1));
    tokio::task::yield_now().await;
    assert_eq!(handle.queued(), 1);

    handle.set_limit(2).unwrap();
    // The waiter got the new permit without waiting for `first`.
    assert_eq!(waiter.await.unwrap().unwrap(), 1);
    assert_eq!(handle.in_flight(), 1);

    handle.set_limit(1).unwrap();
    assert_eq!(handle.in_flight(), 1, "the call in flight is kept");
    assert_eq!(first.await.unwrap(), 1_000);
    assert_eq!(handle.in_flight(), 0);
}

#[test]
fn adaptive_and_zero_limits_are_refused() {
    let adaptive = BulkheadLayer::builder()
        .adaptive(Aimd::new(10))
        .build_shared();
    let err = adaptive.handle().unwrap().set_limit(5).unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
    let fixed = BulkheadLayer::builder().build_shared().handle().unwrap();
    assert!(fixed.set_limit(0).is_err());
    assert_eq!(fixed.limit(), 64);
}
