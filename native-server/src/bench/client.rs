//! The load generator's RTMP client side: URL parsing, the plain handshake, and the command
//! exchanges (`connect`, `createStream`, `publish`, `play`) on a blocking socket.
//!
//! Used by the publisher (which then paces its clip, see `publisher.rs`) and by each player
//! until it sends `play`; the player's socket is then made non-blocking and handed to an epoll
//! worker with its [`ChunkScanner`] state (`player.rs`). Replies are read with the same scanner
//! the workers use; commands are encoded with the project's AMF0 encoder and chunk writer.
//!
//! The client speaks the subset every server accepts: the plain (version 3, no digest)
//! handshake, AMF0 commands, Acknowledgements when the server asks for them, and Ping
//! Responses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;

use super::scanner::{ChunkScanner, Event};
use crate::protocol::amf0::{self, Amf0Limits, Value};
use crate::protocol::command::parse_command;
use crate::protocol::message::{type_id, user_control_type};
use crate::protocol::writer::{chunk_message, ChunkWriter, CSID_PROTOCOL_CONTROL};

/// Size of C1/S1/C2/S2.
const HANDSHAKE_SIZE: usize = 1536;

/// A parsed `rtmp://host[:port]/app/key` (the app may contain slashes; the key is the last
/// path segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
    pub key: String,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl> {
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| anyhow!("{url:?}: expected rtmp://HOST[:PORT]/APP/KEY"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| anyhow!("{url:?}: no /APP/KEY after the host"))?;
        let (host, port) = match authority.strip_prefix('[') {
            // [IPv6]:port
            Some(v6) => match v6.split_once(']') {
                Some((h, rest)) => (h, rest.strip_prefix(':')),
                None => bail!("{url:?}: unclosed [ in the host"),
            },
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| anyhow!("{url:?}: bad port {p:?}"))?,
            None => 1935,
        };
        let (app, key) = path.trim_end_matches('/').rsplit_once('/').ok_or_else(|| {
            anyhow!("{url:?}: expected /APP/KEY (e.g. rtmp://127.0.0.1/live/test)")
        })?;
        if host.is_empty() || app.is_empty() || key.is_empty() {
            bail!("{url:?}: host, app and key must not be empty");
        }
        Ok(RtmpUrl {
            host: host.to_owned(),
            port,
            app: app.to_owned(),
            key: key.to_owned(),
        })
    }

    pub fn socket_addr(&self) -> Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("while resolving {}", self.host))?
            .next()
            .ok_or_else(|| anyhow!("{} resolves to no address", self.host))
    }

    pub fn tc_url(&self) -> String {
        format!("rtmp://{}:{}/{}", self.host, self.port, self.app)
    }
}

/// A connected, handshaken RTMP client connection (blocking socket).
pub struct Connection {
    pub socket: TcpStream,
    pub scanner: ChunkScanner,
    pub writer: ChunkWriter,
    /// The server's Window Acknowledgement Size, once it sent one.
    pub ack_window: Option<u32>,
    /// Bytes received when the last Acknowledgement was sent.
    pub acked: u64,
    read_buf: Vec<u8>,
}

/// A non-media message collected while waiting for a reply.
struct Collected {
    type_id: u8,
    payload: Vec<u8>,
}

impl Connection {
    /// TCP connect (TCP_NODELAY) and the plain handshake, each bounded by `timeout`.
    pub fn open(addr: SocketAddr, timeout: Duration) -> Result<Connection> {
        let mut socket = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("while connecting to {addr}"))?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.set_write_timeout(Some(timeout))?;
        handshake(&mut socket).context("during the RTMP handshake")?;
        Ok(Connection {
            socket,
            scanner: ChunkScanner::new(),
            writer: ChunkWriter::new(),
            ack_window: None,
            acked: 0,
            read_buf: vec![0; 64 * 1024],
        })
    }

    /// Writes what the chunk writer holds.
    pub fn flush(&mut self) -> Result<()> {
        let bytes = self.writer.take();
        self.socket.write_all(&bytes).context("while sending")?;
        Ok(())
    }

    fn command(&mut self, stream_id: u32, values: &[Value]) -> Result<()> {
        let payload = amf0::to_bytes(values);
        self.writer
            .write_command(stream_id, &payload)
            .map_err(|e| anyhow!("{e}"))?;
        self.flush()
    }

    /// `connect` (transaction 1) and its `_result`.
    pub fn connect(&mut self, url: &RtmpUrl) -> Result<()> {
        self.command(
            0,
            &[
                Value::string("connect"),
                Value::Number(1.0),
                Value::object([
                    ("app", Value::string(url.app.as_str())),
                    ("type", Value::string("nonprivate")),
                    ("flashVer", Value::string("LNX 9,0,124,2")),
                    ("tcUrl", Value::string(url.tc_url())),
                    ("fpad", Value::Boolean(false)),
                    ("capabilities", Value::Number(15.0)),
                    ("audioCodecs", Value::Number(4071.0)),
                    ("videoCodecs", Value::Number(252.0)),
                    ("videoFunction", Value::Number(1.0)),
                ]),
            ],
        )?;
        self.wait_result(1.0, "connect").map(|_| ())
    }

    /// `createStream` (transaction `tid`); returns the message stream id.
    pub fn create_stream(&mut self, tid: f64) -> Result<u32> {
        self.command(
            0,
            &[
                Value::string("createStream"),
                Value::Number(tid),
                Value::Null,
            ],
        )?;
        let args = self.wait_result(tid, "createStream")?;
        args.first()
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite() && *v >= 0.0 && *v <= f64::from(u32::MAX))
            .map(|v| v as u32)
            .ok_or_else(|| anyhow!("createStream: the _result carries no stream id"))
    }

    /// `play(key)` on `stream_id` (the reply is not waited for: the worker reads it).
    pub fn play(&mut self, key: &str, stream_id: u32) -> Result<()> {
        self.command(
            stream_id,
            &[
                Value::string("play"),
                Value::Number(0.0),
                Value::Null,
                Value::string(key),
                Value::Number(-2.0),
            ],
        )
    }

    /// `releaseStream`, `FCPublish`, `createStream`, `publish(key, "live")`, then waits for
    /// `NetStream.Publish.Start`. Returns the message stream id.
    pub fn publish(&mut self, key: &str) -> Result<u32> {
        for (name, tid) in [("releaseStream", 2.0), ("FCPublish", 3.0)] {
            self.command(
                0,
                &[
                    Value::string(name),
                    Value::Number(tid),
                    Value::Null,
                    Value::string(key),
                ],
            )?;
        }
        let stream_id = self.create_stream(4.0)?;
        self.command(
            stream_id,
            &[
                Value::string("publish"),
                Value::Number(5.0),
                Value::Null,
                Value::string(key),
                Value::string("live"),
            ],
        )?;
        self.wait_for("publish", |name, tid, args| {
            let info = args.first();
            let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str);
            match name {
                "onStatus" if field("code") == Some("NetStream.Publish.Start") => Some(Ok(())),
                "onStatus" if field("level") == Some("error") => Some(Err(anyhow!(
                    "publish refused: {} ({})",
                    field("code").unwrap_or("?"),
                    field("description").unwrap_or("")
                ))),
                "_error" if tid == 5.0 => Some(Err(anyhow!("publish: _error {args:?}"))),
                _ => None,
            }
        })?;
        Ok(stream_id)
    }

    /// Waits for `_result` (its arguments) or `_error` of transaction `tid`.
    fn wait_result(&mut self, tid: f64, what: &str) -> Result<Vec<Value>> {
        self.wait_for(what, |name, t, args| match name {
            "_result" if t == tid => Some(Ok(args.to_vec())),
            "_error" if t == tid => {
                let info = args.first();
                let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str);
                Some(Err(anyhow!(
                    "{what} refused: {} ({})",
                    field("code").unwrap_or("?"),
                    field("description").unwrap_or("")
                )))
            }
            _ => None,
        })
    }

    /// Reads until `pick(name, transaction id, args after the command object)` returns
    /// something, answering pings and acknowledging on the way. Bounded by the socket's read
    /// timeout per read.
    fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&str, f64, &[Value]) -> Option<Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            let n = match self.socket.read(&mut self.read_buf) {
                Ok(0) => bail!("{what}: the server closed the connection"),
                Ok(n) => n,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("{what}: no reply after {:.1?}", started.elapsed())
                    })
                }
            };
            let mut collected: Vec<Collected> = Vec::new();
            let data = self.read_buf.get(..n).unwrap_or(&[]);
            self.scanner
                .feed(data, &mut |e| {
                    if let Event::Message {
                        type_id, payload, ..
                    } = e
                    {
                        collected.push(Collected {
                            type_id,
                            payload: payload.to_vec(),
                        });
                    }
                })
                .map_err(|e| anyhow!("{what}: {e}"))?;
            let mut found = None;
            for m in collected {
                self.on_control(m.type_id, &m.payload);
                let payload = match m.type_id {
                    type_id::COMMAND_AMF0 => m.payload.as_slice(),
                    type_id::COMMAND_AMF3 => m.payload.get(1..).unwrap_or(&[]),
                    _ => continue,
                };
                let Ok(cmd) = parse_command(payload, &Amf0Limits::default()) else {
                    continue;
                };
                if found.is_none() {
                    found = pick(&cmd.name, cmd.transaction_id, &cmd.args);
                }
            }
            self.acknowledge();
            if self.writer.pending_len() > 0 {
                self.flush()?;
            }
            if let Some(result) = found {
                return result;
            }
        }
    }

    /// Window Acknowledgement Size and Ping Request, queued on the writer.
    fn on_control(&mut self, type_id: u8, payload: &[u8]) {
        if let Some(reply) = control_reply(type_id, payload, &mut self.ack_window) {
            let _ = self
                .writer
                .write(CSID_PROTOCOL_CONTROL, 0, type_id::USER_CONTROL, 0, &reply);
        }
    }

    fn acknowledge(&mut self) {
        let mut out = BytesMut::new();
        acknowledge(&self.scanner, self.ack_window, &mut self.acked, &mut out);
        if !out.is_empty() {
            // Already chunked: send it as it is after what the writer holds.
            let _ = self.flush();
            let _ = self.socket.write_all(&out);
        }
    }
}

/// Applies a server control message: records Window Acknowledgement Size; for a Ping Request
/// returns the Ping Response payload to send.
pub fn control_reply(type_id: u8, payload: &[u8], ack_window: &mut Option<u32>) -> Option<[u8; 6]> {
    let word = |at: usize| {
        payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match type_id {
        type_id::WINDOW_ACK_SIZE => {
            *ack_window = word(0).filter(|&w| w > 0);
            None
        }
        type_id::USER_CONTROL => {
            let event = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))?;
            if event != user_control_type::PING_REQUEST {
                return None;
            }
            let ts = word(2)?.to_be_bytes();
            let pong = user_control_type::PING_RESPONSE.to_be_bytes();
            Some([pong[0], pong[1], ts[0], ts[1], ts[2], ts[3]])
        }
        _ => None,
    }
}

/// Appends an Acknowledgement (chunked) to `out` when a window's worth of bytes arrived since
/// the last one.
pub fn acknowledge(
    scanner: &ChunkScanner,
    window: Option<u32>,
    acked: &mut u64,
    out: &mut BytesMut,
) {
    let Some(window) = window else {
        return;
    };
    let received = scanner.bytes_received();
    if received.saturating_sub(*acked) >= u64::from(window) {
        *acked = received;
        // The wire counter is 32 bits and wraps on purpose.
        let seq = (received as u32).to_be_bytes();
        let _ = chunk_message(
            out,
            CSID_PROTOCOL_CONTROL,
            0,
            type_id::ACKNOWLEDGEMENT,
            0,
            &seq,
            128,
        );
    }
}

/// Chunks a Ping Response payload (chunk stream 2, message stream 0).
pub fn ping_response(payload: &[u8; 6], out: &mut BytesMut) {
    let _ = chunk_message(
        out,
        CSID_PROTOCOL_CONTROL,
        0,
        type_id::USER_CONTROL,
        0,
        payload,
        128,
    );
}

/// The plain handshake: C0 (version 3) + C1 (time 0, zero version, pseudo-random bytes), read
/// S0+S1+S2, send C2 = S1. The server says nothing more before our first command.
fn handshake(socket: &mut TcpStream) -> Result<()> {
    let mut c0c1 = Vec::with_capacity(1 + HANDSHAKE_SIZE);
    c0c1.push(3u8);
    c0c1.extend_from_slice(&[0u8; 8]);
    let mut x = 0x9E37_79B9u32 ^ std::process::id();
    while c0c1.len() < 1 + HANDSHAKE_SIZE {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c0c1.push(x as u8);
    }
    socket.write_all(&c0c1)?;
    let mut s0s1s2 = vec![0u8; 1 + 2 * HANDSHAKE_SIZE];
    socket.read_exact(&mut s0s1s2)?;
    if s0s1s2.first() != Some(&3) {
        bail!("S0 is {:?}, expected version 3", s0s1s2.first());
    }
    socket.write_all(s0s1s2.get(1..1 + HANDSHAKE_SIZE).unwrap_or(&[]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/test").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str(), u.key.as_str()),
            ("127.0.0.1", 1936, "live", "test")
        );
        assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1936/live");
        let u = RtmpUrl::parse("rtmp://example.org/app/inst/key").unwrap();
        assert_eq!(
            (u.port, u.app.as_str(), u.key.as_str()),
            (1935, "app/inst", "key")
        );
        let u = RtmpUrl::parse("rtmp://[::1]:1937/live/k").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1937));
        for bad in [
            "http://x/live/k",
            "rtmp://host",
            "rtmp://host/live",
            "rtmp://h:x/a/k",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pings_get_answers_and_windows_are_recorded() {
        let mut window = None;
        assert_eq!(
            control_reply(5, &2_500_000u32.to_be_bytes(), &mut window),
            None
        );
        assert_eq!(window, Some(2_500_000));
        assert_eq!(
            control_reply(4, &[0, 6, 1, 2, 3, 4], &mut window),
            Some([0, 7, 1, 2, 3, 4])
        );
        assert_eq!(control_reply(4, &[0, 0, 0, 0, 0, 1], &mut window), None);
        let mut scanner = ChunkScanner::new();
        scanner.feed(&[0xC3; 10], &mut |_| {}).ok();
        let mut acked = 0;
        let mut out = BytesMut::new();
        acknowledge(&scanner, Some(5), &mut acked, &mut out);
        assert_eq!(acked, 10);
        assert_eq!(out.len(), 12 + 4);
    }
}
