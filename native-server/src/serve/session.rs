//! One RTMP connection, from the handshake to the close.
//!
//! ```text
//! accept ─▶ handshake (rml_rtmp, under handshake_timeout) ─▶ split socket
//!             reader task (this file): ChunkReader ─▶ Message::parse ─▶ commands / media ─▶ relay
//!             writer task (outbox.rs): staged replies + the player's SubscriberQueue ─▶ socket
//! ```
//!
//! Everything read from the network goes through the project's own codec
//! ([`crate::protocol`]), which bounds memory and never panics; any protocol error closes this
//! connection (with a log line) and nothing else. A command that waits for an answer
//! (transaction id > 0) always gets one, `_error` for what the server does not do.
//!
//! Idle rules: a connection that is not playing must send something at least every
//! `idle_timeout`; a player never has to (it may wait for a publisher indefinitely) but its
//! socket must accept data (the writer's rule).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use sim_core::server::MediaKind;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{field, Instrument};

use super::config::Settings;
use super::outbox::{run_writer, Outbox};
use super::relay::{control_bytes, Metrics, PublishRefusal, Relay, Stream};
use crate::protocol::amf0::{self, Amf0Limits, Value};
use crate::protocol::command::{
    self, parse_data_message, parse_metadata, status_code, Command, ConnectRequest, PlayRequest,
    PublishRequest, Status, StatusLevel,
};
use crate::protocol::message::{split_aggregate, type_id, PeerBandwidthLimit};
use crate::protocol::{
    ChunkError, ChunkReader, ChunkWriter, ControlMessage, Message, MessageError, RawMessage,
    ReaderLimits, UserControlEvent,
};

/// Window Acknowledgement Size and peer bandwidth the server announces (what FMS, nginx-rtmp
/// and FFmpeg use).
pub const SERVER_WINDOW_BYTES: u32 = 2_500_000;

/// Bytes asked of the socket per read: large enough that a 6 Mbit/s publisher costs a few
/// hundred reads per second, small next to a socket buffer.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// `createStream` calls one connection may make (clients make one; the ids are cheap but a
/// loop of calls must not count up forever).
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// Longest app name accepted in `connect`.
const MAX_APP_NAME_BYTES: usize = 256;

/// Longest stream key accepted in `publish`/`play`.
const MAX_STREAM_KEY_BYTES: usize = 1024;

/// How long a closing connection may take to write what it has staged.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a connection task needs from the server.
pub struct Shared {
    pub relay: Arc<Relay>,
    pub settings: Arc<Settings>,
    pub reader_limits: ReaderLimits,
}

/// Why the connection could not go on.
#[derive(Debug, Error)]
enum ProtocolError {
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("command {0} before connect")]
    NotConnected(String),
}

/// How a connection ended (the close log line).
enum End {
    PeerClosed,
    Idle,
    Protocol(ProtocolError),
    Io(std::io::Error),
    /// The server closed it: slow player, takeover, linger expiry, write failure.
    ClosedByServer,
    /// Refused (connect, publish, play): the reply is flushed, then the socket closed.
    Refused,
    Shutdown,
}

enum Role {
    None,
    Publishing { stream: Arc<Stream>, stream_id: u32 },
    Playing { stream: Arc<Stream>, stream_id: u32 },
}

/// Runs one accepted connection to its end.
pub async fn serve_connection(
    shared: Arc<Shared>,
    socket: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    shutdown: watch::Receiver<bool>,
) {
    let metrics = shared.relay.metrics.clone();
    Metrics::inc(&metrics.connections_open);
    let span = tracing::info_span!(
        "rtmp",
        %peer,
        conn = conn_id,
        app = field::Empty,
        key = field::Empty
    );
    run_connection(shared, socket, peer, conn_id, shutdown)
        .instrument(span)
        .await;
    Metrics::dec(&metrics.connections_open);
}

async fn run_connection(
    shared: Arc<Shared>,
    mut socket: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let relay = shared.relay.clone();
    let settings = shared.settings.clone();
    let handshake = tokio::select! {
        r = tokio::time::timeout(settings.handshake_timeout(), handshake(&mut socket)) => r,
        _ = shutdown.wait_for(|s| *s) => return,
    };
    let leftover = match handshake {
        Ok(Ok(leftover)) => leftover,
        Ok(Err(e)) => {
            Metrics::inc(&relay.metrics.handshake_failures);
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            Metrics::inc(&relay.metrics.handshake_failures);
            tracing::debug!("handshake timed out");
            return;
        }
    };
    tracing::debug!("handshake done");

    let (read_half, write_half) = socket.into_split();
    let outbox = Arc::new(Outbox::new(peer, relay.server_config.queue_max_bytes));
    let mut writer = tokio::spawn(
        run_writer(
            outbox.clone(),
            write_half,
            relay.clock,
            relay.metrics.clone(),
            settings.idle_timeout(),
        )
        .in_current_span(),
    );

    let mut session = Session {
        relay: relay.clone(),
        outbox: outbox.clone(),
        peer,
        conn_id,
        reader: ChunkReader::new(shared.reader_limits),
        amf0_limits: Amf0Limits::default(),
        writer: ChunkWriter::new(),
        app: None,
        next_stream_id: 1,
        role: Role::None,
        peer_window: None,
        acked_bytes: 0,
        refused: false,
        idle_timeout: settings.idle_timeout(),
    };
    session.reader.push(&leftover);
    let end = session.run(read_half, &mut shutdown).await;
    let graceful = matches!(end, End::Refused | End::Shutdown);
    if matches!(end, End::Shutdown) {
        session.say_goodbye();
    }
    session.leave_role();
    match &end {
        End::PeerClosed => tracing::info!("close: peer closed the connection"),
        End::Idle => tracing::info!("close: idle timeout"),
        End::Protocol(e) => {
            Metrics::inc(&relay.metrics.protocol_errors);
            tracing::warn!(error = %e, "close: protocol error");
        }
        End::Io(e) => tracing::info!(error = %e, "close: read error"),
        End::ClosedByServer => tracing::info!("close: closed by the server"),
        End::Refused => tracing::info!("close: request refused"),
        End::Shutdown => tracing::info!("close: server shutting down"),
    }
    if graceful {
        outbox.close_after_flush();
    } else {
        outbox.close.close();
    }
    if tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Server side of the RTMP handshake (plain and Flash-9 digest forms, by rml_rtmp). Returns
/// the bytes received after it (the first chunks). Memory is bounded: rml_rtmp buffers until
/// C0+C1+C2 (3,073 bytes) are complete, and we feed it one read at a time.
async fn handshake(
    socket: &mut TcpStream,
) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    let mut handshake = Handshake::new(PeerType::Server);
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err("peer closed during the handshake".into());
        }
        let input = buf.get(..n).unwrap_or(&[]);
        match handshake
            .process_bytes(input)
            .map_err(|e| format!("{e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                if !response_bytes.is_empty() {
                    socket.write_all(&response_bytes).await?;
                }
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                if !response_bytes.is_empty() {
                    socket.write_all(&response_bytes).await?;
                }
                return Ok(remaining_bytes);
            }
        }
    }
}

struct Session {
    relay: Arc<Relay>,
    outbox: Arc<Outbox>,
    peer: SocketAddr,
    conn_id: u64,
    reader: ChunkReader,
    amf0_limits: Amf0Limits,
    /// Builds this connection's own (unshared) replies; taken into the outbox after each read.
    writer: ChunkWriter,
    app: Option<String>,
    next_stream_id: u32,
    role: Role,
    /// The peer's Window Acknowledgement Size: acknowledge every this many bytes received.
    peer_window: Option<u32>,
    acked_bytes: u64,
    /// A request was refused: flush the reply and close.
    refused: bool,
    idle_timeout: Duration,
}

impl Session {
    async fn run(
        &mut self,
        mut socket: OwnedReadHalf,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let outbox = self.outbox.clone();
        if let Err(e) = self.process_input() {
            return End::Protocol(e);
        }
        loop {
            if self.refused {
                return End::Refused;
            }
            if outbox.close.is_closed() {
                return End::ClosedByServer;
            }
            let deadline = match self.role {
                Role::Playing { .. } => None,
                _ => Some(tokio::time::Instant::now() + self.idle_timeout),
            };
            let buf = self.reader.read_buffer(READ_CHUNK_BYTES);
            let read = tokio::select! {
                r = socket.read_buf(buf) => r,
                _ = outbox.close.wait() => return End::ClosedByServer,
                _ = shutdown.wait_for(|s| *s) => return End::Shutdown,
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => return End::Idle,
            };
            match read {
                Ok(0) => return End::PeerClosed,
                Ok(n) => self.relay.metrics.add_bytes_in(n as u64),
                Err(e) => return End::Io(e),
            }
            if let Err(e) = self.process_input() {
                return End::Protocol(e);
            }
        }
    }

    /// Handles every complete message in the reader, then sends what that produced.
    fn process_input(&mut self) -> Result<(), ProtocolError> {
        let result = loop {
            match self.reader.next_message() {
                Ok(Some(raw)) => {
                    if let Err(e) = self.handle_message(raw) {
                        break Err(e);
                    }
                    if self.refused {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.into()),
            }
        };
        self.acknowledge();
        self.flush_replies();
        result
    }

    fn flush_replies(&mut self) {
        let bytes = self.writer.take();
        self.outbox.stage(bytes);
    }

    /// Acknowledgement every `peer_window` bytes received (the 32-bit counter wraps on
    /// purpose, as the spec's sequence number does).
    fn acknowledge(&mut self) {
        let Some(window) = self.peer_window else {
            return;
        };
        let received = self.reader.bytes_received();
        if received.saturating_sub(self.acked_bytes) >= u64::from(window) {
            self.acked_bytes = received;
            let _ = self.writer.write_control(&ControlMessage::Acknowledgement {
                sequence_number: received as u32,
            });
        }
    }

    fn handle_message(&mut self, raw: RawMessage) -> Result<(), ProtocolError> {
        match Message::parse(&raw, &self.amf0_limits)? {
            Message::Control(control) => self.on_control(control),
            Message::Audio(payload) => self.on_media(MediaKind::Audio, raw.timestamp, &payload),
            Message::Video(payload) => self.on_media(MediaKind::Video, raw.timestamp, &payload),
            Message::Data(payload) => self.on_data(raw.timestamp, &payload),
            Message::Command(command) => return self.on_command(command, raw.stream_id),
            Message::Aggregate(_) => self.on_aggregate(&raw),
            Message::Other { type_id, .. } => {
                tracing::debug!(type_id, "ignoring message of unsupported type");
            }
        }
        Ok(())
    }

    fn on_control(&mut self, control: ControlMessage) {
        match control {
            // Set Chunk Size and Abort are applied by the reader itself.
            ControlMessage::SetChunkSize(_) | ControlMessage::Abort { .. } => {}
            ControlMessage::WindowAckSize(size) => {
                self.peer_window = (size > 0).then_some(size);
            }
            ControlMessage::UserControl(UserControlEvent::PingRequest { timestamp }) => {
                let _ = self.writer.write_control(&ControlMessage::UserControl(
                    UserControlEvent::PingResponse { timestamp },
                ));
            }
            ControlMessage::UserControl(_)
            | ControlMessage::Acknowledgement { .. }
            | ControlMessage::SetPeerBandwidth { .. } => {}
        }
    }

    fn on_media(&mut self, kind: MediaKind, timestamp: u32, payload: &Bytes) {
        if let Role::Publishing { stream, .. } = &self.role {
            if !self
                .relay
                .publish_media(stream, self.conn_id, kind, timestamp, payload)
            {
                // Taken over: the relay has closed this connection already.
                self.outbox.close.close();
            }
        }
    }

    fn on_data(&mut self, timestamp: u32, payload: &Bytes) {
        let Role::Publishing { stream, .. } = &self.role else {
            return;
        };
        match parse_metadata(payload, &self.amf0_limits) {
            Ok(Some(meta)) => {
                let is_metadata = meta.handler == "onMetaData";
                self.relay.publish_data(
                    stream,
                    self.conn_id,
                    timestamp,
                    &meta.forward_payload,
                    is_metadata.then_some(&meta),
                );
            }
            Ok(None) => match parse_data_message(payload, &self.amf0_limits) {
                Ok(data) if data.handler == "onTextData" || data.handler == "onCuePoint" => {
                    self.relay
                        .publish_data(stream, self.conn_id, timestamp, payload, None);
                }
                Ok(data) => tracing::debug!(handler = %data.handler, "ignoring data message"),
                Err(e) => tracing::debug!(error = %e, "ignoring malformed data message"),
            },
            Err(e) => tracing::debug!(error = %e, "ignoring malformed data message"),
        }
    }

    fn on_aggregate(&mut self, raw: &RawMessage) {
        if !matches!(self.role, Role::Publishing { .. }) {
            return;
        }
        match split_aggregate(raw) {
            Ok(parts) => {
                for part in parts {
                    match part.type_id {
                        type_id::AUDIO => {
                            self.on_media(MediaKind::Audio, part.timestamp, &part.payload)
                        }
                        type_id::VIDEO => {
                            self.on_media(MediaKind::Video, part.timestamp, &part.payload)
                        }
                        _ => self.on_data(part.timestamp, &part.payload),
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "ignoring malformed aggregate message"),
        }
    }

    // -- commands ------------------------------------------------------------------------------

    fn reply(&mut self, payload: &[u8]) {
        let _ = self.writer.write_command(0, payload);
    }

    fn reply_result(&mut self, transaction_id: f64, args: Vec<Value>) {
        if transaction_id > 0.0 {
            let payload = command::result(transaction_id, Value::Null, args);
            self.reply(&payload);
        }
    }

    fn status(&mut self, stream_id: u32, level: StatusLevel, code: &str, description: &str) {
        let details = self.stream_key_for_log();
        let payload = command::on_status(&Status {
            level,
            code,
            description,
            details: Some(&details),
        });
        let _ = self.writer.write_command(stream_id, &payload);
    }

    fn stream_key_for_log(&self) -> String {
        match &self.role {
            Role::Publishing { stream, .. } | Role::Playing { stream, .. } => stream.key.clone(),
            Role::None => String::new(),
        }
    }

    fn on_command(&mut self, cmd: Command, msg_stream_id: u32) -> Result<(), ProtocolError> {
        let tid = cmd.transaction_id;
        if cmd.name == "connect" {
            self.on_connect(&cmd);
            return Ok(());
        }
        if self.app.is_none() {
            return Err(ProtocolError::NotConnected(cmd.name));
        }
        match cmd.name.as_str() {
            "createStream" => {
                if self.next_stream_id > MAX_STREAMS_PER_CONNECTION {
                    let e = command::error_result(
                        tid,
                        status_code::CALL_FAILED,
                        "too many streams on this connection",
                    );
                    self.reply(&e);
                } else {
                    let id = self.next_stream_id;
                    self.next_stream_id += 1;
                    let r = command::create_stream_result(tid, id);
                    self.reply(&r);
                }
            }
            "publish" => self.on_publish(&cmd, msg_stream_id),
            "play" => self.on_play(&cmd, msg_stream_id),
            "releaseStream" => self.reply_result(tid, vec![Value::Undefined]),
            "FCPublish" => {
                let name = cmd.arg_str(0).unwrap_or("").to_owned();
                let r = command::on_fc_publish(status_code::PUBLISH_START, &name);
                self.reply(&r);
                self.reply_result(tid, vec![Value::Undefined]);
            }
            "FCUnpublish" => {
                let name = cmd.arg_str(0).unwrap_or("").to_owned();
                let r = command::on_fc_unpublish(status_code::UNPUBLISH_SUCCESS, &name);
                self.reply(&r);
                self.reply_result(tid, vec![Value::Undefined]);
                if matches!(self.role, Role::Publishing { .. }) {
                    self.leave_role();
                }
            }
            "FCSubscribe" => {
                let name = cmd.arg_str(0).unwrap_or("");
                let r = amf0::to_bytes(&[
                    Value::string("onFCSubscribe"),
                    Value::Number(0.0),
                    Value::Null,
                    Value::object([
                        ("code", Value::string(status_code::PLAY_START)),
                        ("description", Value::string(name)),
                    ]),
                ]);
                self.reply(&r);
                self.reply_result(tid, vec![Value::Undefined]);
            }
            "deleteStream" => {
                let target = cmd
                    .arg_f64(0)
                    .filter(|v| v.is_finite() && *v >= 0.0 && *v <= f64::from(u32::MAX))
                    .map(|v| v as u32);
                if target.is_none_or(|sid| Some(sid) == self.role_stream_id()) {
                    self.leave_role();
                }
                self.reply_result(tid, vec![]);
            }
            "closeStream" => {
                if Some(msg_stream_id) == self.role_stream_id() || msg_stream_id == 0 {
                    self.leave_role();
                }
                self.reply_result(tid, vec![]);
            }
            "getStreamLength" => self.reply_result(tid, vec![Value::Number(0.0)]),
            // Bandwidth check: answered at once (we do not measure; clients only log it).
            "_checkbw" => self.reply_result(tid, vec![]),
            // Live streams cannot pause or seek; accepted so clients do not stall.
            "pause" | "seek" | "receiveAudio" | "receiveVideo" => {
                tracing::debug!(command = %cmd.name, "accepted, no effect on a live stream");
                self.reply_result(tid, vec![]);
            }
            // Replies to calls we never make, and notifications: nothing to answer.
            "_result" | "_error" | "onStatus" | "onBWDone" | "onBWCheck" => {}
            other => {
                tracing::debug!(command = other, "unknown command");
                if tid > 0.0 {
                    let e = command::error_result(
                        tid,
                        status_code::CALL_FAILED,
                        &format!("unknown command {other}"),
                    );
                    self.reply(&e);
                }
            }
        }
        Ok(())
    }

    fn role_stream_id(&self) -> Option<u32> {
        match &self.role {
            Role::Publishing { stream_id, .. } | Role::Playing { stream_id, .. } => {
                Some(*stream_id)
            }
            Role::None => None,
        }
    }

    fn on_connect(&mut self, cmd: &Command) {
        let tid = cmd.transaction_id;
        if self.app.is_some() {
            let e = command::error_result(tid, status_code::CALL_FAILED, "already connected");
            self.reply(&e);
            return;
        }
        let request = ConnectRequest::from_command(cmd);
        let Some(app) = request.app.as_deref().and_then(normalize_app) else {
            let e = command::error_result(
                tid,
                status_code::CONNECT_REJECTED,
                "connect: the app name is missing or invalid (rtmp://host/<app>/<key>)",
            );
            self.reply(&e);
            tracing::info!(app = ?request.app, "connect refused: bad app name");
            self.refused = true;
            return;
        };
        let _ = self
            .writer
            .write_control(&ControlMessage::WindowAckSize(SERVER_WINDOW_BYTES));
        let _ = self
            .writer
            .write_control(&ControlMessage::SetPeerBandwidth {
                window_size: SERVER_WINDOW_BYTES,
                limit: PeerBandwidthLimit::Dynamic,
            });
        let _ = self.writer.set_chunk_size(self.relay.chunk_size());
        let r = command::connect_result(tid, &request);
        self.reply(&r);
        tracing::Span::current().record("app", app.as_str());
        tracing::info!(
            app = %app,
            tc_url = request.tc_url.as_deref().unwrap_or(""),
            flash_ver = request.flash_ver.as_deref().unwrap_or(""),
            enhanced = request.is_enhanced(),
            "connect"
        );
        self.app = Some(app);
    }

    fn on_publish(&mut self, cmd: &Command, stream_id: u32) {
        let request = match PublishRequest::from_command(cmd) {
            Ok(r) => r,
            Err(e) => {
                self.refuse_publish(stream_id, status_code::PUBLISH_BAD_NAME, &e.to_string());
                return;
            }
        };
        if !matches!(self.role, Role::None) {
            self.refuse_publish(
                stream_id,
                status_code::PUBLISH_BAD_NAME,
                "this connection already publishes or plays a stream",
            );
            return;
        }
        let Some(key) = stream_key(&request.stream_name) else {
            self.refuse_publish(
                stream_id,
                status_code::PUBLISH_BAD_NAME,
                "the stream key is empty or invalid",
            );
            return;
        };
        if request.publish_type != "live" {
            tracing::info!(publish_type = %request.publish_type, "recording is not supported: publishing live");
        }
        let app = self.app.clone().unwrap_or_default();
        tracing::Span::current().record("key", key.as_str());
        match self.relay.publish(
            &app,
            &key,
            &request.stream_name,
            self.conn_id,
            self.peer,
            &self.outbox,
            stream_id,
        ) {
            Ok(stream) => {
                let _ = self.writer.write_control(&ControlMessage::UserControl(
                    UserControlEvent::StreamBegin { stream_id },
                ));
                self.role = Role::Publishing { stream, stream_id };
                self.status(
                    stream_id,
                    StatusLevel::Status,
                    status_code::PUBLISH_START,
                    "Publishing started.",
                );
                tracing::info!(app = %app, key = %key, "publish");
            }
            Err(PublishRefusal::Unauthorized) => {
                tracing::warn!(app = %app, key = %key, "publish refused: key not allowed");
                self.refuse_publish(
                    stream_id,
                    status_code::PUBLISH_UNAUTHORIZED,
                    "this stream key may not publish here",
                );
            }
            Err(PublishRefusal::Busy) => {
                tracing::info!(app = %app, key = %key, "publish refused: key busy");
                self.refuse_publish(
                    stream_id,
                    status_code::PUBLISH_BAD_NAME,
                    "another publisher is already publishing on this stream key",
                );
            }
            Err(PublishRefusal::TooManyStreams) => {
                tracing::warn!(app = %app, key = %key, "publish refused: max_streams reached");
                self.refuse_publish(
                    stream_id,
                    status_code::PUBLISH_BAD_NAME,
                    "the server's stream limit is reached",
                );
            }
        }
    }

    fn refuse_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.status(stream_id, StatusLevel::Error, code, description);
        self.refused = true;
    }

    fn on_play(&mut self, cmd: &Command, stream_id: u32) {
        const PLAY_FAILED: &str = "NetStream.Play.Failed";
        let request = match PlayRequest::from_command(cmd) {
            Ok(r) => r,
            Err(e) => {
                self.status(stream_id, StatusLevel::Error, PLAY_FAILED, &e.to_string());
                self.refused = true;
                return;
            }
        };
        if !matches!(self.role, Role::None) {
            self.status(
                stream_id,
                StatusLevel::Error,
                PLAY_FAILED,
                "this connection already publishes or plays a stream",
            );
            return;
        }
        let Some(key) = stream_key(&request.stream_name) else {
            self.status(
                stream_id,
                StatusLevel::Error,
                status_code::PLAY_STREAM_NOT_FOUND,
                "the stream key is empty or invalid",
            );
            self.refused = true;
            return;
        };
        let app = self.app.clone().unwrap_or_default();
        tracing::Span::current().record("key", key.as_str());
        // Replies first (staged before the join burst reaches the queue): Stream Begin, Reset,
        // Start, then |RtmpSampleAccess — the sequence FMS used and librtmp expects.
        let _ = self.writer.write_control(&ControlMessage::UserControl(
            UserControlEvent::StreamBegin { stream_id },
        ));
        let details = key.clone();
        let status = |code: &str, description: &str| {
            command::on_status(&Status {
                level: StatusLevel::Status,
                code,
                description,
                details: Some(&details),
            })
        };
        if request.reset {
            let s = status(status_code::PLAY_RESET, "Playing and resetting.");
            let _ = self.writer.write_command(stream_id, &s);
        }
        let s = status(status_code::PLAY_START, "Started playing.");
        let _ = self.writer.write_command(stream_id, &s);
        let _ = self
            .writer
            .write_data(stream_id, 0, &command::rtmp_sample_access());
        self.flush_replies();
        match self
            .relay
            .play(&app, &key, self.conn_id, &self.outbox, stream_id)
        {
            Some((stream, live)) => {
                self.role = Role::Playing { stream, stream_id };
                tracing::info!(app = %app, key = %key, start = request.start,
                    waiting_for_publisher = !live, "play");
            }
            None => {
                tracing::warn!(app = %app, key = %key, "play refused: max_streams reached");
                self.status(
                    stream_id,
                    StatusLevel::Error,
                    PLAY_FAILED,
                    "the server's stream limit is reached",
                );
                self.refused = true;
            }
        }
    }

    /// Ends publishing or playing (deleteStream, FCUnpublish, closeStream, close).
    fn leave_role(&mut self) {
        match std::mem::replace(&mut self.role, Role::None) {
            Role::Publishing { stream, .. } => {
                self.relay.unpublish(&stream, self.conn_id);
                tracing::info!(app = %stream.app, key = %stream.key, "unpublish");
            }
            Role::Playing { stream, .. } => {
                self.outbox.stop_playing();
                self.relay.unsubscribe(&stream, self.conn_id);
                tracing::debug!(app = %stream.app, key = %stream.key, "stop playing");
            }
            Role::None => {}
        }
    }

    /// On shutdown: a player gets what is queued and Stream EOF before the close.
    fn say_goodbye(&mut self) {
        if let Role::Playing { stream_id, .. } = self.role {
            let eof = control_bytes(
                &ControlMessage::UserControl(UserControlEvent::StreamEof { stream_id }),
                self.relay.chunk_size(),
            );
            self.outbox.commit_then_stage(&[eof]);
        }
    }
}

/// The app name from `connect`: trimmed of slashes, without a `?query`; non-empty, printable,
/// bounded.
fn normalize_app(raw: &str) -> Option<String> {
    let app = raw.split('?').next().unwrap_or("").trim_matches('/');
    let ok = !app.is_empty()
        && app.len() <= MAX_APP_NAME_BYTES
        && !app.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then(|| app.to_owned())
}

/// The registry key of a stream name: without a `?query`; non-empty, printable, bounded.
fn stream_key(name: &str) -> Option<String> {
    let key = name.split('?').next().unwrap_or("").trim();
    let ok = !key.is_empty()
        && key.len() <= MAX_STREAM_KEY_BYTES
        && !key.chars().any(|c| c.is_control());
    ok.then(|| key.to_owned())
}
