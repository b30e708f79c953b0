//! Loading: file + environment overrides, defaults + named instances, the
//! global switch. Environment variables are set inside figment's `Jail`,
//! which serialises the tests that touch the process environment and
//! restores it afterwards.
// Jail's closures return figment::Error, which is large: not ours to shrink.
#![allow(clippy::result_large_err)]

use bulwark_config::layers::{BackoffKind, JitterKind, WindowKind};
use bulwark_config::{Loader, ResilienceConfig};
use figment::Jail;
use std::time::Duration;

const FILE: &str = r#"
enabled = true

[defaults.breaker]
failure_rate = 0.5
open_for = "30s"
minimum_calls = 20

[defaults.retry]
max_attempts = 3
jitter = "equal"

[breaker.payments]
failure_rate = 0.25
slow_call_duration = "750ms"

[breaker.search]
window = "time"
window_duration = "2m"
window_buckets = 24

[retry.payments]
max_attempts = 2
backoff = "constant"
initial_backoff = "250ms"
budget = "shared"

[retry_budget.shared]
ratio = 0.1
min_per_sec = 5

[timeout.payments]
total = "2s"
attempt = "500ms"

[bulkhead.payments]
max_concurrent = 16
max_wait = "50ms"

[keyed_breaker.hosts]
max_keys = 100
idle_timeout = "5m"
"#;

#[test]
fn file_defaults_and_named_instances() {
    let c = ResilienceConfig::from_toml_str(FILE).unwrap();
    assert!(c.enabled());
    let p = c.breaker("payments");
    assert_eq!(p.failure_rate, 0.25, "the instance's own setting");
    assert_eq!(p.minimum_calls, 20, "the shared default");
    assert_eq!(p.open_for, Duration::from_secs(30));
    assert_eq!(p.slow_call_duration, Some(Duration::from_millis(750)));
    assert_eq!(p.permitted_probes, 3, "the built-in default");
    let s = c.breaker("search");
    assert_eq!(s.window, WindowKind::Time);
    assert_eq!(s.window_duration, Duration::from_secs(120));
    assert_eq!(s.failure_rate, 0.5);
    // No section: the defaults.
    assert_eq!(c.breaker("other"), &c.defaults().breaker);

    let r = c.retry("payments");
    assert_eq!(r.max_attempts, 2);
    assert_eq!(r.backoff, BackoffKind::Constant);
    assert_eq!(r.initial_backoff, Duration::from_millis(250));
    assert_eq!(r.jitter, JitterKind::Equal, "from [defaults.retry]");
    assert_eq!(r.budget.as_deref(), Some("shared"));
    assert_eq!(c.retry_budget("shared").ratio, 0.1);
    assert_eq!(c.retry_budget("shared").window, Duration::from_secs(10));
    assert_eq!(c.timeout("payments").total, Some(Duration::from_secs(2)));
    assert_eq!(c.timeout("search").total, None);
    assert_eq!(c.bulkhead("payments").max_concurrent, 16);
    assert_eq!(c.bulkhead("payments").max_wait, Duration::from_millis(50));
    assert_eq!(c.keyed_breaker("hosts").max_keys, 100);
    assert_eq!(
        c.names().into_iter().collect::<Vec<_>>(),
        vec!["hosts", "payments", "search", "shared"]
    );
}

#[test]
fn environment_overrides_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("bulwark.toml", FILE)?;
        jail.set_env("BULWARK_BREAKER__PAYMENTS__FAILURE_RATE", "0.2");
        jail.set_env("BULWARK_BREAKER__PAYMENTS__OPEN_FOR", "10s");
        jail.set_env("BULWARK_DEFAULTS__BREAKER__MINIMUM_CALLS", "5");
        // A new instance from the environment alone.
        jail.set_env("BULWARK_BULKHEAD__REPORTS__MAX_CONCURRENT", "4");
        jail.set_env("BULWARK_TIMEOUT__PAYMENTS__ATTEMPT", "250ms");
        let c = ResilienceConfig::load("bulwark.toml").unwrap();
        let p = c.breaker("payments");
        assert_eq!(p.failure_rate, 0.2);
        assert_eq!(p.open_for, Duration::from_secs(10));
        assert_eq!(p.minimum_calls, 5);
        assert_eq!(p.slow_call_duration, Some(Duration::from_millis(750)));
        assert_eq!(c.breaker("search").minimum_calls, 5);
        assert_eq!(c.bulkhead("reports").max_concurrent, 4);
        assert_eq!(c.bulkhead("reports").max_wait, Duration::ZERO);
        assert_eq!(
            c.timeout("payments").attempt,
            Some(Duration::from_millis(250))
        );
        assert_eq!(c.timeout("payments").total, Some(Duration::from_secs(2)));
        Ok(())
    });
}

#[test]
fn the_global_switch_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.create_file("bulwark.toml", FILE)?;
        jail.set_env("BULWARK_ENABLED", "false");
        assert!(!ResilienceConfig::load("bulwark.toml").unwrap().enabled());
        Ok(())
    });
}

#[test]
fn a_bad_value_in_the_environment_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("bulwark.toml", FILE)?;
        jail.set_env("BULWARK_BREAKER__PAYMENTS__FAILURE_RATE", "1.5");
        let err = ResilienceConfig::load("bulwark.toml").unwrap_err();
        assert_eq!(err.path(), "breaker.payments.failure_rate");
        assert!(
            err.reason().starts_with("must be in (0, 1], got 1.5"),
            "{err}"
        );
        assert!(err.origin().unwrap().contains("BULWARK_"), "{err}");

        jail.set_env("BULWARK_BREAKER__PAYMENTS__FAILURE_RATE", "0.2");
        jail.set_env("BULWARK_BREAKER__PAYMENTS__OPEN_FOR", "soon");
        let err = ResilienceConfig::load("bulwark.toml").unwrap_err();
        assert_eq!(err.path(), "breaker.payments.open_for");
        Ok(())
    });
}

#[test]
fn an_environment_variable_of_no_known_setting_is_an_error() {
    Jail::expect_with(|jail| {
        jail.set_env("BULWARK_BREAKER__PAYMENTS__FAILURE_RAT", "0.2");
        let err = Loader::new().env().load().unwrap_err();
        assert_eq!(err.path(), "breaker.payments.failure_rat");
        Ok(())
    });
}

#[test]
fn a_missing_file_is_an_error_not_the_defaults() {
    let err = ResilienceConfig::load("/nonexistent/bulwark.toml").unwrap_err();
    assert!(err.reason().contains("not found"), "{err}");
}

#[test]
fn empty_means_the_documented_defaults() {
    let c = Loader::new().load().unwrap();
    assert_eq!(c, ResilienceConfig::default());
    let b = c.breaker("x");
    assert_eq!(b.window_size, 100);
    assert_eq!(b.failure_rate, 0.5);
    assert_eq!(b.minimum_calls, 20);
    assert_eq!(b.open_for, Duration::from_millis(200));
    assert_eq!(c.retry("x").max_attempts, 3);
    assert_eq!(c.bulkhead("x").max_concurrent, 64);
    assert!(c.enabled());
}

#[test]
fn the_breaker_defaults_are_the_builders() {
    // One set of defaults: a breaker configured with nothing is the
    // breaker `Breaker::builder()` makes.
    let from_config = format!(
        "{:?}",
        bulwark_config::layers::BreakerConfig::default().builder()
    );
    let built_in = format!("{:?}", bulwark_breaker::Breaker::builder());
    assert_eq!(from_config, built_in);
}

#[test]
fn a_setting_a_layer_refuses_keeps_the_layers_error_as_its_source() {
    use bulwark_core::error::{find, ConfigError};
    // The budget's ratio is checked by the retry budget itself.
    let err = ResilienceConfig::from_toml_str("[retry_budget.payments]\nratio = -1.0").unwrap_err();
    assert_eq!(err.path(), "retry_budget.payments.ratio");
    let setting = find::<ConfigError>(&err).expect("the layer's own error as the source");
    assert_eq!(setting.field(), "ratio");
    assert_eq!(setting.reason(), err.reason());
    // A value the file itself refuses (not a duration) has no layer error
    // behind it.
    let err = ResilienceConfig::from_toml_str("[timeout.payments]\ntotal = true").unwrap_err();
    assert!(find::<ConfigError>(&err).is_none(), "{err}");
}
