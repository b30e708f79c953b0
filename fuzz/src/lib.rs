//! What the fuzz targets share: a configuration that loads must build and
//! carry a call through every stack and layer it describes, without a panic.

use bulwark::config::ResilienceConfig;
use bulwark::observe::Registry;
use bulwark::BoxError;
use std::sync::OnceLock;
use tower::ServiceExt;

/// One current-thread runtime in paused time for the whole process: the
/// calls below wait only on timers, which paused time runs at once.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    })
}

/// A service that waits once (so timers are registered), then fails the
/// first `fail` calls and answers the rest.
fn flaky(
    fail: u32,
) -> impl tower::Service<u32, Response = u32, Error = BoxError, Future = impl Send> + Clone {
    let left = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(fail));
    tower::service_fn(move |x: u32| {
        let left = left.clone();
        async move {
            tokio::task::yield_now().await;
            let failing = left
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok();
            if failing {
                Err::<u32, BoxError>("injected".into())
            } else {
                Ok(x)
            }
        }
    })
}

/// Builds everything `config` names and sends calls through it: the generic
/// client stack and the registry's client layer, against a service failing
/// its first `fail` calls; every layer's own builder; a reload.
pub fn exercise(config: &ResilienceConfig, fail: u32) {
    let registry = Registry::new();
    let mut names: Vec<String> = config.names().into_iter().map(str::to_owned).collect();
    names.push("unnamed".to_owned());
    for name in &names {
        let name = name.as_str();
        let _ = config.breaker(name).builder().build();
        let _ = config.retry(name).layer();
        let _ = config.retry(name).backoff();
        let _ = config.retry_budget(name).budget();
        let _ = config.bulkhead(name).builder().build();
        let _ = config.timeout(name);
        let _ = config.keyed_breaker(name);
        if let Ok(stack) = config.client_stack(name) {
            if let Ok(layer) = stack.build() {
                let svc = tower::ServiceBuilder::new()
                    .layer(layer)
                    .service(flaky(fail));
                for i in 0..3 {
                    let _ = runtime().block_on(svc.clone().oneshot(i));
                }
            }
        }
        if let Ok(layer) = config.client_layer::<u32>(name, &registry) {
            let svc = tower::ServiceBuilder::new()
                .layer(layer)
                .service(flaky(fail));
            for i in 0..3 {
                let _ = runtime().block_on(svc.clone().oneshot(i));
            }
        }
    }
    let _ = config.apply(&registry);
}
