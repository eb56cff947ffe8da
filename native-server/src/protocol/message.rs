//! Typed RTMP messages: what a [`RawMessage`] means, by message type id, and the encoders for
//! the control messages and user control events the server sends.
//!
//! Media (audio 8, video 9) stays as raw [`Bytes`] for zero-copy relaying; [`super::flv`]
//! reads their tag headers. Commands (20, and 17 with its AMF0 format byte) are parsed into
//! [`Command`]; data messages (18, and 15) stay raw AMF0 (see
//! [`super::command::parse_data_message`]) because the relay mostly forwards them.
//!
//! Aggregate messages (22) are kept whole as [`Message::Aggregate`]; [`split_aggregate`]
//! splits one into its sub-messages (bounds-checked, zero-copy). Publishers we know of
//! (OBS, FFmpeg, GStreamer) never send them, so the server may also simply refuse them.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::amf0::Amf0Limits;
use super::chunk::{parse_abort, parse_set_chunk_size, ChunkError, RawMessage};
use super::command::{parse_command, Command, CommandError};

/// RTMP message type ids.
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// User control event types (RTMP spec 7.1.7).
pub mod user_control_type {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// Largest number of sub-messages [`split_aggregate`] returns (each needs ≥ 11 header bytes,
/// so this only matters for pathological payloads; real aggregates hold a few frames).
pub const MAX_AGGREGATE_SUB_MESSAGES: usize = 4096;

/// Why a message is malformed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MessageError {
    #[error(transparent)]
    Control(#[from] ChunkError),
    #[error("message type {type_id}: payload of {len} bytes is too short (need {needed})")]
    TooShort {
        type_id: u8,
        len: usize,
        needed: usize,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(
        "AMF3 message type {type_id} has format selector {selector}, only 0 (AMF0) is supported"
    )]
    Amf3FormatSelector { type_id: u8, selector: u8 },
    #[error("aggregate message: {0}")]
    Aggregate(&'static str),
}

/// Set Peer Bandwidth limit type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerBandwidthLimit {
    Hard,
    Soft,
    Dynamic,
    /// A value the spec does not define (kept, not rejected).
    Other(u8),
}

impl PeerBandwidthLimit {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Hard,
            1 => Self::Soft,
            2 => Self::Dynamic,
            other => Self::Other(other),
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Hard => 0,
            Self::Soft => 1,
            Self::Dynamic => 2,
            Self::Other(v) => v,
        }
    }
}

/// User control events (message type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControlEvent {
    StreamBegin {
        stream_id: u32,
    },
    StreamEof {
        stream_id: u32,
    },
    StreamDry {
        stream_id: u32,
    },
    SetBufferLength {
        stream_id: u32,
        buffer_length_ms: u32,
    },
    StreamIsRecorded {
        stream_id: u32,
    },
    PingRequest {
        timestamp: u32,
    },
    PingResponse {
        timestamp: u32,
    },
    /// Any other event, kept raw (e.g. the unofficial buffer-empty/ready events 31/32).
    Unknown {
        event_type: u16,
        data: Bytes,
    },
}

impl UserControlEvent {
    /// Parses a type-4 payload.
    pub fn parse(payload: &Bytes) -> Result<Self, MessageError> {
        let too_short = |needed| MessageError::TooShort {
            type_id: type_id::USER_CONTROL,
            len: payload.len(),
            needed,
        };
        let event_type = read_u16(payload, 0).ok_or(too_short(2))?;
        let first = || read_u32(payload, 2).ok_or(too_short(6));
        use user_control_type as t;
        Ok(match event_type {
            t::STREAM_BEGIN => Self::StreamBegin {
                stream_id: first()?,
            },
            t::STREAM_EOF => Self::StreamEof {
                stream_id: first()?,
            },
            t::STREAM_DRY => Self::StreamDry {
                stream_id: first()?,
            },
            t::SET_BUFFER_LENGTH => Self::SetBufferLength {
                stream_id: first()?,
                buffer_length_ms: read_u32(payload, 6).ok_or(too_short(10))?,
            },
            t::STREAM_IS_RECORDED => Self::StreamIsRecorded {
                stream_id: first()?,
            },
            t::PING_REQUEST => Self::PingRequest {
                timestamp: first()?,
            },
            t::PING_RESPONSE => Self::PingResponse {
                timestamp: first()?,
            },
            event_type => Self::Unknown {
                event_type,
                data: payload.slice(2.min(payload.len())..),
            },
        })
    }

    /// Appends the type-4 payload.
    pub fn encode_payload(&self, out: &mut BytesMut) {
        use user_control_type as t;
        let (event_type, a, b) = match self {
            Self::StreamBegin { stream_id } => (t::STREAM_BEGIN, *stream_id, None),
            Self::StreamEof { stream_id } => (t::STREAM_EOF, *stream_id, None),
            Self::StreamDry { stream_id } => (t::STREAM_DRY, *stream_id, None),
            Self::SetBufferLength {
                stream_id,
                buffer_length_ms,
            } => (t::SET_BUFFER_LENGTH, *stream_id, Some(*buffer_length_ms)),
            Self::StreamIsRecorded { stream_id } => (t::STREAM_IS_RECORDED, *stream_id, None),
            Self::PingRequest { timestamp } => (t::PING_REQUEST, *timestamp, None),
            Self::PingResponse { timestamp } => (t::PING_RESPONSE, *timestamp, None),
            Self::Unknown { event_type, data } => {
                out.put_u16(*event_type);
                out.put_slice(data);
                return;
            }
        };
        out.put_u16(event_type);
        out.put_u32(a);
        if let Some(b) = b {
            out.put_u32(b);
        }
    }
}

/// Protocol control messages (types 1, 2, 3, 5, 6) and user control events (type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    SetChunkSize(u32),
    Abort {
        csid: u32,
    },
    Acknowledgement {
        sequence_number: u32,
    },
    UserControl(UserControlEvent),
    WindowAckSize(u32),
    SetPeerBandwidth {
        window_size: u32,
        limit: PeerBandwidthLimit,
    },
}

impl ControlMessage {
    /// Appends the payload and returns the message type id to send it with (on chunk stream 2,
    /// message stream 0, timestamp 0; [`super::writer::ChunkWriter::write_control`] does that).
    pub fn encode_payload(&self, out: &mut BytesMut) -> u8 {
        match self {
            Self::SetChunkSize(size) => {
                out.put_u32(*size);
                type_id::SET_CHUNK_SIZE
            }
            Self::Abort { csid } => {
                out.put_u32(*csid);
                type_id::ABORT
            }
            Self::Acknowledgement { sequence_number } => {
                out.put_u32(*sequence_number);
                type_id::ACKNOWLEDGEMENT
            }
            Self::UserControl(event) => {
                event.encode_payload(out);
                type_id::USER_CONTROL
            }
            Self::WindowAckSize(size) => {
                out.put_u32(*size);
                type_id::WINDOW_ACK_SIZE
            }
            Self::SetPeerBandwidth { window_size, limit } => {
                out.put_u32(*window_size);
                out.put_u8(limit.to_u8());
                type_id::SET_PEER_BANDWIDTH
            }
        }
    }
}

/// A message by meaning.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Control(ControlMessage),
    /// FLV audio tag body (see [`super::flv::parse_audio_tag`]).
    Audio(Bytes),
    /// FLV video tag body (see [`super::flv::parse_video_tag`]).
    Video(Bytes),
    /// AMF0 data (type 18; or type 15 with its format byte removed).
    Data(Bytes),
    /// A command (type 20; or type 17 with its format byte removed).
    Command(Command),
    /// An aggregate (type 22), whole; see [`split_aggregate`].
    Aggregate(Bytes),
    /// Shared object messages (16, 19) and unassigned types, kept raw.
    Other {
        type_id: u8,
        payload: Bytes,
    },
}

impl Message {
    /// Interprets `raw`. Errors are protocol violations; the server decides whether a bad
    /// command costs the connection (a bad control message should).
    pub fn parse(raw: &RawMessage, amf0_limits: &Amf0Limits) -> Result<Self, MessageError> {
        let payload = &raw.payload;
        let control = |c| Ok(Message::Control(c));
        let u32_payload = |needed| {
            read_u32(payload, 0).ok_or(MessageError::TooShort {
                type_id: raw.type_id,
                len: payload.len(),
                needed,
            })
        };
        match raw.type_id {
            type_id::SET_CHUNK_SIZE => {
                control(ControlMessage::SetChunkSize(parse_set_chunk_size(payload)?))
            }
            type_id::ABORT => control(ControlMessage::Abort {
                csid: parse_abort(payload)?,
            }),
            type_id::ACKNOWLEDGEMENT => control(ControlMessage::Acknowledgement {
                sequence_number: u32_payload(4)?,
            }),
            type_id::USER_CONTROL => control(ControlMessage::UserControl(UserControlEvent::parse(
                payload,
            )?)),
            type_id::WINDOW_ACK_SIZE => control(ControlMessage::WindowAckSize(u32_payload(4)?)),
            type_id::SET_PEER_BANDWIDTH => {
                let window_size = u32_payload(5)?;
                let limit = payload.get(4).copied().ok_or(MessageError::TooShort {
                    type_id: raw.type_id,
                    len: payload.len(),
                    needed: 5,
                })?;
                control(ControlMessage::SetPeerBandwidth {
                    window_size,
                    limit: PeerBandwidthLimit::from_u8(limit),
                })
            }
            type_id::AUDIO => Ok(Message::Audio(payload.clone())),
            type_id::VIDEO => Ok(Message::Video(payload.clone())),
            type_id::DATA_AMF0 => Ok(Message::Data(payload.clone())),
            type_id::DATA_AMF3 => Ok(Message::Data(strip_amf3_selector(raw)?)),
            type_id::COMMAND_AMF0 => Ok(Message::Command(parse_command(payload, amf0_limits)?)),
            type_id::COMMAND_AMF3 => Ok(Message::Command(parse_command(
                &strip_amf3_selector(raw)?,
                amf0_limits,
            )?)),
            type_id::AGGREGATE => Ok(Message::Aggregate(payload.clone())),
            other => Ok(Message::Other {
                type_id: other,
                payload: payload.clone(),
            }),
        }
    }
}

/// Types 15 and 17 start with a format selector byte; 0 means "AMF0 follows". Some clients
/// omit it and start directly with the AMF0 string marker (0x02): tolerated.
fn strip_amf3_selector(raw: &RawMessage) -> Result<Bytes, MessageError> {
    match raw.payload.first() {
        None => Ok(Bytes::new()),
        Some(0) => Ok(raw.payload.slice(1..)),
        Some(0x02) => Ok(raw.payload.clone()),
        Some(&selector) => Err(MessageError::Amf3FormatSelector {
            type_id: raw.type_id,
            selector,
        }),
    }
}

/// Splits an aggregate message into its sub-messages (FLV-tag framed: type, 24-bit size,
/// 24+8-bit timestamp, 24-bit stream id, data, 32-bit back pointer). Sub-message timestamps
/// are rebased so the first equals the aggregate's timestamp (wrapping arithmetic); they
/// inherit the aggregate's csid and message stream id. Only audio, video and AMF0 data may be
/// inside (no nested aggregates, so no recursion).
pub fn split_aggregate(raw: &RawMessage) -> Result<Vec<RawMessage>, MessageError> {
    let payload = &raw.payload;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut first_timestamp: Option<u32> = None;
    while pos < payload.len() {
        if out.len() >= MAX_AGGREGATE_SUB_MESSAGES {
            return Err(MessageError::Aggregate("too many sub-messages"));
        }
        let header = payload
            .get(pos..pos.saturating_add(11))
            .ok_or(MessageError::Aggregate("truncated sub-message header"))?;
        let (sub_type, size, ts_low, ts_high) = match header {
            &[t, s0, s1, s2, t0, t1, t2, t3, _, _, _] => (
                t,
                u32::from_be_bytes([0, s0, s1, s2]) as usize,
                u32::from_be_bytes([0, t0, t1, t2]),
                u32::from(t3),
            ),
            _ => return Err(MessageError::Aggregate("truncated sub-message header")),
        };
        if !matches!(
            sub_type,
            type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0
        ) {
            return Err(MessageError::Aggregate(
                "sub-message type not allowed (only audio, video, data)",
            ));
        }
        let data_start = pos.saturating_add(11);
        let data_end = data_start
            .checked_add(size)
            .filter(|&end| end <= payload.len())
            .ok_or(MessageError::Aggregate("sub-message size exceeds payload"))?;
        let sub_timestamp = (ts_high << 24) | ts_low;
        let base = *first_timestamp.get_or_insert(sub_timestamp);
        out.push(RawMessage {
            csid: raw.csid,
            timestamp: raw.timestamp.wrapping_add(sub_timestamp.wrapping_sub(base)),
            type_id: sub_type,
            stream_id: raw.stream_id,
            payload: payload.slice(data_start..data_end),
        });
        // Back pointer (previous tag size); tolerated if missing after the last sub-message.
        pos = data_end.saturating_add(4).min(payload.len());
    }
    Ok(out)
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    <[u8; 2]>::try_from(b).ok().map(u16::from_be_bytes)
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(b).ok().map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::amf0::{self, Value};
    use crate::protocol::chunk::{ChunkReader, ReaderLimits};
    use crate::protocol::writer::ChunkWriter;

    fn raw(type_id: u8, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid: 2,
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn parse(type_id: u8, payload: &[u8]) -> Result<Message, MessageError> {
        Message::parse(&raw(type_id, payload), &Amf0Limits::default())
    }

    #[test]
    fn control_messages_round_trip_through_the_writer_and_reader() {
        let messages = vec![
            ControlMessage::SetChunkSize(4096),
            ControlMessage::Abort { csid: 6 },
            ControlMessage::Acknowledgement {
                sequence_number: 123_456,
            },
            ControlMessage::WindowAckSize(2_500_000),
            ControlMessage::SetPeerBandwidth {
                window_size: 2_500_000,
                limit: PeerBandwidthLimit::Dynamic,
            },
            ControlMessage::UserControl(UserControlEvent::StreamBegin { stream_id: 1 }),
            ControlMessage::UserControl(UserControlEvent::StreamEof { stream_id: 1 }),
            ControlMessage::UserControl(UserControlEvent::StreamDry { stream_id: 1 }),
            ControlMessage::UserControl(UserControlEvent::SetBufferLength {
                stream_id: 1,
                buffer_length_ms: 3000,
            }),
            ControlMessage::UserControl(UserControlEvent::StreamIsRecorded { stream_id: 1 }),
            ControlMessage::UserControl(UserControlEvent::PingRequest { timestamp: 99 }),
            ControlMessage::UserControl(UserControlEvent::PingResponse { timestamp: 99 }),
            ControlMessage::UserControl(UserControlEvent::Unknown {
                event_type: 31,
                data: Bytes::from_static(&[0, 0, 0, 1]),
            }),
        ];
        let mut writer = ChunkWriter::new();
        for m in &messages {
            writer.write_control(m).unwrap();
        }
        let mut reader = ChunkReader::new(ReaderLimits::default());
        reader.push(&writer.take());
        for expected in &messages {
            let raw = reader.next_message().unwrap().unwrap();
            assert_eq!(raw.csid, 2);
            assert_eq!(raw.stream_id, 0);
            let parsed = Message::parse(&raw, &Amf0Limits::default()).unwrap();
            assert_eq!(&parsed, &Message::Control(expected.clone()));
        }
    }

    #[test]
    fn short_control_payloads_are_errors() {
        assert!(parse(type_id::SET_CHUNK_SIZE, &[0, 0]).is_err());
        assert!(parse(type_id::SET_CHUNK_SIZE, &[0, 0, 0, 0]).is_err());
        assert!(parse(type_id::ABORT, &[]).is_err());
        assert!(parse(type_id::ACKNOWLEDGEMENT, &[1, 2, 3]).is_err());
        assert!(parse(type_id::WINDOW_ACK_SIZE, &[]).is_err());
        assert!(parse(type_id::SET_PEER_BANDWIDTH, &[0, 0, 0, 1]).is_err());
        assert!(parse(type_id::USER_CONTROL, &[0]).is_err());
        assert!(parse(type_id::USER_CONTROL, &[0, 0, 1]).is_err());
        assert!(parse(type_id::USER_CONTROL, &[0, 3, 0, 0, 0, 1, 0]).is_err());
        assert_eq!(
            parse(type_id::SET_PEER_BANDWIDTH, &[0, 0, 0, 1, 9]).unwrap(),
            Message::Control(ControlMessage::SetPeerBandwidth {
                window_size: 1,
                limit: PeerBandwidthLimit::Other(9)
            })
        );
    }

    #[test]
    fn media_and_data_stay_raw() {
        assert_eq!(
            parse(type_id::VIDEO, b"\x17\x01").unwrap(),
            Message::Video(Bytes::from_static(b"\x17\x01"))
        );
        assert_eq!(
            parse(type_id::AUDIO, b"").unwrap(),
            Message::Audio(Bytes::new())
        );
        assert_eq!(
            parse(type_id::DATA_AMF3, b"\x00\x05").unwrap(),
            Message::Data(Bytes::from_static(b"\x05"))
        );
        assert!(matches!(
            parse(19, b"x").unwrap(),
            Message::Other { type_id: 19, .. }
        ));
    }

    #[test]
    fn amf3_command_with_format_byte_is_parsed_as_amf0() {
        let body = amf0::to_bytes(&[Value::string("play"), Value::Number(4.0), Value::Null]);
        let mut with_selector = vec![0u8];
        with_selector.extend_from_slice(&body);
        for payload in [&with_selector[..], &body[..]] {
            let Message::Command(c) = parse(type_id::COMMAND_AMF3, payload).unwrap() else {
                panic!("not a command");
            };
            assert_eq!(c.name, "play");
            assert_eq!(c.transaction_id, 4.0);
        }
        assert!(matches!(
            parse(type_id::COMMAND_AMF3, &[3, 1, 2]),
            Err(MessageError::Amf3FormatSelector { selector: 3, .. })
        ));
        // A true AMF3 value inside is rejected cleanly.
        let mut amf3_value = vec![0u8];
        amf3_value.extend_from_slice(&amf0::to_bytes(&[Value::string("x"), Value::Number(1.0)]));
        amf3_value.extend_from_slice(&[0x11, 0x04, 0x01]);
        assert!(parse(type_id::COMMAND_AMF3, &amf3_value).is_err());
    }

    fn sub_message(type_id: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![type_id];
        v.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&timestamp.to_be_bytes()[1..]);
        v.push((timestamp >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(data);
        v.extend_from_slice(&(data.len() as u32 + 11).to_be_bytes());
        v
    }

    #[test]
    fn aggregate_is_split_and_rebased() {
        let mut payload = sub_message(type_id::VIDEO, 0x0100_0000, b"vid");
        payload.extend_from_slice(&sub_message(type_id::AUDIO, 0x0100_0014, b"au"));
        let agg = RawMessage {
            csid: 6,
            timestamp: 1000,
            type_id: type_id::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from(payload),
        };
        let subs = split_aggregate(&agg).unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].timestamp, 1000);
        assert_eq!(subs[1].timestamp, 1020);
        assert_eq!(subs[1].payload.as_ref(), b"au");
        assert_eq!(subs[1].stream_id, 1);
    }

    #[test]
    fn malformed_aggregates_are_errors() {
        let agg = |payload: Vec<u8>| RawMessage {
            csid: 6,
            timestamp: 0,
            type_id: type_id::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from(payload),
        };
        // Truncated header.
        assert!(split_aggregate(&agg(vec![9, 0, 0])).is_err());
        // Size beyond the payload.
        let mut p = sub_message(type_id::VIDEO, 0, b"abc");
        p[3] = 200;
        assert!(split_aggregate(&agg(p)).is_err());
        // Nested aggregate.
        assert!(split_aggregate(&agg(sub_message(type_id::AGGREGATE, 0, b""))).is_err());
        // Missing final back pointer is tolerated.
        let mut p = sub_message(type_id::VIDEO, 0, b"abc");
        p.truncate(p.len() - 4);
        assert_eq!(split_aggregate(&agg(p)).unwrap().len(), 1);
        assert!(split_aggregate(&agg(vec![])).unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(type_id in 0u8..=30, payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let raw = raw(type_id, &payload);
            let _ = Message::parse(&raw, &Amf0Limits::default());
            let _ = split_aggregate(&raw);
        }
    }
}
