//! The relay: streams addressed by (app, key), one publisher each, any number of players, and
//! the fan-out of every media message to them.
//!
//! **The hot path** (one media message from a publisher, [`Relay::publish_media`]): the FLV tag
//! header is parsed just enough to know keyframe / sequence header; the message is chunked
//! **once** into a [`ChunkedMessage`] (type-0 header, absolute timestamp, fixed chunk stream
//! ids, message stream id [`MEDIA_STREAM_ID`]) whose `Bytes` every player shares by reference
//! count; then, under the stream's lock, the ingest analyzer sees it, sim-core's
//! [`GopCache::push`] keeps it for joiners, and the current player list (an
//! `Arc<Vec<Arc<Player>>>`, copied on join/leave only) is snapshotted by one reference-count
//! increment. The lock is released before the fan-out: for each player, sim-core's
//! [`SubscriberQueue::push`] under that player's own small lock, and a wake-up of its writer —
//! or, when the runtime has a single worker thread, one wake-up of the stream's flusher task
//! for all players, which then sends each idle player's due media in one non-blocking call
//! (`run_flusher`, `Outbox::flush_direct`; what a socket does not take goes to that player's
//! writer task). Nothing on this path waits on a socket, and nothing is allocated per player.
//! Measured in
//! release on the project VM (`serve::tests::fan_out_cost`, 100 players, no sockets): about
//! 9 µs per message, 90 ns per player (lock, sim-core push, wake-up) — at 80 messages/s a
//! 100-player stream costs the publisher's task under 0.1 % of a core.
//!
//! Taking the snapshot in the same critical section as the GOP-cache push is what makes joins
//! exact: a joiner registers under the same lock, so each message is either in the burst it
//! copies from the cache or in its live queue, never both, never neither.
//!
//! **Timestamps** are forwarded unchanged (absolute, as the publisher sent them), the same for
//! every player. A late joiner receives the cached GOP with its original timestamps (players
//! start their clock at the first timestamp they see, as with nginx-rtmp and SRS, whose
//! absolute-timestamp mode does the same). After a publisher reconnects, its timestamps
//! usually restart at 0: players get `PublishNotify`, Stream Begin and `Play.Start` first,
//! which is how they learn that a new timeline starts.
//!
//! **Locks** (never held across `.await`): the registry map (cold: publish, play, leave),
//! then a stream's state, then a player's outbox — always in that order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sim_core::server::{
    GopCache, MediaInfo, MediaKind, PushOutcome, ServerConfig, SubscriberQueue,
};
use sim_core::Micros;
use tokio::sync::{mpsc, watch};

use super::api;
use super::config::{PublishAuth, Settings};
use super::ingest::IngestAnalyzer;
use super::outbox::{single_worker_runtime, Doorbell, Outbox, MEDIA_STREAM_ID};
use crate::protocol::command::{self, status_code, Metadata, Status, StatusLevel};
use crate::protocol::flv;
use crate::protocol::message::{type_id, ControlMessage, UserControlEvent};
use crate::protocol::writer::{
    chunk_message, ChunkedMessage, CSID_AUDIO, CSID_COMMAND, CSID_DATA, CSID_PROTOCOL_CONTROL,
    CSID_VIDEO,
};

/// Frames kept in each stream's ingest record (the API's per-frame list).
pub const INGEST_RING_FRAMES: usize = super::ingest::DEFAULT_RING_CAPACITY;

/// Server time: µs since the server started, the `now` every sim-core state machine is given.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Micros {
        Micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The wall-clock instant of a server time (for timers).
    pub fn instant_of(&self, at: Micros) -> Instant {
        self.start
            .checked_add(Duration::from_micros(at.0))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }
}

/// A media message as it reached the relay (its last byte read from the publisher's socket),
/// for an in-process observer such as `rtmp-lab experiment`, which matches it to what its own
/// publisher sent. See [`Relay::tap_arrivals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub kind: MediaKind,
    /// RTMP timestamp as the publisher sent it.
    pub timestamp_ms: u32,
    /// Message payload (FLV tag body) length.
    pub payload_bytes: u32,
    /// A decoder configuration (AVC/AAC sequence header), not a coded frame.
    pub sequence_header: bool,
    pub at: Instant,
}

/// Process-wide counters (`/metrics`). Relaxed atomics: each is an independent count.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub publishers: AtomicU64,
    pub players: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub players_disconnected_slow: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        // Saturating: a gauge never wraps below zero even if a path decrements twice.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(1))
        });
    }

    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self, streams: u64) -> api::ServerMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        api::ServerMetrics {
            connections_open: get(&self.connections_open),
            connections_total: get(&self.connections_total),
            connections_rejected: get(&self.connections_rejected),
            handshake_failures: get(&self.handshake_failures),
            protocol_errors: get(&self.protocol_errors),
            streams,
            publishers: get(&self.publishers),
            players: get(&self.players),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            messages_dropped: get(&self.messages_dropped),
            players_disconnected_slow: get(&self.players_disconnected_slow),
        }
    }
}

/// A player subscribed to a stream.
#[derive(Debug)]
pub struct Player {
    pub conn_id: u64,
    pub outbox: Arc<Outbox>,
    /// The message stream id it plays on (replies and notifications go there).
    pub stream_id: u32,
}

#[derive(Debug)]
struct PublisherSlot {
    conn_id: u64,
    peer: SocketAddr,
    started: Instant,
    started_at: Micros,
    outbox: Arc<Outbox>,
    /// The message stream id it publishes on.
    stream_id: u32,
}

struct StreamState {
    publisher: Option<PublisherSlot>,
    gop: GopCache<Bytes>,
    ingest: IngestAnalyzer,
    encoder: Option<String>,
    /// Copy-on-write: the publisher snapshots it with one reference-count increment.
    players: Arc<Vec<Arc<Player>>>,
    /// Bumped at each publish and unpublish (the linger timer checks it has not moved).
    generation: u64,
}

/// One (app, key) stream.
pub struct Stream {
    pub app: String,
    pub key: String,
    state: Mutex<StreamState>,
    /// Rung after a fan-out that left media for the flusher task (single-worker runtimes).
    flusher: Option<Arc<Doorbell>>,
}

impl Stream {
    fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The flusher holds a weak reference: wake it so that it sees the stream is gone.
        if let Some(bell) = &self.flusher {
            bell.ring();
        }
    }
}

/// The flusher of one stream (single-worker runtimes): after each fan-out that left media,
/// once the publisher's task has yielded (so everything its read brought is queued), every
/// player's due media goes to its socket in one call ([`Outbox::flush_direct`]). One task
/// wake-up per message instead of one per player; under load one write per player carries
/// several messages. Ends when the stream is gone.
async fn run_flusher(
    stream: Weak<Stream>,
    bell: Arc<Doorbell>,
    clock: Clock,
    metrics: Arc<Metrics>,
) {
    loop {
        bell.wait().await;
        let Some(stream) = stream.upgrade() else {
            return;
        };
        let players = stream.lock().players.clone();
        drop(stream);
        let now = clock.now();
        let mut written = 0u64;
        for p in players.iter() {
            written = written.saturating_add(p.outbox.flush_direct(now));
        }
        if written > 0 {
            metrics.add_bytes_out(written);
        }
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRefusal {
    /// Not in the app's allow list.
    Unauthorized,
    /// Another publisher holds the key (and takeover is off).
    Busy,
    /// `limits.max_streams` reached.
    TooManyStreams,
}

/// The registry of streams and everything the relay needs to run them.
pub struct Relay {
    streams: Mutex<HashMap<(String, String), Arc<Stream>>>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub server_config: ServerConfig,
    auth: PublishAuth,
    chunk_size: u32,
    max_streams: usize,
    takeover: bool,
    linger: Duration,
    shutdown: watch::Receiver<bool>,
    /// Set once by [`Relay::tap_arrivals`]; the hot path pays one atomic load when unset.
    arrival_tap: OnceLock<mpsc::Sender<Arrival>>,
}

impl Relay {
    pub fn new(settings: &Settings, auth: PublishAuth, shutdown: watch::Receiver<bool>) -> Self {
        Relay {
            streams: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            clock: Clock::new(),
            server_config: settings.relay.server_config(settings.socket.chunk_size),
            auth,
            chunk_size: settings.socket.chunk_size,
            max_streams: settings.limits.max_streams,
            takeover: settings.relay.publisher_takeover,
            linger: settings.unpublish_linger(),
            shutdown,
            arrival_tap: OnceLock::new(),
        }
    }

    /// Reports every accepted audio/video message of every stream, as it arrives, to the
    /// returned receiver. At most `capacity` reports wait unread; more are dropped, never
    /// waited for (the publisher's path must not block on an observer). Only the first call
    /// gets a receiver; later calls get `None`.
    pub fn tap_arrivals(&self, capacity: usize) -> Option<mpsc::Receiver<Arrival>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.arrival_tap.set(tx).ok().map(|()| rx)
    }

    /// The outbound chunk size every connection announces and every shared message uses.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    fn map(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream for (app, key), created if there is room. Called with the map locked.
    fn get_or_create(
        &self,
        map: &mut HashMap<(String, String), Arc<Stream>>,
        app: &str,
        key: &str,
    ) -> Option<Arc<Stream>> {
        let id = (app.to_owned(), key.to_owned());
        if let Some(s) = map.get(&id) {
            return Some(s.clone());
        }
        if map.len() >= self.max_streams {
            return None;
        }
        let flusher = single_worker_runtime().then(|| Arc::new(Doorbell::default()));
        let stream = Arc::new(Stream {
            app: app.to_owned(),
            key: key.to_owned(),
            state: Mutex::new(StreamState {
                publisher: None,
                gop: GopCache::from_config(&self.server_config),
                ingest: IngestAnalyzer::new(INGEST_RING_FRAMES),
                encoder: None,
                players: Arc::new(Vec::new()),
                generation: 0,
            }),
            flusher: flusher.clone(),
        });
        if let Some(bell) = flusher {
            tokio::spawn(run_flusher(
                Arc::downgrade(&stream),
                bell,
                self.clock,
                self.metrics.clone(),
            ));
        }
        map.insert(id, stream.clone());
        Some(stream)
    }

    /// Removes `stream` from the registry if nobody uses it any more.
    fn remove_if_unused(&self, stream: &Arc<Stream>) {
        let mut map = self.map();
        let id = (stream.app.clone(), stream.key.clone());
        let unused = map.get(&id).is_some_and(|s| Arc::ptr_eq(s, stream)) && {
            let st = stream.lock();
            st.publisher.is_none() && st.players.is_empty()
        };
        if unused {
            map.remove(&id);
        }
    }

    /// Makes `conn_id` the publisher of (app, key). Players already waiting are told
    /// (Stream Begin, `PublishNotify`, `Play.Start`) and receive the new stream from its first
    /// message (metadata and sequence headers come first from any encoder).
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        app: &str,
        key: &str,
        stream_name: &str,
        conn_id: u64,
        peer: SocketAddr,
        outbox: &Arc<Outbox>,
        stream_id: u32,
    ) -> Result<Arc<Stream>, PublishRefusal> {
        if !self.auth.allows(app, stream_name) {
            return Err(PublishRefusal::Unauthorized);
        }
        let mut map = self.map();
        let stream = self
            .get_or_create(&mut map, app, key)
            .ok_or(PublishRefusal::TooManyStreams)?;
        let mut st = stream.lock();
        drop(map);
        if let Some(old) = &st.publisher {
            if !self.takeover {
                return Err(PublishRefusal::Busy);
            }
            tracing::info!(app, key, old_peer = %old.peer, "publisher takeover: closing the old publisher");
            old.outbox.close.close();
            self.unpublish_locked(&stream, &mut st);
        }
        st.publisher = Some(PublisherSlot {
            conn_id,
            peer,
            started: Instant::now(),
            started_at: self.clock.now(),
            outbox: outbox.clone(),
            stream_id,
        });
        st.generation = st.generation.wrapping_add(1);
        st.gop.clear();
        st.ingest = IngestAnalyzer::new(INGEST_RING_FRAMES);
        st.encoder = None;
        Metrics::inc(&self.metrics.publishers);
        for p in st.players.iter() {
            let notes = [
                control_bytes(
                    &ControlMessage::UserControl(UserControlEvent::StreamBegin {
                        stream_id: p.stream_id,
                    }),
                    self.chunk_size,
                ),
                status_bytes(
                    p.stream_id,
                    status_code::PLAY_PUBLISH_NOTIFY,
                    "A publisher started; the stream begins.",
                    key,
                    self.chunk_size,
                ),
                status_bytes(
                    p.stream_id,
                    status_code::PLAY_START,
                    "Started playing.",
                    key,
                    self.chunk_size,
                ),
            ];
            for n in notes {
                p.outbox.stage(n);
            }
        }
        drop(st);
        Ok(stream)
    }

    /// The publisher `conn_id` leaves (closed, `FCUnpublish`, `deleteStream`). Its players
    /// get the last queued frames, `UnpublishNotify` and Stream EOF, and stay for the linger
    /// time. No-op if `conn_id` is not (any more) the publisher.
    pub fn unpublish(self: &Arc<Self>, stream: &Arc<Stream>, conn_id: u64) {
        let (generation, has_players) = {
            let mut st = stream.lock();
            if st.publisher.as_ref().map(|p| p.conn_id) != Some(conn_id) {
                return;
            }
            self.unpublish_locked(stream, &mut st);
            (st.generation, !st.players.is_empty())
        };
        if has_players {
            self.spawn_linger(stream.clone(), generation);
        } else {
            self.remove_if_unused(stream);
        }
    }

    fn unpublish_locked(&self, stream: &Stream, st: &mut StreamState) {
        if st.publisher.take().is_none() {
            return;
        }
        Metrics::dec(&self.metrics.publishers);
        st.generation = st.generation.wrapping_add(1);
        st.gop.clear();
        for p in st.players.iter() {
            p.outbox.commit_then_stage(&[
                status_bytes(
                    p.stream_id,
                    status_code::PLAY_UNPUBLISH_NOTIFY,
                    "The publisher left; waiting for it to return.",
                    &stream.key,
                    self.chunk_size,
                ),
                control_bytes(
                    &ControlMessage::UserControl(UserControlEvent::StreamEof {
                        stream_id: p.stream_id,
                    }),
                    self.chunk_size,
                ),
            ]);
        }
    }

    /// After the linger time, players of a stream whose publisher has not come back are
    /// closed (after their queued bytes are written).
    fn spawn_linger(self: &Arc<Self>, stream: Arc<Stream>, generation: u64) {
        let relay = Arc::clone(self);
        let linger = self.linger;
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(linger) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let players = {
                let st = stream.lock();
                if st.generation != generation || st.publisher.is_some() {
                    return;
                }
                st.players.clone()
            };
            if !players.is_empty() {
                tracing::info!(app = %stream.app, key = %stream.key, players = players.len(),
                    "publisher did not return: closing its players");
            }
            for p in players.iter() {
                p.outbox.close_after_flush();
            }
            relay.remove_if_unused(&stream);
        });
    }

    /// Subscribes a player to (app, key). The caller has staged the play replies already; the
    /// queue starts with the join burst (metadata, sequence headers, cached GOP) when a
    /// publisher is live. Without a cached keyframe (GOP cache off, or none yet) the queue
    /// waits for the next keyframe. `None` when `max_streams` is reached.
    pub fn play(
        &self,
        app: &str,
        key: &str,
        conn_id: u64,
        outbox: &Arc<Outbox>,
        stream_id: u32,
    ) -> Option<(Arc<Stream>, bool)> {
        let mut map = self.map();
        let stream = self.get_or_create(&mut map, app, key)?;
        let mut st = stream.lock();
        drop(map);
        let now = self.clock.now();
        let mut queue = SubscriberQueue::new(&self.server_config, !st.gop.has_keyframe());
        let live = st.publisher.is_some();
        if live {
            for (info, bytes) in st.gop.join_burst() {
                queue.push(now, *info, bytes.clone());
            }
        }
        outbox.start_playing(queue, stream_id);
        let player = Arc::new(Player {
            conn_id,
            outbox: outbox.clone(),
            stream_id,
        });
        let mut players: Vec<Arc<Player>> = Vec::with_capacity(st.players.len() + 1);
        players.extend(st.players.iter().cloned());
        players.push(player);
        st.players = Arc::new(players);
        Metrics::inc(&self.metrics.players);
        drop(st);
        Some((stream, live))
    }

    /// The player `conn_id` leaves.
    pub fn unsubscribe(&self, stream: &Arc<Stream>, conn_id: u64) {
        {
            let mut st = stream.lock();
            if !st.players.iter().any(|p| p.conn_id == conn_id) {
                return;
            }
            let players: Vec<Arc<Player>> = st
                .players
                .iter()
                .filter(|p| p.conn_id != conn_id)
                .cloned()
                .collect();
            st.players = Arc::new(players);
            Metrics::dec(&self.metrics.players);
        }
        self.remove_if_unused(stream);
    }

    /// One audio or video message from the publisher `conn_id`. Returns false if it is not
    /// (any more) the publisher of `stream` (taken over).
    pub fn publish_media(
        &self,
        stream: &Stream,
        conn_id: u64,
        kind: MediaKind,
        timestamp_ms: u32,
        payload: &Bytes,
    ) -> bool {
        let (tag, csid, type_id) = match kind {
            MediaKind::Audio => (
                flv::parse_audio_tag(payload).ok(),
                CSID_AUDIO,
                type_id::AUDIO,
            ),
            _ => (
                flv::parse_video_tag(payload).ok(),
                CSID_VIDEO,
                type_id::VIDEO,
            ),
        };
        // Unknown or unparseable tags are forwarded as non-key frames: the parser informs
        // relay decisions, it never gates delivery.
        let (keyframe, sequence_header) = tag
            .as_ref()
            .map_or((false, false), |t| (t.keyframe, t.sequence_header));
        let Ok(chunked) = ChunkedMessage::new(
            csid,
            timestamp_ms,
            type_id,
            MEDIA_STREAM_ID,
            payload,
            self.chunk_size,
        ) else {
            return true; // cannot happen: the reader bounds message length below 2^24
        };
        let info = MediaInfo {
            kind,
            keyframe,
            sequence_header,
            timestamp: Micros::from_ms(u64::from(timestamp_ms)),
            size_bytes: u32::try_from(chunked.wire_len()).unwrap_or(u32::MAX),
        };
        let bytes = chunked.bytes().clone();
        let now = self.clock.now();
        let players = {
            let mut st = stream.lock();
            let Some(publisher) = st.publisher.as_ref().filter(|p| p.conn_id == conn_id) else {
                return false;
            };
            let arrival = now.saturating_sub(publisher.started_at);
            match kind {
                MediaKind::Audio => {
                    st.ingest
                        .on_audio(arrival, timestamp_ms, payload.len(), tag.as_ref())
                }
                _ => st
                    .ingest
                    .on_video(arrival, timestamp_ms, payload.len(), tag.as_ref()),
            }
            st.gop.push(info, bytes.clone());
            st.players.clone()
        };
        if let Some(tap) = self.arrival_tap.get() {
            let _ = tap.try_send(Arrival {
                kind,
                timestamp_ms,
                payload_bytes: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                sequence_header,
                at: self.clock.instant_of(now),
            });
        }
        self.fan_out(stream, &players, now, info, &bytes);
        true
    }

    /// A data message from the publisher: `onMetaData` (kept for joiners and forwarded as
    /// sent) or another data message such as `onTextData`/`onCuePoint` (forwarded to the
    /// current players only). `payload` is what players receive (for metadata, the
    /// publisher's bytes without the `@setDataFrame` prefix).
    pub fn publish_data(
        &self,
        stream: &Stream,
        conn_id: u64,
        timestamp_ms: u32,
        payload: &Bytes,
        metadata: Option<&Metadata>,
    ) -> bool {
        let Ok(chunked) = ChunkedMessage::new(
            CSID_DATA,
            timestamp_ms,
            type_id::DATA_AMF0,
            MEDIA_STREAM_ID,
            payload,
            self.chunk_size,
        ) else {
            return true;
        };
        let info = MediaInfo::metadata(
            Micros::from_ms(u64::from(timestamp_ms)),
            u32::try_from(chunked.wire_len()).unwrap_or(u32::MAX),
        );
        let bytes = chunked.bytes().clone();
        let now = self.clock.now();
        let players = {
            let mut st = stream.lock();
            if st.publisher.as_ref().map(|p| p.conn_id) != Some(conn_id) {
                return false;
            }
            if let Some(meta) = metadata {
                st.ingest.on_metadata(&meta.fields);
                st.encoder = meta.fields.encoder.clone();
                st.gop.push(info, bytes.clone());
            }
            st.players.clone()
        };
        self.fan_out(stream, &players, now, info, &bytes);
        true
    }

    fn fan_out(
        &self,
        stream: &Stream,
        players: &[Arc<Player>],
        now: Micros,
        info: MediaInfo,
        bytes: &Bytes,
    ) {
        let direct = stream.flusher.is_some();
        let mut flush = false;
        for p in players {
            let pushed = p.outbox.push_media(now, info, bytes.clone(), direct);
            let (outcome, evicted) = (pushed.outcome, pushed.evicted);
            flush |= pushed.flush;
            let dropped = evicted + u64::from(matches!(outcome, PushOutcome::Dropped(_)));
            if dropped > 0 {
                self.metrics
                    .messages_dropped
                    .fetch_add(dropped, Ordering::Relaxed);
            }
            if outcome == PushOutcome::Disconnect {
                Metrics::inc(&self.metrics.players_disconnected_slow);
                tracing::warn!(peer = %p.outbox.peer, "player too far behind: disconnecting");
            }
        }
        if let (true, Some(bell)) = (flush, &stream.flusher) {
            bell.ring();
        }
    }

    /// Every stream, for shutdown and the API.
    fn all_streams(&self) -> Vec<Arc<Stream>> {
        self.map().values().cloned().collect()
    }

    fn summary(&self, stream: &Stream, st: &StreamState) -> api::StreamSummary {
        api::StreamSummary {
            app: stream.app.clone(),
            key: stream.key.clone(),
            publisher: st.publisher.as_ref().map(|p| api::PublisherInfo {
                peer: p.peer.to_string(),
                uptime_s: p.started.elapsed().as_secs_f64(),
                encoder: st.encoder.clone(),
            }),
            players: st.players.len(),
            ingest: st.ingest.stats(),
        }
    }

    /// `/api/streams`.
    pub fn stream_summaries(&self) -> Vec<api::StreamSummary> {
        let mut out: Vec<api::StreamSummary> = self
            .all_streams()
            .iter()
            .map(|s| self.summary(s, &s.lock()))
            .collect();
        out.sort_by(|a, b| (&a.app, &a.key).cmp(&(&b.app, &b.key)));
        out
    }

    /// `/api/streams/{app}/{key}`.
    pub fn stream_detail(&self, app: &str, key: &str) -> Option<api::StreamDetail> {
        let stream = self.map().get(&(app.to_owned(), key.to_owned())).cloned()?;
        let st = stream.lock();
        let summary = self.summary(&stream, &st);
        let frames = st.ingest.frames();
        let players = st.players.clone();
        drop(st);
        let player_list = players
            .iter()
            .map(|p| {
                let (queued, stats) = p.outbox.stats();
                api::PlayerInfo {
                    peer: p.outbox.peer.to_string(),
                    connected_s: p.outbox.connected_at.elapsed().as_secs_f64(),
                    queued_bytes: queued,
                    delivered_messages: stats.delivered,
                    dropped_messages: stats
                        .dropped_full
                        .saturating_add(stats.dropped_waiting_key)
                        .saturating_add(stats.dropped_disconnected),
                }
            })
            .collect();
        Some(api::StreamDetail {
            summary,
            player_list,
            frames,
        })
    }

    /// `/metrics`.
    pub fn server_metrics(&self) -> api::ServerMetrics {
        let streams = self.map().len() as u64;
        self.metrics.snapshot(streams)
    }

    /// The message stream id the publisher `conn_id` publishes on, if it still does.
    pub fn publisher_stream_id(&self, stream: &Stream, conn_id: u64) -> Option<u32> {
        let st = stream.lock();
        st.publisher
            .as_ref()
            .filter(|p| p.conn_id == conn_id)
            .map(|p| p.stream_id)
    }
}

impl super::http::ApiSource for Relay {
    fn streams(&self) -> Vec<api::StreamSummary> {
        self.stream_summaries()
    }

    fn stream(&self, app: &str, key: &str) -> Option<api::StreamDetail> {
        self.stream_detail(app, key)
    }

    fn metrics(&self) -> api::ServerMetrics {
        self.server_metrics()
    }
}

/// A protocol control message or user control event, chunked (chunk stream 2, stream 0).
pub fn control_bytes(control: &ControlMessage, chunk_size: u32) -> Bytes {
    let mut payload = BytesMut::with_capacity(10);
    let type_id = control.encode_payload(&mut payload);
    let mut out = BytesMut::new();
    // Arguments are the server's own (valid csid, short payload): cannot fail.
    let _ = chunk_message(
        &mut out,
        CSID_PROTOCOL_CONTROL,
        0,
        type_id,
        0,
        &payload,
        chunk_size,
    );
    out.freeze()
}

/// An `onStatus` command on message stream `stream_id`, chunked.
pub fn status_bytes(
    stream_id: u32,
    code: &str,
    description: &str,
    details: &str,
    chunk_size: u32,
) -> Bytes {
    let level = if code.ends_with("BadName")
        || code.ends_with("Unauthorized")
        || code.ends_with("Failed")
        || code.ends_with("NotFound")
    {
        StatusLevel::Error
    } else {
        StatusLevel::Status
    };
    let payload = command::on_status(&Status {
        level,
        code,
        description,
        details: Some(details),
    });
    let mut out = BytesMut::new();
    let _ = chunk_message(
        &mut out,
        CSID_COMMAND,
        0,
        type_id::COMMAND_AMF0,
        stream_id,
        &payload,
        chunk_size,
    );
    out.freeze()
}
