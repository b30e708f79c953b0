//! Run with: cargo run --release --example tune_breaker
//!
//! How the breaker's defaults were chosen: a grid of breaker settings
//! (window, minimum calls, open time and its growth, half-open probes and
//! attempt timeout) inside the recommended client stack, through the
//! simulator's scenarios, one line per setting: goodput during each fault,
//! then the outage's amplification and recovery, the black hole's
//! amplification and detection, the brownout's amplification and the
//! flapping scenario's overall goodput. Edit the grid in `main` to explore.
use bulwark::backoff::{BackoffPolicy, Jitter};
use bulwark::breaker::Breaker;
use bulwark::sim::{stacks, Scenario, SimRequest, Simulation, Stack, StackContext};
use std::time::Duration;
use tower::ServiceBuilder;

#[derive(Clone, Copy, Debug)]
struct Cfg {
    window: u64,
    min: u32,
    consec: u32,
    open_ms: u64,
    open_max_ms: u64,
    probes: u32,
    s: u32,
    f: u32,
    attempt_ms: u64,
}

fn stack(c: Cfg) -> Stack {
    Stack::new(format!("{c:?}"), move |upstream, ctx: &mut StackContext| {
        let open = if c.open_max_ms > c.open_ms {
            BackoffPolicy::exponential(Duration::from_millis(c.open_ms), 1.5)
                .with_max(Duration::from_millis(c.open_max_ms))
                .with_jitter(Jitter::Equal)
        } else {
            BackoffPolicy::constant(Duration::from_millis(c.open_ms))
        };
        let b = Breaker::builder()
            .time_window(Duration::from_secs(c.window), 10)
            .minimum_calls(c.min)
            .failure_rate(0.5)
            .consecutive_failures(c.consec)
            .open_backoff(open)
            .permitted_probes(c.probes)
            .successes_to_close(c.s)
            .failures_to_reopen(c.f);
        let layer = bulwark::stack::ClientStack::new()
            .total_timeout(ctx.scenario().deadline)
            .classifier(stacks::classify)
            .pushback(stacks::pushback)
            .replay(stacks::IdempotentOnly)
            .seed(ctx.seed())
            .breaker(|_| b)
            .attempt_timeout(Duration::from_millis(c.attempt_ms))
            .breaker_per_key(|r: &SimRequest| r.host, 64)
            .build()
            .unwrap();
        ServiceBuilder::new().layer(layer).service(upstream)
    })
}

fn main() {
    let names = [
        "outage",
        "black-hole",
        "brownout",
        "flapping",
        "slow-recovery",
        "one-bad-host",
        "latency-spike",
        "quiet-outage",
        "rate-limited",
    ];
    let scenarios: Vec<Scenario> = names.iter().map(|n| Scenario::named(n).unwrap()).collect();
    let mut cfgs = Vec::new();
    for window in [10] {
        for min in [20] {
            for consec in [10] {
                for attempt_ms in [500, 700, 900] {
                    for (open_ms, open_max_ms) in [(200, 200), (200, 500), (200, 1000)] {
                        for (probes, s, f) in [(1, 1, 1), (3, 2, 2), (2, 1, 2)] {
                            cfgs.push(Cfg {
                                window,
                                min,
                                consec,
                                open_ms,
                                open_max_ms,
                                probes,
                                s,
                                f,
                                attempt_ms,
                            });
                        }
                    }
                }
            }
        }
    }
    let sim = Simulation::new()
        .scenarios(scenarios)
        .stack(stacks::none())
        .stacks(cfgs.iter().map(|c| stack(*c)))
        .threads(2);
    let report = sim.run();
    // One line per config: fault goodput per scenario, + key metrics.
    print!("{:<100}", "config");
    for n in names {
        print!(" {:>9}", &n[..n.len().min(9)]);
    }
    println!(" | out.amp  out.rec  bh.amp  bh.det  brown.amp overall-flap");
    for (i, _) in std::iter::once(0).chain(1..=cfgs.len()).enumerate() {
        let name = &report.results[0].runs[i].stack;
        print!("{:<100}", &name[..name.len().min(100)]);
        for r in &report.results {
            let m = &r.runs[i].metrics;
            print!(
                " {:>8.1}%",
                100.0
                    * m.healthy_hosts_goodput
                        .or(m.fault_goodput)
                        .unwrap_or(m.goodput)
            );
        }
        let o = &report.results[0].runs[i].metrics;
        let b = &report.results[1].runs[i].metrics;
        let br = &report.results[2].runs[i].metrics;
        let fl = &report.results[3].runs[i].metrics;
        println!(
            " | {:.3} {:>8?} {:.3} {:>8?} {:.2} {:.1}%",
            o.fault_amplification.unwrap_or(0.0),
            o.recovered_in,
            b.fault_amplification.unwrap_or(0.0),
            b.detected_in,
            br.fault_amplification.unwrap_or(0.0),
            100.0 * fl.goodput
        );
    }
}
