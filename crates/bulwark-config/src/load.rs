//! Loading a whole configuration: TOML file, environment, validation.

use crate::error::LoadError;
use crate::layers::{
    BreakerConfig, BulkheadConfig, KeyedBreakerConfig, RateLimitConfig, RetryBudgetConfig,
    RetryConfig, TimeoutConfig,
};
use figment::providers::{Env, Format, Toml};
use figment::value::Dict;
use figment::{Figment, Provider};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The shared defaults (`[defaults.<layer>]`): every named instance starts
/// from them, and an unnamed one is exactly them.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Defaults {
    /// `[defaults.breaker]`.
    pub breaker: BreakerConfig,
    /// `[defaults.retry]`.
    pub retry: RetryConfig,
    /// `[defaults.timeout]`.
    pub timeout: TimeoutConfig,
    /// `[defaults.bulkhead]`.
    pub bulkhead: BulkheadConfig,
    /// `[defaults.retry_budget]`.
    pub retry_budget: RetryBudgetConfig,
    /// `[defaults.keyed_breaker]`.
    pub keyed_breaker: KeyedBreakerConfig,
    /// `[defaults.ratelimit]` (fills in named `[ratelimit.NAME]` sections
    /// only: no upstream is limited by the defaults alone).
    pub ratelimit: RateLimitConfig,
}

/// A whole resilience configuration: the global switch, the shared
/// defaults and the named instances, every one validated.
///
/// ```toml
/// # false turns every layer built from this configuration into a pass-through.
/// enabled = true
///
/// [defaults.breaker]
/// failure_rate = 0.5
/// open_for = "30s"
///
/// [breaker.payments]      # payments: its own thresholds, the rest from defaults
/// failure_rate = 0.2
///
/// [timeout.payments]
/// total = "2s"
/// attempt = "500ms"
/// ```
///
/// Environment variables override the file: `BULWARK_` then the path in
/// upper case with `__` between parts, e.g.
/// `BULWARK_BREAKER__PAYMENTS__FAILURE_RATE=0.2`,
/// `BULWARK_DEFAULTS__RETRY__MAX_ATTEMPTS=2`, `BULWARK_ENABLED=false`.
/// Since variable names are read in lower case, instance names must be
/// lower case (letters, digits, `_`, `-`).
///
/// ```
/// use bulwark::config::ResilienceConfig;
/// use std::time::Duration;
///
/// let config = ResilienceConfig::from_toml_str(r#"
///     [defaults.breaker]
///     open_for = "10s"
///     [breaker.payments]
///     failure_rate = 0.2
/// "#)?;
/// assert_eq!(config.breaker("payments").failure_rate, 0.2);
/// assert_eq!(config.breaker("payments").open_for, Duration::from_secs(10));
/// // An instance with no section of its own gets the defaults.
/// assert_eq!(config.breaker("search").failure_rate, 0.5);
/// # Ok::<(), bulwark::config::LoadError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceConfig {
    pub(crate) enabled: bool,
    pub(crate) defaults: Defaults,
    pub(crate) breakers: BTreeMap<String, BreakerConfig>,
    pub(crate) retries: BTreeMap<String, RetryConfig>,
    pub(crate) timeouts: BTreeMap<String, TimeoutConfig>,
    pub(crate) bulkheads: BTreeMap<String, BulkheadConfig>,
    pub(crate) retry_budgets: BTreeMap<String, RetryBudgetConfig>,
    pub(crate) keyed_breakers: BTreeMap<String, KeyedBreakerConfig>,
    pub(crate) ratelimits: BTreeMap<String, RateLimitConfig>,
    pub(crate) fleet: Option<crate::FleetConfig>,
}

impl Default for ResilienceConfig {
    /// Enabled, the built-in defaults, no named instance.
    fn default() -> Self {
        ResilienceConfig {
            enabled: true,
            defaults: Defaults::default(),
            breakers: BTreeMap::new(),
            retries: BTreeMap::new(),
            timeouts: BTreeMap::new(),
            bulkheads: BTreeMap::new(),
            retry_budgets: BTreeMap::new(),
            keyed_breakers: BTreeMap::new(),
            ratelimits: BTreeMap::new(),
            fleet: None,
        }
    }
}

impl ResilienceConfig {
    /// Loads `path` (TOML) with `BULWARK_` environment overrides.
    ///
    /// # Errors
    ///
    /// A missing or unreadable file, bad TOML, an unknown key, a value of
    /// the wrong type, or a setting that cannot work.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        Loader::new().file(path).env().load()
    }

    /// Parses TOML text alone (no environment).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn from_toml_str(toml: &str) -> Result<Self, LoadError> {
        Loader::new().toml(toml).load()
    }

    /// The global switch: when `false`, every layer built from this
    /// configuration is a pass-through.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The shared defaults.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// Breaker `name`'s settings (the defaults if it has no section).
    pub fn breaker(&self, name: &str) -> &BreakerConfig {
        self.breakers.get(name).unwrap_or(&self.defaults.breaker)
    }

    /// Retry `name`'s settings (the defaults if it has no section).
    pub fn retry(&self, name: &str) -> &RetryConfig {
        self.retries.get(name).unwrap_or(&self.defaults.retry)
    }

    /// Timeout `name`'s settings (the defaults if it has no section).
    pub fn timeout(&self, name: &str) -> &TimeoutConfig {
        self.timeouts.get(name).unwrap_or(&self.defaults.timeout)
    }

    /// Bulkhead `name`'s settings (the defaults if it has no section).
    pub fn bulkhead(&self, name: &str) -> &BulkheadConfig {
        self.bulkheads.get(name).unwrap_or(&self.defaults.bulkhead)
    }

    /// Retry budget `name`'s settings (the defaults if it has no section).
    pub fn retry_budget(&self, name: &str) -> &RetryBudgetConfig {
        self.retry_budgets
            .get(name)
            .unwrap_or(&self.defaults.retry_budget)
    }

    /// Keyed breakers `name`'s settings (the defaults if it has no section).
    pub fn keyed_breaker(&self, name: &str) -> &KeyedBreakerConfig {
        self.keyed_breakers
            .get(name)
            .unwrap_or(&self.defaults.keyed_breaker)
    }

    /// Rate limit `name`'s settings: `None` unless it has a
    /// `[ratelimit.NAME]` section (the defaults alone limit nothing).
    pub fn rate_limit(&self, name: &str) -> Option<&RateLimitConfig> {
        self.ratelimits.get(name)
    }

    /// Every name with a section of its own, of any layer (the upstreams).
    pub fn names(&self) -> BTreeSet<&str> {
        self.breakers
            .keys()
            .chain(self.retries.keys())
            .chain(self.timeouts.keys())
            .chain(self.bulkheads.keys())
            .chain(self.retry_budgets.keys())
            .chain(self.keyed_breakers.keys())
            .chain(self.ratelimits.keys())
            .map(String::as_str)
            .collect()
    }

    /// The `[fleet]` section: where shared layers sync (`None` when absent:
    /// nothing is shared).
    pub fn fleet(&self) -> Option<&crate::FleetConfig> {
        self.fleet.as_ref()
    }

    /// The names with a `[keyed_breaker.NAME]` section.
    pub fn keyed_breaker_names(&self) -> impl Iterator<Item = &str> {
        self.keyed_breakers.keys().map(String::as_str)
    }
}

impl ResilienceConfig {
    /// The first section that says `shared = true` (its path), if any.
    pub(crate) fn first_shared(&self) -> Option<String> {
        let d = &self.defaults;
        let named = |kind: &str, name: &String| format!("{kind}.{name}");
        if d.breaker.shared {
            return Some("defaults.breaker".into());
        }
        if d.retry_budget.shared {
            return Some("defaults.retry_budget".into());
        }
        if d.ratelimit.shared {
            return Some("defaults.ratelimit".into());
        }
        self.breakers
            .iter()
            .find(|(_, c)| c.shared)
            .map(|(n, _)| named("breaker", n))
            .or_else(|| {
                self.retry_budgets
                    .iter()
                    .find(|(_, c)| c.shared)
                    .map(|(n, _)| named("retry_budget", n))
            })
            .or_else(|| {
                self.ratelimits
                    .iter()
                    .find(|(_, c)| c.shared)
                    .map(|(n, _)| named("ratelimit", n))
            })
    }
}

/// Assembles a configuration from sources, later ones overriding earlier
/// ones, then validates it. [`ResilienceConfig::load`] is
/// `Loader::new().file(path).env().load()`.
///
/// ```
/// use bulwark::config::Loader;
///
/// let config = Loader::new()
///     .toml("[bulkhead.db]\nmax_concurrent = 8")
///     .toml("[bulkhead.db]\nmax_concurrent = 16") // a later source wins
///     .load()?;
/// assert_eq!(config.bulkhead("db").max_concurrent, 16);
/// # Ok::<(), bulwark::config::LoadError>(())
/// ```
#[derive(Debug, Default)]
pub struct Loader {
    figment: Figment,
    error: Option<LoadError>,
}

impl Loader {
    /// No source yet: loads the built-in defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TOML file. A missing file is an error at
    /// [`load`](Self::load), never a silent fallback to the defaults.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        if !path.is_file() && self.error.is_none() {
            self.error = Some(LoadError::invalid(
                "",
                "",
                format!("configuration file `{}` not found", path.display()),
            ));
        }
        self.figment = self.figment.merge(Toml::file(path));
        self
    }

    /// Adds TOML text.
    pub fn toml(mut self, toml: &str) -> Self {
        self.figment = self.figment.merge(Toml::string(toml));
        self
    }

    /// Adds the `BULWARK_` environment variables (`__` between parts).
    pub fn env(self) -> Self {
        self.env_prefixed("BULWARK_")
    }

    /// Adds the environment variables starting with `prefix` (`__` between
    /// parts).
    pub fn env_prefixed(mut self, prefix: &str) -> Self {
        self.figment = self.figment.merge(Env::prefixed(prefix).split("__"));
        self
    }

    /// Adds any other [figment](https://docs.rs/figment) provider.
    pub fn provider(mut self, provider: impl Provider) -> Self {
        self.figment = self.figment.merge(provider);
        self
    }

    /// Reads every source, resolves the named instances over the defaults
    /// and validates everything.
    ///
    /// # Errors
    ///
    /// The first problem found, with its path.
    pub fn load(self) -> Result<ResilienceConfig, LoadError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        resolve(&self.figment)
    }
}

/// The top level: the switch, and which names each layer has.
///
/// Every layer section and every instance in it must be a table: a value of
/// another type (`[breaker]\npayments = 5`) is an error at its path, never
/// read as "no settings" (`Figment::focus` sees a non-table as empty).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Top {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    #[allow(dead_code)] // read only to reject unknown layers and non-tables
    defaults: TopDefaults,
    #[serde(default)]
    breaker: BTreeMap<String, Dict>,
    #[serde(default)]
    retry: BTreeMap<String, Dict>,
    #[serde(default)]
    timeout: BTreeMap<String, Dict>,
    #[serde(default)]
    bulkhead: BTreeMap<String, Dict>,
    #[serde(default)]
    retry_budget: BTreeMap<String, Dict>,
    #[serde(default)]
    keyed_breaker: BTreeMap<String, Dict>,
    #[serde(default)]
    ratelimit: BTreeMap<String, Dict>,
    #[serde(default)]
    fleet: Option<Dict>,
}

/// Only checks that `[defaults]` holds known layers, each a table.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TopDefaults {
    breaker: Option<Dict>,
    retry: Option<Dict>,
    timeout: Option<Dict>,
    bulkhead: Option<Dict>,
    retry_budget: Option<Dict>,
    keyed_breaker: Option<Dict>,
    ratelimit: Option<Dict>,
}

/// The layer sections, as named in the file.
const LAYERS: [&str; 7] = [
    "breaker",
    "retry",
    "timeout",
    "bulkhead",
    "retry_budget",
    "keyed_breaker",
    "ratelimit",
];

fn yes() -> bool {
    true
}

/// `e` at `at`, its path cut to the `depth` levels settings have there:
/// serde reports a bad enum value (`window = { a = 1 }`) one level inside
/// it, and a struct read from an array (`defaults = [1]`) at an index.
fn from_figment(e: figment::Error, at: &str, depth: usize) -> LoadError {
    let origin = e.metadata.as_ref().map(|m| m.name.to_string());
    let mut path: Vec<String> = e.path.clone();
    // The TOML parser hands a date-time over as a table with one private
    // key: where a table belongs, that key shows up in the path or as an
    // unknown field. The setting is the one holding the date-time.
    let private = |key: &str| key.starts_with("$__toml_private");
    let in_path = path.iter().position(|p| private(p));
    if let Some(i) = in_path {
        path.truncate(i);
    }
    let datetime = in_path.is_some()
        || matches!(&e.kind, figment::error::Kind::UnknownField(field, _) if private(field));
    let unknown = !datetime && matches!(e.kind, figment::error::Kind::UnknownField(..));
    if let figment::error::Kind::UnknownField(field, _) = &e.kind {
        if unknown && path.last() != Some(field) {
            path.push(field.clone());
        }
    }
    path.truncate(depth);
    // Under `defaults`, only layer names are settings.
    if at.is_empty()
        && path.len() == 2
        && path[0] == "defaults"
        && !unknown
        && !LAYERS.contains(&path[1].as_str())
    {
        path.truncate(1);
    }
    let reason = match &e.kind {
        _ if datetime => "invalid type: found a date-time, expected a table".to_owned(),
        figment::error::Kind::UnknownField(field, expected) => {
            format!("is not a known setting (`{field}`; expected one of {expected:?})")
        }
        kind => kind.to_string(),
    };
    LoadError::invalid(at, &path.join("."), reason).with_origin(origin)
}

fn origin_of(figment: &Figment, paths: &[String]) -> Option<String> {
    paths
        .iter()
        .find_map(|p| figment.find_metadata(p))
        .map(|m| m.name.to_string())
}

fn check_name(kind: &str, name: &str) -> Result<(), LoadError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(LoadError::invalid(
            kind,
            name,
            "is not a valid instance name: use lower-case letters, digits, `_` and `-`, so environment variables can name it".into(),
        ))
    }
}

/// One layer's settings: the defaults section, then the named section.
fn section<T: DeserializeOwned>(
    figment: &Figment,
    kind: &str,
    name: Option<&str>,
    validate: impl Fn(&T, &str) -> Result<(), LoadError>,
) -> Result<T, LoadError> {
    let defaults_at = format!("defaults.{kind}");
    let at = match name {
        Some(name) => format!("{kind}.{name}"),
        None => defaults_at.clone(),
    };
    let mut merged = Figment::new().merge(figment.focus(&defaults_at));
    if name.is_some() {
        merged = merged.merge(figment.focus(&at));
    }
    let value: T = merged.extract().map_err(|e| from_figment(e, &at, 1))?;
    validate(&value, &at).map_err(|e| {
        // Say where the offending value came from (file or environment).
        let field = e
            .path()
            .strip_prefix(&at)
            .unwrap_or("")
            .trim_start_matches('.');
        let paths = [format!("{at}.{field}"), format!("{defaults_at}.{field}")];
        e.with_origin(origin_of(figment, &paths))
    })?;
    Ok(value)
}

fn instances<T: DeserializeOwned>(
    figment: &Figment,
    kind: &str,
    names: &BTreeMap<String, Dict>,
    validate: impl Fn(&T, &str) -> Result<(), LoadError> + Copy,
) -> Result<BTreeMap<String, T>, LoadError> {
    names
        .keys()
        .map(|name| {
            check_name(kind, name)?;
            Ok((name.clone(), section(figment, kind, Some(name), validate)?))
        })
        .collect()
}

fn resolve(figment: &Figment) -> Result<ResilienceConfig, LoadError> {
    let top: Top = figment.extract().map_err(|e| from_figment(e, "", 2))?;
    let defaults = Defaults {
        breaker: section(figment, "breaker", None, BreakerConfig::validate)?,
        retry: section(figment, "retry", None, RetryConfig::validate)?,
        timeout: section(figment, "timeout", None, TimeoutConfig::validate)?,
        bulkhead: section(figment, "bulkhead", None, BulkheadConfig::validate)?,
        retry_budget: section(figment, "retry_budget", None, RetryBudgetConfig::validate)?,
        keyed_breaker: section(figment, "keyed_breaker", None, KeyedBreakerConfig::validate)?,
        ratelimit: section(figment, "ratelimit", None, RateLimitConfig::validate)?,
    };
    let config = ResilienceConfig {
        enabled: top.enabled,
        breakers: instances(figment, "breaker", &top.breaker, BreakerConfig::validate)?,
        retries: instances(figment, "retry", &top.retry, RetryConfig::validate)?,
        timeouts: instances(figment, "timeout", &top.timeout, TimeoutConfig::validate)?,
        bulkheads: instances(figment, "bulkhead", &top.bulkhead, BulkheadConfig::validate)?,
        retry_budgets: instances(
            figment,
            "retry_budget",
            &top.retry_budget,
            RetryBudgetConfig::validate,
        )?,
        keyed_breakers: instances(
            figment,
            "keyed_breaker",
            &top.keyed_breaker,
            KeyedBreakerConfig::validate,
        )?,
        ratelimits: instances(
            figment,
            "ratelimit",
            &top.ratelimit,
            RateLimitConfig::validate,
        )?,
        defaults,
        fleet: match top.fleet {
            Some(_) => {
                let fleet: crate::FleetConfig = figment
                    .focus("fleet")
                    .extract()
                    .map_err(|e| from_figment(e, "fleet", 1))?;
                fleet.validate("fleet").map_err(|e| {
                    let paths = [e.path().to_string()];
                    e.with_origin(origin_of(figment, &paths))
                })?;
                Some(fleet)
            }
            None => None,
        },
    };
    // Sharing needs somewhere to share through.
    if config.fleet.is_none() {
        if let Some(at) = config.first_shared() {
            return Err(LoadError::invalid(
                &at,
                "shared",
                "needs a [fleet] section: the Redis the instances share through (redis_url)".into(),
            )
            .with_origin(origin_of(figment, &[format!("{at}.shared")])));
        }
    }
    // A retry naming a budget must name one that exists.
    for (name, retry) in &config.retries {
        if let Some(budget) = &retry.budget {
            if !config.retry_budgets.contains_key(budget) {
                return Err(LoadError::invalid(
                    &format!("retry.{name}"),
                    "budget",
                    format!("names `{budget}`, but there is no [retry_budget.{budget}]"),
                ));
            }
        }
    }
    Ok(config)
}
