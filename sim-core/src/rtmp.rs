//! RTMP protocol cost model: what chunking adds to each message (Adobe RTMP spec §5.3 \[R1\],
//! MODELS.md §A4), FLV tag headers, the TCP/IP/Ethernet expansion on the wire, and the
//! request/response round trips before media can flow (MODELS §A7).
//!
//! # Chunk format (spec §5.3.1)
//!
//! A message is cut into chunks of at most `chunk_size` payload bytes. The first chunk carries
//! - a **basic header**: 1 B for chunk stream ids 2–63, 2 B for 64–319, 3 B for 320–65599;
//! - a **message header** whose size depends on its form: type 0 = 11 B (timestamp, length, type
//!   id, stream id), type 1 = 7 B (timestamp delta, length, type id), type 2 = 3 B (timestamp
//!   delta only), type 3 = 0 B (everything as before);
//! - a 4 B **extended timestamp** when the timestamp (type 0) or delta (types 1, 2) does not fit
//!   in 24 bits, i.e. is ≥ 0xFFFFFF ms (4.66 h).
//!
//! Every further chunk of the same message is a type-3 chunk: a basic header only, plus the
//! extended timestamp again when the first chunk had one (spec §5.3.1.3; librtmp, nginx-rtmp and
//! SRS all write it).

use crate::check::Checker;
use crate::net::PathConfig;
use crate::units::Micros;
use serde::{Deserialize, Serialize};

/// Chunk size every RTMP connection starts with (spec §5.4.1), until a Set Chunk Size message.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// FLV video tag header inside the RTMP video message: frame type/codec id (1 B), AVC packet
/// type (1 B), composition time (3 B) \[FLV1\].
pub const FLV_VIDEO_TAG_HEADER_BYTES: u32 = 5;
/// FLV audio tag header for AAC: sound format/rate/size/type (1 B), AAC packet type (1 B) \[FLV1\].
pub const FLV_AUDIO_TAG_HEADER_BYTES: u32 = 2;
/// Extended timestamp field.
pub const EXTENDED_TIMESTAMP_BYTES: u32 = 4;
/// Largest timestamp or delta that fits the 24-bit field; this value and above use the
/// extended timestamp.
pub const TIMESTAMP_FIELD_MAX: u64 = 0xFF_FFFF;
/// IPv4 (20 B) + TCP (20 B) + TCP timestamp option (12 B) per segment.
pub const TCP_IP_HEADER_BYTES: u32 = 52;
/// Ethernet per frame on the wire: header 14 + FCS 4 + preamble/SFD 8 + inter-frame gap 12.
pub const ETHERNET_WIRE_OVERHEAD_BYTES: u32 = 38;

/// Message header form of a message's first chunk (spec §5.3.1.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderForm {
    /// 11 B: absolute timestamp, length, type id, message stream id.
    #[default]
    Type0,
    /// 7 B: timestamp delta, length, type id (same stream as the previous message).
    Type1,
    /// 3 B: timestamp delta (same stream, length and type).
    Type2,
    /// 0 B: everything as the previous message.
    Type3,
}

impl HeaderForm {
    pub const fn message_header_bytes(self) -> u32 {
        match self {
            HeaderForm::Type0 => 11,
            HeaderForm::Type1 => 7,
            HeaderForm::Type2 => 3,
            HeaderForm::Type3 => 0,
        }
    }
}

/// Basic header size for chunk stream id `csid` (spec §5.3.1.1): 1 B for 2–63, 2 B for 64–319,
/// 3 B above (ids 0 and 1 are the escape codes, so they count as 1 B here).
pub const fn basic_header_bytes(csid: u32) -> u32 {
    if csid < 64 {
        1
    } else if csid < 320 {
        2
    } else {
        3
    }
}

/// Whether a timestamp (type 0) or timestamp delta (types 1, 2), in ms, needs the 4-byte
/// extended field.
pub const fn needs_extended_timestamp(timestamp_or_delta_ms: u64) -> bool {
    timestamp_or_delta_ms >= TIMESTAMP_FIELD_MAX
}

/// Number of chunks a message of `payload_len` bytes takes: `max(1, ⌈payload/chunk_size⌉)`
/// (an empty message still sends one chunk). A chunk size of 0 is treated as 1.
pub fn chunk_count(payload_len: u32, chunk_size: u32) -> u64 {
    (payload_len as u64)
        .div_ceil(chunk_size.max(1) as u64)
        .max(1)
}

/// Bytes on the wire for one RTMP message with payload `payload_len` chunked at `chunk_size`:
/// basic header (1 B for csid 2–63), message header by form (type 0: 11 B, type 1: 7 B, type 2:
/// 3 B, type 3: 0 B), 4 B extended timestamp when the timestamp/delta ≥ 0xFFFFFF (also repeated
/// on continuation chunks), 1 B basic header per continuation chunk. \[R1\]
///
/// `payload + (1 + H + X) + (k − 1)·(1 + X)`, `k` = [`chunk_count`], `H` the message header,
/// `X` = 4 or 0. The RTMP length field is 24 bits, so real messages are < 16 MiB; larger values
/// are computed all the same.
pub fn chunked_message_bytes(
    payload_len: u32,
    chunk_size: u32,
    form: HeaderForm,
    extended_timestamp: bool,
) -> u64 {
    chunked_message_bytes_on_csid(3, payload_len, chunk_size, form, extended_timestamp)
}

/// [`chunked_message_bytes`] on chunk stream `csid` (wider basic headers above 63).
pub fn chunked_message_bytes_on_csid(
    csid: u32,
    payload_len: u32,
    chunk_size: u32,
    form: HeaderForm,
    extended_timestamp: bool,
) -> u64 {
    let basic = basic_header_bytes(csid) as u64;
    let ext = if extended_timestamp {
        EXTENDED_TIMESTAMP_BYTES as u64
    } else {
        0
    };
    let chunks = chunk_count(payload_len, chunk_size);
    payload_len as u64
        + basic
        + form.message_header_bytes() as u64
        + ext
        + (chunks - 1) * (basic + ext)
}

pub use crate::server::MediaKind;

/// FLV tag header bytes inside an RTMP media message of this kind (video 5, audio 2, data 0).
pub const fn flv_tag_header_bytes(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Video => FLV_VIDEO_TAG_HEADER_BYTES,
        MediaKind::Audio => FLV_AUDIO_TAG_HEADER_BYTES,
        MediaKind::Data => 0,
    }
}

/// Bytes on the wire (TCP payload) for one media message whose codec payload (an H.264 access
/// unit, an AAC frame) is `codec_payload` bytes: the FLV tag header is added to the RTMP
/// payload, then the message is chunked.
pub fn media_message_bytes(
    kind: MediaKind,
    codec_payload: u32,
    chunk_size: u32,
    form: HeaderForm,
    extended_timestamp: bool,
) -> u64 {
    let payload = codec_payload.saturating_add(flv_tag_header_bytes(kind));
    chunked_message_bytes(payload, chunk_size, form, extended_timestamp)
}

/// RTMP framing overhead (FLV tag header + chunk headers) as a fraction of a codec payload of
/// `codec_payload_bytes` per message (fractional sizes allowed, for averages).
pub fn overhead_fraction(
    codec_payload_bytes: f64,
    kind: MediaKind,
    chunk_size: u32,
    form: HeaderForm,
) -> f64 {
    if codec_payload_bytes.is_nan() || codec_payload_bytes <= 0.0 {
        return 0.0;
    }
    let tag = flv_tag_header_bytes(kind) as f64;
    let chunks = libm::ceil((codec_payload_bytes + tag) / chunk_size.max(1) as f64).max(1.0);
    let headers = 1.0 + form.message_header_bytes() as f64 + (chunks - 1.0);
    (tag + headers) / codec_payload_bytes
}

/// Overhead fraction of RTMP chunking for a video stream of given bitrate, frame rate and chunk
/// size: ε in MODELS §A4 (0.88 % at 4 Mb/s, 30 fps, chunk 128; 0.13 % at 4096; 0.10 % at
/// 60000).
///
/// Assumptions that reproduce those figures (0.882 %, 0.126 %, 0.102 %): every frame has the
/// mean size `R/(8f)` (16,667 B), carries the 5 B FLV video tag header, and is sent as one
/// message with a full **type-0** header (1 + 11 B) and 1 B per continuation chunk; ε is relative
/// to the codec payload. Real senders mostly use type 1 (librtmp picks the smallest form), which
/// gives 0.86 %, 0.10 % and 0.08 % ([`overhead_fraction`] with [`HeaderForm::Type1`]); real
/// frame sizes vary (an I-frame needs more chunks), which changes ε little because the chunk
/// count grows in proportion. Returns 0 for a non-positive bitrate or frame rate.
pub fn rtmp_overhead_fraction(video_bitrate_bps: f64, fps: f64, chunk_size: u32) -> f64 {
    let usable = video_bitrate_bps > 0.0 && fps > 0.0 && video_bitrate_bps.is_finite();
    if !usable {
        return 0.0;
    }
    overhead_fraction(
        video_bitrate_bps / 8.0 / fps,
        MediaKind::Video,
        chunk_size,
        HeaderForm::Type0,
    )
}

/// AAC audio overhead fraction: 1024 samples per frame, so `sample_rate/1024` frames per second
/// of `R/(8·frames/s)` bytes each, a 2 B FLV tag header and a type-1 header (1 + 7 B).
/// MODELS §A4: (2 + 8)/371 ≈ 2.7 % at 128 kb/s, 44.1 kHz.
pub fn audio_overhead_fraction(
    audio_bitrate_bps: f64,
    sample_rate_hz: f64,
    chunk_size: u32,
) -> f64 {
    let usable = audio_bitrate_bps > 0.0 && sample_rate_hz > 0.0 && audio_bitrate_bps.is_finite();
    if !usable {
        return 0.0;
    }
    let frames_per_s = sample_rate_hz / 1024.0;
    overhead_fraction(
        audio_bitrate_bps / 8.0 / frames_per_s,
        MediaKind::Audio,
        chunk_size,
        HeaderForm::Type1,
    )
}

/// TCP/IP + Ethernet on-wire expansion for MSS 1448: 1538/1448. Each `mss` bytes of TCP payload
/// cost `mss + 52 + 38` bytes on an Ethernet wire (IPv4 + TCP with timestamps, Ethernet header,
/// FCS, preamble and inter-frame gap): +6.2 % at 1448 (MODELS §A4). Assumes full segments.
pub fn wire_rate_bps(payload_rate_bps: f64, mss_bytes: u32) -> f64 {
    let mss = mss_bytes.max(1) as f64;
    payload_rate_bps * (mss + (TCP_IP_HEADER_BYTES + ETHERNET_WIRE_OVERHEAD_BYTES) as f64) / mss
}

// ---------------------------------------------------------------------------------------------
// Connection set-up (MODELS §A7)
// ---------------------------------------------------------------------------------------------

/// C0 (version, 1 B) + C1 (1536 B).
pub const C0C1_BYTES: u32 = 1 + 1536;
/// S0 + S1 + S2 (1 + 1536 + 1536 B).
pub const S0S1S2_BYTES: u32 = 1 + 2 * 1536;
/// C2 (1536 B).
pub const C2_BYTES: u32 = 1536;
/// `connect` command as sent by a typical encoder (AMF0 object with app, flashVer, tcUrl…),
/// chunked at 128: about 300 B. The sizes below are typical AMF0 encodings, ±50 %; they only
/// matter on slow links.
pub const CONNECT_BYTES: u32 = 300;
/// Window Acknowledgement Size + Set Peer Bandwidth + Set Chunk Size + `_result` of connect.
pub const CONNECT_REPLY_BYTES: u32 = 260;
/// Publisher: `releaseStream` + `FCPublish` + `createStream`, pipelined (librtmp, OBS).
pub const PUBLISH_CREATE_STREAM_BYTES: u32 = 150;
/// Player: `createStream`.
pub const PLAY_CREATE_STREAM_BYTES: u32 = 40;
/// `_result` of createStream.
pub const CREATE_STREAM_REPLY_BYTES: u32 = 45;
/// `publish`.
pub const PUBLISH_BYTES: u32 = 60;
/// Stream Begin + `onStatus` NetStream.Publish.Start.
pub const PUBLISH_REPLY_BYTES: u32 = 130;
/// `play` + Set Buffer Length.
pub const PLAY_BYTES: u32 = 80;
/// Stream Begin + `onStatus` Play.Reset and Play.Start + `|RtmpSampleAccess` + data start.
pub const PLAY_REPLY_BYTES: u32 = 360;

/// Which side of the server the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Publish,
    Play,
}

/// Time from the client's `connect()` until media can flow, step by step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StartupBreakdown {
    /// SYN → SYN-ACK (1 RTT; 0 when TCP Fast Open carries C0+C1 on the SYN).
    pub tcp_connect: Micros,
    /// C0C1 → S0S1S2 (1 RTT).
    pub rtmp_handshake: Micros,
    /// C2 + `connect` → `_result` (1 RTT).
    pub connect: Micros,
    /// `createStream` → `_result` (1 RTT).
    pub create_stream: Micros,
    /// `publish` → `onStatus` Publish.Start, or `play` → `onStatus` Play.Start (1 RTT).
    pub publish_or_play: Micros,
    pub total: Micros,
}

impl StartupBreakdown {
    fn from_steps(tcp: Micros, hs: Micros, connect: Micros, cs: Micros, pp: Micros) -> Self {
        StartupBreakdown {
            tcp_connect: tcp,
            rtmp_handshake: hs,
            connect,
            create_stream: cs,
            publish_or_play: pp,
            total: tcp + hs + connect + cs + pp,
        }
    }
}

/// Set-up before a publisher's media can flow, counted in round trips (MODELS §A7): TCP
/// 3-way handshake (1 RTT), C0C1→S0S1S2 (1 RTT), C2 + connect→_result (1 RTT), createStream→
/// _result (1 RTT, with releaseStream/FCPublish pipelined in front), publish→onStatus (1 RTT):
/// **5 RTT**.
///
/// `fast_open` = a *repeat* connection whose client holds a TFO cookie (RFC 7413) and puts
/// C0+C1 on the SYN: the server answers SYN-ACK and S0S1S2 together, so the TCP handshake
/// overlaps the RTMP one and **4 RTT** remain. What TFO saves is exactly that one RTT, once per
/// connection, and only on repeat connections (the first connection only fetches the cookie);
/// the steady-state latency of the stream is unchanged. This idealized count assumes C0+C1
/// (1537 B) fits in the SYN; on a 1500 B MTU it does not (see [`tfo_syn_payload_limit`] and
/// [`startup_on_paths`], which then gives no saving).
pub fn publish_startup(rtt: Micros, fast_open: bool) -> StartupBreakdown {
    startup(SessionKind::Publish, rtt, Micros::ZERO, fast_open)
}

/// Set-up before a player's media can flow: the same five steps with createStream → play
/// (5 RTT, 4 RTT with TFO; see [`publish_startup`]).
pub fn play_startup(rtt: Micros, fast_open: bool) -> StartupBreakdown {
    startup(SessionKind::Play, rtt, Micros::ZERO, fast_open)
}

/// [`publish_startup`] / [`play_startup`] with the server's processing time per request
/// (`processing`, added to each of the four RTMP steps; the kernel answers the SYN).
pub fn startup(
    kind: SessionKind,
    rtt: Micros,
    processing: Micros,
    fast_open: bool,
) -> StartupBreakdown {
    let _ = kind; // same round-trip count for both
    let step = rtt + processing;
    let tcp = if fast_open { Micros::ZERO } else { rtt };
    StartupBreakdown::from_steps(tcp, step, step, step, step)
}

/// Largest payload Linux puts on a TFO SYN for a path with this MSS (`mss_bytes` as in
/// [`PathConfig`], i.e. net of the 12 B timestamp option): the MSS for the MTU minus the 40 B
/// reserved for SYN options (`tcp_send_syn_data`): `mss + 12 − 40`. 1420 B on Ethernet, which
/// is less than C0+C1 = 1537 B.
pub const fn tfo_syn_payload_limit(mss_bytes: u32) -> u32 {
    (mss_bytes + 12).saturating_sub(40)
}

/// Serialization time of `bytes` of TCP payload on a path (its bottleneck, with its per-packet
/// overhead); 0 when unlimited.
fn path_ser(p: &PathConfig, bytes: u32) -> Micros {
    let limited = p.bottleneck_kbps > 0.0 && p.bottleneck_kbps.is_finite();
    if !limited {
        return Micros::ZERO;
    }
    let mss = p.mss_bytes.max(1) as u64;
    let segments = (bytes as u64).div_ceil(mss);
    let wire = bytes as u64 + segments * p.per_packet_overhead_bytes as u64;
    crate::units::transmission_time(wire, p.bottleneck_kbps * 1e3)
}

/// Set-up time over real paths: each step is `request/C_up + D_up + processing + reply/C_down +
/// D_down`, with the byte counts above (handshake: 1537 B up, 3073 B down; the C2 rides with
/// `connect`), plus each direction's mean order-preserving jitter over the message's packets
/// (`J·(n−1)/(n+1)` for uniform jitter; a request over one MSS adds the server's immediate ACK
/// ahead of the reply: the handshake's reply is 4 packets, 0.6·J, as measured over the link
/// emulator in docs/fidelity.md). Propagation, rates and jitter come from `client_to_server`
/// and `server_to_client` (the simulator passes the clean [`PathConfig::clean_reverse`] for
/// the direction TCP's model leaves clean: requests of a player, replies to a publisher).
/// Loss, slow start and Nagle are not applied (all set-up messages fit the initial window).
///
/// [`PathConfig::clean_reverse`]: crate::net::PathConfig::clean_reverse With classic Nagle on the server (nginx-rtmp), S0S1S2's 177 B tail can wait for the
/// ACK of its two full segments, one more RTT (MODELS §G "slows handshake replies"); not
/// included.
///
/// TFO: the saving applies only if C0+C1 fits in the SYN ([`tfo_syn_payload_limit`] of the
/// client→server MSS). Otherwise the rest of C1 has to wait for the SYN-ACK, and the server,
/// which needs all of C1 to build S2 (nginx-rtmp and SRS read C0C1 whole before answering), can
/// answer only one RTT later, exactly as without TFO: **on a 1500 B MTU, TFO saves nothing for
/// RTMP.**
pub fn startup_on_paths(
    kind: SessionKind,
    client_to_server: &PathConfig,
    server_to_client: &PathConfig,
    processing: Micros,
    fast_open: bool,
) -> StartupBreakdown {
    let up = client_to_server;
    let down = server_to_client;
    let d_up = Micros::from_ms_f64(up.propagation_ms);
    let d_down = Micros::from_ms_f64(down.propagation_ms);
    let packets = |p: &PathConfig, bytes: u32| u64::from(bytes.div_ceil(p.mss_bytes.max(1)));
    // Mean order-preserving jitter of a message of `n` packets: a step ends when the last
    // packet of its reply is in (see `net::expected_max_jitter_ms`).
    let jitter = |p: &PathConfig, n: u64| {
        Micros::from_ms_f64(crate::net::expected_max_jitter_ms(&p.jitter, n).max(0.0))
    };
    let step = |req: u32, reply: u32| {
        // A request of more than one MSS is ACKed at once by the server (Linux ACKs every
        // second full segment), so a pure ACK travels ahead of the reply on the same path.
        let ack_first = u64::from(req > up.mss_bytes);
        path_ser(up, req)
            + d_up
            + jitter(up, packets(up, req))
            + processing
            + path_ser(down, reply)
            + d_down
            + jitter(down, packets(down, reply) + ack_first)
    };
    let tfo_works = fast_open && C0C1_BYTES <= tfo_syn_payload_limit(up.mss_bytes);
    let tcp = if tfo_works {
        Micros::ZERO
    } else {
        d_up + jitter(up, 1) + d_down + jitter(down, 1)
    };
    let (cs_req, pp_req, pp_reply) = match kind {
        SessionKind::Publish => (
            PUBLISH_CREATE_STREAM_BYTES,
            PUBLISH_BYTES,
            PUBLISH_REPLY_BYTES,
        ),
        SessionKind::Play => (PLAY_CREATE_STREAM_BYTES, PLAY_BYTES, PLAY_REPLY_BYTES),
    };
    StartupBreakdown::from_steps(
        tcp,
        step(C0C1_BYTES, S0S1S2_BYTES),
        step(C2_BYTES + CONNECT_BYTES, CONNECT_REPLY_BYTES),
        step(cs_req, CREATE_STREAM_REPLY_BYTES),
        step(pp_req, pp_reply),
    )
}

/// RTMP settings of the lab's publisher and the cost model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    /// Chunk size the publisher announces with Set Chunk Size (OBS 4096; spec default 128).
    pub publisher_chunk_size: u32,
    /// Header form of video messages' first chunk. librtmp uses type 1 for media on an
    /// established chunk stream (type 0 for the first message).
    pub video_header_form: HeaderForm,
    /// Header form of audio messages' first chunk (type 1; type 2 when consecutive frames have
    /// equal size).
    pub audio_header_form: HeaderForm,
    /// Server processing time per set-up request (connect, createStream, publish/play, and the
    /// handshake reply), ms.
    pub server_processing_ms: f64,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            publisher_chunk_size: 4096,
            video_header_form: HeaderForm::Type1,
            audio_header_form: HeaderForm::Type1,
            server_processing_ms: 0.5,
        }
    }
}

impl RtmpConfig {
    pub fn validate(&self, c: &mut Checker) {
        c.int_range(
            "publisher_chunk_size",
            self.publisher_chunk_size as u64,
            128,
            0x7FFF_FFFF,
        );
        c.range(
            "server_processing_ms",
            self.server_processing_ms,
            0.0,
            10_000.0,
        );
    }

    /// Header form used for a media message of `kind`.
    pub fn header_form(&self, kind: MediaKind) -> HeaderForm {
        match kind {
            MediaKind::Video => self.video_header_form,
            MediaKind::Audio => self.audio_header_form,
            MediaKind::Data => HeaderForm::Type0,
        }
    }

    /// Wire bytes (TCP payload) of one media message of `codec_payload` bytes chunked at
    /// `chunk_size`, with this config's header forms. `timestamp_ms` decides the extended
    /// timestamp for a type-0 header (the deltas of types 1 and 2 are assumed small).
    pub fn message_bytes(
        &self,
        kind: MediaKind,
        codec_payload: u32,
        chunk_size: u32,
        timestamp_ms: u64,
    ) -> u64 {
        let form = self.header_form(kind);
        let ext = form == HeaderForm::Type0 && needs_extended_timestamp(timestamp_ms);
        media_message_bytes(kind, codec_payload, chunk_size, form, ext)
    }

    /// [`RtmpConfig::message_bytes`] at the publisher's chunk size.
    pub fn publisher_message_bytes(
        &self,
        kind: MediaKind,
        codec_payload: u32,
        timestamp_ms: u64,
    ) -> u64 {
        self.message_bytes(kind, codec_payload, self.publisher_chunk_size, timestamp_ms)
    }

    /// Server processing per set-up step.
    pub fn server_processing(&self) -> Micros {
        Micros::from_ms_f64(self.server_processing_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_sizes_by_hand() {
        // 16,672 B at chunk 128: 131 chunks → 12 B first header + 130 continuation bytes.
        assert_eq!(
            chunked_message_bytes(16_672, 128, HeaderForm::Type0, false),
            16_672 + 12 + 130
        );
        // Extended timestamp: +4 on each of the 131 chunks.
        assert_eq!(
            chunked_message_bytes(16_672, 128, HeaderForm::Type0, true),
            16_672 + 12 + 130 + 4 * 131
        );
        // Exactly one chunk, and an empty message still sends one.
        assert_eq!(
            chunked_message_bytes(128, 128, HeaderForm::Type1, false),
            128 + 8
        );
        assert_eq!(
            chunked_message_bytes(129, 128, HeaderForm::Type1, false),
            129 + 8 + 1
        );
        assert_eq!(chunked_message_bytes(0, 128, HeaderForm::Type2, false), 4);
        assert_eq!(chunked_message_bytes(10, 128, HeaderForm::Type3, false), 11);
        // Wider basic headers.
        assert_eq!(
            chunked_message_bytes_on_csid(100, 300, 128, HeaderForm::Type0, false),
            300 + 13 + 2 * 2
        );
        assert_eq!(basic_header_bytes(2), 1);
        assert_eq!(basic_header_bytes(63), 1);
        assert_eq!(basic_header_bytes(64), 2);
        assert_eq!(basic_header_bytes(319), 2);
        assert_eq!(basic_header_bytes(320), 3);
        // Chunk size 0 cannot panic.
        assert_eq!(chunk_count(5, 0), 5);
        assert!(needs_extended_timestamp(0xFF_FFFF) && !needs_extended_timestamp(0xFF_FFFE));
        // A 5 B FLV video tag header is part of the RTMP payload.
        assert_eq!(
            media_message_bytes(MediaKind::Video, 4091, 4096, HeaderForm::Type1, false),
            4096 + 8
        );
    }

    #[test]
    fn overhead_matches_models_a4() {
        let pp = |x: f64| x * 100.0;
        let e128 = pp(rtmp_overhead_fraction(4e6, 30.0, 128));
        let e4096 = pp(rtmp_overhead_fraction(4e6, 30.0, 4096));
        let e60000 = pp(rtmp_overhead_fraction(4e6, 30.0, 60_000));
        assert!((e128 - 0.88).abs() < 0.05, "{e128}");
        assert!((e4096 - 0.13).abs() < 0.05, "{e4096}");
        assert!((e60000 - 0.10).abs() < 0.05, "{e60000}");
        // The type-0 assumption reproduces them to 0.01 pp.
        assert!((e128 - 0.88).abs() < 0.01 && (e4096 - 0.13).abs() < 0.01);
        // Audio: (2 + 8)/371 ≈ 2.7 %.
        let a = pp(audio_overhead_fraction(128e3, 44_100.0, 4096));
        assert!((a - 2.7).abs() < 0.05, "{a}");
        assert_eq!(rtmp_overhead_fraction(0.0, 30.0, 128), 0.0);
    }

    #[test]
    fn wire_expansion() {
        assert!((wire_rate_bps(1448.0, 1448) - 1538.0).abs() < 1e-9);
        // MODELS §A4: 6 Mb/s + 160 kb/s ≈ 6.55 Mb/s on the wire.
        let eps = rtmp_overhead_fraction(6e6, 30.0, 4096);
        let w = wire_rate_bps(6.16e6 * (1.0 + eps), 1448);
        assert!((w / 1e6 - 6.55).abs() < 0.01, "{w}");
    }

    #[test]
    fn startup_is_five_rtt_or_four_with_tfo() {
        let rtt = Micros::from_ms(40);
        for f in [publish_startup, play_startup] {
            let s = f(rtt, false);
            assert_eq!(s.total, Micros::from_ms(200));
            assert_eq!(s.tcp_connect, rtt);
            assert_eq!(s.rtmp_handshake, rtt);
            let t = f(rtt, true);
            assert_eq!(t.total, Micros::from_ms(160));
            assert_eq!(t.tcp_connect, Micros::ZERO);
        }
        let s = startup(SessionKind::Play, rtt, Micros::from_ms(1), false);
        assert_eq!(s.total, Micros::from_ms(204));
    }

    #[test]
    fn startup_on_paths_adds_serialization_and_checks_tfo() {
        let fast = PathConfig {
            propagation_ms: 20.0,
            bottleneck_kbps: 0.0,
            ..PathConfig::default()
        };
        let s = startup_on_paths(SessionKind::Publish, &fast, &fast, Micros::ZERO, false);
        assert_eq!(s.total, Micros::from_ms(200));
        // 1 Mb/s down: S0S1S2 (3073 B) takes 24.584 ms more.
        let slow = PathConfig {
            bottleneck_kbps: 1_000.0,
            ..fast.clone()
        };
        let s = startup_on_paths(SessionKind::Play, &fast, &slow, Micros::ZERO, false);
        assert_eq!(s.rtmp_handshake, Micros(40_000 + 24_584));
        // TFO on a 1500 B MTU: C0C1 does not fit in the SYN, nothing saved.
        assert!(tfo_syn_payload_limit(1448) < C0C1_BYTES);
        let t = startup_on_paths(SessionKind::Publish, &fast, &fast, Micros::ZERO, true);
        assert_eq!(t.total, Micros::from_ms(200));
        // Jumbo frames (MSS 8948): it fits, one RTT saved.
        let jumbo = PathConfig {
            mss_bytes: 8948,
            ..fast.clone()
        };
        let t = startup_on_paths(SessionKind::Publish, &jumbo, &jumbo, Micros::ZERO, true);
        assert_eq!(t.total, Micros::from_ms(160));
    }

    #[test]
    fn config_defaults_validate() {
        let cfg = RtmpConfig::default();
        let mut c = Checker::new();
        cfg.validate(&mut c);
        assert!(c.into_errors().is_empty());
        let bad = RtmpConfig {
            publisher_chunk_size: 0,
            server_processing_ms: -1.0,
            ..cfg.clone()
        };
        let mut c = Checker::new();
        bad.validate(&mut c);
        assert_eq!(c.into_errors().len(), 2);
        assert_eq!(
            cfg.publisher_message_bytes(MediaKind::Audio, 371, 0),
            371 + 2 + 8
        );
        // Type-0 data message past 4.66 h uses the extended timestamp.
        assert_eq!(
            cfg.message_bytes(MediaKind::Data, 100, 4096, 0x100_0000),
            100 + 12 + 4
        );
        let json = serde_json::to_string(&cfg).unwrap();
        let back: RtmpConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
        let partial: RtmpConfig = serde_json::from_str(r#"{"video_header_form":"type0"}"#).unwrap();
        assert_eq!(partial.video_header_form, HeaderForm::Type0);
        assert_eq!(partial.publisher_chunk_size, 4096);
    }
}
