//! `rtmp-lab serve` under malformed and hostile input. Each case runs against its own server and
//! is followed by a check that the server is still running and still relays a normal scripted
//! publish+play (`Server::assert_healthy`), and that its resident memory stays bounded.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::rtmp::{
    self, amf_encode, avc_frame, avc_sequence_header, basic_header, classify, write_chunks, Amf,
    Client, Frame, Header, COMMAND_AMF0, CSID_COMMAND, CSID_CONTROL, CSID_VIDEO, DATA_AMF0,
    SET_CHUNK_SIZE, VIDEO,
};
use e2e::{http, raise_nofile_limit, unique_key, Server};

/// Resident-memory bound for the server after any of these cases.
const RSS_BOUND_MB: u64 = 200;

fn finish(server: &mut Server, context: &str) {
    server.assert_healthy(context);
    server.assert_rss_below(RSS_BOUND_MB, context);
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes, ignoring errors (the server may close while we write: that is allowed).
fn blast(sock: &mut TcpStream, bytes: &[u8]) {
    let _ = sock.set_write_timeout(Some(Duration::from_secs(3)));
    for piece in bytes.chunks(16 * 1024) {
        if sock.write_all(piece).is_err() {
            return;
        }
    }
}

/// Handshaken client with `connect` done.
fn connected(server: &Server) -> Client {
    let mut c = Client::handshake(server.rtmp).expect("handshake");
    c.connect_app("live").expect("connect");
    c
}

/// What the server did with a connection after a hostile message.
#[derive(Debug, PartialEq)]
enum Outcome {
    Closed,
    Reply(String),
    Silent,
}

/// Waits up to `timeout` for `_result`/`_error` to `tx`, or the connection being closed.
fn reply_or_close(c: &mut Client, tx: f64, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    loop {
        match c.recv(deadline) {
            Ok(Some(m)) if m.type_id == COMMAND_AMF0 => {
                if let Ok(v) = m.amf() {
                    let name = v.first().and_then(Amf::as_str).unwrap_or("").to_string();
                    let t = v.get(1).and_then(Amf::as_f64);
                    if (name == "_result" || name == "_error") && t == Some(tx) {
                        return Outcome::Reply(name);
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return Outcome::Silent,
            Err(_) => return Outcome::Closed,
        }
    }
}

#[test]
fn random_bytes() {
    let mut server = Server::start();
    // As the handshake.
    let mut s = Client::tcp(server.rtmp).unwrap();
    blast(&mut s, &noise(1, 64 * 1024));
    // Version byte 3, then random C1, C2 and chunk stream.
    let mut s2 = Client::tcp(server.rtmp).unwrap();
    let mut bytes = vec![3u8];
    bytes.extend(noise(2, 64 * 1024));
    blast(&mut s2, &bytes);
    // After a valid handshake.
    let mut c = Client::handshake(server.rtmp).unwrap();
    blast(&mut c.sock, &noise(3, 64 * 1024));
    // After connect.
    let mut c2 = connected(&server);
    blast(&mut c2.sock, &noise(4, 256 * 1024));
    // A version byte other than 3 is refused at once.
    let mut s3 = Client::tcp(server.rtmp).unwrap();
    blast(&mut s3, &[0x06; 1537]);
    assert!(
        rtmp::wait_closed(&mut s3, Duration::from_secs(5)),
        "a handshake with version 6 must be closed"
    );
    finish(&mut server, "random bytes");
}

#[test]
fn truncated_handshake_is_closed_after_the_handshake_timeout() {
    let mut server =
        Server::start_with_config("[limits]\nhandshake_timeout_s = 2\nidle_timeout_s = 3\n");
    let t0 = Instant::now();
    // C0 and part of C1, then nothing.
    let mut partial = Client::tcp(server.rtmp).unwrap();
    blast(&mut partial, &[3u8; 700]);
    // Nothing at all.
    let mut silent = Client::tcp(server.rtmp).unwrap();
    // C0 + C1, but never C2.
    let mut no_c2 = Client::tcp(server.rtmp).unwrap();
    blast(&mut no_c2, &[3u8; 1537]);
    // The server keeps serving while they are held.
    server.assert_healthy("three stalled handshakes held open");
    for (name, sock) in [
        ("C0 + 700 bytes of C1", &mut partial),
        ("nothing sent", &mut silent),
        ("C0 + C1, no C2", &mut no_c2),
    ] {
        let closed = rtmp::wait_closed(sock, Duration::from_secs(8).saturating_sub(t0.elapsed()));
        let after = t0.elapsed();
        assert!(
            closed,
            "handshake '{name}' still open {after:?} after connecting (handshake_timeout_s = 2)"
        );
        assert!(
            after >= Duration::from_millis(1500),
            "handshake '{name}' closed after {after:?}, before the 2 s handshake timeout"
        );
    }
    // Handshaken and connected, then idle: closed by the idle timeout (3 s).
    let mut idle = connected(&server);
    let t1 = Instant::now();
    assert!(
        idle.wait_closed(Duration::from_secs(8)),
        "an idle connection is closed after idle_timeout_s = 3"
    );
    assert!(
        t1.elapsed() >= Duration::from_millis(2500),
        "idle connection closed after {:?}, before idle_timeout_s = 3",
        t1.elapsed()
    );
    finish(&mut server, "truncated handshakes");
}

#[test]
fn garbage_after_the_handshake_closes_the_connection() {
    let mut server = Server::start();
    let mut c = Client::handshake(server.rtmp).unwrap();
    blast(&mut c.sock, &[0xFF; 4096]);
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "0xFF bytes after the handshake (type-3 chunks on csid 63 with no header) must close \
         the connection"
    );
    let mut c = Client::handshake(server.rtmp).unwrap();
    blast(
        &mut c.sock,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    finish(&mut server, "garbage after handshake");
}

#[test]
fn message_declaring_16_mib_is_refused() {
    let mut server = Server::start();
    for type_id in [COMMAND_AMF0, VIDEO] {
        let mut c = connected(&server);
        let mut bytes = Vec::new();
        rtmp::write_header(
            &mut bytes,
            &Header::full(CSID_VIDEO, 0, type_id, 1, 0xFF_FFFF),
        );
        bytes.extend_from_slice(&[0x17; 128]);
        for _ in 0..2000 {
            basic_header(&mut bytes, 3, CSID_VIDEO);
            bytes.extend_from_slice(&[0x27; 128]);
        }
        blast(&mut c.sock, &bytes);
        assert!(
            c.wait_closed(Duration::from_secs(5)),
            "a type-{type_id} message declaring 0xFFFFFF bytes (above the 8 MiB limit) must \
             close the connection"
        );
    }
    // Just above the configured limit.
    let mut small = Server::start_with_config("[limits]\nmax_message_bytes = 100000\n");
    let mut c = connected(&small);
    let mut bytes = Vec::new();
    rtmp::write_header(&mut bytes, &Header::full(CSID_VIDEO, 0, VIDEO, 1, 100_001));
    bytes.extend_from_slice(&[0x17; 128]);
    blast(&mut c.sock, &bytes);
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "a message of max_message_bytes + 1 must close the connection"
    );
    finish(&mut small, "message above max_message_bytes");
    finish(&mut server, "16 MiB declared message");
}

#[test]
fn many_partial_messages_and_chunk_streams_are_bounded() {
    let mut server = Server::start();
    // 8 MiB declared on each of 200 csids, one 128-byte chunk each: bounded by the limit on
    // reserved bytes and on chunk stream ids, never 1.6 GB.
    let mut c = connected(&server);
    let mut bytes = Vec::new();
    for csid in 10..210u32 {
        rtmp::write_header(
            &mut bytes,
            &Header::full(csid, 0, VIDEO, 1, 8 * 1024 * 1024),
        );
        bytes.extend_from_slice(&[0x27; 128]);
    }
    blast(&mut c.sock, &bytes);
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "200 chunk streams with 8 MiB messages pending must close the connection"
    );
    server.assert_rss_below(RSS_BOUND_MB, "200 pending 8 MiB messages");
    // 100 csids with small complete messages: the chunk-stream limit (64 by default).
    let mut c = connected(&server);
    let mut bytes = Vec::new();
    for csid in 10..110u32 {
        rtmp::write_header(&mut bytes, &Header::full(csid, 0, 0x7F, 0, 4));
        bytes.extend_from_slice(&[0; 4]);
    }
    blast(&mut c.sock, &bytes);
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "100 chunk stream ids (limit 64) must close the connection"
    );
    finish(&mut server, "many chunk streams");
}

#[test]
fn set_chunk_size_zero_and_0x7fffffff() {
    let mut server = Server::start();
    let mut c = connected(&server);
    c.send(CSID_CONTROL, 0, SET_CHUNK_SIZE, 0, &0u32.to_be_bytes())
        .unwrap();
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "Set Chunk Size 0 must close the connection"
    );

    // 0x7FFFFFFF: accepted (then a command still works) or refused by closing; never a hang.
    let mut c = connected(&server);
    c.set_chunk_size(0x7FFF_FFFF).unwrap();
    let tx = c.call("createStream", &[Amf::Null], 0).unwrap();
    let outcome = reply_or_close(&mut c, tx, Duration::from_secs(5));
    assert!(
        outcome == Outcome::Reply("_result".into()) || outcome == Outcome::Closed,
        "after Set Chunk Size 0x7FFFFFFF a createStream got {outcome:?}"
    );

    // 0xFFFFFFFF (the reserved top bit set).
    let mut c = connected(&server);
    c.send(CSID_CONTROL, 0, SET_CHUNK_SIZE, 0, &u32::MAX.to_be_bytes())
        .unwrap();
    c.writer.chunk_size = 0x7FFF_FFFF;
    let tx = c.call("createStream", &[Amf::Null], 0).unwrap();
    let outcome = reply_or_close(&mut c, tx, Duration::from_secs(5));
    assert_ne!(
        outcome,
        Outcome::Silent,
        "after Set Chunk Size 0xFFFFFFFF the server neither answered nor closed"
    );
    finish(&mut server, "Set Chunk Size 0 / 0x7FFFFFFF / 0xFFFFFFFF");
}

#[test]
fn type_3_chunk_with_no_prior_header() {
    let mut server = Server::start();
    for basic in [vec![0xC3u8], vec![0xC0, 0x10], vec![0xC1, 0x00, 0x01]] {
        let mut c = Client::handshake(server.rtmp).unwrap();
        let mut bytes = basic.clone();
        bytes.extend_from_slice(&[0x02; 128]);
        blast(&mut c.sock, &bytes);
        assert!(
            c.wait_closed(Duration::from_secs(5)),
            "a type-3 chunk with basic header {basic:02x?} and no previous header must close the \
             connection"
        );
    }
    // Types 1 and 2 with no prior header.
    for fmt in [1u8, 2] {
        let mut c = Client::handshake(server.rtmp).unwrap();
        let mut bytes = Vec::new();
        basic_header(&mut bytes, fmt, 9);
        bytes.extend_from_slice(&[0, 0, 0x21, 0, 0, 4, 20]);
        bytes.extend_from_slice(&[0; 16]);
        blast(&mut c.sock, &bytes);
        assert!(
            c.wait_closed(Duration::from_secs(5)),
            "a type-{fmt} chunk with no previous header must close the connection"
        );
    }
    finish(&mut server, "type-3 chunk without header");
}

#[test]
fn amf0_commands_with_zero_one_or_two_values() {
    let mut server = Server::start();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("no values", vec![]),
        ("a lone string", amf_encode(&[Amf::str("connect")])),
        ("a lone number", amf_encode(&[Amf::Number(1.0)])),
        ("two nulls", amf_encode(&[Amf::Null, Amf::Null])),
        (
            "createStream without tx",
            amf_encode(&[Amf::str("createStream")]),
        ),
        (
            "publish, tx only",
            amf_encode(&[Amf::str("publish"), Amf::Number(5.0)]),
        ),
        (
            "play, tx only",
            amf_encode(&[Amf::str("play"), Amf::Number(5.0)]),
        ),
        (
            "deleteStream, tx only",
            amf_encode(&[Amf::str("deleteStream"), Amf::Number(5.0)]),
        ),
        ("truncated string", vec![0x02, 0x00, 0x10, b'c', b'o']),
        ("AMF3 switch marker", vec![0x11, 0x02, 0x01]),
        ("unknown marker", vec![0x02, 0x00, 0x01, b'x', 0x42]),
    ];
    for (name, body) in &bodies {
        // Before connect, and after connect.
        for pre_connect in [true, false] {
            let mut c = if pre_connect {
                Client::handshake(server.rtmp).unwrap()
            } else {
                connected(&server)
            };
            c.send(CSID_COMMAND, 0, COMMAND_AMF0, 0, body).unwrap();
            // Whatever it does, it answers a well-formed command afterwards or has closed.
            let tx = c.call("createStream", &[Amf::Null], 0).unwrap();
            let _ = reply_or_close(&mut c, tx, Duration::from_secs(3));
        }
        server.assert_alive(name);
    }
    // `connect` with only a transaction id: answered, or closed; never silence.
    let mut c = Client::handshake(server.rtmp).unwrap();
    c.send(
        CSID_COMMAND,
        0,
        COMMAND_AMF0,
        0,
        &amf_encode(&[Amf::str("connect"), Amf::Number(1.0)]),
    )
    .unwrap();
    let outcome = reply_or_close(&mut c, 1.0, Duration::from_secs(5));
    assert_ne!(outcome, Outcome::Silent, "connect with no command object");
    // An unknown command with a transaction id gets `_error`.
    let mut c = connected(&server);
    c.call_tx("noSuchCommand", 7.0, &[Amf::Null], 0).unwrap();
    assert_eq!(
        reply_or_close(&mut c, 7.0, Duration::from_secs(5)),
        Outcome::Reply("_error".into()),
        "an unknown command must get _error, not silence"
    );
    finish(&mut server, "AMF0 commands with 0..2 values");
}

#[test]
fn set_data_frame_alone_and_other_odd_data_messages() {
    let mut server = Server::start();
    let bodies: Vec<Vec<u8>> = vec![
        amf_encode(&[Amf::str("@setDataFrame")]),
        amf_encode(&[Amf::str("@setDataFrame"), Amf::str("onMetaData")]),
        amf_encode(&[Amf::str("@setDataFrame"), Amf::Null]),
        amf_encode(&[Amf::str("onMetaData")]),
        amf_encode(&[
            Amf::str("@setDataFrame"),
            Amf::str("onMetaData"),
            Amf::Number(3.0),
        ]),
        vec![],
        vec![0x02],
    ];
    let key = unique_key("odd-data");
    let mut p = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    for body in &bodies {
        // On the publishing stream and on stream 0.
        let msid = p.stream_id;
        p.send(5, 0, DATA_AMF0, msid, body).unwrap();
        p.send(5, 0, DATA_AMF0, 0, body).unwrap();
    }
    // The stream goes on (or the publisher was disconnected cleanly; either way the server
    // lives).
    if p.send_video(0, &avc_sequence_header()).is_ok() {
        let _ = p.send_video(0, &avc_frame(true, 1, 300));
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Ok(Some(m)) =
            player.next_media(deadline.saturating_duration_since(Instant::now()))
        {
            if matches!(classify(&m), Frame::Video { marker: 1, .. }) {
                break;
            }
        }
    }
    server.assert_alive("odd data messages");
    // Before any publish.
    let mut c = connected(&server);
    c.send(5, 0, DATA_AMF0, 0, &bodies[0]).unwrap();
    finish(&mut server, "@setDataFrame alone");
}

/// 100,000 nested levels of `kind` (object, ECMA array or strict array).
fn deep(kind: u8, levels: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(levels * 8);
    for _ in 0..levels {
        match kind {
            0x03 => v.extend_from_slice(&[0x03, 0x00, 0x01, b'a']),
            0x08 => v.extend_from_slice(&[0x08, 0, 0, 0, 1, 0x00, 0x01, b'a']),
            _ => v.extend_from_slice(&[0x0A, 0, 0, 0, 1]),
        }
    }
    v
}

#[test]
fn amf0_nested_100000_deep() {
    let mut server = Server::start();
    for kind in [0x03u8, 0x08, 0x0A] {
        // As connect's command object.
        let mut c = Client::handshake(server.rtmp).unwrap();
        c.set_chunk_size(65536).unwrap();
        let mut body = amf_encode(&[Amf::str("connect"), Amf::Number(1.0)]);
        body.extend(deep(kind, 100_000));
        c.send(CSID_COMMAND, 0, COMMAND_AMF0, 0, &body).unwrap();
        let outcome = reply_or_close(&mut c, 1.0, Duration::from_secs(5));
        assert_ne!(
            outcome,
            Outcome::Reply("_result".into()),
            "connect with a {kind:#04x} nested 100,000 deep must not succeed"
        );
        server.assert_alive(&format!("AMF0 {kind:#04x} nested 100,000 deep in connect"));
        // As metadata on a publishing stream.
        let key = unique_key("deep");
        let mut p = rtmp::publisher(server.rtmp, "live", &key).unwrap();
        p.set_chunk_size(65536).unwrap();
        let mut body = amf_encode(&[Amf::str("@setDataFrame"), Amf::str("onMetaData")]);
        body.extend(deep(kind, 100_000));
        let msid = p.stream_id;
        let _ = p.send(5, 0, DATA_AMF0, msid, &body);
        // And as a command on the stream.
        let mut body = amf_encode(&[Amf::str("FCPublish"), Amf::Number(9.0), Amf::Null]);
        body.extend(deep(kind, 100_000));
        let _ = p.send(CSID_COMMAND, 0, COMMAND_AMF0, 0, &body);
        let _ = reply_or_close(&mut p, 9.0, Duration::from_secs(3));
        server.assert_alive(&format!("AMF0 {kind:#04x} nested 100,000 deep in metadata"));
    }
    finish(&mut server, "AMF0 nested 100,000 deep");
}

#[test]
fn backwards_extended_timestamp() {
    let mut server = Server::start();
    let key = unique_key("backwards");
    let mut p = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    p.send_video(0x200_0000, &avc_sequence_header()).unwrap();
    let msid = p.stream_id;
    let mut bytes = Vec::new();
    // Forward from 0x2000000, then back to 0x1000010 and on, then back to 5 (not extended), all
    // with full headers and the extended timestamp repeated on continuation chunks.
    let stamps = [0x200_0000u32, 0x200_0021, 0x100_0010, 0x100_0031, 5, 38];
    for (marker, &ts) in stamps.iter().enumerate() {
        let v = avc_frame(marker == 0, marker as u32, 400);
        write_chunks(
            &mut bytes,
            &Header::full(CSID_VIDEO, ts, VIDEO, msid, v.len() as u32),
            &v,
            128,
            true,
        );
    }
    p.send_raw(&bytes).unwrap();
    let markers = video_markers(&mut player, stamps.len() as u32 - 1);
    assert_eq!(
        markers,
        (0..stamps.len() as u32).collect::<Vec<_>>(),
        "frames whose (extended) timestamps go backwards are relayed intact"
    );
    finish(&mut server, "backwards extended timestamps");
}

/// Video markers the player receives until `last` (or 5 s).
fn video_markers(player: &mut Client, last: u32) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut markers = Vec::new();
    while markers.last() != Some(&last) {
        match player.next_media(deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(m)) => {
                if let Frame::Video { marker, .. } = classify(&m) {
                    markers.push(marker);
                }
            }
            Ok(None) => break,
            Err(e) => panic!("player: {e}"),
        }
    }
    markers
}

#[test]
fn forward_timestamp_jump_on_an_inter_frame_is_relayed() {
    // A discontinuity forward (restreamed sources have them): an inter frame whose type-1
    // header carries an extended delta of 0x1000000 ms (4.66 h), then more frames and a
    // keyframe. The relay forwards timestamps unchanged (relay.rs), so a player that keeps up
    // must get every frame.
    let mut server = Server::start();
    let key = unique_key("jump");
    let mut p = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    p.send_video(0, &avc_sequence_header()).unwrap();
    for i in 0..5u32 {
        p.send_video(i * 33, &avc_frame(i == 0, i, 400)).unwrap();
    }
    let before = video_markers(&mut player, 4);
    assert_eq!(before, vec![0, 1, 2, 3, 4], "frames before the jump");
    let v = avc_frame(false, 5, 400);
    let mut bytes = Vec::new();
    write_chunks(
        &mut bytes,
        &Header {
            fmt: 1,
            csid: CSID_VIDEO,
            ts_field: 0x100_0000,
            length: v.len() as u32,
            type_id: VIDEO,
            msid: p.stream_id,
            ext_on_fmt3: false,
        },
        &v,
        128,
        true,
    );
    p.send_raw(&bytes).unwrap();
    // The compressing writer did not see that raw message: full headers from here on.
    p.writer.always_full = true;
    let t = 4 * 33 + 0x100_0000;
    p.send_video(t + 33, &avc_frame(false, 6, 400)).unwrap();
    p.send_video(t + 66, &avc_frame(true, 7, 400)).unwrap();
    p.send_video(t + 99, &avc_frame(false, 8, 400)).unwrap();
    let after = video_markers(&mut player, 8);
    assert_eq!(
        after,
        vec![5, 6, 7, 8],
        "frames after a forward timestamp jump of 0x1000000 ms (player keeping up)"
    );
    finish(&mut server, "forward timestamp jump");
}

fn metric(server: &Server, name: &str) -> Option<f64> {
    let r = http::get(server.http, "/metrics").ok()?;
    r.body.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

#[test]
fn thousand_idle_connections_held_open() {
    let limit = raise_nofile_limit(8192);
    assert!(
        limit >= 2200,
        "RLIMIT_NOFILE is {limit}: 1,000 idle connections need both ends in this test"
    );
    let mut server =
        Server::start_with_config("[limits]\nmax_connections = 1100\nhandshake_timeout_s = 60\n");
    let t0 = Instant::now();
    let mut idle = Vec::with_capacity(1000);
    for i in 0..1000 {
        let s = TcpStream::connect_timeout(&server.rtmp, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        idle.push(s);
    }
    let opened = t0.elapsed();
    // Let the server accept them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open = 0.0;
    while Instant::now() < deadline {
        open = metric(&server, "rtmp_lab_connections_open").unwrap_or(0.0);
        if open >= 1000.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        open >= 1000.0,
        "rtmp_lab_connections_open is {open} with 1,000 idle connections held"
    );
    let t1 = Instant::now();
    server.assert_healthy("1,000 idle connections held open");
    let healthy_in = t1.elapsed();
    server.assert_rss_below(RSS_BOUND_MB, "1,000 idle connections");
    eprintln!(
        "1,000 idle connections opened in {opened:?}; publish+play check took {healthy_in:?}; \
         server RSS {} kB",
        server.rss_kb()
    );
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "rtmp_lab_connections_open").unwrap_or(f64::MAX) > 5.0 {
        assert!(
            Instant::now() < deadline,
            "connections still counted open 10 s after the 1,000 idle sockets closed: {:?}",
            metric(&server, "rtmp_lab_connections_open")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    finish(&mut server, "1,000 idle connections closed");
}

/// Polls `/metrics` until `name` satisfies `ok` (at most 10 s); returns the last value.
fn wait_metric(server: &Server, name: &str, ok: impl Fn(f64) -> bool) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(server, name);
        if v.is_some_and(&ok) || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_over_max_connections_are_refused() {
    let mut server =
        Server::start_with_config("[limits]\nmax_connections = 20\nhandshake_timeout_s = 30\n");
    // The start-up probe's connection must be gone first.
    let open = wait_metric(&server, "rtmp_lab_connections_open", |v| v == 0.0);
    assert_eq!(open, Some(0.0), "rtmp_lab_connections_open before the test");
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect_timeout(&server.rtmp, Duration::from_secs(5)).unwrap())
        .collect();
    let open = wait_metric(&server, "rtmp_lab_connections_open", |v| v == 20.0);
    assert_eq!(open, Some(20.0), "20 idle connections accepted");
    let mut extra = TcpStream::connect_timeout(&server.rtmp, Duration::from_secs(5)).unwrap();
    assert!(
        rtmp::wait_closed(&mut extra, Duration::from_secs(5)),
        "the 21st connection (max_connections = 20) must be closed"
    );
    let rejected = wait_metric(&server, "rtmp_lab_connections_rejected_total", |v| v >= 1.0);
    assert_eq!(rejected, Some(1.0), "rtmp_lab_connections_rejected_total");
    // The 20 held are still served: one of them completes a handshake.
    let mut first = idle.remove(0);
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    first.write_all(&c0c1).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut s0 = [0u8; 1];
    std::io::Read::read_exact(&mut first, &mut s0).expect("S0 for a held connection");
    assert_eq!(s0[0], 3);
    drop(first);
    idle.clear();
    wait_metric(&server, "rtmp_lab_connections_open", |v| v == 0.0);
    finish(&mut server, "max_connections reached, then released");
}

#[test]
fn a_player_that_never_reads_does_not_grow_the_server() {
    let mut server = Server::start();
    let key = unique_key("stalled");
    let mut p = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let stalled = rtmp::player(server.rtmp, "live", &key).unwrap();
    p.set_chunk_size(65536).unwrap();
    p.send_video(0, &avc_sequence_header()).unwrap();
    // 60 MB of video in 1 s of wall time; the stalled player reads nothing.
    let t0 = Instant::now();
    for i in 0..600u32 {
        if let Err(e) = p.send_video(i * 33, &avc_frame(i % 30 == 0, i, 100_000)) {
            panic!("publisher write failed after {i} frames: {e}");
        }
    }
    eprintln!("60 MB published in {:?}", t0.elapsed());
    server.assert_rss_below(RSS_BOUND_MB, "60 MB published to a player that never reads");
    drop(stalled);
    drop(p);
    finish(&mut server, "a stalled player");
}

#[test]
fn hostile_commands_mid_stream_leave_other_streams_alone() {
    // A publisher on one key keeps relaying while another connection sends garbage.
    let mut server = Server::start();
    let key = unique_key("bystander");
    let mut p = rtmp::publisher(server.rtmp, "live", &key).unwrap();
    let mut player = rtmp::player(server.rtmp, "live", &key).unwrap();
    p.send_video(0, &avc_sequence_header()).unwrap();
    let mut evil = connected(&server);
    blast(&mut evil.sock, &noise(9, 32 * 1024));
    for i in 0..5u32 {
        p.send_video(i * 33, &avc_frame(i == 0, i, 500)).unwrap();
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.last() != Some(&4) {
        match player.next_media(deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(m)) => {
                if let Frame::Video { marker, .. } = classify(&m) {
                    got.push(marker);
                }
            }
            Ok(None) => break,
            Err(e) => panic!("bystander player: {e}"),
        }
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    finish(&mut server, "garbage beside a live stream");
}
