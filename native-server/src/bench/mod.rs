//! `rtmp-lab bench`: a load generator for any RTMP server — one publisher and N players in
//! one process, so that every video frame's latency is exact (player arrival − publisher
//! send, on one clock).
//!
//! ```text
//!  clip (FLV file or synthetic) ─▶ publisher thread ──RTMP publish──▶ server under test
//!                                    │ send instant of each frame          │ fan-out
//!                                    ▼                                     ▼
//!                               SendTable (by RTMP timestamp) ◀── lookup ── players
//!                                                              (epoll worker threads: one read
//!                                                               per ready socket, header scan)
//! ```
//!
//! | module | holds |
//! |---|---|
//! | `source` | the clip: FLV file reader, synthetic H.264/AAC stream |
//! | `client` | URL, plain handshake, `connect`/`createStream`/`publish`/`play` on a blocking socket |
//! | `publisher` | real-time pacing of the clip, send instants into the table |
//! | `scanner` | [`scanner::ChunkScanner`]: chunk headers only, payload skipped without copying |
//! | `player` | epoll workers, per-player measurements |
//! | `timeline` | clock, send table, window, stop flag |
//! | `stats` | latency histogram, `/proc` readers (own CPU, the server's CPU/RSS/schedstat) |
//!
//! **The run**: publish; after [`LEAD`] start players at `--ramp-per-s` (connector threads do
//! the blocking set-up, then hand each socket to a worker); once all are set up, wait
//! [`SETTLE`] (join bursts drain), then measure for `--duration` seconds: frames *sent* in the
//! window count for latency and for missing frames, bytes *read* in it for the delivered rate,
//! CPU is sampled at its edges; then [`GRACE`] for frames still in flight, and stop.
//!
//! **A player kept up** when it received every video frame sent in the window (from its first
//! keyframe on), none later than `--keep-up-ms`, and was still connected at the end.
//!
//! **Efficiency** (so a saturated generator is never mistaken for a slow server): one read per
//! ready socket with a 256 KiB buffer shared by all players of a thread, no copy of payload,
//! no allocation per message, latency into a per-thread histogram. The report includes the
//! generator's own CPU and its busiest thread; `--threads T` spreads players over T epoll
//! threads (give the process T cores, e.g. `taskset -c 1-3 rtmp-lab bench --threads 3 …`).

mod client;
mod player;
mod publisher;
pub mod scanner;
pub mod source;
pub mod stats;
mod timeline;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use client::{Connection, RtmpUrl};
use player::{PlayerConn, PlayerStats, Worker};
use publisher::Publisher;
use source::Clip;
use stats::{Histogram, ServerProbe, ServerSample};
use timeline::Shared;

/// Publishing runs alone this long before the first player connects (the server has the
/// sequence headers and a keyframe by then).
pub const LEAD: Duration = Duration::from_secs(1);
/// After the last player is set up, before the window opens: join bursts (a cached GOP is up
/// to two seconds of media) drain.
pub const SETTLE: Duration = Duration::from_secs(2);
/// After the window closes, frames sent in it may still arrive.
pub const GRACE: Duration = Duration::from_secs(2);
/// Time limit of each step of a player's or the publisher's set-up.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most threads setting players up at once (each blocks on its server's replies).
const MAX_CONNECTORS: usize = 4;
/// Length of the synthetic clip (looped).
const SYNTHETIC_CLIP_S: u32 = 20;

/// `rtmp-lab bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The stream to publish and play: rtmp://HOST[:PORT]/APP/KEY (any RTMP server).
    #[arg(long)]
    pub url: String,
    /// Players to connect.
    #[arg(long, default_value_t = 100)]
    pub players: usize,
    /// Players started per second during the ramp.
    #[arg(long, value_name = "R", default_value_t = 500.0)]
    pub ramp_per_s: f64,
    /// Seconds of the steady-state measurement window (after the ramp and 2 s of settling).
    #[arg(long, value_name = "S", default_value_t = 20.0)]
    pub duration: f64,
    /// Publish this FLV file (looped) instead of the synthetic stream.
    #[arg(long, value_name = "FILE")]
    pub flv: Option<PathBuf>,
    /// Video bitrate of the synthetic stream (H.264 + AAC 128 kb/s, keyframe every 2 s).
    #[arg(long, value_name = "K", default_value_t = 2500, conflicts_with = "flv")]
    pub synthetic_kbps: u32,
    /// Frame rate of the synthetic stream.
    #[arg(long, value_name = "F", default_value_t = 30.0, conflicts_with = "flv")]
    pub fps: f64,
    /// The publisher's outbound chunk size.
    #[arg(long, value_name = "C", default_value_t = 4096)]
    pub chunk_size: u32,
    /// Print only the JSON line on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Epoll threads for the players (give the process as many cores).
    #[arg(long, value_name = "T", default_value_t = 1)]
    pub threads: usize,
    /// A player keeps up when no frame of the window reaches it later than this.
    #[arg(long, value_name = "MS", default_value_t = 500.0)]
    pub keep_up_ms: f64,
    /// Each player thread polls its sockets at most every this many µs (0: at every event).
    /// Waking once per 250 µs instead of once per segment halves the generator's CPU at 1,000
    /// players and spares the server the cost of waking it. Arrival times are the kernel's
    /// receive timestamps (SO_TIMESTAMPNS), so they stay exact for a read of one segment;
    /// when a read takes several segments of one player, the earlier ones are stamped with the
    /// last one's time (late by less than this).
    #[arg(long, value_name = "US", default_value_t = 250)]
    pub batch_us: u64,
    /// PID of the server under test (on this machine): its CPU (all its processes), peak RSS,
    /// run-queue wait and write sizes over the window go into the report.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

/// p50/p99/max in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// The server's figures over the window (with `--server-pid`).
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub pids: Vec<u32>,
    /// % of one core (all its processes).
    pub cpu_pct: f64,
    /// The user-space part of it (the rest is the kernel: syscalls, TCP, softirqs).
    pub user_cpu_pct: f64,
    /// CPU % per delivered Gb/s.
    pub cpu_pct_per_gbps: Option<f64>,
    /// When the server is pinned to one core: that core's softirq time, % (loopback receive
    /// processing of what the server sends, charged to no process), and CPU % per Gb/s with
    /// it added.
    pub core: Option<usize>,
    pub core_softirq_pct: Option<f64>,
    pub cpu_with_softirq_pct_per_gbps: Option<f64>,
    /// Sum of VmHWM over its processes, kB.
    pub peak_rss_kb: u64,
    pub rss_kb: u64,
    /// Time its threads waited for a CPU, % of the window (high: the neighbours were measured).
    pub sched_wait_pct: f64,
    /// Bytes per write(2)/writev(2) (`None` when the server's writes are not counted there).
    pub avg_write_bytes: Option<f64>,
    pub writes_per_s: f64,
}

/// The generator's own load over the window.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorReport {
    /// % of one core, whole process.
    pub cpu_pct: f64,
    /// The user-space part of it.
    pub user_cpu_pct: f64,
    pub busiest_thread: String,
    pub busiest_thread_pct: f64,
    pub player_threads: usize,
    /// A player thread above 90 % of a core: the figures may measure the generator.
    pub saturated: bool,
    /// Time its threads waited for a CPU, % of the window.
    pub sched_wait_pct: f64,
    /// Player socket reads per second, bytes per read, reads per `epoll_wait`.
    pub reads_per_s: f64,
    pub bytes_per_read: Option<f64>,
    pub reads_per_poll: Option<f64>,
    /// Arrivals are the kernel's receive timestamps (SO_TIMESTAMPNS), not the time of the
    /// read: the generator's own delays do not count as latency.
    pub kernel_timestamps: bool,
    pub batch_us: u64,
}

/// Everything `rtmp-lab bench` reports (the JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub url: String,
    pub stream: String,
    pub players: usize,
    pub connected: usize,
    pub failed: usize,
    /// Players that ended before the run did (closed by the server, play refused…).
    pub dropped: usize,
    /// The most common failure reasons, with counts.
    pub failures: Vec<String>,
    pub window_s: f64,
    /// Connect → first video keyframe, ms.
    pub first_frame_ms: Spread,
    /// Per video frame, publisher send → player arrival, ms.
    pub latency_ms: Spread,
    pub latency_samples: u64,
    pub delivered_mbps: f64,
    /// What the publisher put on the wire, Mb/s (× connected = what full delivery is).
    pub stream_mbps: f64,
    pub frames_missing_total: u64,
    pub frames_missing_max: u64,
    pub players_missing_frames: usize,
    pub unmatched_frames: u64,
    pub players_kept_up: usize,
    pub all_kept_up: bool,
    pub publisher_max_lag_ms: f64,
    pub publisher_late_tags: u64,
    pub publisher_error: Option<String>,
    pub generator: GeneratorReport,
    pub server: Option<ServerReport>,
}

/// `rtmp-lab bench`: runs, prints the table (and the JSON line), fails if the publisher
/// could not publish.
pub fn main(args: BenchArgs) -> Result<()> {
    let report = run(&args)?;
    let table = render_table(&report);
    let json = serde_json::to_string(&report)?;
    if args.json {
        eprint!("{table}");
        println!("{json}");
    } else {
        print!("{table}");
        println!("{json}");
    }
    Ok(())
}

fn validate(args: &BenchArgs) -> Result<()> {
    if args.players == 0 || args.players > 100_000 {
        bail!(
            "--players must be between 1 and 100000, got {}",
            args.players
        );
    }
    if !(args.ramp_per_s.is_finite() && args.ramp_per_s > 0.0) {
        bail!("--ramp-per-s must be positive, got {}", args.ramp_per_s);
    }
    if !(args.duration.is_finite() && (0.5..=86_400.0).contains(&args.duration)) {
        bail!(
            "--duration must be between 0.5 and 86400 s, got {}",
            args.duration
        );
    }
    if args.threads == 0 || args.threads > 256 {
        bail!("--threads must be between 1 and 256, got {}", args.threads);
    }
    if args.chunk_size == 0 || args.chunk_size > 0x7FFF_FFFF {
        bail!(
            "--chunk-size must be between 1 and 2147483647, got {}",
            args.chunk_size
        );
    }
    if !(args.keep_up_ms.is_finite() && args.keep_up_ms > 0.0) {
        bail!("--keep-up-ms must be positive, got {}", args.keep_up_ms);
    }
    Ok(())
}

/// Raises the soft open-files limit to fit `sockets` (best effort; the hard limit rules).
fn raise_open_files_limit(sockets: usize) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one valid, live `rlimit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = (sockets as u64).saturating_add(256);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

/// Sets up one player: connect, handshake, `connect`, `createStream`, `play`.
fn setup_player(
    url: &RtmpUrl,
    addr: std::net::SocketAddr,
    id: usize,
    shared: &Shared,
) -> Result<PlayerConn> {
    let connect_us = shared.clock.now_us();
    let mut conn = Connection::open(addr, SETUP_TIMEOUT)?;
    conn.connect(url)?;
    let stream_id = conn.create_stream(2.0)?;
    conn.play(&url.key, stream_id)?;
    PlayerConn::from_connection(id, connect_us, conn)
}

/// Groups failure messages: "message (×count)", most common first.
fn summarize_failures(messages: &[String]) -> Vec<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for m in messages {
        match counts.iter_mut().find(|(k, _)| k == m) {
            Some((_, c)) => *c += 1,
            None => counts.push((m.clone(), 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .into_iter()
        .take(5)
        .map(|(m, c)| format!("{m} (×{c})"))
        .collect()
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|v| v as f64 / 1000.0)
}

/// Runs the benchmark (blocking; spawns its own threads).
pub fn run(args: &BenchArgs) -> Result<BenchReport> {
    validate(args)?;
    let url = RtmpUrl::parse(&args.url)?;
    let addr = url.socket_addr()?;
    let clip = match &args.flv {
        Some(path) => Clip::from_flv(path)?,
        None => Clip::synthetic(args.synthetic_kbps, args.fps, SYNTHETIC_CLIP_S)?,
    };
    let nofile = raise_open_files_limit(args.players + 16);
    if (nofile as usize) < args.players + 16 {
        eprintln!(
            "warning: the open-files limit is {nofile}: at most ~{} players can connect \
             (raise it with `ulimit -n`)",
            nofile.saturating_sub(16)
        );
    }
    let shared = Arc::new(Shared::new());

    // The publisher.
    let publisher = Publisher::connect(&url, args.chunk_size)
        .with_context(|| format!("could not publish to {}", args.url))?;
    let publisher_bytes = publisher.bytes_sent.clone();
    let publisher_thread = {
        let shared = shared.clone();
        let clip = clip.clone();
        std::thread::Builder::new()
            .name("bench-publisher".into())
            .spawn(move || publisher.run(&clip, &shared))?
    };
    shared
        .clock
        .sleep_until(shared.clock.now_us() + LEAD.as_micros() as u64);

    // The players: workers first, then the connectors' ramp.
    let workers: Vec<Worker> = (0..args.threads)
        .map(|i| Worker::spawn(i, shared.clone(), args.batch_us))
        .collect::<Result<_>>()?;
    // Above the player threads from here on (the connectors inherit it): see
    // `timeline::raise_thread_priority`.
    timeline::raise_thread_priority();
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let ramp_start = shared.clock.now_us();
    let interval_us = 1e6 / args.ramp_per_s;
    std::thread::scope(|scope| {
        for c in 0..MAX_CONNECTORS.min(args.players) {
            let (shared, workers, failures, next, url) =
                (&shared, &workers, &failures, &next, &url);
            let _ = std::thread::Builder::new()
                .name(format!("bench-connect-{c}"))
                .spawn_scoped(scope, move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= args.players || shared.stopping() {
                        break;
                    }
                    shared
                        .clock
                        .sleep_until(ramp_start + (i as f64 * interval_us) as u64);
                    let added = setup_player(url, addr, i, shared)
                        .and_then(|p| workers.get(i % workers.len()).map_or(Ok(()), |w| w.add(p)));
                    if let Err(e) = added {
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{e:#}"));
                    }
                });
        }
    });

    // The window.
    let clock = shared.clock;
    let start_us = clock.now_us() + SETTLE.as_micros() as u64;
    let end_us = start_us + (args.duration * 1e6) as u64;
    shared.set_window(start_us, end_us);
    let read_bytes = || -> (u64, u64, u64, u64) {
        workers.iter().fold((0, 0, 0, 0), |(b, r, p, s), w| {
            let c = &w.counters;
            (
                b + c.bytes.load(Ordering::Relaxed),
                r + c.reads.load(Ordering::Relaxed),
                p + c.polls.load(Ordering::Relaxed),
                s + c.stamped.load(Ordering::Relaxed),
            )
        })
    };
    clock.sleep_until(start_us);
    // The server's processes as they are now (nginx's worker was forked after it started).
    let probe = args.server_pid.map(ServerProbe::new);
    let wait0 = stats::self_sched_wait_s();
    let user0 = stats::self_user_system_s().0;
    let (cpu0, threads0, bytes0, pub0) = (
        stats::self_cpu_s(),
        stats::self_thread_ticks(),
        read_bytes(),
        publisher_bytes.load(Ordering::Relaxed),
    );
    let server0 = probe.as_ref().map(ServerProbe::sample);
    let t0 = clock.now_us();
    clock.sleep_until(end_us);
    let wait1 = stats::self_sched_wait_s();
    let user1 = stats::self_user_system_s().0;
    let (cpu1, threads1, bytes1, pub1) = (
        stats::self_cpu_s(),
        stats::self_thread_ticks(),
        read_bytes(),
        publisher_bytes.load(Ordering::Relaxed),
    );
    let server1 = probe.as_ref().map(ServerProbe::sample);
    let memory = probe.as_ref().map(ServerProbe::memory_kb);
    let window_s = (clock.now_us().saturating_sub(t0)) as f64 / 1e6;
    clock.sleep_until(end_us + GRACE.as_micros() as u64);
    shared.stop.store(true, Ordering::Relaxed);

    let mut latency = Histogram::new();
    let mut players: Vec<PlayerStats> = Vec::new();
    for w in workers {
        let r = w.finish();
        latency.merge(&r.latency);
        players.extend(r.players);
    }
    let publisher_report = publisher_thread.join().unwrap_or_default();

    // Per-player verdicts.
    let keep_up_us = (args.keep_up_ms * 1000.0) as u64;
    let mut first_frames: Vec<u64> = Vec::new();
    let mut connected = 0;
    let mut dropped = 0;
    let mut kept_up = 0;
    let (mut missing_total, mut missing_max, mut players_missing, mut unmatched) =
        (0u64, 0u64, 0usize, 0u64);
    let mut failure_messages = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    for p in &players {
        unmatched += p.unmatched;
        let Some(first) = p.first_frame_us else {
            failure_messages.push(
                p.ended
                    .clone()
                    .unwrap_or_else(|| "no video keyframe received".into()),
            );
            continue;
        };
        connected += 1;
        first_frames.push(first.saturating_sub(p.connect_us));
        let from = p.first_frame_send_us.unwrap_or(start_us).max(start_us);
        let expected = shared.table.count_sent_between(from, end_us);
        let missing = expected.saturating_sub(p.frames_in_window);
        missing_total += missing;
        missing_max = missing_max.max(missing);
        if missing > 0 {
            players_missing += 1;
        }
        if p.ended.is_some() {
            dropped += 1;
        }
        if missing == 0 && p.ended.is_none() && p.max_latency_us <= keep_up_us {
            kept_up += 1;
        }
    }
    first_frames.sort_unstable();

    let delivered_mbps = bytes1.0.saturating_sub(bytes0.0) as f64 * 8.0 / window_s.max(1e-9) / 1e6;
    let reads = bytes1.1.saturating_sub(bytes0.1);
    let polls = bytes1.2.saturating_sub(bytes0.2);
    let stamped = bytes1.3.saturating_sub(bytes0.3);
    let stream_mbps = pub1.saturating_sub(pub0) as f64 * 8.0 / window_s.max(1e-9) / 1e6;
    let busiest = stats::busiest_thread(&threads0, &threads1, window_s);
    let busiest_player_pct = {
        let hz_all = stats::busiest_thread(
            &threads0
                .iter()
                .filter(|(_, (n, _))| n.starts_with("bench-players"))
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            &threads1
                .iter()
                .filter(|(_, (n, _))| n.starts_with("bench-players"))
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            window_s,
        );
        hz_all.map_or(0.0, |(_, p)| p)
    };
    let generator = GeneratorReport {
        cpu_pct: (cpu1 - cpu0) / window_s.max(1e-9) * 100.0,
        user_cpu_pct: (user1 - user0) / window_s.max(1e-9) * 100.0,
        busiest_thread: busiest.as_ref().map_or(String::new(), |b| b.0.clone()),
        busiest_thread_pct: busiest.map_or(0.0, |b| b.1),
        player_threads: args.threads,
        saturated: busiest_player_pct > 90.0,
        sched_wait_pct: (wait1 - wait0) / window_s.max(1e-9) * 100.0,
        reads_per_s: reads as f64 / window_s.max(1e-9),
        bytes_per_read: (reads > 0)
            .then(|| bytes1.0.saturating_sub(bytes0.0) as f64 / reads as f64),
        reads_per_poll: (polls > 0).then(|| reads as f64 / polls as f64),
        kernel_timestamps: reads > 0 && stamped * 100 >= reads * 99,
        batch_us: args.batch_us,
    };
    let server = match (probe, server0, server1, memory) {
        (Some(probe), Some(a), Some(b), Some((peak, now))) => Some(server_report(
            probe,
            a,
            b,
            peak,
            now,
            window_s,
            delivered_mbps,
        )),
        _ => None,
    };
    Ok(BenchReport {
        url: args.url.clone(),
        stream: clip.description.clone(),
        players: args.players,
        connected,
        failed: args.players - connected,
        dropped,
        failures: summarize_failures(&failure_messages),
        window_s,
        first_frame_ms: Spread {
            p50: ms(stats::quantile_sorted(&first_frames, 0.5)),
            p99: ms(stats::quantile_sorted(&first_frames, 0.99)),
            max: ms(first_frames.last().copied()),
        },
        latency_ms: Spread {
            p50: ms(latency.quantile(0.5)),
            p99: ms(latency.quantile(0.99)),
            max: ms((latency.count() > 0).then(|| latency.max())),
        },
        latency_samples: latency.count(),
        delivered_mbps,
        stream_mbps,
        frames_missing_total: missing_total,
        frames_missing_max: missing_max,
        players_missing_frames: players_missing,
        unmatched_frames: unmatched,
        players_kept_up: kept_up,
        all_kept_up: kept_up == args.players,
        publisher_max_lag_ms: publisher_report.max_lag_us as f64 / 1000.0,
        publisher_late_tags: publisher_report.late_tags,
        publisher_error: publisher_report.error,
        generator,
        server,
    })
}

fn server_report(
    probe: ServerProbe,
    a: ServerSample,
    b: ServerSample,
    peak_rss_kb: u64,
    rss_kb: u64,
    window_s: f64,
    delivered_mbps: f64,
) -> ServerReport {
    let w = window_s.max(1e-9);
    let cpu_pct = (b.cpu_s - a.cpu_s) / w * 100.0;
    let writes = b.write_calls.saturating_sub(a.write_calls);
    let written = b.write_bytes.saturating_sub(a.write_bytes);
    let softirq = match (a.core_softirq_s, b.core_softirq_s) {
        (Some(x), Some(y)) => Some((y - x) / w * 100.0),
        _ => None,
    };
    let per_gbps = |pct: f64| (delivered_mbps > 0.0).then(|| pct / (delivered_mbps / 1000.0));
    ServerReport {
        pids: probe.pids,
        core: probe.core,
        core_softirq_pct: softirq,
        cpu_with_softirq_pct_per_gbps: softirq.and_then(|s| per_gbps(cpu_pct + s)),
        cpu_pct,
        user_cpu_pct: (b.user_s - a.user_s) / w * 100.0,
        cpu_pct_per_gbps: (delivered_mbps > 0.0).then(|| cpu_pct / (delivered_mbps / 1000.0)),
        peak_rss_kb,
        rss_kb,
        sched_wait_pct: (b.sched_wait_s - a.sched_wait_s) / w * 100.0,
        // /proc/PID/io counts write(2)/writev(2) but not send(2)/sendmsg(2) (nginx-rtmp
        // sends with send(2)): report sizes only when the counted bytes are the delivery.
        avg_write_bytes: (writes > 0 && written as f64 * 8.0 / w / 1e6 >= 0.5 * delivered_mbps)
            .then(|| written as f64 / writes as f64),
        writes_per_s: writes as f64 / w,
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2} ms"))
}

/// The human-readable report.
pub fn render_table(r: &BenchReport) -> String {
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<28} {v}\n"));
    row("url", r.url.clone());
    row("stream", r.stream.clone());
    row(
        "players",
        format!(
            "{} connected, {} failed, {} dropped during the run (of {})",
            r.connected, r.failed, r.dropped, r.players
        ),
    );
    for f in &r.failures {
        row("  failure", f.clone());
    }
    row("window", format!("{:.1} s", r.window_s));
    row(
        "first frame (p50/p99/max)",
        format!(
            "{} / {} / {}",
            fmt_ms(r.first_frame_ms.p50),
            fmt_ms(r.first_frame_ms.p99),
            fmt_ms(r.first_frame_ms.max)
        ),
    );
    row(
        "latency (p50/p99/max)",
        format!(
            "{} / {} / {}  ({} frames)",
            fmt_ms(r.latency_ms.p50),
            fmt_ms(r.latency_ms.p99),
            fmt_ms(r.latency_ms.max),
            r.latency_samples
        ),
    );
    row(
        "delivered",
        format!(
            "{:.1} Mb/s (stream {:.2} Mb/s × {} = {:.1})",
            r.delivered_mbps,
            r.stream_mbps,
            r.connected,
            r.stream_mbps * r.connected as f64
        ),
    );
    row(
        "frames missing",
        format!(
            "{} in total, {} players, at most {} for one",
            r.frames_missing_total, r.players_missing_frames, r.frames_missing_max
        ),
    );
    if r.unmatched_frames > 0 {
        row("frames not matched", r.unmatched_frames.to_string());
    }
    row(
        "kept up",
        format!(
            "{} ({} of {} players)",
            if r.all_kept_up { "yes" } else { "NO" },
            r.players_kept_up,
            r.players
        ),
    );
    row(
        "publisher",
        format!(
            "max lag {:.1} ms, {} tags > 10 ms late{}",
            r.publisher_max_lag_ms,
            r.publisher_late_tags,
            r.publisher_error
                .as_ref()
                .map_or(String::new(), |e| format!(", error: {e}"))
        ),
    );
    row(
        "generator CPU",
        format!(
            "{:.1} % of a core ({:.1} % user; busiest thread {} {:.1} %), run-queue wait {:.1} %{}",
            r.generator.cpu_pct,
            r.generator.user_cpu_pct,
            r.generator.busiest_thread,
            r.generator.busiest_thread_pct,
            r.generator.sched_wait_pct,
            if r.generator.saturated {
                " — SATURATED: these figures may measure the generator"
            } else {
                ""
            }
        ),
    );
    row(
        "generator reads",
        format!(
            "{:.0}/s, {} bytes each, {} per epoll_wait; arrival = {}",
            r.generator.reads_per_s,
            r.generator
                .bytes_per_read
                .map_or("–".into(), |v| format!("{v:.0}")),
            r.generator
                .reads_per_poll
                .map_or("–".into(), |v| format!("{v:.1}")),
            if r.generator.kernel_timestamps {
                "kernel receive timestamp"
            } else {
                "time of the read"
            }
        ),
    );
    if let Some(sv) = &r.server {
        row(
            "server CPU",
            format!(
                "{:.1} % of a core ({:.1} % user), {} per Gb/s, run-queue wait {:.1} %",
                sv.cpu_pct,
                sv.user_cpu_pct,
                sv.cpu_pct_per_gbps
                    .map_or("–".into(), |v| format!("{v:.1} %")),
                sv.sched_wait_pct
            ),
        );
    }
    if let (Some(sv), Some(core), Some(softirq)) = (
        &r.server,
        r.server.as_ref().and_then(|s| s.core),
        r.server.as_ref().and_then(|s| s.core_softirq_pct),
    ) {
        row(
            "server core softirq",
            format!(
                "{softirq:.1} % of cpu{core} (loopback receive work, charged to no process); \
                 with it {} per Gb/s",
                sv.cpu_with_softirq_pct_per_gbps
                    .map_or("–".into(), |v| format!("{v:.1} %"))
            ),
        );
    }
    if let Some(sv) = &r.server {
        row(
            "server memory",
            format!(
                "peak RSS {:.1} MB, now {:.1} MB",
                sv.peak_rss_kb as f64 / 1024.0,
                sv.rss_kb as f64 / 1024.0
            ),
        );
        row(
            "server writes",
            match sv.avg_write_bytes {
                Some(v) => format!("{:.0}/s, {v:.0} bytes each on average", sv.writes_per_s),
                None => "not visible in /proc/PID/io (the server sends with send(2))".into(),
            },
        );
    }
    s
}
