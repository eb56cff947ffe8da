//! The discrete-event engine: runs a [`Scenario`] and returns a [`Trace`].
//!
//! What happens, in wall time from 0 (the publisher starts connecting):
//!
//! 1. **Publisher** ([`Publisher`]). After the RTMP publish set-up ([`rtmp::publish_startup`]) the
//!    capture starts. The video [`Encoder`] and [`AudioEncoder`] produce frames; like OBS's and
//!    FFmpeg's muxers, the publisher interleaves them by timestamp, so a packet is written only
//!    once the other stream has produced a later one (audio therefore inherits the video
//!    encoder's pipeline delay). Before each write the [`FrameDropper`] (OBS's 700/900 ms rule)
//!    looks at the socket backlog; then the message, chunked at the publisher's chunk size, goes
//!    into the uplink [`TcpPath`], which says when its last byte reaches the server.
//! 2. **Server**. Messages reach the server in order (TCP). Each passes the [`GopCache`] and is
//!    offered to every ready player's [`SubscriberQueue`]; a queue is flushed at once, or at the
//!    end of its coalescing window, into that player's downlink `TcpPath` as long as the socket's
//!    send buffer has room.
//! 3. **Players** join at scheduled times, pay the play set-up round trips
//!    ([`rtmp::play_startup`]), get the join burst (headers, cached GOP) and then live data; each
//!    [`Player`] decides when every frame is shown.
//!
//! The event queue holds the players' joins and answered play requests; server arrivals come from
//! the publisher in order and are merged with it; a player's flushes (coalescing window, full
//! socket) are kept with the player. Players never interact, so the engine runs each one through a
//! batch of arrivals before the next ([`Engine::step`]): each sees its events in time order, and
//! the audience statistics are sums. Every decision is made by the same state machines the real
//! server runs; the engine only moves time forward. Deterministic: same scenario and seed → same
//! trace, on every platform.
//!
//! **Cost.** The fan-out dominates: every frame reaches every player. The common case — nothing
//! queued for the player, its socket has room — skips the round trip through the queue
//! ([`SubscriberQueue::pass_through`]), costs the write once for all the identical downlinks
//! ([`TcpPath::prepare`]), works out each write's jitter one message ahead
//! ([`TcpPath::jitter_ahead`]) and lets the player take the frame on its steady-playback path;
//! each shortcut is checked against the general path by a property test. About 50 ns per
//! player-frame on the lab's machine (issue #2's benchmark, README "Performance").
//!
//! The engine is resumable ([`Engine::step`]) so a caller (the browser lab, a progress bar) can
//! run a long scenario in slices.

use crate::encoder::{AudioEncoder, AudioFrame, EncodedFrame, Encoder};
use crate::net::{JitterAhead, PreparedWrite, TcpPath};
use crate::player::{PlayOutcome, Player};
use crate::rate_control::{DropDecision, FrameDropper};
use crate::rng::{streams, SimRng};
use crate::rtmp::{self, HeaderForm, SessionKind};
use crate::scenario::Scenario;
use crate::server::{DropReason, GopCache, MediaInfo, MediaKind, PushOutcome, SubscriberQueue};
use crate::trace::{
    AudienceSummary, DropSite, FrameRecord, LatencyHistogram, Series, Startup, Trace,
};
use crate::units::{transmission_time, Micros};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Linux's largest autotuned send buffer (tcp_wmem max, 4 MiB): how much a player's socket
/// accepts before the server's own queue has to hold data (MODELS §C "socket queue").
pub const SOCKET_SEND_BUFFER_BYTES: u64 = 4 * 1024 * 1024;

/// Sizes of the messages a publisher sends before media: `@setDataFrame onMetaData`, the AVC
/// decoder configuration record and the AAC AudioSpecificConfig (typical OBS values).
const METADATA_BYTES: u32 = 380;
const VIDEO_SEQUENCE_HEADER_BYTES: u32 = 48;
const AUDIO_SEQUENCE_HEADER_BYTES: u32 = 7;

/// No record for this message (sequence headers and metadata).
const NO_RECORD: u32 = u32::MAX;

/// One RTMP message as the engine tracks it.
#[derive(Debug, Clone)]
struct Msg {
    info: MediaInfo,
    pts: Micros,
    /// Written to the publisher's socket (wall time).
    written: Micros,
    /// Reached the server; `None` when the encoder dropped it.
    server_arrival: Option<Micros>,
    /// Index into the probe's records, or `NO_RECORD`.
    record: u32,
    /// Wall time of capture, for glass-to-glass over all players.
    captured: Micros,
    /// Bytes on the wire from the server to a player (same for every player).
    wire_down: u32,
}

/// A frame out of one of the two encoders, before interleaving.
enum Encoded {
    Video(EncodedFrame),
    Audio(AudioFrame),
}

impl Encoded {
    fn encoded_at(&self) -> Micros {
        match self {
            Encoded::Video(v) => v.encoded_at,
            Encoded::Audio(a) => a.encoded_at,
        }
    }
}

/// The publisher: encoders, interleaving, OBS-style dropping, the uplink socket.
struct Publisher {
    /// Wall time at which capture (stream time 0) starts.
    t0: Micros,
    /// Stream time at which capture stops.
    capture_end: Micros,
    video: Encoder,
    /// Capture + compositing before a picture reaches the encoder.
    capture_delay: Micros,
    audio: Option<AudioEncoder>,
    next_video: Option<EncodedFrame>,
    next_audio: Option<AudioFrame>,
    dropper: FrameDropper,
    uplink: TcpPath,
    chunk_size: u32,
    last_write: Micros,
    /// The next message, interleaved and timed but not yet written (for Nagle's look-ahead).
    candidate: Option<(Encoded, Micros)>,
    /// Headers still to send before media.
    headers_left: u8,
    video_index: u64,
    audio_index: u64,
    vbv: Series,
    send_queue: Series,
}

impl Publisher {
    fn new(s: &Scenario, t0: Micros) -> Self {
        let mut video = Encoder::new(&s.encoder, &s.rate_control, s.seed);
        let mut audio = s.audio.enabled.then(|| AudioEncoder::new(&s.audio));
        let next_video = Some(video.next_frame());
        let next_audio = audio.as_mut().map(|a| a.next_frame());
        let uplink = TcpPath::new(
            &s.uplink,
            &s.publisher_tcp,
            s.uplink.propagation_ms,
            SimRng::new(s.seed, streams::UPLINK),
        );
        Publisher {
            t0,
            capture_end: Micros::from_secs_f64(s.duration_s),
            capture_delay: video.pipeline_delay().capture,
            video,
            audio,
            next_video,
            next_audio,
            dropper: FrameDropper::new(&s.rate_control),
            uplink,
            chunk_size: s.rtmp.publisher_chunk_size,
            last_write: t0,
            candidate: None,
            headers_left: 3,
            video_index: 0,
            audio_index: 0,
            vbv: Series::new("vbv fullness", "bits"),
            send_queue: Series::new("publisher socket backlog", "bytes"),
        }
    }

    /// The next frame in interleaved (dts) order and its write time, or `None` once capture ended.
    fn interleave_next(&mut self) -> Option<(Encoded, Micros)> {
        let take_video = match (&self.next_video, &self.next_audio) {
            (Some(v), Some(a)) => v.dts <= a.pts,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let (frame, other_encoded) = if take_video {
            let v = self.next_video.take()?;
            if v.dts >= self.capture_end {
                // Capture ended: no more video; let audio drain up to the same point.
                self.next_video = None;
                return self.interleave_next_audio_only();
            }
            self.next_video = Some(self.video.next_frame());
            let other = self.next_audio.as_ref().map(|a| a.encoded_at);
            (Encoded::Video(v), other)
        } else {
            let a = self.next_audio.take()?;
            if a.captured_at >= self.capture_end {
                self.next_audio = None;
                return self.interleave_next();
            }
            self.next_audio = self.audio.as_mut().map(|e| e.next_frame());
            let other = self.next_video.as_ref().map(|v| v.encoded_at);
            (Encoded::Audio(a), other)
        };
        // A muxer writes a packet once the other stream has a later one (or has ended).
        let ready = frame
            .encoded_at()
            .max(other_encoded.unwrap_or(Micros::ZERO));
        let written = (self.t0 + ready).max(self.last_write);
        self.last_write = written;
        Some((frame, written))
    }

    fn interleave_next_audio_only(&mut self) -> Option<(Encoded, Micros)> {
        let a = self.next_audio.take()?;
        if a.captured_at >= self.capture_end {
            return None;
        }
        self.next_audio = self.audio.as_mut().map(|e| e.next_frame());
        let written = (self.t0 + a.encoded_at).max(self.last_write);
        self.last_write = written;
        Some((Encoded::Audio(a), written))
    }

    fn wire_bytes(&self, kind: MediaKind, payload: u32) -> u32 {
        wire_bytes(kind, payload, self.chunk_size)
    }

    /// Produces the next message (written and sent, or dropped by the encoder) and its record.
    fn next(&mut self) -> Option<(Msg, Option<FrameRecord>)> {
        if self.headers_left > 0 {
            let (kind, size, seq) = match self.headers_left {
                3 => (MediaKind::Data, METADATA_BYTES, false),
                2 => (MediaKind::Video, VIDEO_SEQUENCE_HEADER_BYTES, true),
                _ => (MediaKind::Audio, AUDIO_SEQUENCE_HEADER_BYTES, true),
            };
            self.headers_left -= 1;
            if kind == MediaKind::Audio && self.audio.is_none() {
                return self.next();
            }
            let info = MediaInfo {
                kind,
                keyframe: false,
                sequence_header: seq,
                timestamp: Micros::ZERO,
                size_bytes: size,
            };
            let d = self.uplink.send(self.t0, self.wire_bytes(kind, size), None);
            let msg = Msg {
                info,
                pts: Micros::ZERO,
                written: self.t0,
                server_arrival: Some(d.delivered_at),
                record: NO_RECORD,
                captured: self.t0,
                wire_down: 0,
            };
            return Some((msg, None));
        }

        let (frame, written) = match self.candidate.take() {
            Some(c) => c,
            None => self.interleave_next()?,
        };
        self.candidate = self.interleave_next();
        let next_write = self.candidate.as_ref().map(|(_, w)| *w);

        // What the frame is, whichever encoder made it.
        let (info, frame_type, pts, captured_at, capture_done_at, encoded_at, index) = match &frame
        {
            Encoded::Video(v) => {
                self.vbv.push(self.t0 + v.encoded_at, v.vbv_fullness_bits);
                self.video_index += 1;
                let info = MediaInfo {
                    kind: MediaKind::Video,
                    keyframe: v.keyframe,
                    sequence_header: false,
                    timestamp: v.dts,
                    size_bytes: v.size_bytes,
                };
                // (`min`: the two delays are rounded separately; the encoder never outputs a
                // frame before it has it.)
                let capture_done = (v.captured_at + self.capture_delay).min(v.encoded_at);
                let t = (v.pts, v.captured_at, v.encoded_at, self.video_index - 1);
                (info, Some(v.frame_type), t.0, t.1, capture_done, t.2, t.3)
            }
            Encoded::Audio(a) => {
                self.audio_index += 1;
                let info = MediaInfo {
                    kind: MediaKind::Audio,
                    keyframe: false,
                    sequence_header: false,
                    timestamp: a.pts,
                    size_bytes: a.size_bytes,
                };
                // Capture of an audio frame ends with its last sample; coding it takes no time
                // in the model.
                (
                    info,
                    None,
                    a.pts,
                    a.captured_at,
                    a.encoded_at,
                    a.encoded_at,
                    self.audio_index - 1,
                )
            }
        };
        let record = FrameRecord {
            kind: info.kind,
            index,
            frame_type,
            keyframe: info.keyframe,
            size_bytes: info.size_bytes,
            dts_us: info.timestamp,
            pts_us: pts,
            captured_us: Some(self.t0 + captured_at),
            capture_done_us: Some(self.t0 + capture_done_at),
            encoded_us: Some(self.t0 + encoded_at),
            sent_us: None,
            first_departure_us: None,
            server_arrival_us: None,
            server_departure_us: None,
            player_arrival_us: None,
            decode_start_us: None,
            played_us: None,
            dropped: None,
        };
        let mut rec = record;
        let decision = match &frame {
            Encoded::Video(v) => self.dropper.decide(
                self.uplink.backlog_duration(written),
                v.frame_type,
                v.keyframe,
            ),
            Encoded::Audio(_) => DropDecision::Send,
        };
        let server_arrival = match decision {
            DropDecision::Drop => {
                rec.dropped = Some(DropSite::Encoder);
                None
            }
            DropDecision::Send => {
                let bytes = self.wire_bytes(info.kind, info.size_bytes);
                let d = self.uplink.send(written, bytes, next_write);
                self.send_queue
                    .push(written, self.uplink.backlog_bytes(written) as f64);
                rec.sent_us = Some(written);
                rec.first_departure_us = Some(d.first_departure);
                rec.server_arrival_us = Some(d.delivered_at);
                Some(d.delivered_at)
            }
        };
        let msg = Msg {
            info,
            pts: rec.pts_us,
            written,
            server_arrival,
            record: NO_RECORD,
            captured: rec.captured_us.unwrap_or(written),
            wire_down: 0,
        };
        Some((msg, Some(rec)))
    }
}

/// Bytes on the wire for a media message: FLV tag header, then chunked with a type-1 header
/// (what librtmp and most servers send for media after the first message of a chunk stream).
fn wire_bytes(kind: MediaKind, payload: u32, chunk_size: u32) -> u32 {
    rtmp::media_message_bytes(kind, payload, chunk_size, HeaderForm::Type1, false)
        .min(u32::MAX as u64) as u32
}

/// Events in the shared queue: a player's joining and the moment its play request is answered
/// (which reads the GOP cache, so arrivals at the server are never processed across it). A
/// player's flushes are kept with the player ([`Subscriber::flush_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    Join,
    Ready,
}

/// Most server arrivals processed as one batch (see [`Engine::step`]).
const BATCH: usize = 256;

/// One message reaching the server, with what every player's downlink needs to know about it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    id: u32,
    /// When the server has it (arrival + processing).
    at: Micros,
    info: MediaInfo,
    /// Its write to a player's socket, costed once for all the (identical) downlinks.
    write: PreparedWrite,
    /// Written to the publisher's socket (for the delivery latency).
    written: Micros,
    /// A frame (not a header or metadata): it counts in the statistics.
    is_frame: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: Micros,
    /// Insertion order: ties at the same time run in the order they were scheduled.
    seq: u64,
    player: u32,
    kind: EventKind,
}

/// One player: its server-side queue, its downlink, its playback.
struct Subscriber {
    joined_at: Micros,
    ready_at: Option<Micros>,
    queue: Option<SubscriberQueue<u32>>,
    downlink: TcpPath,
    player: Player<u32>,
    disconnected: bool,
    /// When its queue next wants writing (coalescing window, or a full socket that should have
    /// drained); `Micros::MAX` when nothing is pending.
    flush_at: Micros,
    /// How long the path takes to send a full socket buffer (the backlog cannot reach
    /// [`SOCKET_SEND_BUFFER_BYTES`] while the server is busy for less than this).
    socket_buffer_time: Micros,
    rebuffers_seen: u32,
    rebuffer_time_seen: Micros,
}

/// Where the engine is in a run, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Stream time simulated so far / total, 0..=1.
    pub fraction: f64,
    pub done: bool,
}

/// A resumable run of one scenario.
pub struct Engine {
    s: Scenario,
    publisher: Publisher,
    publisher_done: bool,
    msgs: Vec<Msg>,
    /// Per message, `captured − (pts − dts)` in µs: a frame played at `at` (by the player's
    /// clock, which runs on dts) has glass-to-glass `max(0, at − origin)`. `i64::MAX` for
    /// messages without a record (headers). A compact copy of what every player's every
    /// played frame needs.
    play_origin: Vec<i64>,
    records: Vec<FrameRecord>,
    /// Next message to arrive at the server.
    next_arrival: usize,
    gop: GopCache<u32>,
    subs: Vec<Subscriber>,
    events: BinaryHeap<Reverse<Event>>,
    event_seq: u64,
    processing: Micros,
    play_out: Vec<(u32, PlayOutcome)>,
    /// Scratch: the batch of arrivals being processed.
    batch: Vec<Arrival>,
    /// Most arrivals in a batch ([`BATCH`]; tests vary it to show it changes nothing).
    batch_max: usize,
    /// Scratch: messages a queue discarded during one push.
    purged: Vec<(u32, DropReason)>,
    delivery_hist: LatencyHistogram,
    g2g_hist: LatencyHistogram,
    audience: AudienceSummary,
    startup: Startup,
    player_buffer: Series,
    rebuffers: Vec<(Micros, Micros)>,
    now: Micros,
    finished: bool,
}

impl Engine {
    /// Prepares a run. The scenario should have been validated ([`Scenario::validate`]); values
    /// out of range are clamped by the models rather than causing a panic.
    pub fn new(s: &Scenario) -> Self {
        // Each connection's media direction is its path; the other direction is the clean
        // return path TcpPath gives ACKs (propagation only, as the link emulator does).
        let processing = s.rtmp.server_processing();
        let publisher_startup = rtmp::startup_on_paths(
            SessionKind::Publish,
            &s.uplink,
            &s.uplink.clean_reverse(),
            processing,
            s.publisher_tcp.fast_open,
        );
        let player_startup = rtmp::startup_on_paths(
            SessionKind::Play,
            &s.downlink.clean_reverse(),
            &s.downlink,
            processing,
            s.server_tcp.fast_open,
        );
        let t0 = publisher_startup.total;
        let publisher = Publisher::new(s, t0);

        let mut events = BinaryHeap::new();
        let mut subs = Vec::with_capacity(s.players.count as usize);
        let n = s.players.count.max(1);
        for i in 0..n {
            let spread = if n > 1 {
                s.players.join_spread_s * i as f64 / (n - 1) as f64
            } else {
                0.0
            };
            let joined_at = Micros::from_secs_f64(s.players.join_at_s + spread);
            subs.push(Subscriber {
                joined_at,
                ready_at: None,
                queue: None,
                downlink: TcpPath::new(
                    &s.downlink,
                    &s.server_tcp,
                    s.downlink.propagation_ms,
                    SimRng::new(s.seed, streams::DOWNLINK_BASE + i as u64),
                ),
                player: Player::new(&s.player),
                disconnected: false,
                flush_at: Micros::MAX,
                socket_buffer_time: Micros::ZERO,
                rebuffers_seen: 0,
                rebuffer_time_seen: Micros::ZERO,
            });
            events.push(Reverse(Event {
                at: joined_at,
                seq: i as u64,
                player: i,
                kind: EventKind::Join,
            }));
        }
        for sub in &mut subs {
            let rate = sub.downlink.effective_rate_bps();
            sub.socket_buffer_time = if rate.is_finite() {
                transmission_time(SOCKET_SEND_BUFFER_BYTES, rate)
            } else {
                Micros::MAX
            };
        }
        let startup = Startup {
            publisher: publisher_startup,
            player: player_startup,
            player_join_us: subs[0].joined_at,
            player_ready_us: None,
            first_keyframe_arrival_us: None,
            first_frame_played_us: None,
        };
        Engine {
            publisher,
            publisher_done: false,
            msgs: Vec::new(),
            play_origin: Vec::new(),
            records: Vec::new(),
            next_arrival: 0,
            gop: GopCache::new(s.server.gop_cache, s.server.gop_cache_max_bytes),
            event_seq: n as u64,
            subs,
            events,
            processing: Micros::from_secs_f64(s.server.processing_us / 1e6),
            play_out: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            batch_max: BATCH,
            purged: Vec::new(),
            delivery_hist: LatencyHistogram::new(),
            g2g_hist: LatencyHistogram::new(),
            audience: AudienceSummary {
                players: n,
                ..AudienceSummary::default()
            },
            startup,
            player_buffer: Series::new("player buffer", "ms"),
            rebuffers: Vec::new(),
            now: Micros::ZERO,
            finished: false,
            s: s.clone(),
        }
    }

    /// Runs a whole scenario.
    pub fn run(s: &Scenario) -> Trace {
        let mut e = Engine::new(s);
        while !e.step(usize::MAX).done {}
        e.into_trace()
    }

    /// Makes sure message `i` exists (asks the publisher for more); false when the stream ended.
    fn ensure_msg(&mut self, i: usize) -> bool {
        while self.msgs.len() <= i {
            if self.publisher_done {
                return false;
            }
            match self.publisher.next() {
                Some((mut msg, rec)) => {
                    msg.wire_down =
                        wire_bytes(msg.info.kind, msg.info.size_bytes, self.s.server.chunk_size);
                    let origin = if let Some(rec) = rec {
                        msg.record = self.records.len() as u32;
                        self.records.push(rec);
                        let cts = msg.pts.saturating_sub(msg.info.timestamp);
                        msg.captured.0 as i64 - cts.0 as i64
                    } else {
                        i64::MAX
                    };
                    self.play_origin.push(origin);
                    self.msgs.push(msg);
                }
                None => self.publisher_done = true,
            }
        }
        true
    }

    /// Index of the next message that reaches the server (skipping encoder drops), and when the
    /// server has it.
    fn peek_arrival(&mut self) -> Option<(usize, Micros)> {
        self.arrival_from(self.next_arrival)
    }

    /// The first message from index `i` on that reaches the server, and when the server has it.
    fn arrival_from(&mut self, mut i: usize) -> Option<(usize, Micros)> {
        loop {
            if !self.ensure_msg(i) {
                return None;
            }
            match self.msgs[i].server_arrival {
                Some(t) => return Some((i, t + self.processing)),
                None => i += 1,
            }
        }
    }

    /// Processes up to `budget` events (a server arrival counts once for all players) and
    /// reports progress.
    ///
    /// Players do not interact: each has its own queue, socket, path and playback, and the
    /// statistics over all of them are sums. So the engine takes the server's arrivals in
    /// batches — up to 256, never across a queued event — and runs each player through the
    /// whole batch before the next player (its state stays in cache), handling its own pending
    /// flushes in time order on the way. Every player sees exactly the sequence of events it would
    /// see in one global time order; only the interleaving between players differs, and nothing
    /// observes that. The queued events (joins, and play requests answered, which read the GOP
    /// cache) run between batches; at equal times an event runs before an arrival.
    pub fn step(&mut self, budget: usize) -> Progress {
        let mut left = budget;
        while left > 0 && !self.finished {
            let arrival = self.peek_arrival();
            let event_at = self.events.peek().map(|Reverse(e)| e.at);
            match (arrival, event_at) {
                (None, None) => {
                    left -= 1;
                    self.drain_flushes();
                    self.finish();
                }
                (Some((i, t)), ev) if ev.is_none_or(|e| t < e) => {
                    let n = self.run_batch(i, ev, left.min(self.batch_max));
                    left -= n.min(left);
                }
                _ => {
                    left -= 1;
                    let Some(Reverse(ev)) = self.events.pop() else {
                        continue;
                    };
                    self.now = self.now.max(ev.at);
                    self.on_event(ev);
                }
            }
        }
        let total = self.publisher.t0 + self.publisher.capture_end;
        Progress {
            fraction: if self.finished {
                1.0
            } else {
                (self.now.as_secs_f64() / total.as_secs_f64().max(1e-9)).min(0.999)
            },
            done: self.finished,
        }
    }

    /// Processes the arrivals from message `first` on that come before `until` (at most `max`,
    /// at least one): the GOP cache takes them, then each player takes the whole batch. Returns
    /// how many arrivals it processed.
    fn run_batch(&mut self, first: usize, until: Option<Micros>, max: usize) -> usize {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        let mut next = Some(first);
        let mut after = None;
        while let Some((i, t)) = next.and_then(|i| self.arrival_from(i)) {
            if batch.len() >= max.max(1) || until.is_some_and(|e| t >= e) {
                after = Some(t);
                break;
            }
            let m = &self.msgs[i];
            batch.push(Arrival {
                id: i as u32,
                at: t,
                info: m.info,
                write: self.subs[0].downlink.prepare(m.wire_down),
                written: m.written,
                is_frame: m.record != NO_RECORD,
            });
            next = Some(i + 1);
            self.next_arrival = i + 1;
        }
        for a in &batch {
            self.gop.push(a.info, a.id);
        }
        for p in 0..self.subs.len() {
            self.run_player(p, &batch, after);
        }
        if let Some(last) = batch.last() {
            self.now = self.now.max(last.at);
        }
        let n = batch.len();
        self.batch = batch;
        n
    }

    /// Player `p` through a batch of arrivals (`after`: when the server has the message after
    /// the batch), its own due flushes first at each step.
    fn run_player(&mut self, p: usize, batch: &[Arrival], after: Option<Micros>) {
        // The jitter of each write is worked out one message ahead (see
        // `TcpPath::jitter_ahead`): same numbers, but off the critical path.
        let mut ahead = match batch.first() {
            Some(a) => self.subs[p].downlink.jitter_ahead(&a.write, 0),
            None => JitterAhead::NONE,
        };
        for (k, a) in batch.iter().enumerate() {
            if self.subs[p].flush_at <= a.at {
                self.run_flushes(p, a.at, Some(a.at));
            }
            let sub = &mut self.subs[p];
            if sub.disconnected {
                return;
            }
            // Not playing yet: it cannot start inside a batch (batches stop at events).
            let Some(queue) = sub.queue.as_mut() else {
                return;
            };
            let next = match batch.get(k + 1) {
                Some(b) => Some(b.at),
                None => after,
            };
            let (now, id, info) = (a.at, a.id, a.info);
            let this_jitter = ahead;
            ahead = match batch.get(k + 1) {
                Some(b) => sub.downlink.jitter_ahead(&b.write, 1),
                None => JitterAhead::NONE,
            };
            // The common case, taken without the round trip through the queue: nothing is
            // waiting for this player, the queue would write the message at once, and the socket
            // has room (the cheap test of `try_flush`: it cannot be full before the link has
            // been busy for a full buffer's time).
            if sub.downlink.busy_until().saturating_sub(now) < sub.socket_buffer_time
                && queue.pass_through(info)
            {
                let delivered_at =
                    sub.downlink
                        .send_prepared_ahead(now, &a.write, next, &this_jitter);
                if p == 0 {
                    self.on_delivered(p, id, now, a.write.bytes(), delivered_at);
                    continue;
                }
                // `on_delivered` for everyone but the probe, inline: this is the engine's
                // innermost loop.
                self.audience.egress_bytes += a.write.bytes() as u64;
                if !a.is_frame {
                    continue;
                }
                self.audience.frames_delivered += 1;
                self.delivery_hist
                    .record_us(delivered_at.saturating_sub(a.written).0);
                follower_arrival(
                    &mut sub.player,
                    &self.play_origin,
                    &mut self.g2g_hist,
                    delivered_at,
                    id,
                    info.timestamp,
                );
                if sub.player.stats().rebuffer_count > sub.rebuffers_seen {
                    self.note_rebuffers(p, delivered_at);
                }
                continue;
            }
            let mut purged = std::mem::take(&mut self.purged);
            let outcome = queue.push_with_drops(now, info, id, |_, id, why| purged.push((id, why)));
            self.note_push(p, id, outcome);
            self.note_purged(p, &mut purged);
            self.purged = purged;
            self.try_flush(p, now, next);
        }
    }

    /// Player `p`'s flushes due by `until`, in time order (`next`: when the server has its next
    /// message, as in [`Engine::try_flush`]).
    fn run_flushes(&mut self, p: usize, until: Micros, next: Option<Micros>) {
        while self.subs[p].flush_at <= until && self.subs[p].flush_at != Micros::MAX {
            let at = self.subs[p].flush_at;
            self.subs[p].flush_at = Micros::MAX;
            self.now = self.now.max(at);
            self.try_flush(p, at, next);
        }
    }

    /// The stream is over: every player's remaining flushes.
    fn drain_flushes(&mut self) {
        for p in 0..self.subs.len() {
            self.run_flushes(p, Micros::MAX, None);
        }
    }

    fn schedule(&mut self, at: Micros, player: u32, kind: EventKind) {
        self.event_seq += 1;
        self.events.push(Reverse(Event {
            at,
            seq: self.event_seq,
            player,
            kind,
        }));
    }

    fn on_event(&mut self, ev: Event) {
        let p = ev.player as usize;
        match ev.kind {
            EventKind::Join => {
                let ready = ev.at + self.startup.player.total;
                if p == 0 {
                    self.startup.player_ready_us = Some(ready);
                }
                self.schedule(ready, ev.player, EventKind::Ready);
            }
            EventKind::Ready => {
                let sub = &mut self.subs[p];
                sub.ready_at = Some(ev.at);
                // Media starts on a connection that so far carried only the handshake.
                sub.downlink.restart_slow_start();
                let mut queue = SubscriberQueue::new(&self.s.server, !self.gop.has_keyframe());
                let mut offered: Vec<(MediaInfo, u32)> = Vec::new();
                for (info, id) in self.gop.join_burst() {
                    offered.push((*info, *id));
                }
                let mut purged = std::mem::take(&mut self.purged);
                for (info, id) in offered {
                    let outcome = queue.push_with_drops(ev.at, info, id, |_, id, why| {
                        purged.push((id, why));
                    });
                    self.note_push(p, id, outcome);
                    self.note_purged(p, &mut purged);
                }
                self.purged = purged;
                self.subs[p].queue = Some(queue);
                let next = self.peek_arrival().map(|(_, t)| t);
                self.try_flush(p, ev.at, next);
            }
        }
    }

    /// Records a queue's verdict on a message for player `p`.
    fn note_push(&mut self, p: usize, id: u32, outcome: PushOutcome) {
        let site = match outcome {
            PushOutcome::Queued => return,
            PushOutcome::Dropped(DropReason::QueueFull) => DropSite::ServerQueue,
            PushOutcome::Dropped(DropReason::WaitingForKeyframe) => DropSite::WaitingForKeyframe,
            PushOutcome::Dropped(DropReason::Disconnected) | PushOutcome::Disconnect => {
                DropSite::Disconnected
            }
        };
        if site == DropSite::ServerQueue {
            self.audience.frames_dropped_server += 1;
        }
        if matches!(outcome, PushOutcome::Disconnect) && !self.subs[p].disconnected {
            self.subs[p].disconnected = true;
            self.audience.disconnected += 1;
        }
        if p == 0 {
            let r = self.msgs[id as usize].record;
            if r != NO_RECORD {
                let rec = &mut self.records[r as usize];
                if rec.dropped.is_none() {
                    rec.dropped = Some(site);
                }
            }
        }
    }

    /// Records messages a queue discarded from its backlog to make room.
    fn note_purged(&mut self, p: usize, purged: &mut Vec<(u32, DropReason)>) {
        for (id, why) in purged.drain(..) {
            self.note_push(p, id, PushOutcome::Dropped(why));
        }
    }

    /// Writes what player `p`'s queue is due to write at `now`, as far as its socket has room.
    /// `next_arrival`: when the server has its next message (how long Nagle may hold a tail,
    /// and when loss recovery can count on later data, for the write that empties the queue).
    fn try_flush(&mut self, p: usize, now: Micros, next_arrival: Option<Micros>) {
        loop {
            let sub = &mut self.subs[p];
            if sub.disconnected {
                return;
            }
            let Some(queue) = sub.queue.as_mut() else {
                return;
            };
            let Some(due) = queue.flush_at() else {
                return;
            };
            if due > now {
                sub.flush_at = sub.flush_at.min(due);
                return;
            }
            // Exact backlog only when the socket could be near full: cheap test first (the
            // time its last byte leaves bounds the backlog by rate × that time).
            let busy_for = sub.downlink.busy_until().saturating_sub(now);
            let backlog = if busy_for < sub.socket_buffer_time {
                0
            } else {
                sub.downlink.backlog_bytes(now)
            };
            if backlog >= SOCKET_SEND_BUFFER_BYTES {
                // The socket is full: come back when enough has drained.
                let rate = sub.downlink.effective_rate_bps();
                let wait = transmission_time(backlog - SOCKET_SEND_BUFFER_BYTES / 2, rate)
                    .max(Micros(1_000));
                sub.flush_at = sub.flush_at.min(now + wait);
                return;
            }
            let Some((_, id)) = queue.pop() else {
                return;
            };
            let hint = if queue.queued_len() > 0 {
                Some(now)
            } else {
                next_arrival
            };
            let wire = self.msgs[id as usize].wire_down;
            let delivered_at = sub.downlink.send_delivered(now, wire, hint);
            self.on_delivered(p, id, now, wire, delivered_at);
        }
    }

    /// Message `id`, written to player `p`'s socket at `now` (`wire` bytes), reached the player
    /// at `delivered_at`: statistics, the probe's record, and the player's decisions.
    #[inline]
    fn on_delivered(&mut self, p: usize, id: u32, now: Micros, wire: u32, delivered_at: Micros) {
        let msg = &self.msgs[id as usize];
        let sub = &mut self.subs[p];
        self.audience.egress_bytes += wire as u64;
        if msg.record == NO_RECORD {
            return;
        }
        self.audience.frames_delivered += 1;
        self.delivery_hist
            .record_us(delivered_at.saturating_sub(msg.written).0);
        let ts = msg.info.timestamp;
        if p != 0 {
            // Everyone but the probe: only the audience statistics.
            follower_arrival(
                &mut sub.player,
                &self.play_origin,
                &mut self.g2g_hist,
                delivered_at,
                id,
                ts,
            );
            if sub.player.stats().rebuffer_count > sub.rebuffers_seen {
                self.note_rebuffers(p, delivered_at);
            }
            return;
        }
        let is_video = msg.info.kind == MediaKind::Video;
        let rec = &mut self.records[msg.record as usize];
        rec.server_departure_us = Some(now);
        rec.player_arrival_us = Some(delivered_at);
        if rec.keyframe && self.startup.first_keyframe_arrival_us.is_none() {
            self.startup.first_keyframe_arrival_us = Some(delivered_at);
        }
        self.play_out.clear();
        sub.player
            .on_arrival(delivered_at, id, ts, &mut self.play_out);
        if is_video {
            self.player_buffer.push(
                delivered_at,
                sub.player.buffer_level(delivered_at).as_ms_f64(),
            );
        }
        self.apply_play_out(p, delivered_at);
    }

    /// Applies the player's decisions in `play_out` to the records and statistics.
    fn apply_play_out(&mut self, p: usize, now: Micros) {
        for k in 0..self.play_out.len() {
            let (id, outcome) = self.play_out[k];
            let msg = &self.msgs[id as usize];
            if msg.record == NO_RECORD {
                continue;
            }
            match outcome {
                PlayOutcome::Played { at } => {
                    // Video is shown at its presentation time: add the composition offset.
                    let shown = at + msg.pts.saturating_sub(msg.info.timestamp);
                    // `at` ≥ arrival + decode time (the player's rule), so this is ≥ arrival.
                    let decode_start = at.saturating_sub(self.subs[p].player.decode_time());
                    self.g2g_hist
                        .record_us(shown.saturating_sub(msg.captured).0);
                    if p == 0 {
                        let rec = &mut self.records[msg.record as usize];
                        rec.decode_start_us = Some(decode_start);
                        rec.played_us = Some(shown);
                        if rec.kind == MediaKind::Video
                            && self.startup.first_frame_played_us.is_none_or(|t| shown < t)
                        {
                            self.startup.first_frame_played_us = Some(shown);
                        }
                    }
                }
                PlayOutcome::Skipped { .. } => {
                    if p == 0 {
                        let rec = &mut self.records[msg.record as usize];
                        if rec.dropped.is_none() {
                            rec.dropped = Some(DropSite::Player);
                        }
                    }
                }
            }
        }
        self.note_rebuffers(p, now);
    }

    /// Counts player `p`'s stalls since the last look (the probe's with their times).
    fn note_rebuffers(&mut self, p: usize, now: Micros) {
        let sub = &mut self.subs[p];
        let stats = sub.player.stats();
        if stats.rebuffer_count > sub.rebuffers_seen {
            let added = stats.rebuffer_time.saturating_sub(sub.rebuffer_time_seen);
            if p == 0 {
                // The stall ended by `now` at the latest; it lasted `added`.
                let end = now;
                self.rebuffers.push((end.saturating_sub(added), end));
            }
            self.audience.rebuffer_count += (stats.rebuffer_count - sub.rebuffers_seen) as u64;
            sub.rebuffers_seen = stats.rebuffer_count;
            sub.rebuffer_time_seen = stats.rebuffer_time;
        }
    }

    fn finish(&mut self) {
        for p in 0..self.subs.len() {
            // (The last arrival at the player is its downlink's last delivery.)
            let end = self.subs[p].downlink.last_delivery().max(self.now);
            self.play_out.clear();
            let sub = &mut self.subs[p];
            sub.player.finish(end, &mut self.play_out);
            self.apply_play_out(p, end);
        }
        // Frames the probe never got, for a reason other than a drop.
        let ready = self.subs[0].ready_at;
        for rec in &mut self.records {
            if rec.dropped.is_some() || rec.played_us.is_some() {
                continue;
            }
            let before_join = match (rec.server_arrival_us, ready) {
                (Some(a), Some(r)) => a < r && rec.server_departure_us.is_none(),
                (Some(_), None) => true,
                _ => false,
            };
            rec.dropped = Some(if before_join {
                DropSite::BeforeJoin
            } else {
                DropSite::InFlight
            });
        }
        self.audience.delivery_latency = self.delivery_hist.percentiles();
        self.audience.glass_to_glass = self.g2g_hist.percentiles();
        self.finished = true;
    }

    /// The trace of a finished run (or of what has run so far).
    pub fn into_trace(self) -> Trace {
        Trace {
            scenario: self.s.name.clone(),
            seed: self.s.seed,
            source: "simulated".into(),
            duration_us: Micros::from_secs_f64(self.s.duration_s),
            frames: self.records,
            startup: self.startup,
            vbv: self.publisher.vbv,
            send_queue: self.publisher.send_queue,
            player_buffer: self.player_buffer,
            rebuffers: self.rebuffers,
            audience: self.audience,
            uplink_capacity_kbps: self.s.uplink.bottleneck_kbps,
        }
    }
}

/// A frame reached a player other than the probe: the player decides, and the frames it shows
/// count in the audience's glass-to-glass histogram (`origins`: [`Engine::play_origin`]).
#[inline(always)]
fn follower_arrival(
    player: &mut Player<u32>,
    origins: &[i64],
    g2g: &mut LatencyHistogram,
    delivered_at: Micros,
    id: u32,
    ts: Micros,
) {
    player.on_arrival_with(delivered_at, id, ts, &mut |id, outcome| {
        if let PlayOutcome::Played { at } = outcome {
            let origin = origins.get(id as usize).copied().unwrap_or(i64::MAX);
            if origin != i64::MAX {
                // = (at + pts − dts) − captured, floored at 0, as for the probe.
                g2g.record_us((at.0 as i64).saturating_sub(origin).max(0) as u64);
            }
        }
    });
}

/// Runs `s` to completion: shorthand for [`Engine::run`].
pub fn simulate(s: &Scenario) -> Trace {
    Engine::run(s)
}

#[cfg(test)]
mod tests;
