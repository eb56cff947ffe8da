//! `rtmp-lab experiment`: one scenario simulated and measured for real, frame by frame.
//!
//! ```text
//!  scenario ──▶ sim_core::engine ───────────────────────────────────────────▶ sim.json
//!     │
//!     ├──▶ publisher (ffmpeg x264+AAC | replay of the simulated frames) ─┐
//!     │        write start/end per frame                                 │ link: emulated (TUN relay,
//!     ├──▶ server (in-process rtmp-lab serve | any server by --url)  ◀──┤       sim-core link model)
//!     │        arrival tap: last byte of each message                    │    | loopback (no impairment)
//!     └──▶ N player probes: start-up steps, arrival of each frame  ◀────┘
//!                 └──▶ measured.json (same Trace format) ──▶ compare.json, latency.svg, table
//! ```
//!
//! | module | holds |
//! |---|---|
//! | [`client`] | the minimal RTMP client (our codec): handshake, connect, createStream, publish/play, timed I/O |
//! | [`source`] | what the publisher sends: ffmpeg's FLV read from a pipe, tag classification, the ffmpeg command |
//! | [`replay`] | the simulator's frames packed as valid FLV/RTMP tags (SPS/PPS, AAC config, NAL units of the simulated sizes) |
//! | [`publisher`] | the publishing task: paced writes, write start/end per frame, socket backlog |
//! | [`probe`] | a player probe: start-up breakdown, arrival of every frame |
//! | [`link`] | loopback or the TUN link emulator ([`crate::emu`]), and connecting through it |
//! | [`measure`] | the measured [`Trace`] from the three vantage points |
//! | [`report`] | the comparison table, the derived spans, the chart's data, the files |
//! | [`fidelity`] | the run's steady-state p50/p95 and start-up, simulated vs measured (`fidelity.json`) |
//! | [`observe`] | `--observe`: record a live stream (OBS), infer its scenario, compare |
//!
//! Time 0 of both traces is the instant the publisher starts connecting. The probes join at the
//! scenario's join times counted from the start of capture, as in the simulator (players join
//! at `players.join_at_s` of wall time, capture starts when the publish set-up completes).

pub mod cli;
pub mod client;
pub mod fidelity;
pub mod link;
pub mod measure;
pub mod observe;
pub mod probe;
pub mod publisher;
pub mod replay;
pub mod report;
pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use sim_core::engine::Engine;
use sim_core::scenario::{ExperimentPublisher, Scenario};
use sim_core::trace::{compare, Comparison, Trace};
use sim_core::Micros;
use tokio::sync::{mpsc, oneshot, watch};

use crate::emu::EmuStats;
use crate::serve::config::{RelaySettings, Settings, SocketOptions};
use crate::serve::relay::Arrival;
use client::RtmpUrl;
use link::{Link, LinkChoice};
use probe::ProbeReport;
use publisher::PublisherReport;

/// Stream key of the experiment's stream on the in-process server.
pub const STREAM_KEY: &str = "experiment";

/// How long the probes may keep receiving after the publisher finished (they stop earlier at
/// the server's Stream EOF).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(3);

/// Players join no later than this fraction of the run (see [`prepare_scenario`]).
pub const LATEST_JOIN_FRACTION: f64 = 0.25;

/// Arrival reports the in-process server may hold unread (the collector drains continuously).
const ARRIVAL_TAP_CAPACITY: usize = 1 << 18;

/// How the experiment runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenario, after [`prepare_scenario`].
    pub scenario: Scenario,
    /// An external server (`rtmp://host[:port]/app[/key]`); `None`: the in-process server.
    pub url: Option<String>,
    pub publisher: ExperimentPublisher,
    pub link: LinkChoice,
    /// The ffmpeg executable.
    pub ffmpeg: String,
    pub drain: Duration,
}

/// What one run produced.
pub struct Outcome {
    pub scenario: Scenario,
    pub simulated: Trace,
    pub measured: Trace,
    pub comparison: Comparison,
    pub info: RunInfo,
}

/// How the measurement was made: written beside the traces and shown in the table header.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunInfo {
    /// "loopback (no impairment)" or the emulated paths.
    pub link: String,
    /// Why loopback was used although the emulator was asked for.
    pub link_fallback_reason: Option<String>,
    /// "replay" or "ffmpeg".
    pub publisher: String,
    pub ffmpeg_command: Option<String>,
    pub ffmpeg_stderr: Option<String>,
    /// "in-process rtmp-lab serve" or the external URL.
    pub server: String,
    pub url: String,
    pub players: u32,
    /// Errors of probes that did not finish normally (index: message).
    pub probe_errors: Vec<String>,
    pub publisher_error: Option<String>,
    pub emulator: Option<EmuStats>,
    /// Threads of the experiment's runtime that run at real-time priority (0: not permitted,
    /// or run outside `rtmp-lab experiment`'s runtime).
    pub realtime_threads: u32,
    /// The emulated namespaces' congestion controller (`None` on loopback).
    pub congestion_control: Option<String>,
    /// Every probe's start-up, in join order (probe 0 is the one in `measured.json`); with
    /// several probes, the later ones are repeat connections (TCP Fast Open cookies cached).
    pub probe_startups: Vec<ProbeStartup>,
    /// The publisher's connection used TCP Fast Open (kernel's `TCPI_OPT_SYN_DATA`).
    pub publisher_fast_open_used: Option<bool>,
    /// Per frame, what the publisher's write did (µs since the origin): the trace keeps the
    /// start as `sent_us`; the end is when the last byte was accepted by the socket.
    pub publisher_writes: Vec<WriteTimes>,
    pub notes: Vec<String>,
}

/// One probe's start-up as measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStartup {
    pub index: usize,
    /// When it started connecting, µs since the origin.
    pub joined_us: Option<Micros>,
    pub breakdown: sim_core::rtmp::StartupBreakdown,
    /// Its SYN carried C0+C1 (TCP Fast Open used), as the kernel reports it.
    pub fast_open_used: Option<bool>,
    /// It reached `Play.Start`.
    pub ready: bool,
}

/// One frame's write at the publisher.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WriteTimes {
    pub kind: sim_core::server::MediaKind,
    pub timestamp_ms: u32,
    pub start_us: Micros,
    pub end_us: Micros,
}

/// Applies the command line's overrides and makes the join time fit the run: players that
/// would join later than [`LATEST_JOIN_FRACTION`] of the duration (a 5 s run of a preset whose
/// player joins at 5 s would measure nothing) join at that fraction instead, spread kept in
/// proportion. Returns the notes to show.
pub fn prepare_scenario(
    s: &mut Scenario,
    players: Option<u32>,
    join_at_s: Option<f64>,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(n) = players {
        s.players.count = n.max(1);
    }
    match join_at_s {
        Some(j) => s.players.join_at_s = j.max(0.0),
        None => {
            let latest = s.duration_s * LATEST_JOIN_FRACTION;
            let last_join = s.players.join_at_s + s.players.join_spread_s;
            if last_join > latest {
                let scale = if last_join > 0.0 {
                    latest / last_join
                } else {
                    1.0
                };
                notes.push(format!(
                    "players join at {:.2} s (+{:.2} s spread) instead of the scenario's {:.2} s \
                     (+{:.2} s), to join within the first {:.0} % of the {:.1} s run; set \
                     --join-at to choose",
                    s.players.join_at_s * scale,
                    s.players.join_spread_s * scale,
                    s.players.join_at_s,
                    s.players.join_spread_s,
                    LATEST_JOIN_FRACTION * 100.0,
                    s.duration_s
                ));
                s.players.join_at_s *= scale;
                s.players.join_spread_s *= scale;
            }
        }
    }
    notes
}

/// The in-process server's settings from the scenario's server and TCP settings.
pub fn server_settings(s: &Scenario) -> Settings {
    let defaults = Settings::default();
    Settings {
        socket: SocketOptions {
            nodelay: s.server_tcp.nodelay,
            // The listener accepts data on the SYN when either side's clients use Fast Open.
            fast_open: s.server_tcp.fast_open || s.publisher_tcp.fast_open,
            send_buffer_bytes: 0,
            chunk_size: s.server.chunk_size,
        },
        relay: RelaySettings {
            gop_cache: s.server.gop_cache,
            gop_cache_max_bytes: s.server.gop_cache_max_bytes,
            queue_max_bytes: s.server.queue_max_bytes,
            queue_max_ms: s.server.queue_max_ms,
            drop_policy: s.server.drop_policy,
            disconnect_after_ms: s.server.disconnect_after_ms,
            coalesce_ms: s.server.coalesce_ms,
            publisher_takeover: false,
            // The probes leave at Stream EOF; nothing waits for a publisher to come back.
            unpublish_linger_s: 2.0,
        },
        web_root: None,
        ..defaults
    }
}

/// Runs the experiment (needs tokio's multi-threaded runtime).
pub async fn run(opts: Options) -> Result<Outcome> {
    let s = opts.scenario.clone();
    s.validate()?;
    let mut info = RunInfo {
        publisher: match opts.publisher {
            ExperimentPublisher::Replay => "replay".into(),
            ExperimentPublisher::Ffmpeg => "ffmpeg".into(),
        },
        players: s.players.count,
        ..RunInfo::default()
    };

    // 1. The simulation.
    let simulated = simulate(&s)?;
    let sim_t0 = simulated.startup.publisher.total;

    // 2. The link.
    let max_run = Duration::from_secs_f64(
        s.duration_s + s.players.join_at_s + s.players.join_spread_s + 120.0,
    );
    let choice = if opts.url.is_some() && opts.link == LinkChoice::Emulated {
        info.notes.push(
            "--url: an external server is not inside the emulated link; measuring over \
             loopback (no impairment)"
                .into(),
        );
        LinkChoice::Loopback
    } else {
        opts.link
    };
    let link = Arc::new(tokio::task::block_in_place(|| {
        Link::open(choice, &s, max_run)
    }));
    info.link = link.label();
    info.link_fallback_reason = link.fallback_reason().map(str::to_owned);

    // 3. The server.
    let mut in_process = None;
    let (server_addr, url) = match &opts.url {
        None => {
            let (server, addr) = link.bind_server(server_settings(&s)).await?;
            let relay = server.relay();
            let tap = relay
                .tap_arrivals(ARRIVAL_TAP_CAPACITY)
                .ok_or_else(|| anyhow!("the server's arrival tap is taken"))?;
            let (collect_stop, collect_stopped) = oneshot::channel::<()>();
            let collector = tokio::spawn(collect_arrivals(tap, collect_stopped));
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(server.run(async {
                let _ = stopped.await;
            }));
            in_process = Some(InProcess {
                relay,
                collector,
                collect_stop,
                stop,
                task,
            });
            let url = RtmpUrl {
                host: addr.ip().to_string(),
                port: addr.port(),
                app: "live".into(),
                key: STREAM_KEY.into(),
            };
            info.server = "in-process rtmp-lab serve".into();
            (addr, url)
        }
        Some(text) => {
            let url = RtmpUrl::parse(text).or_else(|_| {
                RtmpUrl::parse(&format!("{}/{STREAM_KEY}", text.trim_end_matches('/')))
            })?;
            let addr = resolve(&url).await?;
            info.server =
                format!("external server {url} (arrival at the server is not observable)");
            (addr, url)
        }
    };
    info.url = url.to_string();

    // 4. Publisher and source.
    let origin = Instant::now();
    let (tag_tx, tag_rx) = mpsc::unbounded_channel();
    let (published_tx, published_rx) = oneshot::channel();
    let publisher_task = tokio::spawn(publisher::run(
        link.clone(),
        server_addr,
        url.clone(),
        link::SocketOpts {
            nodelay: s.publisher_tcp.nodelay,
            fast_open: s.publisher_tcp.fast_open,
        },
        s.rtmp.publisher_chunk_size,
        tag_rx,
        published_tx,
    ));
    let (capture_tx, capture_rx) = oneshot::channel::<Instant>();
    let source_task = match opts.publisher {
        ExperimentPublisher::Replay => {
            for tag in replay::replay_tags(&s, &simulated, origin) {
                let _ = tag_tx.send(tag);
            }
            drop(tag_tx);
            let _ = capture_tx.send(origin + Duration::from_micros(sim_t0.0));
            drop(published_rx);
            None
        }
        ExperimentPublisher::Ffmpeg => {
            let ffmpeg = opts.ffmpeg.clone();
            let s2 = s.clone();
            Some(tokio::spawn(async move {
                if published_rx.await.is_err() {
                    return Err(anyhow!("the publisher did not get to publish"));
                }
                source::run_ffmpeg(&ffmpeg, &s2, tag_tx, capture_tx).await
            }))
        }
    };

    // 5. Probes, at the scenario's join times counted from the start of capture.
    let (done_tx, done_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let launcher = {
        let link = link.clone();
        let url = url.clone();
        let s = s.clone();
        let stop_wait = stop_rx.clone();
        tokio::spawn(async move {
            let mut stop_wait = stop_wait;
            let capture_start = tokio::select! {
                c = capture_rx => c.ok(),
                _ = async { let _ = stop_wait.wait_for(|v| *v).await; } => None,
            };
            let capture_start = capture_start.unwrap_or_else(Instant::now);
            let n = s.players.count.max(1);
            (0..n)
                .map(|i| {
                    let spread = if n > 1 {
                        s.players.join_spread_s * f64::from(i) / f64::from(n - 1)
                    } else {
                        0.0
                    };
                    let joined = Micros::from_secs_f64(s.players.join_at_s + spread);
                    let join_at = if joined >= sim_t0 {
                        capture_start + Duration::from_micros((joined - sim_t0).0)
                    } else {
                        origin + Duration::from_micros(joined.0)
                    };
                    tokio::spawn(probe::run(
                        i as usize,
                        link.clone(),
                        server_addr,
                        url.clone(),
                        join_at,
                        s.server_tcp.fast_open,
                        done_rx.clone(),
                        stop_rx.clone(),
                    ))
                })
                .collect::<Vec<_>>()
        })
    };

    // 6. Wait for the publisher, then let the probes drain.
    let publish_limit = max_run;
    let (publisher_report, publisher_error) =
        match tokio::time::timeout(publish_limit, publisher_task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => (
                PublisherReport::default(),
                Some(anyhow!("publisher task: {e}")),
            ),
            Err(_) => (
                PublisherReport::default(),
                Some(anyhow!(
                    "the publisher did not finish within {publish_limit:?}"
                )),
            ),
        };
    let _ = done_tx.send(true);
    let mut ffmpeg_error = None;
    let mut ffmpeg_anchor = None;
    if let Some(task) = source_task {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Ok(report))) => {
                info.ffmpeg_command = Some(report.command);
                if !report.stderr.is_empty() {
                    info.ffmpeg_stderr = Some(report.stderr);
                }
                if let Some(anchor) = report.anchor {
                    ffmpeg_anchor_note(&mut info, anchor, origin);
                }
                info.notes.push(format!(
                    "ffmpeg: {} tags past the {:.1} s duration not sent",
                    report.tags_past_duration, s.duration_s
                ));
                ffmpeg_anchor = report.anchor;
            }
            Ok(Ok(Err(e))) => ffmpeg_error = Some(e),
            Ok(Err(e)) => ffmpeg_error = Some(anyhow!("ffmpeg task: {e}")),
            Err(_) => ffmpeg_error = Some(anyhow!("ffmpeg did not stop")),
        }
    }
    let probe_tasks = launcher.await.unwrap_or_default();
    let drain_until = tokio::time::Instant::now() + opts.drain;
    let mut probes: Vec<ProbeReport> = Vec::with_capacity(probe_tasks.len());
    let mut pending = probe_tasks;
    // Probes end at Stream EOF; after the drain time the rest are told to stop.
    let all = futures_join(&mut pending, drain_until).await;
    if !all {
        let _ = stop_tx.send(true);
    }
    for (i, task) in pending.into_iter().enumerate() {
        match task.await {
            Ok(r) => probes.push(r),
            Err(e) => {
                info.probe_errors
                    .push(format!("probe {i}: task failed: {e}"));
                probes.push(ProbeReport {
                    index: i,
                    error: Some(e.to_string()),
                    ..ProbeReport::default()
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    for p in &probes {
        if let Some(e) = &p.error {
            info.probe_errors.push(format!("probe {}: {e}", p.index));
        }
    }

    // 7. The server's side, then stop it.
    let (arrivals, dropped, egress) = match in_process {
        Some(ip) => {
            let metrics = ip.relay.server_metrics();
            let _ = ip.collect_stop.send(());
            let arrivals = ip.collector.await.unwrap_or_default();
            let _ = ip.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), ip.task).await;
            (
                Some(arrivals),
                Some(metrics.messages_dropped),
                Some(metrics.bytes_out),
            )
        }
        None => (None, None, None),
    };
    info.emulator = link.stats();
    info.realtime_threads = RT_THREADS.load(std::sync::atomic::Ordering::Relaxed);
    info.congestion_control = link.congestion_control().map(str::to_owned);
    if opts.url.is_none()
        && !link.is_emulated()
        && (s.server_tcp.fast_open || s.publisher_tcp.fast_open)
    {
        info.notes.push(
            "TCP Fast Open is applied on the emulated link only; these loopback connections \
             did not use it"
                .into(),
        );
    }
    info.probe_startups = probes
        .iter()
        .map(|p| ProbeStartup {
            index: p.index,
            joined_us: p.joined_at.map(|t| measure::since(origin, t)),
            breakdown: p.setup.breakdown(),
            fast_open_used: p.fast_open_used,
            ready: p.ready_at.is_some(),
        })
        .collect();
    info.publisher_fast_open_used = publisher_report.fast_open_used;
    let link_emulated = link.is_emulated();
    drop(link);

    if publisher_report.published_at.is_none() {
        let why = publisher_error
            .map(|e| format!("{e:#}"))
            .unwrap_or_else(|| "unknown".into());
        bail!("the publisher could not publish to {url}: {why}");
    }
    if let Some(e) = publisher_error {
        info.publisher_error = Some(format!("{e:#}"));
    }
    if let Some(e) = ffmpeg_error {
        bail!("ffmpeg failed: {e:#}");
    }

    // 8. The measured trace and the comparison.
    info.publisher_writes = publisher_report
        .frames
        .iter()
        .map(|f| WriteTimes {
            kind: f.kind,
            timestamp_ms: f.timestamp_ms,
            start_us: measure::since(origin, f.write_start),
            end_us: measure::since(origin, f.write_end),
        })
        .collect();
    let measured = measure::trace(&measure::Inputs {
        scenario: &s,
        origin,
        publisher: &publisher_report,
        probes: &probes,
        server_arrivals: arrivals.as_deref(),
        capture_anchor: ffmpeg_anchor,
        replayed_vbv: (opts.publisher == ExperimentPublisher::Replay)
            .then(|| simulated.vbv.clone()),
        server_dropped_messages: dropped,
        server_egress_bytes: egress,
        uplink_capacity_kbps: if link_emulated {
            s.uplink.bottleneck_kbps
        } else {
            0.0
        },
    });
    let comparison = compare(&simulated, &measured);
    Ok(Outcome {
        scenario: s,
        simulated,
        measured,
        comparison,
        info,
    })
}

/// Real-time priority of the experiment's own threads (publisher, server, probes): below the
/// link emulator's relay (10), above every normal task.
pub const THREAD_RT_PRIORITY: i32 = 5;

static RT_THREADS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Moves the calling thread to SCHED_FIFO at [`THREAD_RT_PRIORITY`] when permitted (root), so
/// that other work on a busy machine (compilers, other tests) does not delay the publisher's
/// writes, the server's reads and the probes' timestamps by whole scheduler ticks: the
/// measurement is then of the path and the server, not of the machine's load. The threads
/// mostly sleep in `epoll_wait`; the kernel's RT throttling (95 % by default) bounds them in
/// any case. Without permission nothing changes.
pub fn raise_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param {
            sched_priority: THREAD_RT_PRIORITY,
        };
        // SAFETY: sched_setscheduler reads one sched_param from a valid pointer; pid 0 is the
        // calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
            RT_THREADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Longest the simulation may take (one hour of 1080p60 takes well under a second).
pub const SIMULATION_TIME_LIMIT: Duration = Duration::from_secs(300);

/// Runs the simulator in slices, bounded by [`SIMULATION_TIME_LIMIT`].
pub fn simulate(s: &Scenario) -> Result<Trace> {
    let start = Instant::now();
    let mut engine = Engine::new(s);
    while !engine.step(100_000).done {
        if start.elapsed() > SIMULATION_TIME_LIMIT {
            bail!("the simulation did not finish within {SIMULATION_TIME_LIMIT:?}");
        }
    }
    Ok(engine.into_trace())
}

struct InProcess {
    relay: Arc<crate::serve::relay::Relay>,
    collector: tokio::task::JoinHandle<Vec<Arrival>>,
    collect_stop: oneshot::Sender<()>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
}

/// Drains the server's arrival tap until told to stop.
async fn collect_arrivals(
    mut tap: mpsc::Receiver<Arrival>,
    mut stop: oneshot::Receiver<()>,
) -> Vec<Arrival> {
    let mut out = Vec::new();
    loop {
        tokio::select! {
            a = tap.recv() => match a {
                Some(a) => out.push(a),
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    while let Ok(a) = tap.try_recv() {
        out.push(a);
    }
    out
}

/// Waits until every task in `tasks` has finished or `until` passes; true if all finished.
async fn futures_join(
    tasks: &mut [tokio::task::JoinHandle<ProbeReport>],
    until: tokio::time::Instant,
) -> bool {
    loop {
        if tasks.iter().all(|t| t.is_finished()) {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ffmpeg_anchor_note(info: &mut RunInfo, anchor: Instant, origin: Instant) {
    info.notes.push(format!(
        "ffmpeg: capture times are estimated as the FLV header's arrival ({:.1} ms after the \
         origin) + pts; encode = read from ffmpeg's pipe",
        anchor.saturating_duration_since(origin).as_secs_f64() * 1e3
    ));
}

/// `127.0.0.1:0`-style address check used by the CLI for `--api` defaults.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The address an RTMP URL's host resolves to.
pub async fn resolve(url: &RtmpUrl) -> Result<SocketAddr> {
    tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .with_context(|| format!("while resolving {}", url.host))?
        .next()
        .ok_or_else(|| anyhow!("{} has no address", url.host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim_core::server::MediaKind;

    #[test]
    fn join_time_is_pulled_into_the_run() {
        let mut s = sim_core::scenario::preset("lan").unwrap();
        s.duration_s = 8.0;
        s.players.join_spread_s = 2.0;
        let notes = prepare_scenario(&mut s, Some(3), None);
        assert_eq!(s.players.count, 3);
        assert!((s.players.join_at_s + s.players.join_spread_s - 2.0).abs() < 1e-9);
        assert_eq!(notes.len(), 1);
        let mut s = sim_core::scenario::preset("lan").unwrap();
        assert!(
            prepare_scenario(&mut s, None, None).is_empty(),
            "5 s of 60 s fits"
        );
        prepare_scenario(&mut s, None, Some(7.5));
        assert_eq!(s.players.join_at_s, 7.5);
    }

    /// The whole pipeline in-process: replay over loopback to the in-process server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_over_loopback_measures_every_frame() {
        let mut s = sim_core::scenario::preset("low-latency").unwrap();
        s.duration_s = 2.0;
        prepare_scenario(&mut s, Some(2), None);
        let o = run(Options {
            scenario: s,
            url: None,
            publisher: ExperimentPublisher::Replay,
            link: LinkChoice::Loopback,
            ffmpeg: "ffmpeg".into(),
            drain: Duration::from_secs(2),
        })
        .await
        .expect("experiment");
        assert_eq!(o.info.link, link::LOOPBACK_LABEL);
        assert_eq!(o.measured.source, "measured");
        let sent = o
            .simulated
            .frames
            .iter()
            .filter(|f| f.sent_us.is_some())
            .count();
        assert_eq!(
            o.measured.frames.len(),
            sent,
            "every simulated frame was sent"
        );
        let video: Vec<_> = o
            .measured
            .frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .collect();
        // No GOP cache in low-latency: the probe starts at the keyframe after its join.
        let arrived = video
            .iter()
            .filter(|f| f.player_arrival_us.is_some())
            .count();
        assert!(arrived * 2 >= video.len(), "{arrived} of {}", video.len());
        for f in &video {
            assert!(f.server_arrival_us.is_some(), "the tap saw every frame");
            if let (Some(a), Some(b)) = (f.sent_us, f.server_arrival_us) {
                assert!(b >= a, "arrival after sending");
            }
        }
        assert_eq!(o.measured.audience.players, 2);
        assert!(o.info.probe_errors.is_empty(), "{:?}", o.info.probe_errors);
        assert!(o
            .comparison
            .stages
            .iter()
            .any(|st| st.stage == sim_core::trace::Stage::Delivery && st.matched_frames > 0));
        let table = report::table(&o);
        assert!(table.contains("loopback (no impairment)"), "{table}");

        // The files read back as the simulator's types.
        let dir = tempfile::tempdir().unwrap();
        report::write_files(dir.path(), &o).unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        // (Floats are compared loosely: serde_json's parser is not round-trip exact.)
        let measured = Trace::from_json(&read("measured.json")).expect("measured.json is a Trace");
        assert_eq!(measured.frames, o.measured.frames);
        assert_eq!(measured.startup, o.measured.startup);
        let cmp: Comparison = serde_json::from_str(&read("compare.json")).unwrap();
        assert_eq!(cmp.stages.len(), o.comparison.stages.len());
        assert!(cmp.stages.iter().any(|st| !st.per_frame.is_empty()));
        let extra: serde_json::Value = serde_json::from_str(&read("compare.json")).unwrap();
        assert_eq!(extra["link"], link::LOOPBACK_LABEL);
        assert!(Trace::from_json(&read("sim.json")).is_ok());
        let again = Scenario::from_toml(&read("scenario.toml")).unwrap();
        assert_eq!(again, o.scenario);
        // fidelity.json: one flat object (the xtask reads it without a JSON library), labelled.
        let fid: serde_json::Value = serde_json::from_str(&read("fidelity.json")).unwrap();
        let fields = fid.as_object().expect("an object");
        assert!(fields.values().all(|v| !v.is_object() && !v.is_array()));
        assert_eq!(fid["emulated"], false);
        assert_eq!(fid["link"], link::LOOPBACK_LABEL);
        // (2 s is too short for a steady-state window after the join and the first keyframe.)
        assert!(fid["steady_from_ms"].as_f64().unwrap() > 1000.0 * o.scenario.players.join_at_s);
        assert_eq!(fid["repeat_probes"], 1, "probe 1 is a repeat connection");
    }
}
