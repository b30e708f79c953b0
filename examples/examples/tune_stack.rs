//! Run with: SEED=1 cargo run --release --example tune_stack
//!
//! How the attempt timeout's default was chosen: the recommended client
//! stack with attempt timeouts from 500 ms to 1.2 s (at a 2 s deadline),
//! through the scenarios where it matters, printing for each stack
//! `goodput / goodput during the fault / amplification during the fault`.
//! Run it with several seeds: the differences that matter must hold on
//! each. The other variants measured the same way (adaptive bulkheads, the
//! adaptive throttle) are one `variant(..)` line each.
use bulwark::bulkhead::adaptive::{Gradient2, Vegas};
use bulwark::sim::{stacks, Scenario, SimRequest, Simulation, Stack, StackContext};
use tower::ServiceBuilder;

fn variant(name: &str, bulkhead: u8, throttle: bool, attempt_ms: u64) -> Stack {
    Stack::new(name.to_string(), move |upstream, ctx: &mut StackContext| {
        let mut s = bulwark::stack::ClientStack::new()
            .total_timeout(ctx.scenario().deadline)
            .attempt_timeout(std::time::Duration::from_millis(attempt_ms))
            .seed(ctx.seed());
        s = match bulkhead {
            1 => s.bulkhead(|b| b.max_concurrent(100).adaptive(Gradient2::default())),
            2 => s.bulkhead(|b| b.max_concurrent(100).adaptive(Vegas::new(20))),
            _ => s,
        };
        if throttle {
            s = s.adaptive_throttle(|t| t);
        }
        let layer = s
            .classifier(stacks::classify)
            .pushback(stacks::pushback)
            .replay(stacks::IdempotentOnly)
            .breaker_per_key(|r: &SimRequest| r.host, 64)
            .build()
            .unwrap();
        ServiceBuilder::new().layer(layer).service(upstream)
    })
}

fn main() {
    let report = Simulation::new()
        .scenarios(
            Scenario::builtin()
                .into_iter()
                .filter(|s| ["brownout", "latency-spike", "black-hole"].contains(&s.name.as_str())),
        )
        .stack(stacks::none())
        .stack(stacks::tower())
        .stack(variant("a500", 0, false, 500))
        .stack(variant("a700", 0, false, 700))
        .stack(variant("a800", 0, false, 800))
        .stack(variant("a1000", 0, false, 1000))
        .stack(variant("a1200", 0, false, 1200))
        .threads(2)
        .seed(
            std::env::var("SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
        )
        .run();
    for r in &report.results {
        print!("{:<14}", r.scenario.name);
        for run in &r.runs {
            let m = &run.metrics;
            print!(
                " {}: {:.2}/{:.2}/{:.3}",
                run.stack,
                100.0 * m.goodput,
                100.0 * m.fault_goodput.unwrap_or(0.0),
                m.fault_amplification.unwrap_or(0.0)
            );
        }
        println!();
    }
}
