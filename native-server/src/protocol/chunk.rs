//! Inbound RTMP chunk stream: turns the bytes a peer sends (after the handshake) into whole
//! messages ([`RawMessage`]).
//!
//! RTMP cuts every message into chunks of at most `chunk_size` bytes and lets chunks of
//! different chunk streams (csids) interleave, each chunk header compressing against the
//! previous header of the same csid. [`ChunkReader`] keeps that per-csid state and reassembles.
//!
//! It is sans-IO: the driver puts received bytes in ([`ChunkReader::push`] or
//! [`ChunkReader::read_buffer`]) and calls [`ChunkReader::next_message`] until it returns
//! `Ok(None)`. Partial input is never an error: any split of a valid byte stream gives the same
//! messages. A header is only consumed once complete; chunk payload bytes are consumed as they
//! arrive, so the reader never needs a whole chunk in memory (chunk size costs no memory).
//!
//! Safety: every limit in [`ReaderLimits`] is checked before the memory it guards is
//! allocated, and an error means "close the connection" (the stream state is then undefined).
//!
//! Semantics worth knowing:
//! - **Timestamps** are `u32` milliseconds. Type 0 headers carry the absolute time; types 1 and
//!   2 carry a delta that is added with wrapping arithmetic (RTMP time wraps after ~49.7 days).
//!   A type-3 header that starts a new message reuses the previous header's timestamp field as
//!   its delta; after a type 0 header that field is the absolute timestamp (FFmpeg's reading,
//!   which matches the way its writer compresses headers). Timestamps that go backwards are
//!   passed through unchanged: what to do about them is the relay's decision.
//! - **Extended timestamps**: a 24-bit field of 0xFFFFFF means a 4-byte field follows the
//!   header. The spec, FFmpeg and librtmp also repeat it after the basic header of type-3
//!   *continuation* chunks of that message, but some encoders do not. On a continuation chunk we
//!   therefore consume the 4 bytes only if they equal the message's extended timestamp field,
//!   and otherwise treat them as payload. (A payload that happens to start with exactly those 4
//!   bytes at a chunk boundary would be misread; the chance is 2^-32 per chunk of a message
//!   whose timestamp is beyond 4.66 hours.) A type-3 chunk that starts a *new* message after an
//!   extended header always carries the 4 bytes (spec, FFmpeg).
//! - **Set Chunk Size** (type 1) and **Abort** (type 2) are applied by the reader itself as soon
//!   as they are complete, so the new chunk size governs the very next chunk; they are still
//!   returned to the caller.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Chunk size in force before the peer sends Set Chunk Size (RTMP spec 5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Largest chunk size the protocol allows (31 bits; bit 31 must be zero).
pub const MAX_PROTOCOL_CHUNK_SIZE: u32 = 0x7FFF_FFFF;

/// Largest message length the 24-bit length field can declare.
pub const MAX_PROTOCOL_MESSAGE_LENGTH: u32 = 0x00FF_FFFF;

/// Default largest message we accept. A 4K HEVC/AVC keyframe at 20–50 Mbit/s is typically
/// 0.5–2 MB and exceptional intra frames reach ~4 MB; 8 MiB leaves 2x headroom over that while
/// halving what one message may make us hold compared with the 16 MiB wire maximum.
pub const DEFAULT_MAX_MESSAGE_LENGTH: u32 = 8 * 1024 * 1024;

/// Default cap on the bytes reserved for messages being reassembled on one connection (the
/// sum of the declared lengths of all incomplete messages). Two maximum-size messages may be
/// in flight at once (a keyframe interleaved with a second video track or a large data
/// message); a peer that opens more is hostile or broken.
pub const DEFAULT_MAX_PARTIAL_BYTES: usize = 2 * DEFAULT_MAX_MESSAGE_LENGTH as usize;

/// Default cap on distinct chunk stream ids a peer may use. Encoders use 3–8 (control,
/// command, audio, video, data); each id costs a little state that lives as long as the
/// connection, so the count must be bounded.
pub const DEFAULT_MAX_CHUNK_STREAMS: usize = 64;

/// Default largest chunk size a peer may set: the protocol maximum. The reader streams chunk
/// payloads instead of buffering whole chunks, so a large chunk size costs no memory; values
/// above the largest message length simply mean "one chunk per message".
pub const DEFAULT_MAX_CHUNK_SIZE: u32 = MAX_PROTOCOL_CHUNK_SIZE;

/// Largest chunk header: 3-byte basic header + 11-byte type-0 header + 4-byte extended timestamp.
pub const MAX_CHUNK_HEADER_LEN: usize = 3 + 11 + 4;

/// Message type ids the reader itself acts on.
const TYPE_SET_CHUNK_SIZE: u8 = 1;
const TYPE_ABORT: u8 = 2;

/// Marker in a 24-bit timestamp field meaning "the real value is in the extended field".
pub(crate) const EXTENDED_TIMESTAMP_MARKER: u32 = 0x00FF_FFFF;

/// Bounds on what one peer can make the reader hold. See the `DEFAULT_*` constants for why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Largest message length accepted (declared in the header; checked before allocating).
    pub max_message_length: u32,
    /// Cap on the sum of declared lengths of all incomplete messages.
    pub max_partial_bytes: usize,
    /// Cap on distinct chunk stream ids.
    pub max_chunk_streams: usize,
    /// Largest chunk size the peer may set (1..=0x7FFF_FFFF).
    pub max_chunk_size: u32,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        Self {
            max_message_length: DEFAULT_MAX_MESSAGE_LENGTH,
            max_partial_bytes: DEFAULT_MAX_PARTIAL_BYTES,
            max_chunk_streams: DEFAULT_MAX_CHUNK_STREAMS,
            max_chunk_size: DEFAULT_MAX_CHUNK_SIZE,
        }
    }
}

/// One reassembled message, as it came off the chunk stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream id it arrived on (2..=65599).
    pub csid: u32,
    /// Absolute timestamp in milliseconds (wrapping `u32`; see the module docs).
    pub timestamp: u32,
    /// RTMP message type id (1 Set Chunk Size … 8 audio, 9 video, 18 data, 20 command …).
    pub type_id: u8,
    /// Message stream id (0 for control and NetConnection commands).
    pub stream_id: u32,
    pub payload: Bytes,
}

/// Why the inbound stream cannot be read any further. The connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error(
        "chunk stream {csid}: type {fmt} chunk header with no previous header on this chunk stream"
    )]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error(
        "chunk stream {csid}: declared message length {length} exceeds the limit of {limit} bytes"
    )]
    MessageTooLong { csid: u32, length: u32, limit: u32 },
    #[error("more than {limit} chunk stream ids in use")]
    TooManyChunkStreams { limit: usize },
    #[error("chunk stream {csid}: {needed} bytes needed for incomplete messages, limit {limit}")]
    PartialBytesLimit {
        csid: u32,
        needed: usize,
        limit: usize,
    },
    #[error("chunk stream {csid}: new message header while the previous message is incomplete")]
    InterruptedMessage { csid: u32 },
    #[error("invalid Set Chunk Size {size:#x} (must be 1..=0x7FFFFFFF)")]
    InvalidChunkSize { size: u32 },
    #[error("Set Chunk Size {size} is above the accepted limit of {limit}")]
    ChunkSizeAboveLimit { size: u32, limit: u32 },
    #[error(
        "protocol control message type {type_id} has a {len}-byte payload, expected {expected}"
    )]
    BadControlPayload {
        type_id: u8,
        len: usize,
        expected: usize,
    },
}

/// Validates a Set Chunk Size payload (4 bytes, big-endian, 1..=0x7FFF_FFFF).
pub fn parse_set_chunk_size(payload: &[u8]) -> Result<u32, ChunkError> {
    let size = read_u32_payload(TYPE_SET_CHUNK_SIZE, payload)?;
    if size == 0 || size > MAX_PROTOCOL_CHUNK_SIZE {
        return Err(ChunkError::InvalidChunkSize { size });
    }
    Ok(size)
}

/// Reads the chunk stream id out of an Abort message payload.
pub fn parse_abort(payload: &[u8]) -> Result<u32, ChunkError> {
    read_u32_payload(TYPE_ABORT, payload)
}

/// Control payloads are 4 bytes; longer ones are tolerated (extra bytes ignored).
fn read_u32_payload(type_id: u8, payload: &[u8]) -> Result<u32, ChunkError> {
    match payload.get(..4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(ChunkError::BadControlPayload {
            type_id,
            len: payload.len(),
            expected: 4,
        }),
    }
}

/// What the reader remembers about one chunk stream id.
#[derive(Debug)]
struct ChunkStreamState {
    csid: u32,
    /// Absolute timestamp of the latest message started on this csid.
    timestamp: u32,
    /// The latest timestamp field as carried (delta, or absolute after type 0), after
    /// extension; reused by type-3 headers that start a new message.
    timestamp_field: u32,
    /// The latest 24-bit timestamp field was 0xFFFFFF.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The message being reassembled, if any.
    partial: Option<BytesMut>,
}

/// The chunk whose payload is being consumed.
#[derive(Debug, Clone, Copy)]
struct ActiveChunk {
    /// Index into `ChunkReader::streams`.
    stream: usize,
    /// Payload bytes of this chunk not yet consumed.
    remaining: usize,
}

/// A fully parsed chunk header (nothing consumed yet).
struct ChunkHeader {
    /// Total header bytes, including any extended timestamp.
    len: usize,
    csid: u32,
    kind: HeaderKind,
}

enum HeaderKind {
    /// Types 0, 1, 2, and type 3 when no message is in progress: a new message starts.
    NewMessage {
        fmt: u8,
        timestamp_field: u32,
        extended: bool,
        /// Present for types 0 and 1.
        length_and_type: Option<(u32, u8)>,
        /// Present for type 0.
        stream_id: Option<u32>,
    },
    /// Type 3 continuing the message in progress.
    Continuation,
}

/// Reassembles RTMP messages from chunked input. See the module docs.
#[derive(Debug)]
pub struct ChunkReader {
    limits: ReaderLimits,
    input: BytesMut,
    chunk_size: u32,
    /// Per-csid state; few entries, so a linear scan beats hashing.
    streams: Vec<ChunkStreamState>,
    active: Option<ActiveChunk>,
    /// Sum of declared lengths of incomplete messages.
    partial_bytes: usize,
    /// Bytes taken out of `input` so far.
    consumed_bytes: u64,
}

impl ChunkReader {
    pub fn new(limits: ReaderLimits) -> Self {
        Self {
            limits,
            input: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            active: None,
            partial_bytes: 0,
            consumed_bytes: 0,
        }
    }

    /// Appends received bytes (copies them; see [`Self::read_buffer`] to avoid the copy).
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The input buffer, with at least `min_spare` bytes of spare capacity, for reading from a
    /// socket directly (`socket.read_buf(reader.read_buffer(64 * 1024))`). Call
    /// [`Self::next_message`] until `Ok(None)` after each read: the reader keeps fewer than
    /// [`MAX_CHUNK_HEADER_LEN`] unconsumed bytes once drained, so the buffer stays small.
    pub fn read_buffer(&mut self, min_spare: usize) -> &mut BytesMut {
        self.input.reserve(min_spare);
        &mut self.input
    }

    /// Chunk size currently applied to inbound chunks.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Total bytes received so far (for Acknowledgement messages; the wire counter is 32-bit
    /// and wraps, so send `bytes_received() as u32` truncated on purpose).
    pub fn bytes_received(&self) -> u64 {
        self.consumed_bytes.saturating_add(self.input.len() as u64)
    }

    /// Bytes received but not yet consumed.
    pub fn buffered_len(&self) -> usize {
        self.input.len()
    }

    /// Sum of the declared lengths of incomplete messages.
    pub fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    /// The limits this reader enforces.
    pub fn limits(&self) -> &ReaderLimits {
        &self.limits
    }

    /// Returns the next complete message, `Ok(None)` if more input is needed.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            if let Some(active) = self.active {
                match self.consume_chunk_payload(active) {
                    PayloadProgress::NeedInput => return Ok(None),
                    PayloadProgress::ChunkDone => continue,
                    PayloadProgress::Message(message) => {
                        self.apply_control(&message)?;
                        return Ok(Some(message));
                    }
                }
            }
            let Some(header) = self.parse_header()? else {
                return Ok(None);
            };
            if let Some(message) = self.start_chunk(header)? {
                self.apply_control(&message)?;
                return Ok(Some(message));
            }
        }
    }

    fn advance(&mut self, n: usize) {
        let n = n.min(self.input.len());
        self.input.advance(n);
        self.consumed_bytes = self.consumed_bytes.saturating_add(n as u64);
    }

    fn stream_index(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }

    /// Copies available payload bytes of the active chunk into its message.
    fn consume_chunk_payload(&mut self, active: ActiveChunk) -> PayloadProgress {
        let n = active.remaining.min(self.input.len());
        if n == 0 && active.remaining > 0 {
            return PayloadProgress::NeedInput;
        }
        let Some(stream) = self.streams.get_mut(active.stream) else {
            self.active = None;
            return PayloadProgress::ChunkDone;
        };
        let Some(partial) = stream.partial.as_mut() else {
            self.active = None;
            return PayloadProgress::ChunkDone;
        };
        if let Some(bytes) = self.input.get(..n) {
            partial.extend_from_slice(bytes);
        }
        let remaining = active.remaining.saturating_sub(n);
        let message_done = partial.len() >= stream.length as usize;
        self.advance(n);
        if remaining > 0 {
            self.active = Some(ActiveChunk {
                stream: active.stream,
                remaining,
            });
            return PayloadProgress::NeedInput;
        }
        self.active = None;
        if !message_done {
            return PayloadProgress::ChunkDone;
        }
        match self.finish_message(active.stream) {
            Some(message) => PayloadProgress::Message(message),
            None => PayloadProgress::ChunkDone,
        }
    }

    /// Takes the completed message of `stream` out of its state.
    fn finish_message(&mut self, stream: usize) -> Option<RawMessage> {
        let state = self.streams.get_mut(stream)?;
        let payload = state.partial.take()?;
        self.partial_bytes = self.partial_bytes.saturating_sub(state.length as usize);
        Some(RawMessage {
            csid: state.csid,
            timestamp: state.timestamp,
            type_id: state.type_id,
            stream_id: state.stream_id,
            payload: payload.freeze(),
        })
    }

    /// Parses the chunk header at the front of the input without consuming it.
    fn parse_header(&self) -> Result<Option<ChunkHeader>, ChunkError> {
        let buf: &[u8] = &self.input;
        let Some((fmt, csid, basic_len)) = parse_basic_header(buf) else {
            return Ok(None);
        };
        let state = self.stream_index(csid).and_then(|i| self.streams.get(i));
        if fmt != 0 && state.is_none() {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        let message_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(fields) = buf.get(basic_len..basic_len + message_len) else {
            return Ok(None);
        };
        let after_fields = basic_len + message_len;

        if fmt == 3 {
            let Some(state) = state else {
                return Err(ChunkError::NoPreviousHeader { csid, fmt });
            };
            if state.partial.is_some() {
                // Continuation: the extended timestamp may or may not be repeated.
                let mut len = after_fields;
                if state.extended {
                    let expected = state.timestamp_field.to_be_bytes();
                    let available = buf.get(after_fields..).unwrap_or(&[]);
                    let probe = available.get(..4).unwrap_or(available);
                    if probe != expected.get(..probe.len()).unwrap_or(&[]) {
                        // Differs from the extended timestamp: it is payload.
                    } else if probe.len() < 4 {
                        return Ok(None); // Cannot tell yet.
                    } else {
                        len += 4;
                    }
                }
                return Ok(Some(ChunkHeader {
                    len,
                    csid,
                    kind: HeaderKind::Continuation,
                }));
            }
            // A new message with every header field reused.
            let (timestamp_field, len) = if state.extended {
                let Some(ext) = read_u32(buf, after_fields) else {
                    return Ok(None);
                };
                (ext, after_fields + 4)
            } else {
                (state.timestamp_field, after_fields)
            };
            return Ok(Some(ChunkHeader {
                len,
                csid,
                kind: HeaderKind::NewMessage {
                    fmt,
                    timestamp_field,
                    extended: state.extended,
                    length_and_type: None,
                    stream_id: None,
                },
            }));
        }

        let field24 = read_u24(fields, 0).unwrap_or(0);
        let extended = field24 == EXTENDED_TIMESTAMP_MARKER;
        let (timestamp_field, len) = if extended {
            let Some(ext) = read_u32(buf, after_fields) else {
                return Ok(None);
            };
            (ext, after_fields + 4)
        } else {
            (field24, after_fields)
        };
        let length_and_type = if fmt <= 1 {
            let length = read_u24(fields, 3).unwrap_or(0);
            let type_id = fields.get(6).copied().unwrap_or(0);
            Some((length, type_id))
        } else {
            None
        };
        let stream_id = if fmt == 0 {
            // The message stream id is the one little-endian field in RTMP.
            fields
                .get(7..11)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
        } else {
            None
        };
        Ok(Some(ChunkHeader {
            len,
            csid,
            kind: HeaderKind::NewMessage {
                fmt,
                timestamp_field,
                extended,
                length_and_type,
                stream_id,
            },
        }))
    }

    /// Applies a parsed header: updates csid state, consumes the header, and either returns a
    /// message that is complete already (empty, or whole in the input) or sets the active chunk.
    fn start_chunk(&mut self, header: ChunkHeader) -> Result<Option<RawMessage>, ChunkError> {
        let chunk_size = self.chunk_size as usize;
        let csid = header.csid;
        match header.kind {
            HeaderKind::Continuation => {
                let index = self
                    .stream_index(csid)
                    .ok_or(ChunkError::NoPreviousHeader { csid, fmt: 3 })?;
                let remaining_in_message = self
                    .streams
                    .get(index)
                    .and_then(|s| {
                        let done = s.partial.as_ref()?.len();
                        (s.length as usize).checked_sub(done)
                    })
                    .unwrap_or(0);
                self.advance(header.len);
                self.active = Some(ActiveChunk {
                    stream: index,
                    remaining: remaining_in_message.min(chunk_size),
                });
                Ok(None)
            }
            HeaderKind::NewMessage {
                fmt,
                timestamp_field,
                extended,
                length_and_type,
                stream_id,
            } => {
                let existing = self.stream_index(csid);
                if let Some(state) = existing.and_then(|i| self.streams.get(i)) {
                    if state.partial.is_some() {
                        return Err(ChunkError::InterruptedMessage { csid });
                    }
                }
                let length = match (length_and_type, existing.and_then(|i| self.streams.get(i))) {
                    (Some((length, _)), _) => length,
                    (None, Some(state)) => state.length,
                    (None, None) => return Err(ChunkError::NoPreviousHeader { csid, fmt }),
                };
                if length > self.limits.max_message_length {
                    return Err(ChunkError::MessageTooLong {
                        csid,
                        length,
                        limit: self.limits.max_message_length,
                    });
                }
                let index = match existing {
                    Some(index) => index,
                    None => {
                        if self.streams.len() >= self.limits.max_chunk_streams {
                            return Err(ChunkError::TooManyChunkStreams {
                                limit: self.limits.max_chunk_streams,
                            });
                        }
                        self.streams.push(ChunkStreamState {
                            csid,
                            timestamp: 0,
                            timestamp_field: 0,
                            extended: false,
                            length: 0,
                            type_id: 0,
                            stream_id: 0,
                            partial: None,
                        });
                        self.streams.len().saturating_sub(1)
                    }
                };
                let length_usize = length as usize;
                let first_chunk = length_usize.min(chunk_size);
                let whole_message_buffered = first_chunk == length_usize
                    && self.input.len() >= header.len.saturating_add(length_usize);
                let reserve_needed = self.partial_bytes.saturating_add(length_usize);
                if !whole_message_buffered && reserve_needed > self.limits.max_partial_bytes {
                    return Err(ChunkError::PartialBytesLimit {
                        csid,
                        needed: reserve_needed,
                        limit: self.limits.max_partial_bytes,
                    });
                }

                let Some(state) = self.streams.get_mut(index) else {
                    return Ok(None);
                };
                state.timestamp = if fmt == 0 {
                    timestamp_field
                } else {
                    state.timestamp.wrapping_add(timestamp_field)
                };
                state.timestamp_field = timestamp_field;
                state.extended = extended;
                if let Some((length, type_id)) = length_and_type {
                    state.length = length;
                    state.type_id = type_id;
                }
                if let Some(stream_id) = stream_id {
                    state.stream_id = stream_id;
                }
                let template = RawMessage {
                    csid,
                    timestamp: state.timestamp,
                    type_id: state.type_id,
                    stream_id: state.stream_id,
                    payload: Bytes::new(),
                };

                if whole_message_buffered {
                    // Fast path: the whole message is one chunk already in the buffer; hand
                    // out a slice of the input (no copy).
                    self.advance(header.len);
                    let payload = self.input.split_to(length_usize).freeze();
                    self.consumed_bytes = self.consumed_bytes.saturating_add(length as u64);
                    return Ok(Some(RawMessage {
                        payload,
                        ..template
                    }));
                }
                state.partial = Some(BytesMut::with_capacity(length_usize));
                self.partial_bytes = reserve_needed;
                self.advance(header.len);
                self.active = Some(ActiveChunk {
                    stream: index,
                    remaining: first_chunk,
                });
                Ok(None)
            }
        }
    }

    /// Set Chunk Size and Abort take effect inside the reader.
    fn apply_control(&mut self, message: &RawMessage) -> Result<(), ChunkError> {
        match message.type_id {
            TYPE_SET_CHUNK_SIZE => {
                let size = parse_set_chunk_size(&message.payload)?;
                if size > self.limits.max_chunk_size {
                    return Err(ChunkError::ChunkSizeAboveLimit {
                        size,
                        limit: self.limits.max_chunk_size,
                    });
                }
                self.chunk_size = size;
            }
            TYPE_ABORT => {
                let csid = parse_abort(&message.payload)?;
                if let Some(state) = self
                    .stream_index(csid)
                    .and_then(|i| self.streams.get_mut(i))
                {
                    if state.partial.take().is_some() {
                        self.partial_bytes =
                            self.partial_bytes.saturating_sub(state.length as usize);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

enum PayloadProgress {
    NeedInput,
    ChunkDone,
    Message(RawMessage),
}

/// Parses the basic header: (fmt, csid, length in bytes). `None` if incomplete.
fn parse_basic_header(buf: &[u8]) -> Option<(u8, u32, usize)> {
    let first = *buf.first()?;
    let fmt = first >> 6;
    match first & 0x3F {
        0 => {
            let b1 = *buf.get(1)?;
            Some((fmt, 64 + u32::from(b1), 2))
        }
        1 => {
            let b1 = *buf.get(1)?;
            let b2 = *buf.get(2)?;
            Some((fmt, 64 + u32::from(b1) + 256 * u32::from(b2), 3))
        }
        csid => Some((fmt, u32::from(csid), 1)),
    }
}

fn read_u24(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(3)?)?;
    Some(u32::from_be_bytes([0, *b.first()?, *b.get(1)?, *b.get(2)?]))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(b).ok().map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::writer::{chunk_message, ChunkedMessage};
    use proptest::prelude::*;

    fn reader() -> ChunkReader {
        ChunkReader::new(ReaderLimits::default())
    }

    fn drain(reader: &mut ChunkReader) -> Result<Vec<RawMessage>, ChunkError> {
        let mut out = Vec::new();
        while let Some(m) = reader.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut r = reader();
        r.push(bytes);
        drain(&mut r)
    }

    /// Feeds `bytes` one byte at a time.
    fn read_bytewise(bytes: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut r = reader();
        let mut out = Vec::new();
        for b in bytes {
            r.push(&[*b]);
            out.extend(drain(&mut r)?);
        }
        Ok(out)
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Type 0 header bytes on a one-byte csid.
    fn type0(csid: u8, ts: u32, len: u32, type_id: u8, sid: u32) -> Vec<u8> {
        let mut v = vec![csid];
        v.extend_from_slice(&ts.min(0xFFFFFF).to_be_bytes()[1..]);
        v.extend_from_slice(&len.to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&sid.to_le_bytes());
        if ts >= 0xFFFFFF {
            v.extend_from_slice(&ts.to_be_bytes());
        }
        v
    }

    fn set_chunk_size_msg(size: u32) -> Vec<u8> {
        let mut v = type0(2, 0, 4, 1, 0);
        v.extend_from_slice(&size.to_be_bytes());
        v
    }

    #[test]
    fn all_four_header_types() {
        let mut bytes = type0(4, 1000, 3, 8, 1);
        bytes.extend_from_slice(b"abc");
        // Type 1: delta 20, new length 2, type 9.
        bytes.extend_from_slice(&[0x40 | 4, 0, 0, 20, 0, 0, 2, 9]);
        bytes.extend_from_slice(b"de");
        // Type 2: delta 33.
        bytes.extend_from_slice(&[0x80 | 4, 0, 0, 33]);
        bytes.extend_from_slice(b"fg");
        // Type 3 new message: reuses delta 33.
        bytes.push(0xC0 | 4);
        bytes.extend_from_slice(b"hi");
        let expected = vec![
            msg(4, 1000, 8, 1, b"abc"),
            msg(4, 1020, 9, 1, b"de"),
            msg(4, 1053, 9, 1, b"fg"),
            msg(4, 1086, 9, 1, b"hi"),
        ];
        assert_eq!(read_all(&bytes).unwrap(), expected);
        assert_eq!(read_bytewise(&bytes).unwrap(), expected);
    }

    #[test]
    fn type3_new_message_after_type0_uses_its_timestamp_as_delta() {
        let mut bytes = type0(4, 40, 1, 8, 1);
        bytes.push(b'a');
        bytes.push(0xC0 | 4);
        bytes.push(b'b');
        let got = read_all(&bytes).unwrap();
        assert_eq!(got[1].timestamp, 80);
    }

    #[test]
    fn csid_forms() {
        for csid in [2u32, 3, 63, 64, 65, 319, 320, 1000, 65599] {
            let mut out = BytesMut::new();
            chunk_message(&mut out, csid, 5, 20, 0, b"payload", 128).unwrap();
            let expected_basic_len = match csid {
                2..=63 => 1,
                64..=319 => 2,
                _ => 3,
            };
            assert_eq!(out.len(), expected_basic_len + 11 + 7, "csid {csid}");
            let got = read_bytewise(&out).unwrap();
            assert_eq!(got, vec![msg(csid, 5, 20, 0, b"payload")], "csid {csid}");
        }
        // The two- and three-byte forms by hand: csid 64 as 2 bytes, csid 320 as 3 bytes,
        // and csid 64 written in the 3-byte form (legal) is the same stream.
        let mut bytes = vec![0x00, 0x00];
        bytes.extend_from_slice(&type0(0, 0, 1, 8, 1)[1..]);
        bytes.push(b'x');
        bytes.extend_from_slice(&[0xC1, 0x00, 0x00, b'y']);
        bytes.extend_from_slice(&[0x01, 0x00, 0x01]);
        bytes.extend_from_slice(&type0(0, 7, 1, 9, 1)[1..]);
        bytes.push(b'z');
        let got = read_all(&bytes).unwrap();
        assert_eq!(got[0].csid, 64);
        assert_eq!(got[1].csid, 64);
        assert_eq!(got[1].timestamp, 0);
        assert_eq!(got[2].csid, 320);
        assert_eq!(got[2].payload.as_ref(), b"z");
    }

    #[test]
    fn message_split_across_chunks() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut bytes = type0(6, 0, 300, 9, 1);
        bytes.extend_from_slice(&payload[..128]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[128..256]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[256..]);
        let expected = vec![msg(6, 0, 9, 1, &payload)];
        assert_eq!(read_all(&bytes).unwrap(), expected);
        assert_eq!(read_bytewise(&bytes).unwrap(), expected);
    }

    #[test]
    fn extended_timestamp_with_repeated_field_on_continuations() {
        let ts = 0x0100_0000;
        let payload = vec![7u8; 300];
        let mut bytes = type0(6, ts, 300, 9, 1);
        assert_eq!(&bytes[1..4], &[0xFF, 0xFF, 0xFF]);
        bytes.extend_from_slice(&payload[..128]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&ts.to_be_bytes());
        bytes.extend_from_slice(&payload[128..256]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&ts.to_be_bytes());
        bytes.extend_from_slice(&payload[256..]);
        let expected = vec![msg(6, ts, 9, 1, &payload)];
        assert_eq!(read_all(&bytes).unwrap(), expected);
        assert_eq!(read_bytewise(&bytes).unwrap(), expected);
    }

    #[test]
    fn extended_timestamp_without_repeated_field_on_continuations() {
        let ts = 0x0100_0000;
        let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = type0(6, ts, 300, 9, 1);
        bytes.extend_from_slice(&payload[..128]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[128..256]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[256..]);
        let expected = vec![msg(6, ts, 9, 1, &payload)];
        assert_eq!(read_all(&bytes).unwrap(), expected);
        assert_eq!(read_bytewise(&bytes).unwrap(), expected);
    }

    #[test]
    fn short_tail_chunk_without_extended_field_is_not_stuck() {
        // The last chunk has 2 payload bytes and no repeated extended timestamp; the reader
        // must decide from the first differing byte instead of waiting for 4 bytes.
        let ts = 0x0100_0000;
        let mut bytes = type0(6, ts, 130, 9, 1);
        bytes.extend_from_slice(&[0u8; 128]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&[0xAA, 0xBB]);
        let got = read_all(&bytes).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].payload[128..], &[0xAA, 0xBB]);
    }

    #[test]
    fn extended_delta_in_type1_and_type2() {
        let mut bytes = type0(4, 10, 1, 8, 1);
        bytes.push(b'a');
        bytes.extend_from_slice(&[0x40 | 4, 0xFF, 0xFF, 0xFF, 0, 0, 1, 8]);
        bytes.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        bytes.push(b'b');
        bytes.extend_from_slice(&[0x80 | 4, 0xFF, 0xFF, 0xFF]);
        bytes.extend_from_slice(&0x0200_0000u32.to_be_bytes());
        bytes.push(b'c');
        // Type 3 new message after an extended header carries the 4-byte field.
        bytes.push(0xC0 | 4);
        bytes.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        bytes.push(b'd');
        let got = read_bytewise(&bytes).unwrap();
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(
            ts,
            vec![10, 10 + 0x0100_0000, 10 + 0x0300_0000, 10 + 0x0400_0000]
        );
    }

    #[test]
    fn timestamps_wrap_and_go_backwards_without_panicking() {
        let mut bytes = type0(4, 0xFFFF_FFF0, 1, 8, 1);
        bytes.push(b'a');
        bytes.extend_from_slice(&[0x80 | 4, 0, 0, 0x20]);
        bytes.push(b'b');
        bytes.extend_from_slice(&type0(4, 5, 1, 8, 1));
        bytes.push(b'c');
        let got = read_all(&bytes).unwrap();
        assert_eq!(got[1].timestamp, 0x10);
        assert_eq!(got[2].timestamp, 5);
    }

    #[test]
    fn interleaved_chunk_streams() {
        // Video (csid 6, 300 bytes) split by an audio message (csid 4) and a command (csid 3).
        let video: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut bytes = type0(6, 100, 300, 9, 1);
        bytes.extend_from_slice(&video[..128]);
        bytes.extend_from_slice(&type0(4, 90, 5, 8, 1));
        bytes.extend_from_slice(b"audio");
        bytes.push(0xC6);
        bytes.extend_from_slice(&video[128..256]);
        bytes.extend_from_slice(&type0(3, 0, 200, 20, 0));
        bytes.extend_from_slice(&[1u8; 128]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&video[256..]);
        bytes.push(0xC3);
        bytes.extend_from_slice(&[1u8; 72]);
        let expected = vec![
            msg(4, 90, 8, 1, b"audio"),
            msg(6, 100, 9, 1, &video),
            msg(3, 0, 20, 0, &[1u8; 200]),
        ];
        assert_eq!(read_all(&bytes).unwrap(), expected);
        assert_eq!(read_bytewise(&bytes).unwrap(), expected);
    }

    #[test]
    fn set_chunk_size_applies_to_the_next_chunk() {
        for size in [128u32, 4096, 65536] {
            let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
            let mut bytes = set_chunk_size_msg(size);
            let mut out = BytesMut::new();
            chunk_message(&mut out, 6, 0, 9, 1, &payload, size).unwrap();
            bytes.extend_from_slice(&out);
            let mut r = reader();
            r.push(&bytes);
            let got = drain(&mut r).unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].type_id, 1);
            assert_eq!(r.chunk_size(), size);
            assert_eq!(got[1].payload.as_ref(), payload.as_slice());
        }
    }

    #[test]
    fn set_chunk_size_in_the_middle_of_a_message_governs_its_next_chunk() {
        let video: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut bytes = type0(6, 0, 300, 9, 1);
        bytes.extend_from_slice(&video[..128]);
        bytes.extend_from_slice(&set_chunk_size_msg(4096));
        // The remaining 172 bytes now come as one chunk.
        bytes.push(0xC6);
        bytes.extend_from_slice(&video[128..]);
        let expected_video = msg(6, 0, 9, 1, &video);
        for got in [read_all(&bytes).unwrap(), read_bytewise(&bytes).unwrap()] {
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].type_id, 1);
            assert_eq!(got[1], expected_video);
        }
    }

    #[test]
    fn invalid_chunk_sizes_are_rejected() {
        for size in [0u32, 0x8000_0000, 0xFFFF_FFFF] {
            assert_eq!(
                read_all(&set_chunk_size_msg(size)),
                Err(ChunkError::InvalidChunkSize { size })
            );
        }
        assert!(read_all(&set_chunk_size_msg(0x7FFF_FFFF)).is_ok());
        let mut r = ChunkReader::new(ReaderLimits {
            max_chunk_size: 65536,
            ..ReaderLimits::default()
        });
        r.push(&set_chunk_size_msg(65537));
        assert_eq!(
            r.next_message(),
            Err(ChunkError::ChunkSizeAboveLimit {
                size: 65537,
                limit: 65536
            })
        );
        // Short payload.
        let mut bytes = type0(2, 0, 2, 1, 0);
        bytes.extend_from_slice(&[0, 1]);
        assert!(matches!(
            read_all(&bytes),
            Err(ChunkError::BadControlPayload { .. })
        ));
    }

    #[test]
    fn abort_discards_the_partial_message() {
        let mut bytes = type0(6, 0, 300, 9, 1);
        bytes.extend_from_slice(&[9u8; 128]);
        // Abort csid 6.
        bytes.extend_from_slice(&type0(2, 0, 4, 2, 0));
        bytes.extend_from_slice(&6u32.to_be_bytes());
        // A fresh message on csid 6.
        bytes.extend_from_slice(&type0(6, 40, 3, 9, 1));
        bytes.extend_from_slice(b"new");
        let mut r = reader();
        r.push(&bytes);
        let got = drain(&mut r).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].type_id, 2);
        assert_eq!(got[1], msg(6, 40, 9, 1, b"new"));
        assert_eq!(r.partial_bytes(), 0);
    }

    #[test]
    fn type_1_2_3_without_prior_header_is_an_error() {
        for (fmt, bytes) in [
            (1u8, vec![0x40 | 5, 0, 0, 0, 0, 0, 1, 8, b'a']),
            (2, vec![0x80 | 5, 0, 0, 0, b'a']),
            (3, vec![0xC0 | 5, b'a']),
        ] {
            assert_eq!(
                read_all(&bytes),
                Err(ChunkError::NoPreviousHeader { csid: 5, fmt })
            );
        }
    }

    #[test]
    fn new_header_in_the_middle_of_a_message_is_an_error() {
        let mut bytes = type0(6, 0, 300, 9, 1);
        bytes.extend_from_slice(&[0u8; 128]);
        bytes.extend_from_slice(&type0(6, 0, 3, 9, 1));
        assert_eq!(
            read_all(&bytes),
            Err(ChunkError::InterruptedMessage { csid: 6 })
        );
    }

    #[test]
    fn declared_length_above_limit_fails_before_any_payload() {
        let limit = DEFAULT_MAX_MESSAGE_LENGTH;
        // Only the header is fed: the error comes without waiting for (or allocating) payload.
        let bytes = type0(6, 0, limit + 1, 9, 1);
        assert_eq!(
            read_all(&bytes),
            Err(ChunkError::MessageTooLong {
                csid: 6,
                length: limit + 1,
                limit
            })
        );
        let bytes = type0(6, 0, MAX_PROTOCOL_MESSAGE_LENGTH, 9, 1);
        assert!(matches!(
            read_all(&bytes),
            Err(ChunkError::MessageTooLong { .. })
        ));
        // Exactly at the limit is accepted (and waits for payload).
        let mut r = reader();
        r.push(&type0(6, 0, limit, 9, 1));
        assert_eq!(r.next_message(), Ok(None));
        // Type 1 headers are checked too.
        let mut bytes = type0(4, 0, 1, 8, 1);
        bytes.push(0);
        bytes.extend_from_slice(&[0x40 | 4, 0, 0, 0, 0xFF, 0xFF, 0xFF, 8]);
        assert!(matches!(
            read_all(&bytes),
            Err(ChunkError::MessageTooLong { .. })
        ));
    }

    #[test]
    fn too_many_chunk_streams() {
        let mut r = ChunkReader::new(ReaderLimits {
            max_chunk_streams: 4,
            ..ReaderLimits::default()
        });
        for csid in 3..7u8 {
            let mut bytes = type0(csid, 0, 1, 8, 1);
            bytes.push(0);
            r.push(&bytes);
        }
        assert_eq!(drain(&mut r).unwrap().len(), 4);
        let mut bytes = type0(7, 0, 1, 8, 1);
        bytes.push(0);
        r.push(&bytes);
        assert_eq!(
            r.next_message(),
            Err(ChunkError::TooManyChunkStreams { limit: 4 })
        );
    }

    #[test]
    fn partial_bytes_cap() {
        let mut r = ChunkReader::new(ReaderLimits {
            max_partial_bytes: 1000,
            ..ReaderLimits::default()
        });
        // 600 bytes declared on csid 4: ok, 600 on csid 6: over the cap.
        let mut bytes = type0(4, 0, 600, 9, 1);
        bytes.extend_from_slice(&[0u8; 128]);
        bytes.extend_from_slice(&type0(6, 0, 600, 9, 1));
        r.push(&bytes);
        assert_eq!(
            r.next_message(),
            Err(ChunkError::PartialBytesLimit {
                csid: 6,
                needed: 1200,
                limit: 1000
            })
        );
        // Completing messages releases their reservation.
        let mut r = ChunkReader::new(ReaderLimits {
            max_partial_bytes: 1000,
            ..ReaderLimits::default()
        });
        for _ in 0..10 {
            let mut out = BytesMut::new();
            chunk_message(&mut out, 6, 0, 9, 1, &[1u8; 900], 128).unwrap();
            r.push(&out);
            assert_eq!(drain(&mut r).unwrap().len(), 1);
            assert_eq!(r.partial_bytes(), 0);
        }
    }

    #[test]
    fn zero_length_message() {
        let bytes = type0(3, 0, 0, 20, 0);
        assert_eq!(read_all(&bytes).unwrap(), vec![msg(3, 0, 20, 0, b"")]);
    }

    #[test]
    fn bytes_received_counts_everything() {
        let mut r = reader();
        let mut bytes = type0(4, 0, 3, 8, 1);
        bytes.extend_from_slice(b"abc");
        bytes.push(0x04); // start of another header
        r.push(&bytes);
        drain(&mut r).unwrap();
        assert_eq!(r.bytes_received(), bytes.len() as u64);
        assert_eq!(r.buffered_len(), 1);
    }

    #[test]
    fn large_message_is_fast_path_or_copy_consistent() {
        let payload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 249) as u8).collect();
        let chunked = ChunkedMessage::new(6, 123, 9, 1, &payload, 65536).unwrap();
        let mut bytes = set_chunk_size_msg(65536);
        bytes.extend_from_slice(chunked.bytes());
        let got = read_all(&bytes).unwrap();
        assert_eq!(got[1].payload.len(), payload.len());
        assert!(got[1].payload.as_ref() == payload.as_slice());
    }

    /// Throughput of writer + reader on large messages, against a plain copy of the same
    /// bytes. Run with `cargo test --release -p native-server --lib throughput -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "timing; run in release by hand"]
    fn throughput() {
        use std::time::Instant;
        let payload = vec![0x5Au8; 1 << 20];
        let messages = 200;
        let chunk_size = 4096;
        let started = Instant::now();
        let mut wire = BytesMut::new();
        for i in 0..messages {
            chunk_message(&mut wire, 6, i * 33, 9, 1, &payload, chunk_size).unwrap();
        }
        let write_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut reused = BytesMut::new();
        for i in 0..messages {
            reused.clear();
            chunk_message(&mut reused, 6, i * 33, 9, 1, &payload, chunk_size).unwrap();
        }
        let write_reused_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        for i in 0..messages {
            let m = ChunkedMessage::new(6, i * 33, 9, 1, &payload, chunk_size).unwrap();
            assert!(m.wire_len() > payload.len());
        }
        let shared_s = started.elapsed().as_secs_f64();
        let mut stream = set_chunk_size_msg(chunk_size);
        stream.extend_from_slice(&wire);

        let started = Instant::now();
        let mut r = reader();
        let mut total = 0usize;
        for piece in stream.chunks(64 * 1024) {
            r.push(piece);
            while let Some(m) = r.next_message().unwrap() {
                total += m.payload.len();
            }
        }
        let read_s = started.elapsed().as_secs_f64();
        assert_eq!(total, 4 + messages as usize * payload.len());

        let started = Instant::now();
        let mut copy = BytesMut::new();
        for piece in stream.chunks(64 * 1024) {
            copy.extend_from_slice(piece);
            copy.clear();
        }
        let mut copied = Vec::with_capacity(payload.len());
        for _ in 0..messages {
            copied.clear();
            copied.extend_from_slice(&payload);
        }
        let copy_s = started.elapsed().as_secs_f64();
        let mb = (messages as f64) * payload.len() as f64 / 1e6;
        println!(
            "write into one growing buffer {:.0} MB/s, into a reused buffer {:.0} MB/s, \
             ChunkedMessage::new {:.0} MB/s, read {:.0} MB/s, two plain copies {:.0} MB/s",
            mb / write_s,
            mb / write_reused_s,
            mb / shared_s,
            mb / read_s,
            mb / copy_s
        );
    }

    // ----- property tests -----

    #[derive(Debug, Clone)]
    struct TestMessage {
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: Vec<u8>,
    }

    fn arb_message() -> impl Strategy<Value = TestMessage> {
        let size = prop_oneof![
            8 => 0usize..300,
            3 => 300usize..5_000,
            1 => 5_000usize..200_000,
        ];
        let timestamp = prop_oneof![any::<u32>(), 0xFF_FFF0u32..0x100_0010, 0u32..1000,];
        (
            prop_oneof![2u32..=10, 60u32..=70, 310u32..=330, 65590u32..=65599],
            timestamp,
            // Not 1 or 2: those are interpreted by the reader.
            prop_oneof![3u8..=255],
            any::<u32>(),
            size,
            any::<u8>(),
        )
            .prop_map(
                |(csid, timestamp, type_id, stream_id, size, seed)| TestMessage {
                    csid,
                    timestamp,
                    type_id,
                    stream_id,
                    payload: (0..size)
                        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                        .collect(),
                },
            )
    }

    /// Splits a chunked message (type-0 first chunk, type-3 continuations) into its chunks.
    fn split_chunks(m: &TestMessage, bytes: &[u8], chunk_size: usize) -> Vec<Vec<u8>> {
        let basic = match m.csid {
            2..=63 => 1,
            64..=319 => 2,
            _ => 3,
        };
        let ext = if m.timestamp >= 0xFF_FFFF { 4 } else { 0 };
        let mut chunks = Vec::new();
        let mut pos = 0;
        let mut remaining = m.payload.len();
        let first = basic + 11 + ext + remaining.min(chunk_size);
        chunks.push(bytes[pos..pos + first].to_vec());
        pos += first;
        remaining -= remaining.min(chunk_size);
        while remaining > 0 {
            let len = basic + ext + remaining.min(chunk_size);
            chunks.push(bytes[pos..pos + len].to_vec());
            pos += len;
            remaining -= remaining.min(chunk_size);
        }
        assert_eq!(pos, bytes.len());
        chunks
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Writer → reader round trip with chunks of different csids interleaved in random
        /// order and the byte stream fed in random splits.
        #[test]
        fn round_trip_interleaved_and_split(
            messages in prop::collection::vec(arb_message(), 1..6),
            chunk_size in prop_oneof![1u32..=16, 17u32..=4096, 4097u32..=70_000],
            order_seed in any::<u64>(),
            splits in prop::collection::vec(1usize..5000, 1..50),
        ) {
            // Messages on the same csid must stay in order; different csids interleave.
            let mut queues: Vec<(u32, std::collections::VecDeque<Vec<u8>>)> = Vec::new();
            for m in &messages {
                let mut out = BytesMut::new();
                chunk_message(&mut out, m.csid, m.timestamp, m.type_id, m.stream_id, &m.payload, chunk_size).unwrap();
                let chunks = split_chunks(m, &out, chunk_size as usize);
                match queues.iter_mut().find(|(c, _)| *c == m.csid) {
                    Some((_, q)) => q.extend(chunks),
                    None => queues.push((m.csid, chunks.into())),
                }
            }
            let mut stream = set_chunk_size_msg(chunk_size);
            let mut rng = order_seed;
            loop {
                let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].1.is_empty()).collect();
                if live.is_empty() { break; }
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let pick = live[(rng >> 33) as usize % live.len()];
                if let Some(chunk) = queues[pick].1.pop_front() {
                    stream.extend_from_slice(&chunk);
                }
            }

            let mut r = reader();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < stream.len() {
                let step = splits[i % splits.len()].min(stream.len() - pos);
                r.push(&stream[pos..pos + step]);
                pos += step;
                i += 1;
                got.extend(drain(&mut r).unwrap());
            }
            prop_assert_eq!(got.len(), messages.len() + 1);
            prop_assert_eq!(r.partial_bytes(), 0);
            // Per csid, messages arrive in the order sent.
            for (csid, _) in &queues {
                let sent: Vec<&TestMessage> = messages.iter().filter(|m| m.csid == *csid).collect();
                let received: Vec<&RawMessage> = got.iter().filter(|m| m.csid == *csid && m.type_id != 1).collect();
                prop_assert_eq!(sent.len(), received.len());
                for (s, g) in sent.iter().zip(received) {
                    prop_assert_eq!(s.timestamp, g.timestamp);
                    prop_assert_eq!(s.type_id, g.type_id);
                    prop_assert_eq!(s.stream_id, g.stream_id);
                    prop_assert!(s.payload.as_slice() == g.payload.as_ref());
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_respect_limits(
            bytes in prop::collection::vec(any::<u8>(), 0..4096),
            splits in prop::collection::vec(1usize..64, 1..16),
        ) {
            let limits = ReaderLimits {
                max_message_length: 1024,
                max_partial_bytes: 2048,
                max_chunk_streams: 8,
                max_chunk_size: 4096,
            };
            let mut r = ChunkReader::new(limits);
            let mut pos = 0;
            let mut i = 0;
            'feed: while pos < bytes.len() {
                let step = splits[i % splits.len()].min(bytes.len() - pos);
                r.push(&bytes[pos..pos + step]);
                pos += step;
                i += 1;
                loop {
                    match r.next_message() {
                        Ok(Some(m)) => prop_assert!(m.payload.len() <= 1024),
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
                prop_assert!(r.partial_bytes() <= 2048);
                prop_assert!(r.streams.len() <= 8);
                prop_assert!(r.chunk_size() <= 4096);
            }
        }

        #[test]
        fn header_shaped_garbage_never_panics(
            parts in prop::collection::vec(
                prop_oneof![
                    Just(vec![0x02u8, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1]),
                    Just(vec![0xC4u8]),
                    Just(vec![0x44u8, 0xFF, 0xFF, 0xFF, 0, 1, 0, 9]),
                    Just(vec![0x84u8, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]),
                    Just(vec![0x04u8, 0xFF, 0xFF, 0xFF, 0, 0, 200, 9, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]),
                    prop::collection::vec(any::<u8>(), 0..40),
                ],
                0..40)
        ) {
            let bytes: Vec<u8> = parts.concat();
            let _ = read_all(&bytes);
            let _ = read_bytewise(&bytes);
        }
    }
}
