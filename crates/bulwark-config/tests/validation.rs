//! Every validation error: the path of the setting and the reason. Bad
//! configuration never panics and never falls back to a default.

use bulwark_config::ResilienceConfig;

fn error(toml: &str) -> (String, String) {
    let e = ResilienceConfig::from_toml_str(toml).expect_err(toml);
    (e.path().to_owned(), e.reason().to_owned())
}

fn path(toml: &str) -> String {
    error(toml).0
}

#[test]
fn breaker_settings() {
    let cases = [
        ("[breaker.p]\nfailure_rate = 0.0", "breaker.p.failure_rate"),
        ("[breaker.p]\nfailure_rate = 1.01", "breaker.p.failure_rate"),
        ("[breaker.p]\nfailure_rate = -1", "breaker.p.failure_rate"),
        (
            "[breaker.p]\nslow_call_rate = 2.0",
            "breaker.p.slow_call_rate",
        ),
        (
            "[breaker.p]\nslow_call_duration = \"0s\"",
            "breaker.p.slow_call_duration",
        ),
        ("[breaker.p]\nwindow_size = 0", "breaker.p.window_size"),
        (
            "[breaker.p]\nwindow_size = 2000000",
            "breaker.p.window_size",
        ),
        (
            "[breaker.p]\nwindow = \"count\"\nwindow_size = 5\nminimum_calls = 6",
            "breaker.p.minimum_calls",
        ),
        ("[breaker.p]\nminimum_calls = 0", "breaker.p.minimum_calls"),
        (
            "[breaker.p]\nwindow = \"time\"\nwindow_duration = \"0s\"",
            "breaker.p.window_duration",
        ),
        (
            "[breaker.p]\nwindow = \"time\"\nwindow_buckets = 0",
            "breaker.p.window_buckets",
        ),
        (
            "[breaker.p]\nconsecutive_failures = 0",
            "breaker.p.consecutive_failures",
        ),
        (
            "[breaker.p]\nopen_backoff_factor = 0.5",
            "breaker.p.open_backoff_factor",
        ),
        (
            "[breaker.p]\nopen_for = \"10s\"\nopen_for_max = \"5s\"",
            "breaker.p.open_for_max",
        ),
        (
            "[breaker.p]\npermitted_probes = 0",
            "breaker.p.permitted_probes",
        ),
        (
            "[breaker.p]\nsuccesses_to_close = 0",
            "breaker.p.successes_to_close",
        ),
        ("[breaker.p]\nwindow = \"sliding\"", "breaker.p.window"),
        ("[breaker.p]\nopen_for = 30", "breaker.p.open_for"),
        (
            "[breaker.p]\nfailure_rate = \"high\"",
            "breaker.p.failure_rate",
        ),
        ("[breaker.p]\nfailur_rate = 0.2", "breaker.p.failur_rate"),
    ];
    for (toml, expected) in cases {
        assert_eq!(path(toml), expected, "{toml}");
    }
    let (_, reason) = error("[breaker.p]\nfailure_rate = 1.5");
    assert_eq!(reason, "must be in (0, 1], got 1.5");
    let (_, reason) = error("[breaker.p]\nwindow_size = 0");
    assert_eq!(reason, "must be at least 1 call");
}

#[test]
fn defaults_are_validated_too() {
    assert_eq!(
        path("[defaults.breaker]\nfailure_rate = 3"),
        "defaults.breaker.failure_rate"
    );
    assert_eq!(
        path("[defaults.timeout]\ntotal = \"1s\"\nattempt = \"1s\""),
        "defaults.timeout.attempt"
    );
}

#[test]
fn retry_and_budget_settings() {
    let cases = [
        ("[retry.p]\nmax_attempts = 0", "retry.p.max_attempts"),
        ("[retry.p]\nmax_attempts = 1000", "retry.p.max_attempts"),
        ("[retry.p]\nbackoff_factor = 0.9", "retry.p.backoff_factor"),
        (
            "[retry.p]\ninitial_backoff = \"2s\"\nmax_backoff = \"1s\"",
            "retry.p.max_backoff",
        ),
        ("[retry.p]\ndeadline = \"0s\"", "retry.p.deadline"),
        ("[retry.p]\njitter = \"lots\"", "retry.p.jitter"),
        ("[retry.p]\nbudget = \"nowhere\"", "retry.p.budget"),
        ("[retry_budget.b]\nratio = -0.1", "retry_budget.b.ratio"),
        ("[retry_budget.b]\nratio = 5000", "retry_budget.b.ratio"),
        (
            "[retry_budget.b]\nwindow = \"1ms\"",
            "retry_budget.b.window",
        ),
        ("[retry_budget.b]\nwindow = \"2h\"", "retry_budget.b.window"),
    ];
    for (toml, expected) in cases {
        assert_eq!(path(toml), expected, "{toml}");
    }
}

#[test]
fn timeouts() {
    let (p, reason) = error("[timeout.p]\ntotal = \"1s\"\nattempt = \"1s\"");
    assert_eq!(p, "timeout.p.attempt");
    assert!(
        reason.starts_with("must be shorter than the total timeout (1s)"),
        "{reason}"
    );
    assert_eq!(
        path("[timeout.p]\ntotal = \"1s\"\nattempt = \"2s\""),
        "timeout.p.attempt"
    );
    assert_eq!(path("[timeout.p]\ntotal = \"0ms\""), "timeout.p.total");
    assert_eq!(path("[timeout.p]\nattempt = \"0s\""), "timeout.p.attempt");
    assert_eq!(
        path("[timeout.p]\nreadiness = \"1s\""),
        "timeout.p.readiness"
    );
    // Shorter is fine.
    ResilienceConfig::from_toml_str("[timeout.p]\ntotal = \"1s\"\nattempt = \"999ms\"").unwrap();
}

#[test]
fn bulkheads_and_keyed_breakers() {
    assert_eq!(
        path("[bulkhead.p]\nmax_concurrent = 0"),
        "bulkhead.p.max_concurrent"
    );
    assert_eq!(
        path("[bulkhead.p]\nmax_concurrent = -1"),
        "bulkhead.p.max_concurrent"
    );
    assert_eq!(
        path("[bulkhead.p]\nmax_wait = \"1s\"\nmax_queued = 0"),
        "bulkhead.p.max_queued"
    );
    assert_eq!(
        path("[keyed_breaker.k]\nmax_keys = 0"),
        "keyed_breaker.k.max_keys"
    );
    assert_eq!(
        path("[keyed_breaker.k]\nidle_timeout = \"0s\""),
        "keyed_breaker.k.idle_timeout"
    );
}

#[test]
fn structure() {
    // Unknown top-level keys and layers, bad names, bad TOML.
    assert_eq!(path("enable = true"), "enable");
    assert_eq!(path("enabled = \"yes\""), "enabled");
    assert_eq!(
        path("[defaults.breakers]\nfailure_rate = 0.1"),
        "defaults.breakers"
    );
    assert_eq!(path("[circuit.p]\nfailure_rate = 0.1"), "circuit");
    assert_eq!(
        path("[breaker.Payments]\nfailure_rate = 0.1"),
        "breaker.Payments"
    );
    assert_eq!(
        path("[breaker.\"pay.ments\"]\nfailure_rate = 0.1"),
        "breaker.pay.ments"
    );
    let e = ResilienceConfig::from_toml_str("[breaker.p\nfailure_rate = 0.1").unwrap_err();
    assert!(!e.reason().is_empty());
}
