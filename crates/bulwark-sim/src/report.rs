//! Reports: tables, JSON and pictures of a simulation.

use crate::metrics::{FailureKind, Metrics, Series};
use crate::scenario::Scenario;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything a [`Simulation`](crate::Simulation) measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The seed it ran with.
    pub seed: u64,
    /// One entry per scenario, in the order they were added.
    pub results: Vec<ScenarioResult>,
}

/// Every stack's run through one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: Scenario,
    /// One run per stack, in the order they were added.
    pub runs: Vec<Run>,
}

/// One stack's run through one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The stack's name.
    pub stack: String,
    /// The figures.
    pub metrics: Metrics,
    /// Goodput and load over time.
    pub series: Series,
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{:.1}%", v * 100.0))
}

fn ms(d: Option<Duration>) -> String {
    match d {
        None => "—".into(),
        Some(d) if d >= Duration::from_secs(10) => format!("{:.0} s", d.as_secs_f64()),
        Some(d) if d >= Duration::from_secs(1) => format!("{:.1} s", d.as_secs_f64()),
        Some(d) => format!("{} ms", d.as_millis()),
    }
}

fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.2}"))
}

impl ScenarioResult {
    /// The run of the stack called `name`.
    pub fn run(&self, name: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.stack == name)
    }

    /// The stack that did best: the highest goodput during the fault (or
    /// overall, for a scenario without one), then the lowest amplification
    /// during the fault. Goodputs within half a point count as equal: a
    /// stack that tripled the load for 0.3 points more does not win.
    pub fn winner(&self) -> Option<&Run> {
        let score = |r: &Run| {
            r.metrics
                .healthy_hosts_goodput
                .or(r.metrics.fault_goodput)
                .unwrap_or(r.metrics.goodput)
        };
        let amp = |r: &Run| {
            r.metrics
                .fault_amplification
                .unwrap_or(r.metrics.amplification)
        };
        self.runs.iter().reduce(|best, r| {
            let (a, b) = (score(r), score(best));
            if a > b + 0.005 || ((a - b).abs() <= 0.005 && amp(r) < amp(best)) {
                r
            } else {
                best
            }
        })
    }
}

impl Report {
    /// The result for the scenario called `name`.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioResult> {
        self.results.iter().find(|r| r.scenario.name == name)
    }

    /// A Markdown report: a summary (goodput during the fault of every
    /// stack, and the winner), then one table per scenario.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let stacks: Vec<&str> = self
            .results
            .first()
            .map(|r| r.runs.iter().map(|r| r.stack.as_str()).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "## Goodput during the fault (seed {})\n", self.seed);
        let _ = write!(out, "| scenario |");
        for s in &stacks {
            let _ = write!(out, " {s} |");
        }
        let _ = writeln!(out, " best |");
        let _ = writeln!(out, "|---|{}---|", "---:|".repeat(stacks.len()));
        for r in &self.results {
            let _ = write!(out, "| {} |", r.scenario.name);
            for run in &r.runs {
                let m = &run.metrics;
                let _ = write!(
                    out,
                    " {} |",
                    pct(m.healthy_hosts_goodput.or(m.fault_goodput))
                );
            }
            let _ = writeln!(out, " {} |", r.winner().map_or("—", |w| w.stack.as_str()));
        }
        for r in &self.results {
            let s = &r.scenario;
            let _ = writeln!(out, "\n### {}: {}\n", s.name, s.description);
            let _ = writeln!(
                out,
                "| stack | goodput | in fault | p50 | p99 | amplification | in fault | peak in flight | detected | recovered | failures |"
            );
            let _ = writeln!(
                out,
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            );
            for run in &r.runs {
                let m = &run.metrics;
                let failures: Vec<String> = FailureKind::ALL
                    .iter()
                    .filter_map(|k| m.failures.get(k).map(|n| format!("{k} {n}")))
                    .collect();
                let in_fault = match m.healthy_hosts_goodput {
                    Some(h) => format!("{} (good hosts {})", pct(m.fault_goodput), pct(Some(h))),
                    None => pct(m.fault_goodput),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    run.stack,
                    pct(Some(m.goodput)),
                    in_fault,
                    ms(m.p50),
                    ms(m.p99),
                    ratio(Some(m.amplification)),
                    ratio(m.fault_amplification),
                    m.peak_upstream_in_flight,
                    ms(m.detected_in),
                    ms(m.recovered_in),
                    m.early_retries,
                    if failures.is_empty() {
                        "—".into()
                    } else {
                        failures.join(", ")
                    },
                );
            }
        }
        out
    }

    /// The whole report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Writes one SVG per scenario into `dir` (made if missing): goodput
    /// over time for every stack, the fault window shaded, and below it
    /// whatever the stacks asked to watch (breaker states). Returns the
    /// files written.
    pub fn write_svgs(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        for r in &self.results {
            let path = dir.join(format!("{}.svg", r.scenario.name));
            plot(r, &path).map_err(|e| std::io::Error::other(e.to_string()))?;
            written.push(path);
        }
        Ok(written)
    }
}

const COLORS: [RGBColor; 8] = [
    RGBColor(120, 120, 120),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
];

/// One watched series of one run: the run's index, the name, the samples.
type Watched<'a> = (usize, &'a String, &'a Vec<(f64, f64)>);

fn plot(r: &ScenarioResult, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let watched: Vec<Watched<'_>> = r
        .runs
        .iter()
        .enumerate()
        .flat_map(|(i, run)| run.series.watched.iter().map(move |(n, v)| (i, n, v)))
        .collect();
    let height = if watched.is_empty() { 420 } else { 600 };
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = if watched.is_empty() {
        (root.clone(), None)
    } else {
        let (t, b) = root.split_vertically(420);
        (t, Some(b))
    };
    let secs = r.scenario.duration.as_secs_f64();
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{}: {}", r.scenario.name, r.scenario.description),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..secs, 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("goodput")
        .y_label_formatter(&|v: &f64| format!("{:.0}%", v * 100.0))
        .draw()?;
    if let Some((from, until)) = r.scenario.fault_window() {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(from.as_secs_f64(), 0.0), (until.as_secs_f64(), 1.05)],
            RGBColor(250, 230, 230).filled(),
        )))?;
    }
    for (i, run) in r.runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let step = run.series.step_secs;
        let points = run
            .series
            .goodput
            .iter()
            .enumerate()
            .filter_map(|(k, g)| g.map(|g| ((k as f64 + 0.5) * step, g)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(run.stack.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    if let Some(bottom) = bottom {
        let mut states = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..secs, -0.05..1.1)?;
        states
            .configure_mesh()
            .y_desc("breaker")
            .y_labels(3)
            .y_label_formatter(&|v: &f64| match (v * 2.0).round() as i32 {
                0 => "closed".into(),
                1 => "half".into(),
                _ => "open".into(),
            })
            .draw()?;
        for (i, name, values) in watched {
            let color = COLORS[i % COLORS.len()];
            states
                .draw_series(LineSeries::new(
                    values.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(format!("{}: {name}", r.runs[i].stack))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        states
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
