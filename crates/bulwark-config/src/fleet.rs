//! `[fleet]`: the Redis that shared layers sync through (`bulwark-fleet`).

use crate::LoadError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[fleet]`: where the instances of a service share their rate limits,
/// breakers and retry budgets (`bulwark-fleet`, feature `fleet`), and how
/// often they sync. Absent, nothing is shared. A layer opts in with
/// `shared = true` in its section (`[breaker.NAME]`,
/// `[retry_budget.NAME]`, `[ratelimit.NAME]`); a `shared = true` without
/// `[fleet]` is an error at load, naming the setting, and one in a build
/// without the `fleet` feature is an error when the stack is built (never
/// a silently local layer). The settings map one to one onto
/// `bulwark_fleet::FleetBuilder` ([`builder`](Self::builder)).
///
/// [`client_layer`](crate::ResilienceConfig::client_layer) then builds
/// the shared layers: the fleet's breaker gate in front of the local
/// breaker (inside retry: each attempt counts for the fleet), the shared
/// retry budget, the fleet's rate limit; the fleet's connection and the
/// shared layers are made once per registry and show in its health
/// (`fleet`). For the HTTP stacks, see
/// [`fleet_layer`](crate::ResilienceConfig::fleet_layer).
///
/// `redis_url` takes `redis://host:port/db`, `rediss://` (TLS), `unix://`,
/// or a Redis Cluster's seed nodes, `redis+cluster://host1:port1,host2:port2`
/// (feature `fleet-cluster` of bulwark).
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
///
/// [retry_budget.payments]
/// shared = true
///
/// [ratelimit.payments]
/// limit = 500
/// per = "1s"
/// shared = true
/// "#)?;
/// let fleet = config.fleet().unwrap();
/// assert_eq!(fleet.prefix, "checkout");
/// assert_eq!(fleet.sync_interval, Duration::from_millis(250));
/// assert_eq!(fleet.op_timeout, Duration::from_millis(50));
/// assert!(config.breaker("payments").shared);
/// assert!(config.retry_budget("payments").shared);
/// assert!(config.rate_limit("payments").unwrap().shared);
///
/// // A Redis Cluster: its seed nodes (any one is enough).
/// let cluster = ResilienceConfig::from_toml_str(r#"
/// [fleet]
/// redis_url = "redis+cluster://10.0.0.5:7000,10.0.0.6:7000,10.0.0.7:7000"
/// "#)?;
/// assert!(cluster.fleet().unwrap().redis_url.starts_with("redis+cluster://"));
/// # Ok::<(), bulwark_config::LoadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FleetConfig {
    /// The Redis URL (default `redis://127.0.0.1:6379`): `redis://`,
    /// `rediss://` (TLS), `unix://`, or `redis+cluster://host:port,host:port`
    /// for a Redis Cluster (feature `fleet-cluster` of bulwark).
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
        const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+cluster://"];
        if !SCHEMES.iter().any(|s| self.redis_url.starts_with(s)) {
            return err(
                "redis_url",
                format!(
                    "must start with redis://, rediss://, unix:// or redis+cluster://, got `{}`",
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

    /// A fleet builder with these settings (feature `fleet`).
    #[cfg(feature = "fleet")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
    pub fn builder(&self) -> bulwark_fleet::FleetBuilder {
        bulwark_fleet::Fleet::builder()
            .url(self.redis_url.clone())
            .prefix(self.prefix.clone())
            .sync_interval(self.sync_interval)
            .op_timeout(self.op_timeout)
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

    #[test]
    fn shared_without_a_fleet_section_names_the_setting() {
        for (toml, path) in [
            (
                "[breaker.payments]\nshared = true",
                "breaker.payments.shared",
            ),
            ("[retry_budget.p]\nshared = true", "retry_budget.p.shared"),
            (
                "[ratelimit.p]\nlimit = 5\nshared = true",
                "ratelimit.p.shared",
            ),
            (
                "[defaults.breaker]\nshared = true",
                "defaults.breaker.shared",
            ),
        ] {
            let e = ResilienceConfig::from_toml_str(toml).unwrap_err();
            assert_eq!(e.path(), path, "{toml}: {e}");
            assert!(e.reason().contains("[fleet]"), "{e}");
        }
        let c = ResilienceConfig::from_toml_str(
            "[fleet]\nredis_url = \"redis+cluster://a:1,b:2\"\n[breaker.p]\nshared = true",
        )
        .unwrap();
        assert!(c.breaker("p").shared);
    }

    #[test]
    fn bad_rate_limits_name_the_setting() {
        for (toml, path) in [
            ("[ratelimit.p]\nper = \"1s\"", "ratelimit.p.limit"),
            ("[ratelimit.p]\nlimit = 0", "ratelimit.p.limit"),
            ("[ratelimit.p]\nlimit = 5\nburst = 0", "ratelimit.p.burst"),
            (
                "[ratelimit.p]\nlimit = 5\nper = \"0s\"",
                "ratelimit.p.limit",
            ),
            ("[ratelimit.p]\nlimit = 5\nrate = 3", "ratelimit.p.rate"),
        ] {
            let e = ResilienceConfig::from_toml_str(toml).unwrap_err();
            assert_eq!(e.path(), path, "{toml}: {e}");
        }
        // The defaults fill in named sections, and limit nothing alone.
        let c = ResilienceConfig::from_toml_str(
            "[defaults.ratelimit]\nburst = 3\n[ratelimit.p]\nlimit = 10",
        )
        .unwrap();
        assert_eq!(c.rate_limit("p").unwrap().burst, Some(3));
        assert!(c.rate_limit("q").is_none());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn client_layer_limits_the_rate() {
        use tower::{Layer, ServiceExt};
        let c = ResilienceConfig::from_toml_str("[ratelimit.p]\nlimit = 2\nper = \"1s\"").unwrap();
        let registry = bulwark_observe::Registry::new();
        let svc = c
            .client_layer::<u32>("p", &registry)
            .unwrap()
            .layer(tower::service_fn(|n: u32| async move {
                Ok::<_, bulwark_core::BoxError>(n)
            }));
        assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
        assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
        let e = svc.clone().oneshot(3).await.unwrap_err();
        let limited = bulwark_core::error::find::<bulwark_core::error::RateLimited>(&*e)
            .unwrap_or_else(|| panic!("{e}"));
        assert_eq!(limited.retry_after(), std::time::Duration::from_millis(500));
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert_eq!(svc.oneshot(4).await.unwrap(), 4);
    }

    #[cfg(not(feature = "fleet"))]
    #[tokio::test(flavor = "current_thread")]
    async fn shared_without_the_feature_is_an_error() {
        let c = ResilienceConfig::from_toml_str(
            "[fleet]\n[breaker.p]\nshared = true\n[retry_budget.q]\nshared = true",
        )
        .unwrap();
        let registry = bulwark_observe::Registry::new();
        let e = c.client_layer::<u32>("p", &registry).unwrap_err();
        assert_eq!(e.path(), "breaker.p.shared");
        assert!(e.reason().contains("`fleet` feature"), "{e}");
        let e = c.client_layer::<u32>("q", &registry).unwrap_err();
        assert_eq!(e.path(), "retry_budget.q.shared");
        let e = c.client_stack("p").unwrap_err();
        assert_eq!(e.path(), "breaker.p.shared");
    }

    #[cfg(feature = "fleet")]
    #[test]
    fn shared_outside_a_runtime_is_an_error() {
        let c = ResilienceConfig::from_toml_str("[fleet]\n[breaker.p]\nshared = true").unwrap();
        let registry = bulwark_observe::Registry::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // The connection is made inside a runtime, the gate outside one.
        let _ = rt
            .block_on(async { c.fleet_connection(&registry) })
            .unwrap();
        let e = c.client_layer::<u32>("p", &registry).unwrap_err();
        assert_eq!(e.path(), "breaker.p.runtime", "{e}");
    }
}
