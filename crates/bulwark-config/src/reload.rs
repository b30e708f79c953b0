//! The reload loop (feature `reload`): watch the configuration file and
//! SIGHUP, apply what can change in place, say what needs a rebuild.
//!
//! A [`Reloader`] holds the current [`ResilienceConfig`] of one file (with
//! its `BULWARK_` environment overrides) and the [`Registry`] whose
//! instances it keeps up to date. On each reload it reads the file again,
//! and if the new configuration is valid:
//!
//! 1. applies it to the registry's live instances
//!    ([`ResilienceConfig::apply`]): breaker thresholds and bulkhead limits
//!    change in place, their state (counts, open breakers, calls in flight)
//!    kept;
//! 2. publishes it to every [`subscribe`](Reloader::subscribe)r, who
//!    rebuild their stacks from it if the report says so (a stack built
//!    again under the same name gets the same registry instances, so no
//!    state is lost);
//! 3. reports each setting that changed and its [`Effect`], and every
//!    environment variable that overrides the file.
//!
//! An invalid file is an error, and the old configuration stays in force.
//!
//! | setting | effect |
//! |---|---|
//! | `[breaker.*]`, `[defaults.breaker]` | [`InPlace`](Effect::InPlace) (every breaker and every key of keyed breakers of that name) |
//! | `max_concurrent` of `[bulkhead.*]` | [`InPlace`](Effect::InPlace) |
//! | `[timeout.*]`, `[retry.*]`, `enabled` | [`Rebuild`](Effect::Rebuild): they live in the stacks |
//! | `max_wait`, `max_queued` of a bulkhead; `[retry_budget.*]`; `[keyed_breaker.*]` | [`Restart`](Effect::Restart): the registry keeps the instance it made, so a rebuilt stack still gets the old one |
//! | `[fleet]`, `shared` of a breaker; `[ratelimit.*]` | [`Restart`](Effect::Restart): the fleet's connection, its shared layers (a shared breaker's gate keeps the thresholds it was built with; its local breaker's change in place) and fleet limiters live in the registry |
//!
//! ```no_run
//! use bulwark::config::reload::Reloader;
//! use bulwark::observe::Registry;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new();
//! let reloader = Reloader::new("bulwark.toml", &registry)?;
//! let config = reloader.config();
//! let mut payments = config.http_client_stack("payments", &registry)?.build()?;
//! let mut updates = reloader.subscribe();
//! // Reload on every change of the file and on SIGHUP, and log what happened.
//! tokio::spawn(reloader.watch(|report| match report {
//!     Ok(report) => eprintln!("bulwark.toml reloaded: {report}"),
//!     Err(e) => eprintln!("bulwark.toml not reloaded, the old settings stay: {e}"),
//! })?);
//! // Where the stack lives: build it again when a reload says so.
//! while updates.changed().await.is_ok() {
//!     let config = updates.borrow_and_update().clone();
//!     payments = config.http_client_stack("payments", &registry)?.build()?;
//! }
//! # drop(payments);
//! # Ok(())
//! # }
//! ```

use crate::error::{LoadError, ReloadError};
use crate::{Loader, ResilienceConfig};
use bulwark_observe::Registry;
use figment::providers::{Format, Toml};
use figment::value::Value;
use figment::Figment;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What a changed setting needs to take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Effect {
    /// Applied to the live instances by the reload itself.
    InPlace,
    /// Applies to stacks built from the new configuration: rebuild them
    /// (see [`Reloader::subscribe`]).
    Rebuild,
    /// Applies only to instances the registry has not made yet: restart
    /// the process (or use a new name) for it to take effect.
    Restart,
}

impl Effect {
    /// The lowercase name (`in_place`, `rebuild`, `restart`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Effect::InPlace => "in_place",
            Effect::Rebuild => "rebuild",
            Effect::Restart => "restart",
        }
    }

    /// The effect of a change of the setting at `path`
    /// (`breaker.payments.failure_rate`, `defaults.bulkhead.max_wait`,
    /// `enabled`).
    ///
    /// ```
    /// use bulwark::config::reload::Effect;
    ///
    /// assert_eq!(Effect::of("breaker.payments.failure_rate"), Effect::InPlace);
    /// assert_eq!(Effect::of("bulkhead.server.max_concurrent"), Effect::InPlace);
    /// assert_eq!(Effect::of("timeout.payments.total"), Effect::Rebuild);
    /// assert_eq!(Effect::of("defaults.bulkhead.max_wait"), Effect::Restart);
    /// ```
    pub fn of(path: &str) -> Effect {
        let parts: Vec<&str> = path.split('.').collect();
        let (layer, field) = match parts.as_slice() {
            ["enabled"] => return Effect::Rebuild,
            // The connection and the shared layers live as long as the
            // registry.
            ["fleet", ..] => return Effect::Restart,
            ["defaults", layer, field, ..] | [layer, _, field, ..] => (*layer, *field),
            _ => return Effect::Rebuild,
        };
        match (layer, field) {
            ("breaker", "shared") => Effect::Restart,
            ("breaker", _) => Effect::InPlace,
            ("bulkhead", "max_concurrent") => Effect::InPlace,
            ("timeout" | "retry", _) => Effect::Rebuild,
            _ => Effect::Restart,
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One setting that a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The setting, as a path (`breaker.payments.failure_rate`).
    pub path: String,
    /// Its value before (`None`: the instance had no section of its own).
    pub from: Option<String>,
    /// Its value now (`None`: the section was removed; the instance
    /// follows the defaults again).
    pub to: Option<String>,
    /// What it needs to take effect.
    pub effect: Effect,
}

/// An environment variable that sets a setting, over the file's value if
/// it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvOverride {
    /// The variable (`BULWARK_BREAKER__PAYMENTS__FAILURE_RATE`).
    pub variable: String,
    /// The setting it sets (`breaker.payments.failure_rate`).
    pub path: String,
    /// Whether the file sets it too (and is overridden).
    pub overrides_file: bool,
}

/// What a reload did: every setting that changed with its [`Effect`], the
/// environment variables in force, and the instances that refused their
/// new settings.
///
/// Its `Display` is one line for logs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The settings that changed, by path.
    pub changes: Vec<Change>,
    /// The `BULWARK_` variables that set settings.
    pub env_overrides: Vec<EnvOverride>,
    /// The live instances that could not take their new settings (they
    /// keep the old ones; e.g. a breaker switched from a time to a count
    /// window).
    pub errors: Option<ReloadError>,
}

impl ReloadReport {
    /// The changes with effect `effect`.
    pub fn with_effect(&self, effect: Effect) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.effect == effect)
    }

    /// Whether some change needs the stacks built again.
    pub fn needs_rebuild(&self) -> bool {
        self.with_effect(Effect::Rebuild).next().is_some()
    }

    /// Whether some change takes effect only after a restart.
    pub fn needs_restart(&self) -> bool {
        self.with_effect(Effect::Restart).next().is_some()
    }
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            f.write_str("no change")?;
        }
        let mut first = true;
        for effect in [Effect::InPlace, Effect::Rebuild, Effect::Restart] {
            let paths: Vec<&str> = self.with_effect(effect).map(|c| c.path.as_str()).collect();
            if paths.is_empty() {
                continue;
            }
            let what = match effect {
                Effect::InPlace => "applied in place",
                Effect::Rebuild => "needs a rebuild",
                Effect::Restart => "needs a restart",
            };
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{what}: {}", paths.join(", "))?;
        }
        for o in self.env_overrides.iter().filter(|o| o.overrides_file) {
            write!(f, "; {} overrides the file's {}", o.variable, o.path)?;
        }
        if let Some(e) = &self.errors {
            write!(f, "; not applied: {e}")?;
        }
        Ok(())
    }
}

const ENV_PREFIX: &str = "BULWARK_";

/// Keeps one configuration file's settings in force: see the
/// [module docs](self).
///
/// ```
/// use bulwark::config::reload::{Effect, Reloader};
/// use bulwark::breaker::Breaker;
/// use bulwark::observe::Registry;
///
/// let dir = std::env::temp_dir().join(format!("bulwark-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let file = dir.join("bulwark.toml");
/// std::fs::write(&file, "[breaker.doc-payments]\nconsecutive_failures = 5\n")?;
///
/// let registry = Registry::new();
/// let reloader = Reloader::new(&file, &registry)?;
/// let breaker = registry.breaker("doc-payments", reloader.config().breaker("doc-payments").builder())?;
///
/// std::fs::write(&file, "[breaker.doc-payments]\nconsecutive_failures = 2\n[timeout.doc-payments]\ntotal = \"2s\"\n")?;
/// let report = reloader.reload()?;
/// assert_eq!(report.with_effect(Effect::InPlace).next().unwrap().path, "breaker.doc-payments.consecutive_failures");
/// assert!(report.needs_rebuild()); // the new timeout lives in the stacks
/// assert_eq!(reloader.config().timeout("doc-payments").total, Some(std::time::Duration::from_secs(2)));
/// # drop(breaker);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    registry: Registry,
    tx: watch::Sender<Arc<ResilienceConfig>>,
    debounce: Duration,
}

impl Reloader {
    /// Loads `path` with its `BULWARK_` environment overrides (as
    /// [`ResilienceConfig::load`]), to keep `registry`'s instances in line
    /// with it.
    ///
    /// # Errors
    ///
    /// As [`ResilienceConfig::load`].
    pub fn new(path: impl AsRef<Path>, registry: &Registry) -> Result<Self, LoadError> {
        let path = path.as_ref().to_path_buf();
        let config = Loader::new().file(&path).env().load()?;
        let (tx, _) = watch::channel(Arc::new(config));
        Ok(Reloader {
            path,
            registry: registry.clone(),
            tx,
            debounce: Duration::from_millis(100),
        })
    }

    /// After a change of the file, waits `wait` for more before reloading
    /// (default 100 ms): an editor saving a file writes it in several steps.
    pub fn debounce(mut self, wait: Duration) -> Self {
        self.debounce = wait;
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<ResilienceConfig> {
        self.tx.borrow().clone()
    }

    /// A receiver of every new configuration a reload puts in force (not of
    /// a reload that changed nothing): rebuild your stacks from it when
    /// [`ReloadReport::needs_rebuild`].
    pub fn subscribe(&self) -> watch::Receiver<Arc<ResilienceConfig>> {
        self.tx.subscribe()
    }

    /// The `BULWARK_` environment variables that set settings, now.
    pub fn env_overrides(&self) -> Vec<EnvOverride> {
        let file = Figment::from(Toml::file(&self.path));
        let mut found: Vec<EnvOverride> = std::env::vars()
            .filter_map(|(var, _)| {
                let rest = var.strip_prefix(ENV_PREFIX)?;
                let path = rest
                    .to_ascii_lowercase()
                    .split("__")
                    .collect::<Vec<_>>()
                    .join(".");
                Some(EnvOverride {
                    overrides_file: file.find_value(&path).is_ok(),
                    variable: var,
                    path,
                })
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }

    /// Reads the file again now, applies and publishes it, and reports.
    ///
    /// # Errors
    ///
    /// When the file is missing or invalid: nothing changes then.
    pub fn reload(&self) -> Result<ReloadReport, LoadError> {
        let new = Loader::new().file(&self.path).env().load()?;
        let old = self.config();
        let changes = diff(&old, &new);
        let errors = new.apply(&self.registry).err();
        if !changes.is_empty() {
            self.tx.send_replace(Arc::new(new));
        }
        Ok(ReloadReport {
            changes,
            env_overrides: self.env_overrides(),
            errors,
        })
    }

    /// Starts watching: the file (its folder, so that an editor's
    /// rename-over counts) and, on Unix, `SIGHUP`. Each change (after the
    /// [`debounce`](Self::debounce)) or signal reloads, and `on_reload`
    /// hears the outcome. Spawn the future it returns; it runs until
    /// dropped. It takes the reloader: call [`config`](Self::config) and
    /// [`subscribe`](Self::subscribe) before it, and keep what they return.
    ///
    /// # Errors
    ///
    /// When the file's folder cannot be watched or the signal handler
    /// cannot be installed (the error names which). Call it inside a tokio
    /// runtime.
    pub fn watch<F>(
        self,
        mut on_reload: F,
    ) -> Result<impl Future<Output = ()> + Send + 'static, LoadError>
    where
        F: FnMut(Result<ReloadReport, LoadError>) + Send + 'static,
    {
        let failed = |what: &str, e: &dyn fmt::Display| {
            LoadError::invalid("", "", format!("cannot {what}: {e}"))
        };
        let (events, mut changed) = mpsc::unbounded_channel::<()>();
        let name = self.path.file_name().map(|n| n.to_owned());
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                    let _ = events.send(());
                }
            })
            .map_err(|e| failed("watch the configuration file", &e))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| failed(&format!("watch `{}`", dir.display()), &e))?;
        let mut hangup = Hangup::new().map_err(|e| failed("handle SIGHUP", &e))?;
        Ok(async move {
            // Dropped with the loop: then the watching stops.
            let _watcher = watcher;
            loop {
                tokio::select! {
                    got = changed.recv() => {
                        if got.is_none() {
                            return;
                        }
                        tokio::time::sleep(self.debounce).await;
                        while changed.try_recv().is_ok() {}
                    }
                    () = hangup.recv() => {}
                }
                on_reload(self.reload());
            }
        })
    }
}

/// SIGHUP on Unix; never elsewhere.
struct Hangup {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangup {
    fn new() -> std::io::Result<Self> {
        Ok(Hangup {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_some() {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Every setting of `config`, by path, as text.
fn settings(config: &ResilienceConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("enabled".to_owned(), config.enabled.to_string());
    fn add<T: Serialize>(out: &mut BTreeMap<String, String>, at: &str, value: &T) {
        if let Ok(v) = Value::serialize(value) {
            flatten(out, at, &v);
        }
    }
    let d = &config.defaults;
    add(&mut out, "defaults.breaker", &d.breaker);
    add(&mut out, "defaults.retry", &d.retry);
    add(&mut out, "defaults.timeout", &d.timeout);
    add(&mut out, "defaults.bulkhead", &d.bulkhead);
    add(&mut out, "defaults.retry_budget", &d.retry_budget);
    add(&mut out, "defaults.keyed_breaker", &d.keyed_breaker);
    add(&mut out, "defaults.ratelimit", &d.ratelimit);
    if let Some(fleet) = &config.fleet {
        add(&mut out, "fleet", fleet);
    }
    for (n, c) in &config.breakers {
        add(&mut out, &format!("breaker.{n}"), c);
    }
    for (n, c) in &config.retries {
        add(&mut out, &format!("retry.{n}"), c);
    }
    for (n, c) in &config.timeouts {
        add(&mut out, &format!("timeout.{n}"), c);
    }
    for (n, c) in &config.bulkheads {
        add(&mut out, &format!("bulkhead.{n}"), c);
    }
    for (n, c) in &config.retry_budgets {
        add(&mut out, &format!("retry_budget.{n}"), c);
    }
    for (n, c) in &config.keyed_breakers {
        add(&mut out, &format!("keyed_breaker.{n}"), c);
    }
    for (n, c) in &config.ratelimits {
        add(&mut out, &format!("ratelimit.{n}"), c);
    }
    out
}

fn flatten(out: &mut BTreeMap<String, String>, at: &str, value: &Value) {
    let text = match value {
        Value::Dict(_, dict) => {
            for (k, v) in dict {
                flatten(out, &format!("{at}.{k}"), v);
            }
            return;
        }
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|v| v.to_string())
            .or_else(|| n.to_i128().map(|v| v.to_string()))
            .or_else(|| n.to_f64().map(|v| v.to_string()))
            .unwrap_or_default(),
        Value::Empty(..) => "none".to_owned(),
        Value::Array(_, items) => {
            let mut parts = BTreeMap::new();
            for (i, v) in items.iter().enumerate() {
                flatten(&mut parts, &i.to_string(), v);
            }
            parts.into_values().collect::<Vec<_>>().join(", ")
        }
    };
    out.insert(at.to_owned(), text);
}

/// The settings that differ between `old` and `new`.
fn diff(old: &ResilienceConfig, new: &ResilienceConfig) -> Vec<Change> {
    let (old, new) = (settings(old), settings(new));
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| old.get(*p) != new.get(*p))
        .map(|p| Change {
            effect: Effect::of(p),
            from: old.get(p).cloned(),
            to: new.get(p).cloned(),
            path: p.clone(),
        })
        .collect()
}
