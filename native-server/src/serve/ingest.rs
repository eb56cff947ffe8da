//! Live ingest analysis of one published stream: what OBS, ffmpeg or GStreamer actually send.
//!
//! The relay calls [`IngestAnalyzer`] for every media message of a live stream, from the
//! publisher's hot path, and the HTTP API reads [`IngestAnalyzer::stats`] and
//! [`IngestAnalyzer::frames`]. Like the models in `sim-core` it is sans-IO: no clock (the arrival
//! time is an argument, µs since the publish started), no sockets, no threads.
//!
//! What it measures, and over which span:
//!
//! | value | source | span |
//! |---|---|---|
//! | codecs | the last tag naming a codec; `videocodecid`/`audiocodecid` from `onMetaData` until then | — |
//! | width, height, declared fps and bitrates | `onMetaData` (`width`, `height`, `framerate`, `videodatarate`, `audiodatarate`) | — |
//! | fps, video and audio kb/s | the ingest record | the last [`MEASUREMENT_WINDOW_MS`] of stream time |
//! | mean total kb/s, counts, bytes, sizes, keyframe interval, B-frames | running totals | the whole publish |
//! | arrival jitter p50/p95/max | the ingest record | its last `ring_capacity` frames |
//! | VBV occupancy | [`VbvBuffer`] over the coded video frames | from the oldest recorded frame once the rate is known |
//!
//! **Stream time** is the RTMP timestamp, unwrapped with serial-number arithmetic so that the
//! 32-bit millisecond wrap (49.7 days) and small backwards steps (audio interleaved slightly
//! behind video) do not break anything: each timestamp is read as the nearest one, forwards or
//! backwards, to the previous message's. The stream's extent is the least and greatest
//! unwrapped timestamp seen. A publisher that restarts its timestamps should get a new analyzer
//! (one per publish); this one would keep going, but its windowed values pause until the new
//! timestamps pass the old maximum.
//!
//! **Rates** are measured over the half-open window (now − L, now], where now is the greatest
//! timestamp and L is [`MEASUREMENT_WINDOW_MS`], shortened to the stream's extent and to what the
//! ingest record still holds. The frame at the window's start is left out, so a stream of
//! frames of b bits every d ms measures exactly b/d (N frames span (N − 1)·d). The same rule
//! gives the whole-publish mean: all bytes but the first message's, over the extent.
//!
//! **Arrival jitter** of a frame is its offset (arrival − timestamp) minus the least offset of
//! any earlier frame of the same kind: 0 for a frame that travelled as fast as the best so far,
//! its lateness otherwise. Audio and video are kept apart because encoders stamp them from
//! different pipelines (video waits for lookahead and B-frames), so their offsets differ by a
//! constant that is not jitter.
//!
//! **VBV occupancy** runs `sim_core`'s own [`VbvBuffer`] (the same one the encoder model uses)
//! over the coded video frames at their timestamps (DTS, stream time — not arrival), with a
//! buffer of [`VBV_BUFFER_SECONDS`] of the rate, starting [`VBV_INIT_FULLNESS`] full, clipping
//! at the top ([`VbvOverflow::Clip`]); each frame's bits are its message size × 8 (the 5-byte
//! FLV video header included). The rate is the declared `videodatarate` as soon as metadata
//! gives one (a changed declaration restarts the buffer); without one, the mean coded-video
//! bitrate over the first [`VBV_MEASURED_RATE_AFTER_MS`] of stream time, fixed from then on.
//! When the buffer (re)starts it replays the frames still in the ingest record, so their
//! recorded fullness and the statistics all come from one run at one rate.
//!
//! Limits: memory is the ring of at most `ring_capacity` (≤ [`MAX_RING_CAPACITY`]) records plus
//! a fixed set of counters; nothing is allocated per frame once the ring has grown to its
//! capacity. Every input — any timestamp, size, arrival, tag or its absence — is accepted
//! without panicking (saturating arithmetic; counters saturate rather than wrap).

use std::collections::VecDeque;

use sim_core::rate_control::{VbvBuffer, VbvOverflow};
use sim_core::trace::Percentiles;
use sim_core::Micros;

use super::api::{
    FrameClass, FrameInfo, FrameKind, IngestStats, JitterStats, VbvRateSource, VbvStats,
};
use crate::protocol::command::{MetadataCodec, MetadataFields};
use crate::protocol::flv::{CodecId, MediaTag};

/// Default length of the ingest record: 3000 messages is about 60 s of 30 fps video alone, or
/// 28–40 s of 30–60 fps video with 44.1/48 kHz AAC (43–47 audio frames/s) — enough to cover the
/// measurement window many times over and to show a few GOPs in the web lab.
pub const DEFAULT_RING_CAPACITY: usize = 3000;

/// Largest ingest record accepted (about 6 MB per stream); larger requests are clamped.
pub const MAX_RING_CAPACITY: usize = 100_000;

/// Stream time over which fps and bitrates are measured: long enough to hold two GOPs of OBS's
/// default 2 s keyframe interval, short enough to follow a bitrate change within seconds.
pub const MEASUREMENT_WINDOW_MS: i64 = 5_000;

/// Without a declared `videodatarate`, the VBV runs at the mean video bitrate measured over this
/// much stream time (then fixed): at least two GOPs, so keyframes are weighted fairly.
pub const VBV_MEASURED_RATE_AFTER_MS: i64 = 5_000;

/// VBV buffer size in seconds of the rate: OBS's default (`vbv-bufsize` = bitrate).
pub const VBV_BUFFER_SECONDS: f64 = 1.0;

/// Initial VBV fullness as a fraction of the buffer: x264's default `vbv-init`.
pub const VBV_INIT_FULLNESS: f64 = 0.9;

/// Longest codec name kept from metadata (the field is publisher-controlled text).
const MAX_METADATA_TEXT_CHARS: usize = 64;

/// One entry of the ingest record.
#[derive(Debug, Clone, Copy)]
struct Record {
    info: FrameInfo,
    /// Unwrapped timestamp (ms).
    stream_ms: i64,
}

/// Unwraps 32-bit RTMP timestamps: each one is read as the nearest value, forwards or
/// backwards, to the previous message's.
#[derive(Debug, Clone, Copy, Default)]
struct TimestampUnwrapper {
    last: Option<(u32, i64)>,
}

impl TimestampUnwrapper {
    fn unwrap(&mut self, raw_ms: u32) -> i64 {
        let stream_ms = match self.last {
            None => i64::from(raw_ms),
            // Reinterpreting the wrapped difference as i32 picks the nearer direction.
            Some((last_raw, last_ms)) => {
                last_ms.saturating_add(i64::from(raw_ms.wrapping_sub(last_raw) as i32))
            }
        };
        self.last = Some((raw_ms, stream_ms));
        stream_ms
    }
}

/// What `onMetaData` declared, validated.
#[derive(Debug, Clone, Default)]
struct Declared {
    width: Option<u32>,
    height: Option<u32>,
    fps: Option<f64>,
    video_kbps: Option<f64>,
    audio_kbps: Option<f64>,
    video_codec: Option<String>,
    audio_codec: Option<String>,
}

/// The VBV run and the statistics the API reports about it.
#[derive(Debug, Clone)]
struct VbvRun {
    buffer: VbvBuffer,
    rate_kbps: f64,
    source: VbvRateSource,
    min_fullness_bits: f64,
}

impl VbvRun {
    /// `None` unless the rate gives a usable, finite buffer.
    fn new(rate_kbps: f64, source: VbvRateSource) -> Option<Self> {
        let rate_bps = rate_kbps * 1000.0;
        let buffer_bits = rate_bps * VBV_BUFFER_SECONDS;
        if !(rate_bps.is_finite() && rate_bps > 0.0 && buffer_bits.is_finite()) {
            return None;
        }
        let buffer = VbvBuffer::new(buffer_bits, rate_bps, VBV_INIT_FULLNESS, VbvOverflow::Clip);
        Some(VbvRun {
            min_fullness_bits: buffer.fullness_bits(),
            buffer,
            rate_kbps,
            source,
        })
    }

    /// Passes one coded frame; returns the fullness after it (bits).
    fn on_frame(&mut self, stream_ms: i64, size_bytes: u64) -> f64 {
        let step = self
            .buffer
            .on_frame(stream_micros(stream_ms), size_bytes as f64 * 8.0);
        self.min_fullness_bits = self.min_fullness_bits.min(step.fullness_after_bits);
        step.fullness_after_bits
    }
}

/// Live analysis of one incoming stream. See the module documentation for what is measured.
#[derive(Debug, Clone)]
pub struct IngestAnalyzer {
    capacity: usize,
    ring: VecDeque<Record>,
    /// Greatest timestamp among records dropped from the ring: windows start no earlier.
    evicted_max_ms: Option<i64>,
    unwrapper: TimestampUnwrapper,
    /// Least and greatest unwrapped timestamp of any media message.
    extent_ms: Option<(i64, i64)>,

    declared: Declared,
    video_codec: Option<CodecId>,
    audio_codec: Option<CodecId>,

    video_frames: u64,
    audio_frames: u64,
    /// Key + inter video frames ever received (whether there is video at all).
    coded_video_frames: u64,
    keyframes: u64,
    interframes: u64,
    bytes: u64,
    first_message_bytes: Option<u64>,
    keyframe_bytes: u64,
    interframe_bytes: u64,
    max_video_frame_bytes: u64,
    b_frames: bool,

    last_keyframe_ms: Option<i64>,
    keyframe_interval_sum_ms: u64,
    keyframe_intervals: u64,
    last_keyframe_interval_ms: Option<u64>,

    /// Least (arrival − timestamp) so far, µs, per kind (video, audio).
    min_offset_us: [Option<i64>; 2],

    /// Coded video since the first coded frame, for the measured VBV rate.
    coded_first_ms: Option<i64>,
    coded_max_ms: i64,
    coded_bytes_after_first: u64,

    vbv: Option<VbvRun>,
}

impl Default for IngestAnalyzer {
    fn default() -> Self {
        Self::new(DEFAULT_RING_CAPACITY)
    }
}

impl IngestAnalyzer {
    /// An analyzer keeping the last `ring_capacity` media messages (clamped to
    /// [`MAX_RING_CAPACITY`]; 0 keeps none, and then the windowed values are unavailable).
    pub fn new(ring_capacity: usize) -> Self {
        let capacity = ring_capacity.min(MAX_RING_CAPACITY);
        IngestAnalyzer {
            capacity,
            // The common case never grows; a larger ring grows (amortised) up to its capacity.
            ring: VecDeque::with_capacity(capacity.min(DEFAULT_RING_CAPACITY)),
            evicted_max_ms: None,
            unwrapper: TimestampUnwrapper::default(),
            extent_ms: None,
            declared: Declared::default(),
            video_codec: None,
            audio_codec: None,
            video_frames: 0,
            audio_frames: 0,
            coded_video_frames: 0,
            keyframes: 0,
            interframes: 0,
            bytes: 0,
            first_message_bytes: None,
            keyframe_bytes: 0,
            interframe_bytes: 0,
            max_video_frame_bytes: 0,
            b_frames: false,
            last_keyframe_ms: None,
            keyframe_interval_sum_ms: 0,
            keyframe_intervals: 0,
            last_keyframe_interval_ms: None,
            min_offset_us: [None; 2],
            coded_first_ms: None,
            coded_max_ms: 0,
            coded_bytes_after_first: 0,
            vbv: None,
        }
    }

    /// The publisher sent `onMetaData` (again). Later metadata replaces earlier values it
    /// carries; a new or changed `videodatarate` (re)starts the VBV at that rate.
    pub fn on_metadata(&mut self, fields: &MetadataFields) {
        let d = &mut self.declared;
        if let Some(width) = dimension(fields.width) {
            d.width = Some(width);
        }
        if let Some(height) = dimension(fields.height) {
            d.height = Some(height);
        }
        if let Some(fps) = positive(fields.framerate) {
            d.fps = Some(fps);
        }
        if let Some(kbps) = positive(fields.audiodatarate) {
            d.audio_kbps = Some(kbps);
        }
        if let Some(codec) = &fields.videocodecid {
            d.video_codec = metadata_codec_name(codec, CodecId::LegacyVideo);
        }
        if let Some(codec) = &fields.audiocodecid {
            d.audio_codec = metadata_codec_name(codec, CodecId::LegacyAudio);
        }
        if let Some(declared) = positive(fields.videodatarate) {
            // FFmpeg's FLV muxer (encoder "Lavf…") writes `videodatarate` as bit_rate / 1024,
            // where OBS and the FLV spec mean kb/s: a 3000k stream says 2929.7. Running the VBV
            // at that rate would report underflows the encoder never had.
            let lavf = fields
                .encoder
                .as_deref()
                .is_some_and(|e| e.starts_with("Lavf"));
            let kbps = if lavf { declared * 1.024 } else { declared };
            d.video_kbps = Some(kbps);
            let unchanged = self
                .vbv
                .as_ref()
                .is_some_and(|run| run.source == VbvRateSource::Declared && run.rate_kbps == kbps);
            if !unchanged {
                self.start_vbv(kbps, VbvRateSource::Declared);
            }
        }
    }

    /// A video message arrived `arrival` after the publish started, with RTMP timestamp
    /// `timestamp_ms`, `size_bytes` of payload, and its parsed tag (`None` if it did not parse).
    pub fn on_video(
        &mut self,
        arrival: Micros,
        timestamp_ms: u32,
        size_bytes: usize,
        tag: Option<&MediaTag>,
    ) {
        self.on_media(FrameKind::Video, arrival, timestamp_ms, size_bytes, tag);
    }

    /// An audio message arrived; as [`IngestAnalyzer::on_video`].
    pub fn on_audio(
        &mut self,
        arrival: Micros,
        timestamp_ms: u32,
        size_bytes: usize,
        tag: Option<&MediaTag>,
    ) {
        self.on_media(FrameKind::Audio, arrival, timestamp_ms, size_bytes, tag);
    }

    fn on_media(
        &mut self,
        kind: FrameKind,
        arrival: Micros,
        timestamp_ms: u32,
        size_bytes: usize,
        tag: Option<&MediaTag>,
    ) {
        let stream_ms = self.unwrapper.unwrap(timestamp_ms);
        self.extent_ms = Some(match self.extent_ms {
            None => (stream_ms, stream_ms),
            Some((least, greatest)) => (least.min(stream_ms), greatest.max(stream_ms)),
        });
        let size = u64::try_from(size_bytes).unwrap_or(u64::MAX);
        self.bytes = self.bytes.saturating_add(size);
        self.first_message_bytes.get_or_insert(size);

        let frame_type = classify(tag);
        let composition_ms = tag.map_or(0, |t| t.composition_time_ms);
        // Sequence headers are sent at connect time, ahead of the encoder's pipeline delay:
        // they would set a baseline no coded frame can reach, and every later frame would look
        // "late" by the encoder's delay. They get no jitter and do not move the baseline.
        let arrival_jitter_ms = if frame_type == FrameClass::Seq {
            0.0
        } else {
            self.arrival_jitter_ms(kind, arrival, stream_ms)
        };
        let mut vbv_fullness_bits = None;

        match kind {
            FrameKind::Audio => {
                self.audio_frames = self.audio_frames.saturating_add(1);
                if let Some(codec) = tag.map(|t| t.codec) {
                    if codec != CodecId::Unspecified {
                        self.audio_codec = Some(codec);
                    }
                }
            }
            FrameKind::Video => {
                self.video_frames = self.video_frames.saturating_add(1);
                self.max_video_frame_bytes = self.max_video_frame_bytes.max(size);
                if let Some(codec) = tag.map(|t| t.codec) {
                    if codec != CodecId::Unspecified {
                        self.video_codec = Some(codec);
                    }
                }
                if matches!(frame_type, FrameClass::Key | FrameClass::Inter) {
                    vbv_fullness_bits =
                        self.on_coded_video(frame_type, stream_ms, size, composition_ms);
                }
            }
        }

        let info = FrameInfo {
            kind,
            frame_type,
            size_bytes: u32::try_from(size).unwrap_or(u32::MAX),
            timestamp_ms,
            composition_ms,
            arrival_us: arrival.0,
            vbv_fullness_bits,
            arrival_jitter_ms,
        };
        self.record(Record { info, stream_ms });
    }

    /// Counts a key or inter video frame and passes it through the VBV; returns the VBV
    /// fullness after it, if the VBV is running.
    fn on_coded_video(
        &mut self,
        frame_type: FrameClass,
        stream_ms: i64,
        size: u64,
        composition_ms: i32,
    ) -> Option<f64> {
        self.coded_video_frames = self.coded_video_frames.saturating_add(1);
        self.b_frames |= composition_ms != 0;
        if frame_type == FrameClass::Key {
            self.keyframes = self.keyframes.saturating_add(1);
            self.keyframe_bytes = self.keyframe_bytes.saturating_add(size);
            if let Some(previous) = self.last_keyframe_ms {
                // A backwards step counts as no time, as in the VBV.
                let interval = u64::try_from(stream_ms.saturating_sub(previous)).unwrap_or(0);
                self.keyframe_interval_sum_ms =
                    self.keyframe_interval_sum_ms.saturating_add(interval);
                self.keyframe_intervals = self.keyframe_intervals.saturating_add(1);
                self.last_keyframe_interval_ms = Some(interval);
            }
            self.last_keyframe_ms = Some(stream_ms);
        } else {
            self.interframes = self.interframes.saturating_add(1);
            self.interframe_bytes = self.interframe_bytes.saturating_add(size);
        }

        match self.coded_first_ms {
            None => {
                self.coded_first_ms = Some(stream_ms);
                self.coded_max_ms = stream_ms;
            }
            Some(first) => {
                self.coded_max_ms = self.coded_max_ms.max(stream_ms);
                self.coded_bytes_after_first = self.coded_bytes_after_first.saturating_add(size);
                if self.vbv.is_none() {
                    let span_ms = self.coded_max_ms.saturating_sub(first);
                    if span_ms >= VBV_MEASURED_RATE_AFTER_MS {
                        // bits per ms = kbit/s.
                        let kbps = self.coded_bytes_after_first as f64 * 8.0 / span_ms as f64;
                        self.start_vbv(kbps, VbvRateSource::Measured);
                    }
                }
            }
        }
        self.vbv.as_mut().map(|run| run.on_frame(stream_ms, size))
    }

    /// (Re)starts the VBV at `rate_kbps` and replays the recorded video frames through it.
    fn start_vbv(&mut self, rate_kbps: f64, source: VbvRateSource) {
        let Some(mut run) = VbvRun::new(rate_kbps, source) else {
            return;
        };
        for record in self.ring.iter_mut() {
            let info = &mut record.info;
            info.vbv_fullness_bits = match (info.kind, info.frame_type) {
                (FrameKind::Video, FrameClass::Key | FrameClass::Inter) => {
                    Some(run.on_frame(record.stream_ms, u64::from(info.size_bytes)))
                }
                _ => None,
            };
        }
        self.vbv = Some(run);
    }

    fn arrival_jitter_ms(&mut self, kind: FrameKind, arrival: Micros, stream_ms: i64) -> f64 {
        let arrival_us = i64::try_from(arrival.0).unwrap_or(i64::MAX);
        let offset_us = arrival_us.saturating_sub(stream_ms.saturating_mul(1000));
        let slot = &mut self.min_offset_us[kind_index(kind)];
        let least = slot.map_or(offset_us, |least| least.min(offset_us));
        *slot = Some(least);
        offset_us.saturating_sub(least) as f64 / 1000.0
    }

    fn record(&mut self, record: Record) {
        if self.capacity == 0 {
            self.note_evicted(record.stream_ms);
            return;
        }
        if self.ring.len() >= self.capacity {
            if let Some(oldest) = self.ring.pop_front() {
                self.note_evicted(oldest.stream_ms);
            }
        }
        self.ring.push_back(record);
    }

    fn note_evicted(&mut self, stream_ms: i64) {
        self.evicted_max_ms = Some(self.evicted_max_ms.map_or(stream_ms, |m| m.max(stream_ms)));
    }

    /// The measurement window (start, end, length) in ms: (end − length, end] — see the module
    /// documentation. `None` until there is stream time to measure over.
    fn window(&self) -> Option<(i64, i64, i64)> {
        let (least, greatest) = self.extent_ms?;
        let mut length = MEASUREMENT_WINDOW_MS.min(greatest.saturating_sub(least));
        if let Some(evicted) = self.evicted_max_ms {
            length = length.min(greatest.saturating_sub(evicted));
        }
        (length > 0).then(|| (greatest.saturating_sub(length), greatest, length))
    }

    /// Everything measured so far (computed on demand: O(ring capacity)).
    pub fn stats(&self) -> IngestStats {
        let window = self.window();
        let mut window_video_bytes: u64 = 0;
        let mut window_audio_bytes: u64 = 0;
        let mut window_coded_video: u64 = 0;
        let mut jitter_sample = Vec::with_capacity(self.ring.len());
        for record in &self.ring {
            jitter_sample.push(record.info.arrival_jitter_ms);
            let Some((start, end, _)) = window else {
                continue;
            };
            if record.stream_ms <= start || record.stream_ms > end {
                continue;
            }
            let size = u64::from(record.info.size_bytes);
            match record.info.kind {
                FrameKind::Video => {
                    window_video_bytes = window_video_bytes.saturating_add(size);
                    if matches!(record.info.frame_type, FrameClass::Key | FrameClass::Inter) {
                        window_coded_video += 1;
                    }
                }
                FrameKind::Audio => {
                    window_audio_bytes = window_audio_bytes.saturating_add(size);
                }
            }
        }
        let window_ms = window.map_or(0, |(_, _, length)| length);
        // bits per ms = kbit/s.
        let kbps = |bytes: u64| {
            if window_ms > 0 {
                bytes as f64 * 8.0 / window_ms as f64
            } else {
                0.0
            }
        };
        let extent_ms = self
            .extent_ms
            .map_or(0, |(least, greatest)| greatest.saturating_sub(least));
        let total_kbps_mean = if extent_ms > 0 {
            let after_first = self
                .bytes
                .saturating_sub(self.first_message_bytes.unwrap_or(0));
            after_first as f64 * 8.0 / extent_ms as f64
        } else {
            0.0
        };
        let mean = |sum: u64, count: u64| (count > 0).then(|| sum as f64 / count as f64);

        IngestStats {
            video_codec: self
                .video_codec
                .and_then(codec_name)
                .or_else(|| self.declared.video_codec.clone()),
            audio_codec: self
                .audio_codec
                .and_then(codec_name)
                .or_else(|| self.declared.audio_codec.clone()),
            width: self.declared.width,
            height: self.declared.height,
            declared_fps: self.declared.fps,
            declared_video_kbps: self.declared.video_kbps,
            declared_audio_kbps: self.declared.audio_kbps,
            fps: (self.coded_video_frames > 0 && window_ms > 0)
                .then(|| window_coded_video as f64 * 1000.0 / window_ms as f64),
            video_kbps: kbps(window_video_bytes),
            audio_kbps: kbps(window_audio_bytes),
            total_kbps_mean,
            keyframe_interval_s: mean(self.keyframe_interval_sum_ms, self.keyframe_intervals)
                .map(|ms| ms / 1000.0),
            last_keyframe_interval_s: self.last_keyframe_interval_ms.map(|ms| ms as f64 / 1000.0),
            b_frames: self.b_frames,
            video_frames: self.video_frames,
            audio_frames: self.audio_frames,
            keyframes: self.keyframes,
            bytes: self.bytes,
            max_frame_bytes: self.max_video_frame_bytes,
            mean_keyframe_bytes: mean(self.keyframe_bytes, self.keyframes),
            mean_interframe_bytes: mean(self.interframe_bytes, self.interframes),
            arrival_jitter_ms: Percentiles::of(&mut jitter_sample).map(|p| JitterStats {
                p50: p.p50,
                p95: p.p95,
                max: p.max,
                samples: p.count,
            }),
            vbv: self.vbv.as_ref().map(|run| VbvStats {
                buffer_kbit: run.buffer.buffer_bits() / 1000.0,
                max_rate_kbps: run.buffer.max_rate_bps() / 1000.0,
                fullness_kbit: run.buffer.fullness_bits() / 1000.0,
                min_fullness_kbit: run.min_fullness_bits / 1000.0,
                underflows: run.buffer.underflows(),
                rate_source: run.source,
            }),
            stream_time_s: extent_ms as f64 / 1000.0,
            window_s: window_ms as f64 / 1000.0,
        }
    }

    /// The ingest record: the most recent media messages, oldest first.
    pub fn frames(&self) -> Vec<FrameInfo> {
        self.ring.iter().map(|record| record.info).collect()
    }
}

fn kind_index(kind: FrameKind) -> usize {
    match kind {
        FrameKind::Video => 0,
        FrameKind::Audio => 1,
    }
}

fn classify(tag: Option<&MediaTag>) -> FrameClass {
    match tag {
        Some(t) if t.sequence_header => FrameClass::Seq,
        Some(t) if t.keyframe => FrameClass::Key,
        Some(t) if t.is_coded_frame() => FrameClass::Inter,
        _ => FrameClass::Other,
    }
}

/// The API's codec name: the ISO/E-RTMP FourCC where there is one ("avc1", "hvc1", "mp4a",
/// ".mp3", "av01", "Opus", …), the legacy FLV codec's name otherwise.
fn codec_name(codec: CodecId) -> Option<String> {
    match codec {
        CodecId::LegacyVideo(7) => Some("avc1".into()),
        CodecId::LegacyVideo(12) => Some("hvc1".into()),
        CodecId::LegacyAudio(10) => Some("mp4a".into()),
        CodecId::LegacyAudio(2 | 14) => Some(".mp3".into()),
        CodecId::FourCc(code) => Some(code.to_string()),
        CodecId::Unspecified => None,
        legacy => Some(legacy.name()),
    }
}

fn metadata_codec_name(codec: &MetadataCodec, legacy: fn(u8) -> CodecId) -> Option<String> {
    match codec {
        MetadataCodec::Legacy(id) => codec_name(legacy(*id)),
        MetadataCodec::FourCc(code) => codec_name(CodecId::FourCc(*code)),
        MetadataCodec::Text(text) => Some(text.chars().take(MAX_METADATA_TEXT_CHARS).collect()),
    }
}

/// A finite, positive value.
fn positive(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite() && *v > 0.0)
}

/// A picture dimension: positive and within `u32`, rounded.
fn dimension(value: Option<f64>) -> Option<u32> {
    positive(value)
        .map(f64::round)
        .filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX))
        .map(|v| v as u32)
}

/// An unwrapped timestamp as VBV time (negative counts as 0).
fn stream_micros(stream_ms: i64) -> Micros {
    Micros(u64::try_from(stream_ms).unwrap_or(0).saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flv::{parse_audio_tag, parse_video_tag, FourCc};
    use proptest::prelude::*;

    const AVC_SEQ: [u8; 9] = [0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x29];
    const AVC_KEY: [u8; 6] = [0x17, 0x01, 0, 0, 0, 0xAA];
    const AVC_INTER: [u8; 6] = [0x27, 0x01, 0, 0, 0, 0xAA];
    const AAC_RAW: [u8; 3] = [0xAF, 0x01, 0xDE];

    fn video(bytes: &[u8]) -> MediaTag {
        parse_video_tag(bytes).unwrap()
    }

    fn audio(bytes: &[u8]) -> MediaTag {
        parse_audio_tag(bytes).unwrap()
    }

    fn approx(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    /// 30 fps video for 10 s (timestamps rounded to ms as encoders do: 0, 33, 67, 100, …),
    /// keyframes of 20,000 B every 60 frames (2 s), inter frames of 2,000 B; 50 audio frames/s
    /// of 200 B; every message arrives exactly 7 ms after its timestamp.
    fn synthetic_stream(analyzer: &mut IngestAnalyzer) {
        let key = video(&AVC_KEY);
        let inter = video(&AVC_INTER);
        let aac = audio(&AAC_RAW);
        let mut events: Vec<(u32, FrameKind, usize)> = Vec::new();
        for i in 0..300u32 {
            let ts = (f64::from(i) * 1000.0 / 30.0).round() as u32;
            events.push((ts, FrameKind::Video, i as usize));
        }
        for k in 0..=498u32 {
            events.push((k * 20, FrameKind::Audio, 0));
        }
        events.sort_by_key(|&(ts, kind, _)| (ts, kind == FrameKind::Audio));
        for (ts, kind, i) in events {
            let arrival = Micros::from_ms(u64::from(ts) + 7);
            match kind {
                FrameKind::Video if i % 60 == 0 => {
                    analyzer.on_video(arrival, ts, 20_000, Some(&key))
                }
                FrameKind::Video => analyzer.on_video(arrival, ts, 2_000, Some(&inter)),
                FrameKind::Audio => analyzer.on_audio(arrival, ts, 200, Some(&aac)),
            }
        }
    }

    #[test]
    fn synthetic_30fps_stream() {
        let mut a = IngestAnalyzer::new(DEFAULT_RING_CAPACITY);
        synthetic_stream(&mut a);
        let s = a.stats();
        // Window (4967, 9967]: video frames 150..=299 (ts 5000..9967), audio 4980..9960.
        approx(s.window_s, 5.0);
        approx(s.fps.unwrap(), 30.0);
        // Keyframes 180 and 240 in the window: 2·20,000 + 148·2,000 = 336,000 B over 5 s.
        approx(s.video_kbps, 336_000.0 * 8.0 / 5000.0);
        approx(s.video_kbps, 537.6);
        // 250 audio frames × 200 B over 5 s.
        approx(s.audio_kbps, 80.0);
        approx(s.keyframe_interval_s.unwrap(), 2.0);
        approx(s.last_keyframe_interval_s.unwrap(), 2.0);
        assert!(!s.b_frames);
        assert_eq!(s.video_frames, 300);
        assert_eq!(s.audio_frames, 499);
        assert_eq!(s.keyframes, 5);
        assert_eq!(s.bytes, 5 * 20_000 + 295 * 2_000 + 499 * 200);
        assert_eq!(s.max_frame_bytes, 20_000);
        approx(s.mean_keyframe_bytes.unwrap(), 20_000.0);
        approx(s.mean_interframe_bytes.unwrap(), 2_000.0);
        approx(s.stream_time_s, 9.967);
        // All bytes but the first message (the 20,000 B keyframe at 0) over 9,967 ms.
        approx(s.total_kbps_mean, (789_800.0 - 20_000.0) * 8.0 / 9967.0);
        assert_eq!(
            s.arrival_jitter_ms,
            Some(JitterStats {
                p50: 0.0,
                p95: 0.0,
                max: 0.0,
                samples: 799
            })
        );
        assert_eq!(s.video_codec.as_deref(), Some("avc1"));
        assert_eq!(s.audio_codec.as_deref(), Some("mp4a"));
        assert_eq!(a.frames().len(), 799);
    }

    #[test]
    fn short_stream_measures_over_its_extent() {
        // Frames of 1,000 B at 0, 40, 80 ms: the window (0, 80] holds two of them.
        let mut a = IngestAnalyzer::new(10);
        let inter = video(&AVC_INTER);
        for ts in [0, 40, 80] {
            a.on_video(Micros::from_ms(u64::from(ts)), ts, 1_000, Some(&inter));
        }
        let s = a.stats();
        approx(s.window_s, 0.08);
        approx(s.fps.unwrap(), 25.0);
        approx(s.video_kbps, 200.0);
        approx(s.total_kbps_mean, 200.0);
        // One message: no extent, nothing measured.
        let mut a = IngestAnalyzer::new(10);
        a.on_video(Micros::ZERO, 0, 1_000, Some(&inter));
        let s = a.stats();
        assert_eq!(s.fps, None);
        assert_eq!(s.video_kbps, 0.0);
        assert_eq!(s.total_kbps_mean, 0.0);
    }

    #[test]
    fn window_never_reaches_past_the_record() {
        // 25 fps, 100 B each, ring of 50 frames (2 s): the window shrinks to what is held.
        let mut a = IngestAnalyzer::new(50);
        let inter = video(&AVC_INTER);
        for i in 0..500u32 {
            a.on_video(
                Micros::from_ms(u64::from(i) * 40),
                i * 40,
                100,
                Some(&inter),
            );
        }
        let s = a.stats();
        // Evicted up to ts 449·40; held 450..=499: window (17960, 19960] holds all 50.
        approx(s.window_s, 2.0);
        approx(s.fps.unwrap(), 25.0);
        approx(s.video_kbps, 20.0);
    }

    #[test]
    fn b_frames_from_composition_offsets() {
        let mut a = IngestAnalyzer::new(10);
        a.on_video(Micros::ZERO, 0, 100, Some(&video(&AVC_SEQ)));
        a.on_video(Micros::ZERO, 0, 100, Some(&video(&AVC_KEY)));
        a.on_video(Micros::ZERO, 33, 100, Some(&video(&AVC_INTER)));
        assert!(!a.stats().b_frames);
        let with_ct = video(&[0x27, 0x01, 0x00, 0x00, 0x42, 0xAA]);
        a.on_video(Micros::ZERO, 67, 100, Some(&with_ct));
        assert!(a.stats().b_frames);
        let frames = a.frames();
        assert_eq!(frames[3].composition_ms, 0x42);
        let classes: Vec<_> = frames.iter().map(|f| f.frame_type).collect();
        assert_eq!(
            classes,
            [
                FrameClass::Seq,
                FrameClass::Key,
                FrameClass::Inter,
                FrameClass::Inter
            ]
        );
    }

    /// 25 fps video, arriving 5 ms after each timestamp except `late` (+40 ms).
    fn jitter_run(frames: u32, late: &[u32]) -> (IngestAnalyzer, JitterStats) {
        let mut a = IngestAnalyzer::new(1000);
        let inter = video(&AVC_INTER);
        for i in 0..frames {
            let ts = i * 40;
            let extra = if late.contains(&i) { 40 } else { 0 };
            let arrival = Micros::from_ms(u64::from(ts) + 5 + extra);
            a.on_video(arrival, ts, 500, Some(&inter));
        }
        let jitter = a.stats().arrival_jitter_ms.unwrap();
        (a, jitter)
    }

    #[test]
    fn jitter_is_zero_for_paced_arrivals() {
        let (_, j) = jitter_run(100, &[]);
        assert_eq!((j.p50, j.p95, j.max, j.samples), (0.0, 0.0, 0.0, 100));
    }

    #[test]
    fn jitter_percentiles_with_a_late_frame() {
        // Ten frames, one 40 ms late: nearest rank p95 = the 10th of 10 sorted values.
        let (a, j) = jitter_run(10, &[6]);
        assert_eq!((j.p50, j.p95, j.max), (0.0, 40.0, 40.0));
        assert_eq!(a.frames()[6].arrival_jitter_ms, 40.0);
        assert_eq!(a.frames()[7].arrival_jitter_ms, 0.0);
        // 100 frames, one late: p95 is the 95th value, 0; the maximum still shows it.
        let (_, j) = jitter_run(100, &[50]);
        assert_eq!((j.p50, j.p95, j.max), (0.0, 0.0, 40.0));
        // 100 frames, six late: the 95th value is one of them.
        let (_, j) = jitter_run(100, &[10, 20, 30, 40, 50, 60]);
        assert_eq!((j.p50, j.p95, j.max), (0.0, 40.0, 40.0));
    }

    #[test]
    fn jitter_is_relative_to_the_best_so_far_per_kind() {
        let mut a = IngestAnalyzer::new(10);
        // Video offsets 5, 5, 3, 5 ms → jitter 0, 0, 0 (new best), 2.
        for (ts, offset) in [(0u32, 5u64), (40, 5), (80, 3), (120, 5)] {
            a.on_video(Micros::from_ms(u64::from(ts) + offset), ts, 1, None);
        }
        // Audio's constant 100 ms offset is its own baseline, not jitter.
        a.on_audio(Micros::from_ms(100), 0, 1, None);
        a.on_audio(Micros::from_ms(121), 21, 1, None);
        let jitter: Vec<f64> = a.frames().iter().map(|f| f.arrival_jitter_ms).collect();
        assert_eq!(jitter, [0.0, 0.0, 0.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn sequence_headers_do_not_set_the_jitter_baseline() {
        use crate::protocol::flv::parse_video_tag;
        let header = parse_video_tag(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]).unwrap();
        let key = parse_video_tag(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1]).unwrap();
        let inter = parse_video_tag(&[0x27, 1, 0, 0, 0, 0, 0, 0, 1]).unwrap();
        assert!(header.sequence_header && key.keyframe);
        let mut a = IngestAnalyzer::new(10);
        // The header arrives at once; coded frames 500 ms after their timestamps (the
        // encoder's delay), one of them 30 ms later still.
        a.on_video(Micros::from_ms(1), 0, 9, Some(&header));
        a.on_video(Micros::from_ms(500), 0, 9, Some(&key));
        a.on_video(Micros::from_ms(533), 33, 9, Some(&inter));
        a.on_video(Micros::from_ms(596), 66, 9, Some(&inter));
        let jitter: Vec<f64> = a.frames().iter().map(|f| f.arrival_jitter_ms).collect();
        assert_eq!(jitter, [0.0, 0.0, 0.0, 30.0]);
    }

    #[test]
    fn ffmpeg_declared_rate_is_read_in_its_1024_units() {
        let mut a = IngestAnalyzer::new(10);
        a.on_metadata(&MetadataFields {
            videodatarate: Some(2929.6875),
            encoder: Some("Lavf59.27.100".into()),
            ..MetadataFields::default()
        });
        let v = a.stats().declared_video_kbps.unwrap();
        assert!((v - 3000.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn vbv_against_a_hand_computation() {
        // 1,000 kb/s declared: B = 1,000,000 bits, R = 1,000,000 bit/s, F0 = 900,000.
        let mut a = IngestAnalyzer::new(100);
        a.on_metadata(&MetadataFields {
            videodatarate: Some(1000.0),
            ..MetadataFields::default()
        });
        a.on_video(Micros::ZERO, 0, 40, Some(&video(&AVC_SEQ)));
        // ts 0, 400,000 bits: no refill → 900,000 − 400,000 = 500,000.
        a.on_video(Micros::ZERO, 0, 50_000, Some(&video(&AVC_KEY)));
        a.on_audio(Micros::ZERO, 10, 300, Some(&audio(&AAC_RAW)));
        // ts 40, 80,000 bits: +40,000 → 540,000 − 80,000 = 460,000.
        a.on_video(Micros::ZERO, 40, 10_000, Some(&video(&AVC_INTER)));
        // ts 80, 800,000 bits: +40,000 → 500,000 − 800,000 < 0: underflow, clamped to 0.
        a.on_video(Micros::ZERO, 80, 100_000, Some(&video(&AVC_INTER)));
        let fullness: Vec<_> = a.frames().iter().map(|f| f.vbv_fullness_bits).collect();
        assert_eq!(
            fullness,
            [None, Some(500_000.0), None, Some(460_000.0), Some(0.0)]
        );
        let vbv = a.stats().vbv.unwrap();
        assert_eq!(
            vbv,
            VbvStats {
                buffer_kbit: 1000.0,
                max_rate_kbps: 1000.0,
                fullness_kbit: 0.0,
                min_fullness_kbit: 0.0,
                underflows: 1,
                rate_source: VbvRateSource::Declared,
            }
        );
    }

    #[test]
    fn late_metadata_replays_the_record() {
        let mut a = IngestAnalyzer::new(100);
        a.on_video(Micros::ZERO, 0, 50_000, Some(&video(&AVC_KEY)));
        a.on_video(Micros::ZERO, 40, 10_000, Some(&video(&AVC_INTER)));
        assert!(a.stats().vbv.is_none());
        assert_eq!(a.frames()[0].vbv_fullness_bits, None);
        a.on_metadata(&MetadataFields {
            videodatarate: Some(1000.0),
            ..MetadataFields::default()
        });
        let fullness: Vec<_> = a.frames().iter().map(|f| f.vbv_fullness_bits).collect();
        assert_eq!(fullness, [Some(500_000.0), Some(460_000.0)]);
        // The same declaration again changes nothing; a new one restarts at the new rate.
        a.on_metadata(&MetadataFields {
            videodatarate: Some(1000.0),
            ..MetadataFields::default()
        });
        assert_eq!(a.stats().vbv.unwrap().max_rate_kbps, 1000.0);
        a.on_metadata(&MetadataFields {
            videodatarate: Some(2000.0),
            ..MetadataFields::default()
        });
        // B = 2,000,000, F0 = 1,800,000 → 1,400,000; +80,000 − 80,000 → 1,400,000.
        let fullness: Vec<_> = a.frames().iter().map(|f| f.vbv_fullness_bits).collect();
        assert_eq!(fullness, [Some(1_400_000.0), Some(1_400_000.0)]);
    }

    #[test]
    fn vbv_rate_measured_without_metadata() {
        let mut a = IngestAnalyzer::new(DEFAULT_RING_CAPACITY);
        synthetic_stream(&mut a);
        let vbv = a.stats().vbv.unwrap();
        assert_eq!(vbv.rate_source, VbvRateSource::Measured);
        // Started at the frame at 5,000 ms: frames 1..=150 after the first hold keyframes 60
        // and 120: 2·20,000 + 148·2,000 = 336,000 B over 5,000 ms.
        approx(vbv.max_rate_kbps, 537.6);
        approx(vbv.buffer_kbit, 537.6);
        // The record was replayed: every coded video frame has a fullness.
        assert!(a
            .frames()
            .iter()
            .filter(|f| f.kind == FrameKind::Video)
            .all(|f| f.vbv_fullness_bits.is_some()));
        assert!(a
            .frames()
            .iter()
            .filter(|f| f.kind == FrameKind::Audio)
            .all(|f| f.vbv_fullness_bits.is_none()));
    }

    #[test]
    fn ring_is_bounded_and_oldest_first() {
        let mut a = IngestAnalyzer::new(5);
        for ts in 0..12u32 {
            a.on_video(Micros::from_ms(u64::from(ts)), ts, 10, None);
        }
        let ts: Vec<u32> = a.frames().iter().map(|f| f.timestamp_ms).collect();
        assert_eq!(ts, [7, 8, 9, 10, 11]);
        assert_eq!(a.stats().video_frames, 12);
        assert!(a.frames().iter().all(|f| f.frame_type == FrameClass::Other));

        let mut none = IngestAnalyzer::new(0);
        none.on_video(Micros::ZERO, 0, 10, None);
        none.on_video(Micros::ZERO, 40, 10, None);
        assert!(none.frames().is_empty());
        assert_eq!(none.stats().window_s, 0.0);
        assert_eq!(IngestAnalyzer::new(usize::MAX).capacity, MAX_RING_CAPACITY);
    }

    #[test]
    fn codecs_from_tags_then_metadata() {
        let mut a = IngestAnalyzer::new(10);
        a.on_metadata(&MetadataFields {
            videocodecid: Some(MetadataCodec::Legacy(7)),
            audiocodecid: Some(MetadataCodec::Text("a".repeat(1000))),
            width: Some(1280.0),
            height: Some(720.4),
            framerate: Some(29.97),
            audiodatarate: Some(160.0),
            videodatarate: Some(0.0),
            ..MetadataFields::default()
        });
        let s = a.stats();
        assert_eq!(s.video_codec.as_deref(), Some("avc1"));
        assert_eq!(
            s.audio_codec.map(|c| c.len()),
            Some(MAX_METADATA_TEXT_CHARS)
        );
        assert_eq!((s.width, s.height), (Some(1280), Some(720)));
        assert_eq!(s.declared_fps, Some(29.97));
        assert_eq!(s.declared_audio_kbps, Some(160.0));
        // A zero rate is no declaration: no VBV yet.
        assert_eq!(s.declared_video_kbps, None);
        assert!(s.vbv.is_none());

        // E-RTMP tags name the codec by FourCC and take precedence.
        let mut hevc = vec![0x80 | (1 << 4) | 1];
        hevc.extend_from_slice(b"hvc1");
        hevc.extend_from_slice(&[0, 0, 0, 1]);
        let mut opus = vec![0x91];
        opus.extend_from_slice(b"Opus");
        opus.push(1);
        a.on_video(Micros::ZERO, 0, 10, Some(&video(&hevc)));
        a.on_audio(Micros::ZERO, 0, 10, Some(&audio(&opus)));
        // A command frame names no codec and does not erase it.
        a.on_video(Micros::ZERO, 0, 2, Some(&video(&[0x80 | (5 << 4) | 1, 0])));
        let s = a.stats();
        assert_eq!(s.video_codec.as_deref(), Some("hvc1"));
        assert_eq!(s.audio_codec.as_deref(), Some("Opus"));
        assert_eq!(a.frames()[2].frame_type, FrameClass::Other);

        assert_eq!(codec_name(CodecId::LegacyAudio(2)).as_deref(), Some(".mp3"));
        assert_eq!(
            codec_name(CodecId::LegacyVideo(4)).as_deref(),
            Some("On2 VP6")
        );
        assert_eq!(
            metadata_codec_name(&MetadataCodec::FourCc(FourCc::AV1), CodecId::LegacyVideo)
                .as_deref(),
            Some("av01")
        );
    }

    #[test]
    fn timestamps_wrap_and_go_backwards() {
        // Across the 32-bit wrap: 0xFFFF_FFD8 (−40), then 0, 40 → 80 ms of stream time.
        let mut a = IngestAnalyzer::new(10);
        let inter = video(&AVC_INTER);
        for ts in [0xFFFF_FFB0u32, 0xFFFF_FFD8, 0, 40] {
            a.on_video(Micros::ZERO, ts, 100, Some(&inter));
        }
        let s = a.stats();
        approx(s.stream_time_s, 0.12);
        approx(s.fps.unwrap(), 25.0);

        // Backwards, huge sizes, no tags, arrival at the end of time: no panic, sane output.
        let mut a = IngestAnalyzer::new(10);
        a.on_metadata(&MetadataFields {
            videodatarate: Some(f64::MAX),
            width: Some(f64::NAN),
            height: Some(1e300),
            ..MetadataFields::default()
        });
        let key = video(&AVC_KEY);
        for (ts, size) in [(1000, 0), (500, usize::MAX), (0, 1), (u32::MAX, 7), (0, 0)] {
            a.on_video(Micros::MAX, ts, size, Some(&key));
            a.on_audio(Micros::ZERO, ts, size, None);
        }
        let s = a.stats();
        assert_eq!((s.width, s.height), (None, None));
        assert!(s.vbv.is_none(), "an infinite rate gives no VBV");
        assert_eq!(s.keyframes, 5);
        assert_eq!(s.bytes, u64::MAX);
        assert!(s.keyframe_interval_s.unwrap() >= 0.0);
        assert_eq!(a.frames().len(), 10);
        assert!(a.frames().iter().any(|f| f.size_bytes == u32::MAX));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Metadata(Option<f64>, Option<f64>, Option<f64>),
        Video(u64, u32, usize, Vec<u8>, bool),
        Audio(u64, u32, usize, Vec<u8>, bool),
    }

    fn number() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            any::<f64>().prop_map(Some),
            (0.0..10_000.0f64).prop_map(Some),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let media = (
            any::<u64>(),
            prop_oneof![any::<u32>(), 0..100_000u32],
            prop_oneof![any::<usize>(), 0..100_000usize],
            prop::collection::vec(any::<u8>(), 0..12),
            any::<bool>(),
        );
        prop_oneof![
            (number(), number(), number()).prop_map(|(r, w, f)| Op::Metadata(r, w, f)),
            media
                .clone()
                .prop_map(|(a, t, s, b, p)| Op::Video(a, t, s, b, p)),
            media.prop_map(|(a, t, s, b, p)| Op::Audio(a, t, s, b, p)),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_sequences_never_panic(
            capacity in 0..40usize,
            ops in prop::collection::vec(op(), 0..200),
        ) {
            let mut a = IngestAnalyzer::new(capacity);
            for op in ops {
                match op {
                    Op::Metadata(rate, width, fps) => a.on_metadata(&MetadataFields {
                        videodatarate: rate,
                        width,
                        framerate: fps,
                        ..MetadataFields::default()
                    }),
                    Op::Video(arrival, ts, size, bytes, with_tag) => {
                        let tag = parse_video_tag(&bytes).ok().filter(|_| with_tag);
                        a.on_video(Micros(arrival), ts, size, tag.as_ref());
                    }
                    Op::Audio(arrival, ts, size, bytes, with_tag) => {
                        let tag = parse_audio_tag(&bytes).ok().filter(|_| with_tag);
                        a.on_audio(Micros(arrival), ts, size, tag.as_ref());
                    }
                }
                prop_assert!(a.frames().len() <= capacity);
            }
            let s = a.stats();
            for value in [s.video_kbps, s.audio_kbps, s.total_kbps_mean, s.stream_time_s, s.window_s] {
                prop_assert!(value.is_finite() && value >= 0.0);
            }
            prop_assert!(s.window_s <= MEASUREMENT_WINDOW_MS as f64 / 1000.0);
            if let Some(fps) = s.fps {
                prop_assert!(fps.is_finite() && fps >= 0.0);
            }
            if let Some(j) = s.arrival_jitter_ms {
                prop_assert!(j.p50 >= 0.0 && j.p50 <= j.p95 && j.p95 <= j.max);
            }
            if let Some(v) = s.vbv {
                prop_assert!(v.fullness_kbit >= 0.0 && v.fullness_kbit <= v.buffer_kbit);
                prop_assert!(v.min_fullness_kbit <= v.fullness_kbit);
            }
            // Serialises (the API's JSON) without error.
            prop_assert!(serde_json::to_string(&s).is_ok());
            prop_assert!(serde_json::to_string(&a.frames()).is_ok());
        }
    }
}
