//! Player model: start-up buffer, jitter buffer, rebuffering (stalls), optional live-edge
//! catch-up.
//!
//! [`Player`] is a sans-IO state machine driven by frame arrivals: the simulator calls
//! [`Player::on_arrival`] when a frame has fully arrived at the player and gets back, for every
//! frame whose fate is now decided, when it is shown. The same model can sit in a load generator
//! to estimate what a real player would have experienced from measured arrival times.
//!
//! It reproduces the behaviour of the players of MODELS.md §C in their common core: VLC's
//! `network-caching`, FFmpeg's `rtmp_buffer`, nginx-rtmp's `buflen` and flv.js all wait for a
//! buffer before starting, play on a clock locked to the stream's timestamps, and stall when the
//! buffer runs dry; mpegts.js (`liveBufferLatencyChasing`) and hls.js (`liveSyncDuration` with
//! `maxLiveSyncPlaybackRate`) can speed playback up to chase the live edge. Buffered media becomes
//! standing latency at 1.0× playback: without catch-up, a stall's length or a GOP-cache join
//! offset is added to every later frame's latency for the rest of the session.

use crate::check::Checker;
use crate::units::Micros;
use serde::{Deserialize, Serialize};

/// Live-edge catch-up (mpegts.js "latency chasing", hls.js liveSync style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatchUpConfig {
    pub enabled: bool,
    /// Start speeding up when the buffer holds more than this (ms).
    pub max_buffer_ms: f64,
    /// Speed up until the buffer is back down to this (ms).
    pub target_buffer_ms: f64,
    /// Playback rate while catching up (e.g. 1.1).
    pub speed: f64,
}

impl Default for CatchUpConfig {
    fn default() -> Self {
        CatchUpConfig {
            enabled: false,
            max_buffer_ms: 1500.0,
            target_buffer_ms: 500.0,
            speed: 1.1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayerConfig {
    /// Media buffered before playback starts (ms). VLC network-caching 1000; ffplay ~ 0 with
    /// `-fflags nobuffer`.
    pub startup_buffer_ms: f64,
    /// Media buffered before playback resumes after a stall (ms).
    pub rebuffer_ms: f64,
    /// Decode + display time (ms).
    pub decode_ms: f64,
    pub catch_up: CatchUpConfig,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        PlayerConfig {
            startup_buffer_ms: 1000.0,
            rebuffer_ms: 1000.0,
            decode_ms: 33.0,
            catch_up: CatchUpConfig::default(),
        }
    }
}

impl PlayerConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.range("startup_buffer_ms", self.startup_buffer_ms, 0.0, 60_000.0);
        c.range("rebuffer_ms", self.rebuffer_ms, 0.0, 60_000.0);
        c.range("decode_ms", self.decode_ms, 0.0, 10_000.0);
        c.section("catch_up", |c| {
            c.positive("max_buffer_ms", self.catch_up.max_buffer_ms);
            c.non_negative("target_buffer_ms", self.catch_up.target_buffer_ms);
            c.ensure(
                self.catch_up.target_buffer_ms <= self.catch_up.max_buffer_ms,
                "target_buffer_ms",
                "must not exceed max_buffer_ms",
            );
            c.range("speed", self.catch_up.speed, 1.0, 4.0);
        });
    }
}

/// A frame whose timestamp is more than this far *behind* the previous frame's is taken as a
/// timestamp reset (a publisher that restarted its clock, a wrapped 32-bit timestamp): the player
/// re-bases the new timeline so that it continues where the old one stopped, later by as much
/// media time as the frame arrived later in wall time (so a reset in a stream arriving in real
/// time causes no stall). Smaller inversions (audio and video interleaved slightly out of
/// timestamp order) are played in arrival order. Forward jumps are never re-based: they are gaps
/// in the media (an encoder that dropped frames), and a real player waits them out showing the
/// last picture.
pub const TIMESTAMP_RESET: Micros = Micros::from_secs(2);

/// A frame whose (re-based) timestamp is more than this far behind the media already played is
/// [`PlayOutcome::Skipped`]: a decoder would discard it as stale. Only timestamps drifting
/// backwards bit by bit (each step under [`TIMESTAMP_RESET`]) produce such frames.
pub const LATE_SKIP: Micros = Micros::from_secs(2);

/// Fastest catch-up speed honoured (a larger configured speed is clamped).
const MAX_SPEED: f64 = 16.0;

/// When a frame is shown, or that it never is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayOutcome {
    /// Displayed (decode finished) at `at`.
    Played { at: Micros },
    /// Discarded at `at` without being shown: its timestamp is more than [`LATE_SKIP`] behind the
    /// media already played, or it arrived after [`Player::finish`]. Catch-up never skips: it
    /// speeds the clock up instead.
    Skipped { at: Micros },
}

impl PlayOutcome {
    /// The time the decision takes effect.
    pub fn at(&self) -> Micros {
        match *self {
            PlayOutcome::Played { at } | PlayOutcome::Skipped { at } => at,
        }
    }
}

/// Where the player is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayerPhase {
    /// Filling the start-up buffer; nothing shown yet.
    Starting,
    Playing,
    /// Stalled: the buffer ran dry; refilling to `rebuffer_ms`.
    Rebuffering,
    /// [`Player::finish`] was called.
    Finished,
}

/// What happened to the viewer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlayerStats {
    /// When playback started (the start-up buffer was full), if it did.
    pub started_at: Option<Micros>,
    /// Stalls after start-up.
    pub rebuffer_count: u32,
    /// Total stall time (from the moment the missing frame was due to the moment playback
    /// resumed, or the end of the stream).
    pub rebuffer_time: Micros,
    pub frames_played: u64,
    pub frames_skipped: u64,
    /// Times catch-up started.
    pub catch_up_count: u32,
    /// Total time spent playing faster than 1.0×.
    pub catch_up_time: Micros,
    /// Timestamp resets re-based (see [`TIMESTAMP_RESET`]).
    pub timestamp_resets: u32,
    /// Highest buffer level seen at an arrival ([`Player::buffer_level`]).
    pub max_buffer: Micros,
}

/// A frame waiting to be played.
#[derive(Debug, Clone, Copy)]
struct Pending<Id> {
    id: Id,
    /// Re-based timestamp.
    ts: Micros,
    arrival: Micros,
}

/// A FIFO of copyable entries in a power-of-two ring: the few operations the player needs, each
/// a load or store and a mask (std's `VecDeque` wraps with a compare and keeps more state).
#[derive(Debug, Clone)]
struct Ring<T> {
    slots: Vec<T>,
    head: usize,
    len: usize,
}

impl<T: Copy> Ring<T> {
    fn new() -> Self {
        Ring {
            slots: Vec::new(),
            head: 0,
            len: 0,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn front(&self) -> Option<&T> {
        if self.len == 0 {
            None
        } else {
            self.slots.get(self.head)
        }
    }

    #[inline]
    fn pop_front(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) & (self.slots.len() - 1);
            self.len -= 1;
        }
    }

    #[inline(always)]
    fn push_back(&mut self, v: T) {
        if self.len == self.slots.len() {
            self.grow(v);
        }
        let i = (self.head + self.len) & (self.slots.len() - 1);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = v;
        }
        self.len += 1;
    }

    /// Doubles the capacity (at least 64 slots), the entries in order from slot 0.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, fill: T) {
        let cap = (self.slots.len() * 2).max(64);
        let mut slots = Vec::with_capacity(cap);
        let mask = self.slots.len().wrapping_sub(1);
        for k in 0..self.len {
            slots.push(self.slots[(self.head + k) & mask]);
        }
        slots.resize(cap, fill);
        self.slots = slots;
        self.head = 0;
    }
}

/// Maps media time to wall time: the frame at `ts` starts decoding at `wall`, and media advances
/// at 1.0× (or the catch-up speed when `fast`).
#[derive(Debug, Clone, Copy, Default)]
struct Clock {
    wall: Micros,
    ts: Micros,
    fast: bool,
}

#[derive(Debug, Clone, Copy)]
struct CatchUp {
    max_buffer: Micros,
    target_buffer: Micros,
    speed: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Playing,
    Rebuffering { since: Micros },
    Finished,
}

/// `v` as Micros, clamped to 0..=u64::MAX.
#[inline]
fn micros_i128(v: i128) -> Micros {
    Micros(v.clamp(0, u64::MAX as i128) as u64)
}

/// `v` rounded to the nearest microsecond, as i128 (NaN gives 0, infinities saturate).
#[inline]
fn round_i128(v: f64) -> i128 {
    libm::round(v) as i128
}

/// A live-stream player.
///
/// **Playback model.**
///
/// 1. *Start-up*: frames are buffered until the buffered media — newest timestamp − timestamp of
///    the oldest unplayed frame — reaches `startup_buffer_ms` (so 1000 ms is reached by the frame
///    whose timestamp is 1000 ms after the first: 31 frames at 30 fps). Playback starts at that
///    arrival.
/// 2. *Clock*: from then on the frame with timestamp `ts` is due to start decoding at
///    `anchor_wall + (ts − anchor_ts) / speed` and is shown `decode_ms` later. The anchor is the
///    start (wall time of the start, timestamp of the oldest unplayed frame). Frames are played in
///    arrival (decode) order; a frame is shown at its due time + `decode_ms`, but never before it
///    arrived + `decode_ms` nor before the previous frame.
/// 3. *Stall*: when the buffer has run dry and the next frame arrives after its due time, the
///    player stalled at that due time (it is detected at the arrival, since only then is the
///    frame's timestamp known: until a frame has arrived the model cannot know it was late).
///    It waits until `rebuffer_ms` is buffered again (same measure as start-up), then re-anchors
///    the clock at that arrival: every later frame is shifted by the stall's length. Each stall
///    counts once, and its time runs from the due time to the resumption.
/// 4. *Catch-up* (if enabled): the buffer level is `newest timestamp − playback position`, where
///    the position is the media time due to start decoding now. When it exceeds `max_buffer_ms`
///    at an arrival, the clock is re-anchored there and runs at `speed`; it returns to 1.0× at
///    the exact moment the level falls to `target_buffer_ms` (computed, not waited for: between
///    arrivals the level falls at `speed` ms per ms). The rate is therefore piecewise constant,
///    and the clock piecewise linear and continuous. A stall ends catch-up.
///
/// **Causality.** Everything is decided at arrivals (and [`Player::finish`]): at each arrival the
/// player first decides every buffered frame due by then, then takes in the new frame. Outcomes
/// come out in arrival order, each exactly once.
///
/// **Timestamps** may repeat, interleave audio and video slightly out of order, jump forward
/// (a gap: the clock waits it out) or reset backwards ([`TIMESTAMP_RESET`]); arrival times that
/// go backwards are taken as equal to the previous one. Nothing panics: all arithmetic saturates.
///
/// **Limits.** One clock for audio and video (no separate audio master clock, no A/V sync
/// adjustment): feed frames in the order the RTMP stream carries them (interleaved by DTS, as
/// OBS and FFmpeg send them). No decoder model: `decode_ms` is a constant. Frames are never
/// dropped to catch up (flv.js/mpegts.js-style seeking to the live edge is not modelled). B-frame
/// reordering is not modelled (DTS is used as the presentation time). Memory is one small entry
/// per buffered frame; a player that is never started (a start-up buffer larger than the
/// stream) buffers the whole stream.
///
/// **Cost.** O(1) amortized per frame, no allocation once the buffer has grown to its working
/// size (plus what `out` needs). Measured in release on this project's 2.6 GHz EPYC VM: about
/// 15 ns per [`Player::on_arrival`] with 100 players each holding ~1 s of frames.
#[derive(Debug, Clone)]
pub struct Player<Id> {
    startup: Micros,
    rebuffer: Micros,
    decode: Micros,
    catch_up: Option<CatchUp>,
    buf: Ring<Pending<Id>>,
    phase: Phase,
    clock: Clock,
    /// Highest re-based timestamp arrived.
    newest_ts: Option<Micros>,
    /// Highest re-based timestamp played.
    played_ts: Option<Micros>,
    /// Latest outcome time (outcomes never go back in time).
    last_at: Micros,
    last_now: Micros,
    prev_raw_ts: Option<Micros>,
    prev_ts: Micros,
    prev_arrival: Micros,
    /// Added to raw timestamps to re-base them after resets.
    ts_offset: i128,
    catch_up_since: Option<Micros>,
    stats: PlayerStats,
    /// Tests: never take the steady-playback shortcut (to check it against the general path).
    general_only: bool,
}

impl<Id: Copy> Player<Id> {
    /// A player configured by `cfg` (out-of-range values are clamped, never rejected: see
    /// [`PlayerConfig::validate`] for what a scenario should use).
    pub fn new(cfg: &PlayerConfig) -> Self {
        let cu = &cfg.catch_up;
        let catch_up = if cu.enabled && cu.speed.is_finite() && cu.speed > 1.0 {
            let max_buffer = Micros::from_ms_f64(cu.max_buffer_ms);
            Some(CatchUp {
                max_buffer,
                target_buffer: Micros::from_ms_f64(cu.target_buffer_ms).min(max_buffer),
                speed: cu.speed.min(MAX_SPEED),
            })
        } else {
            None
        };
        Player {
            startup: Micros::from_ms_f64(cfg.startup_buffer_ms),
            rebuffer: Micros::from_ms_f64(cfg.rebuffer_ms),
            decode: Micros::from_ms_f64(cfg.decode_ms),
            catch_up,
            buf: Ring::new(),
            phase: Phase::Starting,
            clock: Clock::default(),
            newest_ts: None,
            played_ts: None,
            last_at: Micros::ZERO,
            last_now: Micros::ZERO,
            prev_raw_ts: None,
            prev_ts: Micros::ZERO,
            prev_arrival: Micros::ZERO,
            ts_offset: 0,
            catch_up_since: None,
            stats: PlayerStats::default(),
            general_only: false,
        }
    }

    /// A frame with stream timestamp `media_ts` (DTS) finished arriving at `now`. Frames whose
    /// play time is now decided are appended to `out` as `(id, outcome)`, in arrival order (see
    /// the type's documentation for the model). O(1) amortized.
    pub fn on_arrival(
        &mut self,
        now: Micros,
        id: Id,
        media_ts: Micros,
        out: &mut Vec<(Id, PlayOutcome)>,
    ) {
        self.on_arrival_with(now, id, media_ts, &mut |id, o| out.push((id, o)));
    }

    /// [`Player::on_arrival`] handing each decided frame to `out` as it is decided, in the same
    /// order, instead of collecting them (the engine's hot path).
    #[inline]
    pub fn on_arrival_with(
        &mut self,
        now: Micros,
        id: Id,
        media_ts: Micros,
        out: &mut impl FnMut(Id, PlayOutcome),
    ) {
        let now = now.max(self.last_now);
        self.last_now = now;
        if self.phase == Phase::Finished {
            let at = now.max(self.last_at);
            self.last_at = at;
            self.stats.frames_skipped += 1;
            out(id, PlayOutcome::Skipped { at });
            return;
        }
        // Steady playback (the common case), step for step what the general path below does
        // then: no timestamp re-basing, a 1.0× clock, no catch-up, and frames still buffered
        // after those due have been decided.
        if self.phase == Phase::Playing
            && !self.general_only
            && !self.clock.fast
            && self.catch_up.is_none()
            && self.ts_offset == 0
            && self
                .prev_raw_ts
                .is_some_and(|p| p.saturating_sub(media_ts) <= TIMESTAMP_RESET)
        {
            let ts = media_ts;
            self.prev_raw_ts = Some(ts);
            self.prev_ts = ts;
            self.prev_arrival = now;
            self.decide_until(now, out);
            if self.buf.is_empty() {
                return self.arrive_rest(now, id, ts, true, out);
            }
            self.buf.push_back(Pending {
                id,
                ts,
                arrival: now,
            });
            let newest = self.newest_ts.map_or(ts, |n| n.max(ts));
            self.newest_ts = Some(newest);
            let level = newest.saturating_sub(self.position_on(self.clock, now));
            if level > self.stats.max_buffer {
                self.stats.max_buffer = level;
            }
            return;
        }
        let ts = self.rebase(now, media_ts);
        if self.phase == Phase::Playing {
            self.advance(now, out);
        }
        let ran_dry = self.buf.is_empty();
        self.arrive_rest(now, id, ts, ran_dry, out);
    }

    /// The rest of [`Player::on_arrival_with`] once the frame's timestamp is re-based and the
    /// frames due have been decided: buffer it, then start, stall or resume.
    fn arrive_rest(
        &mut self,
        now: Micros,
        id: Id,
        ts: Micros,
        ran_dry: bool,
        out: &mut impl FnMut(Id, PlayOutcome),
    ) {
        self.buf.push_back(Pending {
            id,
            ts,
            arrival: now,
        });
        self.newest_ts = Some(self.newest_ts.map_or(ts, |n| n.max(ts)));

        match self.phase {
            Phase::Starting => {
                if self.buffered() >= self.startup {
                    self.stats.started_at = Some(now);
                    self.start_clock(now);
                    self.advance(now, out);
                }
            }
            Phase::Playing => {
                // Frames queued behind others wait their turn; only a frame arriving into an
                // empty buffer can be late (a stall) or already due (timestamps went back).
                if ran_dry {
                    let due = self.due(ts);
                    let awaited = self.played_ts.is_none_or(|p| ts > p);
                    if due < now && awaited {
                        // The playhead reached this frame at `due` and it was not there.
                        self.end_catch_up(due);
                        self.phase = Phase::Rebuffering { since: due };
                        self.stats.rebuffer_count = self.stats.rebuffer_count.saturating_add(1);
                        self.try_resume(now, out);
                    } else if due <= now {
                        self.decide_until(now, out);
                    }
                }
            }
            Phase::Rebuffering { .. } => self.try_resume(now, out),
            Phase::Finished => {}
        }
        let level = if self.phase == Phase::Playing {
            self.playing_level(now)
        } else {
            self.buffered()
        };
        if level > self.stats.max_buffer {
            self.stats.max_buffer = level;
        }
    }

    /// The stream ended at `now`: the rest of the buffer is played out. A player still filling its
    /// start-up buffer starts now; a stalled one resumes now (the stall ends here). Later
    /// arrivals are [`PlayOutcome::Skipped`].
    pub fn finish(&mut self, now: Micros, out: &mut Vec<(Id, PlayOutcome)>) {
        self.finish_with(now, &mut |id, o| out.push((id, o)));
    }

    /// Tests: always take the general path.
    #[cfg(test)]
    pub(crate) fn general_only(&mut self) {
        self.general_only = true;
    }

    /// [`Player::finish`] handing each decided frame to `out`.
    pub fn finish_with(&mut self, now: Micros, out: &mut impl FnMut(Id, PlayOutcome)) {
        let now = now.max(self.last_now);
        self.last_now = now;
        match self.phase {
            Phase::Finished => return,
            Phase::Starting => {
                if !self.buf.is_empty() {
                    self.stats.started_at = Some(now);
                    self.start_clock(now);
                }
            }
            Phase::Rebuffering { since } => {
                self.stats.rebuffer_time += now.saturating_sub(since);
                if !self.buf.is_empty() {
                    self.start_clock(now);
                }
            }
            Phase::Playing => {}
        }
        if self.phase == Phase::Playing {
            self.advance(now, out);
            self.advance(Micros::MAX, out);
            self.end_catch_up(self.last_at);
        }
        self.phase = Phase::Finished;
    }

    /// Media buffered at `now` (for the buffer-level time series): before start-up and while
    /// stalled, newest timestamp − oldest unplayed timestamp; while playing (and after
    /// [`Player::finish`]), newest timestamp − playback position, which falls continuously
    /// between arrivals and reads 0 once the buffer has run dry.
    pub fn buffer_level(&self, now: Micros) -> Micros {
        match self.phase {
            Phase::Starting | Phase::Rebuffering { .. } => self.buffered(),
            Phase::Playing | Phase::Finished => match (self.newest_ts, self.stats.started_at) {
                (Some(newest), Some(_)) => newest.saturating_sub(self.position_at(now)),
                _ => Micros::ZERO,
            },
        }
    }

    pub fn stats(&self) -> &PlayerStats {
        &self.stats
    }

    /// Decode + display time of a frame (`decode_ms`): a frame shown at `at` left the buffer for
    /// the decoder at `at` − this.
    pub fn decode_time(&self) -> Micros {
        self.decode
    }

    pub fn phase(&self) -> PlayerPhase {
        match self.phase {
            Phase::Starting => PlayerPhase::Starting,
            Phase::Playing => PlayerPhase::Playing,
            Phase::Rebuffering { .. } => PlayerPhase::Rebuffering,
            Phase::Finished => PlayerPhase::Finished,
        }
    }

    /// The current playback rate (1.0, or the catch-up speed), as of the last event.
    pub fn playback_rate(&self) -> f64 {
        match self.catch_up {
            Some(cu) if self.clock.fast => cu.speed,
            _ => 1.0,
        }
    }

    /// Frames arrived and not yet decided.
    pub fn buffered_frames(&self) -> usize {
        self.buf.len()
    }

    // -- internals ------------------------------------------------------------------------------

    fn speed(&self) -> f64 {
        self.catch_up.map_or(1.0, |c| c.speed)
    }

    /// Re-bases `raw` across timestamp resets (see [`TIMESTAMP_RESET`]).
    fn rebase(&mut self, now: Micros, raw: Micros) -> Micros {
        if let Some(prev_raw) = self.prev_raw_ts {
            if prev_raw.saturating_sub(raw) > TIMESTAMP_RESET {
                // The new timeline continues from the previous frame, as much later in media
                // time as the frame came later in wall time.
                let continued = self.prev_ts + now.saturating_sub(self.prev_arrival);
                self.ts_offset = continued.0 as i128 - raw.0 as i128;
                self.stats.timestamp_resets = self.stats.timestamp_resets.saturating_add(1);
            }
        }
        let ts = if self.ts_offset == 0 {
            raw
        } else {
            micros_i128(raw.0 as i128 + self.ts_offset)
        };
        self.prev_raw_ts = Some(raw);
        self.prev_ts = ts;
        self.prev_arrival = now;
        ts
    }

    /// Newest timestamp − oldest unplayed timestamp.
    fn buffered(&self) -> Micros {
        match (self.newest_ts, self.buf.front()) {
            (Some(newest), Some(front)) => newest.saturating_sub(front.ts),
            _ => Micros::ZERO,
        }
    }

    /// Anchors a 1.0× clock at `now` on the oldest unplayed frame and plays.
    fn start_clock(&mut self, now: Micros) {
        let ts = self.buf.front().map_or(Micros::ZERO, |f| f.ts);
        self.clock = Clock {
            wall: now,
            ts,
            fast: false,
        };
        self.phase = Phase::Playing;
    }

    /// When the frame at `ts` is due to start decoding on the current clock.
    #[inline]
    fn due(&self, ts: Micros) -> Micros {
        let c = self.clock;
        if !c.fast {
            // 1.0×: exact, and cheaper than the general case.
            return if ts >= c.ts {
                c.wall + (ts - c.ts)
            } else {
                c.wall - (c.ts - ts)
            };
        }
        // In f64 from u64 (exact below 2^53 µs = 285 years): an i128 → f64 conversion would be
        // a runtime-library call.
        let dts = ts.0 as f64 - c.ts.0 as f64;
        micros_i128(c.wall.0 as i128 + round_i128(dts / self.speed()))
    }

    /// The media time due to start decoding at `now` on `clock`.
    #[inline]
    fn position_on(&self, clock: Clock, now: Micros) -> Micros {
        if !clock.fast {
            return if now >= clock.wall {
                clock.ts + (now - clock.wall)
            } else {
                clock.ts - (clock.wall - now)
            };
        }
        let dw = now.0 as f64 - clock.wall.0 as f64;
        micros_i128(clock.ts.0 as i128 + round_i128(dw * self.speed()))
    }

    /// The playback position at `now`, accounting for a catch-up that ends before `now`.
    fn position_at(&self, now: Micros) -> Micros {
        match self.catch_up_end() {
            Some((t, slow)) if t <= now => self.position_on(slow, now),
            _ => self.position_on(self.clock, now),
        }
    }

    /// While catching up: when the level reaches the target (if no frame arrives before), and the
    /// 1.0× clock from then on.
    fn catch_up_end(&self) -> Option<(Micros, Clock)> {
        let cu = self.catch_up?;
        if !self.clock.fast {
            return None;
        }
        let target_pos = self.newest_ts?.saturating_sub(cu.target_buffer);
        let c = self.clock;
        let (wall, ts) = if target_pos <= c.ts {
            (c.wall, c.ts)
        } else {
            let dw = round_i128((target_pos.0 - c.ts.0) as f64 / cu.speed);
            (micros_i128(c.wall.0 as i128 + dw), target_pos)
        };
        Some((
            wall,
            Clock {
                wall,
                ts,
                fast: false,
            },
        ))
    }

    /// Decides every buffered frame due by `now`, ending catch-up on the way if the target is
    /// reached before `now`.
    #[inline]
    fn advance(&mut self, now: Micros, out: &mut impl FnMut(Id, PlayOutcome)) {
        if self.clock.fast {
            self.end_catch_up_by(now, out);
        }
        self.decide_until(now, out);
    }

    /// While catching up: if the target level is reached by `now`, decides the frames due until
    /// then and returns to 1.0× at that moment.
    #[cold]
    fn end_catch_up_by(&mut self, now: Micros, out: &mut impl FnMut(Id, PlayOutcome)) {
        if let Some((t, slow)) = self.catch_up_end() {
            if t <= now {
                self.decide_until(t, out);
                self.end_catch_up(t);
                self.clock = slow;
            }
        }
    }

    #[inline(always)]
    fn decide_until(&mut self, limit: Micros, out: &mut impl FnMut(Id, PlayOutcome)) {
        while let Some(&f) = self.buf.front() {
            let due = self.due(f.ts);
            if due > limit {
                break;
            }
            self.buf.pop_front();
            let stale = self
                .played_ts
                .is_some_and(|p| p.saturating_sub(f.ts) > LATE_SKIP);
            let outcome = if stale {
                let at = f.arrival.max(self.last_at);
                self.stats.frames_skipped += 1;
                self.last_at = at;
                PlayOutcome::Skipped { at }
            } else {
                let at = (due.max(f.arrival) + self.decode).max(self.last_at);
                self.stats.frames_played += 1;
                self.last_at = at;
                self.played_ts = Some(self.played_ts.map_or(f.ts, |p| p.max(f.ts)));
                PlayOutcome::Played { at }
            };
            out(f.id, outcome);
        }
    }

    fn try_resume(&mut self, now: Micros, out: &mut impl FnMut(Id, PlayOutcome)) {
        if let Phase::Rebuffering { since } = self.phase {
            if self.buffered() >= self.rebuffer {
                self.stats.rebuffer_time += now.saturating_sub(since);
                self.start_clock(now);
                self.advance(now, out);
            }
        }
    }

    /// The buffer level at an arrival while playing (after [`Player::advance`] to `now`, so
    /// the clock is the one in force), starting catch-up when it is over the maximum.
    fn playing_level(&mut self, now: Micros) -> Micros {
        let pos = self.position_on(self.clock, now);
        let level = self
            .newest_ts
            .map_or(Micros::ZERO, |n| n.saturating_sub(pos));
        if let Some(cu) = self.catch_up {
            if !self.clock.fast && level > cu.max_buffer {
                self.clock = Clock {
                    wall: now,
                    ts: pos,
                    fast: true,
                };
                self.catch_up_since = Some(now);
                self.stats.catch_up_count = self.stats.catch_up_count.saturating_add(1);
            }
        }
        level
    }

    /// Stops catch-up accounting at `at` and returns the clock to 1.0× (the caller re-anchors).
    fn end_catch_up(&mut self, at: Micros) {
        if let Some(since) = self.catch_up_since.take() {
            self.stats.catch_up_time += at.saturating_sub(since);
        }
        self.clock.fast = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Micros {
        Micros::from_ms(v)
    }

    fn cfg(startup_ms: f64, rebuffer_ms: f64, decode_ms: f64) -> PlayerConfig {
        PlayerConfig {
            startup_buffer_ms: startup_ms,
            rebuffer_ms,
            decode_ms,
            catch_up: CatchUpConfig::default(),
        }
    }

    fn with_catch_up(mut c: PlayerConfig) -> PlayerConfig {
        c.catch_up = CatchUpConfig {
            enabled: true,
            max_buffer_ms: 1500.0,
            target_buffer_ms: 500.0,
            speed: 1.1,
        };
        c
    }

    /// Feeds `(arrival, ts)` pairs (id = index), finishes at the last arrival, returns the play
    /// time of every frame by id.
    #[test]
    fn ring_keeps_order_across_growth_and_wrap() {
        let mut r = Ring::new();
        let mut expect = std::collections::VecDeque::new();
        let mut next = 0u32;
        for round in 0..50 {
            for _ in 0..(round * 7 % 90) {
                r.push_back(next);
                expect.push_back(next);
                next += 1;
            }
            for _ in 0..(round * 5 % 70) {
                assert_eq!(r.front().copied(), expect.front().copied());
                r.pop_front();
                expect.pop_front();
            }
            assert_eq!(r.len(), expect.len());
            assert_eq!(r.is_empty(), expect.is_empty());
        }
    }

    fn run(p: &mut Player<usize>, frames: &[(Micros, Micros)]) -> Vec<PlayOutcome> {
        let mut out = Vec::new();
        for (i, &(at, ts)) in frames.iter().enumerate() {
            p.on_arrival(at, i, ts, &mut out);
        }
        p.finish(frames.last().map_or(Micros::ZERO, |f| f.0), &mut out);
        let mut by_id = vec![None; frames.len()];
        for (id, o) in out {
            assert!(by_id[id].is_none(), "frame {id} decided twice");
            by_id[id] = Some(o);
        }
        by_id
            .into_iter()
            .map(|o| o.expect("every frame decided"))
            .collect()
    }

    #[test]
    fn starts_once_exactly_startup_buffer_is_buffered() {
        let mut p = Player::new(&cfg(1000.0, 1000.0, 33.0));
        let mut out = Vec::new();
        // 25 fps arriving in real time.
        for k in 0..25u64 {
            p.on_arrival(ms(40 * k), k, ms(40 * k), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(p.phase(), PlayerPhase::Starting);
        assert_eq!(p.buffer_level(ms(960)), ms(960));
        p.on_arrival(ms(1000), 25, ms(1000), &mut out);
        assert_eq!(p.stats().started_at, Some(ms(1000)));
        assert_eq!(out, [(0, PlayOutcome::Played { at: ms(1033) })]);
        assert_eq!(p.buffer_level(ms(1000)), ms(1000));
        assert_eq!(p.buffer_level(ms(1020)), ms(980));
    }

    #[test]
    fn steady_30fps_plays_on_a_fixed_offset() {
        // RTMP millisecond timestamps at 30 fps, each frame 50 ms after its timestamp.
        let ts = |k: u64| ms((k * 1000 + 15) / 30);
        let frames: Vec<_> = (0..300).map(|k| (ts(k) + ms(50), ts(k))).collect();
        let mut p = Player::new(&cfg(500.0, 500.0, 33.0));
        let played = run(&mut p, &frames);
        // Starts when ts 500 (frame 15) arrives at 550; then frame k shows at 550 + ts + 33.
        assert_eq!(p.stats().started_at, Some(ms(550)));
        for (k, o) in played.iter().enumerate() {
            assert_eq!(
                *o,
                PlayOutcome::Played {
                    at: ms(583) + ts(k as u64)
                },
                "frame {k}"
            );
        }
        assert_eq!(p.stats().rebuffer_count, 0);
        assert_eq!(p.stats().frames_played, 300);
    }

    #[test]
    fn one_late_frame_causes_one_rebuffer_of_the_right_length() {
        // 25 fps, 100 ms path; frame 20 is 500 ms late and holds up the next ones (TCP).
        let frames: Vec<_> = (0..100u64)
            .map(|k| {
                let normal = ms(100 + 40 * k);
                let at = if k >= 20 {
                    normal.max(ms(1400))
                } else {
                    normal
                };
                (at, ms(40 * k))
            })
            .collect();
        let mut p = Player::new(&cfg(200.0, 200.0, 0.0));
        let played = run(&mut p, &frames);
        // Start at 300 (ts 200 arrives): frame k due at 300 + 40k. Frame 20 was due at 1100 and
        // came at 1400 with frames 21..=32; 200 ms are buffered again when frame 25 is in, at
        // 1400: a 300 ms stall, after which everything is 300 ms later.
        let s = p.stats();
        assert_eq!(s.rebuffer_count, 1);
        assert_eq!(s.rebuffer_time, ms(300));
        for (k, o) in played.iter().enumerate() {
            let k = k as u64;
            let expect = if k < 20 { 300 + 40 * k } else { 600 + 40 * k };
            assert_eq!(*o, PlayOutcome::Played { at: ms(expect) }, "frame {k}");
        }
    }

    #[test]
    fn a_stall_at_the_end_counts_until_finish() {
        let mut p = Player::new(&cfg(0.0, 500.0, 0.0));
        let mut out = Vec::new();
        p.on_arrival(ms(0), 0, ms(0), &mut out);
        p.on_arrival(ms(40), 1, ms(40), &mut out);
        p.on_arrival(ms(200), 2, ms(80), &mut out); // due at 80: stalled since
        assert_eq!(p.phase(), PlayerPhase::Rebuffering);
        assert_eq!(p.buffer_level(ms(200)), Micros::ZERO);
        p.finish(ms(1000), &mut out);
        assert_eq!(p.stats().rebuffer_count, 1);
        assert_eq!(p.stats().rebuffer_time, ms(920));
        assert_eq!(out.last(), Some(&(2, PlayOutcome::Played { at: ms(1000) })));
    }

    /// Frames 0..=75 (3 s, 25 fps) arrive at once at 3 s — a GOP-cache join — then one every
    /// 40 ms in real time. Latency = play time − timestamp.
    fn join_burst_frames() -> Vec<(Micros, Micros)> {
        (0..1500u64)
            .map(|k| (ms((40 * k).max(3000)), ms(40 * k)))
            .collect()
    }

    fn latencies(played: &[PlayOutcome], frames: &[(Micros, Micros)]) -> Vec<f64> {
        played
            .iter()
            .zip(frames)
            .map(|(o, f)| o.at().diff_ms(f.1))
            .collect()
    }

    #[test]
    fn without_catch_up_the_join_offset_persists() {
        let frames = join_burst_frames();
        let mut p = Player::new(&cfg(1000.0, 1000.0, 0.0));
        let lat = latencies(&run(&mut p, &frames), &frames);
        assert!(lat.iter().all(|&l| l == 3000.0));
    }

    #[test]
    fn catch_up_reduces_latency_over_time() {
        let frames = join_burst_frames();
        let mut p = Player::new(&with_catch_up(cfg(1000.0, 1000.0, 0.0)));
        let lat = latencies(&run(&mut p, &frames), &frames);
        assert_eq!(lat[0], 3000.0);
        // Catch-up starts at 3 s with 3000 ms buffered (position 0). At 1.1× the level is a
        // sawtooth: +40 ms at each arrival, −44 ms between two. After the arrival at t_a it is
        // t_a − 1.1·(t − 3000); it reaches 500 ms before the next arrival first for
        // t_a = 27 560 ms, at t = 3000 + 27 060 / 1.1 = 27 600 ms: 24.6 s of catch-up, and from
        // then on every frame is 27 600 − 27 060 = 540 ms late.
        let s = p.stats();
        assert_eq!(s.catch_up_count, 1);
        assert_eq!(s.catch_up_time, ms(24_600));
        assert!(lat.windows(2).all(|w| w[1] <= w[0] + 0.001));
        assert_eq!(*lat.last().unwrap(), 540.0);
        assert!(lat[1000..].iter().all(|&l| l == 540.0));
        assert_eq!(p.playback_rate(), 1.0);
        assert_eq!(s.rebuffer_count, 0);
    }

    #[test]
    fn finish_plays_the_rest() {
        // Never reached its start-up buffer: starts at finish.
        let mut p = Player::new(&cfg(1000.0, 1000.0, 10.0));
        let frames: Vec<_> = (0..11u64).map(|k| (ms(40 * k), ms(40 * k))).collect();
        let played = run(&mut p, &frames);
        assert_eq!(p.stats().started_at, Some(ms(400)));
        for (k, o) in played.iter().enumerate() {
            assert_eq!(
                *o,
                PlayOutcome::Played {
                    at: ms(410 + 40 * k as u64)
                }
            );
        }
        assert_eq!(p.phase(), PlayerPhase::Finished);
        // After finish, arrivals are skipped.
        let mut out = Vec::new();
        p.on_arrival(ms(2000), 99, ms(440), &mut out);
        assert_eq!(out, [(99, PlayOutcome::Skipped { at: ms(2000) })]);

        // Playing: the buffer plays out on the clock after finish.
        let mut p = Player::new(&cfg(200.0, 200.0, 0.0));
        let frames: Vec<_> = (0..20u64).map(|k| (ms(40 * k), ms(40 * k))).collect();
        let played = run(&mut p, &frames);
        for (k, o) in played.iter().enumerate() {
            assert_eq!(
                *o,
                PlayOutcome::Played {
                    at: ms(200 + 40 * k as u64)
                }
            );
        }
        assert_eq!(p.buffered_frames(), 0);
    }

    #[test]
    fn timestamp_reset_is_rebased_and_stale_frames_are_skipped() {
        let mut p = Player::new(&cfg(0.0, 0.0, 0.0));
        let mut out = Vec::new();
        for k in 0..100u64 {
            p.on_arrival(ms(40 * k), k, ms(40 * k), &mut out);
        }
        // The publisher restarts its clock at 0: the new timeline continues in real time, so
        // playback goes on without a stall.
        for k in 100..150u64 {
            p.on_arrival(ms(40 * k), k, ms(40 * (k - 100)), &mut out);
        }
        assert_eq!(p.stats().timestamp_resets, 1);
        assert_eq!(p.stats().rebuffer_count, 0);
        for (k, (id, o)) in out.iter().enumerate() {
            assert_eq!(
                (*id, *o),
                (
                    k as u64,
                    PlayOutcome::Played {
                        at: ms(40 * k as u64)
                    }
                )
            );
        }
        assert_eq!(p.stats().frames_skipped, 0);

        // Timestamps creeping back 1.5 s at a time: 1.5 s behind is played, 3 s behind skipped.
        let mut p = Player::new(&cfg(0.0, 0.0, 0.0));
        let mut out = Vec::new();
        for k in 0..=150u64 {
            p.on_arrival(ms(40 * k), k, ms(40 * k), &mut out);
        }
        p.on_arrival(ms(6000), 151, ms(4500), &mut out);
        p.on_arrival(ms(6000), 152, ms(3000), &mut out);
        p.finish(ms(6000), &mut out);
        assert_eq!(p.stats().timestamp_resets, 0);
        assert_eq!(out.len(), 153);
        assert_eq!(out[151], (151, PlayOutcome::Played { at: ms(6000) }));
        assert_eq!(out[152], (152, PlayOutcome::Skipped { at: ms(6000) }));
        assert_eq!(p.stats().frames_skipped, 1);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let mut c = with_catch_up(cfg(f64::NAN, -5.0, 1e300));
        c.catch_up.speed = f64::INFINITY;
        for cfg in [c, with_catch_up(cfg(0.0, 0.0, 0.0))] {
            let mut p = Player::new(&cfg);
            let mut out = Vec::new();
            for (i, (now, ts)) in [
                (Micros::MAX, Micros::MAX),
                (Micros::ZERO, Micros::ZERO),
                (Micros::MAX, Micros::ZERO),
                (Micros(5), Micros::MAX),
                (Micros::MAX, Micros(1 << 40)),
            ]
            .into_iter()
            .enumerate()
            {
                p.on_arrival(now, i, ts, &mut out);
                let _ = p.buffer_level(now);
                let _ = p.buffer_level(Micros::ZERO);
            }
            p.finish(Micros::ZERO, &mut out);
            assert_eq!(out.len(), 5);
        }
    }

    proptest! {
        /// The steady-playback shortcut decides exactly what the general path decides, with
        /// the same statistics and buffer levels, whatever the arrivals (gaps, stalls,
        /// timestamps going back and resets, catch-up on or off).
        #[test]
        fn steady_shortcut_equals_the_general_path(
            steps in proptest::collection::vec((0u64..120, -30i64..80, 0u8..20), 1..400),
            startup_ms in 0.0f64..2000.0,
            rebuffer_ms in 0.0f64..2000.0,
            decode_ms in 0.0f64..50.0,
            catch_up in any::<bool>(),
        ) {
            let mut c = cfg(startup_ms, rebuffer_ms, decode_ms);
            c.catch_up.enabled = catch_up;
            let mut fast = Player::new(&c);
            let mut general = Player::new(&c);
            general.general_only();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let (mut now, mut ts) = (0u64, 0i64);
            for (i, (dnow, dts, glitch)) in steps.into_iter().enumerate() {
                now += dnow * 1000;
                ts = if glitch == 0 { (ts - 5_000_000).max(0) } else { (ts + dts * 1000).max(0) };
                fast.on_arrival(Micros(now), i, Micros(ts as u64), &mut a);
                general.on_arrival(Micros(now), i, Micros(ts as u64), &mut b);
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(fast.stats(), general.stats());
                prop_assert_eq!(fast.buffer_level(Micros(now + 7_000)), general.buffer_level(Micros(now + 7_000)));
            }
            fast.finish(Micros(now), &mut a);
            general.finish(Micros(now), &mut b);
            prop_assert_eq!(a, b);
            prop_assert_eq!(fast.stats(), general.stats());
        }

        /// Every frame is decided exactly once; outcome times never go back; a frame is shown
        /// no earlier than it arrived + decode_ms.
        #[test]
        fn play_times_are_causal_and_monotone(
            steps in proptest::collection::vec((0u64..120, -30i64..80, 0u8..20), 1..400),
            startup_ms in 0.0f64..2000.0,
            rebuffer_ms in 0.0f64..2000.0,
            decode_ms in 0.0f64..50.0,
            catch_up in any::<bool>(),
            max_buffer_ms in 100.0f64..2000.0,
            speed in 1.0f64..2.0,
        ) {
            let mut c = cfg(startup_ms, rebuffer_ms, decode_ms);
            c.catch_up = CatchUpConfig {
                enabled: catch_up,
                max_buffer_ms,
                target_buffer_ms: max_buffer_ms / 3.0,
                speed,
            };
            let decode = Micros::from_ms_f64(decode_ms);
            let mut p = Player::new(&c);
            let mut out = Vec::new();
            let (mut now, mut ts) = (0u64, 0i64);
            let mut arrivals = Vec::new();
            for (dnow, dts, glitch) in steps {
                now += dnow * 1000;
                // Mostly forward, sometimes a big backward jump (a reset).
                ts = if glitch == 0 { (ts - 5_000_000).max(0) } else { (ts + dts * 1000).max(0) };
                arrivals.push(Micros(now));
                p.on_arrival(Micros(now), arrivals.len() - 1, Micros(ts as u64), &mut out);
                let _ = p.buffer_level(Micros(now + 10_000));
            }
            p.finish(Micros(now), &mut out);
            prop_assert_eq!(out.len(), arrivals.len());
            let mut seen = vec![false; arrivals.len()];
            let mut last = Micros::ZERO;
            for &(id, o) in &out {
                prop_assert!(!seen[id]);
                seen[id] = true;
                prop_assert!(o.at() >= last, "outcome time went back");
                last = o.at();
                if let PlayOutcome::Played { at } = o {
                    prop_assert!(at >= arrivals[id] + decode, "played before arrival + decode");
                }
            }
            let s = p.stats();
            prop_assert_eq!(s.frames_played + s.frames_skipped, arrivals.len() as u64);
        }
    }
}
