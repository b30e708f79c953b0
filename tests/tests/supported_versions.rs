//! The versions Bulwark supports (README, "Supported versions", and
//! `bulwark-http`'s crate docs), held in CI two ways:
//!
//! - `Cargo.lock` must resolve each integrated crate to the stated version,
//!   once: a bump (or a second copy of tonic or reqwest entering the tree)
//!   fails here with a message naming the crate, not in a user's project.
//! - Each integration is compiled by naming the crates' own types: a reqwest
//!   client through the `ClientStack` and as a `reqwest-middleware`
//!   middleware, a tonic client (the gRPC preset and the stack by hand) and
//!   server, an axum server, a hyper client. If an upgrade breaks one, this file stops
//!   compiling at the function named after it.

use bulwark::http::body::{ReplayBody, ReplayGuardLayer};
use bulwark::http::{ClientStack, GrpcClassifier, HttpReplay, ServerStack};
use bytes::Bytes;
use http_body_util::Full;
use std::collections::BTreeMap;
use tower::{Service, ServiceBuilder};

/// What the README states: crate, version prefix, and whether the tree may
/// hold only that one version.
const SUPPORTED: &[(&str, &str, bool)] = &[
    ("reqwest", "0.13.", true),
    ("reqwest-middleware", "0.5.", true),
    ("tonic", "0.14.", true),
    ("tonic-health", "0.14.", true),
    ("tonic-prost", "0.14.", true),
    ("prost", "0.14.", true),
    ("axum", "0.8.", true),
    ("hyper", "1.", true),
    ("hyper-util", "0.1.", true),
    ("http", "1.", true),
    ("tower", "0.5.", true),
    // reqwest 0.13 itself still depends on tower-http 0.6.
    ("tower-http", "0.7.", false),
    ("metrics", "0.24.", true),
    ("metrics-exporter-prometheus", "0.18.", true),
];

/// Every `[[package]]` of the workspace's `Cargo.lock`: name → versions.
fn locked() -> BTreeMap<String, Vec<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    let text = std::fs::read_to_string(path).expect("the workspace's Cargo.lock");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut name = None;
    for line in text.lines() {
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            out.entry(n)
                .or_default()
                .push(v.trim_matches('"').to_owned());
        }
    }
    out
}

#[test]
fn cargo_lock_resolves_the_supported_versions() {
    let locked = locked();
    let readme = include_str!("../../README.md");
    let mut wrong = Vec::new();
    for &(krate, prefix, only) in SUPPORTED {
        let versions = locked.get(krate).cloned().unwrap_or_default();
        let fits = versions.iter().any(|v| v.starts_with(prefix));
        let extra: Vec<_> = versions.iter().filter(|v| !v.starts_with(prefix)).collect();
        if !fits || (only && !extra.is_empty()) {
            wrong.push(format!(
                "{krate}: Cargo.lock has {versions:?}, the supported version is {prefix}x"
            ));
        }
        let stated = prefix.trim_end_matches('.');
        if !readme.contains(&format!("| {krate} | {stated}"))
            && !readme.contains(&format!("{krate} {stated}"))
        {
            wrong.push(format!(
                "{krate}: README's \"Supported versions\" does not state {stated}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the supported versions drifted; update README's \"Supported versions\", \
         bulwark-http's crate docs, the integrations and this test together:\n  {}",
        wrong.join("\n  ")
    );
}

fn assert_service<S, Req>(_: &S)
where
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
}

/// reqwest 0.13: `reqwest::Client` through the HTTP `ClientStack`, called
/// with `reqwest::Request` and answering `reqwest::Response`.
#[test]
fn reqwest_client_through_the_client_stack() {
    let svc = ServiceBuilder::new()
        .layer(ClientStack::new().build().unwrap())
        .service(reqwest::Client::new());
    fn answers_reqwest<S>(s: &S)
    where
        S: Service<reqwest::Request, Response = reqwest::Response> + Clone + Send + Sync + 'static,
        S::Future: Send,
    {
        assert_service::<S, reqwest::Request>(s);
    }
    answers_reqwest(&svc);
}

/// reqwest-middleware 0.5: the stack as a middleware of reqwest 0.13's
/// client, `send()` answering `reqwest::Response`.
#[tokio::test]
async fn reqwest_middleware_with_the_client_stack() {
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(bulwark::http::middleware::BulwarkMiddleware::new(
            ClientStack::new().build().unwrap(),
        ))
        .build();
    let send = client.get("http://127.0.0.1:1/").send();
    fn answers<
        F: std::future::Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send,
    >(
        _: &F,
    ) {
    }
    answers(&send);
}

/// tonic 0.14: a generated client over a `Channel` behind the gRPC preset.
#[tokio::test]
async fn tonic_client_through_the_grpc_preset() {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    let layer = bulwark::http::grpc::GrpcClientStack::new("127.0.0.1:1")
        .build()
        .unwrap();
    let mut client =
        tonic_health::pb::health_client::HealthClient::new(tower::Layer::layer(&layer, channel));
    let call = client.check(tonic_health::pb::HealthCheckRequest::default());
    fn send<F: Send>(_: &F) {}
    send(&call);
}

/// hyper 1.x: hyper-util's legacy client through the HTTP `ClientStack`.
#[test]
fn hyper_client_through_the_client_stack() {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(ClientStack::new().build().unwrap())
        .service(client);
    // The body is hyper's `Incoming` wrapped by the stack's body deadline
    // and end-of-body verdict: still an `http_body::Body` of `Bytes`.
    fn answers_hyper<S, B>(s: &S)
    where
        S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        assert_service::<S, http::Request<Full<Bytes>>>(s);
    }
    answers_hyper(&svc);
}

/// axum 0.8: the `ServerStack` as a `Router` layer, served by `axum::serve`.
#[tokio::test]
async fn axum_server_with_the_server_stack() {
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(ServerStack::new().build().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Built, not run: the point is that it type-checks.
    let serve = axum::serve(listener, app);
    fn send<F: Send>(_: &F) {}
    send(&std::future::IntoFuture::into_future(serve));
}

/// tonic 0.14: a generated client over a `Channel` behind the `ClientStack`
/// with gRPC classification and body replay.
#[tokio::test]
async fn tonic_client_through_the_client_stack() {
    use tonic::body::Body;
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    let stack = ClientStack::new()
        .classifier(GrpcClassifier::new())
        .replay(HttpReplay::new().retry_all())
        .build()
        .unwrap()
        .replay_guard(ReplayGuardLayer::new());
    let svc = ServiceBuilder::new()
        .map_request(|r: http::Request<Body>| r.map(ReplayBody::new))
        .layer(stack)
        .map_request(|r: http::Request<ReplayBody<Body>>| r.map(Body::new))
        .service(channel);
    let mut client = tonic_health::pb::health_client::HealthClient::new(svc);
    // Built, not awaited (nothing listens there).
    let call = client.check(tonic_health::pb::HealthCheckRequest::default());
    fn send<F: Send>(_: &F) {}
    send(&call);
}

/// tonic 0.14: the `ServerStack` on a tonic server, its errors answered as
/// gRPC statuses of this tonic.
#[tokio::test]
async fn tonic_server_with_the_server_stack() {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let layer = ServerStack::new()
        .build()
        .unwrap()
        .map_errors_with(bulwark::http::status::grpc_error_response);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serve = tonic::transport::Server::builder()
        .layer(layer)
        .add_service(health)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    fn send<F: Send>(_: &F) {}
    send(&serve);
    // The gRPC server preset, as in the README.
    let (_reporter, health) = tonic_health::server::health_reporter();
    let serve = tonic::transport::Server::builder()
        .layer(bulwark::http::grpc::GrpcServerStack::new().build().unwrap())
        .add_service(health)
        .serve("127.0.0.1:0".parse().unwrap());
    send(&serve);
    let status: tonic::Status =
        bulwark::http::status::to_status(bulwark::error::CircuitOpen::new(None).into());
    assert_eq!(status.code(), tonic::Code::Unavailable);
}
