//! Turns what the publisher, the server's arrival tap and the player probes recorded into a
//! [`Trace`] in the simulator's format (`source: "measured"`), with what could not be
//! observed left `None`.
//!
//! Times are µs since the experiment's origin (the instant the publisher started connecting,
//! which is the simulator's time 0). Frames are identified across the three vantage points by
//! (kind, RTMP timestamp), in order for repeated timestamps.
//!
//! | field | measured as |
//! |---|---|
//! | `captured_us` | replay: the simulated value (replayed); ffmpeg: estimated, FLV header + pts (see [`super::source`]) |
//! | `capture_done_us` | replay: simulated; ffmpeg: not observable |
//! | `encoded_us` | replay: simulated; ffmpeg: the tag was read from ffmpeg's pipe |
//! | `sent_us` | the publisher's `write()` started |
//! | `first_departure_us` | not observable (it would need a packet capture) |
//! | `server_arrival_us` | the in-process server read the message's last byte (its arrival tap); `None` with `--url` |
//! | `server_departure_us` | not observable |
//! | `player_arrival_us` | probe 0 read the message's last byte |
//! | `decode_start_us`, `played_us` | not observable: the probes do not decode |
//!
//! Stream timestamps: a replay carries the simulated µs values; ffmpeg's whole-millisecond FLV
//! timestamps are moved onto the scenario's frame grid (video: 1/fps; audio: samples per frame
//! / sample rate) — each track shifted by its median offset from the grid (ffmpeg delays every
//! track by the video's B-frame reorder delay, which leaves audio off its grid), then snapped
//! to the nearest grid point within a millisecond — so they align with the simulated frames
//! (`sim_core::trace::compare` keys on whole milliseconds).
//!
//! Drops of probe 0 are inferred: a frame that never arrived was `before_join` if it was sent
//! before the probe's `Play.Start`, `waiting_for_keyframe` if it precedes the first keyframe the
//! probe got, `server_queue` if frames sent after it did arrive (TCP does not lose data, so
//! only the server's queue can have dropped it), else `in_flight` (still on its way when the
//! probe stopped).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use sim_core::rate_control::{RateControlMode, VbvBuffer, VbvOverflow};
use sim_core::scenario::Scenario;
use sim_core::server::MediaKind;
use sim_core::trace::{
    AudienceSummary, DropSite, FrameRecord, Percentiles, Series, Startup, Trace,
};
use sim_core::Micros;

use super::probe::ProbeReport;
use super::publisher::{PublisherReport, SentFrame};
use crate::serve::relay::Arrival;

/// Everything the measured trace is built from.
pub struct Inputs<'a> {
    pub scenario: &'a Scenario,
    pub origin: Instant,
    pub publisher: &'a PublisherReport,
    pub probes: &'a [ProbeReport],
    /// `None`: the server is not ours (`--url`), arrival there is unknown.
    pub server_arrivals: Option<&'a [Arrival]>,
    /// ffmpeg: when its FLV header came out of the pipe.
    pub capture_anchor: Option<Instant>,
    /// Replay: the simulated VBV series (the frames are the simulator's).
    pub replayed_vbv: Option<Series>,
    /// Messages the server dropped for slow players (in-process server only).
    pub server_dropped_messages: Option<u64>,
    /// Bytes the server wrote to players (in-process server only).
    pub server_egress_bytes: Option<u64>,
    pub uplink_capacity_kbps: f64,
}

/// µs from `origin` to `t` (0 if earlier).
pub fn since(origin: Instant, t: Instant) -> Micros {
    Micros(u64::try_from(t.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX))
}

/// Snaps `us` to the nearest multiple of `period_us` (rounded to whole µs as the simulator
/// does) when it lies within 1 ms of it.
pub fn snap(us: Micros, period_us: f64) -> Micros {
    if !(period_us.is_finite() && period_us > 1.0) {
        return us;
    }
    let k = (us.0 as f64 / period_us).round();
    let grid = (k * period_us + 0.5).floor().max(0.0) as u64;
    if grid.abs_diff(us.0) <= 1000 {
        Micros(grid)
    } else {
        us
    }
}

/// The offset (µs, in (−period/2, period/2]) of a track's timestamps from the grid of
/// `period`: the median over its frames. ffmpeg shifts every track by the video's B-frame delay
/// so that no timestamp is negative, which puts audio off its 1024-sample grid.
pub fn grid_phase(dts: impl Iterator<Item = Micros>, period_us: f64) -> f64 {
    if !(period_us.is_finite() && period_us > 1.0) {
        return 0.0;
    }
    let mut offsets: Vec<f64> = dts
        .map(|d| {
            let x = d.0 as f64;
            x - (x / period_us).round() * period_us
        })
        .collect();
    if offsets.is_empty() {
        return 0.0;
    }
    offsets.sort_by(f64::total_cmp);
    offsets[offsets.len() / 2]
}

/// `t − phase`, at least 0.
fn shift(t: Micros, phase: f64) -> Micros {
    Micros((t.0 as f64 - phase).round().max(0.0) as u64)
}

type Key = (MediaKind, u32);

/// Arrivals by (kind, timestamp), in order.
fn index_by_key<T: Copy>(items: impl Iterator<Item = (Key, T)>) -> HashMap<Key, VecDeque<T>> {
    let mut map: HashMap<Key, VecDeque<T>> = HashMap::new();
    for (k, v) in items {
        map.entry(k).or_default().push_back(v);
    }
    map
}

fn kind_slot(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Video => 0,
        _ => 1,
    }
}

/// The measured trace (see the module docs).
pub fn trace(inp: &Inputs<'_>) -> Trace {
    let s = inp.scenario;
    let at = |t: Instant| since(inp.origin, t);
    let video_period = 1e6 / s.encoder.fps;
    let audio_period =
        f64::from(s.audio.samples_per_frame) * 1e6 / f64::from(s.audio.sample_rate_hz.max(1));
    let period = |kind: MediaKind| match kind {
        MediaKind::Video => video_period,
        _ => audio_period,
    };
    // Stream timestamps, snapped for ffmpeg (each track re-phased onto its grid first).
    let phases = [MediaKind::Video, MediaKind::Audio].map(|kind| {
        grid_phase(
            inp.publisher
                .frames
                .iter()
                .filter(|f| f.kind == kind && f.meta.replayed.is_none())
                .map(|f| f.meta.dts_us),
            period(kind),
        )
    });
    let stamps: Vec<(Micros, Micros)> = inp
        .publisher
        .frames
        .iter()
        .map(|f| {
            if f.meta.replayed.is_some() {
                (f.meta.dts_us, f.meta.pts_us)
            } else {
                let p = period(f.kind);
                let phase = phases[kind_slot(f.kind)];
                (
                    snap(shift(f.meta.dts_us, phase), p),
                    snap(shift(f.meta.pts_us, phase), p),
                )
            }
        })
        .collect();
    // ffmpeg capture estimate: anchor + pts after the first frame of the track.
    let mut first_pts = [None::<Micros>; 2];
    for (f, (_, pts)) in inp.publisher.frames.iter().zip(&stamps) {
        let slot = &mut first_pts[kind_slot(f.kind)];
        *slot = Some(slot.map_or(*pts, |p: Micros| p.min(*pts)));
    }

    let mut server = inp.server_arrivals.map(|arrivals| {
        index_by_key(
            arrivals
                .iter()
                .filter(|a| !a.sequence_header)
                .map(|a| ((a.kind, a.timestamp_ms), a.at)),
        )
    });
    let probe0 = inp.probes.first();
    let mut player = index_by_key(
        probe0
            .into_iter()
            .flat_map(|p| p.frames.iter())
            .filter(|f| f.coded)
            .map(|f| ((f.kind, f.timestamp_ms), f.at)),
    );
    let ready = probe0.and_then(|p| p.ready_at);
    let first_key_ts = probe0.and_then(|p| {
        p.frames
            .iter()
            .find(|f| f.kind == MediaKind::Video && f.coded && f.keyframe)
            .map(|f| f.timestamp_ms)
    });
    // The probe's last arrival: frames sent after it were still on their way at the end.
    let last_arrival = probe0.and_then(|p| p.frames.iter().map(|f| f.at).max());

    let mut frames = Vec::with_capacity(inp.publisher.frames.len());
    for (f, (dts, pts)) in inp.publisher.frames.iter().zip(&stamps) {
        let key = (f.kind, f.timestamp_ms);
        let (captured, capture_done, encoded) = match &f.meta.replayed {
            Some(r) => (r.captured_us, r.capture_done_us, r.encoded_us),
            None => {
                let captured = inp
                    .capture_anchor
                    .zip(first_pts[kind_slot(f.kind)])
                    .map(|(anchor, first)| Micros(at(anchor).0 + pts.0.saturating_sub(first.0)));
                (captured, None, Some(at(f.ready_at)))
            }
        };
        let server_arrival = server
            .as_mut()
            .and_then(|m| m.get_mut(&key))
            .and_then(|q| q.pop_front())
            .map(at);
        let player_arrival = player.get_mut(&key).and_then(|q| q.pop_front()).map(at);
        let dropped = match player_arrival {
            Some(_) => None,
            None => Some(drop_site(f, ready, first_key_ts, last_arrival)),
        };
        frames.push(FrameRecord {
            kind: f.kind,
            index: f.meta.index,
            frame_type: f.meta.frame_type,
            keyframe: f.meta.keyframe,
            size_bytes: f.meta.size_bytes,
            dts_us: *dts,
            pts_us: *pts,
            captured_us: captured,
            capture_done_us: capture_done,
            encoded_us: encoded,
            sent_us: Some(at(f.write_start)),
            first_departure_us: None,
            server_arrival_us: server_arrival,
            server_departure_us: None,
            player_arrival_us: player_arrival,
            decode_start_us: None,
            played_us: None,
            dropped,
        });
    }

    let vbv = inp
        .replayed_vbv
        .clone()
        .unwrap_or_else(|| vbv_series(s, &inp.publisher.frames, inp.origin));
    let mut send_queue = Series::new("publisher socket unacknowledged bytes", "bytes");
    for (t, q) in &inp.publisher.send_queue {
        send_queue.push(at(*t), *q as f64);
    }
    Trace {
        scenario: s.name.clone(),
        seed: s.seed,
        source: "measured".into(),
        duration_us: Micros::from_secs_f64(s.duration_s),
        frames,
        startup: startup(inp, probe0),
        vbv,
        send_queue,
        player_buffer: Series::new("player buffer", "ms"),
        rebuffers: Vec::new(),
        audience: audience(inp),
        uplink_capacity_kbps: inp.uplink_capacity_kbps,
    }
}

fn drop_site(
    f: &SentFrame,
    ready: Option<Instant>,
    first_key_ts: Option<u32>,
    last_arrival: Option<Instant>,
) -> DropSite {
    match ready {
        None => DropSite::BeforeJoin,
        Some(r) if f.write_start < r => DropSite::BeforeJoin,
        Some(_) => match first_key_ts {
            Some(k) if f.timestamp_ms >= k => match last_arrival {
                // Later frames got through: the server's queue dropped this one.
                Some(last) if f.write_start < last => DropSite::ServerQueue,
                _ => DropSite::InFlight,
            },
            _ => DropSite::WaitingForKeyframe,
        },
    }
}

fn startup(inp: &Inputs<'_>, probe0: Option<&ProbeReport>) -> Startup {
    let at = |t: Instant| since(inp.origin, t);
    let zero = super::client::SetupTimes::default().breakdown();
    Startup {
        publisher: inp.publisher.setup.breakdown(),
        player: probe0.map_or(zero, |p| p.setup.breakdown()),
        player_join_us: probe0.and_then(|p| p.joined_at).map_or(Micros::ZERO, at),
        player_ready_us: probe0.and_then(|p| p.ready_at).map(at),
        first_keyframe_arrival_us: probe0.and_then(|p| p.first_keyframe_at()).map(at),
        first_frame_played_us: None,
    }
}

/// Delivery latency (publisher write → player arrival) over every probe's frames.
fn audience(inp: &Inputs<'_>) -> AudienceSummary {
    let sent = index_by_key(
        inp.publisher
            .frames
            .iter()
            .map(|f| ((f.kind, f.timestamp_ms), f.write_start)),
    );
    let mut latencies = Vec::new();
    let mut bytes = 0u64;
    for p in inp.probes {
        bytes += p.bytes;
        let mut seen: HashMap<Key, usize> = HashMap::new();
        for f in p.frames.iter().filter(|f| f.coded) {
            let key = (f.kind, f.timestamp_ms);
            let n = seen.entry(key).or_default();
            if let Some(w) = sent.get(&key).and_then(|q| q.get(*n)) {
                latencies.push(f.at.saturating_duration_since(*w).as_secs_f64() * 1e3);
            }
            *n += 1;
        }
    }
    let delivered = latencies.len() as u64;
    AudienceSummary {
        players: inp.probes.len() as u32,
        disconnected: inp.probes.iter().filter(|p| p.error.is_some()).count() as u32,
        delivery_latency: Percentiles::of(&mut latencies),
        glass_to_glass: None,
        frames_delivered: delivered,
        frames_dropped_server: inp.server_dropped_messages.unwrap_or(0),
        rebuffer_count: 0,
        egress_bytes: inp.server_egress_bytes.unwrap_or(bytes),
    }
}

/// VBV fullness over the real video frames with the scenario's VBV (what x264 was told), at
/// each frame's stream time, recorded when the frame came out of the encoder.
fn vbv_series(s: &Scenario, frames: &[SentFrame], origin: Instant) -> Series {
    let mut series = Series::new("vbv fullness", "bits");
    let rc = &s.rate_control;
    if rc.vbv_buffer_kbits <= 0.0 || rc.mode == RateControlMode::Cqp {
        return series;
    }
    let rate = if rc.max_rate_kbps > 0.0 {
        rc.max_rate_kbps
    } else {
        rc.bitrate_kbps
    };
    let overflow = if rc.mode == RateControlMode::Cbr && rc.filler {
        VbvOverflow::Filler
    } else {
        VbvOverflow::Clip
    };
    let mut vbv = VbvBuffer::new(rc.vbv_buffer_kbits * 1e3, rate * 1e3, rc.vbv_init, overflow);
    for f in frames.iter().filter(|f| f.kind == MediaKind::Video) {
        let step = vbv.on_frame(f.meta.dts_us, f64::from(f.meta.size_bytes) * 8.0);
        series.push(since(origin, f.ready_at), step.fullness_after_bits);
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapping_to_the_frame_grid() {
        let p = 1e6 / 30.0;
        assert_eq!(snap(Micros(67_000), p), Micros(66_667));
        assert_eq!(snap(Micros(33_000), p), Micros(33_333));
        assert_eq!(snap(Micros(0), p), Micros(0));
        // 48 kHz AAC: 21.333 ms.
        assert_eq!(snap(Micros(21_000), 1024e6 / 48e3), Micros(21_333));
        // More than 1 ms off the grid: kept.
        assert_eq!(snap(Micros(50_000), p), Micros(50_000));
        // The key `compare` uses (whole ms) then matches the simulator's.
        assert_eq!(snap(Micros(67_000), p).0 / 1000, 66);
    }

    #[test]
    fn off_grid_tracks_are_rephased() {
        // AAC at 48 kHz shifted by 46 ms (as ffmpeg writes it behind 3 B-frames).
        let period = 1024e6 / 48e3;
        let dts: Vec<Micros> = (0..50)
            .map(|k| Micros::from_ms((46.0 + k as f64 * period / 1e3).round() as u64))
            .collect();
        let phase = grid_phase(dts.iter().copied(), period);
        assert!((phase - 3_333.0).abs() < 700.0, "{phase}");
        for (k, d) in dts.iter().enumerate() {
            let s = snap(shift(*d, phase), period);
            assert_eq!(s.0, ((k as f64 + 2.0) * period + 0.5).floor() as u64);
        }
        assert_eq!(grid_phase(std::iter::empty(), period), 0.0);
    }
}
