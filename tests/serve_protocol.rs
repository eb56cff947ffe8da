//! `rtmp-lab serve` driven by the tests' own scripted RTMP client (tests/support/rtmp.rs, written
//! independently of the server's codec): chunk-level edge cases a real encoder produces, relay
//! semantics (one publisher per key, GOP cache, reconnects, auth), the HTTP API on a stream whose
//! every frame is known, and graceful shutdown.

use std::time::{Duration, Instant};

use e2e::rtmp::{
    self, aac_frame, aac_sequence_header, avc_frame, avc_sequence_header, classify, metadata,
    write_chunks, Amf, Client, Frame, Header, Msg, AUDIO, CSID_AUDIO, CSID_VIDEO, VIDEO,
};
use e2e::{http, unique_key, Server};

/// Reads media from `player` until `done` says so or `timeout` passes; returns what came.
fn collect(player: &mut Client, timeout: Duration, done: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match player.next_media(left) {
            Ok(Some(m)) => got.push(m),
            Ok(None) => break,
            Err(e) => panic!(
                "player error after {} media messages: {e}\nseen: {:?}",
                got.len(),
                player.seen
            ),
        }
    }
    got
}

/// Coded video frames (not sequence headers) among `msgs`.
fn video_frames(msgs: &[Msg]) -> Vec<&Msg> {
    msgs.iter()
        .filter(|m| matches!(classify(m), Frame::Video { .. }))
        .collect()
}

fn marker(m: &Msg) -> u32 {
    match classify(m) {
        Frame::Video { marker, .. } | Frame::Audio { marker } => marker,
        other => panic!("not a marked frame: {other:?}"),
    }
}

fn has_marker(msgs: &[Msg], kind: u8, wanted: u32) -> bool {
    msgs.iter().any(|m| {
        m.type_id == kind
            && matches!(classify(m), Frame::Video { marker, .. } | Frame::Audio { marker } if marker == wanted)
    })
}

/// Sends metadata and both sequence headers at `ts`.
fn send_headers(p: &mut Client, ts: u32) {
    p.send_data(ts, &metadata(320.0, 240.0, 30.0)).unwrap();
    p.send_video(ts, &avc_sequence_header()).unwrap();
    p.send_audio(ts, &aac_sequence_header()).unwrap();
}

/// Payloads of `sent` (kind, payload) must arrive byte-identical and in order per kind.
fn assert_same_media(sent: &[(u8, Vec<u8>)], got: &[Msg], context: &str) {
    for kind in [VIDEO, AUDIO] {
        let s: Vec<&Vec<u8>> = sent
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, p)| p)
            .collect();
        let g: Vec<&Vec<u8>> = got
            .iter()
            .filter(|m| m.type_id == kind)
            .map(|m| &m.payload)
            .collect();
        assert_eq!(
            g.len(),
            s.len(),
            "{context}: type {kind}: player received {} messages, publisher sent {}",
            g.len(),
            s.len()
        );
        for (i, (a, b)) in s.iter().zip(&g).enumerate() {
            assert!(
                a == b,
                "{context}: type {kind} message {i}: payload differs (sent {} bytes, got {} \
                 bytes; first difference at byte {:?})",
                a.len(),
                b.len(),
                a.iter().zip(b.iter()).position(|(x, y)| x != y)
            );
        }
    }
}

#[test]
fn interleaved_chunk_streams_are_reassembled() {
    let mut server = Server::start();
    let key = unique_key("interleave");
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    send_headers(&mut publisher, 0);
    let msid = publisher.stream_id;

    // Two lanes (video on csid 6, audio on csid 4), each a queue of messages, cut into 128-byte
    // chunks and sent one chunk from each lane in turn: a 5,000-byte video message is spread
    // over 40 chunks with the audio messages' chunks between them.
    let mut lanes: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
    let mut sent = Vec::new();
    for i in 0..10u32 {
        let ts = 1000 + i * 33;
        let v = avc_frame(i == 0, i, 5000 + i as usize * 37);
        let mut bytes = Vec::new();
        write_chunks(
            &mut bytes,
            &Header::full(CSID_VIDEO, ts, VIDEO, msid, v.len() as u32),
            &v,
            128,
            true,
        );
        lanes[0].push(bytes);
        sent.push((VIDEO, v));
        for j in 0..3u32 {
            let a = aac_frame(100 + i * 3 + j, 300);
            let mut bytes = Vec::new();
            write_chunks(
                &mut bytes,
                &Header::full(CSID_AUDIO, ts + j * 11, AUDIO, msid, a.len() as u32),
                &a,
                128,
                true,
            );
            lanes[1].push(bytes);
            sent.push((AUDIO, a));
        }
    }
    // Split each lane's bytes at chunk boundaries: a chunk is a basic header (1 byte here) +
    // message header for the first chunk of a message, then up to 128 payload bytes.
    let split = |msgs: &Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        for m in msgs {
            // First chunk: 1 + 11 header bytes + up to 128; then 1 + up to 128 each.
            let mut rest: &[u8] = m;
            let first = (12 + 128).min(rest.len());
            chunks.push(rest[..first].to_vec());
            rest = &rest[first..];
            while !rest.is_empty() {
                let n = 129.min(rest.len());
                chunks.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
        }
        chunks
    };
    let a = split(&lanes[0]);
    let b = split(&lanes[1]);
    let mut wire = Vec::new();
    for i in 0..a.len().max(b.len()) {
        if let Some(c) = a.get(i) {
            wire.extend_from_slice(c);
        }
        if let Some(c) = b.get(i) {
            wire.extend_from_slice(c);
        }
    }
    publisher.send_raw(&wire).unwrap();

    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 9) && has_marker(g, AUDIO, 129)
    });
    let media: Vec<Msg> = got
        .into_iter()
        .filter(|m| matches!(classify(m), Frame::Video { .. } | Frame::Audio { .. }))
        .collect();
    assert_same_media(&sent, &media, "interleaved csids 4 and 6 at chunk size 128");
    // Timestamps are forwarded as sent.
    let vts: Vec<u32> = video_frames(&media).iter().map(|m| m.timestamp).collect();
    assert_eq!(vts, (0..10).map(|i| 1000 + i * 33).collect::<Vec<_>>());
    server.assert_alive("interleaved chunk streams");
}

/// Publishes frames around `chunk_size` boundaries at that inbound chunk size and checks the
/// player gets them intact.
fn chunk_size_round_trip(server: &Server, chunk_size: u32) {
    let key = unique_key(&format!("chunk{chunk_size}"));
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    publisher.set_chunk_size(chunk_size).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    send_headers(&mut publisher, 0);
    let cs = chunk_size as usize;
    let sizes = [
        cs.saturating_sub(1).max(14),
        cs,
        cs + 1,
        3 * cs + 7,
        100_000,
        150_001,
    ];
    let mut sent = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let i = i as u32;
        let v = avc_frame(i == 0, i, size);
        let a = aac_frame(50 + i, (size / 7).clamp(6, 2000));
        publisher.send_video(i * 33, &v).unwrap();
        publisher.send_audio(i * 33, &a).unwrap();
        sent.push((VIDEO, v));
        sent.push((AUDIO, a));
    }
    let last = sizes.len() as u32 - 1;
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, last) && has_marker(g, AUDIO, 50 + last)
    });
    let media: Vec<Msg> = got
        .into_iter()
        .filter(|m| matches!(classify(m), Frame::Video { .. } | Frame::Audio { .. }))
        .collect();
    assert_same_media(&sent, &media, &format!("inbound chunk size {chunk_size}"));
}

#[test]
fn chunk_sizes_128_4096_65536_in_and_out() {
    // Default outbound chunk size (4096), then a server that writes 128-byte chunks.
    let mut server = Server::start();
    for cs in [128, 4096, 65536] {
        chunk_size_round_trip(&server, cs);
    }
    server.assert_alive("chunk sizes");
    let mut small = Server::start_with_config("[socket]\nchunk_size = 128\n");
    for cs in [128, 65536] {
        chunk_size_round_trip(&small, cs);
    }
    small.assert_alive("chunk sizes with outbound chunk size 128");
}

/// Publishes 40 video frames (3 chunks each at chunk size 128) and audio from `start` with
/// `writer` settings; the player must get every payload and the exact timestamps.
fn extended_timestamp_run(server: &Server, start: u32, always_full: bool, repeat_ext: bool) {
    let key = unique_key("ext");
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    publisher.writer.always_full = always_full;
    publisher.writer.repeat_ext = repeat_ext;
    send_headers(&mut publisher, start);
    let mut sent = Vec::new();
    let mut video_ts = Vec::new();
    for i in 0..40u32 {
        let ts = start + i * 33;
        let v = avc_frame(i % 10 == 0, i, 300);
        let a = aac_frame(1000 + i, 200);
        publisher.send_video(ts, &v).unwrap();
        publisher.send_audio(ts + 5, &a).unwrap();
        sent.push((VIDEO, v));
        sent.push((AUDIO, a));
        video_ts.push(ts);
    }
    let context = format!(
        "timestamps from {start:#x} (fmt 0 only: {always_full}, extended timestamp repeated on \
         continuation chunks: {repeat_ext})"
    );
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 39) && has_marker(g, AUDIO, 1039)
    });
    let media: Vec<Msg> = got
        .into_iter()
        .filter(|m| matches!(classify(m), Frame::Video { .. } | Frame::Audio { .. }))
        .collect();
    assert_same_media(&sent, &media, &context);
    let got_ts: Vec<u32> = video_frames(&media).iter().map(|m| m.timestamp).collect();
    assert_eq!(got_ts, video_ts, "{context}: video timestamps");
    let audio_ts: Vec<u32> = media
        .iter()
        .filter(|m| m.type_id == AUDIO)
        .map(|m| m.timestamp)
        .collect();
    let want: Vec<u32> = video_ts.iter().map(|t| t + 5).collect();
    assert_eq!(audio_ts, want, "{context}: audio timestamps");
}

#[test]
fn extended_timestamps_past_0xffffff() {
    let mut server = Server::start();
    // Crossing 0xFFFFFF with FFmpeg-style delta headers (fmt 1/2/3): the absolute time is
    // accumulated past 24 bits while each delta is small.
    extended_timestamp_run(&server, 0xFF_FF00, false, true);
    // A stream that starts at 0x1000000 with full headers: every header and every continuation
    // chunk carries the extended field.
    extended_timestamp_run(&server, 0x100_0000, true, true);
    // Encoders that do not repeat the extended timestamp on continuation chunks.
    extended_timestamp_run(&server, 0x100_0000, true, false);
    // Far past: 0x7FFFFF00 (24 days).
    extended_timestamp_run(&server, 0x7FFF_FF00, false, true);
    server.assert_alive("extended timestamps");
}

#[test]
fn second_publisher_on_a_key_is_rejected_with_badname() {
    let mut server = Server::start();
    let key = unique_key("dup");
    let mut first = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut second = Client::handshake(server.rtmp).unwrap();
    second.connect_app("live").unwrap();
    let code = second.publish(&key).unwrap();
    assert_eq!(
        code, "NetStream.Publish.BadName",
        "a second publisher on live/{key} must be rejected"
    );
    // The first publisher is unaffected: a player gets its frames.
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    send_headers(&mut first, 0);
    for i in 0..5u32 {
        first
            .send_video(i * 33, &avc_frame(i == 0, i, 500))
            .unwrap();
    }
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 4)
    });
    let markers: Vec<u32> = video_frames(&got).iter().map(|m| marker(m)).collect();
    assert_eq!(markers, vec![0, 1, 2, 3, 4]);
    // A different key is still free.
    let other = unique_key("dup-other");
    let mut third = Client::handshake(server.rtmp).unwrap();
    third.connect_app("live").unwrap();
    assert_eq!(third.publish(&other).unwrap(), "NetStream.Publish.Start");
    server.assert_alive("second publisher");
}

#[test]
fn late_joiner_starts_with_the_cached_gop() {
    let mut server = Server::start();
    let key = unique_key("gop");
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    send_headers(&mut publisher, 0);
    // Two GOPs: keyframe 100 + 9 inter frames, then keyframe 200 + 5 inter frames.
    let mut ts = 0;
    for m in (100..110).chain(200..206) {
        publisher
            .send_video(ts, &avc_frame(m % 100 == 0, m, 800))
            .unwrap();
        publisher.send_audio(ts, &aac_frame(m, 100)).unwrap();
        ts += 33;
    }
    let live_start_ts = ts;
    std::thread::sleep(Duration::from_millis(300));
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    // Live frames after the join.
    for m in 206..212 {
        publisher.send_video(ts, &avc_frame(false, m, 800)).unwrap();
        ts += 33;
    }
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 211)
    });
    let order: Vec<Frame> = got.iter().map(classify).collect();
    let first_video = order
        .iter()
        .position(|f| matches!(f, Frame::Video { .. }))
        .unwrap_or_else(|| panic!("no video frame reached the late joiner: {order:?}"));
    assert!(
        order[..first_video].contains(&Frame::VideoSeq),
        "the AVC sequence header must come before the first frame: {order:?}"
    );
    assert!(
        order[..first_video].contains(&Frame::Data),
        "metadata must come before the first frame: {order:?}"
    );
    let frames = video_frames(&got);
    let first = frames[0];
    assert_eq!(
        classify(first),
        Frame::Video {
            key: true,
            marker: 200
        },
        "a late joiner must start at the latest cached keyframe"
    );
    assert!(
        first.timestamp < live_start_ts,
        "the cached keyframe keeps its older timestamp ({} < {live_start_ts})",
        first.timestamp
    );
    let markers: Vec<u32> = frames.iter().map(|m| marker(m)).collect();
    assert_eq!(
        markers,
        (200..212).collect::<Vec<_>>(),
        "the cached GOP, then live, nothing missing or repeated"
    );
    server.assert_alive("late joiner");
}

#[test]
fn without_gop_cache_a_late_joiner_waits_for_the_next_keyframe() {
    let mut server = Server::start_with_config("[relay]\ngop_cache = false\n");
    let key = unique_key("nogop");
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    send_headers(&mut publisher, 0);
    let mut ts = 0;
    for m in 100..105 {
        publisher
            .send_video(ts, &avc_frame(m == 100, m, 500))
            .unwrap();
        ts += 33;
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    for m in 105..108 {
        publisher.send_video(ts, &avc_frame(false, m, 500)).unwrap();
        ts += 33;
    }
    for m in 300..303 {
        publisher
            .send_video(ts, &avc_frame(m == 300, m, 500))
            .unwrap();
        ts += 33;
    }
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 302)
    });
    assert!(
        got.iter().any(|m| classify(m) == Frame::VideoSeq),
        "the sequence header is still sent"
    );
    let markers: Vec<u32> = video_frames(&got).iter().map(|m| marker(m)).collect();
    assert_eq!(markers, vec![300, 301, 302]);
    server.assert_alive("gop cache off");
}

#[test]
fn player_survives_a_publisher_reconnect() {
    let mut server = Server::start();
    let key = unique_key("reconnect");
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    {
        let mut first = rtmp::publisher(server.rtmp, "live", &key).unwrap();
        send_headers(&mut first, 0);
        for i in 0..10u32 {
            first
                .send_video(i * 33, &avc_frame(i == 0, 1000 + i, 600))
                .unwrap();
        }
        let got = collect(&mut player, Duration::from_secs(5), |g| {
            has_marker(g, VIDEO, 1009)
        });
        assert_eq!(video_frames(&got).len(), 10, "first session's frames");
        // Dropped without FCUnpublish/deleteStream, as when OBS loses its connection.
        let _ = first.sock.shutdown(std::net::Shutdown::Both);
    }
    // The server may take a moment to see the close: retry on BadName for up to 3 s.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut second = loop {
        let mut c = Client::handshake(server.rtmp).unwrap();
        c.connect_app("live").unwrap();
        let code = c.publish(&key).unwrap();
        if code == "NetStream.Publish.Start" {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "publishing again after the first publisher dropped: {code} for more than 3 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    send_headers(&mut second, 0);
    for i in 0..10u32 {
        second
            .send_video(i * 33, &avc_frame(i == 0, 2000 + i, 600))
            .unwrap();
    }
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 2009)
    });
    let markers: Vec<u32> = video_frames(&got).iter().map(|m| marker(m)).collect();
    assert_eq!(
        markers,
        (2000..2010).collect::<Vec<_>>(),
        "the player stays connected and gets the second session from its keyframe"
    );
    assert!(
        player
            .seen
            .iter()
            .any(|s| s.contains("NetStream.Play.UnpublishNotify")),
        "the player is told the publisher left (NetStream.Play.UnpublishNotify); it saw: {:?}",
        player.seen
    );
    server.assert_alive("publisher reconnect");
}

#[test]
fn player_that_joins_before_the_publisher_starts_when_it_arrives() {
    let mut server = Server::start();
    let key = unique_key("early");
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    send_headers(&mut publisher, 0);
    for i in 0..5u32 {
        publisher
            .send_video(i * 33, &avc_frame(i == 0, i, 400))
            .unwrap();
    }
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 4)
    });
    let markers: Vec<u32> = video_frames(&got).iter().map(|m| marker(m)).collect();
    assert_eq!(markers, vec![0, 1, 2, 3, 4]);
    server.assert_alive("early player");
}

#[test]
fn a_player_waiting_for_a_publisher_is_not_idle_timed_out() {
    // Players never have to send anything (session.rs); only non-players are idle-timed out.
    let mut server = Server::start_with_config("[limits]\nidle_timeout_s = 1\n");
    let key = unique_key("waiting");
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    send_headers(&mut publisher, 0);
    for i in 0..3u32 {
        publisher
            .send_video(i * 33, &avc_frame(i == 0, i, 400))
            .unwrap();
    }
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 2)
    });
    let markers: Vec<u32> = video_frames(&got).iter().map(|m| marker(m)).collect();
    assert_eq!(
        markers,
        vec![0, 1, 2],
        "a player that waited 2.5 s (idle_timeout_s = 1) for the publisher"
    );
    server.assert_alive("waiting player");
}

#[test]
fn publish_auth_allows_listed_keys_only() {
    let mut server = Server::start_with_config("[auth.apps.live]\npublish_keys = [\"letmein\"]\n");
    let mut c = Client::handshake(server.rtmp).unwrap();
    c.connect_app("live").unwrap();
    let code = c.publish("intruder").unwrap();
    assert!(
        code == "NetStream.Publish.BadName" || code == "NetStream.Publish.Unauthorized",
        "publishing an unlisted key must be refused clearly, got {code}"
    );
    let mut ok = rtmp::publisher(server.rtmp, "live", "letmein").unwrap();
    let mut player = rtmp::player(server.rtmp, "live", "letmein").unwrap();
    send_headers(&mut ok, 0);
    ok.send_video(0, &avc_frame(true, 7, 400)).unwrap();
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 7)
    });
    assert_eq!(video_frames(&got).len(), 1, "play stays open");
    // Apps without a list stay open for publishing.
    rtmp::publisher(server.rtmp, "other", "anything").unwrap();
    server.assert_alive("auth");
}

#[test]
fn handshake_with_connect_in_the_same_segment() {
    // Some clients send C2 and the first chunks in one write: the bytes after C2 must reach
    // the chunk reader.
    let mut server = Server::start();
    let mut c = Client::handshake(server.rtmp).unwrap();
    // `handshake` already sent C2; send one more check: connect immediately followed by
    // createStream in the same segment.
    let mut wire = Vec::new();
    let connect = rtmp::amf_encode(&[
        Amf::str("connect"),
        Amf::Number(1.0),
        Amf::obj(&[
            ("app", Amf::str("live")),
            ("tcUrl", Amf::str("rtmp://x/live")),
        ]),
    ]);
    c.writer
        .write(&mut wire, 3, 0, rtmp::COMMAND_AMF0, 0, &connect);
    let cs = rtmp::amf_encode(&[Amf::str("createStream"), Amf::Number(2.0), Amf::Null]);
    c.writer.write(&mut wire, 3, 0, rtmp::COMMAND_AMF0, 0, &cs);
    c.send_raw(&wire).unwrap();
    let (name, _) = c.wait_reply(1.0, Duration::from_secs(5)).unwrap();
    assert_eq!(name, "_result");
    let (name, v) = c.wait_reply(2.0, Duration::from_secs(5)).unwrap();
    assert_eq!(name, "_result", "{v:?}");
    server.assert_alive("pipelined commands");
}

#[test]
fn http_api_reports_a_scripted_stream_exactly() {
    let mut server = Server::start();
    let key = unique_key("api");
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    send_headers(&mut publisher, 0);
    // 3 GOPs of 30 frames at 30 fps (keyframe every 1 s), audio every 21 ms.
    let frames = 90u32;
    for i in 0..frames {
        publisher
            .send_video(i * 1000 / 30, &avc_frame(i % 30 == 0, i, 2000))
            .unwrap();
    }
    for j in 0..(frames * 1000 / 30 / 21) {
        publisher.send_audio(j * 21, &aac_frame(j, 200)).unwrap();
    }
    let audio_sent = frames * 1000 / 30 / 21;
    // Until the last audio frame too: the API is read next and must have counted it (a
    // server that writes each frame as soon as it is ingested delivers the last video frame
    // before it has read the audio the publisher sent after it).
    let got = collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, frames - 1) && has_marker(g, AUDIO, audio_sent - 1)
    });
    assert_eq!(video_frames(&got).len(), frames as usize);

    let r = http::get(server.http, "/api/streams").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let streams = r.json();
    let s = streams
        .as_array()
        .unwrap_or_else(|| panic!("/api/streams is not an array: {streams}"))
        .iter()
        .find(|s| s["app"] == "live" && s["key"] == key.as_str())
        .unwrap_or_else(|| panic!("live/{key} missing from /api/streams: {streams}"))
        .clone();
    let ing = &s["ingest"];
    assert_eq!(ing["video_codec"], "avc1", "{s}");
    assert_eq!(ing["audio_codec"], "mp4a", "{s}");
    assert_eq!(ing["width"], 320, "{s}");
    assert_eq!(ing["height"], 240, "{s}");
    // Every message counted once (whether the sequence headers count as frames is the
    // server's choice).
    let vf = ing["video_frames"].as_u64().unwrap_or(0);
    let af = ing["audio_frames"].as_u64().unwrap_or(0);
    let (vn, an) = (u64::from(frames), u64::from(audio_sent));
    assert!(
        vf == vn || vf == vn + 1,
        "video_frames {vf}, sent {vn} + 1 header: {s}"
    );
    assert!(
        af == an || af == an + 1,
        "audio_frames {af}, sent {an} + 1 header: {s}"
    );
    assert_eq!(ing["keyframes"], 3, "{s}");
    let fps = ing["fps"].as_f64().unwrap_or(0.0);
    assert!((28.0..=32.0).contains(&fps), "fps {fps}: {s}");
    let gop = ing["keyframe_interval_s"].as_f64().unwrap_or(0.0);
    assert!((0.95..=1.05).contains(&gop), "keyframe interval {gop}: {s}");
    assert_eq!(s["players"], 1, "{s}");
    assert_eq!(
        s["publisher"]["encoder"], "e2e scripted client",
        "encoder from onMetaData: {s}"
    );
    assert!(
        s["publisher"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{s}"
    );

    let r = http::get(server.http, &format!("/api/streams/live/{key}")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(d["key"], key.as_str(), "{d}");
    let ring = d["frames"].as_array().expect("frames array");
    let keys = ring
        .iter()
        .filter(|f| f["kind"] == "video" && f["frame_type"] == "key")
        .count();
    assert!(keys >= 1, "per-frame record has keyframes: {d}");
    let last_video = ring
        .iter()
        .rev()
        .find(|f| f["kind"] == "video")
        .expect("video frames in the record");
    assert_eq!(last_video["timestamp_ms"], (frames - 1) * 1000 / 30);
    assert_eq!(last_video["size_bytes"], 2000);
    assert_eq!(
        d["player_list"].as_array().map(Vec::len),
        Some(1),
        "player_list: {d}"
    );

    let r = http::get(server.http, "/api/streams/live/no-such-key").unwrap();
    assert_eq!(r.status, 404, "unknown stream: {}", r.body);
    server.assert_alive("http api");
}

#[test]
fn sigint_shuts_down_gracefully_and_players_get_eof() {
    let mut server = Server::start();
    let key = unique_key("shutdown");
    let mut publisher = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    send_headers(&mut publisher, 0);
    publisher.send_video(0, &avc_frame(true, 1, 500)).unwrap();
    collect(&mut player, Duration::from_secs(5), |g| {
        has_marker(g, VIDEO, 1)
    });
    let status = server.interrupt(Duration::from_secs(10));
    let status = status.unwrap_or_else(|| {
        panic!(
            "rtmp-lab serve did not exit within 10 s of SIGINT\n{}",
            server.logs(4000)
        )
    });
    assert!(
        status.success(),
        "exit status after SIGINT: {status}\n{}",
        server.logs(4000)
    );
    assert!(
        player.wait_closed(Duration::from_secs(2)),
        "the player's connection is closed at shutdown"
    );
}
