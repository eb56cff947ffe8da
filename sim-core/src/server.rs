//! Server state machines — the ones `native-server` runs on real streams and the simulator runs on
//! simulated ones: the GOP cache, the bounded per-subscriber queue with its drop policy, and write
//! coalescing.
//!
//! Both state machines are generic over the payload type `P`. The real server uses
//! `bytes::Bytes` (one buffer per media message, cloned by reference count into every subscriber's
//! queue); the simulator uses a frame id or a size. Sizes are never read from `P`: they come from
//! [`MediaInfo::size_bytes`], so the same decisions are taken whatever `P` is. Time is an argument
//! (`now`), never read from a clock.
//!
//! * [`GopCache`] — what a joining player is sent first: metadata, sequence headers, and the
//!   group of pictures since the last video keyframe. SRS keeps such a cache by default
//!   (`gop_cache on`); nginx-rtmp keeps none, so its players wait on average half a GOP for the
//!   next keyframe (`wait_key`). The cache makes start-up instant but the join offset, uniform on
//!   (0, GOP), **persists** as standing latency unless the player chases the live edge
//!   (MODELS.md §C, "GOP cache join").
//! * [`SubscriberQueue`] — one per player: what waits to be written to that player's socket, with
//!   a bound in bytes and in media time and a policy for when a slow player hits it
//!   ([`DropPolicy`]), plus write coalescing (SRS "merged write", `mw_latency`).
//!
//! Memory is bounded whatever a publisher sends: every container has a byte bound and a message
//! count bound ([`GOP_CACHE_MAX_MESSAGES`], [`QUEUE_MAX_MESSAGES`]), and all arithmetic saturates,
//! so timestamps that go backwards, repeat or jump, and sizes up to `u32::MAX`, are handled
//! without panicking. In steady state nothing allocates: queues are `VecDeque`s that keep their
//! capacity.

use crate::check::Checker;
use crate::units::Micros;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What a subscriber queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// Drop non-key video frames (and, if still full, audio) then skip to the next keyframe.
    DropToKeyframe,
    /// Disconnect the subscriber.
    Disconnect,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Keep the last GOP and send it to joining players (SRS `gop_cache`; nginx-rtmp has none).
    pub gop_cache: bool,
    /// Upper bound on the cached GOP in bytes (a pathological keyint cannot exhaust memory).
    pub gop_cache_max_bytes: u64,
    /// Per-subscriber queue bound in bytes of media waiting to be written.
    pub queue_max_bytes: u64,
    /// Per-subscriber queue bound in media time (newest − oldest timestamp), ms.
    pub queue_max_ms: f64,
    pub drop_policy: DropPolicy,
    /// Disconnect a subscriber that stays over its bound for this long (ms), whatever the policy.
    pub disconnect_after_ms: f64,
    /// Write-coalescing window in ms (SRS "merged write"); 0 = write each message at once.
    pub coalesce_ms: f64,
    /// Outbound RTMP chunk size in bytes (nginx-rtmp and OBS: 4096; spec default 128).
    pub chunk_size: u32,
    /// Per-message processing time in the server, µs.
    pub processing_us: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            gop_cache: true,
            gop_cache_max_bytes: 64 * 1024 * 1024,
            queue_max_bytes: 8 * 1024 * 1024,
            queue_max_ms: 10_000.0,
            drop_policy: DropPolicy::DropToKeyframe,
            disconnect_after_ms: 30_000.0,
            coalesce_ms: 0.0,
            chunk_size: 4096,
            processing_us: 20.0,
        }
    }
}

impl ServerConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.ensure(
            self.gop_cache_max_bytes > 0,
            "gop_cache_max_bytes",
            "must be greater than 0",
        );
        c.ensure(
            self.queue_max_bytes > 0,
            "queue_max_bytes",
            "must be greater than 0",
        );
        c.positive("queue_max_ms", self.queue_max_ms);
        c.positive("disconnect_after_ms", self.disconnect_after_ms);
        c.range("coalesce_ms", self.coalesce_ms, 0.0, 10_000.0);
        c.int_range("chunk_size", self.chunk_size as u64, 128, 0x7FFF_FFFF);
        c.range("processing_us", self.processing_us, 0.0, 1e6);
    }
}

// ---------------------------------------------------------------------------------------------
// Media messages
// ---------------------------------------------------------------------------------------------

/// The track a media message belongs to (RTMP message types 9, 8 and 18/15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Video,
    Audio,
    /// AMF data: `@setDataFrame`/`onMetaData` and friends.
    Data,
}

/// What the server knows about one media message: enough to decide without looking at the
/// payload.
///
/// `keyframe` is only meaningful for video (it is ignored on audio and data) and
/// `sequence_header` only for video and audio (a data message is always treated as metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub kind: MediaKind,
    /// Video IDR (or any codec's key/sync frame): decodable on its own.
    pub keyframe: bool,
    /// AVC/HEVC/AV1 decoder configuration or AAC AudioSpecificConfig: never dropped, always kept
    /// for joiners.
    pub sequence_header: bool,
    /// Stream timestamp (DTS) as sent by the publisher.
    pub timestamp: Micros,
    pub size_bytes: u32,
}

impl MediaInfo {
    /// A coded video frame (not a sequence header).
    pub const fn video(timestamp: Micros, size_bytes: u32, keyframe: bool) -> Self {
        MediaInfo {
            kind: MediaKind::Video,
            keyframe,
            sequence_header: false,
            timestamp,
            size_bytes,
        }
    }
    /// A coded audio frame (not a sequence header).
    pub const fn audio(timestamp: Micros, size_bytes: u32) -> Self {
        MediaInfo {
            kind: MediaKind::Audio,
            keyframe: false,
            sequence_header: false,
            timestamp,
            size_bytes,
        }
    }
    /// A video decoder configuration record (AVC/HEVC/AV1 sequence header).
    pub const fn video_header(timestamp: Micros, size_bytes: u32) -> Self {
        MediaInfo {
            kind: MediaKind::Video,
            keyframe: true,
            sequence_header: true,
            timestamp,
            size_bytes,
        }
    }
    /// An AAC AudioSpecificConfig (or another codec's audio configuration).
    pub const fn audio_header(timestamp: Micros, size_bytes: u32) -> Self {
        MediaInfo {
            kind: MediaKind::Audio,
            keyframe: false,
            sequence_header: true,
            timestamp,
            size_bytes,
        }
    }
    /// Stream metadata (`onMetaData`).
    pub const fn metadata(timestamp: Micros, size_bytes: u32) -> Self {
        MediaInfo {
            kind: MediaKind::Data,
            keyframe: false,
            sequence_header: false,
            timestamp,
            size_bytes,
        }
    }
    /// A video or audio sequence header.
    pub fn is_sequence_header(&self) -> bool {
        self.sequence_header && self.kind != MediaKind::Data
    }
    /// A video frame that starts a GOP (sequence headers excluded).
    pub fn is_keyframe(&self) -> bool {
        self.kind == MediaKind::Video && self.keyframe && !self.sequence_header
    }
    /// A video frame that needs earlier frames to decode (P/B, or any non-key frame).
    pub fn is_inter_frame(&self) -> bool {
        self.kind == MediaKind::Video && !self.keyframe && !self.sequence_header
    }
}

/// How the state machines treat a message (internal: derived once from [`MediaInfo`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Class {
    /// Video or audio sequence header.
    Header = 0,
    /// Metadata or other AMF data.
    Data = 1,
    /// Video keyframe.
    Key = 2,
    /// Video non-key frame.
    Inter = 3,
    /// Audio frame.
    Audio = 4,
}

impl Class {
    #[inline]
    fn of(info: &MediaInfo) -> Class {
        // Branch-free: indexed by kind, sequence_header, keyframe.
        const TABLE: [Class; 12] = [
            Class::Inter,  // video
            Class::Key,    // video, keyframe
            Class::Header, // video, sequence header
            Class::Header, // video, sequence header, keyframe flag
            Class::Audio,  // audio
            Class::Audio,  // audio, keyframe flag (ignored)
            Class::Header, // audio, sequence header
            Class::Header, // audio, sequence header, keyframe flag
            Class::Data,   // data, whatever the flags
            Class::Data,
            Class::Data,
            Class::Data,
        ];
        // MediaKind's discriminants are 0, 1, 2 in declaration order.
        let kind = info.kind as usize;
        TABLE[kind << 2 | (info.sequence_header as usize) << 1 | info.keyframe as usize]
    }
    /// Has a meaningful media timestamp (counts toward the queue's media duration).
    #[inline]
    fn is_timed(self) -> bool {
        matches!(self, Class::Key | Class::Inter | Class::Audio)
    }
    /// Video frame.
    #[inline]
    fn is_video(self) -> bool {
        matches!(self, Class::Key | Class::Inter)
    }
    /// Dropped before video when a keyframe or audio frame needs room: audio and data.
    #[inline]
    fn is_low(self) -> bool {
        matches!(self, Class::Audio | Class::Data)
    }
}

// ---------------------------------------------------------------------------------------------
// GOP cache
// ---------------------------------------------------------------------------------------------

/// Most messages a [`GopCache`] holds, whatever their size: a GOP of 10 s at 60 fps with 48 kHz AAC
/// is about 1,100 messages; SRS's own limit (`gop_cache_max_frames`) is 2,500. The count bound
/// keeps memory bounded even for a flood of zero-byte messages.
pub const GOP_CACHE_MAX_MESSAGES: usize = 16_384;

/// How much recent audio a [`GopCache`] keeps for a stream that has no video (default of
/// [`GopCache::with_audio_only_window`]). One second lets a player with VLC's default 1000 ms
/// network caching start at once; like a video GOP, it becomes standing latency.
pub const AUDIO_ONLY_WINDOW: Micros = Micros::from_secs(1);

/// What a joining player receives before the live stream: the last metadata, the last video and
/// audio sequence headers, and (when enabled) the current GOP.
///
/// **Behaviour.** Every message the publisher sends goes through [`GopCache::push`].
///
/// * Data messages replace the kept metadata (pass only `onMetaData`/`@setDataFrame` here if other
///   AMF data must not replace it). Sequence headers replace the kept header of their track, and
///   these are kept even when the cache is disabled (nginx-rtmp, which has no GOP cache, also sends
///   metadata and codec headers to late joiners).
/// * A video keyframe starts a new GOP: the cached one is dropped and the keyframe becomes the
///   first cached message; every video and audio message after it is appended. A new video
///   sequence header drops the cached GOP too (its frames were coded against the old one) and
///   caching resumes at the next keyframe. An audio sequence header does not.
/// * If appending would take the GOP over `max_bytes` (or [`GOP_CACHE_MAX_MESSAGES`]), the GOP is
///   dropped (metadata and headers stay) and nothing is cached until the next keyframe: a joiner
///   then gets the headers and waits for that keyframe, like an nginx-rtmp player.
/// * Audio-only streams (no video message or video header seen since the last [`clear`]): the
///   cache keeps a sliding window of the most recent audio instead, at most
///   [`AUDIO_ONLY_WINDOW`] of media time (newest − oldest timestamp) and at most `max_bytes`.
///   SRS instead detects pure audio after about a hundred audio messages without video and stops
///   caching; a window gives an audio-only player the same fast start a video player gets. The
///   first video message ends audio-only mode and empties the window (a video GOP must start with
///   a keyframe).
///
/// [`clear`]: GopCache::clear
///
/// **Limits.** Keyframes are trusted as flagged by the publisher (an open-GOP stream whose
/// "keyframes" are not IDRs gives joiners a broken first GOP, as in SRS). Only one video and one
/// audio track. Timestamps are not checked: a GOP is delimited by keyframes, not by time, so
/// timestamps going backwards only affect the audio-only window (whose duration then reads as 0
/// and is bounded by bytes and count alone).
#[derive(Debug, Clone)]
pub struct GopCache<P> {
    enabled: bool,
    max_bytes: u64,
    audio_window: Micros,
    metadata: Option<(MediaInfo, P)>,
    video_header: Option<(MediaInfo, P)>,
    audio_header: Option<(MediaInfo, P)>,
    /// The cached GOP (starts with a keyframe) or, in audio-only mode, the audio window.
    gop: VecDeque<(MediaInfo, P)>,
    gop_bytes: u64,
    video_seen: bool,
    /// A GOP is being collected: a keyframe was seen and the bound has not been hit since.
    collecting: bool,
    overflows: u64,
}

impl<P: Clone> GopCache<P> {
    /// A cache that keeps GOPs when `enabled`, bounded to `max_bytes` (a `max_bytes` of 0 caches
    /// nothing but metadata and headers).
    pub fn new(enabled: bool, max_bytes: u64) -> Self {
        GopCache {
            enabled,
            max_bytes,
            audio_window: AUDIO_ONLY_WINDOW,
            metadata: None,
            video_header: None,
            audio_header: None,
            gop: VecDeque::new(),
            gop_bytes: 0,
            video_seen: false,
            collecting: false,
            overflows: 0,
        }
    }

    /// From [`ServerConfig::gop_cache`] and [`ServerConfig::gop_cache_max_bytes`].
    pub fn from_config(cfg: &ServerConfig) -> Self {
        Self::new(cfg.gop_cache, cfg.gop_cache_max_bytes)
    }

    /// Sets how much media time the audio-only window keeps (default [`AUDIO_ONLY_WINDOW`]);
    /// `Micros::ZERO` keeps only the latest audio frame.
    pub fn with_audio_only_window(mut self, window: Micros) -> Self {
        self.audio_window = window;
        self
    }

    /// Every message the publisher sends passes through here (see the type's documentation for
    /// what is kept). O(1) amortized; allocates only while the GOP grows beyond any earlier one.
    pub fn push(&mut self, info: MediaInfo, payload: P) {
        match Class::of(&info) {
            Class::Data => self.metadata = Some((info, payload)),
            Class::Header if info.kind == MediaKind::Video => {
                self.video_header = Some((info, payload));
                self.video_seen = true;
                self.drop_gop();
            }
            Class::Header => self.audio_header = Some((info, payload)),
            _ if !self.enabled => {}
            Class::Key => {
                self.video_seen = true;
                self.drop_gop();
                self.collecting = true;
                self.append(info, payload);
            }
            Class::Inter => {
                if !self.video_seen {
                    // First video of a stream that looked audio-only: the window goes.
                    self.video_seen = true;
                    self.drop_gop();
                } else if self.collecting {
                    self.append(info, payload);
                }
            }
            Class::Audio => {
                if self.video_seen {
                    if self.collecting {
                        self.append(info, payload);
                    }
                } else {
                    self.append_audio_window(info, payload);
                }
            }
        }
    }

    /// What a joining player receives first, in order: metadata, video sequence header, audio
    /// sequence header (each if known), then the cached GOP (which starts with a keyframe) or the
    /// audio-only window. Allocates nothing.
    pub fn join_burst(&self) -> impl Iterator<Item = (&MediaInfo, &P)> {
        self.metadata
            .iter()
            .chain(self.video_header.iter())
            .chain(self.audio_header.iter())
            .chain(self.gop.iter())
            .map(|(info, payload)| (info, payload))
    }

    /// Number of messages [`GopCache::join_burst`] yields.
    pub fn join_burst_len(&self) -> usize {
        self.header_slots().count() + self.gop.len()
    }

    /// Bytes (by [`MediaInfo::size_bytes`]) [`GopCache::join_burst`] yields.
    pub fn join_burst_bytes(&self) -> u64 {
        self.header_slots().fold(self.gop_bytes, |acc, (i, _)| {
            acc.saturating_add(i.size_bytes as u64)
        })
    }

    fn header_slots(&self) -> impl Iterator<Item = &(MediaInfo, P)> {
        self.metadata
            .iter()
            .chain(self.video_header.iter())
            .chain(self.audio_header.iter())
    }

    /// Bytes in the cached GOP (or audio window): the part bounded by `max_bytes`. Metadata and
    /// sequence headers are not included (see [`GopCache::join_burst_bytes`]).
    pub fn cached_bytes(&self) -> u64 {
        self.gop_bytes
    }

    /// Messages in the cached GOP (or audio window), metadata and headers not included.
    pub fn cached_messages(&self) -> usize {
        self.gop.len()
    }

    /// The cache holds a GOP that starts with a video keyframe (a joiner can start decoding at
    /// once).
    pub fn has_keyframe(&self) -> bool {
        self.gop.front().is_some_and(|(info, _)| info.is_keyframe())
    }

    /// How many times a GOP was dropped for exceeding the bound.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// The publisher left: forget everything, metadata and headers included (the next publisher
    /// may use other codecs). Keeps the allocated capacity.
    pub fn clear(&mut self) {
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.drop_gop();
        self.video_seen = false;
    }

    fn drop_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
        self.collecting = false;
    }

    fn append(&mut self, info: MediaInfo, payload: P) {
        let bytes = self.gop_bytes.saturating_add(info.size_bytes as u64);
        if bytes > self.max_bytes || self.gop.len() >= GOP_CACHE_MAX_MESSAGES {
            self.drop_gop();
            self.overflows = self.overflows.saturating_add(1);
            return;
        }
        self.gop.push_back((info, payload));
        self.gop_bytes = bytes;
    }

    fn append_audio_window(&mut self, info: MediaInfo, payload: P) {
        self.gop.push_back((info, payload));
        self.gop_bytes = self.gop_bytes.saturating_add(info.size_bytes as u64);
        let newest = info.timestamp;
        while let Some((oldest, _)) = self.gop.front() {
            let too_long = newest.saturating_sub(oldest.timestamp) > self.audio_window;
            if !(too_long
                || self.gop_bytes > self.max_bytes
                || self.gop.len() > GOP_CACHE_MAX_MESSAGES)
            {
                break;
            }
            let size = oldest.size_bytes as u64;
            self.gop.pop_front();
            self.gop_bytes = self.gop_bytes.saturating_sub(size);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriber queue
// ---------------------------------------------------------------------------------------------

/// Most messages a [`SubscriberQueue`] holds, whatever their sizes and timestamps (a guard against
/// floods of tiny messages or frozen timestamps, which the byte and duration bounds let through).
/// 10 s of 60 fps video with AAC audio is about 1,100 messages.
pub const QUEUE_MAX_MESSAGES: usize = 16_384;

/// Most sequence headers a [`SubscriberQueue`] holds at once. Headers are outside the media bound
/// (they are never dropped to make room), so they need their own; a real stream has one or two
/// queued at a time.
pub const QUEUE_MAX_HEADERS: usize = 16;

/// Floor of the byte bound on queued sequence headers (the bound is the larger of this and
/// `queue_max_bytes`). Real headers are tens to hundreds of bytes.
pub const QUEUE_HEADER_BYTES_FLOOR: u64 = 1024 * 1024;

/// Write coalescing: once this many bytes are queued, flush without waiting for the coalescing
/// window. 64 KiB is a few TCP segments' worth of GSO and large enough that the per-`write`
/// syscall cost is small against the copy (BENCH.md: 128 KiB writes cost 4.5 % CPU per Gb/s
/// against 6.3 % for 11 KiB).
pub const FLUSH_BYTES: u64 = 64 * 1024;

/// A queue that has emptied keeps at most this many slots of capacity (a burst that grew it
/// beyond is given back, so one slow moment does not pin memory for the life of the subscriber).
const RETAINED_CAPACITY: usize = 4096;

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The queue's bound refused it, or it was discarded from the queue to make room.
    QueueFull,
    /// A video non-key frame whose reference chain is broken: the subscriber started without a
    /// keyframe (`wait_for_keyframe`), or an earlier frame of the GOP was dropped.
    WaitingForKeyframe,
    /// The subscriber was disconnected.
    Disconnected,
}

/// What [`SubscriberQueue::push`] did with the message it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    Dropped(DropReason),
    /// The subscriber must be disconnected (the message and everything queued are dropped; later
    /// pushes return `Dropped(Disconnected)`).
    Disconnect,
}

/// Counters of a [`SubscriberQueue`]. Every pushed message ends up in exactly one place:
/// `pushed = delivered + queued + dropped_full + dropped_waiting_key + dropped_disconnected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Messages offered to [`SubscriberQueue::push`].
    pub pushed: u64,
    pub pushed_bytes: u64,
    /// Messages taken by [`SubscriberQueue::pop`] or [`SubscriberQueue::pop_batch`].
    pub delivered: u64,
    pub delivered_bytes: u64,
    /// Dropped for space: refused on push, or discarded from the queue ([`Self::evicted`]).
    pub dropped_full: u64,
    /// Of `dropped_full`, those discarded after being queued (stale video at a keyframe, oldest
    /// audio, superseded sequence headers).
    pub evicted: u64,
    /// Video non-key frames dropped because their reference chain was broken.
    pub dropped_waiting_key: u64,
    /// Dropped because of (or after) a disconnect, including what was queued at that moment.
    pub dropped_disconnected: u64,
    pub dropped_bytes: u64,
    /// Peak of the queued media bytes (sequence headers, outside the bound, excluded).
    pub max_queued_bytes: u64,
    /// Peak of [`SubscriberQueue::queued_duration`] at a push.
    pub max_queued_duration: Micros,
    /// The queue asked for a disconnect.
    pub disconnected: bool,
}

#[derive(Debug, Clone)]
struct Entry<P> {
    info: MediaInfo,
    payload: P,
    pushed_at: Micros,
    /// Derived from `info` once (fits in padding for small payloads).
    class: Class,
}

/// `last_timed_ts`/`front_ts` before any audio/video message has been queued.
const UNTIMED_PLACEHOLDER: Micros = Micros::MAX;

// Bits of `SubscriberQueue::flags`.
const WAITING_FOR_KEYFRAME: u8 = 1;
const DISCONNECTED: u8 = 2;
const CONGESTED: u8 = 4;
/// No audio/video message queued yet (the first one fixes up `front_ts`).
const NO_TIMED_YET: u8 = 8;
/// Always set: makes the fast-path mask of headers and data always hit.
const ALWAYS: u8 = 16;

/// By [`Class`]: the flags that send a push to the slow path. Headers and data always take it
/// (they are rare); a non-key frame also takes it while waiting for a keyframe.
const SLOW_PATH_FLAGS: [u8; 5] = [
    ALWAYS,                                             // Header
    ALWAYS,                                             // Data
    DISCONNECTED | NO_TIMED_YET,                        // Key
    DISCONNECTED | NO_TIMED_YET | WAITING_FOR_KEYFRAME, // Inter
    DISCONNECTED | NO_TIMED_YET,                        // Audio
];

// Per-class accounting as masks and increments rather than a `match`: the hot path then has no
// data-dependent branch on the (irregular) audio/video interleaving.
/// By [`Class`] (media only): all ones for audio and data.
const LOW_MASK: [u64; 5] = [0, u64::MAX, 0, 0, u64::MAX];
/// By [`Class`] (media only): 1 for video frames.
const VIDEO_INC: [u16; 5] = [0, 0, 1, 1, 0];
/// By [`Class`]: flags a queued message clears.
const CLEARED_FLAGS: [u8; 5] = [
    !0,                                     // Header
    !0,                                     // Data
    !(WAITING_FOR_KEYFRAME | NO_TIMED_YET), // Key
    !NO_TIMED_YET,                          // Inter
    !NO_TIMED_YET,                          // Audio
];

/// The per-subscriber queue: media waiting to be written to one player, bounded, with a drop
/// policy for slow players and write coalescing.
///
/// **Bound.** Media (everything but sequence headers) is bounded by `queue_max_bytes` bytes, by
/// `queue_max_ms` of media time (timestamp of the newest message − that of the oldest, saturating
/// at 0 when timestamps go backwards; see [`SubscriberQueue::queued_duration`]) and by
/// [`QUEUE_MAX_MESSAGES`] messages. One exception, so that a giant
/// keyframe cannot wedge a stream: a message that exceeds the bound on its own is queued when no
/// other media is queued; the queue then holds that one message (plus headers) until it is popped.
/// Sequence headers are outside the media bound but have their own ([`QUEUE_MAX_HEADERS`], and
/// bytes ≤ max(`queue_max_bytes`, [`QUEUE_HEADER_BYTES_FLOOR`])); a header beyond that asks for a
/// disconnect under either policy.
///
/// Headers and data carry no meaningful timestamp (OBS sends them at 0): for the duration bound
/// they count at the timestamp of the audio/video message queued just before them.
///
/// **Drop policy** when a media message does not fit:
///
/// * [`DropPolicy::DropToKeyframe`] (the default) keeps the stream decodable while shedding load:
///   - a video **non-key frame** is dropped, and so is every following non-key frame until the next
///     keyframe (its references are gone). Frames already queued are kept: dropping a *suffix* of a
///     GOP in decode order never breaks a reference, with or without B-frames;
///   - a video **keyframe** is never refused: the queue discards every queued video frame (all
///     older, stale GOPs: the player skips ahead to the new keyframe) and the video sequence
///     headers superseded by a later one, then, if still needed, the oldest audio and data, then
///     queues the keyframe (alone, if it is oversized);
///   - an **audio** (or data) message makes room by discarding the oldest queued audio/data (live
///     audio beats stale audio); if that cannot make room because the queue is full of video, the
///     new message is dropped.
///
///   So the order of sacrifice is: non-key video, then stale video at a keyframe, then the oldest
///   audio; sequence headers are never dropped except when superseded. This follows nginx-rtmp's
///   live module in spirit (its `out_queue` drops disposable and inter frames before keyframes
///   and audio, and after a dropped frame waits for a keyframe) and SRS's queue shrink (which
///   keeps only the sequence headers when `queue_length` is exceeded), trading SRS's drop-all for a
///   drop that keeps what is still decodable.
/// * [`DropPolicy::Disconnect`]: the first media message that does not fit returns
///   [`PushOutcome::Disconnect`] (the oversized-alone exception still applies).
///
/// **Slow-subscriber disconnect**, whatever the policy: the queue is *congested* from the first
/// push its bound refuses until the writer drains it to at most half its byte and duration
/// bounds (hysteresis, so one pop that makes room for one frame does not reset it). A push that does
/// not fit while the queue has been congested for `disconnect_after_ms` returns
/// [`PushOutcome::Disconnect`]. A queue that the writer never drains (dead socket) therefore
/// disconnects at the first overflow `disconnect_after_ms` after the first one. (nginx-rtmp's
/// `drop_idle_publisher` is the publisher-side analogue: the server drives it with a timer, and
/// calls [`GopCache::clear`] when the publisher goes.)
///
/// **Start without a keyframe** (`wait_for_keyframe`, nginx-rtmp's `wait_key on`): a subscriber
/// that joins without a cached GOP drops video non-key frames until the first keyframe. Audio and
/// data flow meanwhile, as in nginx-rtmp (audio-only streams would otherwise never start).
///
/// **Write coalescing** (SRS merged write, [`ServerConfig::coalesce_ms`]): see
/// [`SubscriberQueue::flush_at`].
///
/// **Cost.** Push and pop are O(1) with no allocation once the deque has grown to its working
/// size; [`SubscriberQueue::pop_batch`] takes a flush-worth at once. Measured in release on this
/// project's 2.6 GHz EPYC VM, 385,000 messages through 100 queues with a `u32` payload: about
/// 7.5 ns per push + pop, against 2.3 ns for a bare `VecDeque` push_back + pop_front in the same
/// run (the difference is the bound, the accounting and the statistics; the path is
/// instruction-bound, so the hot fields sit in two cache lines and rarely changing ones are
/// written only when they change). Making room costs O(queue length) for the keyframe purge (once
/// per GOP at most, while overflowing) and O(position of the oldest audio) per discarded audio
/// frame (a handful in an interleaved stream).
///
/// **Limits.** Timestamps are taken as given (no unwrapping of 32-bit RTMP timestamps: the server
/// must pass extended timestamps). One video and one audio track. A stream whose keyframes are
/// rarer than the bound allows (keyint longer than `queue_max_ms`) degrades to keyframes and
/// audio for a slow player.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct SubscriberQueue<P> {
    // Hot: everything a push that fits and a pop touch, in the first two cache lines (`repr(C)`
    // keeps this order). With 100 subscribers that is 12.5 KiB of queue heads, so heads and the
    // live deque slots stay in L1.
    entries: VecDeque<Entry<P>>,
    /// Queued bytes, sequence headers excluded (those are in `header_bytes`).
    media_bytes: u64,
    max_bytes: u64,
    /// The oldest timestamp the duration bound counts (see `queued_duration`): set when a message
    /// enters an empty queue, moved to the last message taken by each pop, recounted from the
    /// queue when a push does not fit. Meaningless when empty.
    front_ts: Micros,
    max_duration: Micros,
    /// Timestamp of the last audio/video message queued; [`UNTIMED_PLACEHOLDER`] before one.
    last_timed_ts: Micros,
    /// When the queue reached [`FLUSH_BYTES`]; `Micros::MAX` when below.
    flush_due_since: Micros,
    /// Queued audio and data bytes.
    low_bytes: u64,
    delivered: u64,
    delivered_bytes: u64,
    max_queued_bytes: u64,
    max_queued_duration: Micros,
    video_count: u16,
    header_count: u8,
    flags: u8,
    // Cold: headers, configuration, the overflow path.
    header_bytes: u64,
    congested_since: Micros,
    header_max_bytes: u64,
    disconnect_after: Micros,
    coalesce: Micros,
    dropped_full: u64,
    evicted: u64,
    dropped_waiting_key: u64,
    dropped_disconnected: u64,
    dropped_bytes: u64,
    policy: DropPolicy,
}

impl<P: Clone> SubscriberQueue<P> {
    /// A queue with `cfg`'s bounds, policy and coalescing window. `wait_for_keyframe`: the
    /// subscriber starts without a cached GOP (cache off or empty), so video non-key frames are
    /// dropped until the first keyframe; audio flows.
    pub fn new(cfg: &ServerConfig, wait_for_keyframe: bool) -> Self {
        SubscriberQueue {
            entries: VecDeque::new(),
            media_bytes: 0,
            max_bytes: cfg.queue_max_bytes,
            front_ts: UNTIMED_PLACEHOLDER,
            max_duration: Micros::from_ms_f64(cfg.queue_max_ms),
            last_timed_ts: UNTIMED_PLACEHOLDER,
            flush_due_since: Micros::MAX,
            low_bytes: 0,
            delivered: 0,
            delivered_bytes: 0,
            max_queued_bytes: 0,
            max_queued_duration: Micros::ZERO,
            video_count: 0,
            header_count: 0,
            flags: ALWAYS
                | NO_TIMED_YET
                | if wait_for_keyframe {
                    WAITING_FOR_KEYFRAME
                } else {
                    0
                },
            header_bytes: 0,
            congested_since: Micros::ZERO,
            header_max_bytes: cfg.queue_max_bytes.max(QUEUE_HEADER_BYTES_FLOOR),
            disconnect_after: Micros::from_ms_f64(cfg.disconnect_after_ms),
            coalesce: Micros::from_ms_f64(cfg.coalesce_ms),
            dropped_full: 0,
            evicted: 0,
            dropped_waiting_key: 0,
            dropped_disconnected: 0,
            dropped_bytes: 0,
            policy: cfg.drop_policy,
        }
    }

    /// Offer a message at `now` (see the type's documentation for the bound and the policy).
    /// Messages discarded from the queue to make room are not reported; use
    /// [`SubscriberQueue::push_with_drops`] to see them.
    #[inline]
    pub fn push(&mut self, now: Micros, info: MediaInfo, payload: P) -> PushOutcome {
        self.push_with_drops(now, info, payload, |_, _, _| {})
    }

    /// [`SubscriberQueue::push`], calling `on_drop` with each *already queued* message it discards
    /// (to make room, or because of a disconnect), oldest first. The pushed message's own fate is
    /// the return value.
    #[inline]
    pub fn push_with_drops(
        &mut self,
        now: Micros,
        info: MediaInfo,
        payload: P,
        on_drop: impl FnMut(MediaInfo, P, DropReason),
    ) -> PushOutcome {
        let class = Class::of(&info);
        // The fast path: an audio/video frame that fits, in a live queue that has seen one.
        if self.flags & SLOW_PATH_FLAGS[class as usize] == 0
            && self.fits(info.size_bytes as u64, info.timestamp)
        {
            self.enqueue(now, info, payload, class, info.timestamp);
            return PushOutcome::Queued;
        }
        self.push_slow(now, info, payload, class, on_drop)
    }

    #[inline(never)]
    fn push_slow(
        &mut self,
        now: Micros,
        info: MediaInfo,
        payload: P,
        class: Class,
        mut on_drop: impl FnMut(MediaInfo, P, DropReason),
    ) -> PushOutcome {
        let size = info.size_bytes as u64;
        if self.flags & DISCONNECTED != 0 {
            self.count_drop(DropReason::Disconnected, size);
            return PushOutcome::Dropped(DropReason::Disconnected);
        }
        let duration_ts = if class.is_timed() {
            if self.flags & NO_TIMED_YET != 0 {
                // First timed message: headers/data queued before it count from here.
                self.front_ts = info.timestamp;
            }
            info.timestamp
        } else {
            self.last_timed_ts
        };

        if class == Class::Header {
            let fits = (self.header_count as usize) < QUEUE_MAX_HEADERS
                && self.header_bytes.saturating_add(size) <= self.header_max_bytes;
            if fits {
                self.enqueue(now, info, payload, class, duration_ts);
                return PushOutcome::Queued;
            }
            self.disconnect(size, &mut on_drop);
            return PushOutcome::Disconnect;
        }
        if class == Class::Inter && self.flags & WAITING_FOR_KEYFRAME != 0 {
            self.count_drop(DropReason::WaitingForKeyframe, size);
            return PushOutcome::Dropped(DropReason::WaitingForKeyframe);
        }
        if !self.fits(size, duration_ts) {
            // The fast path counts the duration from the last message written; be exact here.
            self.refresh_front_ts();
        }
        if self.fits(size, duration_ts) {
            self.enqueue(now, info, payload, class, duration_ts);
            return PushOutcome::Queued;
        }

        // Over the bound.
        if self.flags & CONGESTED == 0 {
            self.flags |= CONGESTED;
            self.congested_since = now;
        }
        if now.saturating_sub(self.congested_since) >= self.disconnect_after {
            self.disconnect(size, &mut on_drop);
            return PushOutcome::Disconnect;
        }
        let alone = self.media_len() == 0;
        match (self.policy, class) {
            (_, _) if alone => {
                // Oversized on its own: let it through rather than wedge the stream.
                self.enqueue(now, info, payload, class, duration_ts);
                PushOutcome::Queued
            }
            (DropPolicy::Disconnect, _) => {
                self.disconnect(size, &mut on_drop);
                PushOutcome::Disconnect
            }
            (DropPolicy::DropToKeyframe, Class::Inter) => {
                self.flags |= WAITING_FOR_KEYFRAME;
                self.count_drop(DropReason::QueueFull, size);
                PushOutcome::Dropped(DropReason::QueueFull)
            }
            (DropPolicy::DropToKeyframe, Class::Key) => {
                self.purge_video(&mut on_drop);
                self.evict_low_until_fits(size, duration_ts, &mut on_drop);
                // Fits now, or no other media is left and it goes in alone.
                self.enqueue(now, info, payload, class, duration_ts);
                PushOutcome::Queued
            }
            (DropPolicy::DropToKeyframe, _) => {
                // Audio or data. If even discarding every queued audio/data message could not
                // free enough bytes, discard nothing and drop this one.
                let hopeless = self.video_count > 0
                    && self
                        .media_bytes
                        .saturating_sub(self.low_bytes)
                        .saturating_add(size)
                        > self.max_bytes;
                if !hopeless {
                    self.evict_low_until_fits(size, duration_ts, &mut on_drop);
                    if self.video_count == 0 || self.fits(size, duration_ts) {
                        self.enqueue(now, info, payload, class, duration_ts);
                        return PushOutcome::Queued;
                    }
                }
                self.count_drop(DropReason::QueueFull, size);
                PushOutcome::Dropped(DropReason::QueueFull)
            }
        }
    }

    /// [`SubscriberQueue::push`] immediately followed by [`SubscriberQueue::pop`], for a writer
    /// whose socket has room, in the one case where that pop is certain to return the message
    /// just pushed: the queue is empty, writes are not coalesced, and the message is audio or
    /// video that fits (the push's fast path). Then it leaves the queue exactly as push + pop
    /// would (checked by a proptest) and returns `true`: the caller writes the message. In every
    /// other case it does nothing and returns `false`: push as usual.
    ///
    /// A writer fanning one message out to many idle subscribers saves the round trip through
    /// the deque.
    #[inline]
    pub fn pass_through(&mut self, info: MediaInfo) -> bool {
        let class = Class::of(&info);
        let size = info.size_bytes as u64;
        // Empty: no headers, no media bytes, flush due at once (`flush_at` = the push time).
        if !self.entries.is_empty()
            || self.coalesce != Micros::ZERO
            || self.flags & SLOW_PATH_FLAGS[class as usize] != 0
            || size > self.max_bytes
        {
            return false;
        }
        // (The push time does not matter: it only decides when a queued message is due.)
        // push: the empty queue's front and newest timestamps are this one's; the flags it
        // clears; the peaks (the duration of one message is 0).
        self.front_ts = info.timestamp;
        self.last_timed_ts = info.timestamp;
        let c = class as usize;
        if self.flags & !CLEARED_FLAGS[c] != 0 {
            self.flags &= CLEARED_FLAGS[c];
        }
        if size > self.max_queued_bytes {
            self.max_queued_bytes = size;
        }
        // pop: delivered, and the queue is empty again.
        self.delivered = self.delivered.wrapping_add(1);
        self.delivered_bytes = self.delivered_bytes.wrapping_add(size);
        self.after_delivery();
        true
    }

    /// Write coalescing (SRS merged write, [`ServerConfig::coalesce_ms`]): the earliest time the
    /// writer should flush, or `None` when the queue is empty. With a window of 0 it is the time
    /// the oldest queued message was pushed (write at once); otherwise that time + the window, or
    /// the time the queued media reached [`FLUSH_BYTES`] if earlier. A time at or before `now`
    /// means "flush now"; after a partial write (socket full) it is in the past, so the writer
    /// continues as soon as the socket is writable.
    ///
    /// SRS's `mw_latency` waits for that much *media time* to accumulate; this waits for *wall*
    /// time since the oldest message was queued. The two agree for a publisher that sends in real
    /// time; for a burst (a GOP-cache join) this one flushes the burst within one window.
    pub fn flush_at(&self) -> Option<Micros> {
        let front = self.entries.front()?;
        Some((front.pushed_at + self.coalesce).min(self.flush_due_since))
    }

    /// Take the next message to write (the writer calls this repeatedly when flushing or when
    /// the socket is writable). O(1).
    #[inline]
    pub fn pop(&mut self) -> Option<(MediaInfo, P)> {
        let e = self.entries.pop_front()?;
        if e.class.is_timed() {
            // The oldest timestamp still counted is the last one written (see `front_ts`).
            self.front_ts = e.info.timestamp;
        }
        let size = e.info.size_bytes as u64;
        self.account_removal(e.class, size);
        self.delivered = self.delivered.wrapping_add(1);
        self.delivered_bytes = self.delivered_bytes.wrapping_add(size);
        self.after_delivery();
        Some((e.info, e.payload))
    }

    /// Takes messages from the front while fewer than `max_bytes` have been taken (at least one
    /// when the queue is not empty; `u64::MAX` takes everything), handing each to `write`, in
    /// order. Same result as calling [`SubscriberQueue::pop`] repeatedly, but the bookkeeping is
    /// done once per batch: the cheap way for a writer to flush. Returns the number of messages
    /// and bytes taken.
    #[inline]
    pub fn pop_batch(
        &mut self,
        max_bytes: u64,
        mut write: impl FnMut(MediaInfo, P),
    ) -> (usize, u64) {
        let (mut count, mut bytes, mut low_bytes) = (0usize, 0u64, 0u64);
        let (mut videos, mut headers, mut header_bytes) = (0u16, 0u8, 0u64);
        let mut front_ts = self.front_ts;
        while count == 0 || bytes < max_bytes {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            let size = e.info.size_bytes as u64;
            let c = e.class as usize;
            if e.class == Class::Header {
                headers = headers.wrapping_add(1);
                header_bytes = header_bytes.wrapping_add(size);
            } else {
                low_bytes = low_bytes.wrapping_add(size & LOW_MASK[c]);
                videos = videos.wrapping_add(VIDEO_INC[c]);
            }
            if e.class.is_timed() {
                front_ts = e.info.timestamp;
            }
            count += 1;
            bytes = bytes.wrapping_add(size);
            write(e.info, e.payload);
        }
        self.front_ts = front_ts;
        self.media_bytes = self
            .media_bytes
            .wrapping_sub(bytes.wrapping_sub(header_bytes));
        self.low_bytes = self.low_bytes.wrapping_sub(low_bytes);
        self.video_count = self.video_count.wrapping_sub(videos);
        if headers > 0 {
            self.header_count = self.header_count.wrapping_sub(headers);
            self.header_bytes = self.header_bytes.wrapping_sub(header_bytes);
        }
        self.delivered = self.delivered.wrapping_add(count as u64);
        self.delivered_bytes = self.delivered_bytes.wrapping_add(bytes);
        self.after_delivery();
        (count, bytes)
    }

    /// Coalescing, congestion and capacity upkeep after messages left the front.
    #[inline]
    fn after_delivery(&mut self) {
        if self.flush_due_since != Micros::MAX && self.media_bytes < FLUSH_BYTES {
            self.flush_due_since = Micros::MAX;
        }
        if self.flags & CONGESTED != 0 {
            self.maybe_uncongest();
        }
        if self.entries.capacity() > RETAINED_CAPACITY && self.entries.is_empty() {
            self.give_back_capacity();
        }
    }

    #[cold]
    fn give_back_capacity(&mut self) {
        self.entries.shrink_to(RETAINED_CAPACITY);
    }

    /// Bytes queued (by [`MediaInfo::size_bytes`]), sequence headers included.
    pub fn queued_bytes(&self) -> u64 {
        self.media_bytes.saturating_add(self.header_bytes)
    }

    /// Bytes of the queued sequence headers (outside the media bound).
    pub fn queued_header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// Messages queued, sequence headers included.
    pub fn queued_len(&self) -> usize {
        self.entries.len()
    }

    /// Media time queued: timestamp of the newest audio/video message queued − that of the
    /// oldest one not yet written; 0 when timestamps went backwards. Once the writer has taken
    /// messages, "oldest" is the last one it took until a push finds the queue over its bound
    /// (then it is recounted from the queue): this over-counts by at most one message interval
    /// and spares `pop` a look at the next entry.
    pub fn queued_duration(&self) -> Micros {
        if self.entries.is_empty() || self.flags & NO_TIMED_YET != 0 {
            Micros::ZERO
        } else {
            self.last_timed_ts.saturating_sub(self.front_ts)
        }
    }

    /// Video non-key frames are being dropped until the next keyframe.
    pub fn is_waiting_for_keyframe(&self) -> bool {
        self.flags & WAITING_FOR_KEYFRAME != 0
    }

    /// The queue asked for a disconnect; it is empty and drops everything pushed.
    pub fn is_disconnected(&self) -> bool {
        self.flags & DISCONNECTED != 0
    }

    /// Since when the queue has been over its bound without being drained (see the type's
    /// documentation), if it is.
    pub fn congested_since(&self) -> Option<Micros> {
        (self.flags & CONGESTED != 0).then_some(self.congested_since)
    }

    pub fn stats(&self) -> QueueStats {
        let dropped = self
            .dropped_full
            .saturating_add(self.dropped_waiting_key)
            .saturating_add(self.dropped_disconnected);
        QueueStats {
            // Every message pushed is delivered, queued or dropped: counting pushes on the hot
            // path would be redundant.
            pushed: self
                .delivered
                .saturating_add(self.entries.len() as u64)
                .saturating_add(dropped),
            pushed_bytes: self
                .delivered_bytes
                .saturating_add(self.queued_bytes())
                .saturating_add(self.dropped_bytes),
            delivered: self.delivered,
            delivered_bytes: self.delivered_bytes,
            dropped_full: self.dropped_full,
            evicted: self.evicted,
            dropped_waiting_key: self.dropped_waiting_key,
            dropped_disconnected: self.dropped_disconnected,
            dropped_bytes: self.dropped_bytes,
            max_queued_bytes: self.max_queued_bytes,
            max_queued_duration: self.max_queued_duration,
            disconnected: self.is_disconnected(),
        }
    }

    // -- internals ------------------------------------------------------------------------------

    #[inline]
    fn media_len(&self) -> usize {
        self.entries
            .len()
            .saturating_sub(self.header_count as usize)
    }

    /// A media message of `size` bytes counting at `duration_ts` fits within the bound. The
    /// newest timestamp is taken to be the new message's.
    #[inline]
    fn fits(&self, size: u64, duration_ts: Micros) -> bool {
        self.entries.len() < QUEUE_MAX_MESSAGES
            && self.media_bytes + size <= self.max_bytes
            && (self.entries.is_empty()
                || duration_ts.saturating_sub(self.front_ts) <= self.max_duration)
    }

    /// Queues a message. Counters use wrapping arithmetic: they cannot overflow (at most
    /// [`QUEUE_MAX_MESSAGES`] entries of at most `u32::MAX` bytes; cumulative byte counts would
    /// need exabytes), and every removal subtracts exactly what the insertion added.
    #[inline]
    fn enqueue(
        &mut self,
        now: Micros,
        info: MediaInfo,
        payload: P,
        class: Class,
        duration_ts: Micros,
    ) {
        let size = info.size_bytes as u64;
        if self.entries.is_empty() {
            self.front_ts = duration_ts;
        }
        self.entries.push_back(Entry {
            info,
            payload,
            pushed_at: now,
            class,
        });
        if class == Class::Header {
            self.header_count = self.header_count.wrapping_add(1);
            self.header_bytes = self.header_bytes.wrapping_add(size);
            return;
        }
        // Stores are what bounds this path (about one per cycle), so fields that rarely change
        // are written only when they do.
        let c = class as usize;
        self.media_bytes = self.media_bytes.wrapping_add(size);
        self.low_bytes = self.low_bytes.wrapping_add(size & LOW_MASK[c]);
        self.video_count = self.video_count.wrapping_add(VIDEO_INC[c]);
        if self.flags & !CLEARED_FLAGS[c] != 0 {
            self.flags &= CLEARED_FLAGS[c];
        }
        // For data, `duration_ts` is `last_timed_ts` already.
        self.last_timed_ts = duration_ts;
        if self.media_bytes >= FLUSH_BYTES && self.flush_due_since == Micros::MAX {
            self.flush_due_since = now;
        }
        if self.media_bytes > self.max_queued_bytes {
            self.max_queued_bytes = self.media_bytes;
        }
        let duration = duration_ts.saturating_sub(self.front_ts);
        if duration > self.max_queued_duration {
            self.max_queued_duration = duration;
        }
    }

    #[inline]
    fn account_removal(&mut self, class: Class, size: u64) {
        if class == Class::Header {
            self.header_count = self.header_count.wrapping_sub(1);
            self.header_bytes = self.header_bytes.wrapping_sub(size);
            return;
        }
        let c = class as usize;
        self.media_bytes = self.media_bytes.wrapping_sub(size);
        self.low_bytes = self.low_bytes.wrapping_sub(size & LOW_MASK[c]);
        self.video_count = self.video_count.wrapping_sub(VIDEO_INC[c]);
    }

    /// Recounts `front_ts` from the queue itself: the first audio/video timestamp from the front
    /// (an untimed front's own would be a little earlier), or the last one queued if none.
    fn refresh_front_ts(&mut self) {
        if let Some(e) = self.entries.iter().find(|e| e.class.is_timed()) {
            self.front_ts = e.info.timestamp;
        } else if !self.entries.is_empty() {
            self.front_ts = self.last_timed_ts;
        }
    }

    #[cold]
    fn maybe_uncongest(&mut self) {
        if self.media_bytes <= self.max_bytes / 2
            && self.queued_duration().0 <= self.max_duration.0 / 2
        {
            self.flags &= !CONGESTED;
        }
    }

    fn count_drop(&mut self, reason: DropReason, size: u64) {
        match reason {
            DropReason::QueueFull => self.dropped_full = self.dropped_full.saturating_add(1),
            DropReason::WaitingForKeyframe => {
                self.dropped_waiting_key = self.dropped_waiting_key.saturating_add(1)
            }
            DropReason::Disconnected => {
                self.dropped_disconnected = self.dropped_disconnected.saturating_add(1)
            }
        }
        self.dropped_bytes = self.dropped_bytes.saturating_add(size);
    }

    /// Discard a queued entry (already removed from the deque; the caller refreshes
    /// `front_ts`).
    fn discard(
        &mut self,
        e: Entry<P>,
        reason: DropReason,
        on_drop: &mut impl FnMut(MediaInfo, P, DropReason),
    ) {
        let size = e.info.size_bytes as u64;
        self.account_removal(e.class, size);
        if reason == DropReason::QueueFull {
            self.evicted = self.evicted.saturating_add(1);
        }
        self.count_drop(reason, size);
        on_drop(e.info, e.payload, reason);
    }

    /// Discards every queued video frame, and every queued video sequence header but the last,
    /// keeping the order of the rest. O(len), no allocation (rotates the deque once).
    fn purge_video(&mut self, on_drop: &mut impl FnMut(MediaInfo, P, DropReason)) {
        let is_video_header =
            |e: &Entry<P>| e.class == Class::Header && e.info.kind == MediaKind::Video;
        let last_video_header = self.entries.iter().rposition(is_video_header);
        for i in 0..self.entries.len() {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            let superseded_header = is_video_header(&e) && Some(i) != last_video_header;
            if e.class.is_video() || superseded_header {
                self.discard(e, DropReason::QueueFull, on_drop);
            } else {
                self.entries.push_back(e);
            }
        }
        self.refresh_front_ts();
    }

    /// Discards the oldest audio/data messages until a message of `size` at `duration_ts` fits,
    /// or until discarding audio/data cannot help: none is left, or only the duration is over
    /// and the oldest timed message is video.
    fn evict_low_until_fits(
        &mut self,
        size: u64,
        duration_ts: Micros,
        on_drop: &mut impl FnMut(MediaInfo, P, DropReason),
    ) {
        while !self.fits(size, duration_ts) {
            let over_bytes = self.entries.len() >= QUEUE_MAX_MESSAGES
                || self.media_bytes.saturating_add(size) > self.max_bytes;
            let victim = if over_bytes {
                self.entries.iter().position(|e| e.class.is_low())
            } else {
                // Only the duration: the oldest timed message must go, if it is audio.
                self.entries
                    .iter()
                    .position(|e| e.class.is_timed())
                    .filter(|&i| self.entries.get(i).is_some_and(|e| e.class.is_low()))
            };
            let Some(e) = victim.and_then(|i| self.entries.remove(i)) else {
                break;
            };
            self.discard(e, DropReason::QueueFull, on_drop);
            self.refresh_front_ts();
        }
    }

    /// Drops everything queued and the message being pushed (`size` bytes); later pushes are
    /// dropped.
    fn disconnect(&mut self, size: u64, on_drop: &mut impl FnMut(MediaInfo, P, DropReason)) {
        while let Some(e) = self.entries.pop_front() {
            self.discard(e, DropReason::Disconnected, on_drop);
        }
        self.entries = VecDeque::new();
        self.count_drop(DropReason::Disconnected, size);
        self.flags = (self.flags | DISCONNECTED) & !CONGESTED;
        self.flush_due_since = Micros::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Micros {
        Micros::from_ms(v)
    }

    fn cfg(max_bytes: u64, max_ms: f64, policy: DropPolicy) -> ServerConfig {
        ServerConfig {
            queue_max_bytes: max_bytes,
            queue_max_ms: max_ms,
            drop_policy: policy,
            ..ServerConfig::default()
        }
    }

    fn key(ts: u64, size: u32) -> MediaInfo {
        MediaInfo::video(ms(ts), size, true)
    }
    fn inter(ts: u64, size: u32) -> MediaInfo {
        MediaInfo::video(ms(ts), size, false)
    }
    fn audio(ts: u64, size: u32) -> MediaInfo {
        MediaInfo::audio(ms(ts), size)
    }

    fn burst(c: &GopCache<&'static str>) -> Vec<&'static str> {
        c.join_burst().map(|(_, p)| *p).collect()
    }

    fn drain<P: Clone>(q: &mut SubscriberQueue<P>) -> Vec<P> {
        std::iter::from_fn(|| q.pop().map(|(_, p)| p)).collect()
    }

    fn accounted(q: &SubscriberQueue<impl Clone>) -> u64 {
        let s = q.stats();
        s.delivered
            + q.queued_len() as u64
            + s.dropped_full
            + s.dropped_waiting_key
            + s.dropped_disconnected
    }

    // -- GOP cache ------------------------------------------------------------------------------

    #[test]
    fn gop_cache_keeps_headers_and_the_gop_since_the_last_keyframe() {
        let mut c = GopCache::new(true, 1 << 20);
        c.push(MediaInfo::metadata(ms(0), 300), "meta");
        c.push(MediaInfo::video_header(ms(0), 40), "vh");
        c.push(MediaInfo::audio_header(ms(0), 5), "ah");
        // Audio before the first keyframe of a video stream cannot start a GOP.
        c.push(audio(0, 200), "a0");
        assert_eq!(c.cached_messages(), 0);
        assert!(!c.has_keyframe());
        c.push(key(0, 5000), "I1");
        c.push(audio(10, 200), "a1");
        c.push(inter(33, 1000), "P1");
        assert_eq!((c.cached_messages(), c.cached_bytes()), (3, 6200));
        assert!(c.has_keyframe());
        c.push(key(67, 6000), "I2");
        c.push(audio(70, 200), "a2");
        c.push(inter(100, 900), "P2");
        assert_eq!((c.cached_messages(), c.cached_bytes()), (3, 7100));
        assert_eq!(burst(&c), ["meta", "vh", "ah", "I2", "a2", "P2"]);
        assert_eq!(c.join_burst_len(), 6);
        assert_eq!(c.join_burst_bytes(), 7100 + 300 + 40 + 5);
        // A newer header replaces the older one in place.
        c.push(MediaInfo::audio_header(ms(100), 7), "ah2");
        c.push(MediaInfo::metadata(ms(100), 310), "meta2");
        assert_eq!(burst(&c), ["meta2", "vh", "ah2", "I2", "a2", "P2"]);
    }

    #[test]
    fn gop_cache_overflow_drops_the_gop_but_keeps_headers() {
        let mut c = GopCache::new(true, 10_000);
        c.push(MediaInfo::metadata(ms(0), 300), "meta");
        c.push(MediaInfo::video_header(ms(0), 40), "vh");
        c.push(MediaInfo::audio_header(ms(0), 5), "ah");
        c.push(key(0, 6000), "I1");
        c.push(inter(33, 3000), "P1");
        assert_eq!(c.cached_bytes(), 9000);
        c.push(inter(67, 2000), "P2"); // 11,000 > 10,000
        assert_eq!((c.cached_messages(), c.cached_bytes()), (0, 0));
        assert!(!c.has_keyframe());
        assert_eq!(c.overflows(), 1);
        assert_eq!(burst(&c), ["meta", "vh", "ah"]);
        // Nothing is cached until the next keyframe.
        c.push(inter(100, 100), "P3");
        c.push(audio(110, 100), "a");
        assert_eq!(c.cached_messages(), 0);
        c.push(key(133, 5000), "I2");
        c.push(inter(167, 100), "P4");
        assert_eq!(burst(&c), ["meta", "vh", "ah", "I2", "P4"]);
        // A keyframe larger than the bound on its own is not cached at all.
        c.push(key(200, 20_000), "I3");
        assert_eq!(c.cached_messages(), 0);
        assert_eq!(c.overflows(), 2);
        assert_eq!(burst(&c), ["meta", "vh", "ah"]);
    }

    #[test]
    fn gop_cache_off_keeps_only_metadata_and_headers() {
        let mut c = GopCache::from_config(&ServerConfig {
            gop_cache: false,
            ..ServerConfig::default()
        });
        c.push(MediaInfo::metadata(ms(0), 300), "meta");
        c.push(MediaInfo::video_header(ms(0), 40), "vh");
        c.push(MediaInfo::audio_header(ms(0), 5), "ah");
        c.push(key(0, 6000), "I1");
        c.push(audio(10, 200), "a1");
        c.push(inter(33, 1000), "P1");
        assert_eq!(c.cached_messages(), 0);
        assert!(!c.has_keyframe());
        assert_eq!(burst(&c), ["meta", "vh", "ah"]);
        // Audio-only streams get no window either.
        let mut a = GopCache::new(false, 1 << 20);
        a.push(audio(0, 100), "a");
        assert_eq!(a.cached_messages(), 0);
    }

    #[test]
    fn a_new_video_sequence_header_restarts_the_gop() {
        let mut c = GopCache::new(true, 1 << 20);
        c.push(MediaInfo::video_header(ms(0), 40), "vh1");
        c.push(key(0, 1000), "I1");
        c.push(inter(33, 100), "P1");
        c.push(MediaInfo::video_header(ms(67), 41), "vh2");
        assert_eq!(c.cached_messages(), 0);
        c.push(inter(67, 100), "P2");
        assert_eq!(c.cached_messages(), 0);
        c.push(key(100, 1000), "I2");
        assert_eq!(burst(&c), ["vh2", "I2"]);
    }

    #[test]
    fn audio_only_stream_keeps_a_one_second_window() {
        let mut c = GopCache::new(true, 1 << 20);
        c.push(MediaInfo::audio_header(ms(0), 5), "ah");
        for i in 0..=150u64 {
            c.push(audio(i * 20, 100), "a");
        }
        // Newest 3000 ms: timestamps 2000..=3000 stay (51 frames).
        assert_eq!((c.cached_messages(), c.cached_bytes()), (51, 5100));
        assert_eq!(c.join_burst().next().map(|(_, p)| *p), Some("ah"));
        assert_eq!(
            c.join_burst().nth(1).map(|(i, _)| i.timestamp),
            Some(ms(2000))
        );
        assert!(!c.has_keyframe());
        // The byte bound trims the window too.
        let mut small = GopCache::new(true, 1000);
        for i in 0..20u64 {
            small.push(audio(i * 20, 300), "a");
        }
        assert_eq!((small.cached_messages(), small.cached_bytes()), (3, 900));
        // Video appears: the window goes; the GOP starts at the first keyframe.
        c.push(inter(3010, 500), "P");
        assert_eq!(c.cached_messages(), 0);
        c.push(audio(3020, 100), "a");
        assert_eq!(c.cached_messages(), 0);
        c.push(key(3033, 5000), "I");
        c.push(audio(3040, 100), "a");
        assert!(c.has_keyframe());
        assert_eq!(c.cached_messages(), 2);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut c = GopCache::new(true, 1 << 20);
        c.push(MediaInfo::metadata(ms(0), 300), "meta");
        c.push(MediaInfo::video_header(ms(0), 40), "vh");
        c.push(key(0, 1000), "I");
        c.clear();
        assert_eq!(c.join_burst_len(), 0);
        assert_eq!(c.join_burst_bytes(), 0);
        // Back to "no video seen": audio is windowed again.
        c.push(audio(0, 10), "a");
        assert_eq!(c.cached_messages(), 1);
    }

    // -- subscriber queue -----------------------------------------------------------------------

    #[test]
    fn queue_is_bounded_by_bytes() {
        let mut q = SubscriberQueue::new(&cfg(1000, 10_000.0, DropPolicy::DropToKeyframe), false);
        for (i, ts) in [0, 20, 40, 60].into_iter().enumerate() {
            assert_eq!(q.push(ms(0), audio(ts, 300), i), PushOutcome::Queued);
        }
        // The fourth evicted the oldest.
        assert_eq!((q.queued_len(), q.queued_bytes()), (3, 900));
        assert_eq!((q.stats().dropped_full, q.stats().evicted), (1, 1));
        assert_eq!(drain(&mut q), [1, 2, 3]);
        // Video non-key frames are refused instead.
        let mut q = SubscriberQueue::new(&cfg(1000, 10_000.0, DropPolicy::DropToKeyframe), false);
        assert_eq!(q.push(ms(0), key(0, 600), 0), PushOutcome::Queued);
        assert_eq!(q.push(ms(0), inter(33, 400), 1), PushOutcome::Queued);
        assert_eq!(
            q.push(ms(0), inter(67, 1), 2),
            PushOutcome::Dropped(DropReason::QueueFull)
        );
        assert_eq!(q.queued_bytes(), 1000);
        assert_eq!(accounted(&q), q.stats().pushed);
    }

    #[test]
    fn queue_is_bounded_by_media_duration() {
        let mut q = SubscriberQueue::new(&cfg(1 << 20, 100.0, DropPolicy::DropToKeyframe), false);
        for ts in (0..=120).step_by(20) {
            assert_eq!(q.push(ms(0), audio(ts, 10), ts), PushOutcome::Queued);
        }
        assert_eq!(q.queued_duration(), ms(100));
        assert_eq!(q.stats().max_queued_duration, ms(100));
        assert_eq!(drain(&mut q), [20, 40, 60, 80, 100, 120]);
    }

    #[test]
    fn audio_is_not_discarded_when_it_cannot_help_the_duration() {
        let mut q = SubscriberQueue::new(&cfg(1 << 20, 100.0, DropPolicy::DropToKeyframe), false);
        q.push(ms(0), key(0, 1000), 0);
        for ts in [10, 30, 50, 70, 90] {
            assert_eq!(q.push(ms(0), audio(ts, 10), ts), PushOutcome::Queued);
        }
        // 110 − 0 > 100 ms and the oldest is the keyframe: discarding audio cannot help.
        assert_eq!(
            q.push(ms(0), audio(110, 10), 110),
            PushOutcome::Dropped(DropReason::QueueFull)
        );
        assert_eq!(q.stats().evicted, 0);
        // Once the keyframe is written, the oldest queued is audio at 10 ms: 110 fits.
        assert_eq!(q.pop().map(|(_, p)| p), Some(0));
        assert_eq!(q.push(ms(0), audio(110, 10), 111), PushOutcome::Queued);
        // And audio at the front is discarded when the duration needs it.
        assert_eq!(q.push(ms(0), audio(125, 10), 125), PushOutcome::Queued);
        assert_eq!(drain(&mut q), [30, 50, 70, 90, 111, 125]);
    }

    #[test]
    fn pop_batch_takes_a_flush_worth_in_order() {
        let mut q = SubscriberQueue::new(&ServerConfig::default(), false);
        q.push(ms(0), MediaInfo::video_header(ms(0), 40), 0);
        q.push(ms(0), key(0, 1000), 1);
        q.push(ms(0), audio(10, 300), 2);
        q.push(ms(0), inter(33, 500), 3);
        q.push(ms(0), audio(30, 300), 4);
        let mut taken = Vec::new();
        // Stops once 1,000 bytes are taken: header + keyframe.
        assert_eq!(q.pop_batch(1000, |_, p| taken.push(p)), (2, 1040));
        assert_eq!(taken, [0, 1]);
        assert_eq!((q.queued_len(), q.queued_bytes()), (3, 1100));
        assert_eq!(q.pop_batch(u64::MAX, |_, p| taken.push(p)), (3, 1100));
        assert_eq!(taken, [0, 1, 2, 3, 4]);
        assert_eq!(q.pop_batch(u64::MAX, |_, p| taken.push(p)), (0, 0));
        q.push(ms(0), audio(50, 300), 5);
        q.push(ms(0), audio(70, 300), 6);
        assert_eq!(q.pop_batch(0, |_, p| taken.push(p)), (1, 300));
        assert_eq!(taken, [0, 1, 2, 3, 4, 5]);
        q.pop();
        let s = q.stats();
        assert_eq!((s.delivered, s.delivered_bytes), (7, 2740));
        assert_eq!(
            (q.queued_bytes(), q.queued_header_bytes(), q.flush_at()),
            (0, 0, None)
        );
        assert_eq!(accounted(&q), s.pushed);
    }

    #[test]
    fn headers_and_data_do_not_stretch_the_duration() {
        // OBS sends headers at timestamp 0 and media at the running clock.
        let mut q = SubscriberQueue::new(&cfg(1 << 20, 100.0, DropPolicy::DropToKeyframe), false);
        q.push(ms(0), MediaInfo::metadata(ms(0), 100), 0);
        q.push(ms(0), MediaInfo::audio_header(ms(0), 5), 1);
        q.push(ms(0), audio(100_000, 10), 2);
        assert_eq!(q.queued_duration(), Micros::ZERO);
        assert_eq!(q.push(ms(0), audio(100_100, 10), 3), PushOutcome::Queued);
        assert_eq!(q.queued_duration(), ms(100));
        assert_eq!(q.stats().evicted, 0);
    }

    #[test]
    fn drop_to_keyframe_never_delivers_a_frame_whose_reference_was_dropped() {
        // The writer keeps popping; the bound is 250 bytes.
        let mut q = SubscriberQueue::new(&cfg(250, 10_000.0, DropPolicy::DropToKeyframe), false);
        assert_eq!(q.push(ms(0), key(0, 100), "I1"), PushOutcome::Queued);
        assert_eq!(q.push(ms(33), inter(33, 60), "P1"), PushOutcome::Queued);
        assert_eq!(q.push(ms(67), inter(67, 60), "P2"), PushOutcome::Queued);
        assert_eq!(
            q.push(ms(100), inter(100, 60), "P3"),
            PushOutcome::Dropped(DropReason::QueueFull)
        );
        assert!(q.is_waiting_for_keyframe());
        assert_eq!(q.pop().map(|(_, p)| p), Some("I1"));
        // There is room again, but P4 references the dropped P3.
        assert_eq!(
            q.push(ms(133), inter(133, 60), "P4"),
            PushOutcome::Dropped(DropReason::WaitingForKeyframe)
        );
        // Frames queued before the drop are still decodable and delivered.
        assert_eq!(drain(&mut q), ["P1", "P2"]);
        assert_eq!(q.push(ms(167), key(167, 100), "I2"), PushOutcome::Queued);
        assert!(!q.is_waiting_for_keyframe());
        assert_eq!(q.push(ms(200), inter(200, 60), "P5"), PushOutcome::Queued);
        assert_eq!(drain(&mut q), ["I2", "P5"]);
        let s = q.stats();
        assert_eq!(
            (s.dropped_full, s.dropped_waiting_key, s.delivered),
            (1, 1, 5)
        );
        assert_eq!(accounted(&q), s.pushed);
    }

    #[test]
    fn drop_to_keyframe_skips_stale_gops_at_the_next_keyframe() {
        // I P P P I P into a 250-byte queue that nobody drains.
        let mut q = SubscriberQueue::new(&cfg(250, 10_000.0, DropPolicy::DropToKeyframe), false);
        let mut evicted = Vec::new();
        let mut push = |q: &mut SubscriberQueue<&'static str>, info, name| {
            q.push_with_drops(ms(0), info, name, |_, p, r| evicted.push((p, r)))
        };
        assert_eq!(push(&mut q, key(0, 100), "I1"), PushOutcome::Queued);
        assert_eq!(push(&mut q, inter(33, 60), "P1"), PushOutcome::Queued);
        assert_eq!(push(&mut q, inter(67, 60), "P2"), PushOutcome::Queued);
        assert_eq!(
            push(&mut q, inter(100, 60), "P3"),
            PushOutcome::Dropped(DropReason::QueueFull)
        );
        // 220 + 100 > 250: the stale GOP goes, the keyframe comes in.
        assert_eq!(push(&mut q, key(133, 100), "I2"), PushOutcome::Queued);
        assert_eq!(push(&mut q, inter(167, 60), "P4"), PushOutcome::Queued);
        assert_eq!(
            evicted,
            [
                ("I1", DropReason::QueueFull),
                ("P1", DropReason::QueueFull),
                ("P2", DropReason::QueueFull)
            ]
        );
        assert_eq!(drain(&mut q), ["I2", "P4"]);
        let s = q.stats();
        assert_eq!((s.dropped_full, s.evicted, s.delivered), (4, 3, 2));
        assert_eq!(accounted(&q), s.pushed);
    }

    #[test]
    fn sequence_headers_are_never_dropped() {
        let mut q = SubscriberQueue::new(&cfg(250, 10_000.0, DropPolicy::DropToKeyframe), false);
        q.push(ms(0), MediaInfo::video_header(ms(0), 40), "vh1");
        q.push(ms(0), MediaInfo::audio_header(ms(0), 5), "ah");
        q.push(ms(0), key(0, 100), "I1");
        q.push(ms(0), audio(10, 50), "a1");
        q.push(ms(0), inter(33, 60), "P1"); // media: 210
                                            // Headers are outside the media bound.
        assert_eq!(
            q.push(ms(0), MediaInfo::video_header(ms(50), 40), "vh2"),
            PushOutcome::Queued
        );
        assert_eq!(
            q.push(ms(0), inter(67, 60), "P2"),
            PushOutcome::Dropped(DropReason::QueueFull)
        );
        // The keyframe purges the stale video and the header it supersedes, keeps audio.
        assert_eq!(q.push(ms(0), key(100, 100), "I2"), PushOutcome::Queued);
        assert_eq!(drain(&mut q), ["ah", "a1", "vh2", "I2"]);

        // An audio flood keeps the header and the freshest audio.
        let mut q = SubscriberQueue::new(&cfg(250, 10_000.0, DropPolicy::DropToKeyframe), false);
        q.push(ms(0), MediaInfo::audio_header(ms(0), 5), "ah");
        for name in ["a0", "a1", "a2", "a3", "a4"] {
            assert_eq!(q.push(ms(0), audio(0, 100), name), PushOutcome::Queued);
        }
        assert_eq!(drain(&mut q), ["ah", "a3", "a4"]);

        // A flood of headers nobody reads is a reason to disconnect, not to grow.
        let mut q = SubscriberQueue::new(&cfg(250, 10_000.0, DropPolicy::DropToKeyframe), false);
        for i in 0..QUEUE_MAX_HEADERS {
            let h = MediaInfo::audio_header(ms(0), 5);
            assert_eq!(q.push(ms(0), h, i), PushOutcome::Queued);
        }
        let h = MediaInfo::audio_header(ms(0), 5);
        assert_eq!(q.push(ms(0), h, 99), PushOutcome::Disconnect);
    }

    #[test]
    fn disconnect_policy_disconnects_on_the_first_overflow() {
        let mut q = SubscriberQueue::new(&cfg(250, 10_000.0, DropPolicy::Disconnect), false);
        let mut dropped = Vec::new();
        // One message larger than the bound is let through when alone.
        assert_eq!(q.push(ms(0), key(0, 1000), 0), PushOutcome::Queued);
        assert_eq!(q.pop().map(|(_, p)| p), Some(0));
        assert_eq!(q.push(ms(0), key(0, 100), 1), PushOutcome::Queued);
        assert_eq!(q.push(ms(0), inter(33, 100), 2), PushOutcome::Queued);
        assert_eq!(
            q.push_with_drops(ms(0), inter(67, 100), 3, |_, p, r| dropped.push((p, r))),
            PushOutcome::Disconnect
        );
        assert_eq!(
            dropped,
            [(1, DropReason::Disconnected), (2, DropReason::Disconnected)]
        );
        assert!(q.is_disconnected());
        assert_eq!(q.pop(), None);
        assert_eq!(q.flush_at(), None);
        assert_eq!(
            q.push(ms(1), key(100, 10), 4),
            PushOutcome::Dropped(DropReason::Disconnected)
        );
        let s = q.stats();
        assert!(s.disconnected);
        assert_eq!(s.dropped_disconnected, 4);
        assert_eq!(accounted(&q), s.pushed);
    }

    #[test]
    fn a_subscriber_over_its_bound_for_disconnect_after_ms_is_disconnected() {
        let c = ServerConfig {
            disconnect_after_ms: 1000.0,
            ..cfg(250, 10_000.0, DropPolicy::DropToKeyframe)
        };
        // Nobody drains the queue.
        let mut q = SubscriberQueue::new(&c, false);
        q.push(ms(0), key(0, 100), 0);
        q.push(ms(0), inter(33, 100), 1);
        assert_eq!(
            q.push(ms(100), inter(67, 100), 2),
            PushOutcome::Dropped(DropReason::QueueFull)
        );
        assert_eq!(q.congested_since(), Some(ms(100)));
        assert_eq!(
            q.push(ms(1000), audio(70, 100), 3),
            PushOutcome::Dropped(DropReason::QueueFull)
        );
        assert_eq!(q.push(ms(1100), audio(80, 100), 4), PushOutcome::Disconnect);

        // Same, but the writer drains it to half the bound in between: no disconnect.
        let mut q = SubscriberQueue::new(&c, false);
        q.push(ms(0), key(0, 100), 0);
        q.push(ms(0), inter(33, 100), 1);
        q.push(ms(100), inter(67, 100), 2);
        assert_eq!(q.pop().map(|(_, p)| p), Some(0)); // 100 bytes left ≤ 125
        assert_eq!(q.congested_since(), None);
        assert_eq!(q.push(ms(1100), audio(80, 100), 4), PushOutcome::Queued);
    }

    #[test]
    fn a_subscriber_without_a_cached_gop_waits_for_a_keyframe() {
        let mut q = SubscriberQueue::new(&ServerConfig::default(), true);
        assert!(q.is_waiting_for_keyframe());
        assert_eq!(
            q.push(ms(0), inter(0, 100), "P0"),
            PushOutcome::Dropped(DropReason::WaitingForKeyframe)
        );
        assert_eq!(q.push(ms(0), audio(10, 10), "a"), PushOutcome::Queued);
        assert_eq!(q.push(ms(0), key(33, 1000), "I"), PushOutcome::Queued);
        assert_eq!(q.push(ms(0), inter(67, 100), "P1"), PushOutcome::Queued);
        assert_eq!(drain(&mut q), ["a", "I", "P1"]);
        assert_eq!(q.stats().dropped_waiting_key, 1);
    }

    #[test]
    fn coalescing_sets_the_flush_time() {
        // Window 0: write at once.
        let mut q = SubscriberQueue::new(&ServerConfig::default(), false);
        assert_eq!(q.flush_at(), None);
        q.push(ms(5), audio(0, 100), 0);
        assert_eq!(q.flush_at(), Some(ms(5)));
        q.push(ms(7), audio(20, 100), 1);
        assert_eq!(q.flush_at(), Some(ms(5)));
        q.pop();
        assert_eq!(q.flush_at(), Some(ms(7)));
        q.pop();
        assert_eq!(q.flush_at(), None);

        // Window 100 ms, or as soon as 64 KiB are queued.
        let c = ServerConfig {
            coalesce_ms: 100.0,
            ..ServerConfig::default()
        };
        let mut q = SubscriberQueue::new(&c, false);
        q.push(ms(10), audio(0, 100), 0);
        assert_eq!(q.flush_at(), Some(ms(110)));
        q.push(ms(30), audio(20, 100), 1);
        assert_eq!(q.flush_at(), Some(ms(110)));
        q.push(ms(40), key(33, 70_000), 2);
        assert_eq!(q.flush_at(), Some(ms(40)));
        assert_eq!(drain(&mut q).len(), 3);
        assert_eq!(q.flush_at(), None);
        q.push(ms(200), audio(200, 100), 3);
        assert_eq!(q.flush_at(), Some(ms(300)));
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let mut q = SubscriberQueue::new(&cfg(0, 0.0, DropPolicy::DropToKeyframe), false);
        q.push(Micros::MAX, key(0, u32::MAX), 0);
        q.push(
            Micros::ZERO,
            MediaInfo::video(Micros::MAX, u32::MAX, false),
            1,
        );
        q.push(Micros::MAX, MediaInfo::audio(Micros::MAX, u32::MAX), 2);
        q.push(Micros::ZERO, MediaInfo::audio(Micros::ZERO, 0), 3);
        let _ = q.flush_at();
        let _ = drain(&mut q);
        let mut c = GopCache::new(true, u64::MAX);
        c.push(MediaInfo::audio(Micros::MAX, u32::MAX), 0);
        c.push(MediaInfo::audio(Micros::ZERO, u32::MAX), 1);
        c.push(MediaInfo::video(Micros::MAX, u32::MAX, true), 2);
        assert!(c.has_keyframe());
    }

    // -- properties -----------------------------------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        /// kind: 0 key, 1–2 inter, 3 audio, 4 video header, 5 audio header, 6 data.
        Push {
            kind: u8,
            size: u32,
            dts_ms: i64,
            dnow_ms: u64,
        },
        Pop(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let size = prop_oneof![8 => 0u32..400, 1 => any::<u32>()];
        prop_oneof![
            3 => (0u8..7, size, -60i64..120, 0u64..60).prop_map(|(kind, size, dts_ms, dnow_ms)| {
                Op::Push { kind, size, dts_ms, dnow_ms }
            }),
            1 => (0u8..8).prop_map(Op::Pop),
        ]
    }

    fn info_of(kind: u8, ts: Micros, size: u32) -> MediaInfo {
        match kind {
            0 => MediaInfo::video(ts, size, true),
            1 | 2 => MediaInfo::video(ts, size, false),
            3 => MediaInfo::audio(ts, size),
            4 => MediaInfo::video_header(ts, size.min(200)),
            5 => MediaInfo::audio_header(ts, size.min(200)),
            _ => MediaInfo::metadata(ts, size),
        }
    }

    proptest! {
        /// The media bound holds after every push (one oversized message alone excepted), and no
        /// video non-key frame is delivered unless every video frame since the keyframe before it
        /// (that keyframe included) was delivered too.
        #[test]
        fn queue_is_bounded_and_keeps_video_decodable(
            ops in proptest::collection::vec(op(), 1..300),
            max_bytes in 100u64..2000,
            max_ms in 30.0f64..500.0,
            disconnect_policy in any::<bool>(),
            disconnect_after_ms in 100.0f64..5000.0,
            wait in any::<bool>(),
        ) {
            let c = ServerConfig {
                disconnect_after_ms,
                ..cfg(
                    max_bytes,
                    max_ms,
                    if disconnect_policy { DropPolicy::Disconnect } else { DropPolicy::DropToKeyframe },
                )
            };
            let mut q = SubscriberQueue::new(&c, wait);
            let mut infos: Vec<MediaInfo> = Vec::new();
            let mut delivered: Vec<bool> = Vec::new();
            let mut order: Vec<usize> = Vec::new();
            let (mut now, mut ts) = (0u64, 1_000_000i64);
            for op in ops {
                match op {
                    Op::Push { kind, size, dts_ms, dnow_ms } => {
                        now += dnow_ms * 1000;
                        ts = (ts + dts_ms * 1000).max(0);
                        let info = info_of(kind, Micros(ts as u64), size);
                        let i = infos.len();
                        infos.push(info);
                        delivered.push(false);
                        q.push(Micros(now), info, i);
                        let media_bytes = q.queued_bytes() - q.queued_header_bytes();
                        prop_assert!(media_bytes <= max_bytes || q.media_len() <= 1,
                            "media bytes {} > {} with {} media messages", media_bytes, max_bytes, q.media_len());
                        prop_assert!(q.media_len() <= QUEUE_MAX_MESSAGES);
                        prop_assert!((q.header_count as usize) <= QUEUE_MAX_HEADERS);
                        prop_assert_eq!(accounted(&q), q.stats().pushed);
                    }
                    Op::Pop(n) if n >= 4 => {
                        // A batch of up to n × 100 bytes.
                        q.pop_batch(n as u64 * 100, |_, i| {
                            delivered[i] = true;
                            order.push(i);
                        });
                    }
                    Op::Pop(n) => {
                        for _ in 0..n {
                            if let Some((_, i)) = q.pop() {
                                delivered[i] = true;
                                order.push(i);
                            }
                        }
                    }
                }
            }
            while let Some((_, i)) = q.pop() {
                delivered[i] = true;
                order.push(i);
            }
            prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "not FIFO: {:?}", order);
            prop_assert_eq!(accounted(&q), q.stats().pushed);
            // Walk the stream in push order: is the reference chain intact?
            let mut broken = wait;
            for (i, info) in infos.iter().enumerate() {
                if info.is_keyframe() {
                    broken = !delivered[i];
                } else if info.is_inter_frame() {
                    if delivered[i] {
                        prop_assert!(!broken, "frame {} delivered after a broken reference", i);
                    } else {
                        broken = true;
                    }
                }
            }
        }

        /// `pass_through` is push + pop whenever it accepts, and a no-op when it declines.
        #[test]
        fn pass_through_is_push_then_pop(
            ops in proptest::collection::vec(op(), 1..300),
            max_bytes in 100u64..2000,
            max_ms in 30.0f64..500.0,
            disconnect_policy in any::<bool>(),
            wait in any::<bool>(),
            coalesce in prop_oneof![3 => Just(0.0), 1 => 1.0f64..50.0],
        ) {
            let c = ServerConfig {
                coalesce_ms: coalesce,
                ..cfg(
                    max_bytes,
                    max_ms,
                    if disconnect_policy { DropPolicy::Disconnect } else { DropPolicy::DropToKeyframe },
                )
            };
            let mut a = SubscriberQueue::new(&c, wait);
            let mut b = SubscriberQueue::new(&c, wait);
            let (mut now, mut ts) = (0u64, 1_000_000i64);
            let mut accepted = 0;
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push { kind, size, dts_ms, dnow_ms } => {
                        now += dnow_ms * 1000;
                        ts = (ts + dts_ms * 1000).max(0);
                        let info = info_of(kind, Micros(ts as u64), size);
                        let before = format!("{a:?}");
                        if a.pass_through(info) {
                            accepted += 1;
                            prop_assert_eq!(b.push(Micros(now), info, i), PushOutcome::Queued);
                            prop_assert_eq!(b.pop().map(|(_, id)| id), Some(i));
                        } else {
                            prop_assert_eq!(format!("{a:?}"), before);
                            a.push(Micros(now), info, i);
                            b.push(Micros(now), info, i);
                        }
                    }
                    Op::Pop(n) => {
                        for _ in 0..n {
                            prop_assert_eq!(a.pop().map(|(_, id)| id), b.pop().map(|(_, id)| id));
                        }
                    }
                }
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                prop_assert_eq!(a.stats(), b.stats());
            }
            if coalesce > 0.0 {
                prop_assert_eq!(accepted, 0);
            }
        }

        /// The GOP cache stays within its bounds and its burst starts right.
        #[test]
        fn gop_cache_is_bounded(
            ops in proptest::collection::vec((0u8..7, 0u32..5000, -60i64..120), 1..300),
            max_bytes in 0u64..20_000,
        ) {
            let mut c = GopCache::new(true, max_bytes);
            let mut ts = 0i64;
            for (kind, size, dts) in ops {
                ts = (ts + dts * 1000).max(0);
                c.push(info_of(kind, Micros(ts as u64), size), ());
                prop_assert!(c.cached_bytes() <= max_bytes);
                prop_assert!(c.cached_messages() <= GOP_CACHE_MAX_MESSAGES);
                let sum: u64 = c.gop.iter().map(|(i, _)| i.size_bytes as u64).sum();
                prop_assert_eq!(sum, c.cached_bytes());
                if c.video_seen {
                    prop_assert!(c.gop.is_empty() || c.has_keyframe());
                }
            }
        }
    }
}
