//! The gRPC presets against real tonic servers (the gRPC health service) on
//! 127.0.0.1 with injected faults: per-origin breakers above tonic
//! channels (never one shared `unknown`), errors as the right
//! `tonic::Status`, a server's own deadline cancel neither retried nor
//! counted, and a shed call answered `RESOURCE_EXHAUSTED` with pushback.

use bulwark::http::classify::GrpcCode;
use bulwark::http::grpc::{GrpcClientStack, GrpcServerStack};
use bulwark::http::GrpcClassifier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::{Layer, Service};

/// What the server does with the next calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Fail(Code),
    Hang,
}

/// Applies the script's mode to every call, and counts the calls.
#[derive(Clone)]
struct Fault<S> {
    inner: S,
    script: Arc<Script>,
}

struct Script {
    mode: Mutex<Mode>,
    seen: AtomicUsize,
}

impl<S> Service<http::Request<Body>> for Fault<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, S::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.script.seen.fetch_add(1, Ordering::SeqCst);
        match *self.script.mode.lock().unwrap() {
            Mode::Pass => Box::pin(self.inner.call(req)),
            Mode::Fail(code) => {
                let res = tonic::Status::new(code, "injected").into_http();
                Box::pin(async move { Ok(res) })
            }
            Mode::Hang => Box::pin(std::future::pending()),
        }
    }
}

/// A health server on 127.0.0.1 whose own timeout is `timeout`, with the
/// server preset `preset` (if any) in front of the fault.
async fn serve(
    timeout: Option<Duration>,
    preset: Option<GrpcServerStack>,
) -> (Channel, String, Arc<Script>) {
    let script = Arc::new(Script {
        mode: Mutex::new(Mode::Pass),
        seen: AtomicUsize::new(0),
    });
    let (reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer_script = script.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    let preset = preset.map(|p| p.build().unwrap());
    tokio::spawn(async move {
        let _reporter = reporter;
        builder
            .layer(tower::util::option_layer(preset))
            .layer(tower::layer::layer_fn(move |inner| Fault {
                inner,
                script: layer_script.clone(),
            }))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let origin = addr.to_string();
    let channel = Endpoint::from_shared(format!("http://{origin}"))
        .unwrap()
        .connect_lazy();
    (channel, origin, script)
}

fn set(script: &Script, mode: Mode) {
    *script.mode.lock().unwrap() = mode;
    script.seen.store(0, Ordering::SeqCst);
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest::default()
}

#[tokio::test]
async fn breakers_are_per_origin_above_channels_and_errors_are_statuses() {
    let (chan_a, origin_a, script_a) = serve(None, None).await;
    let (chan_b, origin_b, script_b) = serve(None, None).await;
    let layer = GrpcClientStack::new(origin_a.clone())
        .client_stack(|s| {
            s.breaker(|b| b.name("grpc").consecutive_failures(3))
                .retry(|r| {
                    r.backoff(bulwark::backoff::BackoffPolicy::constant(
                        Duration::from_millis(1),
                    ))
                })
        })
        .build()
        .unwrap();
    let layer_b = layer.for_origin(origin_b.parse().unwrap());
    let mut a = HealthClient::new(layer.layer(chan_a));
    let mut b = HealthClient::new(layer_b.layer(chan_b));

    // A healthy, B down: B's calls are retried (3 attempts) and fail
    // UNAVAILABLE; its breaker opens after 3 failures in a row.
    set(&script_b, Mode::Fail(Code::Unavailable));
    let status = b.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(script_b.seen.load(Ordering::SeqCst), 3, "retried");
    // Now open: refused locally, as UNAVAILABLE naming the breaker, not UNKNOWN.
    set(&script_b, Mode::Fail(Code::Unavailable));
    let status = b.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .contains(&format!("circuit breaker 'grpc/{origin_b}' is open")),
        "{status:?}"
    );
    assert_eq!(script_b.seen.load(Ordering::SeqCst), 0, "refused locally");

    // A has its own breaker, closed.
    assert!(a.check(check()).await.is_ok());
    assert_eq!(script_a.seen.load(Ordering::SeqCst), 1);

    let breakers = layer.breakers().unwrap();
    let mut keys: Vec<String> = breakers
        .entries()
        .into_iter()
        .map(|(k, _)| k.to_string())
        .collect();
    keys.sort();
    let mut expected = vec![origin_a.clone(), origin_b.clone()];
    expected.sort();
    assert_eq!(keys, expected, "one breaker per origin, none `unknown`");
    assert_eq!(
        breakers.get(&origin_b.parse().unwrap()).unwrap().state(),
        bulwark::breaker::State::Open
    );
    assert_eq!(
        breakers.get(&origin_a.parse().unwrap()).unwrap().state(),
        bulwark::breaker::State::Closed
    );
}

#[tokio::test]
async fn a_servers_own_deadline_cancel_is_neither_retried_nor_counted() {
    // The server cancels calls that outlive 50 ms (as it does at a caller's
    // grpc-timeout): CANCELLED "Timeout expired".
    let (chan, origin, script) = serve(Some(Duration::from_millis(50)), None).await;
    // Even with CANCELLED made a failure, the deadline cancel is not one.
    let layer = GrpcClientStack::new(origin.clone())
        .client_stack(|s| {
            s.total_timeout(Duration::from_secs(20))
                .attempt_timeout(Duration::from_secs(10))
                .classifier(GrpcClassifier::new().failure(GrpcCode::Cancelled))
        })
        .build()
        .unwrap();
    let mut client = HealthClient::new(layer.layer(chan));
    set(&script, Mode::Hang);
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert_eq!(status.message(), "Timeout expired");
    assert_eq!(script.seen.load(Ordering::SeqCst), 1, "not retried");
    let snap = layer
        .breakers()
        .unwrap()
        .get(&origin.parse().unwrap())
        .unwrap()
        .snapshot();
    assert_eq!((snap.calls, snap.failures), (0, 0), "not counted");

    // The same code for another reason is a failure, and retried.
    set(&script, Mode::Fail(Code::Cancelled));
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Cancelled);
    assert_eq!(script.seen.load(Ordering::SeqCst), 3, "retried");
}

#[tokio::test]
async fn the_clients_own_timeout_is_deadline_exceeded() {
    let (chan, origin, script) = serve(None, None).await;
    let layer = GrpcClientStack::new(origin)
        .client_stack(|s| s.total_timeout(Duration::from_millis(100)).no_retry())
        .build()
        .unwrap();
    let mut client = HealthClient::new(layer.layer(chan));
    set(&script, Mode::Hang);
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test]
async fn the_server_preset_sheds_with_resource_exhausted_and_pushback() {
    let preset = GrpcServerStack::new()
        .server_stack(|s| s.bulkhead(|b| b.max_concurrent(1)))
        .shed_pushback(Duration::from_millis(250));
    let (chan, _origin, script) = serve(None, Some(preset)).await;
    set(&script, Mode::Hang);
    // One call holds the only permit...
    let mut first = HealthClient::new(chan.clone());
    let held = tokio::spawn(async move { first.check(check()).await });
    while script.seen.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // ...so the next is shed at once, with pushback.
    let mut second = HealthClient::new(chan);
    let status = second.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "250"
    );
    assert_eq!(
        script.seen.load(Ordering::SeqCst),
        1,
        "the handler ran once"
    );
    held.abort();
}

/// The value of the Prometheus sample `metric` whose labels include every
/// one of `labels` (`None` when there is none).
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
}

/// Both presets registered with `.registry(..)`: health and the Prometheus
/// text count exactly what the client and the server did. (The only test
/// of this binary that installs the process-wide recorder; its instances'
/// names are its own.)
#[tokio::test]
async fn registered_presets_show_in_health_and_prometheus() {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let registry = bulwark::observe::Registry::new();
    let preset = GrpcServerStack::new()
        .registry(&registry, "ops-grpc-server")
        .server_stack(|s| {
            s.bulkhead(|b| b.max_concurrent(1))
                .timeout(Duration::from_secs(1))
        })
        .shed_pushback(Duration::from_millis(50));
    let (chan, origin, script) = serve(None, Some(preset)).await;
    let layer = GrpcClientStack::new(origin)
        .registry(&registry, "ops-grpc-client")
        .client_stack(|s| s.retry(|r| r.max_attempts(2)))
        .build()
        .unwrap();
    let client = HealthClient::new(layer.layer(chan));

    // 3 calls, each failing twice: 3 retries, 3 give-ups, 6 calls served.
    set(&script, Mode::Fail(Code::Unavailable));
    for _ in 0..3 {
        let status = client.clone().check(check()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    assert_eq!(script.seen.load(Ordering::SeqCst), 6);

    // One call holds the server's only permit until the server's own
    // timeout (1 s), twice; the other is shed, twice (pushback 50 ms).
    set(&script, Mode::Hang);
    let mut first = client.clone();
    let held = tokio::spawn(async move { first.check(check()).await });
    while script.seen.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let shed = client.clone().check(check()).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    let late = held.await.unwrap().unwrap_err();
    assert_eq!(late.code(), Code::DeadlineExceeded, "{late:?}");
    assert_eq!(
        script.seen.load(Ordering::SeqCst),
        2,
        "the shed calls never ran"
    );

    let health = registry.health();
    let server = health
        .bulkheads
        .iter()
        .find(|b| b.name == "ops-grpc-server")
        .unwrap();
    assert!(server.serving);
    assert_eq!(server.rejections, 2);
    let timeout = health
        .timeouts
        .iter()
        .find(|t| t.name == "ops-grpc-server")
        .unwrap();
    assert_eq!(timeout.request, 2);
    let retry = health
        .retries
        .iter()
        .find(|r| r.name == "ops-grpc-client")
        .unwrap();
    assert_eq!((retry.retries, retry.gave_up), (5, 5));
    let keyed = health
        .keyed_breakers
        .iter()
        .find(|k| k.name == "ops-grpc-client")
        .unwrap();
    assert_eq!(keyed.keys, 1, "one breaker, for the origin");
    for name in ["ops-grpc-client/total", "ops-grpc-client/attempt"] {
        assert!(health.timeouts.iter().any(|t| t.name == name), "{name}");
    }
    assert!(health
        .bulkheads
        .iter()
        .any(|b| b.name == "ops-grpc-client" && !b.serving));
    assert!(health
        .retry_budgets
        .iter()
        .any(|b| b.name == "ops-grpc-client"));

    registry.update_gauges();
    let text = prometheus.render();
    let server = r#"name="ops-grpc-server""#;
    let client = r#"name="ops-grpc-client""#;
    let at_capacity = r#"reason="at_capacity""#;
    let exhausted = r#"reason="attempts_exhausted""#;
    let want = [
        (
            "bulwark_bulkhead_rejected_total",
            vec![server, at_capacity],
            2.0,
        ),
        (
            "bulwark_timeouts_total",
            vec![server, r#"limit="request""#],
            2.0,
        ),
        ("bulwark_bulkhead_limit", vec![server], 1.0),
        ("bulwark_retries_total", vec![client], 5.0),
        ("bulwark_retry_gave_up_total", vec![client, exhausted], 5.0),
        ("bulwark_keyed_breaker_keys", vec![client], 1.0),
        ("bulwark_keyed_breaker_open_keys", vec![client], 0.0),
        ("bulwark_bulkhead_limit", vec![client], 100.0),
    ];
    for (metric, labels, value) in want {
        assert_eq!(
            sample(&text, metric, &labels),
            Some(value),
            "{metric}{labels:?} in:\n{text}"
        );
    }
    for name in ["ops-grpc-client/total", "ops-grpc-client/attempt"] {
        let label = format!(r#"name="{name}""#);
        assert!(
            sample(&text, "bulwark_timeouts_total", &[&label]).is_some(),
            "{name} in:\n{text}"
        );
    }
}
