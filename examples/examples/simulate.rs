//! Run with: cargo run --example simulate -- [--scenario NAME] [--scenarios FILE] [--config FILE [--upstream NAME]] [--out DIR] [--servers | --adaptive] [--seed N] [--threads N]
//!
//! Runs Bulwark's recommended stacks and the baselines (no resilience,
//! tower's own layers) through the fault simulator's scenarios in virtual
//! time, prints a Markdown table, and writes `report.md`, `report.json` and
//! one SVG picture per scenario into the output folder
//! (`target/simulation` by default).
//!
//! - `--scenario NAME`: only this built-in scenario (repeatable; `--list`
//!   names them all).
//! - `--scenarios FILE`: your own scenarios, from a TOML file of
//!   `[[scenario]]` tables or a JSON array (see `bulwark::sim::Scenario`).
//! - `--config FILE`: also runs the client stack that this `bulwark-config`
//!   file describes for upstream `--upstream NAME` (default `sim`), next to
//!   the others, so a configuration can be judged before it ships.
//! - `--servers`: instead of the client stacks, the HTTP `ServerStack` (fixed
//!   and adaptive bulkhead) run by the upstream's own server, with callers
//!   that have no resilience, against no resilience.
//! - `--adaptive`: instead, the adaptive bulkheads next to the fixed ones,
//!   in the client stack and in the server stack.
//! - `--seed N`: another seed (runs repeat exactly for the same seed).
//! - `--threads N`: runs at once (default: the machine's cores).

use bulwark::config::ResilienceConfig;
use bulwark::sim::{stacks, Scenario, SimRequest, Simulation, Stack};
use std::path::PathBuf;
use std::process::ExitCode;
use tower::ServiceBuilder;

/// Which stacks run.
enum StackSet {
    Clients,
    Servers,
    Adaptive,
}

struct Args {
    scenarios: Vec<Scenario>,
    config: Option<(ResilienceConfig, String)>,
    set: StackSet,
    out: PathBuf,
    seed: u64,
    threads: usize,
}

fn usage() -> &'static str {
    "usage: simulate [--scenario NAME]... [--scenarios FILE] [--config FILE [--upstream NAME]] [--out DIR] [--servers | --adaptive] [--seed N] [--threads N] [--list]"
}

fn parse() -> Result<Option<Args>, String> {
    let mut args = std::env::args().skip(1);
    let mut names = Vec::new();
    let mut custom = Vec::new();
    let mut out = PathBuf::from("target/simulation");
    let mut config = None;
    let mut set = StackSet::Clients;
    let mut upstream = String::from("sim");
    let mut seed = 1;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().ok_or_else(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--scenario" => names.push(value("a name")?),
            "--scenarios" => {
                let path = value("a file")?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                custom.extend(Scenario::parse_many(&text).map_err(|e| format!("{path}: {e}"))?);
            }
            "--out" => out = PathBuf::from(value("a folder")?),
            "--config" => {
                let path = value("a file")?;
                config = Some(ResilienceConfig::load(&path).map_err(|e| format!("{path}: {e}"))?);
            }
            "--upstream" => upstream = value("a name")?,
            "--servers" => set = StackSet::Servers,
            "--adaptive" => set = StackSet::Adaptive,
            "--seed" => {
                seed = value("a number")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--threads" => {
                threads = value("a number")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--list" => {
                for s in Scenario::builtin() {
                    println!("{:<14} {}", s.name, s.description);
                }
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    let mut scenarios = Vec::new();
    for name in &names {
        scenarios.push(
            Scenario::named(name)
                .ok_or_else(|| format!("no built-in scenario {name:?} (see --list)"))?,
        );
    }
    if names.is_empty() && custom.is_empty() {
        scenarios = Scenario::builtin();
    }
    scenarios.extend(custom);
    Ok(Some(Args {
        scenarios,
        config: config.map(|c| (c, upstream)),
        set,
        out,
        seed,
        threads,
    }))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let names: Vec<String> = args.scenarios.iter().map(|s| s.name.clone()).collect();
    eprintln!(
        "simulating {} scenario(s) on {} thread(s), seed {}: {}",
        names.len(),
        args.threads,
        args.seed,
        names.join(", ")
    );
    let mut all = match args.set {
        StackSet::Clients => stacks::recommended_with_baselines(),
        StackSet::Servers => stacks::servers_with_baseline(),
        StackSet::Adaptive => stacks::adaptive_with_baselines(),
    };
    if let Some((config, name)) = args.config {
        let check = config
            .client_stack(&name)
            .map_err(|e| e.to_string())
            .and_then(|s| s.build().map(drop).map_err(|e| e.to_string()));
        if let Err(e) = check {
            eprintln!("simulate: the configured stack for {name:?} cannot be built: {e}");
            return ExitCode::from(2);
        }
        all.push(configured(config, name));
    }
    let simulation = Simulation::new()
        .scenarios(args.scenarios)
        .stacks(all)
        .seed(args.seed)
        .threads(args.threads)
        .on_progress(|p| {
            eprintln!("  [{:>3}/{}] {} · {}", p.done, p.total, p.scenario, p.stack);
        });
    let report = simulation.run();

    let markdown = report.to_markdown();
    println!("{markdown}");
    let written = std::fs::create_dir_all(&args.out)
        .and_then(|()| std::fs::write(args.out.join("report.md"), &markdown))
        .and_then(|()| std::fs::write(args.out.join("report.json"), report.to_json()))
        .and_then(|()| report.write_svgs(&args.out));
    match written {
        Ok(svgs) => eprintln!(
            "wrote report.md, report.json and {} picture(s) to {}",
            svgs.len(),
            args.out.display()
        ),
        Err(e) => {
            eprintln!("simulate: cannot write to {}: {e}", args.out.display());
            return ExitCode::FAILURE;
        }
    }
    println!("Best stack per scenario:");
    for r in &report.results {
        if let Some(w) = r.winner() {
            println!("  {:<14} {}", r.scenario.name, w.stack);
        }
    }
    ExitCode::SUCCESS
}

/// The client stack a configuration file describes, with the simulator's
/// classifier, pushback and idempotency (what a real client would give it).
fn configured(config: ResilienceConfig, name: String) -> Stack {
    Stack::new(format!("config: {name}"), move |upstream, ctx| {
        let layer = config
            .client_stack(&name)
            .expect("checked before the run")
            .classifier(stacks::classify)
            .pushback(stacks::pushback)
            .replay(stacks::IdempotentOnly)
            .seed(ctx.seed())
            .breaker_per_key(|r: &SimRequest| r.host, 1024)
            .build()
            .expect("checked before the run");
        ServiceBuilder::new().layer(layer).service(upstream)
    })
}
