//! FLV audio/video tag headers, read just far enough for the relay: which codec, is it a
//! keyframe, is it a sequence header (decoder configuration to cache for late joiners), the
//! composition time offset, and where the codec data starts. Covers legacy FLV (AVC, AAC and
//! the older codecs) and Enhanced RTMP (FourCC codecs, CodedFramesX, Metadata, ModEx,
//! multitrack), per the E-RTMP v2 specification.
//!
//! Also decodes the two codec configuration records the API reports: the AAC
//! AudioSpecificConfig (object type, sample rate, channels) and the profile/level bytes of the
//! AVC and HEVC decoder configuration records (no SPS parsing).
//!
//! Every read is bounds-checked; a tag that is too short or uses a reserved value is an
//! [`FlvError`]. The relay should still **forward** such a tag (as a non-key frame): the
//! parser only informs relay decisions (GOP cache, sequence-header cache), it never gates
//! delivery, so a codec or packet type we do not know yet keeps working end to end.

use std::fmt;
use std::ops::Range;

use thiserror::Error;

/// Largest number of tracks recorded from one multitrack tag (E-RTMP track ids are 8-bit; real
/// streams carry a handful). More is rejected rather than allocating per track without bound.
pub const MAX_TRACKS_PER_TAG: usize = 64;

/// A four-character code (E-RTMP codec identifier), e.g. `hvc1`, `av01`, `Opus`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    pub const AVC: FourCc = FourCc(*b"avc1");
    pub const HEVC: FourCc = FourCc(*b"hvc1");
    pub const AV1: FourCc = FourCc(*b"av01");
    pub const VP9: FourCc = FourCc(*b"vp09");
    pub const VP8: FourCc = FourCc(*b"vp08");
    pub const OPUS: FourCc = FourCc(*b"Opus");
    pub const FLAC: FourCc = FourCc(*b"fLaC");
    pub const AC3: FourCc = FourCc(*b"ac-3");
    pub const EAC3: FourCc = FourCc(*b"ec-3");
    pub const AAC: FourCc = FourCc(*b"mp4a");
    pub const MP3: FourCc = FourCc(*b".mp3");

    /// The code as text, if it is printable ASCII.
    pub fn as_str(&self) -> Option<&str> {
        if self.0.iter().all(|b| b.is_ascii_graphic()) {
            std::str::from_utf8(&self.0).ok()
        } else {
            None
        }
    }
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => write!(f, "0x{:08x}", u32::from_be_bytes(self.0)),
        }
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCc({self})")
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

/// Which codec a tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecId {
    /// Legacy FLV video codec id (low nibble): 2 Sorenson H.263, 3 Screen, 4 VP6, 5 VP6 alpha,
    /// 6 Screen v2, 7 AVC; 12 is the widespread non-standard HEVC extension.
    LegacyVideo(u8),
    /// Legacy FLV sound format (high nibble): 2 MP3, 10 AAC, 11 Speex, …
    LegacyAudio(u8),
    /// Enhanced RTMP codec.
    FourCc(FourCc),
    /// The tag names no codec (an E-RTMP video command frame).
    Unspecified,
}

impl CodecId {
    pub const AVC: CodecId = CodecId::LegacyVideo(7);
    pub const HEVC_LEGACY: CodecId = CodecId::LegacyVideo(12);
    pub const AAC: CodecId = CodecId::LegacyAudio(10);

    /// A short human name for the API.
    pub fn name(&self) -> String {
        match self {
            CodecId::LegacyVideo(id) => match id {
                2 => "Sorenson H.263".into(),
                3 => "Screen video".into(),
                4 => "On2 VP6".into(),
                5 => "On2 VP6 alpha".into(),
                6 => "Screen video v2".into(),
                7 => "H.264/AVC".into(),
                12 => "H.265/HEVC (legacy id 12)".into(),
                other => format!("video codec {other}"),
            },
            CodecId::LegacyAudio(id) => match id {
                0 => "PCM (platform endian)".into(),
                1 => "ADPCM".into(),
                2 => "MP3".into(),
                3 => "PCM (little endian)".into(),
                4..=6 => "Nellymoser".into(),
                7 => "G.711 A-law".into(),
                8 => "G.711 mu-law".into(),
                10 => "AAC".into(),
                11 => "Speex".into(),
                14 => "MP3 8 kHz".into(),
                15 => "device-specific".into(),
                other => format!("sound format {other}"),
            },
            CodecId::FourCc(code) => code.to_string(),
            CodecId::Unspecified => "unspecified".into(),
        }
    }
}

/// What a tag (or track) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Decoder configuration (AVC/HEVC/AV1/VP9 configuration record, AAC AudioSpecificConfig,
    /// Opus/FLAC headers).
    SequenceStart,
    /// Coded media (CodedFrames, CodedFramesX, AVC NALUs, raw AAC).
    CodedFrames,
    SequenceEnd,
    /// E-RTMP video metadata (AMF-encoded, e.g. HDR `colorInfo`).
    Metadata,
    /// E-RTMP MPEG-2 TS sequence start (configuration too).
    Mpeg2TsSequenceStart,
    /// E-RTMP audio channel layout (configuration).
    MultichannelConfig,
    /// A video command frame (frame type 5) with its command byte: no media.
    Command(u8),
    /// A legacy codec without a packet-type byte: the body is the frame.
    Raw,
    /// A legacy AVC/AAC packet type byte outside the defined range.
    Unknown(u8),
}

impl PacketKind {
    fn is_configuration(self) -> bool {
        matches!(
            self,
            PacketKind::SequenceStart
                | PacketKind::Mpeg2TsSequenceStart
                | PacketKind::MultichannelConfig
        )
    }

    fn is_media(self) -> bool {
        matches!(self, PacketKind::CodedFrames | PacketKind::Raw)
    }
}

/// E-RTMP multitrack layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultitrackType {
    OneTrack,
    ManyTracks,
    ManyTracksManyCodecs,
}

/// One track of a multitrack tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: u8,
    pub codec: CodecId,
    pub composition_time_ms: i32,
    /// Where this track's codec data lies in the tag payload.
    pub body: Range<usize>,
}

/// What the relay needs to know about one audio or video message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTag {
    pub kind: MediaKind,
    /// The codec (of the first track, for multitrack tags).
    pub codec: CodecId,
    /// E-RTMP header (FourCC) rather than legacy.
    pub enhanced: bool,
    /// Video frame type (1 key, 2 inter, 3 disposable, 4 generated key, 5 command); 0 for audio.
    pub frame_type: u8,
    /// A coded video key frame: a player can start decoding here (given the sequence header).
    /// False for sequence headers, command frames and all audio.
    pub keyframe: bool,
    /// Decoder configuration to cache and replay to late joiners (sequence start, MPEG-2 TS
    /// sequence start, multichannel config; legacy AVC/AAC sequence headers).
    pub sequence_header: bool,
    pub sequence_end: bool,
    /// Packet type (shared by all tracks of a multitrack tag).
    pub packet: PacketKind,
    /// Composition time offset (PTS − DTS) of the (first) track, in ms; 0 where not carried.
    pub composition_time_ms: i32,
    /// Codec data of the single (or first) track within the payload.
    pub body: Range<usize>,
    /// Set for E-RTMP multitrack tags; then `tracks` lists every track.
    pub multitrack: Option<MultitrackType>,
    pub tracks: Vec<TrackInfo>,
}

impl MediaTag {
    /// Carries coded media (not configuration, metadata or a command).
    pub fn is_coded_frame(&self) -> bool {
        self.packet.is_media()
    }
}

/// Why a tag header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    #[error("{what}: need {needed} bytes, tag has {len}")]
    TooShort {
        what: &'static str,
        needed: usize,
        len: usize,
    },
    #[error("reserved E-RTMP {kind} packet type {value}")]
    ReservedPacketType { kind: &'static str, value: u8 },
    #[error("reserved E-RTMP multitrack type {0}")]
    ReservedMultitrackType(u8),
    #[error("multitrack packet nested inside a multitrack packet")]
    NestedMultitrack,
    #[error("track size exceeds the tag")]
    TrackSizeExceedsTag,
    #[error("more than {MAX_TRACKS_PER_TAG} tracks in one tag")]
    TooManyTracks,
    #[error("reserved sampling frequency index {0}")]
    ReservedSampleRate(u8),
}

/// Bounds-checked cursor over a tag payload.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FlvError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end.and_then(|e| self.data.get(self.pos..e)) {
            Some(bytes) => {
                self.pos = self.pos.saturating_add(n);
                Ok(bytes)
            }
            None => Err(FlvError::TooShort {
                what,
                needed: self.pos.saturating_add(n),
                len: self.data.len(),
            }),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FlvError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, FlvError> {
        match self.take(2, what)? {
            &[a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Ok(0),
        }
    }

    fn u24(&mut self, what: &'static str) -> Result<u32, FlvError> {
        match self.take(3, what)? {
            &[a, b, c] => Ok(u32::from_be_bytes([0, a, b, c])),
            _ => Ok(0),
        }
    }

    /// Signed 24-bit (composition time offset).
    fn i24(&mut self, what: &'static str) -> Result<i32, FlvError> {
        match self.take(3, what)? {
            // Place the 24 bits high, then shift back arithmetically to sign-extend.
            &[a, b, c] => Ok(i32::from_be_bytes([a, b, c, 0]) >> 8),
            _ => Ok(0),
        }
    }

    fn fourcc(&mut self) -> Result<FourCc, FlvError> {
        match self.take(4, "FourCC")? {
            &[a, b, c, d] => Ok(FourCc([a, b, c, d])),
            _ => Ok(FourCc([0; 4])),
        }
    }

    /// Skips E-RTMP ModEx blocks while the packet type says ModEx (7); returns the final type.
    fn skip_mod_ex(&mut self, mut packet_type: u8) -> Result<u8, FlvError> {
        const MOD_EX: u8 = 7;
        while packet_type == MOD_EX {
            let mut size = usize::from(self.u8("ModEx size")?) + 1;
            if size == 256 {
                size = usize::from(self.u16("ModEx size")?) + 1;
            }
            self.take(size, "ModEx data")?;
            // High nibble: ModEx type (ignored); low nibble: the next packet type.
            packet_type = self.u8("ModEx packet type")? & 0x0F;
        }
        Ok(packet_type)
    }
}

/// Parses an audio message payload (FLV AUDIODATA).
pub fn parse_audio_tag(payload: &[u8]) -> Result<MediaTag, FlvError> {
    let mut cur = Cursor::new(payload);
    let first = cur.u8("audio tag header")?;
    let sound_format = first >> 4;
    const EX_HEADER: u8 = 9;
    if sound_format != EX_HEADER {
        let codec = CodecId::LegacyAudio(sound_format);
        let packet = if codec == CodecId::AAC {
            match cur.u8("AAC packet type")? {
                0 => PacketKind::SequenceStart,
                1 => PacketKind::CodedFrames,
                other => PacketKind::Unknown(other),
            }
        } else {
            PacketKind::Raw
        };
        return Ok(single_track(
            MediaKind::Audio,
            codec,
            false,
            0,
            packet,
            0,
            cur.pos..payload.len(),
        ));
    }

    let packet_type = cur.skip_mod_ex(first & 0x0F)?;
    const MULTITRACK: u8 = 5;
    if packet_type == MULTITRACK {
        let byte = cur.u8("audio multitrack header")?;
        let track_packet = byte & 0x0F;
        if track_packet == MULTITRACK {
            return Err(FlvError::NestedMultitrack);
        }
        let packet = audio_packet_kind(track_packet)?;
        return parse_tracks(
            MediaKind::Audio,
            &mut cur,
            byte >> 4,
            track_packet,
            packet,
            0,
        );
    }
    let packet = audio_packet_kind(packet_type)?;
    let codec = CodecId::FourCc(cur.fourcc()?);
    Ok(single_track(
        MediaKind::Audio,
        codec,
        true,
        0,
        packet,
        0,
        cur.pos..payload.len(),
    ))
}

fn audio_packet_kind(value: u8) -> Result<PacketKind, FlvError> {
    match value {
        0 => Ok(PacketKind::SequenceStart),
        1 => Ok(PacketKind::CodedFrames),
        2 => Ok(PacketKind::SequenceEnd),
        4 => Ok(PacketKind::MultichannelConfig),
        value => Err(FlvError::ReservedPacketType {
            kind: "audio",
            value,
        }),
    }
}

/// Parses a video message payload (FLV VIDEODATA).
pub fn parse_video_tag(payload: &[u8]) -> Result<MediaTag, FlvError> {
    let mut cur = Cursor::new(payload);
    let first = cur.u8("video tag header")?;
    const COMMAND_FRAME: u8 = 5;
    if first & 0x80 == 0 {
        let frame_type = first >> 4;
        let codec = CodecId::LegacyVideo(first & 0x0F);
        if frame_type == COMMAND_FRAME {
            let command = cur.u8("video command")?;
            return Ok(single_track(
                MediaKind::Video,
                codec,
                false,
                frame_type,
                PacketKind::Command(command),
                0,
                cur.pos..payload.len(),
            ));
        }
        let (packet, composition_time_ms) =
            if codec == CodecId::AVC || codec == CodecId::HEVC_LEGACY {
                let packet = match cur.u8("AVC packet type")? {
                    0 => PacketKind::SequenceStart,
                    1 => PacketKind::CodedFrames,
                    2 => PacketKind::SequenceEnd,
                    other => PacketKind::Unknown(other),
                };
                (packet, cur.i24("composition time")?)
            } else {
                (PacketKind::Raw, 0)
            };
        return Ok(single_track(
            MediaKind::Video,
            codec,
            false,
            frame_type,
            packet,
            composition_time_ms,
            cur.pos..payload.len(),
        ));
    }

    let frame_type = (first >> 4) & 0x07;
    let packet_type = cur.skip_mod_ex(first & 0x0F)?;
    const METADATA: u8 = 4;
    const MULTITRACK: u8 = 6;
    if packet_type != METADATA && frame_type == COMMAND_FRAME {
        let command = cur.u8("video command")?;
        return Ok(single_track(
            MediaKind::Video,
            CodecId::Unspecified,
            true,
            frame_type,
            PacketKind::Command(command),
            0,
            cur.pos..payload.len(),
        ));
    }
    if packet_type == MULTITRACK {
        let byte = cur.u8("video multitrack header")?;
        let track_packet = byte & 0x0F;
        if track_packet == MULTITRACK {
            return Err(FlvError::NestedMultitrack);
        }
        let packet = video_packet_kind(track_packet)?;
        return parse_tracks(
            MediaKind::Video,
            &mut cur,
            byte >> 4,
            track_packet,
            packet,
            frame_type,
        );
    }
    let packet = video_packet_kind(packet_type)?;
    let code = cur.fourcc()?;
    let composition_time_ms = video_composition_time(&mut cur, packet_type, code)?;
    Ok(single_track(
        MediaKind::Video,
        CodecId::FourCc(code),
        true,
        frame_type,
        packet,
        composition_time_ms,
        cur.pos..payload.len(),
    ))
}

fn video_packet_kind(value: u8) -> Result<PacketKind, FlvError> {
    match value {
        0 => Ok(PacketKind::SequenceStart),
        // 3 = CodedFramesX: composition time implicitly zero.
        1 | 3 => Ok(PacketKind::CodedFrames),
        2 => Ok(PacketKind::SequenceEnd),
        4 => Ok(PacketKind::Metadata),
        5 => Ok(PacketKind::Mpeg2TsSequenceStart),
        value => Err(FlvError::ReservedPacketType {
            kind: "video",
            value,
        }),
    }
}

/// E-RTMP CodedFrames (1) of AVC and HEVC carry a signed 24-bit composition time offset.
fn video_composition_time(
    cur: &mut Cursor<'_>,
    packet_type: u8,
    code: FourCc,
) -> Result<i32, FlvError> {
    const CODED_FRAMES: u8 = 1;
    if packet_type == CODED_FRAMES && (code == FourCc::AVC || code == FourCc::HEVC) {
        cur.i24("composition time")
    } else {
        Ok(0)
    }
}

fn single_track(
    kind: MediaKind,
    codec: CodecId,
    enhanced: bool,
    frame_type: u8,
    packet: PacketKind,
    composition_time_ms: i32,
    body: Range<usize>,
) -> MediaTag {
    MediaTag {
        kind,
        codec,
        enhanced,
        frame_type,
        keyframe: kind == MediaKind::Video && is_key_frame_type(frame_type) && packet.is_media(),
        sequence_header: packet.is_configuration(),
        sequence_end: packet == PacketKind::SequenceEnd,
        packet,
        composition_time_ms,
        body,
        multitrack: None,
        tracks: Vec::new(),
    }
}

/// Frame types 1 (key frame) and 4 (generated key frame, server-side).
fn is_key_frame_type(frame_type: u8) -> bool {
    frame_type == 1 || frame_type == 4
}

/// Reads the tracks of an E-RTMP multitrack tag; `cur` is just past the multitrack byte.
fn parse_tracks(
    kind: MediaKind,
    cur: &mut Cursor<'_>,
    multitrack_type: u8,
    packet_type: u8,
    packet: PacketKind,
    frame_type: u8,
) -> Result<MediaTag, FlvError> {
    let multitrack = match multitrack_type {
        0 => MultitrackType::OneTrack,
        1 => MultitrackType::ManyTracks,
        2 => MultitrackType::ManyTracksManyCodecs,
        other => return Err(FlvError::ReservedMultitrackType(other)),
    };
    let shared_codec = if multitrack != MultitrackType::ManyTracksManyCodecs {
        Some(cur.fourcc()?)
    } else {
        None
    };
    let mut tracks = Vec::new();
    loop {
        if tracks.len() >= MAX_TRACKS_PER_TAG {
            return Err(FlvError::TooManyTracks);
        }
        let code = match shared_codec {
            Some(code) => code,
            None => cur.fourcc()?,
        };
        let track_id = cur.u8("track id")?;
        let body_end = if multitrack == MultitrackType::OneTrack {
            cur.data.len()
        } else {
            let size = cur.u24("track size")? as usize;
            cur.pos
                .checked_add(size)
                .filter(|&end| end <= cur.data.len())
                .ok_or(FlvError::TrackSizeExceedsTag)?
        };
        // Composition time is inside the track body.
        let mut body = Cursor {
            data: cur.data.get(..body_end).unwrap_or(&[]),
            pos: cur.pos,
        };
        let composition_time_ms = match kind {
            MediaKind::Video => video_composition_time(&mut body, packet_type, code)?,
            MediaKind::Audio => 0,
        };
        tracks.push(TrackInfo {
            track_id,
            codec: CodecId::FourCc(code),
            composition_time_ms,
            body: body.pos..body_end,
        });
        cur.pos = body_end;
        if multitrack == MultitrackType::OneTrack || cur.remaining() == 0 {
            break;
        }
    }
    let first = tracks.first().cloned().ok_or(FlvError::TooShort {
        what: "multitrack",
        needed: 1,
        len: cur.data.len(),
    })?;
    let mut tag = single_track(
        kind,
        first.codec,
        true,
        frame_type,
        packet,
        first.composition_time_ms,
        first.body.clone(),
    );
    tag.multitrack = Some(multitrack);
    tag.tracks = tracks;
    Ok(tag)
}

/// AAC AudioSpecificConfig essentials (ISO/IEC 14496-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type: 1 Main, 2 LC, 5 HE (SBR), 29 HE v2 (PS), …
    pub object_type: u8,
    pub sample_rate_hz: u32,
    /// Channel configuration (0 = defined in the stream, 1–7 standard layouts).
    pub channel_configuration: u8,
}

const AAC_SAMPLE_RATES_HZ: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// MSB-first bit reader with bounds checks.
struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn read(&mut self, bits: u32) -> Result<u32, FlvError> {
        let mut value = 0u32;
        for _ in 0..bits {
            let byte = self.data.get(self.bit / 8).ok_or(FlvError::TooShort {
                what: "AudioSpecificConfig",
                needed: self.bit / 8 + 1,
                len: self.data.len(),
            })?;
            let shift = 7 - (self.bit % 8) as u32;
            value = (value << 1) | u32::from((byte >> shift) & 1);
            self.bit = self.bit.saturating_add(1);
        }
        Ok(value)
    }
}

/// Decodes an AAC AudioSpecificConfig (the body of an AAC sequence header).
pub fn parse_aac_config(data: &[u8]) -> Result<AacConfig, FlvError> {
    let mut bits = BitReader { data, bit: 0 };
    let mut object_type = bits.read(5)?;
    if object_type == 31 {
        object_type = 32 + bits.read(6)?;
    }
    let index = bits.read(4)?;
    let sample_rate_hz = if index == 15 {
        bits.read(24)?
    } else {
        *AAC_SAMPLE_RATES_HZ
            .get(index as usize)
            .ok_or(FlvError::ReservedSampleRate(index as u8))?
    };
    let channel_configuration = bits.read(4)? as u8;
    Ok(AacConfig {
        object_type: u8::try_from(object_type).unwrap_or(u8::MAX),
        sample_rate_hz,
        channel_configuration,
    })
}

/// Profile and level of an H.264 or H.265 decoder configuration record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoProfileLevel {
    /// profile_idc (AVC: 66 Baseline, 77 Main, 100 High; HEVC: 1 Main, 2 Main 10).
    pub profile: u8,
    /// AVC: level × 10 (e.g. 41); HEVC: level × 30 (e.g. 123 = 4.1).
    pub level: u8,
}

/// Reads profile and level from an AVCDecoderConfigurationRecord (AVC sequence header body).
pub fn parse_avc_config(data: &[u8]) -> Result<VideoProfileLevel, FlvError> {
    match data.get(..4) {
        Some(&[_version, profile, _compatibility, level]) => {
            Ok(VideoProfileLevel { profile, level })
        }
        _ => Err(FlvError::TooShort {
            what: "AVCDecoderConfigurationRecord",
            needed: 4,
            len: data.len(),
        }),
    }
}

/// Reads profile and level from an HEVCDecoderConfigurationRecord (HEVC sequence header body).
pub fn parse_hevc_config(data: &[u8]) -> Result<VideoProfileLevel, FlvError> {
    match (data.get(1), data.get(12)) {
        (Some(&profile_byte), Some(&level)) => Ok(VideoProfileLevel {
            profile: profile_byte & 0x1F,
            level,
        }),
        _ => Err(FlvError::TooShort {
            what: "HEVCDecoderConfigurationRecord",
            needed: 13,
            len: data.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn legacy_avc_sequence_header_and_frames() {
        let seq = [0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x29];
        let tag = parse_video_tag(&seq).unwrap();
        assert_eq!(tag.codec, CodecId::AVC);
        assert!(tag.sequence_header);
        assert!(!tag.keyframe, "a sequence header is not a coded key frame");
        assert_eq!(tag.frame_type, 1);
        assert_eq!(tag.body, 5..9);
        assert_eq!(
            parse_avc_config(&seq[tag.body.clone()]).unwrap(),
            VideoProfileLevel {
                profile: 100,
                level: 0x29
            }
        );

        let key = [0x17, 0x01, 0x00, 0x00, 0x42, 0xAA];
        let tag = parse_video_tag(&key).unwrap();
        assert!(tag.keyframe);
        assert!(!tag.sequence_header);
        assert_eq!(tag.composition_time_ms, 0x42);
        assert_eq!(tag.packet, PacketKind::CodedFrames);

        let inter = [0x27, 0x01, 0xFF, 0xFF, 0xF6, 0xAA];
        let tag = parse_video_tag(&inter).unwrap();
        assert!(!tag.keyframe);
        assert_eq!(tag.composition_time_ms, -10);

        let end = [0x17, 0x02, 0, 0, 0];
        assert!(parse_video_tag(&end).unwrap().sequence_end);

        // Legacy HEVC (id 12) reads like AVC.
        let tag = parse_video_tag(&[0x1C, 0x00, 0, 0, 0]).unwrap();
        assert_eq!(tag.codec, CodecId::HEVC_LEGACY);
        assert!(tag.sequence_header);

        // Older codecs: raw frames.
        let tag = parse_video_tag(&[0x12, 0xAB]).unwrap();
        assert_eq!(tag.codec, CodecId::LegacyVideo(2));
        assert!(tag.keyframe);
        assert_eq!(tag.packet, PacketKind::Raw);

        // Command frame.
        let tag = parse_video_tag(&[0x57, 0x01]).unwrap();
        assert_eq!(tag.packet, PacketKind::Command(1));
        assert!(!tag.keyframe && !tag.is_coded_frame());
    }

    fn enhanced_video(frame_type: u8, packet_type: u8, code: &[u8; 4], rest: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | (frame_type << 4) | packet_type];
        v.extend_from_slice(code);
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn enhanced_video_codecs() {
        for code in [b"hvc1", b"av01", b"vp09", b"avc1"] {
            let seq = enhanced_video(1, 0, code, &[1, 2, 3]);
            let tag = parse_video_tag(&seq).unwrap();
            assert!(tag.enhanced);
            assert_eq!(tag.codec, CodecId::FourCc(FourCc(*code)));
            assert!(tag.sequence_header);
            assert!(!tag.keyframe);
            assert_eq!(tag.body, 5..8);

            // CodedFrames: AVC/HEVC carry a composition time, AV1/VP9 do not.
            let has_ct = code == b"hvc1" || code == b"avc1";
            let frame = enhanced_video(1, 1, code, &[0, 0, 40, 9, 9]);
            let tag = parse_video_tag(&frame).unwrap();
            assert!(tag.keyframe);
            assert_eq!(tag.composition_time_ms, if has_ct { 40 } else { 0 });
            assert_eq!(tag.body.start, if has_ct { 8 } else { 5 });

            // CodedFramesX: never a composition time.
            let frame = enhanced_video(2, 3, code, &[9, 9]);
            let tag = parse_video_tag(&frame).unwrap();
            assert!(!tag.keyframe);
            assert_eq!(tag.packet, PacketKind::CodedFrames);
            assert_eq!(tag.body, 5..7);
        }
        let tag = parse_video_tag(&enhanced_video(1, 2, b"av01", &[])).unwrap();
        assert!(tag.sequence_end);
        let tag = parse_video_tag(&enhanced_video(1, 4, b"hvc1", &[0x02])).unwrap();
        assert_eq!(tag.packet, PacketKind::Metadata);
        assert!(!tag.keyframe);
        let tag = parse_video_tag(&enhanced_video(1, 5, b"av01", &[])).unwrap();
        assert!(tag.sequence_header);
        // Reserved packet type.
        assert!(matches!(
            parse_video_tag(&enhanced_video(1, 9, b"av01", &[])),
            Err(FlvError::ReservedPacketType { value: 9, .. })
        ));
        // Enhanced command frame: no FourCC.
        let tag = parse_video_tag(&[0x80 | (5 << 4) | 1, 0]).unwrap();
        assert_eq!(tag.packet, PacketKind::Command(0));
        assert_eq!(tag.codec, CodecId::Unspecified);
    }

    #[test]
    fn enhanced_video_mod_ex_is_skipped() {
        // ModEx (7) with 3 bytes of data, then packet type 1 (CodedFrames), hvc1, CT 5.
        let mut v = vec![0x80 | (1 << 4) | 7, 2, 0xA, 0xB, 0xC, 0x01];
        v.extend_from_slice(b"hvc1");
        v.extend_from_slice(&[0, 0, 5, 0xEE]);
        let tag = parse_video_tag(&v).unwrap();
        assert!(tag.keyframe);
        assert_eq!(tag.composition_time_ms, 5);
        assert_eq!(tag.body, 13..14);
        // 16-bit ModEx size: size byte 255 → UI16 + 1.
        let mut v = vec![0x80 | (1 << 4) | 7, 255, 0x01, 0x00];
        v.extend_from_slice(&[0u8; 257]);
        v.push(0x00);
        v.extend_from_slice(b"av01");
        let tag = parse_video_tag(&v).unwrap();
        assert!(tag.sequence_header);
        // Truncated ModEx.
        assert!(parse_video_tag(&[0x80 | 7, 10, 1]).is_err());
    }

    #[test]
    fn enhanced_video_multitrack() {
        // Many tracks, one codec (hvc1), CodedFrames key frame; track 0 and track 1.
        let mut v = vec![0x80 | (1 << 4) | 6, (1 << 4) | 1];
        v.extend_from_slice(b"hvc1");
        v.push(0); // track 0
        v.extend_from_slice(&[0, 0, 5]);
        v.extend_from_slice(&[0, 0, 7, 0xA1, 0xA2]); // CT 7 + 2 bytes
        v.push(1); // track 1
        v.extend_from_slice(&[0, 0, 4]);
        v.extend_from_slice(&[0, 0, 9, 0xB1]);
        let tag = parse_video_tag(&v).unwrap();
        assert_eq!(tag.multitrack, Some(MultitrackType::ManyTracks));
        assert!(tag.keyframe);
        assert_eq!(tag.tracks.len(), 2);
        assert_eq!(tag.tracks[0].composition_time_ms, 7);
        assert_eq!(tag.tracks[1].track_id, 1);
        assert_eq!(tag.tracks[1].composition_time_ms, 9);
        assert_eq!(&v[tag.tracks[1].body.clone()], &[0xB1]);
        assert_eq!(tag.codec, CodecId::FourCc(FourCc::HEVC));

        // Many tracks, many codecs, sequence start.
        let mut v = vec![0x80 | (1 << 4) | 6, (2 << 4)];
        v.extend_from_slice(b"av01");
        v.push(0);
        v.extend_from_slice(&[0, 0, 2, 1, 2]);
        v.extend_from_slice(b"vp09");
        v.push(1);
        v.extend_from_slice(&[0, 0, 1, 3]);
        let tag = parse_video_tag(&v).unwrap();
        assert!(tag.sequence_header);
        assert_eq!(tag.tracks[1].codec, CodecId::FourCc(FourCc::VP9));

        // One track: no size, the rest is the body.
        let mut v = vec![0x80 | (2 << 4) | 6, 3];
        v.extend_from_slice(b"av01");
        v.extend_from_slice(&[5, 0xCC, 0xDD]);
        let tag = parse_video_tag(&v).unwrap();
        assert_eq!(tag.multitrack, Some(MultitrackType::OneTrack));
        assert_eq!(tag.tracks[0].track_id, 5);
        assert_eq!(tag.body, 7..9);
        assert!(!tag.keyframe);

        // Track size beyond the tag.
        let mut v = vec![0x80 | (1 << 4) | 6, (1 << 4) | 1];
        v.extend_from_slice(b"av01");
        v.extend_from_slice(&[0, 0, 0, 50, 1]);
        assert_eq!(parse_video_tag(&v), Err(FlvError::TrackSizeExceedsTag));
        // Nested multitrack and reserved multitrack type.
        assert_eq!(
            parse_video_tag(&[0x80 | 6, 0x16, 0, 0, 0, 0]),
            Err(FlvError::NestedMultitrack)
        );
        assert_eq!(
            parse_video_tag(&[0x80 | 6, 0x31, b'a', b'v', b'0', b'1', 0]),
            Err(FlvError::ReservedMultitrackType(3))
        );
    }

    #[test]
    fn multitrack_track_count_is_bounded() {
        let mut v = vec![0x80 | (1 << 4) | 6, (1 << 4) | 3];
        v.extend_from_slice(b"av01");
        for id in 0..100u8 {
            v.extend_from_slice(&[id, 0, 0, 0]);
        }
        assert_eq!(parse_video_tag(&v), Err(FlvError::TooManyTracks));
    }

    #[test]
    fn legacy_aac_and_other_audio() {
        let seq = [0xAF, 0x00, 0x12, 0x10];
        let tag = parse_audio_tag(&seq).unwrap();
        assert_eq!(tag.codec, CodecId::AAC);
        assert!(tag.sequence_header);
        assert!(!tag.keyframe);
        let config = parse_aac_config(&seq[tag.body.clone()]).unwrap();
        assert_eq!(
            config,
            AacConfig {
                object_type: 2,
                sample_rate_hz: 44_100,
                channel_configuration: 2
            }
        );
        let raw = parse_audio_tag(&[0xAF, 0x01, 0xDE, 0xAD]).unwrap();
        assert_eq!(raw.packet, PacketKind::CodedFrames);
        assert_eq!(raw.body, 2..4);
        let mp3 = parse_audio_tag(&[0x2F, 0xFF]).unwrap();
        assert_eq!(mp3.codec, CodecId::LegacyAudio(2));
        assert_eq!(mp3.packet, PacketKind::Raw);
        assert_eq!(mp3.codec.name(), "MP3");
    }

    #[test]
    fn aac_config_forms() {
        // HE-AAC (5), 48 kHz (3), mono.
        assert_eq!(
            parse_aac_config(&[0b0010_1001, 0b1000_1000]).unwrap(),
            AacConfig {
                object_type: 5,
                sample_rate_hz: 48_000,
                channel_configuration: 1
            }
        );
        // Escaped object type (31 → 32 + 6 bits) and explicit 24-bit frequency.
        let mut bits: u64 = 0;
        let mut n = 0;
        let mut push = |v: u64, width: u32| {
            bits = (bits << width) | v;
            n += width;
        };
        push(31, 5);
        push(10, 6); // object type 42
        push(15, 4);
        push(50_000, 24);
        push(2, 4);
        let total = n.div_ceil(8) * 8;
        let bytes = (bits << (total - n)).to_be_bytes();
        let data = &bytes[8 - (total / 8) as usize..];
        assert_eq!(
            parse_aac_config(data).unwrap(),
            AacConfig {
                object_type: 42,
                sample_rate_hz: 50_000,
                channel_configuration: 2
            }
        );
        assert!(parse_aac_config(&[0x12]).is_err());
        assert_eq!(
            parse_aac_config(&[0b0001_0110, 0b1000_0000]),
            Err(FlvError::ReservedSampleRate(13))
        );
    }

    #[test]
    fn enhanced_audio() {
        for code in [b"Opus", b"fLaC", b"ac-3", b"ec-3", b"mp4a"] {
            let mut v = vec![0x90];
            v.extend_from_slice(code);
            v.extend_from_slice(&[1, 2]);
            let tag = parse_audio_tag(&v).unwrap();
            assert!(tag.enhanced && tag.sequence_header);
            assert_eq!(tag.codec, CodecId::FourCc(FourCc(*code)));
            assert_eq!(tag.body, 5..7);
            v[0] = 0x91;
            let tag = parse_audio_tag(&v).unwrap();
            assert_eq!(tag.packet, PacketKind::CodedFrames);
            assert!(!tag.keyframe);
        }
        let mut v = vec![0x94];
        v.extend_from_slice(b"Opus");
        v.extend_from_slice(&[1, 2]);
        assert!(parse_audio_tag(&v).unwrap().sequence_header);
        assert!(matches!(
            parse_audio_tag(&[0x93, b'O', b'p', b'u', b's']),
            Err(FlvError::ReservedPacketType { value: 3, .. })
        ));
        // Multitrack audio: many tracks, Opus, coded frames.
        let mut v = vec![0x95, (1 << 4) | 1];
        v.extend_from_slice(b"Opus");
        v.extend_from_slice(&[0, 0, 0, 2, 0xA, 0xB]);
        v.extend_from_slice(&[1, 0, 0, 1, 0xC]);
        let tag = parse_audio_tag(&v).unwrap();
        assert_eq!(tag.tracks.len(), 2);
        assert_eq!(tag.multitrack, Some(MultitrackType::ManyTracks));
        assert_eq!(&v[tag.tracks[1].body.clone()], &[0xC]);
        // Audio ModEx skipped.
        let mut v = vec![0x97, 0, 0xFF, 0x00];
        v.extend_from_slice(b"mp4a");
        assert!(parse_audio_tag(&v).unwrap().sequence_header);
        assert_eq!(
            parse_audio_tag(&[0x95, 0x15]),
            Err(FlvError::NestedMultitrack)
        );
    }

    #[test]
    fn too_short_tags_are_errors() {
        assert!(parse_video_tag(&[]).is_err());
        assert!(parse_audio_tag(&[]).is_err());
        assert!(parse_video_tag(&[0x17]).is_err());
        assert!(parse_video_tag(&[0x17, 0x01, 0x00]).is_err());
        assert!(parse_video_tag(&[0x91, b'h', b'v']).is_err());
        assert!(parse_video_tag(&[0x91, b'h', b'v', b'c', b'1', 0]).is_err());
        assert!(parse_video_tag(&[0x57]).is_err());
        assert!(parse_audio_tag(&[0xAF]).is_err());
        assert!(parse_audio_tag(&[0x90, b'O']).is_err());
        assert!(parse_video_tag(&[0x96, 0x10]).is_err());
        assert!(parse_avc_config(&[1, 2]).is_err());
        assert!(parse_hevc_config(&[1; 12]).is_err());
        assert!(parse_hevc_config(&[1; 13]).is_ok());
    }

    #[test]
    fn fourcc_display() {
        assert_eq!(FourCc::HEVC.to_string(), "hvc1");
        assert_eq!(FourCc([0, 1, 2, 3]).to_string(), "0x00010203");
        assert_eq!(CodecId::FourCc(FourCc::AV1).name(), "av01");
    }

    proptest! {
        #[test]
        fn arbitrary_tags_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            for tag in [parse_video_tag(&bytes), parse_audio_tag(&bytes)].into_iter().flatten() {
                prop_assert!(tag.body.start <= tag.body.end && tag.body.end <= bytes.len());
                prop_assert!(tag.tracks.len() <= MAX_TRACKS_PER_TAG);
                for track in &tag.tracks {
                    prop_assert!(track.body.start <= track.body.end && track.body.end <= bytes.len());
                }
            }
            let _ = parse_aac_config(&bytes);
            let _ = parse_avc_config(&bytes);
            let _ = parse_hevc_config(&bytes);
        }

        #[test]
        fn enhanced_shaped_tags_never_panic(
            first in prop_oneof![0x80u8..=0xFF, 0x90u8..=0x9F],
            second in any::<u8>(),
            rest in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = vec![first, second];
            bytes.extend_from_slice(&rest);
            let _ = parse_video_tag(&bytes);
            let _ = parse_audio_tag(&bytes);
        }
    }
}
