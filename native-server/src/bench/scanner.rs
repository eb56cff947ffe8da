//! A minimal RTMP chunk-stream scanner for the load generator's players.
//!
//! A player in a benchmark does not need the media, only to know when each message ends, its
//! timestamp, its length and its first two payload bytes (FLV frame type and AVC packet type).
//! [`ChunkScanner`] follows chunk headers (all four forms, per-chunk-stream state, extended
//! timestamps, Set Chunk Size and Abort) and skips payload bytes without copying them, so a
//! player can read into a buffer shared by all players of its thread and keep only the few
//! header bytes a read may cut (at most [`MAX_HEADER_LEN`]). Messages other than audio and
//! video — control, commands, data — are small; their payload is collected (up to
//! [`MAX_COLLECTED_BYTES`]) and handed out whole.
//!
//! Timestamp rules are the project codec's ([`crate::protocol::chunk`]): type 0 is absolute,
//! types 1 and 2 add a delta, a type-3 header starting a new message adds the previous header's
//! timestamp field. It is not a validating reader: the server under test is trusted, and an
//! inconsistency (a header with no previous header, a new message while one is incomplete) is
//! an error that ends the player.

use thiserror::Error;

/// Longest chunk header: 3-byte basic header, 11-byte type-0 header, 4-byte extended timestamp.
pub const MAX_HEADER_LEN: usize = 18;

/// Most payload bytes collected of one non-media message (a server's `onMetaData` or
/// `onStatus` is well under 1 KiB; the rest of a bigger one is skipped).
pub const MAX_COLLECTED_BYTES: usize = 64 * 1024;

/// Chunk streams one connection may use (servers use 3–8).
const MAX_CHUNK_STREAMS: usize = 64;

const TYPE_SET_CHUNK_SIZE: u8 = 1;
const TYPE_ABORT: u8 = 2;
pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;

/// Why the stream cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    #[error("chunk stream {csid}: type {fmt} header without a previous header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("chunk stream {csid}: new message while the previous one is incomplete")]
    InterruptedMessage { csid: u32 },
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    #[error("invalid Set Chunk Size {0}")]
    BadChunkSize(u32),
}

/// A complete audio or video message: everything a player measures about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaMessage {
    pub type_id: u8,
    pub timestamp: u32,
    pub stream_id: u32,
    /// Payload length (the FLV tag body).
    pub len: u32,
    /// The first payload bytes (fewer when the payload is shorter).
    pub head: [u8; 2],
    pub head_len: u8,
}

/// What [`ChunkScanner::feed`] reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Media(MediaMessage),
    /// A complete non-media message; `payload` is cut at [`MAX_COLLECTED_BYTES`].
    Message {
        type_id: u8,
        timestamp: u32,
        stream_id: u32,
        payload: &'a [u8],
    },
}

#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    timestamp_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Payload bytes of the message in progress still to come (0: none in progress).
    left: u32,
    in_progress: bool,
    head: [u8; 2],
    head_len: u8,
    body: Vec<u8>,
}

/// Follows an RTMP chunk stream (after the handshake). See the module docs.
#[derive(Debug)]
pub struct ChunkScanner {
    chunk_size: u32,
    partial: [u8; MAX_HEADER_LEN],
    partial_len: usize,
    /// Chunk stream whose chunk payload is being consumed, and its bytes left in this chunk.
    current: usize,
    chunk_left: u32,
    streams: Vec<ChunkStream>,
    bytes_received: u64,
}

impl Default for ChunkScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkScanner {
    pub fn new() -> Self {
        ChunkScanner {
            chunk_size: 128,
            partial: [0; MAX_HEADER_LEN],
            partial_len: 0,
            current: 0,
            chunk_left: 0,
            streams: Vec::new(),
            bytes_received: 0,
        }
    }

    /// Bytes fed so far (for Acknowledgements).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// The inbound chunk size in force.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Scans `data` (the next bytes of the stream), calling `on_event` for each message
    /// completed in it.
    pub fn feed(
        &mut self,
        data: &[u8],
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<(), ScanError> {
        self.bytes_received += data.len() as u64;
        let mut pos = 0;
        while pos < data.len() {
            if self.chunk_left > 0 {
                let take = (self.chunk_left as usize).min(data.len() - pos);
                let bytes = data.get(pos..pos + take).unwrap_or(&[]);
                pos += take;
                self.chunk_left -= take as u32;
                let index = self.current;
                let done = match self.streams.get_mut(index) {
                    Some(st) => {
                        st.take_payload(bytes);
                        st.left == 0
                    }
                    None => false,
                };
                if done {
                    self.complete(index, on_event)?;
                }
                continue;
            }
            // A header: possibly completing one cut by the previous read.
            let consumed = if self.partial_len > 0 {
                let had = self.partial_len;
                let take = (MAX_HEADER_LEN - had).min(data.len() - pos);
                let mut buf = self.partial;
                if let (Some(dst), Some(src)) =
                    (buf.get_mut(had..had + take), data.get(pos..pos + take))
                {
                    dst.copy_from_slice(src);
                }
                match self.parse_header(buf.get(..had + take).unwrap_or(&[]))? {
                    Some(n) => {
                        self.partial_len = 0;
                        n - had
                    }
                    None => {
                        self.partial = buf;
                        self.partial_len = had + take;
                        take
                    }
                }
            } else {
                let rest = data.get(pos..).unwrap_or(&[]);
                match self.parse_header(rest)? {
                    Some(n) => n,
                    None => {
                        if let Some(dst) = self.partial.get_mut(..rest.len()) {
                            dst.copy_from_slice(rest);
                        }
                        self.partial_len = rest.len();
                        rest.len()
                    }
                }
            };
            pos += consumed;
            // An empty message is complete with its header.
            if self.partial_len == 0 && self.chunk_left == 0 {
                let index = self.current;
                if self
                    .streams
                    .get(index)
                    .is_some_and(|s| s.in_progress && s.left == 0)
                {
                    self.complete(index, on_event)?;
                }
            }
        }
        Ok(())
    }

    fn stream_index(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }

    /// Parses and applies the header at the start of `buf`; `None` if `buf` is too short
    /// (nothing is changed then).
    fn parse_header(&mut self, buf: &[u8]) -> Result<Option<usize>, ScanError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut at) = match b0 & 0x3F {
            0 => match buf.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&lo), Some(&hi)) => (64 + u32::from(lo) + 256 * u32::from(hi), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let fields_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(fields) = buf.get(at..at + fields_len) else {
            return Ok(None);
        };
        at += fields_len;
        let existing = self.stream_index(csid);
        if fmt != 0 && existing.is_none() {
            return Err(ScanError::NoPreviousHeader { csid, fmt });
        }
        let u24 = |i: usize| {
            fields
                .get(i..i + 3)
                .map_or(0, |b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
        };
        let ext = |at: usize| {
            buf.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };

        if fmt == 3 {
            let index = existing.unwrap_or(0);
            let Some(st) = self.streams.get(index) else {
                return Err(ScanError::NoPreviousHeader { csid, fmt });
            };
            let extended = st.extended;
            let mut ts_field = st.timestamp_field;
            if extended {
                // Repeated after type-3 headers (spec, FFmpeg, librtmp, our server).
                match ext(at) {
                    Some(v) => ts_field = v,
                    None => return Ok(None),
                }
                at += 4;
            }
            let Some(st) = self.streams.get_mut(index) else {
                return Ok(None);
            };
            if !st.in_progress {
                st.timestamp = st.timestamp.wrapping_add(ts_field);
                st.timestamp_field = ts_field;
                st.begin();
            }
            self.current = index;
            self.chunk_left = st.left.min(self.chunk_size);
            return Ok(Some(at));
        }

        let field = u24(0);
        let extended = field == EXTENDED_TIMESTAMP;
        let ts_field = if extended {
            let Some(v) = ext(at) else {
                return Ok(None);
            };
            at += 4;
            v
        } else {
            field
        };
        let index = match existing {
            Some(i) => i,
            None => {
                if self.streams.len() >= MAX_CHUNK_STREAMS {
                    return Err(ScanError::TooManyChunkStreams);
                }
                self.streams.push(ChunkStream {
                    csid,
                    timestamp: 0,
                    timestamp_field: 0,
                    extended: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    left: 0,
                    in_progress: false,
                    head: [0; 2],
                    head_len: 0,
                    body: Vec::new(),
                });
                self.streams.len() - 1
            }
        };
        let Some(st) = self.streams.get_mut(index) else {
            return Ok(None);
        };
        if st.in_progress {
            return Err(ScanError::InterruptedMessage { csid });
        }
        st.timestamp = if fmt == 0 {
            ts_field
        } else {
            st.timestamp.wrapping_add(ts_field)
        };
        st.timestamp_field = ts_field;
        st.extended = extended;
        if fmt <= 1 {
            st.length = u24(3);
            st.type_id = fields.get(6).copied().unwrap_or(0);
        }
        if fmt == 0 {
            st.stream_id = fields
                .get(7..11)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
        st.begin();
        self.current = index;
        self.chunk_left = st.left.min(self.chunk_size);
        Ok(Some(at))
    }

    /// Reports the completed message of stream `index` and applies Set Chunk Size / Abort.
    fn complete(
        &mut self,
        index: usize,
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<(), ScanError> {
        let Some(st) = self.streams.get_mut(index) else {
            return Ok(());
        };
        st.in_progress = false;
        if st.type_id == TYPE_AUDIO || st.type_id == TYPE_VIDEO {
            on_event(Event::Media(MediaMessage {
                type_id: st.type_id,
                timestamp: st.timestamp,
                stream_id: st.stream_id,
                len: st.length,
                head: st.head,
                head_len: st.head_len,
            }));
            return Ok(());
        }
        let word = st
            .body
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let type_id = st.type_id;
        on_event(Event::Message {
            type_id,
            timestamp: st.timestamp,
            stream_id: st.stream_id,
            payload: &st.body,
        });
        st.body.clear();
        match (type_id, word) {
            (TYPE_SET_CHUNK_SIZE, Some(size)) => {
                let size = size & 0x7FFF_FFFF;
                if size == 0 {
                    return Err(ScanError::BadChunkSize(size));
                }
                self.chunk_size = size;
            }
            (TYPE_ABORT, Some(csid)) => {
                if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
                    s.in_progress = false;
                    s.left = 0;
                    s.body.clear();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl ChunkStream {
    /// A new message starts on this chunk stream.
    fn begin(&mut self) {
        self.left = self.length;
        self.in_progress = true;
        self.head = [0; 2];
        self.head_len = 0;
        self.body.clear();
    }

    fn take_payload(&mut self, bytes: &[u8]) {
        self.left = self.left.saturating_sub(bytes.len() as u32);
        let media = self.type_id == TYPE_AUDIO || self.type_id == TYPE_VIDEO;
        if media {
            for &b in bytes.iter().take(2 - usize::from(self.head_len.min(2))) {
                if let Some(slot) = self.head.get_mut(usize::from(self.head_len)) {
                    *slot = b;
                }
                self.head_len += 1;
            }
        } else {
            let room = MAX_COLLECTED_BYTES.saturating_sub(self.body.len());
            self.body
                .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or(&[]));
        }
    }
}

/// What a video message is, from its first two payload bytes (legacy FLV and Enhanced RTMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoKind {
    /// Decoder configuration (AVC/HEVC sequence header, E-RTMP SequenceStart).
    SequenceHeader,
    /// A coded frame.
    Frame { keyframe: bool },
    /// Anything else (end of sequence, command frames, metadata).
    Other,
}

/// Classifies a video tag body by its first bytes.
pub fn classify_video(head: &[u8]) -> VideoKind {
    let Some(&b0) = head.first() else {
        return VideoKind::Other;
    };
    let frame_type = (b0 >> 4) & 0x07;
    if frame_type == 5 {
        return VideoKind::Other; // video info / command frame
    }
    let keyframe = frame_type == 1;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: the packet type is the low nibble.
        return match b0 & 0x0F {
            0 => VideoKind::SequenceHeader,
            1 | 3 => VideoKind::Frame { keyframe },
            _ => VideoKind::Other,
        };
    }
    match b0 & 0x0F {
        // AVC and the legacy HEVC id: the second byte is the packet type.
        7 | 12 => match head.get(1) {
            Some(0) => VideoKind::SequenceHeader,
            Some(1) => VideoKind::Frame { keyframe },
            _ => VideoKind::Other,
        },
        _ => VideoKind::Frame { keyframe },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::writer::{chunk_message, ChunkWriter};
    use bytes::BytesMut;

    /// Everything `feed` reports, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Media(MediaMessage),
        Message(u8, u32, Vec<u8>),
    }

    fn scan_in_pieces(bytes: &[u8], piece: usize) -> Vec<Owned> {
        let mut scanner = ChunkScanner::new();
        let mut out = Vec::new();
        for part in bytes.chunks(piece.max(1)) {
            scanner
                .feed(part, &mut |e| match e {
                    Event::Media(m) => out.push(Owned::Media(m)),
                    Event::Message {
                        type_id,
                        timestamp,
                        payload,
                        ..
                    } => out.push(Owned::Message(type_id, timestamp, payload.to_vec())),
                })
                .expect("scan");
        }
        assert_eq!(scanner.bytes_received(), bytes.len() as u64);
        out
    }

    /// A server-like stream: Set Chunk Size 4096, a command, media with type-0 headers
    /// (some longer than a chunk), one with an extended timestamp.
    fn sample_stream() -> (Vec<u8>, Vec<Owned>) {
        let mut w = ChunkWriter::new();
        w.set_chunk_size(4096).unwrap();
        w.write_command(0, b"status-ish").unwrap();
        let mut bytes = w.take().to_vec();
        let mut expected = vec![
            Owned::Message(1, 0, 4096u32.to_be_bytes().to_vec()),
            Owned::Message(20, 0, b"status-ish".to_vec()),
        ];
        for (i, (ts, len, type_id)) in [
            (0u32, 10_000usize, 9u8),
            (33, 300, 8),
            (66, 4096, 9),
            (100, 0, 8),
            (0x0100_0000, 9000, 9),
        ]
        .into_iter()
        .enumerate()
        {
            let mut payload = vec![i as u8; len];
            if let Some(b) = payload.get_mut(0) {
                *b = 0x17;
            }
            let mut out = BytesMut::new();
            let csid = if type_id == 9 { 6 } else { 4 };
            chunk_message(&mut out, csid, ts, type_id, 1, &payload, 4096).unwrap();
            bytes.extend_from_slice(&out);
            let head_len = len.min(2) as u8;
            let mut head = [0u8; 2];
            for (d, s) in head.iter_mut().zip(&payload) {
                *d = *s;
            }
            expected.push(Owned::Media(MediaMessage {
                type_id,
                timestamp: ts,
                stream_id: 1,
                len: len as u32,
                head,
                head_len,
            }));
        }
        (bytes, expected)
    }

    #[test]
    fn any_split_gives_the_same_messages() {
        let (bytes, expected) = sample_stream();
        for piece in [1, 2, 3, 7, 17, 18, 19, 100, 4095, 4096, 4097, bytes.len()] {
            assert_eq!(scan_in_pieces(&bytes, piece), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn compressed_headers_add_deltas() {
        // nginx-rtmp style: a type-0 header, then type-1 and type-2 deltas, then a type-3 new
        // message reusing the last delta, all at chunk size 128.
        let mut b = vec![0x06, 0, 0, 100, 0, 0, 3, 9, 1, 0, 0, 0, 0x27, 1, 9];
        b.extend_from_slice(&[0x46, 0, 0, 33, 0, 0, 2, 9, 0x27, 1]); // type 1: +33, len 2
        b.extend_from_slice(&[0x86, 0, 0, 34, 0x17, 1]); // type 2: +34
        b.extend_from_slice(&[0xC6, 0x27, 1]); // type 3: +34 again
        let got = scan_in_pieces(&b, 1);
        let ts: Vec<u32> = got
            .iter()
            .map(|e| match e {
                Owned::Media(m) => m.timestamp,
                Owned::Message(..) => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(ts, vec![100, 133, 167, 201]);
        match got.get(2) {
            Some(Owned::Media(m)) => {
                assert_eq!(classify_video(&m.head), VideoKind::Frame { keyframe: true })
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_longer_than_a_chunk_at_the_default_size() {
        let payload = vec![0x27u8; 1000];
        let mut out = BytesMut::new();
        chunk_message(&mut out, 70, 5, 9, 1, &payload, 128).unwrap();
        let got = scan_in_pieces(&out, 5);
        assert_eq!(got.len(), 1);
        match &got[0] {
            Owned::Media(m) => assert_eq!((m.len, m.timestamp), (1000, 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inconsistent_streams_are_errors() {
        let mut s = ChunkScanner::new();
        assert_eq!(
            s.feed(&[0x43, 0, 0, 0, 0, 0, 1, 9], &mut |_| {}),
            Err(ScanError::NoPreviousHeader { csid: 3, fmt: 1 })
        );
        let mut s = ChunkScanner::new();
        // A 200-byte message: its first 128-byte chunk, then a new type-0 header on its csid.
        let mut two_starts = vec![0x06, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0];
        two_starts.extend_from_slice(&[0x27; 128]);
        two_starts.extend_from_slice(&[0x06, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0]);
        assert_eq!(
            s.feed(&two_starts, &mut |_| {}),
            Err(ScanError::InterruptedMessage { csid: 6 })
        );
    }

    #[test]
    fn classifies_legacy_and_enhanced_video() {
        assert_eq!(classify_video(&[0x17, 0]), VideoKind::SequenceHeader);
        assert_eq!(
            classify_video(&[0x17, 1]),
            VideoKind::Frame { keyframe: true }
        );
        assert_eq!(
            classify_video(&[0x27, 1]),
            VideoKind::Frame { keyframe: false }
        );
        assert_eq!(classify_video(&[0x17, 2]), VideoKind::Other);
        assert_eq!(classify_video(&[0x52, 0]), VideoKind::Other);
        assert_eq!(classify_video(&[0x12]), VideoKind::Frame { keyframe: true });
        assert_eq!(classify_video(&[0x90]), VideoKind::SequenceHeader);
        assert_eq!(classify_video(&[0x91]), VideoKind::Frame { keyframe: true });
        assert_eq!(
            classify_video(&[0xA3]),
            VideoKind::Frame { keyframe: false }
        );
        assert_eq!(classify_video(&[]), VideoKind::Other);
    }
}
