//! The server path's cost per request: a bare axum `Router`, the same router
//! with a no-op `Router::layer` (axum's own cost of a layer), and the same
//! router with the `ServerStack`, each driven with `oneshot` on in-memory
//! `http::Request`s in a current-thread runtime (no network).
//!
//! Run with `cargo bench -p bulwark-benches --bench server_path -- MODE N`,
//! where MODE is `bare`, `noop-layer`, `stack` or `sizes`; without arguments
//! (as under `cargo test --benches`) every mode runs a few requests, as a
//! smoke test. `benches/scripts/server_instructions.sh` runs it under
//! callgrind to count instructions per request.

use axum::routing::get;
use axum::Router;
use std::convert::Infallible;
use std::hint::black_box;
use tower::{Layer, Service, ServiceExt};

/// What every request carries: what a browser or `curl` would send.
fn request() -> http::Request<axum::body::Body> {
    http::Request::get("/")
        .header(http::header::HOST, "localhost:3000")
        .header(http::header::USER_AGENT, "curl/8.5.0")
        .header(http::header::ACCEPT, "*/*")
        .body(axum::body::Body::empty())
        .expect("a valid request")
}

fn bare() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// A layer that does nothing: what axum's `Router::layer` costs on its own.
#[derive(Clone, Copy, Debug)]
struct NoopLayer;

impl<S> Layer<S> for NoopLayer {
    type Service = S;
    fn layer(&self, inner: S) -> S {
        inner
    }
}

fn router(mode: &str) -> Router {
    match mode {
        "bare" => bare(),
        "noop-layer" => bare().layer(NoopLayer),
        "stack" => bare().layer(
            bulwark_http::ServerStack::new()
                .build()
                .expect("the default stack is valid"),
        ),
        other => panic!("unknown mode {other:?}: bare, noop-layer, stack or sizes"),
    }
}

fn drive(mode: &str, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    // What `axum::serve` does: `with_state` turns the handlers into routes
    // once, instead of at every request.
    let app = router(mode).with_state(());
    rt.block_on(async {
        for _ in 0..n {
            let res = app.clone().oneshot(request()).await.expect("infallible");
            assert_eq!(res.status(), http::StatusCode::OK);
            black_box(res);
        }
    });
}

fn sizes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();
    let handler = tower::service_fn(|_: http::Request<axum::body::Body>| async {
        Ok::<_, Infallible>(http::Response::new(axum::body::Body::empty()))
    });
    let layer = bulwark_http::ServerStack::new()
        .build()
        .expect("the default stack is valid");
    let mut stack = layer.layer(handler);
    let mut plain = handler;
    let bare_future = plain.call(request());
    let stack_future = stack.call(request());
    println!(
        "handler future: {} bytes; ServerStack future around it: {} bytes; ServerStack service around it: {} bytes",
        std::mem::size_of_val(&bare_future),
        std::mem::size_of_val(&stack_future),
        std::mem::size_of_val(&stack),
    );
    for mode in ["bare", "noop-layer", "stack"] {
        let future = router(mode).with_state(()).oneshot(request());
        println!(
            "{mode}: Router oneshot future {} bytes",
            std::mem::size_of_val(&future)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [mode] if mode == "sizes" => sizes(),
        [mode, n] => drive(mode, n.parse().expect("N is a number of requests")),
        _ => {
            for mode in ["bare", "noop-layer", "stack"] {
                drive(mode, 10);
            }
            sizes();
        }
    }
}
