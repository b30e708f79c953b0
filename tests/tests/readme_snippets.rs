//! The README's `rust,ignore` blocks, compiled. Each block needs crates the
//! facade's own doctests do not have (reqwest, tonic, axum, the Prometheus
//! exporter), so the README cannot be run as the facade's doctest for them;
//! instead every block is copied here between `// README begin` and
//! `// README end`, inside a function that compiles, and the test below
//! fails when a README block and its compiled copy differ (line for line,
//! the copy's indentation aside), or when a copy has no README block left.
//! So an API change that breaks a README block breaks the build here, and
//! an edit of the README that is not compiled fails the test.

use bulwark::observe::Registry;
use bulwark::BoxError;

/// "HTTP clients and gRPC".
#[rustfmt::skip] // kept as in the README
#[allow(unused_variables, unused_mut)]
async fn http_clients_and_grpc() -> Result<(), BoxError> {
    // README begin
    // Compiled in CI by tests/tests/readme_snippets.rs, which fails when this
    // block and its compiled copy differ (needs reqwest, reqwest-middleware,
    // tonic and tonic-health in your Cargo.toml).
    use bulwark::http::ClientStack;
    use bulwark::http::middleware::BulwarkMiddleware;
    use bulwark::http::grpc::{GrpcClientStack, GrpcServerStack};
    use bulwark::observe::Registry;
    use tonic_health::pb::health_client::HealthClient; // a generated client (any will do)
    use tower::{Layer, ServiceExt};

    let registry = Registry::new(); // what health and metrics show: see "Operating it"

    // reqwest: keep `client.get(url).send()`.
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(BulwarkMiddleware::new(ClientStack::new().registry(&registry, "users").build()?))
        .build();
    let res = client.get("http://api.internal/users").send().await?;

    // reqwest as a tower service: `reqwest::Client` takes a `reqwest::Request`.
    let search = tower::ServiceBuilder::new()
        .layer(ClientStack::new().registry(&registry, "search").build()?)
        .service(reqwest::Client::new());
    let url = "http://search.internal/?q=bulwark".parse()?;
    let res = search.oneshot(reqwest::Request::new(reqwest::Method::GET, url)).await?;

    // tonic client: one breaker per origin (above a `Channel` requests carry no
    // authority), replayable bodies, errors as the right `tonic::Status`.
    let channel = tonic::transport::Endpoint::from_static("http://payments.internal:50051").connect_lazy();
    let grpc = GrpcClientStack::new("payments.internal:50051").registry(&registry, "payments").build()?;
    let mut payments = HealthClient::new(grpc.layer(channel)); // any generated client

    // tonic server: shed calls answer RESOURCE_EXHAUSTED with pushback.
    let (_reporter, health) = tonic_health::server::health_reporter(); // a generated service
    let addr = "127.0.0.1:50051".parse()?;
    tonic::transport::Server::builder()
        .layer(GrpcServerStack::new().registry(&registry, "grpc").build()?)
        .add_service(health)
        .serve(addr)
        .await?;
    // README end
    Ok(())
}

/// "Importing `bulwark::http` next to the `http` crate": runs, too.
#[rustfmt::skip] // kept as in the README
#[test]
fn importing_bulwark_http() -> Result<(), BoxError> {
    // README begin
    // Compiled and run in CI by tests/tests/readme_snippets.rs.
    use bulwark::http; // Bulwark's HTTP module, with the `http` crate's names
    use bulwark::http::ClientStack;

    let layer = ClientStack::new().build()?;
    let req = http::Request::post("http://api.local/orders")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(String::from("{}"))?;
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(http::StatusCode::from_u16(503)?, http::StatusCode::SERVICE_UNAVAILABLE);
    // README end
    drop(layer);
    Ok(())
}

/// "Operating it": an axum server with both probes and Prometheus.
#[rustfmt::skip] // kept as in the README
#[allow(unused_variables)]
fn axum_server_with_health_and_metrics() -> Result<(), BoxError> {
    // README begin
    // Compiled in CI by tests/tests/readme_snippets.rs.
    use bulwark::http::ServerStack;
    use bulwark::observe::{HealthRouter, Registry};
    use metrics_exporter_prometheus::PrometheusBuilder;

    // Install the recorder before building the stacks: metric handles made
    // before it stay no-ops.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let registry = Registry::new();
    let app: axum::Router = axum::Router::new()
        .route("/work", axum::routing::get(|| async { "done" }))
        .layer(ServerStack::new().registry(&registry, "server").build()?);
    let ops: axum::Router = HealthRouter::new(registry.clone()).into_router().route(
        "/metrics",
        axum::routing::get(move || {
            registry.update_gauges(); // gauges (in flight, breaker states, budgets) are read at scrape time
            std::future::ready(prometheus.render())
        }),
    );
    // Serve `app` on the public port, `ops` on an internal one.
    // README end
    Ok(())
}

/// "Operating it": a client stack from a file, rebuilt on reload.
#[rustfmt::skip] // kept as in the README
#[allow(unused_assignments)]
async fn config_reload(registry: Registry) -> Result<(), BoxError> {
    // README begin
    // Compiled in CI by tests/tests/readme_snippets.rs (features
    // `config-reload` and `reqwest`).
    use bulwark::config::reload::Reloader;
    use tower::ServiceBuilder;

    let reloader = Reloader::new("bulwark.toml", &registry)?;
    let stack = reloader.config().http_client_stack("payments", &registry)?.build()?;
    let mut payments = ServiceBuilder::new().layer(stack).service(reqwest::Client::new());
    let mut updates = reloader.subscribe();
    tokio::spawn(reloader.watch(|report| match report {
        Ok(report) => eprintln!("bulwark.toml reloaded: {report}"),
        Err(e) => eprintln!("bulwark.toml not reloaded, the old settings stay: {e}"),
    })?);
    // Where the client lives: build it again when a reload publishes a new
    // configuration (the registry hands back the same breakers, their state kept).
    while updates.changed().await.is_ok() {
        let config = updates.borrow_and_update().clone();
        let stack = config.http_client_stack("payments", &registry)?.build()?;
        payments = ServiceBuilder::new().layer(stack).service(reqwest::Client::new());
    }
    // README end
    drop(payments);
    Ok(())
}

/// The fenced blocks of `markdown` whose info string is `info`.
fn blocks(markdown: &str, info: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim() == format!("```{info}") => current = Some(Vec::new()),
            None => {}
            Some(_) if line.trim() == "```" => out.extend(current.take()),
            Some(block) => block.push(line.trim_end().to_owned()),
        }
    }
    out
}

/// The regions of `source` between `// README begin` and `// README end`,
/// without their common indentation.
fn copies(source: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in source.lines() {
        match (current.as_mut(), line.trim()) {
            (None, "// README begin") => current = Some(Vec::new()),
            (Some(_), "// README end") => {
                let region = current.take().unwrap_or_default();
                let indent = region
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| l.len() - l.trim_start().len())
                    .min()
                    .unwrap_or(0);
                out.push(
                    region
                        .iter()
                        .map(|l| l.get(indent..).unwrap_or("").trim_end().to_owned())
                        .collect(),
                );
            }
            (Some(region), _) => region.push(line),
            (None, _) => {}
        }
    }
    out
}

#[test]
fn every_readme_block_is_the_compiled_copy() {
    // The copies compile (this file builds); they are not run: their hosts
    // are examples.
    let _ = (
        http_clients_and_grpc,
        axum_server_with_health_and_metrics,
        config_reload,
    );
    let readme = blocks(include_str!("../../README.md"), "rust,ignore");
    let copies = copies(include_str!("readme_snippets.rs"));
    assert!(
        !readme.is_empty(),
        "no rust,ignore block found in the README"
    );
    for block in &readme {
        assert!(
            copies.contains(block),
            "this README block is not compiled: copy it into tests/tests/readme_snippets.rs \
             between `// README begin` and `// README end` (or fix the copy to match):\n{}",
            block.join("\n")
        );
    }
    for copy in &copies {
        assert!(
            readme.contains(copy),
            "this compiled copy matches no README block (the README changed?):\n{}",
            copy.join("\n")
        );
    }
}

#[test]
fn the_drift_check_sees_a_changed_line() {
    let readme = "```rust,ignore\nlet a = 1;\n```\n";
    let same = "fn f() {\n    // README begin\n    let a = 1;\n    // README end\n}\n";
    let changed = "fn f() {\n    // README begin\n    let a = 2;\n    // README end\n}\n";
    let block = blocks(readme, "rust,ignore");
    assert_eq!(copies(same), block);
    assert_ne!(copies(changed), block);
}
