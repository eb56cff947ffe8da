//! The fan-out hot path allocates nothing per player per message, checked on the real server.
//!
//! A counting global allocator (this test binary's own) counts the heap allocations (`alloc`,
//! `alloc_zeroed`, `realloc`) made by **the server's threads only**: the server runs on its own
//! tokio runtime whose `on_thread_start` sets a thread-local flag, and the publisher and players
//! run on another runtime on the test's thread, whose allocations (reading, parsing, bookkeeping)
//! are not counted. Counting everything would measure the clients as well, and they allocate
//! per message by design (each parsed message is a buffer).
//!
//! The server (`serve::bind` on 127.0.0.1:0, default settings: GOP cache on, chunk size 4096, no
//! write coalescing) gets one publisher and players that read with our own `ChunkReader` and
//! count the media messages they receive. The publisher sends a synthetic 30 fps stream (a
//! keyframe every 30 frames, each video frame followed by an AAC frame). Two phases:
//!
//! 1. [`FEW_PLAYERS`] players; warm-up (GOP cache, queues and write batches reach their working
//!    size), then the allocations during [`WINDOW_MESSAGES`] messages, counted from the first
//!    send until every player has received every one of them (then a short settle, so that
//!    nothing of the window is still running);
//! 2. [`MANY_PLAYERS`] players (the earlier ones plus new ones); warm-up again, the same window.
//!
//! Per message the server allocates a constant amount, whatever the number of players; whatever
//! it allocates per player per message shows as the growth between the phases:
//! `(allocs₂ − allocs₁) / ((MANY − FEW) × WINDOW_MESSAGES)`. That must stay under
//! [`MAX_ALLOCS_PER_PLAYER_MESSAGE`] (one allocation per player per message gives 1.0: see
//! the ignored test, which shows it).
//!
//! Measured: 244 allocations per window with 10 players and with 50, i.e. 2.03 per message and
//! a growth of 0.000 per player per message. The two per message are the chunk-once step:
//! `chunk_message`'s output buffer and the promotion of the frozen `Bytes` to a shared one at
//! its first clone (`Relay::publish_media`); a message longer than the inbound chunk size adds
//! its reassembly buffer (`ChunkReader`) and its parsed copy (`Message::parse`).
//!
//! Robust on a busy machine: no timing assertions, only counts; the deadlines are generous
//! (a run takes a second or two). What timing can still move: a writer's batch `VecDeque`
//! (64 slots) grows when a player's backlog first exceeds it (to 128, then 256 slots: twice
//! in a connection's life; seen before the publisher was paced and the warm-up made as long
//! as the window: if every added player did it inside the window, 2/120 ≈ 0.017 per player per
//! message), and an incidental allocation of the publisher's connection may fall on either
//! side of a window's edge.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use native_server::protocol::amf0::{self, Value};
use native_server::protocol::chunk::{ChunkReader, ReaderLimits};
use native_server::protocol::writer::{ChunkWriter, CSID_AUDIO, CSID_VIDEO};
use native_server::serve::config::Settings;
use native_server::serve::relay::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

/// Players in the first phase and in the second.
const FEW_PLAYERS: usize = 10;
const MANY_PLAYERS: usize = 50;
/// Media messages counted per phase: two GOPs of video and audio.
const WINDOW_MESSAGES: u32 = 2 * GOP_FRAMES * 2;
/// Media messages sent before each window, as many as in it: the GOP cache, the players'
/// queues and their writers' batches reach their working size (a `VecDeque` grows when a
/// backlog reaches a new high, once in a connection's life, never per message).
const WARM_UP_MESSAGES: u32 = WINDOW_MESSAGES;
/// Pause between frames: ~30 times real time, so players' backlogs stay short and alike from
/// one window to the next even when the test thread is slow to read.
const FRAME_PACING: Duration = Duration::from_millis(1);
/// Allowed growth of server allocations per added player per message.
const MAX_ALLOCS_PER_PLAYER_MESSAGE: f64 = 0.05;
/// Allowed server allocations per media message whatever the player count (measured: 2.0–2.3;
/// a bound, so that a regression adding per-message work is seen too).
const MAX_ALLOCS_PER_MESSAGE: f64 = 16.0;

const APP: &str = "live";
const KEY: &str = "alloc";
const FRAME_MS: u32 = 33;
const GOP_FRAMES: u32 = 30;
const KEYFRAME_BYTES: usize = 20_000;
const P_FRAME_BYTES: usize = 3_000;
const AAC_FRAME_BYTES: usize = 370;
/// The publisher's outbound chunk size (OBS and FFmpeg use 4096).
const PUBLISH_CHUNK_SIZE: u32 = 4096;
/// How long any one wait may take before the test gives up (the run takes about a second).
const DEADLINE: Duration = Duration::from_secs(30);
/// Pause after the last message of a window reached every player, so that the server's
/// writer tasks have finished their round before the count is read.
const SETTLE: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// The counting allocator
// ---------------------------------------------------------------------------------------------

thread_local! {
    /// Set on the server runtime's threads: their allocations are counted.
    static SERVER_THREAD: Cell<bool> = const { Cell::new(false) };
}

static SERVER_ALLOCS: AtomicU64 = AtomicU64::new(0);

struct CountServerThreads;

impl CountServerThreads {
    fn note(&self) {
        // `try_with`: a thread being torn down has no thread-locals left.
        if SERVER_THREAD.try_with(Cell::get).unwrap_or(false) {
            SERVER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

unsafe impl GlobalAlloc for CountServerThreads {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountServerThreads = CountServerThreads;

// ---------------------------------------------------------------------------------------------
// A minimal RTMP client: plain handshake, pipelined commands, our own codec
// ---------------------------------------------------------------------------------------------

/// Connects, does the plain handshake (C0+C1, read S0+S1+S2, C2 = S1) and returns the socket.
async fn handshake(addr: std::net::SocketAddr) -> TcpStream {
    const SIZE: usize = 1536;
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let mut c0c1 = vec![3u8];
    c0c1.extend((0..SIZE).map(|i| if i < 8 { 0 } else { (i * 7) as u8 }));
    socket.write_all(&c0c1).await.expect("write C0+C1");
    let mut s0s1s2 = vec![0u8; 1 + 2 * SIZE];
    socket.read_exact(&mut s0s1s2).await.expect("read S0+S1+S2");
    assert_eq!(s0s1s2[0], 3, "RTMP version 3");
    socket.write_all(&s0s1s2[1..=SIZE]).await.expect("write C2");
    socket
}

/// `connect`, `stream_id` × `createStream` (the server answers 1, 2, …), then `extra` on
/// message stream `stream_id`, all written at once: the server handles them in order.
async fn connect_and(addr: std::net::SocketAddr, stream_id: u32, extra: &[Value]) -> TcpStream {
    let mut socket = handshake(addr).await;
    let mut w = ChunkWriter::new();
    w.set_chunk_size(PUBLISH_CHUNK_SIZE).expect("chunk size");
    let tc_url = format!("rtmp://{addr}/{APP}");
    let connect = amf0::to_bytes(&[
        Value::string("connect"),
        Value::Number(1.0),
        Value::object([
            ("app", Value::string(APP)),
            ("type", Value::string("nonprivate")),
            ("tcUrl", Value::string(tc_url)),
        ]),
    ]);
    w.write_command(0, &connect).expect("connect");
    let create = amf0::to_bytes(&[
        Value::string("createStream"),
        Value::Number(2.0),
        Value::Null,
    ]);
    for _ in 0..stream_id {
        w.write_command(0, &create).expect("createStream");
    }
    w.write_command(stream_id, &amf0::to_bytes(extra))
        .expect("command");
    socket.write_all(&w.take()).await.expect("write commands");
    socket
}

/// What a player has received: media messages, and the last one's `timestamp << 8 | type`.
#[derive(Default)]
struct Seen {
    media: AtomicU64,
    last: AtomicU64,
}

/// `Seen::last` of a message.
fn tag(timestamp: u32, type_id: u8) -> u64 {
    u64::from(timestamp) << 8 | u64::from(type_id)
}

/// Reads everything the server sends to a player and notes the media messages.
async fn run_player(mut socket: TcpStream, seen: Arc<Seen>) {
    let mut reader = ChunkReader::new(ReaderLimits::default());
    loop {
        match socket.read_buf(reader.read_buffer(64 * 1024)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            match reader.next_message() {
                Ok(Some(m)) if m.type_id == 8 || m.type_id == 9 => {
                    seen.media.fetch_add(1, Ordering::Relaxed);
                    seen.last
                        .store(tag(m.timestamp, m.type_id), Ordering::Release);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// The publisher's side: a synthetic 30 fps stream, written message by message.
struct Publisher {
    socket: OwnedWriteHalf,
    writer: ChunkWriter,
    frame: u32,
    /// `tag` of the last media message sent.
    last: u64,
}

impl Publisher {
    async fn start(addr: std::net::SocketAddr) -> Publisher {
        let socket = connect_and(
            addr,
            1,
            &[
                Value::string("publish"),
                Value::Number(3.0),
                Value::Null,
                Value::string(KEY),
                Value::string("live"),
            ],
        )
        .await;
        let (mut read, write) = socket.into_split();
        // Drain replies and acknowledgements so the server never waits on this socket.
        tokio::spawn(async move {
            let mut sink = vec![0u8; 16 * 1024];
            while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let mut writer = ChunkWriter::new();
        writer
            .set_chunk_size(PUBLISH_CHUNK_SIZE)
            .expect("chunk size");
        Publisher {
            socket: write,
            writer,
            frame: 0,
            last: 0,
        }
    }

    async fn send(&mut self, csid: u32, type_id: u8, timestamp: u32, payload: &[u8]) {
        self.writer
            .write(csid, timestamp, type_id, 1, payload)
            .expect("chunk");
        let bytes = self.writer.take();
        self.socket.write_all(&bytes).await.expect("publish");
        self.last = tag(timestamp, type_id);
    }

    /// AVC and AAC sequence headers (counted by players as media messages).
    async fn send_headers(&mut self) {
        let avc = [
            0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x64, 0x00,
            0x1F, 0x01, 0x00, 0x02, 0x68, 0xEE,
        ];
        self.send(CSID_VIDEO, 9, 0, &avc).await;
        self.send(CSID_AUDIO, 8, 0, &[0xAF, 0x00, 0x12, 0x10]).await;
    }

    /// `messages` media messages (video and audio alternating; a whole number of frames).
    async fn send_media(&mut self, messages: u32) {
        for _ in 0..messages / 2 {
            let i = self.frame;
            self.frame += 1;
            let ts = i * FRAME_MS;
            let key = i.is_multiple_of(GOP_FRAMES);
            let mut video = BytesMut::new();
            video.extend_from_slice(&[if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
            let nal_len = if key { KEYFRAME_BYTES } else { P_FRAME_BYTES };
            video.extend_from_slice(&(nal_len as u32).to_be_bytes());
            video.extend_from_slice(&[if key { 0x65 } else { 0x41 }]);
            video.resize(5 + 4 + nal_len, 0xAB);
            self.send(CSID_VIDEO, 9, ts, &video).await;
            let mut audio = vec![0xAF, 0x01];
            audio.resize(AAC_FRAME_BYTES, 0x21);
            self.send(CSID_AUDIO, 8, ts, &audio).await;
            tokio::time::sleep(FRAME_PACING).await;
        }
    }
}

/// Waits (polling) until `done` holds; panics with `what` after [`DEADLINE`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn players_of(relay: &Relay) -> usize {
    relay
        .stream_detail(APP, KEY)
        .map_or(0, |d| d.summary.players)
}

struct Players {
    seen: Vec<Arc<Seen>>,
    /// The message stream id players play on.
    stream_id: u32,
}

impl Players {
    async fn add(&mut self, addr: std::net::SocketAddr, relay: &Relay, total: usize) {
        while self.seen.len() < total {
            let socket = connect_and(
                addr,
                self.stream_id,
                &[
                    Value::string("play"),
                    Value::Number(3.0),
                    Value::Null,
                    Value::string(KEY),
                ],
            )
            .await;
            let seen = Arc::new(Seen::default());
            tokio::spawn(run_player(socket, seen.clone()));
            self.seen.push(seen);
        }
        wait_until("the players to join", || players_of(relay) == total).await;
    }

    /// Waits until every player has received the publisher's last message (and so, in order,
    /// everything before it).
    async fn wait_for(&self, publisher: &Publisher) {
        wait_until("every player to receive every message", || {
            self.seen
                .iter()
                .all(|s| s.last.load(Ordering::Acquire) == publisher.last)
        })
        .await;
    }

    fn media_counts(&self) -> Vec<u64> {
        self.seen
            .iter()
            .map(|s| s.media.load(Ordering::Relaxed))
            .collect()
    }
}

/// Warm-up, then the server's allocations during one window of media.
async fn measure(publisher: &mut Publisher, players: &Players) -> u64 {
    publisher.send_media(WARM_UP_MESSAGES).await;
    players.wait_for(publisher).await;
    tokio::time::sleep(SETTLE).await;

    let before = players.media_counts();
    let start = SERVER_ALLOCS.load(Ordering::Relaxed);
    publisher.send_media(WINDOW_MESSAGES).await;
    players.wait_for(publisher).await;
    tokio::time::sleep(SETTLE).await;
    let allocs = SERVER_ALLOCS.load(Ordering::Relaxed) - start;
    // Exactly the window's messages reached each player: none dropped, none duplicated.
    for (after, before) in players.media_counts().iter().zip(&before) {
        assert_eq!(after - before, u64::from(WINDOW_MESSAGES));
    }
    allocs
}

/// Players on message stream 1, the id of a connection's first `createStream` (FFmpeg, OBS,
/// librtmp, GStreamer, VLC): they receive the shared chunked bytes as they are.
#[test]
fn fan_out_allocates_nothing_per_player_per_message() {
    check_fan_out(1);
}

/// Players on another message stream id (a client that called `createStream` twice) get the
/// 12-byte type-0 header of every message rewritten for them (`serve::outbox::retarget`).
/// Known: that header is a fresh `BytesMut` per player per message (measured: 1.0 allocation
/// per player per message).
#[test]
#[ignore = "known: serve::outbox::retarget allocates a header per player per message for stream ids other than 1"]
fn fan_out_to_another_stream_id_allocates_nothing_per_player_per_message() {
    check_fan_out(2);
}

/// The two phases (see the module docs) with players on `play_stream_id`, and the checks.
fn check_fan_out(play_stream_id: u32) {
    // One measurement at a time: the counter is global.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("server")
        .on_thread_start(|| SERVER_THREAD.with(|f| f.set(true)))
        .build()
        .expect("server runtime");
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");

    let settings = Settings {
        rtmp: "127.0.0.1:0".parse().expect("addr"),
        http: "127.0.0.1:0".parse().expect("addr"),
        ..Settings::default()
    };
    let server = server_rt
        .block_on(native_server::serve::bind(settings))
        .expect("bind");
    let addr = server.rtmp_addr;
    let relay = server.relay();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server_rt.spawn(server.run(async {
        let _ = stopped.await;
    }));

    let (few, many) = client_rt.block_on(async {
        let mut publisher = Publisher::start(addr).await;
        wait_until("the publisher", || {
            relay
                .stream_summaries()
                .iter()
                .any(|s| s.key == KEY && s.publisher.is_some())
        })
        .await;
        let mut players = Players {
            seen: Vec::new(),
            stream_id: play_stream_id,
        };
        players.add(addr, &relay, FEW_PLAYERS).await;
        publisher.send_headers().await;
        players.wait_for(&publisher).await;
        let few = measure(&mut publisher, &players).await;
        players.add(addr, &relay, MANY_PLAYERS).await;
        let many = measure(&mut publisher, &players).await;
        (few, many)
    });
    // The players' sockets close; then the server stops.
    drop(client_rt);
    let _ = stop.send(());
    let _ =
        server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), serving).await });

    let window = f64::from(WINDOW_MESSAGES);
    let per_message_few = few as f64 / window;
    let per_message_many = many as f64 / window;
    let per_player_message =
        (many as f64 - few as f64) / ((MANY_PLAYERS - FEW_PLAYERS) as f64 * window);
    println!(
        "players on message stream {play_stream_id}: server allocations over {WINDOW_MESSAGES} media messages: {few} with {FEW_PLAYERS} \
         players ({per_message_few:.2} per message), {many} with {MANY_PLAYERS} players \
         ({per_message_many:.2} per message, {:.4} per player-message); growth per added \
         player per message: {per_player_message:.4}",
        many as f64 / (MANY_PLAYERS as f64 * window),
    );
    assert!(
        per_player_message < MAX_ALLOCS_PER_PLAYER_MESSAGE,
        "the fan-out allocates per player per message: {per_player_message:.3} allocations \
         per added player per message ({few} with {FEW_PLAYERS} players, {many} with \
         {MANY_PLAYERS}, over {WINDOW_MESSAGES} messages)"
    );
    assert!(
        per_message_many < MAX_ALLOCS_PER_MESSAGE && per_message_few < MAX_ALLOCS_PER_MESSAGE,
        "the server allocates {per_message_few:.1} / {per_message_many:.1} times per media \
         message (bound {MAX_ALLOCS_PER_MESSAGE})"
    );
}
