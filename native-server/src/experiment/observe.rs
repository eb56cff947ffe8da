//! `rtmp-lab experiment --observe rtmp://host/app/key`: record a live stream someone else
//! publishes (OBS, ffmpeg, a camera) with a probe player, infer the scenario that describes
//! it, simulate that, and compare, frame by frame.
//!
//! **What is inferred** (into a copy of the base scenario, `lan` unless given; the network,
//! server and player settings come from the base):
//!
//! | field | from |
//! |---|---|
//! | `encoder.width/height` | `onMetaData` (else the server's ingest stats, else the base) |
//! | `encoder.fps` | `onMetaData` `framerate`, else the video timestamps; snapped to 23.976/24/25/29.97/30/50/59.94/60 within 1 % |
//! | `rate_control.bitrate_kbps` | `onMetaData` `videodatarate`, else the mean coded bitrate received |
//! | `rate_control` VBV | CBR, max rate = bitrate, buffer = 1 s of it (OBS's default; RTMP does not carry the VBV) |
//! | `encoder.keyframe_interval_frames` | the keyframe spacing received, else the ingest stats |
//! | `encoder.bframes` | the largest composition offset (pts − dts) less a keyframe's: a P-frame after m B-frames is m frames further ahead than the keyframe (whose offset is the reorder delay, 1 frame, 2 with x264's B-pyramid) |
//! | `audio` | present or not; `audiodatarate`, `audiosamplerate` or the received rate |
//! | `duration_s`, `players.join_at_s` | the stream time received; when the probe joined in stream time |
//!
//! **What is measured.** The publisher's send times are not observable, so neither are the
//! send → arrival spans. The probe gives each frame's arrival (its last byte) and its start-up
//! steps. With `--api URL` of an `rtmp-lab serve` that receives the stream, the server's
//! ingest record (`/api/streams/{app}/{key}`, polled every few seconds) gives each frame's
//! arrival at the server: `arrival_us` is µs since the publish started, and the publish start
//! is placed on this process's clock as the latest (request written − the API's `uptime_s`)
//! over the polls — the server reads its uptime after the request left, so this bound is late
//! by at most the request's one-way trip; on one machine both use the same monotonic clock,
//! so the server → player span is exact to a fraction of a millisecond on loopback.
//!
//! The measured trace's time 0 is the publish start (from the API) minus the simulated publish
//! set-up, or, without the API, the earliest "arrival − timestamp" of any frame minus the same,
//! so both traces line up on stream time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use lab_api::{FrameClass, FrameKind, StreamDetail};
use sim_core::rate_control::RateControlMode;
use sim_core::rtmp::{self, SessionKind};
use sim_core::scenario::Scenario;
use sim_core::server::MediaKind;
use sim_core::trace::{compare, FrameRecord, Series, Startup, Trace};
use sim_core::Micros;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::client::RtmpUrl;
use super::link::Link;
use super::measure::{grid_phase, since, snap};
use super::probe::{self, ProbeReport};
use super::{Outcome, RunInfo};

/// How often the server's ingest record is fetched (it holds the last ~3000 messages, 30–60 s).
pub const API_POLL: Duration = Duration::from_secs(5);

/// Largest HTTP response read from the API.
const MAX_API_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The link label of an observed run.
pub const OBSERVED_LABEL: &str = "observed live stream (no emulation; the path is whatever it is)";

/// What `--observe` needs.
#[derive(Debug, Clone)]
pub struct ObserveOptions {
    pub url: String,
    pub duration: Duration,
    /// `http://host:port` of the `rtmp-lab serve` receiving the stream.
    pub api: Option<String>,
    /// Network, server and player settings (and the seed).
    pub base: Scenario,
}

/// One poll of the API.
struct ApiSample {
    /// When the request was written.
    at: Instant,
    detail: StreamDetail,
}

/// Records, infers, simulates, compares.
pub async fn run(opts: ObserveOptions) -> Result<Outcome> {
    let url = RtmpUrl::parse(&opts.url)?;
    let server = super::resolve(&url).await?;
    let link = Arc::new(Link::Loopback {
        fallback_reason: None,
    });
    let (done_tx, done_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let probe_task = tokio::spawn(probe::run(
        0,
        link,
        server,
        url.clone(),
        start,
        false,
        done_rx,
        stop_rx,
    ));
    let mut samples = Vec::new();
    let mut api_error = None;
    let end = start + opts.duration;
    let mut next_poll = start + API_POLL;
    while Instant::now() < end {
        tokio::time::sleep_until(next_poll.min(end).into()).await;
        if let Some(api) = &opts.api {
            if Instant::now() >= next_poll || Instant::now() >= end {
                match fetch_detail(api, &url).await {
                    Ok(s) => samples.push(s),
                    Err(e) => api_error = Some(format!("{e:#}")),
                }
                next_poll += API_POLL;
            }
        } else {
            next_poll = end;
        }
    }
    let _ = done_tx.send(true);
    let _ = stop_tx.send(true);
    let report = probe_task.await.map_err(|e| anyhow!("probe task: {e}"))?;
    if report.ready_at.is_none() {
        bail!(
            "could not play {url}: {}",
            report.error.as_deref().unwrap_or("no Play.Start")
        );
    }
    if !report.frames.iter().any(|f| f.coded) {
        bail!(
            "no media received from {url} in {:?}: is anyone publishing?",
            opts.duration
        );
    }

    let mut info = RunInfo {
        link: OBSERVED_LABEL.into(),
        publisher: format!(
            "observed ({})",
            report
                .metadata
                .as_ref()
                .and_then(|m| m.encoder.clone())
                .unwrap_or_else(|| "encoder not named".into())
        ),
        server: match &opts.api {
            Some(api) => format!("{url} (ingest record from {api})"),
            None => format!("{url} (arrival at the server not observed: no --api)"),
        },
        url: url.to_string(),
        players: 1,
        ..RunInfo::default()
    };
    if let Some(e) = &report.error {
        info.probe_errors.push(format!("probe 0: {e}"));
    }
    if let Some(e) = api_error {
        info.notes.push(format!("API: {e}"));
    }
    let ingest = samples.last().map(|s| s.detail.clone());
    let (scenario, mut notes) = infer(&opts.base, &report, ingest.as_ref());
    info.notes.append(&mut notes);
    info.notes.push(
        "the publisher's send times are not observable: send→arrival and publisher→server \
         cannot be compared"
            .into(),
    );
    let simulated = super::simulate(&scenario)?;
    let measured = measured_trace(&scenario, &simulated, &report, &samples);
    let comparison = compare(&simulated, &measured);
    Ok(Outcome {
        scenario,
        simulated,
        measured,
        comparison,
        info,
    })
}

/// Snaps a measured frame rate to a standard one within 1 %.
fn standard_fps(fps: f64) -> f64 {
    const STANDARD: [f64; 8] = [
        24000.0 / 1001.0,
        24.0,
        25.0,
        30000.0 / 1001.0,
        30.0,
        50.0,
        60000.0 / 1001.0,
        60.0,
    ];
    STANDARD
        .iter()
        .copied()
        .map(|s| (s, (fps / s - 1.0).abs()))
        .filter(|(_, rel)| *rel < 0.01)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(fps, |(s, _)| s)
}

/// The scenario the recorded stream implies (see the module docs); and notes on each guess.
pub fn infer(
    base: &Scenario,
    r: &ProbeReport,
    ingest: Option<&StreamDetail>,
) -> (Scenario, Vec<String>) {
    let mut s = base.clone();
    let mut notes = Vec::new();
    s.name = format!("observed ({})", base.name);
    s.description = "Inferred by rtmp-lab experiment --observe from a live stream.".into();
    let meta = r.metadata.clone().unwrap_or_default();
    let stats = ingest.map(|d| &d.summary.ingest);
    let video: Vec<_> = r
        .frames
        .iter()
        .filter(|f| f.coded && f.kind == MediaKind::Video)
        .collect();
    let audio: Vec<_> = r
        .frames
        .iter()
        .filter(|f| f.coded && f.kind == MediaKind::Audio)
        .collect();
    let span_s = |fs: &[&probe::ProbeFrame]| -> Option<f64> {
        let first = fs.first()?.timestamp_ms;
        let last = fs.last()?.timestamp_ms;
        (last > first).then(|| f64::from(last - first) / 1e3)
    };

    let dim = |m: Option<f64>, i: Option<u32>| {
        m.filter(|v| *v >= 16.0 && *v <= 16384.0)
            .map(|v| v as u32)
            .or(i)
    };
    match (
        dim(meta.width, stats.and_then(|s| s.width)),
        dim(meta.height, stats.and_then(|s| s.height)),
    ) {
        (Some(w), Some(h)) => {
            s.encoder.width = w;
            s.encoder.height = h;
        }
        _ => notes.push("resolution unknown (no metadata): the base scenario's".into()),
    }
    let measured_fps = span_s(&video).map(|d| (video.len() - 1) as f64 / d);
    let fps = meta
        .framerate
        .filter(|f| (1.0..=240.0).contains(f))
        .or(measured_fps.filter(|f| (1.0..=240.0).contains(f)));
    match fps {
        Some(f) => s.encoder.fps = standard_fps(f),
        None => notes.push("frame rate unknown: the base scenario's".into()),
    }
    let fps = s.encoder.fps;
    let measured_kbps = span_s(&video)
        .map(|d| video.iter().map(|f| f64::from(f.size_bytes)).sum::<f64>() * 8.0 / d / 1e3);
    let kbps = meta
        .videodatarate
        .filter(|v| *v > 0.0 && v.is_finite())
        .or(measured_kbps);
    if let Some(k) = kbps {
        s.rate_control.mode = RateControlMode::Cbr;
        s.rate_control.bitrate_kbps = k.clamp(1.0, 1_000_000.0);
        s.rate_control.max_rate_kbps = 0.0;
        s.rate_control.vbv_buffer_kbits = s.rate_control.bitrate_kbps;
        notes.push(format!(
            "rate control assumed CBR {:.0} kb/s with a 1 s VBV ({}); RTMP does not carry the VBV",
            s.rate_control.bitrate_kbps,
            if meta.videodatarate.is_some() {
                "declared videodatarate"
            } else {
                "measured mean"
            }
        ));
    }
    let keys: Vec<u32> = video
        .iter()
        .filter(|f| f.keyframe)
        .map(|f| f.timestamp_ms)
        .collect();
    let key_interval_s = if keys.len() >= 2 {
        Some(f64::from(keys[keys.len() - 1] - keys[0]) / 1e3 / (keys.len() - 1) as f64)
    } else {
        stats.and_then(|s| s.keyframe_interval_s)
    };
    match key_interval_s {
        Some(k) if k > 0.0 => {
            s.encoder.keyframe_interval_frames = ((k * fps).round() as u32).clamp(1, 100_000);
        }
        _ => notes.push(
            "keyframe interval unknown (fewer than two keyframes seen): the base scenario's".into(),
        ),
    }
    // A keyframe's composition offset is the reorder delay s (1 frame; 2 with x264's
    // B-pyramid), a P-frame after m B-frames has s + m.
    let period_ms = 1e3 / fps;
    let frames_of = |cts: i32| (f64::from(cts) / period_ms).round() as i64;
    let max_cts = video.iter().map(|f| f.composition_ms).max().unwrap_or(0);
    let reorder = video
        .iter()
        .find(|f| f.keyframe)
        .map_or(1, |f| frames_of(f.composition_ms).max(1));
    s.encoder.bframes = if max_cts > 0 {
        (frames_of(max_cts) - reorder).clamp(1, 16) as u32
    } else {
        0
    };
    s.audio.enabled = !audio.is_empty();
    if s.audio.enabled {
        if let Some(rate) = meta
            .audiosamplerate
            .filter(|r| (8000.0..=192_000.0).contains(r))
        {
            s.audio.sample_rate_hz = rate as u32;
        }
        let measured = span_s(&audio)
            .map(|d| audio.iter().map(|f| f64::from(f.size_bytes)).sum::<f64>() * 8.0 / d / 1e3);
        if let Some(k) = meta
            .audiodatarate
            .filter(|v| *v > 0.0 && v.is_finite())
            .or(measured)
        {
            s.audio.bitrate_kbps = k.clamp(1.0, 2000.0);
        }
    }
    // Stream time covered, and when the probe joined in stream time: the stream's time 0 on
    // our clock is (arrival − timestamp) of the fastest frame.
    let last_ts = r
        .frames
        .iter()
        .filter(|f| f.coded)
        .map(|f| f.timestamp_ms)
        .max()
        .unwrap_or(0);
    s.duration_s = (f64::from(last_ts) / 1e3 + 1.0 / fps).max(1.0);
    let t0 = publish_setup(&s);
    if let (Some(zero), Some(joined)) = (stream_zero(r), r.joined_at) {
        let join_stream_s = joined.saturating_duration_since(zero).as_secs_f64();
        s.players.count = 1;
        s.players.join_spread_s = 0.0;
        s.players.join_at_s = t0.as_secs_f64() + join_stream_s;
    }
    (s, notes)
}

/// The simulated publish set-up (when capture starts), as the engine computes it.
fn publish_setup(s: &Scenario) -> Micros {
    rtmp::startup_on_paths(
        SessionKind::Publish,
        &s.uplink,
        &s.uplink.clean_reverse(),
        s.rtmp.server_processing(),
        s.publisher_tcp.fast_open,
    )
    .total
}

/// The instant of stream time 0 for the fastest-arriving frame.
fn stream_zero(r: &ProbeReport) -> Option<Instant> {
    r.frames
        .iter()
        .filter(|f| f.coded)
        .filter_map(|f| {
            f.at.checked_sub(Duration::from_millis(u64::from(f.timestamp_ms)))
        })
        .min()
}

/// The publish start on our clock and the server's arrival per (kind, timestamp), from the
/// API samples.
fn server_arrivals(samples: &[ApiSample]) -> (Option<Instant>, HashMap<(MediaKind, u32), u64>) {
    let mut arrivals = HashMap::new();
    let mut publish_start = None;
    for s in samples {
        if let Some(p) = &s.detail.summary.publisher {
            // The server read its uptime after our request left: the publish started no
            // earlier than (request sent − uptime); the latest such bound is the tightest.
            let bound =
                s.at.checked_sub(Duration::from_secs_f64(p.uptime_s.max(0.0)));
            publish_start = publish_start.max(bound);
        }
        for f in &s.detail.frames {
            if !matches!(f.frame_type, FrameClass::Key | FrameClass::Inter) {
                continue;
            }
            let kind = match f.kind {
                FrameKind::Video => MediaKind::Video,
                FrameKind::Audio => MediaKind::Audio,
            };
            arrivals
                .entry((kind, f.timestamp_ms))
                .or_insert(f.arrival_us);
        }
    }
    (publish_start, arrivals)
}

fn measured_trace(s: &Scenario, sim: &Trace, r: &ProbeReport, samples: &[ApiSample]) -> Trace {
    let t0 = Duration::from_micros(sim.startup.publisher.total.0);
    let (publish_start, server) = server_arrivals(samples);
    let zero = publish_start
        .or_else(|| stream_zero(r))
        .unwrap_or_else(|| r.joined_at.unwrap_or_else(Instant::now));
    let origin = zero.checked_sub(t0).unwrap_or(zero);
    let at = |t: Instant| since(origin, t);
    let video_period = 1e6 / s.encoder.fps;
    let audio_period =
        f64::from(s.audio.samples_per_frame) * 1e6 / f64::from(s.audio.sample_rate_hz.max(1));
    let period = |kind: MediaKind| match kind {
        MediaKind::Video => video_period,
        _ => audio_period,
    };
    let phases = [MediaKind::Video, MediaKind::Audio].map(|kind| {
        grid_phase(
            r.frames
                .iter()
                .filter(|f| f.coded && f.kind == kind)
                .map(|f| Micros::from_ms(u64::from(f.timestamp_ms))),
            period(kind),
        )
    });
    let on_grid = |ms: u64, kind: MediaKind, slot: usize| {
        let shifted = (Micros::from_ms(ms).0 as f64 - phases[slot])
            .round()
            .max(0.0) as u64;
        snap(Micros(shifted), period(kind))
    };
    let mut counters = [0u64; 2];
    let mut frames = Vec::new();
    for f in r.frames.iter().filter(|f| f.coded) {
        let slot = usize::from(f.kind != MediaKind::Video);
        let index = counters[slot];
        counters[slot] += 1;
        let dts = on_grid(u64::from(f.timestamp_ms), f.kind, slot);
        let pts_ms = (i64::from(f.timestamp_ms) + i64::from(f.composition_ms)).max(0) as u64;
        let server_arrival = publish_start.and_then(|p| {
            server
                .get(&(f.kind, f.timestamp_ms))
                .map(|us| at(p + Duration::from_micros(*us)))
        });
        frames.push(FrameRecord {
            kind: f.kind,
            index,
            frame_type: f.frame_type,
            keyframe: f.keyframe,
            size_bytes: f.size_bytes,
            dts_us: dts,
            pts_us: on_grid(pts_ms, f.kind, slot),
            captured_us: None,
            capture_done_us: None,
            encoded_us: None,
            sent_us: None,
            first_departure_us: None,
            server_arrival_us: server_arrival,
            server_departure_us: None,
            player_arrival_us: Some(at(f.at)),
            decode_start_us: None,
            played_us: None,
            dropped: None,
        });
    }
    let zero_breakdown = super::client::SetupTimes::default().breakdown();
    // The stream time recorded (rates are over it).
    let first = frames
        .iter()
        .map(|f| f.dts_us)
        .min()
        .unwrap_or(Micros::ZERO);
    let last = frames
        .iter()
        .map(|f| f.dts_us)
        .max()
        .unwrap_or(Micros::ZERO);
    let recorded = Micros((last.0 - first.0).max(1) + (video_period as u64).max(1));
    Trace {
        scenario: s.name.clone(),
        seed: s.seed,
        source: "measured".into(),
        duration_us: recorded,
        frames,
        startup: Startup {
            publisher: zero_breakdown,
            player: r.setup.breakdown(),
            player_join_us: r.joined_at.map_or(Micros::ZERO, at),
            player_ready_us: r.ready_at.map(at),
            first_keyframe_arrival_us: r.first_keyframe_at().map(at),
            first_frame_played_us: None,
        },
        vbv: Series::new("vbv fullness", "bits"),
        send_queue: Series::new("publisher socket backlog", "bytes"),
        player_buffer: Series::new("player buffer", "ms"),
        rebuffers: Vec::new(),
        audience: Default::default(),
        uplink_capacity_kbps: 0.0,
    }
}

/// GET `{api}/api/streams/{app}/{key}` (plain HTTP/1.1, `Connection: close`).
async fn fetch_detail(api: &str, url: &RtmpUrl) -> Result<ApiSample> {
    let rest = api
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--api {api:?}: expected http://host:port"))?
        .trim_end_matches('/');
    let (authority, prefix) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, String::new()),
    };
    let addr = tokio::net::lookup_host(if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
    .await
    .with_context(|| format!("while resolving {authority}"))?
    .next()
    .ok_or_else(|| anyhow!("{authority} has no address"))?;
    let path = format!("{prefix}/api/streams/{}/{}", url.app, url.stream_name());
    let sent = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(5), async {
        let mut sock = tokio::net::TcpStream::connect(addr).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n\
             Connection: close\r\n\r\n"
        );
        sock.write_all(req.as_bytes()).await?;
        let mut body = Vec::new();
        (&mut sock)
            .take(MAX_API_RESPONSE_BYTES as u64)
            .read_to_end(&mut body)
            .await?;
        Ok::<Vec<u8>, std::io::Error>(body)
    })
    .await
    .map_err(|_| anyhow!("GET {api}{path}: timed out"))?
    .with_context(|| format!("GET {api}{path}"))?;
    let at = sent;
    let body = http_body(&response).with_context(|| format!("GET {api}{path}"))?;
    let detail: StreamDetail =
        serde_json::from_slice(&body).with_context(|| format!("GET {api}{path}: not JSON"))?;
    Ok(ApiSample { at, detail })
}

/// The body of a complete HTTP/1.1 response; fails on a status other than 200.
fn http_body(response: &[u8]) -> Result<Vec<u8>> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("HTTP {status} (is the stream published to that server?)");
    }
    let body = &response[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("malformed chunked body"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| anyhow!("malformed chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_snap_to_standard_ones() {
        assert_eq!(standard_fps(29.9), 30000.0 / 1001.0);
        assert_eq!(standard_fps(30.0), 30.0);
        assert_eq!(standard_fps(30.2), 30.0);
        assert_eq!(standard_fps(45.0), 45.0);
    }

    #[test]
    fn http_bodies_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(http_body(plain).unwrap(), b"{}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"}");
        assert!(http_body(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    }

    #[test]
    fn inference_from_a_recorded_stream() {
        use super::super::probe::ProbeFrame;
        use crate::protocol::command::MetadataFields;
        let now = Instant::now();
        let mut r = ProbeReport {
            joined_at: Some(now),
            ready_at: Some(now),
            metadata: Some(MetadataFields {
                width: Some(1280.0),
                height: Some(720.0),
                framerate: Some(30.0),
                videodatarate: Some(2500.0),
                audiodatarate: Some(128.0),
                audiosamplerate: Some(44100.0),
                ..MetadataFields::default()
            }),
            ..ProbeReport::default()
        };
        for i in 0..300u32 {
            let ts = i * 1000 / 30;
            r.frames.push(ProbeFrame {
                kind: MediaKind::Video,
                timestamp_ms: 10_000 + ts,
                coded: true,
                keyframe: i % 60 == 0,
                composition_ms: match i % 4 {
                    _ if i % 60 == 0 => 67,
                    1 => 167,
                    _ => 33,
                },
                size_bytes: 10_000,
                frame_type: None,
                at: now + Duration::from_millis(u64::from(ts) + 50),
            });
        }
        r.frames.push(ProbeFrame {
            kind: MediaKind::Audio,
            timestamp_ms: 10_000,
            coded: true,
            keyframe: false,
            composition_ms: 0,
            size_bytes: 300,
            frame_type: None,
            at: now,
        });
        let base = sim_core::scenario::preset("lan").unwrap();
        let (s, _notes) = infer(&base, &r, None);
        assert_eq!((s.encoder.width, s.encoder.height), (1280, 720));
        assert_eq!(s.encoder.fps, 30.0);
        assert_eq!(s.rate_control.bitrate_kbps, 2500.0);
        assert_eq!(s.encoder.keyframe_interval_frames, 60);
        assert_eq!(
            s.encoder.bframes, 3,
            "P at 5 frames, keyframe at 2 (B-pyramid)"
        );
        assert!(s.audio.enabled);
        assert_eq!(s.audio.sample_rate_hz, 44100);
        // The stream started ~10 s before the probe joined.
        assert!(
            (s.players.join_at_s - 10.0).abs() < 0.2,
            "{}",
            s.players.join_at_s
        );
        assert!(s.validate().is_ok());
    }
}
