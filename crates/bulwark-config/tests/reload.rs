//! The reload loop: what applies in place, what needs a rebuild or a
//! restart, environment overrides, a bad file, and the file watch and
//! SIGHUP triggers.
#![cfg(feature = "reload")]

use bulwark_breaker::State;
use bulwark_config::reload::{Effect, Reloader};
use bulwark_observe::Registry;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The process's environment is shared by the tests of this file, which run
/// in parallel: one that sets `BULWARK_` variables must not run while
/// another reads them.
static ENV: Mutex<()> = Mutex::new(());

fn env_lock() -> MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh folder for one test's file.
fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bulwark-reload-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const BEFORE: &str = r#"
[breaker.rld-a]
consecutive_failures = 5
open_for = "10m"
[bulkhead.rld-a]
max_concurrent = 4
[timeout.rld-a]
total = "2s"
[retry_budget.rld-a]
ratio = 0.2
"#;

const AFTER: &str = r#"
[breaker.rld-a]
consecutive_failures = 2
open_for = "10m"
[bulkhead.rld-a]
max_concurrent = 8
max_wait = "1s"
[timeout.rld-a]
total = "3s"
[retry_budget.rld-a]
ratio = 0.5
"#;

#[test]
fn a_reload_applies_in_place_and_says_what_needs_a_rebuild_or_restart() {
    let _env = env_lock();
    let file = dir("classify").join("bulwark.toml");
    std::fs::write(&file, BEFORE).unwrap();
    let registry = Registry::new();
    let reloader = Reloader::new(&file, &registry).unwrap();
    let config = reloader.config();
    let breaker = registry
        .breaker("rld-a", config.breaker("rld-a").builder())
        .unwrap();
    let _bulkhead = registry.bulkhead("rld-a", config.bulkhead("rld-a").builder());
    breaker.force_open();
    let mut updates = reloader.subscribe();

    // Nothing changed: nothing published.
    let report = reloader.reload().unwrap();
    assert!(report.changes.is_empty(), "{report}");
    assert!(!updates.has_changed().unwrap());

    std::fs::write(&file, AFTER).unwrap();
    let report = reloader.reload().unwrap();
    let paths =
        |e: Effect| -> Vec<String> { report.with_effect(e).map(|c| c.path.clone()).collect() };
    assert_eq!(
        paths(Effect::InPlace),
        [
            "breaker.rld-a.consecutive_failures",
            "bulkhead.rld-a.max_concurrent"
        ]
    );
    assert_eq!(paths(Effect::Rebuild), ["timeout.rld-a.total"]);
    assert_eq!(
        paths(Effect::Restart),
        ["bulkhead.rld-a.max_wait", "retry_budget.rld-a.ratio"]
    );
    let total = report.with_effect(Effect::Rebuild).next().unwrap();
    assert_eq!(
        (total.from.as_deref(), total.to.as_deref()),
        (Some("2s"), Some("3s"))
    );
    assert!(report.errors.is_none());
    assert!(report
        .to_string()
        .contains("applied in place: breaker.rld-a.consecutive_failures"));
    // In place: the live breaker has its new threshold and kept its state;
    // the live bulkhead its new limit.
    assert_eq!(breaker.state(), State::ForcedOpen);
    assert_eq!(registry.get_bulkhead("rld-a").unwrap().limit(), 8);
    // Published, for the stacks to rebuild.
    assert!(updates.has_changed().unwrap());
    assert_eq!(
        updates.borrow_and_update().timeout("rld-a").total,
        Some(Duration::from_secs(3))
    );

    // A bad file: an error naming the setting, the old settings stay.
    std::fs::write(&file, "[bulkhead.rld-a]\nmax_concurrent = 0\n").unwrap();
    let err = reloader.reload().unwrap_err();
    assert_eq!(err.path(), "bulkhead.rld-a.max_concurrent");
    assert_eq!(registry.get_bulkhead("rld-a").unwrap().limit(), 8);
    assert_eq!(reloader.config().bulkhead("rld-a").max_concurrent, 8);
    assert!(!updates.has_changed().unwrap());
}

#[test]
fn environment_variables_that_override_the_file_are_reported() {
    let _env = env_lock();
    let file = dir("env").join("bulwark.toml");
    std::fs::write(&file, "[timeout.rld-env]\ntotal = \"2s\"\n").unwrap();
    std::env::set_var("BULWARK_TIMEOUT__RLD-ENV__TOTAL", "5s");
    std::env::set_var("BULWARK_TIMEOUT__RLD-ENV__ATTEMPT", "1s");
    let reloader = Reloader::new(&file, &Registry::new()).unwrap();
    assert_eq!(
        reloader.config().timeout("rld-env").total,
        Some(Duration::from_secs(5))
    );
    let report = reloader.reload().unwrap();
    let ours: Vec<_> = report
        .env_overrides
        .iter()
        .filter(|o| o.path.starts_with("timeout.rld-env"))
        .map(|o| (o.path.as_str(), o.overrides_file))
        .collect();
    assert_eq!(
        ours,
        [
            ("timeout.rld-env.attempt", false),
            ("timeout.rld-env.total", true)
        ]
    );
    assert!(report
        .to_string()
        .contains("BULWARK_TIMEOUT__RLD-ENV__TOTAL overrides the file's timeout.rld-env.total"));
    std::env::remove_var("BULWARK_TIMEOUT__RLD-ENV__TOTAL");
    std::env::remove_var("BULWARK_TIMEOUT__RLD-ENV__ATTEMPT");
}

/// The watch loop reacts to an edit of the file and to SIGHUP. Real time:
/// the file system's events come from another thread; each wait is bounded.
#[tokio::test(flavor = "current_thread")]
// The guard is held across awaits on purpose: this runtime has one thread
// and nothing else in it takes the lock.
#[allow(clippy::await_holding_lock)]
async fn the_file_watch_and_sighup_trigger_a_reload() {
    let _env = env_lock();
    let file = dir("watch").join("bulwark.toml");
    std::fs::write(&file, "[bulkhead.rld-w]\nmax_concurrent = 4\n").unwrap();
    let registry = Registry::new();
    let _b = registry.bulkhead(
        "rld-w",
        bulwark_bulkhead::BulkheadLayer::builder().max_concurrent(4),
    );
    let reloader = Reloader::new(&file, &registry)
        .unwrap()
        .debounce(Duration::from_millis(20));
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(
        reloader
            .watch(move |r| {
                let _ = tx.send(r.map(|r| r.to_string()));
            })
            .unwrap(),
    );
    std::fs::write(&file, "[bulkhead.rld-w]\nmax_concurrent = 6\n").unwrap();
    let report = next(&mut reports).await;
    assert_eq!(
        report.unwrap(),
        "applied in place: bulkhead.rld-w.max_concurrent"
    );
    assert_eq!(registry.get_bulkhead("rld-w").unwrap().limit(), 6);

    // SIGHUP: reloads even though the file did not change.
    let pid = std::process::id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let report = next(&mut reports).await;
    assert_eq!(report.unwrap(), "no change");
    task.abort();
}

async fn next(
    reports: &mut tokio::sync::mpsc::UnboundedReceiver<Result<String, bulwark_config::LoadError>>,
) -> Result<String, bulwark_config::LoadError> {
    tokio::time::timeout(Duration::from_secs(20), reports.recv())
        .await
        .expect("a reload within 20 s")
        .expect("the loop runs")
}
