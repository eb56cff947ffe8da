//! `rtmp-lab experiment`'s command line: arguments, the runtime, the files, the table. The
//! chart is drawn by the binary's plot module, given as `draw`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sim_core::scenario::{self, ExperimentPublisher, Scenario};

use super::link::LinkChoice;
use super::observe::{self, ObserveOptions};
use super::report::{self, ChartPanel};
use super::{Options, Outcome};

/// Which publisher, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PublisherArg {
    /// ffmpeg encodes a test pattern in real time with the scenario's x264 settings.
    Ffmpeg,
    /// The simulator's own frames, packed as FLV and sent at their simulated send times.
    Replay,
}

#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    /// A built-in scenario: seed-example, obs-default, twitch, low-latency, mobile-3g, lan.
    /// With --observe: the base for the network, server and player settings [default: lan].
    #[arg(long, conflicts_with = "scenario")]
    pub preset: Option<String>,
    /// A scenario file, TOML (.toml) or JSON (.json).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Record a live stream (e.g. from OBS) at this URL instead of publishing one, infer its
    /// scenario, simulate that and compare.
    #[arg(long, value_name = "rtmp://HOST/APP/KEY", conflicts_with_all = ["url", "publisher", "link", "players"])]
    pub observe: Option<String>,
    /// With --observe: the HTTP API of the `rtmp-lab serve` that receives the stream
    /// (e.g. http://127.0.0.1:8080), for each frame's arrival at the server.
    #[arg(long, value_name = "http://HOST:PORT", requires = "observe")]
    pub api: Option<String>,
    /// Seconds: of the scenario's capture, or of recording with --observe [default: the
    /// scenario's duration_s; 30 with --observe].
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Seed of every random draw (simulator and link emulator).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Measure this RTMP server (e.g. nginx-rtmp) instead of the in-process one:
    /// rtmp://HOST[:PORT]/APP[/KEY]. Arrival at the server is then not observable.
    #[arg(long, value_name = "rtmp://…")]
    pub url: Option<String>,
    /// Player probes (overrides the scenario's players.count; the simulation uses the same).
    #[arg(long, value_name = "N")]
    pub players: Option<u32>,
    /// When the first player joins, seconds (overrides players.join_at_s) [default: the
    /// scenario's, but within the first quarter of the run].
    #[arg(long, value_name = "SECONDS")]
    pub join_at: Option<f64>,
    /// ffmpeg (real x264 + AAC) or replay of the simulated frames [default: the scenario's
    /// experiment.publisher, replay unless set].
    #[arg(long, value_enum)]
    pub publisher: Option<PublisherArg>,
    /// The path between clients and server: the TUN link emulator (root; falls back to
    /// loopback, labelled, when it cannot run) or loopback without impairment.
    #[arg(long, value_enum, default_value = "emulated")]
    pub link: LinkChoice,
    /// Directory for sim.json, measured.json, compare.json, latency.svg, experiment.json,
    /// scenario.toml and fidelity.json.
    #[arg(long, value_name = "DIR", default_value = "experiment-out")]
    pub out: PathBuf,
    /// The ffmpeg executable.
    #[arg(long, default_value = "ffmpeg", value_name = "PATH")]
    pub ffmpeg: String,
    /// Seconds the probes may keep receiving after the publisher finished.
    #[arg(long, value_name = "SECONDS", default_value = "3")]
    pub drain: f64,
}

fn load(args: &ExperimentArgs, default_preset: Option<&str>) -> Result<Scenario> {
    let loaded = crate::scenario_file::load(args.preset.as_deref(), args.scenario.as_deref())?;
    let mut s = match (loaded, default_preset) {
        (Some(s), _) => s,
        (None, Some(name)) => scenario::preset(name)?,
        (None, None) => {
            return Err(crate::scenario_file::missing(
                ", --scenario FILE, or --observe URL",
            ))
        }
    };
    if let Some(seed) = args.seed {
        s.seed = seed;
    }
    Ok(s)
}

/// Runs the command; `draw(path, title, panels)` writes the chart.
pub fn run(
    args: ExperimentArgs,
    draw: impl FnOnce(&Path, &str, &[ChartPanel]) -> Result<()>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(super::raise_thread_priority)
        .enable_all()
        .build()
        .context("while starting the tokio runtime")?;
    let mut notes = Vec::new();
    let outcome: Outcome = if let Some(url) = &args.observe {
        let base = load(&args, Some("lan"))?;
        let secs = args.duration.unwrap_or(30.0);
        if !(secs > 0.0 && secs <= 24.0 * 3600.0) {
            bail!("--duration must be between 0 and 86400 seconds, got {secs}");
        }
        eprintln!("recording {url} for {secs} s …");
        runtime.block_on(observe::run(ObserveOptions {
            url: url.clone(),
            duration: Duration::from_secs_f64(secs),
            api: args.api.clone(),
            base,
        }))?
    } else {
        let mut s = load(&args, None)?;
        if let Some(d) = args.duration {
            s.duration_s = d;
        }
        notes = super::prepare_scenario(&mut s, args.players, args.join_at);
        s.validate().context("after applying the command line")?;
        if s.players.count > 200 {
            bail!(
                "{} player probes: this runs them all for real in one process; use --players N \
                 (≤ 200)",
                s.players.count
            );
        }
        let publisher = match args.publisher {
            Some(PublisherArg::Ffmpeg) => ExperimentPublisher::Ffmpeg,
            Some(PublisherArg::Replay) => ExperimentPublisher::Replay,
            None => s.experiment.publisher,
        };
        s.experiment.publisher = publisher;
        if !(args.drain >= 0.0 && args.drain <= 600.0) {
            bail!("--drain must be between 0 and 600 seconds");
        }
        eprintln!(
            "running {} for {:.1} s: simulating, then publishing ({}) to {} …",
            s.name,
            s.duration_s,
            match publisher {
                ExperimentPublisher::Ffmpeg => "ffmpeg",
                ExperimentPublisher::Replay => "replay",
            },
            args.url.as_deref().unwrap_or("the in-process server")
        );
        runtime.block_on(super::run(Options {
            scenario: s,
            url: args.url.clone(),
            publisher,
            link: args.link,
            ffmpeg: args.ffmpeg.clone(),
            drain: Duration::from_secs_f64(args.drain),
        }))?
    };
    drop(runtime);
    let mut outcome = outcome;
    let mut all_notes = notes;
    all_notes.append(&mut outcome.info.notes);
    outcome.info.notes = all_notes;

    report::write_files(&args.out, &outcome)?;
    let svg = args.out.join("latency.svg");
    let (title, panels) = report::chart(&outcome);
    draw(&svg, &title, &panels).with_context(|| format!("while drawing {}", svg.display()))?;
    print!("{}", report::table(&outcome));
    println!();
    println!(
        "wrote {}/{{sim.json, measured.json, compare.json, latency.svg, experiment.json, \
         scenario.toml, fidelity.json}}",
        args.out.display()
    );
    Ok(())
}
