//! Outbound chunking: turns messages into RTMP chunks, built for fan-out.
//!
//! Every message is written as one type-0 chunk (absolute timestamp, length, type, message
//! stream id) followed by type-3 continuation chunks. A type-0 header costs 11 bytes where a
//! type-1/2/3 header would cost 0–7, but it makes each chunked message self-contained: its bytes
//! do not depend on what was sent before on that chunk stream. So a media message can be
//! serialized **once** into a [`ChunkedMessage`] and sent to every player by cloning its
//! [`Bytes`] (a reference-count increment), as long as the players use the same outbound
//! chunk size and the message has the same csid, timestamp and stream id for all of them. At
//! 30 fps video plus ~47 audio frames/s that is ~850 bytes/s per player: negligible next to
//! the media, and it removes a per-player serialization and copy per message.
//!
//! Extended timestamps: when the timestamp is ≥ 0xFFFFFF the 24-bit field holds 0xFFFFFF and
//! the 4-byte timestamp follows the type-0 header **and every continuation chunk's basic
//! header** (as the spec, FFmpeg and librtmp expect).
//!
//! [`ChunkWriter`] is the per-connection writer for everything that is not shared: protocol
//! control, user control events and command replies. It remembers the outbound chunk size.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::chunk::{
    DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP_MARKER, MAX_PROTOCOL_CHUNK_SIZE,
    MAX_PROTOCOL_MESSAGE_LENGTH,
};

/// Chunk stream for protocol control messages (types 1–6); fixed by the spec.
pub const CSID_PROTOCOL_CONTROL: u32 = 2;
/// Chunk stream the server uses for command replies (`_result`, `onStatus`, …).
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream the server uses for audio.
pub const CSID_AUDIO: u32 = 4;
/// Chunk stream the server uses for data messages (`onMetaData`, `|RtmpSampleAccess`).
pub const CSID_DATA: u32 = 5;
/// Chunk stream the server uses for video.
pub const CSID_VIDEO: u32 = 6;

/// Smallest and largest chunk stream ids the basic header can carry.
pub const MIN_CSID: u32 = 2;
pub const MAX_CSID: u32 = 65_599;

/// Outbound chunk size the server should announce to players (and use for every
/// [`ChunkedMessage`]): big enough that most audio and many video frames fit in one chunk
/// (fewer headers, fewer syscalls), small enough that a keyframe does not block audio on the
/// same connection for long. FFmpeg and OBS use 4096 outbound; nginx-rtmp and SRS use 60000.
pub const DEFAULT_OUTBOUND_CHUNK_SIZE: u32 = 4096;

/// Why a message cannot be chunked (these come from the server's own arguments, never from
/// the network; an error means a bug in the caller).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WriteError {
    #[error("chunk stream id {0} is outside 2..=65599")]
    InvalidChunkStreamId(u32),
    #[error("chunk size {0} is outside 1..=0x7FFFFFFF")]
    InvalidChunkSize(u32),
    #[error("message of {0} bytes exceeds the 24-bit length field")]
    MessageTooLong(usize),
}

fn basic_header_len(csid: u32) -> Result<usize, WriteError> {
    match csid {
        2..=63 => Ok(1),
        64..=319 => Ok(2),
        320..=MAX_CSID => Ok(3),
        _ => Err(WriteError::InvalidChunkStreamId(csid)),
    }
}

/// Writes the basic header. `csid` must have been validated by `basic_header_len`.
fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let fmt_bits = fmt << 6;
    match csid {
        2..=63 => out.put_u8(fmt_bits | (csid as u8)),
        64..=319 => {
            out.put_u8(fmt_bits);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let rest = csid.saturating_sub(64);
            out.put_u8(fmt_bits | 1);
            out.put_u8((rest & 0xFF) as u8);
            out.put_u8(((rest >> 8) & 0xFF) as u8);
        }
    }
}

fn put_u24(out: &mut BytesMut, value: u32) {
    let b = value.to_be_bytes();
    out.put_slice(&[b[1], b[2], b[3]]);
}

/// Exact number of bytes `chunk_message` writes.
pub fn chunked_len(
    csid: u32,
    timestamp: u32,
    payload_len: usize,
    chunk_size: u32,
) -> Result<usize, WriteError> {
    let basic = basic_header_len(csid)?;
    if chunk_size == 0 || chunk_size > MAX_PROTOCOL_CHUNK_SIZE {
        return Err(WriteError::InvalidChunkSize(chunk_size));
    }
    if payload_len > MAX_PROTOCOL_MESSAGE_LENGTH as usize {
        return Err(WriteError::MessageTooLong(payload_len));
    }
    let ext = if timestamp >= EXTENDED_TIMESTAMP_MARKER {
        4
    } else {
        0
    };
    let chunk_size = chunk_size as usize;
    let continuations = payload_len.saturating_sub(1) / chunk_size;
    // All terms are small: payload ≤ 16 MiB, so no overflow is possible; saturate anyway.
    Ok(basic
        .saturating_add(11 + ext)
        .saturating_add(payload_len)
        .saturating_add(continuations.saturating_mul(basic + ext)))
}

/// Appends `payload` as a type-0 chunk plus type-3 continuations (see the module docs).
pub fn chunk_message(
    out: &mut BytesMut,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: u32,
) -> Result<(), WriteError> {
    let total = chunked_len(csid, timestamp, payload.len(), chunk_size)?;
    out.reserve(total);
    let extended = timestamp >= EXTENDED_TIMESTAMP_MARKER;

    put_basic_header(out, 0, csid);
    put_u24(out, timestamp.min(EXTENDED_TIMESTAMP_MARKER));
    put_u24(out, payload.len() as u32);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
    let mut chunks = payload.chunks(chunk_size as usize);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for chunk in chunks {
        put_basic_header(out, 3, csid);
        if extended {
            out.put_u32(timestamp);
        }
        out.put_slice(chunk);
    }
    Ok(())
}

/// A message chunked once for a given chunk size, shareable by every player that uses that
/// chunk size: send `message.bytes().clone()` to each (no copy). See the module docs for
/// when sharing is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedMessage {
    bytes: Bytes,
    chunk_size: u32,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload_len: usize,
}

impl ChunkedMessage {
    pub fn new(
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
        chunk_size: u32,
    ) -> Result<Self, WriteError> {
        let mut out = BytesMut::new();
        chunk_message(
            &mut out, csid, timestamp, type_id, stream_id, payload, chunk_size,
        )?;
        Ok(Self {
            bytes: out.freeze(),
            chunk_size,
            csid,
            timestamp,
            type_id,
            stream_id,
            payload_len: payload.len(),
        })
    }

    /// The chunked bytes, ready for the socket. Clone the `Bytes` to share it.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Bytes on the wire (headers included).
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub fn csid(&self) -> u32 {
        self.csid
    }

    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    pub fn type_id(&self) -> u8 {
        self.type_id
    }

    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    pub fn payload_len(&self) -> usize {
        self.payload_len
    }
}

/// Per-connection writer for non-shared messages: it owns an output buffer and the outbound
/// chunk size. The driver takes the pending bytes with [`ChunkWriter::take`] and writes them,
/// interleaving shared [`ChunkedMessage`]s between takes as it likes (every message is
/// self-contained, so order between whole messages is the only constraint).
#[derive(Debug)]
pub struct ChunkWriter {
    chunk_size: u32,
    out: BytesMut,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    /// A writer at the protocol's initial chunk size (128) until [`Self::set_chunk_size`].
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            out: BytesMut::new(),
        }
    }

    /// Outbound chunk size in force.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Queues a Set Chunk Size message (sent at the old size) and switches to `size`.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), WriteError> {
        if size == 0 || size > MAX_PROTOCOL_CHUNK_SIZE {
            return Err(WriteError::InvalidChunkSize(size));
        }
        self.write(
            CSID_PROTOCOL_CONTROL,
            0,
            super::message::type_id::SET_CHUNK_SIZE,
            0,
            &size.to_be_bytes(),
        )?;
        self.chunk_size = size;
        Ok(())
    }

    /// Queues any message at the current chunk size.
    pub fn write(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), WriteError> {
        chunk_message(
            &mut self.out,
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
            self.chunk_size,
        )
    }

    /// Queues an AMF0 command (type 20) on the command chunk stream.
    pub fn write_command(&mut self, stream_id: u32, amf0_payload: &[u8]) -> Result<(), WriteError> {
        self.write(
            CSID_COMMAND,
            0,
            super::message::type_id::COMMAND_AMF0,
            stream_id,
            amf0_payload,
        )
    }

    /// Queues an AMF0 data message (type 18) on the data chunk stream.
    pub fn write_data(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        amf0_payload: &[u8],
    ) -> Result<(), WriteError> {
        self.write(
            CSID_DATA,
            timestamp,
            super::message::type_id::DATA_AMF0,
            stream_id,
            amf0_payload,
        )
    }

    /// Queues a protocol control message or user control event.
    pub fn write_control(
        &mut self,
        control: &super::message::ControlMessage,
    ) -> Result<(), WriteError> {
        let mut payload = BytesMut::with_capacity(10);
        let type_id = control.encode_payload(&mut payload);
        self.write(CSID_PROTOCOL_CONTROL, 0, type_id, 0, &payload)
    }

    /// Bytes queued and not yet taken.
    pub fn pending_len(&self) -> usize {
        self.out.len()
    }

    /// Takes everything queued so far.
    pub fn take(&mut self) -> Bytes {
        self.out.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_chunk_layout() {
        let mut out = BytesMut::new();
        chunk_message(&mut out, 4, 0x010203, 8, 1, b"abc", 128).unwrap();
        assert_eq!(
            out.as_ref(),
            &[4, 0x01, 0x02, 0x03, 0, 0, 3, 8, 1, 0, 0, 0, b'a', b'b', b'c']
        );
    }

    #[test]
    fn continuation_layout_with_extended_timestamp() {
        let mut out = BytesMut::new();
        let ts = 0x0100_0000u32;
        chunk_message(&mut out, 6, ts, 9, 1, &[7u8; 5], 2).unwrap();
        let ext = ts.to_be_bytes();
        let mut expected = vec![6, 0xFF, 0xFF, 0xFF, 0, 0, 5, 9, 1, 0, 0, 0];
        expected.extend_from_slice(&ext);
        expected.extend_from_slice(&[7, 7]);
        for tail in [&[7u8, 7][..], &[7u8][..]] {
            expected.push(0xC6);
            expected.extend_from_slice(&ext);
            expected.extend_from_slice(tail);
        }
        assert_eq!(out.as_ref(), expected.as_slice());
        assert_eq!(chunked_len(6, ts, 5, 2).unwrap(), expected.len());
    }

    #[test]
    fn timestamp_exactly_ffffff_is_extended() {
        let mut out = BytesMut::new();
        chunk_message(&mut out, 4, 0xFF_FFFF, 8, 1, b"a", 128).unwrap();
        assert_eq!(out.len(), 1 + 11 + 4 + 1);
        let mut out = BytesMut::new();
        chunk_message(&mut out, 4, 0xFF_FFFE, 8, 1, b"a", 128).unwrap();
        assert_eq!(out.len(), 1 + 11 + 1);
    }

    #[test]
    fn lengths_match_for_many_shapes() {
        for csid in [2, 63, 64, 319, 320, 65599] {
            for ts in [0, 0xFF_FFFF, u32::MAX] {
                for (len, cs) in [
                    (0usize, 1u32),
                    (1, 1),
                    (300, 128),
                    (256, 128),
                    (10_000, 4096),
                ] {
                    let mut out = BytesMut::new();
                    chunk_message(&mut out, csid, ts, 9, 1, &vec![0; len], cs).unwrap();
                    assert_eq!(out.len(), chunked_len(csid, ts, len, cs).unwrap());
                }
            }
        }
    }

    #[test]
    fn invalid_arguments_are_errors() {
        let mut out = BytesMut::new();
        assert_eq!(
            chunk_message(&mut out, 1, 0, 8, 1, b"", 128),
            Err(WriteError::InvalidChunkStreamId(1))
        );
        assert_eq!(
            chunk_message(&mut out, 65600, 0, 8, 1, b"", 128),
            Err(WriteError::InvalidChunkStreamId(65600))
        );
        assert_eq!(
            chunk_message(&mut out, 4, 0, 8, 1, b"", 0),
            Err(WriteError::InvalidChunkSize(0))
        );
        assert_eq!(
            chunk_message(&mut out, 4, 0, 8, 1, &vec![0; 0x100_0000], 128),
            Err(WriteError::MessageTooLong(0x100_0000))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn shared_message_is_identical_and_cheap_to_clone() {
        let payload = vec![3u8; 10_000];
        let m = ChunkedMessage::new(CSID_VIDEO, 1234, 9, 1, &payload, 4096).unwrap();
        let a = m.bytes().clone();
        let b = m.bytes().clone();
        assert_eq!(a.as_ptr(), b.as_ptr());
        let mut out = BytesMut::new();
        chunk_message(&mut out, CSID_VIDEO, 1234, 9, 1, &payload, 4096).unwrap();
        assert_eq!(a.as_ref(), out.as_ref());
        assert_eq!(m.payload_len(), 10_000);
        assert_eq!(m.wire_len(), 10_000 + 12 + 2);
    }

    #[test]
    fn chunk_writer_switches_size_after_announcing_it() {
        let mut w = ChunkWriter::new();
        w.set_chunk_size(4096).unwrap();
        w.write_command(0, &[5u8; 200]).unwrap();
        let bytes = w.take();
        let mut reader = crate::protocol::chunk::ChunkReader::new(Default::default());
        reader.push(&bytes);
        let first = reader.next_message().unwrap().unwrap();
        assert_eq!(first.type_id, 1);
        let second = reader.next_message().unwrap().unwrap();
        assert_eq!(second.payload.len(), 200);
        // One chunk: 12-byte header + 200 bytes.
        assert_eq!(bytes.len(), 16 + 212);
        assert_eq!(w.pending_len(), 0);
        assert!(w.set_chunk_size(0).is_err());
        assert!(w.set_chunk_size(0x8000_0000).is_err());
    }
}
