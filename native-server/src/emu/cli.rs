//! `rtmp-lab emulate`: start the link emulator for a scenario's paths and keep it up until
//! Ctrl-C or `--duration`, for running real tools across it by hand.

use super::{EmuConfig, Emulator, StopReason};
use anyhow::{bail, Result};
use sim_core::net::{JitterDistribution, LossConfig, PathConfig};
use sim_core::scenario::Scenario;
use std::path::PathBuf;
use std::time::Duration;

/// Safety bound when no `--duration` is given: the namespaces never outlive a forgotten
/// terminal by more than this.
const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Arguments of `rtmp-lab emulate`.
#[derive(Debug, clap::Args)]
pub struct EmulateArgs {
    /// A built-in scenario: seed-example, obs-default, twitch, low-latency, mobile-3g, lan.
    #[arg(long, conflicts_with = "scenario")]
    pub preset: Option<String>,
    /// A scenario file, TOML (.toml) or JSON (.json); its uplink, downlink and seed are used.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Stop after this many seconds [default: run until Ctrl-C, at most 24 h].
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Seed of the link models (overrides the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
}

fn load(args: &EmulateArgs) -> Result<Scenario> {
    let mut s = crate::scenario_file::load(args.preset.as_deref(), args.scenario.as_deref())?
        .ok_or_else(|| crate::scenario_file::missing(" or --scenario FILE"))?;
    if let Some(seed) = args.seed {
        s.seed = seed;
    }
    Ok(s)
}

/// One line describing a path direction.
pub fn describe_path(p: &PathConfig) -> String {
    let rate = if p.bottleneck_kbps > 0.0 {
        format!("{} kb/s", p.bottleneck_kbps)
    } else {
        "unlimited rate".into()
    };
    let jitter = if p.jitter.ms > 0.0 {
        let dist = match p.jitter.distribution {
            JitterDistribution::Uniform => "uniform ±",
            JitterDistribution::Normal => "normal σ=",
            JitterDistribution::Pareto => "pareto J=",
        };
        format!(
            ", jitter {dist}{} ms{}",
            p.jitter.ms,
            if p.jitter.preserve_order {
                ""
            } else {
                " (reordering)"
            }
        )
    } else {
        String::new()
    };
    let loss = match p.loss {
        LossConfig::None => String::new(),
        LossConfig::Bernoulli { p } => format!(", loss {:.2} %", p * 100.0),
        LossConfig::GilbertElliott { .. } => format!(
            ", Gilbert–Elliott loss (mean {:.2} %)",
            p.loss.mean_loss() * 100.0
        ),
    };
    let queue = if p.queue_limit_bytes > 0 {
        format!(", queue {} B", p.queue_limit_bytes)
    } else {
        ", unlimited queue".into()
    };
    format!(
        "{} ms one way, {rate}{jitter}{loss}{queue}",
        p.propagation_ms
    )
}

/// Runs the command.
pub fn run(args: EmulateArgs) -> Result<()> {
    let s = load(&args)?;
    let max_duration = match args.duration {
        Some(d) if d.is_finite() && d > 0.0 => Duration::from_secs_f64(d),
        Some(d) => bail!("--duration must be a positive number of seconds, got {d}"),
        None => DEFAULT_MAX_DURATION,
    };
    let emu = Emulator::start(EmuConfig::from_scenario(&s, max_duration))?;
    let (srv, cli) = (emu.server_ns_name(), emu.client_ns_name());
    let ip = emu.server_ip();
    println!("link emulator for scenario {:?} (seed {})", s.name, s.seed);
    println!(
        "  uplink   (publisher → server): {}",
        describe_path(&s.uplink)
    );
    println!(
        "  downlink (server → players):   {}",
        describe_path(&s.downlink)
    );
    println!("  reverse directions (ACKs): propagation only");
    println!();
    println!(
        "  server namespace {srv}: {ip}, and {} for players",
        emu.server_ip_for_players()
    );
    println!(
        "  client namespace {cli}: publisher {} (default source), players {} (source towards {})",
        emu.publisher_ip(),
        emu.player_ip(),
        emu.server_ip_for_players()
    );
    println!();
    println!("Try, in other terminals:");
    println!("  ip netns exec {srv} rtmp-lab serve --rtmp 0.0.0.0:1935 --http {ip}:8080");
    println!(
        "  ip netns exec {cli} ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine \
         -c:v libx264 -preset veryfast -g 60 -c:a aac -f flv rtmp://{ip}/live/test"
    );
    println!(
        "  ip netns exec {cli} ffplay rtmp://{}/live/test   # a player: connect to the server's \
         second address, so it leaves from {} and gets the downlink model",
        emu.server_ip_for_players(),
        emu.player_ip()
    );
    println!(
        "  ip netns exec {cli} curl http://{ip}:8080/api/streams   # the server's API, same link"
    );
    println!();
    match args.duration {
        Some(d) => println!("Running for {d} s (Ctrl-C stops earlier)…"),
        None => println!("Running until Ctrl-C…"),
    }
    let reason = emu.wait(None).unwrap_or(StopReason::Dropped);
    emu.stop();
    println!();
    println!("stopped: {reason}");
    println!("{}", emu.stats());
    println!("namespaces {srv} and {cli} removed");
    Ok(())
}
