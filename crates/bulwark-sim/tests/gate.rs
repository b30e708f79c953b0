//! The simulator's gate: every built-in scenario through Bulwark's
//! recommended stacks (the generic `ClientStack` and the HTTP one) against
//! the baselines, held to the table of goals of the defaults. A change that
//! makes a scenario worse fails here, whatever its unit tests say.
//!
//! Where a goal of the table is not reached, the test holds the level that
//! is, and says so: the figures and the reasons are in `BENCHMARKS.md`.
//!
//! It also checks the simulator itself: no resilience amplifies exactly 1,
//! unbudgeted retries amplify an outage by the attempt count, and runs
//! repeat exactly.

use bulwark_core::BoxError;
use bulwark_retry::{RetryBudget, RetryLayer};
use bulwark_sim::{stacks, FailureKind, Metrics, Report, Scenario, Simulation, Stack};
use std::sync::OnceLock;
use std::time::Duration;
use tower::ServiceBuilder;

const RECOMMENDED: [&str; 2] = ["bulwark", "bulwark http"];

/// Every built-in scenario, the baselines and the recommended stacks, run
/// once for all the tests of this file.
fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        Simulation::new()
            .scenarios(Scenario::builtin())
            .stacks([
                stacks::none(),
                stacks::tower(),
                stacks::bulwark(),
                stacks::bulwark_http(),
            ])
            .threads(2)
            .run()
    })
}

fn metrics<'a>(report: &'a Report, scenario: &str, stack: &str) -> &'a Metrics {
    &report
        .scenario(scenario)
        .unwrap_or_else(|| panic!("no scenario {scenario}"))
        .run(stack)
        .unwrap_or_else(|| panic!("no stack {stack}"))
        .metrics
}

fn in_fault(m: &Metrics) -> f64 {
    m.fault_goodput.expect("the scenario has a fault")
}

#[test]
fn outage_is_detected_fast_costs_the_upstream_little_and_ends_fast() {
    for stack in RECOMMENDED {
        let m = metrics(report(), "outage", stack);
        let amp = m.fault_amplification.unwrap();
        assert!(
            amp <= 0.05,
            "{stack}: amplification during the outage {amp}"
        );
        let detected = m.detected_in.expect("detected");
        assert!(
            detected <= Duration::from_secs(1),
            "{stack}: detected in {detected:?}"
        );
        let recovered = m.recovered_in.expect("recovered");
        assert!(
            recovered <= Duration::from_secs(2),
            "{stack}: recovered in {recovered:?}"
        );
    }
}

#[test]
fn an_outage_of_any_length_ends_within_two_seconds_of_the_upstream() {
    // The open time must not be lucky: outages that are no multiple of it.
    let scenarios = [7, 37, 61, 113].map(|secs| {
        let mut s = Scenario::named("outage").unwrap();
        s.name = format!("outage-{secs}s");
        s.phases[0].until = s.phases[0].from + Duration::from_secs(secs);
        s.duration = s.phases[0].until + Duration::from_secs(20);
        s
    });
    let report = Simulation::new()
        .scenarios(scenarios.clone())
        .stacks([stacks::bulwark(), stacks::bulwark_http()])
        .threads(2)
        .run();
    for s in &scenarios {
        for stack in RECOMMENDED {
            let m = metrics(&report, &s.name, stack);
            let recovered = m.recovered_in.expect("recovered");
            assert!(
                recovered <= Duration::from_secs(2),
                "{stack} in {}: recovered in {recovered:?}",
                s.name
            );
            assert!(
                m.fault_amplification.unwrap() <= 0.1,
                "{stack} in {}",
                s.name
            );
        }
    }
}

#[test]
fn black_hole_is_detected_within_a_second() {
    for stack in RECOMMENDED {
        let m = metrics(report(), "black-hole", stack);
        let amp = m.fault_amplification.unwrap();
        assert!(amp <= 0.05, "{stack}: amplification {amp}");
        let detected = m.detected_in.expect("detected");
        assert!(
            detected <= Duration::from_secs(1),
            "{stack}: detected in {detected:?}"
        );
    }
}

#[test]
fn brownout_keeps_more_than_no_resilience_and_tower() {
    let none = in_fault(metrics(report(), "brownout", "no resilience"));
    let tower = in_fault(metrics(report(), "brownout", "tower"));
    for stack in RECOMMENDED {
        let m = metrics(report(), "brownout", stack);
        let g = in_fault(m);
        assert!(
            g >= none + 0.05,
            "{stack}: {g} against no resilience's {none}"
        );
        assert!(g >= tower, "{stack}: {g} against tower's {tower}");
        // The goal is 1.15; a 20% budget spends 1.21 here, and 1.15 would
        // leave goodput below tower's (see BENCHMARKS.md). Hold what is.
        let amp = m.fault_amplification.unwrap();
        assert!(amp <= 1.23, "{stack}: amplification {amp}");
    }
}

#[test]
fn latency_spike_loses_almost_nothing() {
    // The goal is 99.9%. The slow answers of the 10% of requests that are
    // not idempotent cannot be retried by anyone (0.2% during the spike,
    // 0.11% of the run), so 99.89% is the ceiling; across seeds every
    // stack, tower's included, lands between 99.84% and 99.92%.
    let tower = metrics(report(), "latency-spike", "tower").goodput;
    for stack in RECOMMENDED {
        let g = metrics(report(), "latency-spike", stack).goodput;
        assert!(g >= 0.998, "{stack}: goodput {g}");
        assert!(
            g >= tower - 0.0005,
            "{stack}: goodput {g} against tower's {tower}"
        );
    }
}

#[test]
fn flapping_costs_at_most_a_point_against_no_resilience() {
    // The goal is "at least no resilience"; every moment the breaker is
    // still open after the upstream came back is lost, so the defaults
    // trade about one point here for a 3% probe load in outages.
    let none = metrics(report(), "flapping", "no resilience").goodput;
    for stack in RECOMMENDED {
        let g = metrics(report(), "flapping", stack).goodput;
        assert!(
            g >= none - 0.012,
            "{stack}: {g} against no resilience's {none}"
        );
    }
}

#[test]
fn rate_limited_answers_are_honoured_and_hopeless_retries_fail_at_once() {
    let none = in_fault(metrics(report(), "rate-limited", "no resilience"));
    for stack in RECOMMENDED {
        let m = metrics(report(), "rate-limited", stack);
        assert_eq!(m.early_retries, 0, "{stack}: retried before Retry-After");
        assert!(
            in_fault(m) >= none,
            "{stack}: {} against {none}",
            in_fault(m)
        );
        assert_eq!(
            m.failures.get(&FailureKind::Deadline),
            None,
            "{stack}: waited out the deadline"
        );
        let p99 = m.failure_p99[&FailureKind::RateLimited];
        assert!(
            p99 <= Duration::from_millis(10),
            "{stack}: a hopeless retry took {p99:?} to fail"
        );
    }
}

#[test]
fn overload_keeps_half_the_traffic() {
    for stack in RECOMMENDED {
        let m = metrics(report(), "overload", stack);
        assert!(m.goodput >= 0.5, "{stack}: goodput {}", m.goodput);
        assert!(
            in_fault(m) >= 0.49,
            "{stack}: during the overload {}",
            in_fault(m)
        );
    }
}

#[test]
fn one_bad_host_leaves_the_others_alone() {
    for stack in RECOMMENDED {
        let m = metrics(report(), "one-bad-host", stack);
        let good = m.healthy_hosts_goodput.unwrap();
        assert!(good >= 0.99, "{stack}: the good hosts kept {good}");
    }
}

#[test]
fn slow_recovery_and_a_quiet_client_are_not_made_worse() {
    for stack in RECOMMENDED {
        let none = in_fault(metrics(report(), "slow-recovery", "no resilience"));
        let g = in_fault(metrics(report(), "slow-recovery", stack));
        assert!(g >= none - 0.005, "{stack}: {g} against {none}");
        // A quiet client against a dead upstream sends at most one request
        // per call (the budget's floor is bounded; the breaker sheds).
        let amp = metrics(report(), "quiet-outage", stack)
            .fault_amplification
            .unwrap();
        assert!(amp <= 1.0, "{stack}: amplification {amp}");
    }
}

// The simulator itself.

#[test]
fn no_resilience_amplifies_exactly_one() {
    for r in &report().results {
        let m = &r.run("no resilience").unwrap().metrics;
        assert_eq!(m.amplification, 1.0, "{}", r.scenario.name);
        assert_eq!(m.upstream_received, m.requests, "{}", r.scenario.name);
    }
}

#[test]
fn unbudgeted_retries_amplify_an_outage_by_the_attempt_count() {
    let mut outage = Scenario::named("outage").unwrap();
    outage.non_idempotent = 0.0;
    outage.duration = Duration::from_secs(60);
    outage.phases[0].until = Duration::from_secs(50);
    let storm = Stack::new("3 attempts, no budget", |upstream, ctx| {
        ServiceBuilder::new()
            .layer(
                RetryLayer::new()
                    .max_attempts(3)
                    .budget(RetryBudget::unlimited())
                    .classifier(stacks::classify)
                    .seed(ctx.seed()),
            )
            .service(upstream)
    });
    let report = Simulation::new().scenario(outage).stack(storm).run();
    let amp = report.results[0].runs[0]
        .metrics
        .fault_amplification
        .unwrap();
    assert!((2.95..=3.0).contains(&amp), "amplification {amp}");
}

#[test]
fn runs_repeat_exactly() {
    let mut brownout = Scenario::named("brownout").unwrap();
    brownout.duration = Duration::from_secs(40);
    brownout.phases[0].until = Duration::from_secs(30);
    let run = |threads| {
        Simulation::new()
            .scenario(brownout.clone())
            .scenario(Scenario::named("quiet-outage").unwrap())
            .stacks([stacks::tower(), stacks::bulwark(), stacks::bulwark_http()])
            .threads(threads)
            .seed(7)
            .run()
    };
    let (a, b) = (run(1), run(2));
    // Compared as JSON, so a difference prints as one line.
    assert!(a.to_json() == b.to_json(), "two runs with one seed differ");
    assert_eq!(a, b);
    // And another seed is another run.
    let other = Simulation::new()
        .scenario(brownout)
        .stack(stacks::bulwark())
        .seed(8)
        .run();
    assert_ne!(
        other.results[0].runs[0].metrics,
        a.results[0].runs[1].metrics
    );
}

#[test]
fn a_stack_that_fails_everything_is_seen_as_failing() {
    // The report does not flatter: a stack that refuses every call gets 0.
    let mut spike = Scenario::named("latency-spike").unwrap();
    spike.duration = Duration::from_secs(5);
    spike.phases[0].from = Duration::from_secs(1);
    spike.phases[0].until = Duration::from_secs(4);
    let refuse = Stack::new("refuse", |_upstream, _ctx| {
        tower::service_fn(|_req: bulwark_sim::SimRequest| async {
            Err::<bulwark_sim::SimResponse, BoxError>("refused".into())
        })
    });
    let report = Simulation::new().scenario(spike).stack(refuse).run();
    let m = &report.results[0].runs[0].metrics;
    assert_eq!(m.goodput, 0.0);
    assert_eq!(m.upstream_received, 0);
    assert_eq!(m.failures[&FailureKind::Other], m.requests);
}

#[test]
fn the_example_scenario_file_parses_and_runs() {
    let text = include_str!("../../../examples/config/scenarios.toml");
    let scenarios = Scenario::parse_many(text).expect("the example file is valid");
    assert_eq!(scenarios.len(), 2);
    let mut short = scenarios[1].clone();
    short.duration = Duration::from_secs(30);
    short.phases[0].until = Duration::from_secs(25);
    let report = Simulation::new()
        .scenario(short)
        .stack(stacks::bulwark())
        .run();
    let m = &report.results[0].runs[0].metrics;
    assert!(m.healthy_hosts_goodput.unwrap() > 0.99, "{m:?}");
}

#[test]
fn the_upstream_counts_what_it_received_and_served_per_phase() {
    let flapping = metrics(report(), "flapping", "no resilience");
    assert_eq!(flapping.phases.len(), 12, "one entry per repeat");
    for p in &flapping.phases {
        assert!(p.received > 1_500, "{p:?}");
        // Only requests already in progress when the phase began succeed.
        assert!(
            p.served <= 10,
            "every new answer fails in a bad phase: {p:?}"
        );
    }
    let brownout = metrics(report(), "brownout", "no resilience");
    let p = brownout.phases[0];
    let share = p.served as f64 / p.received as f64;
    assert!((0.65..0.75).contains(&share), "30% errors: served {share}");
}

/// The scenarios where a concurrency limit matters, through the adaptive
/// client stack and the server stacks (fixed and adaptive); the baselines
/// and the fixed client stack are the main report's (same seed, same runs).
fn adaptive_report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        Simulation::new()
            .scenarios(Scenario::builtin().into_iter().filter(|s| {
                [
                    "brownout",
                    "overload",
                    "slow-recovery",
                    "latency-spike",
                    "flapping",
                ]
                .contains(&s.name.as_str())
            }))
            .stacks([
                stacks::bulwark_adaptive(),
                stacks::server(),
                stacks::server_adaptive(),
            ])
            .threads(2)
            .run()
    })
}

#[test]
fn an_adaptive_client_limit_stays_close_to_the_fixed_one_and_survives_a_brownout() {
    // Before the adaptive limits told the upstream's own latency and
    // failures from their own queueing, Gradient2 held 14.2% of the
    // brownout's traffic behind this stack; now 80.8% against the fixed
    // bulkhead's 85.0%, the largest gap of these scenarios (held here).
    for scenario in [
        "brownout",
        "overload",
        "slow-recovery",
        "latency-spike",
        "flapping",
    ] {
        let fixed = in_fault(metrics(report(), scenario, "bulwark"));
        let adaptive = in_fault(metrics(adaptive_report(), scenario, "bulwark, adaptive"));
        assert!(
            adaptive >= fixed - 0.05,
            "{scenario}: adaptive {adaptive} against fixed {fixed}"
        );
    }
}

#[test]
fn the_server_stack_protects_an_overloaded_upstream_and_costs_nothing_otherwise() {
    for scenario in [
        "brownout",
        "overload",
        "slow-recovery",
        "latency-spike",
        "flapping",
    ] {
        let none = in_fault(metrics(report(), scenario, "no resilience"));
        let fixed = in_fault(metrics(adaptive_report(), scenario, "server stack"));
        assert!(fixed >= none - 0.001, "{scenario}: {fixed} against {none}");
    }
    let none = in_fault(metrics(report(), "overload", "no resilience"));
    let fixed = metrics(adaptive_report(), "overload", "server stack");
    let adaptive = metrics(adaptive_report(), "overload", "server stack, adaptive");
    assert!(none < 0.2, "without it the overload is served late: {none}");
    for m in [fixed, adaptive] {
        assert!(in_fault(m) >= 0.49, "during the overload {}", in_fault(m));
    }
    assert!(
        adaptive.p99.unwrap() * 4 < fixed.p99.unwrap(),
        "the adaptive limit keeps the queue short: p99 {:?} against {:?}",
        adaptive.p99,
        fixed.p99
    );
    // It gives up a little where the latency is not a queue: the levels
    // reached, held (the figures are in BENCHMARKS.md).
    for (scenario, below) in [("brownout", 0.02), ("slow-recovery", 0.04)] {
        let none = in_fault(metrics(report(), scenario, "no resilience"));
        let a = in_fault(metrics(
            adaptive_report(),
            scenario,
            "server stack, adaptive",
        ));
        assert!(a >= none - below, "{scenario}: {a} against {none}");
    }
}
