//! The HTTP stacks built from a configuration: the same stacks as
//! `bulwark-http`'s (status classifier, Retry-After, per-host breakers),
//! registered, `Sync`, and changed in place by `apply`. Paused time.
#![cfg(feature = "http")]

use bulwark_config::ResilienceConfig;
use bulwark_core::BoxError;
use bulwark_observe::Registry;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

fn sync<T: Send + Sync + Clone + 'static>(_: &T) {}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_client_stack_is_the_http_one_per_host_and_sync() {
    let config = ResilienceConfig::from_toml_str(
        r#"
        [breaker.cfg-up]
        consecutive_failures = 2
        open_for = "1m"
        [retry.cfg-up]
        max_attempts = 3
        backoff = "constant"
        initial_backoff = "10ms"
        [timeout.cfg-up]
        total = "10s"
        "#,
    )
    .unwrap();
    let registry = Registry::new();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let transport = tower::service_fn(move |req: http::Request<String>| {
        seen.fetch_add(1, Ordering::SeqCst);
        let status = if req.uri().host() == Some("bad.example") {
            503
        } else {
            200
        };
        let res = http::Response::builder()
            .status(status)
            .header("retry-after", "1")
            .body(String::new())
            .unwrap();
        std::future::ready(Ok::<_, BoxError>(res))
    });
    let client = ServiceBuilder::new()
        .layer(
            config
                .http_client_stack("cfg-up", &registry)
                .unwrap()
                .build()
                .unwrap(),
        )
        .service(transport);
    sync(&client);
    let get = |host: &str| {
        http::Request::get(format!("http://{host}/"))
            .body(String::new())
            .unwrap()
    };
    // A GET to a failing host: retried after its Retry-After (1 s), until
    // the host's breaker opens after two failures.
    let start = tokio::time::Instant::now();
    let res = client.clone().oneshot(get("bad.example")).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(start.elapsed() >= Duration::from_secs(1));
    drop(res);
    // A POST is never retried; the other host is not cut off.
    let post = http::Request::post("http://good.example/")
        .body(String::new())
        .unwrap();
    assert_eq!(client.clone().oneshot(post).await.unwrap().status(), 200);
    let hosts = registry
        .get_keyed_breakers::<http::uri::Authority>("cfg-up")
        .unwrap();
    let bad: http::uri::Authority = "bad.example".parse().unwrap();
    assert!(hosts.get(&bad).unwrap().state().is_rejecting());
    assert!(!registry.health().is_healthy());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_server_stack_sheds_and_a_reload_raises_its_limit_in_place() {
    let before =
        ResilienceConfig::from_toml_str("[bulkhead.cfg-srv]\nmax_concurrent = 1\n").unwrap();
    let registry = Registry::new();
    let layer = before.server_stack("cfg-srv", &registry).build().unwrap();
    let handler = tower::service_fn(|_: http::Request<String>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    let svc = ServiceBuilder::new().layer(layer).service(handler);
    sync(&svc);
    let req = || http::Request::new(String::new());
    let mut first = svc.clone();
    first.ready().await.unwrap();
    let held = tokio::spawn(first.call(req()));
    tokio::task::yield_now().await;
    let shed = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert!(!registry.readiness().ready);

    // The new limit, in place: the next request is admitted.
    let after =
        ResilienceConfig::from_toml_str("[bulkhead.cfg-srv]\nmax_concurrent = 2\n").unwrap();
    after.apply(&registry).unwrap();
    let admitted = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(admitted.status(), 200);
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    assert_eq!(registry.health().bulkheads[0].rejections, 1);
}

#[test]
fn the_generic_layer_is_sync() {
    let config = ResilienceConfig::default();
    let registry = Registry::new();
    let svc = ServiceBuilder::new()
        .layer(config.client_layer("cfg-gen", &registry).unwrap())
        .service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
    sync(&svc);
}
