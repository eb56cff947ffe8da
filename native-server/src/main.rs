//! `rtmp-lab`: the lab's command-line tool.
//!
//! A thin shell over `sim-core`: argument parsing, files, terminal output. Today it runs the
//! simulator (`simulate`), prints the audit of the seed article (`seed`), runs the RTMP
//! server (`serve`, a thin shell over `native_server::serve`), the link emulator (`emulate`)
//! and simulated-vs-measured experiments (`experiment`, `native_server::experiment`).

mod plot;
mod report;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sim_core::engine::Engine;
use sim_core::scenario::Scenario;
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
    /// Run the RTMP server (publish with OBS/ffmpeg, play with ffplay/VLC) and its HTTP API.
    ///
    /// With no arguments: RTMP on 0.0.0.0:1935, HTTP (API, /metrics, web lab) on
    /// 127.0.0.1:8080. Publish to rtmp://HOST/<app>/<key>, play the same URL.
    ///
    /// Everything else (limits, socket options, GOP cache, queue bounds and drop policy, publish
    /// auth) is set in a TOML file given with --config; every key is optional and the full
    /// reference with defaults is in native-server/src/serve/config.rs (module docs).
    /// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more. Stops cleanly on
    /// Ctrl-C / SIGTERM.
    ///
    /// Examples:
    ///   rtmp-lab serve
    ///   rtmp-lab serve --rtmp 127.0.0.1:1936 --http 127.0.0.1:8081
    ///   rtmp-lab serve --config lab.toml
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Load-test any RTMP server: one publisher paces a clip (an FLV file, or a synthetic
    /// H.264/AAC stream) in real time and N players play it, in one process, so every video
    /// frame's latency is exact (player arrival − publisher send). Reports players
    /// connected/failed, first-frame time, per-frame latency p50/p99/max, delivered Mb/s,
    /// missing frames, whether every player kept up, and the generator's own CPU (with
    /// --server-pid also the server's CPU, CPU per Gb/s, peak RSS, run-queue wait). Prints a
    /// table and one JSON line (--json: only the JSON line on stdout).
    ///
    /// Examples:
    ///   rtmp-lab bench --url rtmp://127.0.0.1:1935/live/bench --players 500
    ///   rtmp-lab bench --url rtmp://127.0.0.1/live/b --flv clip.flv --players 1000 --duration 20
    ///   taskset -c 1-3 rtmp-lab bench --url rtmp://10.0.0.2/live/b --players 4000 --threads 3
    #[cfg(target_os = "linux")]
    #[command(verbatim_doc_comment)]
    Bench(native_server::bench::BenchArgs),
    /// Start the link emulator (Linux, root): two network namespaces joined by a relay that
    /// applies the scenario's uplink/downlink (delay, rate, queue, jitter, loss) to every packet
    /// with sim-core's link model. Prints the namespaces and example commands; runs until Ctrl-C
    /// or --duration, then prints packet statistics and removes the namespaces.
    ///
    /// Examples:
    ///   rtmp-lab emulate --preset mobile-3g
    ///   rtmp-lab emulate --scenario my.toml --duration 60
    #[command(verbatim_doc_comment)]
    Emulate(native_server::emu::cli::EmulateArgs),
    /// Run a scenario simulated and for real, and compare them frame by frame: a publisher
    /// (ffmpeg with the scenario's x264 settings, or a replay of the simulated frames), the
    /// server (in-process, or any server by --url) and N player probes, over the TUN link
    /// emulator (root) or loopback (labelled "no impairment"). Writes sim.json, measured.json,
    /// compare.json and latency.svg into --out and prints per-stage p50/p95/p99 simulated vs
    /// measured, with the error, and the start-up steps. With --observe, records a live stream
    /// (OBS) instead, infers its scenario and compares with that.
    ///
    /// Examples:
    ///   rtmp-lab experiment --preset lan --duration 10 --link loopback
    ///   rtmp-lab experiment --preset mobile-3g --publisher ffmpeg --out runs/3g
    ///   rtmp-lab experiment --scenario s.toml --url rtmp://127.0.0.1:1935/live
    ///   rtmp-lab experiment --observe rtmp://127.0.0.1/live/test --api http://127.0.0.1:8080
    #[command(verbatim_doc_comment)]
    Experiment(native_server::experiment::cli::ExperimentArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// RTMP listen address (overrides `rtmp` in the config file) [default: 0.0.0.0:1935].
    #[arg(long, value_name = "ADDR")]
    rtmp: Option<std::net::SocketAddr>,
    /// HTTP listen address for the API, /metrics and the web lab (overrides `http`)
    /// [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// TOML configuration file; unknown keys are errors. See the reference in
    /// native-server/src/serve/config.rs.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Directory of the built web lab to serve over HTTP (overrides `web_root`)
    /// [default: the workspace's web/dist if it exists].
    #[arg(long, value_name = "DIR")]
    web_root: Option<PathBuf>,
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
        Command::Serve(args) => serve(args),
        #[cfg(target_os = "linux")]
        Command::Bench(args) => native_server::bench::main(args),
        Command::Emulate(args) => native_server::emu::cli::run(args),
        Command::Experiment(args) => {
            native_server::experiment::cli::run(args, plot::experiment_svg)
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn load_scenario(args: &SimulateArgs) -> Result<Scenario> {
    let mut s =
        native_server::scenario_file::load(args.preset.as_deref(), args.scenario.as_deref())?
            .ok_or_else(|| native_server::scenario_file::missing(" or --scenario FILE"))?;
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

fn serve(args: ServeArgs) -> Result<()> {
    use native_server::serve::{self, config::Settings};
    let mut settings = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    if let Some(addr) = args.rtmp {
        settings.rtmp = addr;
    }
    if let Some(addr) = args.http {
        settings.http = addr;
    }
    if let Some(dir) = args.web_root {
        settings.web_root = Some(dir);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the tokio runtime")?;
    runtime.block_on(serve::run(settings, shutdown_signal()))
}

/// Every RTMP connection is a socket: the usual soft limit of 1,024 open files would cap the
/// server far below `limits.max_connections`. Raise the soft limit to the hard one, as nginx's
/// `worker_rlimit_nofile` does (best effort).
#[cfg(target_os = "linux")]
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one valid, live `rlimit`.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
            && {
                let soft = limit.rlim_cur;
                limit.rlim_cur = limit.rlim_max;
                let ok = libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0;
                if ok {
                    tracing::debug!(
                        from = soft,
                        to = limit.rlim_max,
                        "raised the open files limit"
                    );
                }
                ok
            }
    };
    let _ = raised;
}

#[cfg(not(target_os = "linux"))]
fn raise_open_files_limit() {}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
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
