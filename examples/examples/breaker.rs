//! A circuit breaker in front of a flaky service: watch it trip, reject,
//! probe and close.
//!
//! Run with: cargo run --example breaker
//!
//! The upstream is healthy for a moment, then fails every call (an outage),
//! then recovers. A client calls it every 50 ms through a `CircuitBreaker`
//! and prints what happens to each call, and every state change the breaker
//! reports through its event listener.

use bulwark::breaker::{BreakerEvent, BreakerEventKind};
use bulwark::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

/// The upstream's script: healthy, then down from 0.5 s to 2.0 s, then
/// healthy again.
fn upstream_is_down(elapsed: Duration) -> bool {
    elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(2_000)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let stamp = move || format!("{:>5.2}s", start.elapsed().as_secs_f64());

    let breaker = Breaker::builder()
        .name("inventory")
        .count_window(10)
        .minimum_calls(5)
        .failure_rate(0.5)
        .open_for(Duration::from_millis(600))
        .permitted_probes(1)
        .successes_to_close(2)
        .failures_to_reopen(1)
        .on_event(move |e: &BreakerEvent| {
            if let BreakerEventKind::StateChanged(t) = &e.kind {
                println!(
                    "{}  ⚡ breaker '{}': {} -> {} ({})",
                    stamp(),
                    e.name.as_deref().unwrap_or("?"),
                    t.from,
                    t.to,
                    t.reason
                );
            }
        })
        .build()?;

    let upstream_calls = Arc::new(AtomicU32::new(0));
    let counter = upstream_calls.clone();
    let mut client = ServiceBuilder::new()
        .circuit_breaker(breaker.clone())
        .service_fn(move |n: u32| {
            counter.fetch_add(1, Ordering::Relaxed);
            let down = upstream_is_down(start.elapsed());
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if down {
                    Err::<String, BoxError>("503 upstream unavailable".into())
                } else {
                    Ok(format!("item #{n}"))
                }
            }
        });

    println!("calling a flaky upstream every 50 ms for 3 s (down from 0.5 s to 2.0 s)\n");
    let (mut ok, mut failed, mut rejected) = (0, 0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for n in 1..=60 {
        tick.tick().await;
        let result = client.ready().await?.call(n).await;
        let at = format!("{:>5.2}s", start.elapsed().as_secs_f64());
        match result {
            Ok(body) => {
                ok += 1;
                println!("{at}  call {n:>2}  ok        {body}");
            }
            Err(e) if is_caused_by::<CircuitOpen>(&*e) => {
                rejected += 1;
                println!("{at}  call {n:>2}  rejected  {e}");
            }
            Err(e) => {
                failed += 1;
                println!("{at}  call {n:>2}  failed    {e}");
            }
        }
    }

    let snap = breaker.snapshot();
    println!("\nsummary");
    println!("  calls made by the client     60");
    println!("  succeeded                    {ok}");
    println!("  failed at the upstream       {failed}");
    println!("  rejected by the breaker      {rejected}  (never reached the upstream)");
    println!(
        "  calls the upstream served    {}",
        upstream_calls.load(Ordering::Relaxed)
    );
    println!(
        "  breaker now                  {} after {} transitions",
        snap.state,
        snap.history.len()
    );
    Ok(())
}
