//! The RTMP protocol codec: pure, sans-IO, and safe on hostile input.
//!
//! Bytes in, messages out, and messages in, bytes out; no sockets, no clocks, no threads.
//! The server's connection task drives it:
//!
//! ```text
//! socket ──bytes──▶ chunk::ChunkReader ──RawMessage──▶ message::Message::parse
//!                                                        ├─ Control (chunk size, acks, pings)
//!                                                        ├─ Command ──▶ command::{ConnectRequest, …}
//!                                                        ├─ Data ────▶ command::parse_metadata
//!                                                        └─ Audio/Video ▶ flv::parse_*_tag (relay decisions)
//! replies: command::{connect_result, on_status, …} ──▶ writer::ChunkWriter ──▶ socket
//! media:   writer::ChunkedMessage (chunked once) ──Bytes::clone──▶ every player's socket
//! ```
//!
//! | module | holds |
//! |---|---|
//! | [`chunk`] | inbound chunk reassembly ([`chunk::ChunkReader`]) and its [`chunk::ReaderLimits`] |
//! | [`message`] | message types, protocol control and user control events (parse and encode) |
//! | [`amf0`] | AMF0 values, iterative decoder with [`amf0::Amf0Limits`], encoder |
//! | [`command`] | commands and data messages, the server's replies, `onMetaData` fields |
//! | [`flv`] | audio/video tag headers (legacy and Enhanced RTMP), AAC/AVC/HEVC config |
//! | [`writer`] | outbound chunking, the shareable [`writer::ChunkedMessage`], [`writer::ChunkWriter`] |
//! | [`fuzz_entry`] | entry points for `cargo fuzz` |
//!
//! Safety rules every module keeps: no panics on input (no unchecked indexing, no
//! `unwrap`), no unbounded recursion (AMF0 decoding and encoding are iterative), and no
//! unbounded memory — each buffer is bounded by a named limit, checked before allocating, whose
//! violation is a typed error that the server turns into closing the connection. Partial input
//! is never an error.
//!
//! Limits and their defaults:
//!
//! | limit | default | where |
//! |---|---|---|
//! | largest inbound message | 8 MiB ([`chunk::DEFAULT_MAX_MESSAGE_LENGTH`]) | [`chunk::ReaderLimits`] |
//! | bytes reserved for incomplete messages | 16 MiB ([`chunk::DEFAULT_MAX_PARTIAL_BYTES`]) | [`chunk::ReaderLimits`] |
//! | chunk stream ids per connection | 64 ([`chunk::DEFAULT_MAX_CHUNK_STREAMS`]) | [`chunk::ReaderLimits`] |
//! | inbound chunk size | 0x7FFFFFFF ([`chunk::DEFAULT_MAX_CHUNK_SIZE`]; costs no memory) | [`chunk::ReaderLimits`] |
//! | AMF0 nesting depth | 64 ([`amf0::DEFAULT_MAX_DEPTH`]) | [`amf0::Amf0Limits`] |
//! | AMF0 values per message | 65,536 ([`amf0::DEFAULT_MAX_VALUES`]) | [`amf0::Amf0Limits`] |
//! | tracks per multitrack tag | 64 ([`flv::MAX_TRACKS_PER_TAG`]) | constant |
//! | sub-messages per aggregate | 4096 ([`message::MAX_AGGREGATE_SUB_MESSAGES`]) | constant |

pub mod amf0;
pub mod chunk;
pub mod command;
pub mod flv;
pub mod fuzz_entry;
pub mod message;
pub mod writer;

pub use amf0::{Amf0Error, Amf0Limits, Value};
pub use chunk::{ChunkError, ChunkReader, RawMessage, ReaderLimits};
pub use command::{Command, CommandError};
pub use flv::{CodecId, FlvError, FourCc, MediaKind, MediaTag};
pub use message::{ControlMessage, Message, MessageError, UserControlEvent};
pub use writer::{chunk_message, ChunkWriter, ChunkedMessage, WriteError};
