//! A minimal RTMP client for the experiment's publisher and player probes, built on the
//! project's own codec ([`crate::protocol`]): the plain handshake, `connect`, `createStream`,
//! `publish`/`play`, and timed reads and writes.
//!
//! Every step of the set-up is timed as [`sim_core::rtmp::StartupBreakdown`] counts it:
//! TCP connect (the caller times it), C0C1 → S0S1S2, C2 + `connect` → `_result`,
//! (`releaseStream`, `FCPublish`,) `createStream` → `_result`, and `publish` →
//! `NetStream.Publish.Start` or `play` → `NetStream.Play.Start`.
//!
//! Messages are stamped with the instant the read that completed them returned: the arrival of
//! their last byte at this process, give or take the scheduler's wake-up (microseconds).
//! The client answers pings and acknowledges received bytes once per announced window, as
//! FFmpeg does, so servers that police either (nginx-rtmp's `ping`) keep it connected.
//!
//! Limits: the reader is the server's own [`ChunkReader`] with its default limits (8 MiB
//! messages); every wait has a deadline; media that arrives while a set-up reply is awaited is
//! kept (at most [`MAX_HELD_MESSAGES`]), anything else is dropped.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use sim_core::server::MediaKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::amf0::{self, Amf0Limits, Value};
use crate::protocol::chunk::{ChunkReader, RawMessage, ReaderLimits};
use crate::protocol::command::{parse_command, Command};
use crate::protocol::message::{type_id, ControlMessage, UserControlEvent};
use crate::protocol::writer::{ChunkWriter, CSID_AUDIO, CSID_DATA, CSID_VIDEO};

/// Size of C1/S1/S2 (RTMP spec 5.2).
pub const HANDSHAKE_BYTES: usize = 1536;

/// How much one read asks for: a keyframe of a few Mb/s stream arrives in a few reads.
const READ_BYTES: usize = 64 * 1024;

/// Media kept while waiting for a set-up reply (a server may send media right behind
/// `Play.Start`); beyond this it is dropped.
pub const MAX_HELD_MESSAGES: usize = 4096;

/// The acknowledgement window until the server announces one (what FFmpeg and OBS use).
const DEFAULT_ACK_WINDOW: u32 = 2_500_000;

/// The buffer length a probe announces after `play` (FFmpeg's default `rtmp_buffer`).
const PLAY_BUFFER_MS: u32 = 3000;

/// An `rtmp://host[:port]/app[/instance]/key` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    /// Everything between the host and the last `/` (e.g. `live`).
    pub app: String,
    /// The last path segment (the stream key, with any `?query`).
    pub key: String,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl> {
        let usage = || anyhow!("{url:?}: expected rtmp://host[:port]/app/key");
        let rest = url.strip_prefix("rtmp://").ok_or_else(usage)?;
        let (authority, path) = rest.split_once('/').ok_or_else(usage)?;
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(usage)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| usage())?,
                None => 1935,
            };
            (h, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| usage())?),
                None => (authority, 1935),
            }
        };
        let (app, key) = path.rsplit_once('/').ok_or_else(usage)?;
        if host.is_empty() || app.is_empty() || key.is_empty() {
            return Err(usage());
        }
        Ok(RtmpUrl {
            host: host.to_owned(),
            port,
            app: app.to_owned(),
            key: key.to_owned(),
        })
    }

    /// `rtmp://host:port/app`, as clients send it in `connect`.
    pub fn tc_url(&self) -> String {
        if self.host.contains(':') {
            format!("rtmp://[{}]:{}/{}", self.host, self.port, self.app)
        } else {
            format!("rtmp://{}:{}/{}", self.host, self.port, self.app)
        }
    }

    /// The key without a `?query` (the name a server gives the stream).
    pub fn stream_name(&self) -> &str {
        self.key.split('?').next().unwrap_or(&self.key)
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tc_url(), self.key)
    }
}

/// Durations of the set-up steps (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SetupTimes {
    pub tcp_connect: Duration,
    pub handshake: Duration,
    pub connect: Duration,
    pub create_stream: Duration,
    pub publish_or_play: Duration,
}

impl SetupTimes {
    pub fn total(&self) -> Duration {
        self.tcp_connect + self.handshake + self.connect + self.create_stream + self.publish_or_play
    }

    pub fn breakdown(&self) -> sim_core::rtmp::StartupBreakdown {
        let m = |d: Duration| sim_core::Micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        sim_core::rtmp::StartupBreakdown {
            tcp_connect: m(self.tcp_connect),
            rtmp_handshake: m(self.handshake),
            connect: m(self.connect),
            create_stream: m(self.create_stream),
            publish_or_play: m(self.publish_or_play),
            total: m(self.total()),
        }
    }
}

/// A message as the client received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub raw: RawMessage,
    /// When the read that completed it returned.
    pub at: Instant,
}

impl Received {
    /// Audio or video (type 8 / 9).
    pub fn media_kind(&self) -> Option<MediaKind> {
        match self.raw.type_id {
            type_id::AUDIO => Some(MediaKind::Audio),
            type_id::VIDEO => Some(MediaKind::Video),
            _ => None,
        }
    }
}

/// An RTMP connection after the handshake.
pub struct Client {
    socket: TcpStream,
    reader: ChunkReader,
    writer: ChunkWriter,
    amf0_limits: Amf0Limits,
    /// C2, sent with the first command.
    c2: Option<Bytes>,
    /// Complete messages not yet handed out.
    inbox: VecDeque<Received>,
    /// Media and data that arrived while a set-up reply was awaited.
    held: VecDeque<Received>,
    ack_window: u32,
    acked_bytes: u64,
    next_transaction: f64,
    /// The message stream from `createStream`.
    stream_id: u32,
    /// The server sent Stream EOF (it has sent everything of the publish).
    eof: bool,
}

impl Client {
    /// Performs the plain (version 3) handshake on a connected socket; returns the client and
    /// the time from writing C0C1 to having all of S0S1S2. C2 goes out with the first command.
    pub async fn handshake(mut socket: TcpStream) -> Result<(Client, Duration)> {
        let start = Instant::now();
        let mut c0c1 = Vec::with_capacity(1 + HANDSHAKE_BYTES + 8);
        c0c1.push(3u8);
        c0c1.extend_from_slice(&[0u8; 8]); // C1: time 0, then the zero field
        let mut x = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1))
            | 1;
        while c0c1.len() < 1 + HANDSHAKE_BYTES {
            // xorshift: C1's random part only has to differ between connections.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c0c1.extend_from_slice(&x.to_le_bytes());
        }
        c0c1.truncate(1 + HANDSHAKE_BYTES);
        socket.write_all(&c0c1).await.context("writing C0C1")?;
        let mut s012 = vec![0u8; 1 + 2 * HANDSHAKE_BYTES];
        socket
            .read_exact(&mut s012)
            .await
            .context("reading S0S1S2 (is this an RTMP server?)")?;
        let took = start.elapsed();
        if s012[0] != 3 {
            bail!("the server answered RTMP version {} (expected 3)", s012[0]);
        }
        let c2 = Bytes::copy_from_slice(&s012[1..1 + HANDSHAKE_BYTES]);
        Ok((
            Client {
                socket,
                reader: ChunkReader::new(ReaderLimits::default()),
                writer: ChunkWriter::new(),
                amf0_limits: Amf0Limits::default(),
                c2: Some(c2),
                inbox: VecDeque::new(),
                held: VecDeque::new(),
                ack_window: DEFAULT_ACK_WINDOW,
                acked_bytes: 0,
                next_transaction: 1.0,
                stream_id: 0,
                eof: false,
            },
            took,
        ))
    }

    /// The message stream id `createStream` returned.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// The server sent Stream EOF.
    pub fn saw_stream_eof(&self) -> bool {
        self.eof
    }

    /// The socket, for socket options and `TIOCOUTQ`.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    fn queue_command(
        &mut self,
        stream_id: u32,
        name: &str,
        object: Value,
        args: Vec<Value>,
    ) -> f64 {
        let tx = self.next_transaction;
        self.next_transaction += 1.0;
        let mut values = vec![Value::string(name), Value::Number(tx), object];
        values.extend(args);
        let payload = amf0::to_bytes(&values);
        // A command of a few hundred bytes on a valid csid cannot fail to chunk.
        let _ = self.writer.write_command(stream_id, &payload);
        tx
    }

    /// Writes C2 (once) and everything queued.
    async fn flush(&mut self) -> Result<()> {
        if let Some(c2) = self.c2.take() {
            let pending = self.writer.take();
            let mut out = Vec::with_capacity(c2.len() + pending.len());
            out.extend_from_slice(&c2);
            out.extend_from_slice(&pending);
            self.socket.write_all(&out).await?;
        } else if self.writer.pending_len() > 0 {
            let pending = self.writer.take();
            self.socket.write_all(&pending).await?;
        }
        Ok(())
    }

    /// One read from the socket: every message it completes goes to the inbox, stamped with
    /// the read's return instant; control messages are handled (their replies queued, sent by
    /// the next flush). Returns false when the server closed the connection. Cancel-safe: the
    /// only await is the read.
    pub async fn read_once(&mut self) -> Result<bool> {
        let n = self
            .socket
            .read_buf(self.reader.read_buffer(READ_BYTES))
            .await?;
        let at = Instant::now();
        if n == 0 {
            return Ok(false);
        }
        while let Some(raw) = self.reader.next_message()? {
            match raw.type_id {
                type_id::WINDOW_ACK_SIZE => {
                    if let Some(b) = raw.payload.get(..4) {
                        let w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        self.ack_window = w.max(1);
                    }
                }
                type_id::USER_CONTROL => match UserControlEvent::parse(&raw.payload) {
                    Ok(UserControlEvent::PingRequest { timestamp }) => {
                        let _ = self.writer.write_control(&ControlMessage::UserControl(
                            UserControlEvent::PingResponse { timestamp },
                        ));
                    }
                    Ok(UserControlEvent::StreamEof { .. }) => self.eof = true,
                    _ => {}
                },
                type_id::SET_CHUNK_SIZE | type_id::ABORT | type_id::ACKNOWLEDGEMENT => {}
                type_id::SET_PEER_BANDWIDTH => {}
                _ => self.inbox.push_back(Received { raw, at }),
            }
        }
        let received = self.reader.bytes_received();
        if received.saturating_sub(self.acked_bytes) >= u64::from(self.ack_window) {
            self.acked_bytes = received;
            let _ = self.writer.write_control(&ControlMessage::Acknowledgement {
                // The wire counter is 32-bit and wraps.
                sequence_number: received as u32,
            });
        }
        Ok(true)
    }

    /// Sends any queued control replies (pongs, acknowledgements).
    pub async fn flush_replies(&mut self) -> Result<()> {
        self.flush().await
    }

    /// The next message (held media first), reading until `deadline`.
    async fn next(&mut self, deadline: Instant) -> Result<Received> {
        loop {
            if let Some(m) = self.inbox.pop_front() {
                return Ok(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.read_once()).await {
                Err(_) => bail!("timed out"),
                Ok(Ok(true)) => self.flush().await?,
                Ok(Ok(false)) => bail!("the server closed the connection"),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Reads until a command for which `wanted` says `Some`, keeping media aside; `_error`
    /// replies and error-level `onStatus` fail with the server's description.
    async fn wait_command<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&Command) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self
                .next(deadline)
                .await
                .with_context(|| format!("while waiting for {what}"))?;
            match m.raw.type_id {
                type_id::COMMAND_AMF0 => {
                    let Ok(cmd) = parse_command(&m.raw.payload, &self.amf0_limits) else {
                        continue;
                    };
                    if let Some(t) = wanted(&cmd) {
                        return Ok(t);
                    }
                    if cmd.name == "_error" {
                        bail!("the server answered {what} with _error: {}", describe(&cmd));
                    }
                    if cmd.name == "onStatus" && status_level(&cmd) == Some("error") {
                        bail!("while waiting for {what}: {}", describe(&cmd));
                    }
                }
                type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0
                    if self.held.len() < MAX_HELD_MESSAGES =>
                {
                    self.held.push_back(m)
                }
                _ => {}
            }
        }
    }

    /// `connect` to the URL's app; returns the time to its `_result`.
    pub async fn connect(&mut self, url: &RtmpUrl, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let object = Value::object([
            ("app", Value::string(url.app.as_str())),
            ("type", Value::string("nonprivate")),
            ("flashVer", Value::string("FMLE/3.0 (compatible; rtmp-lab)")),
            ("tcUrl", Value::string(url.tc_url())),
        ]);
        let tx = self.queue_command(0, "connect", object, Vec::new());
        self.flush().await?;
        self.wait_command(timeout, "the connect reply", |c| {
            (c.name == "_result" && c.transaction_id == tx).then_some(())
        })
        .await?;
        Ok(start.elapsed())
    }

    /// Announces our outbound chunk size (publishers: what the scenario's publisher uses). It
    /// goes out with the next command: a write of its own would be a lone small segment that,
    /// with Nagle on, holds the next command until the server's delayed ACK (40 ms).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<()> {
        self.writer
            .set_chunk_size(size)
            .map_err(|e| anyhow!("chunk size {size}: {e}"))
    }

    /// `createStream` (preceded by `releaseStream` and `FCPublish` for a publisher, pipelined
    /// as OBS and FFmpeg do); returns the time to its `_result`.
    pub async fn create_stream(
        &mut self,
        url: &RtmpUrl,
        publisher: bool,
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        if publisher {
            let key = Value::string(url.key.as_str());
            self.queue_command(0, "releaseStream", Value::Null, vec![key.clone()]);
            self.queue_command(0, "FCPublish", Value::Null, vec![key]);
        }
        let tx = self.queue_command(0, "createStream", Value::Null, Vec::new());
        self.flush().await?;
        let id = self
            .wait_command(timeout, "the createStream reply", |c| {
                (c.name == "_result" && c.transaction_id == tx).then(|| c.arg_f64(0).unwrap_or(1.0))
            })
            .await?;
        self.stream_id = if id.is_finite() && id >= 0.0 && id <= f64::from(u32::MAX) {
            id as u32
        } else {
            1
        };
        Ok(start.elapsed())
    }

    /// `publish` (live); returns the time to `NetStream.Publish.Start`.
    pub async fn publish(&mut self, url: &RtmpUrl, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let args = vec![Value::string(url.key.as_str()), Value::string("live")];
        self.queue_command(self.stream_id, "publish", Value::Null, args);
        self.flush().await?;
        self.wait_command(timeout, "NetStream.Publish.Start", |c| {
            (status_code(c) == Some("NetStream.Publish.Start")).then_some(())
        })
        .await?;
        Ok(start.elapsed())
    }

    /// `play` (live or recorded, from the start: −2) and Set Buffer Length, as FFmpeg sends
    /// them; returns the time to `NetStream.Play.Start`.
    pub async fn play(&mut self, url: &RtmpUrl, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let args = vec![Value::string(url.key.as_str()), Value::Number(-2.0)];
        self.queue_command(self.stream_id, "play", Value::Null, args);
        let _ = self.writer.write_control(&ControlMessage::UserControl(
            UserControlEvent::SetBufferLength {
                stream_id: self.stream_id,
                buffer_length_ms: PLAY_BUFFER_MS,
            },
        ));
        self.flush().await?;
        self.wait_command(timeout, "NetStream.Play.Start", |c| {
            (status_code(c) == Some("NetStream.Play.Start")).then_some(())
        })
        .await?;
        Ok(start.elapsed())
    }

    /// Moves every message received so far (media held during set-up first) into `out`.
    pub fn drain_into(&mut self, out: &mut Vec<Received>) {
        out.extend(self.held.drain(..));
        out.extend(self.inbox.drain(..));
    }

    /// Writes one media or data message on the published stream; returns the instants the
    /// write started and ended (the last byte accepted by the socket). Queued control replies
    /// go out first, in the same write.
    pub async fn write_message(
        &mut self,
        kind: MediaKind,
        timestamp_ms: u32,
        payload: &[u8],
    ) -> Result<(Instant, Instant)> {
        let (csid, type_id) = match kind {
            MediaKind::Video => (CSID_VIDEO, type_id::VIDEO),
            MediaKind::Audio => (CSID_AUDIO, type_id::AUDIO),
            MediaKind::Data => (CSID_DATA, type_id::DATA_AMF0),
        };
        self.writer
            .write(csid, timestamp_ms, type_id, self.stream_id, payload)
            .map_err(|e| anyhow!("cannot chunk a {} B message: {e}", payload.len()))?;
        let bytes = self.writer.take();
        let start = Instant::now();
        self.socket.write_all(&bytes).await?;
        Ok((start, Instant::now()))
    }

    /// Ends a publish politely (`FCUnpublish`, `deleteStream`) and closes the write side.
    pub async fn unpublish(&mut self, url: &RtmpUrl) -> Result<()> {
        let key = Value::string(url.key.as_str());
        self.queue_command(0, "FCUnpublish", Value::Null, vec![key]);
        let id = Value::Number(f64::from(self.stream_id));
        self.queue_command(0, "deleteStream", Value::Null, vec![id]);
        self.flush().await?;
        self.socket.shutdown().await?;
        Ok(())
    }

    /// Bytes written to the socket and not yet acknowledged by the peer (Linux `TIOCOUTQ`).
    pub fn unacknowledged_bytes(&self) -> Option<u64> {
        outq(&self.socket)
    }

    /// Whether this connection's SYN carried data the server acknowledged: TCP Fast Open was
    /// used (`None` when the kernel does not say).
    pub fn fast_open_used(&self) -> Option<bool> {
        super::link::syn_data_acked(&self.socket)
    }
}

#[cfg(target_os = "linux")]
fn outq(socket: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int through a valid pointer; the fd is owned by `socket`
    // for the duration of the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (rc == 0 && n >= 0).then_some(n as u64)
}

#[cfg(not(target_os = "linux"))]
fn outq(_socket: &TcpStream) -> Option<u64> {
    None
}

fn info_object(c: &Command) -> Option<&Value> {
    c.arg(0)
}

fn status_code(c: &Command) -> Option<&str> {
    if c.name != "onStatus" {
        return None;
    }
    info_object(c)?.get("code")?.as_str()
}

fn status_level(c: &Command) -> Option<&str> {
    info_object(c)?.get("level")?.as_str()
}

fn describe(c: &Command) -> String {
    let field = |k: &str| {
        info_object(c)
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    format!("{} {}", field("code"), field("description"))
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/test?key=s").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 1936));
        assert_eq!((u.app.as_str(), u.key.as_str()), ("live", "test?key=s"));
        assert_eq!(u.stream_name(), "test");
        assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1936/live");
        let u = RtmpUrl::parse("rtmp://example.org/app/inst/key").unwrap();
        assert_eq!(
            (u.port, u.app.as_str(), u.key.as_str()),
            (1935, "app/inst", "key")
        );
        let u = RtmpUrl::parse("rtmp://[::1]:99/live/k").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 99));
        assert_eq!(u.tc_url(), "rtmp://[::1]:99/live");
        for bad in [
            "http://x/a/b",
            "rtmp://x/a",
            "rtmp://x",
            "rtmp://:1/a/b",
            "rtmp://x:p/a/b",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
