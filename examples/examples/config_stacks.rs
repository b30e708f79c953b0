//! Run with: cargo run --example config_stacks
//!
//! Builds one client stack per upstream from `examples/config/bulwark.toml`
//! (plus `BULWARK_*` environment overrides): payments, search and
//! recommendations each get their own timeouts, retry, breaker and
//! bulkhead, with shared defaults and a retry budget shared by two of them.
//! Then it breaks the payments upstream, reloads a stricter configuration
//! without losing the open breaker, and prints the health as JSON.
//!
//! The upstreams are in-process services; nothing leaves the process.

use bulwark::config::ResilienceConfig;
use bulwark::observe::Registry;
use bulwark::BoxError;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

type Client = BoxCloneSyncService<String, String, BoxError>;

/// A fake upstream: answers in 5 ms, or fails while `down` is set.
fn upstream(name: &'static str, down: Arc<AtomicBool>) -> Client {
    BoxCloneSyncService::new(tower::service_fn(move |req: String| {
        let down = down.load(Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if down {
                Err::<String, BoxError>(format!("{name} is down").into())
            } else {
                Ok(format!("{name} answered {req}"))
            }
        }
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/bulwark.toml");
    let config = ResilienceConfig::load(path)?;
    println!("loaded {path}: enabled = {}", config.enabled());

    let registry = Registry::new();
    let payments_down = Arc::new(AtomicBool::new(false));
    let mut clients: BTreeMap<&str, Client> = BTreeMap::new();
    for name in ["payments", "search", "recommendations"] {
        let down = if name == "payments" {
            payments_down.clone()
        } else {
            Arc::new(AtomicBool::new(false))
        };
        let client = ServiceBuilder::new()
            .layer(config.client_layer(name, &registry)?)
            .service(upstream(name, down));
        let b = config.breaker(name);
        println!(
            "{name:>16}: failure_rate {} | retry x{} | timeouts {:?}/{:?} | bulkhead {}",
            b.failure_rate,
            config.retry(name).max_attempts,
            config.timeout(name).total,
            config.timeout(name).attempt,
            config.bulkhead(name).max_concurrent,
        );
        clients.insert(name, client);
    }

    for (name, client) in &clients {
        let answer = client.clone().oneshot("GET /".to_owned()).await?;
        println!("{name:>16}: {answer}");
    }

    // Payments goes down: its breaker (20% over at least 5 calls) opens.
    payments_down.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let r = clients["payments"]
            .clone()
            .oneshot("POST /charge".into())
            .await;
        if let Err(e) = r {
            println!("        payments: {e}");
        }
    }
    let payments = registry.get_breaker("payments").expect("made by the stack");
    println!("payments breaker: {}", payments.state());

    // A reload: new thresholds, same instances, state kept.
    let stricter = bulwark::config::Loader::new()
        .file(path)
        .toml("[breaker.payments]\nfailure_rate = 0.1\n[bulkhead.search]\nmax_concurrent = 4")
        .env()
        .load()?;
    stricter.apply(&registry)?;
    println!(
        "after reload: payments breaker still {}, search bulkhead limit {}",
        payments.state(),
        registry.get_bulkhead("search").map_or(0, |h| h.limit())
    );

    println!("{}", serde_json::to_string_pretty(&registry.health())?);
    Ok(())
}
