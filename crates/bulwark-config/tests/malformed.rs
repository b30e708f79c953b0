//! Malformed documents: a value of the wrong type at every level of every
//! section, and every duration setting at its extremes. Each must be a
//! typed error naming the offending setting: never a panic, never a silent
//! default. Durations that load must build a stack a call goes through.

use bulwark_config::{ResilienceConfig, MAX_DURATION};
use bulwark_core::BoxError;
use bulwark_observe::Registry;
use proptest::prelude::*;
use std::time::Duration;
use tower::{Layer, ServiceExt};

const LAYERS: [&str; 6] = [
    "breaker",
    "retry",
    "timeout",
    "bulkhead",
    "retry_budget",
    "keyed_breaker",
];

/// Values of every TOML type but a table.
const NOT_TABLES: [&str; 6] = ["5", "\"fast\"", "true", "1.5", "[1, 2]", "1979-05-27"];

/// A setting of each layer, with a valid value and its type.
const SETTINGS: [(&str, &str, &str); 24] = [
    ("breaker", "window", "\"count\""),
    ("breaker", "window_size", "100"),
    ("breaker", "window_duration", "\"60s\""),
    ("breaker", "failure_rate", "0.5"),
    ("breaker", "slow_call_duration", "\"1s\""),
    ("breaker", "consecutive_failures", "5"),
    ("breaker", "open_for", "\"30s\""),
    ("breaker", "open_backoff_factor", "2.0"),
    ("breaker", "open_for_max", "\"5m\""),
    ("retry", "max_attempts", "3"),
    ("retry", "backoff", "\"constant\""),
    ("retry", "initial_backoff", "\"100ms\""),
    ("retry", "backoff_factor", "2.0"),
    ("retry", "jitter", "\"none\""),
    ("retry", "max_pushback", "\"30s\""),
    ("retry", "deadline", "\"5s\""),
    ("timeout", "total", "\"2s\""),
    ("timeout", "attempt", "\"1s\""),
    ("bulkhead", "max_concurrent", "8"),
    ("bulkhead", "max_wait", "\"1s\""),
    ("bulkhead", "max_queued", "8"),
    ("retry_budget", "ratio", "0.2"),
    ("retry_budget", "window", "\"10s\""),
    ("keyed_breaker", "max_keys", "10"),
];

/// Values of the wrong type for a setting whose valid value is `valid`.
fn wrong_types(valid: &str) -> Vec<&'static str> {
    let all = [
        "\"fast\"",
        "5",
        "-1",
        "1.5",
        "true",
        "[1, 2]",
        "{ a = 1 }",
        "1979-05-27",
    ];
    let is_string = valid.starts_with('"');
    let is_float = valid.contains('.') && !is_string;
    let is_int = !is_string && !is_float;
    all.into_iter()
        .filter(|v| {
            let v_string = v.starts_with('"');
            // An integer where a float is expected is a valid float; a
            // negative number where an unsigned one is expected is still
            // wrong (and an error), so it stays.
            !(is_string && v_string)
                && !(is_float && (*v == "5" || *v == "-1" || *v == "1.5"))
                && !(is_int && *v == "5")
        })
        .collect()
}

fn error_path(toml: &str) -> String {
    match ResilienceConfig::from_toml_str(toml) {
        Ok(c) => panic!("loaded silently:\n{toml}\n=> {c:?}"),
        Err(e) => {
            assert!(!e.reason().is_empty(), "{toml}");
            e.path().to_owned()
        }
    }
}

#[test]
fn the_issue_documents() {
    let cases = [
        ("[breaker]\npayments = 5", "breaker.payments"),
        ("[retry]\npayments = \"fast\"", "retry.payments"),
        ("[defaults]\nbreaker = \"fast\"", "defaults.breaker"),
        ("[defaults]\ntimeout = 3", "defaults.timeout"),
    ];
    for (toml, path) in cases {
        assert_eq!(error_path(toml), path, "{toml}");
    }
}

#[test]
fn a_non_table_anywhere_a_table_belongs() {
    for value in NOT_TABLES {
        // The whole `defaults` and each layer section.
        assert_eq!(error_path(&format!("defaults = {value}")), "defaults");
        for layer in LAYERS {
            assert_eq!(error_path(&format!("{layer} = {value}")), layer);
            // An instance, and a layer's defaults.
            assert_eq!(
                error_path(&format!("[{layer}]\npayments = {value}")),
                format!("{layer}.payments"),
                "{layer} = {value}"
            );
            assert_eq!(
                error_path(&format!("[defaults]\n{layer} = {value}")),
                format!("defaults.{layer}"),
                "{layer} = {value}"
            );
            // Next to a valid instance, too.
            assert_eq!(
                error_path(&format!("[{layer}.ok]\n[{layer}]\nbad = {value}")),
                format!("{layer}.bad"),
            );
        }
    }
    // The switch.
    for value in ["\"yes\"", "1", "[true]", "{ on = true }"] {
        assert_eq!(error_path(&format!("enabled = {value}")), "enabled");
    }
}

#[test]
fn a_setting_of_the_wrong_type_in_an_instance_or_the_defaults() {
    for (layer, field, valid) in SETTINGS {
        // The valid value loads (so the table below tests the type alone).
        let ok = format!("[{layer}.p]\n{field} = {valid}");
        ResilienceConfig::from_toml_str(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        for wrong in wrong_types(valid) {
            for at in [format!("{layer}.p"), format!("defaults.{layer}")] {
                let toml = format!("[{at}]\n{field} = {wrong}");
                assert_eq!(error_path(&toml), format!("{at}.{field}"), "{toml}");
            }
        }
    }
}

#[test]
fn a_time_window_too_short_for_its_buckets_names_the_length() {
    let toml = "[breaker.p]\nwindow = \"time\"\nwindow_duration = \"5ns\"\nwindow_buckets = 10";
    let e = ResilienceConfig::from_toml_str(toml).unwrap_err();
    assert_eq!(e.path(), "breaker.p.window_duration");
    assert!(e.reason().contains("window_buckets"), "{}", e.reason());
    let toml =
        "[defaults.breaker]\nwindow = \"time\"\nwindow_duration = \"1ns\"\nwindow_buckets = 2";
    assert_eq!(error_path(toml), "defaults.breaker.window_duration");
}

/// Every duration setting: (layer, field, other settings it needs).
const DURATIONS: [(&str, &str, &str); 15] = [
    (
        "breaker",
        "window_duration",
        "window = \"time\"\nwindow_buckets = 1",
    ),
    ("breaker", "slow_call_duration", ""),
    ("breaker", "open_for", ""),
    (
        "breaker",
        "open_for_max",
        "open_for = \"0s\"\nopen_backoff_factor = 2.0",
    ),
    ("retry", "initial_backoff", "max_backoff = \"365d\""),
    ("retry", "backoff_step", "backoff = \"linear\""),
    ("retry", "max_backoff", "initial_backoff = \"0s\""),
    ("retry", "max_pushback", ""),
    ("retry", "deadline", ""),
    ("timeout", "total", ""),
    ("timeout", "attempt", ""),
    ("timeout", "readiness", "attempt = \"1s\""),
    ("bulkhead", "max_wait", ""),
    ("retry_budget", "window", ""),
    ("keyed_breaker", "idle_timeout", ""),
];

/// Loads `field = value` (and, when it loads, builds the stack and makes a
/// call through it in paused time). Returns the error path, if refused.
fn load_duration(layer: &str, field: &str, extra: &str, value: &str) -> Option<String> {
    let toml = format!("[{layer}.p]\n{extra}\n{field} = \"{value}\"");
    let config = match ResilienceConfig::from_toml_str(&toml) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.reason().is_empty());
            return Some(e.path().to_owned());
        }
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(async {
            let registry = Registry::new();
            let layer = config
                .client_layer::<u32>("p", &registry)
                .unwrap_or_else(|e| panic!("{toml}: loads but builds no stack: {e}"));
            let svc = layer.layer(tower::service_fn(|n: u32| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, BoxError>(n)
            }));
            // Settings a call can fail on (a tiny timeout) end in an error;
            // none may hang for more than a day or panic.
            let day = Duration::from_secs(86_400);
            let answer = tokio::time::timeout(day, svc.oneshot(7)).await;
            assert!(answer.is_ok(), "{toml}: the call hung");
        });
    None
}

#[test]
fn every_duration_setting_at_its_extremes() {
    let refused = [
        "18446744073709551615s",
        "500000000000y",
        "366d",
        "8760h 1s",
        "99999999999999999999ns",
    ];
    for (layer, field, extra) in DURATIONS {
        let path = format!("{layer}.p.{field}");
        for value in refused {
            assert_eq!(
                load_duration(layer, field, extra, value).as_deref(),
                Some(path.as_str()),
                "{field} = {value}"
            );
        }
        for value in ["0s", "1ns", "1ms", "10s", "365d"] {
            if let Some(p) = load_duration(layer, field, extra, value) {
                // A limit that cannot work (zero, or below a layer's own
                // floor) names the setting itself.
                assert_eq!(p, path, "{field} = {value}");
            }
        }
    }
    assert_eq!(MAX_DURATION, Duration::from_secs(365 * 86_400));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_durations_are_refused_or_work(
        setting in 0..DURATIONS.len(),
        secs in prop_oneof![0u64..1_000, 0u64..40_000_000, any::<u64>()],
        nanos in 0u32..1_000_000_000,
    ) {
        let (layer, field, extra) = DURATIONS[setting];
        let d = Duration::new(secs, nanos);
        let value = format!("{secs}s {nanos}ns");
        match load_duration(layer, field, extra, &value) {
            Some(p) => {
                prop_assert_eq!(p, format!("{layer}.p.{field}"));
            }
            None => prop_assert!(d <= MAX_DURATION, "{} = {:?} loaded", field, d),
        }
    }
}
