//! `rtmp-lab`: the lab's command-line tool.
//!
//! A thin shell over `sim-core`: argument parsing, files, terminal output. Today it runs the
//! simulator (`simulate`) and prints the audit of the seed article (`seed`). The RTMP server
//! (`serve`), `experiment` and `bench` are not built yet (see README.md).

mod plot;
mod report;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sim_core::engine::Engine;
use sim_core::scenario::{self, Scenario};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "rtmp-lab",
    version,
    about = "Learn, predict and measure RTMP live-streaming latency.",
    long_about = "Learn, predict and measure RTMP live-streaming latency.\n\n\
                  `simulate` runs a scenario (encoder, rate control, network, server, players) \
                  through the deterministic simulator and reports per-stage latency; `seed` \
                  audits the formulas of the article the project grew from."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a scenario and report latency per stage, start-up, bitrate, drops.
    ///
    /// Examples:
    ///   rtmp-lab simulate --preset obs-default
    ///   rtmp-lab simulate --preset low-latency --duration 120 --seed 7 --out trace.csv
    ///   rtmp-lab simulate --scenario my.toml --plot latency.svg
    ///   rtmp-lab simulate --preset twitch --print-scenario > twitch.toml
    #[command(verbatim_doc_comment)]
    Simulate(SimulateArgs),
    /// Print the audit of the seed article: its formulas evaluated as written, the dimensional
    /// check, the corrected models, and its claims on Nagle, TCP Fast Open and "AVC-DPCM".
    Seed {
        /// Print JSON instead of text (the format the web lab reads).
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// A built-in scenario: seed-example, obs-default, twitch, low-latency, mobile-3g, lan.
    #[arg(long, conflicts_with = "scenario")]
    preset: Option<String>,
    /// A scenario file, TOML (.toml) or JSON (.json). Fields left out take the obs-default
    /// values; every bad value is reported with its path.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Simulated seconds (overrides the scenario's duration_s).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    duration: Option<f64>,
    /// Seed for every random draw (overrides the scenario's seed). Same scenario + seed gives
    /// the same trace, bit for bit.
    #[arg(long)]
    seed: Option<u64>,
    /// Write the trace: .json (everything: frames, series, summary inputs) or .csv (one row per
    /// frame of the probe player, times in µs).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Draw per-frame latency, VBV occupancy, sender backlog and player buffer to an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Print the resolved scenario as TOML and exit (a starting point for your own file).
    #[arg(long)]
    print_scenario: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate(args),
        Command::Seed { json } => seed(json),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn load_scenario(args: &SimulateArgs) -> Result<Scenario> {
    let mut s = match (&args.preset, &args.scenario) {
        (Some(name), None) => scenario::preset(name)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("while reading scenario {}", path.display()))?;
            let parsed = if is_ext(path, "json") {
                Scenario::from_json(&text)
            } else {
                Scenario::from_toml(&text)
            };
            parsed.with_context(|| format!("in scenario {}", path.display()))?
        }
        (None, None) => bail!(
            "give a scenario: --preset NAME (one of {}) or --scenario FILE",
            scenario::PRESET_NAMES.join(", ")
        ),
        (Some(_), Some(_)) => bail!("give either --preset or --scenario, not both"),
    };
    if let Some(d) = args.duration {
        s.duration_s = d;
    }
    if let Some(seed) = args.seed {
        s.seed = seed;
    }
    s.validate().context("after applying --duration/--seed")?;
    Ok(s)
}

fn is_ext(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn simulate(args: SimulateArgs) -> Result<()> {
    let s = load_scenario(&args)?;
    if args.print_scenario {
        print!("{}", s.to_toml());
        return Ok(());
    }
    let mut engine = Engine::new(&s);
    let bar = if args.quiet || s.duration_s < 120.0 {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "simulating {wide_bar} {percent:>3}% ({elapsed} elapsed, ~{eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    };
    loop {
        let p = engine.step(20_000);
        bar.set_position((p.fraction * 1000.0) as u64);
        if p.done {
            break;
        }
    }
    bar.finish_and_clear();
    let trace = engine.into_trace();
    let summary = trace.summary();

    if let Some(out) = &args.out {
        let body = if is_ext(out, "csv") {
            trace.frames_csv()
        } else {
            trace.to_json()
        };
        std::fs::write(out, body).with_context(|| format!("while writing {}", out.display()))?;
    }
    if let Some(path) = &args.plot {
        plot::latency_svg(&trace, path)
            .with_context(|| format!("while drawing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", report::summary_table(&s, &summary));
        if let Some(out) = &args.out {
            println!("trace written to {}", out.display());
        }
        if let Some(p) = &args.plot {
            println!("chart written to {}", p.display());
        }
    }
    Ok(())
}

fn seed(json: bool) -> Result<()> {
    let audit = sim_core::seed::audit();
    if json {
        println!("{}", serde_json::to_string_pretty(&audit)?);
    } else {
        print!("{}", sim_core::seed::render_text(&audit));
    }
    Ok(())
}
