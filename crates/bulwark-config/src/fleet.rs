//! `[fleet]`: the Redis that shared layers sync through (`bulwark-fleet`).

use crate::LoadError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[fleet]`: where the instances of a service share their rate limits,
/// breakers and retry budgets (`bulwark-fleet`), and how often they sync.
/// Absent, nothing is shared. A layer opts in with `shared = true` in its
/// section. The settings map one to one onto `bulwark_fleet::FleetBuilder`
/// (`url`, `prefix`, `sync_interval`, `op_timeout`); `client_layer` does
/// not build shared layers by itself yet.
///
/// ```
/// use bulwark_config::ResilienceConfig;
/// use std::time::Duration;
///
/// let config = ResilienceConfig::from_toml_str(r#"
/// [fleet]
/// redis_url = "redis://10.0.0.5:6379/0"
/// prefix = "checkout"
/// sync_interval = "250ms"
///
/// [breaker.payments]
/// shared = true
/// "#)?;
/// let fleet = config.fleet().unwrap();
/// assert_eq!(fleet.prefix, "checkout");
/// assert_eq!(fleet.sync_interval, Duration::from_millis(250));
/// assert_eq!(fleet.op_timeout, Duration::from_millis(50));
/// assert!(config.breaker("payments").shared);
/// # Ok::<(), bulwark_config::LoadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FleetConfig {
    /// The Redis URL (default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// The prefix of every key, one per service (default `bulwark`).
    pub prefix: String,
    /// How often shared layers publish and read state (default 200 ms,
    /// 10 ms to 10 s).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// How long one Redis operation may take before a layer decides alone
    /// (default 50 ms, up to 10 s).
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            prefix: "bulwark".into(),
            sync_interval: Duration::from_millis(200),
            op_timeout: Duration::from_millis(50),
        }
    }
}

impl FleetConfig {
    /// Checks every setting; the error names the first that cannot work.
    pub fn validate(&self, at: &str) -> Result<(), LoadError> {
        let err = |field: &str, reason: String| Err(LoadError::invalid(at, field, reason));
        if !self.redis_url.starts_with("redis://")
            && !self.redis_url.starts_with("rediss://")
            && !self.redis_url.starts_with("unix://")
        {
            return err(
                "redis_url",
                format!(
                    "must start with redis://, rediss:// or unix://, got `{}`",
                    self.redis_url
                ),
            );
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return err(
                "prefix",
                format!("must be non-empty, without braces, got `{}`", self.prefix),
            );
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&self.sync_interval) {
            return err(
                "sync_interval",
                format!("must be from 10ms to 10s, got {:?}", self.sync_interval),
            );
        }
        if self.op_timeout.is_zero() || self.op_timeout > Duration::from_secs(10) {
            return err(
                "op_timeout",
                format!(
                    "must be more than 0 and at most 10s, got {:?}",
                    self.op_timeout
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::ResilienceConfig;

    #[test]
    fn bad_fleet_settings_name_the_setting() {
        for (toml, field) in [
            ("[fleet]\nredis_url = \"http://x\"", "redis_url"),
            ("[fleet]\nprefix = \"a{b}\"", "prefix"),
            ("[fleet]\nsync_interval = \"1ms\"", "sync_interval"),
            ("[fleet]\nop_timeout = \"0s\"", "op_timeout"),
        ] {
            let e = ResilienceConfig::from_toml_str(toml).unwrap_err();
            assert_eq!(e.field(), field, "{toml}: {e}");
            assert_eq!(e.path(), format!("fleet.{field}"), "{toml}: {e}");
        }
        let e = ResilienceConfig::from_toml_str("[fleet]\nurl = \"redis://x\"").unwrap_err();
        assert!(e.to_string().contains("url"), "{e}");
        assert!(ResilienceConfig::from_toml_str("")
            .unwrap()
            .fleet()
            .is_none());
        let c = ResilienceConfig::from_toml_str("[fleet]").unwrap();
        assert_eq!(c.fleet().unwrap().prefix, "bulwark");
        assert!(!c.breaker("any").shared);
        assert!(!c.retry_budget("any").shared);
    }
}
