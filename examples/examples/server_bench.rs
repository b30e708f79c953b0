//! Run with: cargo run --release --example server_bench -- MODE PORT
//!
//! The server half of `benches/scripts/server_overhead.sh` (not an example to
//! read): serves `GET /` → `"ok"` on 127.0.0.1:PORT with axum, on one tokio
//! worker thread, either bare (MODE `bare`) or behind Bulwark's default
//! `ServerStack` (MODE `stack`), until killed. The script drives both with a
//! closed-loop load generator and compares them.

use axum::routing::get;
use axum::Router;
use bulwark::http::ServerStack;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: server_bench bare|stack PORT";
    let mode = args.next().ok_or(usage)?;
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let app = Router::new().route("/", get(|| async { "ok" }));
    let app = match mode.as_str() {
        "bare" => app,
        "stack" => app.layer(ServerStack::new().build()?),
        _ => return Err(usage.into()),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            axum::serve(listener, app).await?;
            Ok(())
        })
}
