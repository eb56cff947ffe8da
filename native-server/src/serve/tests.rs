//! Loopback tests of the whole server: it is bound on 127.0.0.1:0 and driven by an in-process
//! publisher and players built on rml_rtmp's `ClientSession` (an independent RTMP
//! implementation, so these check our wire format against someone else's reading of it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::Settings;

const WAIT: Duration = Duration::from_secs(5);
/// Frame interval of the synthetic stream (30 fps).
const FRAME_MS: u32 = 33;
/// Keyframe every this many frames.
const GOP_FRAMES: u32 = 30;

struct Server {
    rtmp: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(configure: impl FnOnce(&mut Settings)) -> Server {
        let mut settings = Settings {
            rtmp: "127.0.0.1:0".parse().expect("addr"),
            http: "127.0.0.1:0".parse().expect("addr"),
            ..Settings::default()
        };
        configure(&mut settings);
        let server = super::bind(settings).await.expect("bind");
        let rtmp = server.rtmp_addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Server {
            rtmp,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let ended = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        assert!(ended.is_ok(), "server did not shut down in time");
    }
}

/// A minimal RTMP client over rml_rtmp's `ClientSession`.
struct Client {
    socket: TcpStream,
    session: ClientSession,
    events: VecDeque<ClientSessionEvent>,
    closed: bool,
}

impl Client {
    async fn connect(addr: SocketAddr, app: &str) -> Client {
        let mut socket = TcpStream::connect(addr).await.expect("tcp connect");
        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake.generate_outbound_p0_and_p1().expect("c0c1");
        socket.write_all(&c0c1).await.expect("write c0c1");
        let mut buf = vec![0u8; 8192];
        let leftover = loop {
            let n = socket.read(&mut buf).await.expect("read handshake");
            assert!(n > 0, "server closed during the handshake");
            match handshake.process_bytes(&buf[..n]).expect("handshake") {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes).await.expect("write");
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    socket.write_all(&response_bytes).await.expect("write");
                    break remaining_bytes;
                }
            }
        };
        let (session, results) = ClientSession::new(ClientSessionConfig::new()).expect("session");
        let mut client = Client {
            socket,
            session,
            events: VecDeque::new(),
            closed: false,
        };
        client.apply(results).await;
        client.input(&leftover).await;
        let request = client
            .session
            .request_connection(app.to_owned())
            .expect("connect request");
        client.apply(vec![request]).await;
        client
            .wait_for(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))
            .await;
        client
    }

    async fn publisher(addr: SocketAddr, app: &str, key: &str) -> Client {
        let mut c = Client::connect(addr, app).await;
        c.request_publish(key).await;
        c.wait_for(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted))
            .await;
        c
    }

    async fn request_publish(&mut self, key: &str) {
        let r = self
            .session
            .request_publishing(key.to_owned(), PublishRequestType::Live)
            .expect("publish request");
        self.apply(vec![r]).await;
    }

    async fn player(addr: SocketAddr, app: &str, key: &str) -> Client {
        let mut c = Client::connect(addr, app).await;
        let r = c
            .session
            .request_playback(key.to_owned())
            .expect("play request");
        c.apply(vec![r]).await;
        c.wait_for(|e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted))
            .await;
        c
    }

    async fn apply(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(packet) => {
                    self.socket.write_all(&packet.bytes).await.expect("write");
                }
                ClientSessionResult::RaisedEvent(event) => self.events.push_back(event),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }

    /// Feeds received bytes. rml_rtmp's session refuses some legal sequences (a second
    /// `Play.Start` after a republish) and then drops the other events of the same call, so
    /// bytes go in one at a time: a refusal then costs only the refused message.
    async fn input(&mut self, bytes: &[u8]) {
        for byte in bytes.chunks(1) {
            if let Ok(results) = self.session.handle_input(byte) {
                self.apply(results).await;
            }
        }
    }

    /// Reads once (up to `wait`). False on timeout or close.
    async fn read_some(&mut self, wait: Duration) -> bool {
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::time::timeout(wait, self.socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.closed = true;
                false
            }
            Ok(Ok(n)) => {
                self.input(&buf[..n]).await;
                true
            }
            Err(_) => false,
        }
    }

    async fn next_event(&mut self, wait: Duration) -> Option<ClientSessionEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.closed {
                return None;
            }
            self.read_some(left).await;
        }
    }

    async fn wait_for(&mut self, pred: impl Fn(&ClientSessionEvent) -> bool) -> ClientSessionEvent {
        loop {
            match self.next_event(WAIT).await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("timed out waiting for an event"),
            }
        }
    }

    async fn wait_status(&mut self, code: &str) {
        self.wait_for(
            |e| matches!(e, ClientSessionEvent::UnhandleableOnStatusCode { code: c } if c == code),
        )
        .await;
    }

    async fn send_video(&mut self, timestamp: u32, data: Bytes) {
        let r = self
            .session
            .publish_video_data(data, RtmpTimestamp::new(timestamp), false)
            .expect("video");
        self.apply(vec![r]).await;
    }

    async fn send_audio(&mut self, timestamp: u32, data: Bytes) {
        let r = self
            .session
            .publish_audio_data(data, RtmpTimestamp::new(timestamp), false)
            .expect("audio");
        self.apply(vec![r]).await;
    }

    async fn send_metadata(&mut self) {
        let mut m = StreamMetadata::new();
        m.video_width = Some(1280);
        m.video_height = Some(720);
        m.video_codec_id = Some(7);
        m.video_frame_rate = Some(30.0);
        m.encoder = Some("rtmp-lab test".into());
        let r = self.session.publish_metadata(&m).expect("metadata");
        self.apply(vec![r]).await;
    }

    /// Metadata, AVC and AAC sequence headers (what an encoder sends first).
    async fn send_headers(&mut self) {
        self.send_metadata().await;
        self.send_video(0, avc_sequence_header()).await;
        self.send_audio(0, aac_sequence_header()).await;
    }

    /// Frames `from..to` (video + audio per frame; keyframe every GOP_FRAMES).
    async fn send_frames(&mut self, from: u32, to: u32) {
        for i in from..to {
            self.send_video(i * FRAME_MS, video_frame(i)).await;
            self.send_audio(i * FRAME_MS, aac_frame(i)).await;
        }
    }

    /// Video messages received until `wait` passes without any: (timestamp, payload).
    async fn collect_video(&mut self, wait: Duration) -> Vec<(u32, Bytes)> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event(wait).await {
            if let ClientSessionEvent::VideoDataReceived { timestamp, data } = e {
                out.push((timestamp.value, data));
            }
        }
        out
    }
}

fn avc_sequence_header() -> Bytes {
    // Key frame + AVC, packet type 0, composition 0, then an AVCDecoderConfigurationRecord
    // (version 1, High profile, level 3.1, one SPS and one PPS).
    Bytes::from_static(&[
        0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x64, 0x00,
        0x1F, 0x01, 0x00, 0x02, 0x68, 0xEE,
    ])
}

fn video_frame(index: u32) -> Bytes {
    let key = index.checked_rem(GOP_FRAMES) == Some(0);
    let mut v = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
    // One NAL unit: 4-byte length, then the frame index so the order can be checked.
    let nal = [if key { 0x65 } else { 0x41 }, 0, 0, 0, 0];
    v.extend_from_slice(&(nal.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(&nal);
    v.extend_from_slice(&index.to_be_bytes());
    v.resize(v.len() + if key { 3000 } else { 300 }, 0xAB);
    Bytes::from(v)
}

fn aac_sequence_header() -> Bytes {
    // AAC, 44.1 kHz stereo 16-bit; AudioSpecificConfig: AAC-LC, 44.1 kHz, 2 channels.
    Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10])
}

fn aac_frame(index: u32) -> Bytes {
    let mut v = vec![0xAF, 0x01];
    v.extend_from_slice(&index.to_be_bytes());
    v.resize(200, 0x21);
    Bytes::from(v)
}

fn is_keyframe(data: &Bytes) -> bool {
    data.first() == Some(&0x17) && data.get(1) == Some(&0x01)
}

fn is_video_header(data: &Bytes) -> bool {
    data.get(1) == Some(&0x00)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_metadata_headers_gop_then_live_with_unchanged_timestamps() {
    let server = Server::start(|_| {}).await;
    let mut publisher = Client::publisher(server.rtmp, "live", "test").await;
    let mut early = Client::player(server.rtmp, "live", "test").await;
    publisher.send_headers().await;
    publisher.send_frames(0, 45).await;

    // The early player sees everything from the first frame.
    let video = early.collect_video(Duration::from_millis(500)).await;
    assert!(
        is_video_header(&video[0].1),
        "first video is the sequence header"
    );
    let frames: Vec<u32> = video[1..].iter().map(|(ts, _)| *ts).collect();
    let expected: Vec<u32> = (0..45).map(|i| i * FRAME_MS).collect();
    assert_eq!(frames, expected);

    // A late joiner: metadata, headers, then the GOP from the keyframe at frame 30.
    let mut late = Client::connect(server.rtmp, "live").await;
    let r = late
        .session
        .request_playback("test".into())
        .expect("play request");
    late.apply(vec![r]).await;
    let mut saw_metadata = false;
    let mut video = Vec::new();
    let mut audio_headers = 0;
    while let Some(e) = late.next_event(Duration::from_millis(500)).await {
        match e {
            ClientSessionEvent::StreamMetadataReceived { metadata } => {
                assert!(video.is_empty(), "metadata comes before media");
                assert_eq!(metadata.video_width, Some(1280));
                assert_eq!(metadata.encoder.as_deref(), Some("rtmp-lab test"));
                saw_metadata = true;
            }
            ClientSessionEvent::VideoDataReceived { timestamp, data } => {
                video.push((timestamp.value, data))
            }
            ClientSessionEvent::AudioDataReceived { data, .. } if data.get(1) == Some(&0) => {
                audio_headers += 1
            }
            _ => {}
        }
    }
    assert!(saw_metadata, "late joiner got onMetaData");
    assert_eq!(
        audio_headers, 1,
        "late joiner got the AAC sequence header once"
    );
    assert!(is_video_header(&video[0].1), "then the AVC sequence header");
    assert!(is_keyframe(&video[1].1), "then the GOP's keyframe");
    let gop: Vec<u32> = video[1..].iter().map(|(ts, _)| *ts).collect();
    let expected: Vec<u32> = (30..45).map(|i| i * FRAME_MS).collect();
    assert_eq!(gop, expected, "the cached GOP, original timestamps");

    // Live continues for both, timestamps unchanged and in order.
    publisher.send_frames(45, 60).await;
    let expected: Vec<u32> = (45..60).map(|i| i * FRAME_MS).collect();
    for player in [&mut early, &mut late] {
        let live: Vec<u32> = player
            .collect_video(Duration::from_millis(500))
            .await
            .iter()
            .map(|(ts, _)| *ts)
            .collect();
        assert_eq!(live, expected);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_gets_bad_name() {
    let server = Server::start(|_| {}).await;
    let _first = Client::publisher(server.rtmp, "live", "busy").await;
    let mut second = Client::connect(server.rtmp, "live").await;
    second.request_publish("busy").await;
    second.wait_status("NetStream.Publish.BadName").await;
    // Another key is fine.
    let _other = Client::publisher(server.rtmp, "live", "free").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_auth_refuses_unknown_keys() {
    let server = Server::start(|s| {
        s.auth.apps.insert(
            "live".into(),
            super::config::AppAuth {
                publish_keys: vec!["secret".into()],
                publish_keys_file: None,
            },
        );
    })
    .await;
    let mut intruder = Client::connect(server.rtmp, "live").await;
    intruder.request_publish("guess").await;
    intruder.wait_status("NetStream.Publish.Unauthorized").await;
    let _ok = Client::publisher(server.rtmp, "live", "secret").await;
    let _open = Client::publisher(server.rtmp, "other", "anything").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gop_cache_the_first_video_frame_is_a_keyframe() {
    let server = Server::start(|s| s.relay.gop_cache = false).await;
    let mut publisher = Client::publisher(server.rtmp, "live", "nogop").await;
    publisher.send_headers().await;
    publisher.send_frames(0, 45).await;
    let mut player = Client::player(server.rtmp, "live", "nogop").await;
    publisher.send_frames(45, 75).await;
    let video = player.collect_video(Duration::from_millis(500)).await;
    assert!(is_video_header(&video[0].1), "sequence header first");
    assert!(is_keyframe(&video[1].1), "then a keyframe");
    assert_eq!(
        video[1].0,
        60 * FRAME_MS,
        "the next keyframe, not the cached one"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_waits_for_publisher_and_survives_a_republish() {
    let server = Server::start(|_| {}).await;
    // Joins before any publisher: waits, not idle-closed.
    let mut player = Client::player(server.rtmp, "live", "obs").await;
    let mut publisher = Client::publisher(server.rtmp, "live", "obs").await;
    player.wait_status("NetStream.Play.PublishNotify").await;
    publisher.send_headers().await;
    publisher.send_frames(0, 10).await;
    let video = player.collect_video(Duration::from_millis(500)).await;
    assert_eq!(video.len(), 11, "header + 10 frames");

    // The publisher drops (OBS losing its connection).
    drop(publisher);
    player.wait_status("NetStream.Play.UnpublishNotify").await;
    player.read_some(Duration::from_millis(300)).await;
    assert!(!player.closed, "the player stays connected");

    // It comes back: the player continues with the new stream.
    let mut publisher = Client::publisher(server.rtmp, "live", "obs").await;
    player.wait_status("NetStream.Play.PublishNotify").await;
    publisher.send_headers().await;
    publisher.send_frames(0, 5).await;
    let video = player.collect_video(Duration::from_millis(500)).await;
    assert!(is_video_header(&video[0].1));
    let ts: Vec<u32> = video[1..].iter().map(|(t, _)| *t).collect();
    assert_eq!(ts, (0..5).map(|i| i * FRAME_MS).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_that_connection_and_shutdown_ends_players() {
    let server = Server::start(|s| s.limits.handshake_timeout_s = 0.5).await;
    // Idle sockets that never handshake, and one that sends garbage after a handshake.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(server.rtmp).await.expect("connect"));
    }
    let mut garbage = Client::connect(server.rtmp, "live").await;
    garbage
        .socket
        .write_all(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x14, 1, 0, 0, 0, 0xFF])
        .await
        .expect("write");
    let mut tries = 0;
    while !garbage.closed && tries < 50 {
        garbage.read_some(Duration::from_millis(100)).await;
        tries += 1;
    }
    assert!(
        garbage.closed,
        "a 16 MiB declared message closes the connection"
    );

    let mut publisher = Client::publisher(server.rtmp, "live", "ok").await;
    let mut player = Client::player(server.rtmp, "live", "ok").await;
    publisher.send_headers().await;
    publisher.send_frames(0, 5).await;
    assert_eq!(
        player.collect_video(Duration::from_millis(300)).await.len(),
        6
    );

    // Idle sockets are closed after the handshake timeout.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut buf = [0u8; 16];
    for s in idle.iter_mut() {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed by the server");
        assert!(matches!(n, Ok(0) | Err(_)));
    }

    // Shutdown: the player's connection ends, the server returns.
    server.shutdown().await;
    let mut tries = 0;
    while !player.closed && tries < 50 {
        player.read_some(Duration::from_millis(100)).await;
        tries += 1;
    }
    assert!(player.closed, "players are closed at shutdown");
}

/// The fan-out hot path without sockets: one publisher, 100 players, 1,000 video messages.
/// Run with `cargo test --release -p native-server fan_out_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "measurement; run in release"]
async fn fan_out_cost() {
    use super::outbox::Outbox;
    use super::relay::Relay;
    use std::sync::Arc;
    let mut settings = Settings::default();
    settings.relay.queue_max_ms = 1e9;
    settings.relay.queue_max_bytes = 1 << 30;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let relay = Relay::new(&settings, settings.publish_auth().expect("auth"), rx);
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let publisher = Arc::new(Outbox::new(peer, 1 << 30));
    let stream = relay
        .publish("live", "bench", "bench", 0, peer, &publisher, 1)
        .expect("publish");
    let players: Vec<Arc<Outbox>> = (1..=100)
        .map(|id| {
            let o = Arc::new(Outbox::new(peer, 1 << 30));
            relay.play("live", "bench", id, &o, 1).expect("play");
            o
        })
        .collect();
    let frames: Vec<Bytes> = (0..1000).map(|i| video_frame(i + 1)).collect();
    let start = std::time::Instant::now();
    for (i, f) in frames.iter().enumerate() {
        relay.publish_media(
            &stream,
            0,
            sim_core::server::MediaKind::Video,
            i as u32 * FRAME_MS,
            f,
        );
    }
    let elapsed = start.elapsed();
    let per_message = elapsed / frames.len() as u32;
    println!(
        "fan-out: {:?} per message to {} players ({:?} per player), payload {} bytes",
        per_message,
        players.len(),
        per_message / players.len() as u32,
        frames[1].len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_tap_reports_each_media_message_as_it_arrives() {
    let settings = Settings {
        rtmp: "127.0.0.1:0".parse().expect("addr"),
        http: "127.0.0.1:0".parse().expect("addr"),
        ..Settings::default()
    };
    let server = super::bind(settings).await.expect("bind");
    let relay = server.relay();
    let mut tap = relay.tap_arrivals(1024).expect("the first tap");
    assert!(relay.tap_arrivals(1).is_none(), "there is one tap");
    let rtmp = server.rtmp_addr;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    use sim_core::server::MediaKind;
    let before = std::time::Instant::now();
    let mut publisher = Client::publisher(rtmp, "live", "tap").await;
    publisher.send_headers().await;
    publisher.send_frames(0, 5).await;
    let mut got = Vec::new();
    while got.len() < 12 {
        let a = tokio::time::timeout(WAIT, tap.recv())
            .await
            .expect("an arrival in time")
            .expect("the tap stays open");
        got.push(a);
    }
    let after = std::time::Instant::now();
    // Metadata is not media; the two sequence headers are flagged.
    assert!(got[0].sequence_header && got[0].kind == MediaKind::Video);
    assert!(got[1].sequence_header && got[1].kind == MediaKind::Audio);
    for (i, pair) in got[2..].chunks(2).enumerate() {
        let ts = i as u32 * FRAME_MS;
        assert_eq!((pair[0].kind, pair[0].timestamp_ms), (MediaKind::Video, ts));
        assert_eq!((pair[1].kind, pair[1].timestamp_ms), (MediaKind::Audio, ts));
        assert_eq!(pair[0].payload_bytes as usize, video_frame(i as u32).len());
        assert!(!pair[0].sequence_header && !pair[1].sequence_header);
    }
    assert!(got.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(got[0].at >= before && got[11].at <= after);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
