//! What the benchmark's publisher sends: the tags of a real FLV file, or a synthetic stream with
//! valid AVC and AAC decoder configuration, keyframes every two seconds and frame sizes that
//! make a given bitrate.
//!
//! A [`Clip`] is a finite list of tags with timestamps from 0; the publisher loops it (shifting
//! timestamps by [`Clip::duration_ms`] each time and sending the sequence headers and metadata
//! only once), so a short clip serves a run of any length.

use std::path::Path;

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use super::scanner::{classify_video, VideoKind};
use crate::protocol::amf0::{self, Value};

/// Audio or video tag of a clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// 8 audio, 9 video (RTMP message type ids, the same as FLV tag types).
    pub type_id: u8,
    pub timestamp_ms: u32,
    pub payload: Bytes,
}

impl Tag {
    /// Sequence headers go out once, before the first loop.
    pub fn is_sequence_header(&self) -> bool {
        match self.type_id {
            9 => {
                classify_video(self.payload.get(..2).unwrap_or(&self.payload))
                    == VideoKind::SequenceHeader
            }
            // AAC (sound format 10) with packet type 0.
            _ => {
                self.payload.first().map(|b| b >> 4) == Some(10) && self.payload.get(1) == Some(&0)
            }
        }
    }
}

/// A finite stream the publisher loops.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Where it came from, for the report (`synthetic 2500 kb/s 30 fps` or the file).
    pub description: String,
    /// The AMF0 body of `onMetaData` (`"onMetaData", {…}`), sent as `@setDataFrame`.
    pub metadata: Option<Bytes>,
    /// Tags in sending order, timestamps rebased to start at 0.
    pub tags: Vec<Tag>,
    /// Time from the first tag of one loop to the first tag of the next.
    pub duration_ms: u32,
}

impl Clip {
    /// Reads every audio, video and script tag of an FLV file (loaded whole: a benchmark clip
    /// is tens of MB at most).
    pub fn from_flv(path: &Path) -> Result<Clip> {
        let data =
            std::fs::read(path).with_context(|| format!("while reading {}", path.display()))?;
        Self::parse_flv(&data, &path.display().to_string())
            .with_context(|| format!("in FLV file {}", path.display()))
    }

    fn parse_flv(data: &[u8], name: &str) -> Result<Clip> {
        if data.get(..3) != Some(b"FLV") {
            bail!("not an FLV file (no 'FLV' signature)");
        }
        let header_len = data
            .get(5..9)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .context("truncated FLV header")?;
        let bytes = Bytes::copy_from_slice(data);
        // The header, then PreviousTagSize0.
        let mut pos = header_len + 4;
        let mut tags = Vec::new();
        let mut metadata = None;
        while let Some(h) = data.get(pos..pos + 11) {
            let tag_type = h[0] & 0x1F;
            let encrypted = h[0] & 0x20 != 0;
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            let body = pos + 11;
            if body + size > data.len() {
                break; // a truncated last tag (a recording cut short)
            }
            let payload = bytes.slice(body..body + size);
            match tag_type {
                8 | 9 if !encrypted && size > 0 => tags.push(Tag {
                    type_id: tag_type,
                    timestamp_ms: ts,
                    payload,
                }),
                18 if metadata.is_none() => metadata = Some(payload),
                _ => {}
            }
            pos = body + size + 4;
        }
        if !tags.iter().any(|t| t.type_id == 9) {
            bail!("no video tags");
        }
        let first = tags.iter().map(|t| t.timestamp_ms).min().unwrap_or(0);
        for t in &mut tags {
            t.timestamp_ms -= first;
        }
        // One loop lasts until the frame after the last video frame (and past every tag, so
        // that timestamps never go backwards across the loop).
        let last_video = tags
            .iter()
            .filter(|t| t.type_id == 9)
            .map(|t| t.timestamp_ms)
            .max()
            .unwrap_or(0);
        let last = tags.iter().map(|t| t.timestamp_ms).max().unwrap_or(0);
        let duration_ms = (last_video + typical_video_interval_ms(&tags)).max(last + 1);
        Ok(Clip {
            description: name.to_owned(),
            metadata,
            tags,
            duration_ms,
        })
    }

    /// A synthetic stream: `video_kbps` of H.264 (baseline, 1280×720 SPS/PPS) at `fps`, a
    /// keyframe every 2 s carrying four times a P frame's bytes, sizes jittered ±15 %
    /// (deterministically, so every frame is recognisable by its length), and AAC-LC 44.1 kHz
    /// stereo at 128 kb/s. `seconds` long (whole GOPs), looped by the publisher.
    pub fn synthetic(video_kbps: u32, fps: f64, seconds: u32) -> Result<Clip> {
        if !(fps.is_finite() && (1.0..=240.0).contains(&fps)) {
            bail!("--fps must be between 1 and 240, got {fps}");
        }
        if !(16..=1_000_000).contains(&video_kbps) {
            bail!("--synthetic-kbps must be between 16 and 1000000, got {video_kbps}");
        }
        const WIDTH: u32 = 1280;
        const HEIGHT: u32 = 720;
        const GOP_S: f64 = 2.0;
        const AUDIO_KBPS: f64 = 128.0;
        const SAMPLE_RATE: f64 = 44_100.0;
        let keyint = (fps * GOP_S).round().max(1.0) as u32;
        let gops = (f64::from(seconds.max(2)) / GOP_S).ceil().max(1.0) as u32;
        let frames = keyint * gops;
        let gop_bytes = f64::from(video_kbps) * 1000.0 / 8.0 * GOP_S;
        let p_bytes = gop_bytes / (f64::from(keyint) - 1.0 + 4.0);
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut jitter = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            0.85 + (rng % 3001) as f64 / 10_000.0
        };

        let mut tags = Vec::new();
        let (sps, pps) = (avc_sps(WIDTH, HEIGHT), avc_pps());
        tags.push(Tag {
            type_id: 9,
            timestamp_ms: 0,
            payload: avc_sequence_header(&sps, &pps),
        });
        tags.push(Tag {
            type_id: 8,
            timestamp_ms: 0,
            // AAC LC (2), 44.1 kHz (index 4), 2 channels.
            payload: Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]),
        });
        let duration_ms = (f64::from(frames) * 1000.0 / fps).round() as u32;
        let audio_frame_ms = 1024.0 * 1000.0 / SAMPLE_RATE;
        let audio_bytes = (AUDIO_KBPS * 1000.0 / 8.0 * audio_frame_ms / 1000.0).round() as usize;
        let mut video = (0..frames).map(|i| {
            let keyframe = i % keyint == 0;
            let size = (p_bytes * if keyframe { 4.0 } else { 1.0 } * jitter()).max(16.0) as usize;
            let ts = (f64::from(i) * 1000.0 / fps).round() as u32;
            Tag {
                type_id: 9,
                timestamp_ms: ts,
                payload: avc_frame(keyframe, size),
            }
        });
        let mut audio = (0..)
            .map(|n: u32| (f64::from(n) * audio_frame_ms).round() as u32)
            .take_while(|&ts| ts < duration_ms)
            .map(|ts| {
                let mut p = vec![0x5Au8; audio_bytes.max(4)];
                p[0] = 0xAF;
                p[1] = 0x01;
                Tag {
                    type_id: 8,
                    timestamp_ms: ts,
                    payload: Bytes::from(p),
                }
            })
            .peekable();
        // Interleave by timestamp, video first on ties (as muxers do).
        let mut next_video = video.next();
        loop {
            match (&next_video, audio.peek()) {
                (Some(v), Some(a)) if a.timestamp_ms < v.timestamp_ms => {
                    tags.extend(audio.next());
                }
                (Some(_), _) => {
                    tags.extend(next_video.take());
                    next_video = video.next();
                }
                (None, Some(_)) => tags.extend(audio.next()),
                (None, None) => break,
            }
        }
        let metadata = amf0::to_bytes(&[
            Value::string("onMetaData"),
            Value::EcmaArray(vec![
                ("duration".into(), Value::Number(0.0)),
                ("width".into(), Value::Number(f64::from(WIDTH))),
                ("height".into(), Value::Number(f64::from(HEIGHT))),
                ("videodatarate".into(), Value::Number(f64::from(video_kbps))),
                ("framerate".into(), Value::Number(fps)),
                ("videocodecid".into(), Value::Number(7.0)),
                ("audiodatarate".into(), Value::Number(AUDIO_KBPS)),
                ("audiosamplerate".into(), Value::Number(SAMPLE_RATE)),
                ("audiosamplesize".into(), Value::Number(16.0)),
                ("stereo".into(), Value::Boolean(true)),
                ("audiocodecid".into(), Value::Number(10.0)),
                (
                    "encoder".into(),
                    Value::string("rtmp-lab bench (synthetic)"),
                ),
            ]),
        ]);
        Ok(Clip {
            description: format!("synthetic H.264 {video_kbps} kb/s {fps} fps + AAC 128 kb/s"),
            metadata: Some(metadata),
            tags,
            duration_ms,
        })
    }

    /// Average media bitrate of one loop (payload bytes, no RTMP framing), kb/s.
    pub fn payload_kbps(&self) -> f64 {
        let bytes: usize = self
            .tags
            .iter()
            .filter(|t| !t.is_sequence_header())
            .map(|t| t.payload.len())
            .sum();
        bytes as f64 * 8.0 / f64::from(self.duration_ms.max(1))
    }
}

/// The most common gap between consecutive video timestamps (33 ms at 30 fps).
fn typical_video_interval_ms(tags: &[Tag]) -> u32 {
    let mut gaps: Vec<u32> = tags
        .iter()
        .filter(|t| t.type_id == 9 && !t.is_sequence_header())
        .map(|t| t.timestamp_ms)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .filter(|&g| g > 0)
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(33)
}

/// Writes bits most significant first; Exp-Golomb codes for H.264 parameter sets.
struct BitWriter {
    bytes: Vec<u8>,
    bits: u32,
}

impl BitWriter {
    fn new() -> Self {
        BitWriter {
            bytes: Vec::new(),
            bits: 0,
        }
    }

    fn bit(&mut self, b: bool) {
        if self.bits.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if b {
            if let Some(last) = self.bytes.last_mut() {
                *last |= 0x80 >> (self.bits % 8);
            }
        }
        self.bits += 1;
    }

    fn bits(&mut self, value: u32, n: u32) {
        for i in (0..n).rev() {
            self.bit((value >> i) & 1 == 1);
        }
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self, value: u32) {
        let v = u64::from(value) + 1;
        let len = 64 - v.leading_zeros();
        for _ in 1..len {
            self.bit(false);
        }
        for i in (0..len).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    /// RBSP trailing bits, then emulation prevention (00 00 0x → 00 00 03 0x for x ≤ 3).
    fn finish_nal(mut self, nal_header: u8) -> Vec<u8> {
        self.bit(true);
        while !self.bits.is_multiple_of(8) {
            self.bit(false);
        }
        let mut out = vec![nal_header];
        let mut zeros = 0;
        for b in self.bytes {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        out
    }
}

/// A baseline-profile SPS (level 3.1) for `width`×`height` (cropped to the size when it is not
/// a multiple of 16).
fn avc_sps(width: u32, height: u32) -> Vec<u8> {
    let mbs_w = width.div_ceil(16).max(1);
    let mbs_h = height.div_ceil(16).max(1);
    let mut w = BitWriter::new();
    w.bits(66, 8); // profile_idc: baseline
    w.bits(0xC0, 8); // constraint_set0 and 1
    w.bits(31, 8); // level_idc 3.1
    w.ue(0); // seq_parameter_set_id
    w.ue(0); // log2_max_frame_num_minus4
    w.ue(2); // pic_order_cnt_type
    w.ue(1); // max_num_ref_frames
    w.bit(false); // gaps_in_frame_num_value_allowed_flag
    w.ue(mbs_w - 1);
    w.ue(mbs_h - 1);
    w.bit(true); // frame_mbs_only_flag
    w.bit(true); // direct_8x8_inference_flag
    let crop_right = (mbs_w * 16 - width) / 2;
    let crop_bottom = (mbs_h * 16 - height) / 2;
    let cropping = crop_right > 0 || crop_bottom > 0;
    w.bit(cropping);
    if cropping {
        w.ue(0);
        w.ue(crop_right);
        w.ue(0);
        w.ue(crop_bottom);
    }
    w.bit(false); // vui_parameters_present_flag
    w.finish_nal(0x67)
}

fn avc_pps() -> Vec<u8> {
    let mut w = BitWriter::new();
    w.ue(0); // pic_parameter_set_id
    w.ue(0); // seq_parameter_set_id
    w.bit(false); // entropy_coding_mode_flag (CAVLC)
    w.bit(false); // bottom_field_pic_order_in_frame_present_flag
    w.ue(0); // num_slice_groups_minus1
    w.ue(0); // num_ref_idx_l0_default_active_minus1
    w.ue(0); // num_ref_idx_l1_default_active_minus1
    w.bit(false); // weighted_pred_flag
    w.bits(0, 2); // weighted_bipred_idc
    w.ue(0); // pic_init_qp_minus26 (se(0) is ue(0))
    w.ue(0); // pic_init_qs_minus26
    w.ue(0); // chroma_qp_index_offset
    w.bit(true); // deblocking_filter_control_present_flag
    w.bit(false); // constrained_intra_pred_flag
    w.bit(false); // redundant_pic_cnt_present_flag
    w.finish_nal(0x68)
}

/// FLV video tag body: AVC sequence header with an AVCDecoderConfigurationRecord.
fn avc_sequence_header(sps: &[u8], pps: &[u8]) -> Bytes {
    let mut p = vec![0x17, 0x00, 0, 0, 0];
    p.extend_from_slice(&[
        1,
        sps.get(1).copied().unwrap_or(66),
        sps.get(2).copied().unwrap_or(0),
        sps.get(3).copied().unwrap_or(31),
        0xFF, // 4-byte NAL unit lengths
        0xE1, // one SPS
    ]);
    p.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    p.extend_from_slice(sps);
    p.push(1);
    p.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    p.extend_from_slice(pps);
    Bytes::from(p)
}

/// FLV video tag body of `size` bytes: one NAL unit (IDR or non-IDR slice) of filler.
fn avc_frame(keyframe: bool, size: usize) -> Bytes {
    let size = size.max(10);
    let mut p = vec![0xA5u8; size];
    p[0] = if keyframe { 0x17 } else { 0x27 };
    p[1] = 0x01;
    p[2..5].copy_from_slice(&[0, 0, 0]);
    let nal_len = (size - 9) as u32;
    p[5..9].copy_from_slice(&nal_len.to_be_bytes());
    p[9] = if keyframe { 0x65 } else { 0x41 };
    Bytes::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flv;

    #[test]
    fn synthetic_stream_has_the_asked_bitrate_and_valid_headers() {
        let clip = Clip::synthetic(2500, 30.0, 10).unwrap();
        assert_eq!(clip.duration_ms, 10_000);
        let video: Vec<&Tag> = clip.tags.iter().filter(|t| t.type_id == 9).collect();
        assert_eq!(video.len(), 301);
        assert!(video[0].is_sequence_header());
        let tag = flv::parse_video_tag(&video[0].payload).unwrap();
        assert!(tag.sequence_header);
        let tag = flv::parse_video_tag(&video[1].payload).unwrap();
        assert!(tag.keyframe && !tag.sequence_header);
        assert!(!flv::parse_video_tag(&video[2].payload).unwrap().keyframe);
        let keyframes = video
            .iter()
            .filter(|t| classify_video(&t.payload[..2]) == VideoKind::Frame { keyframe: true })
            .count();
        assert_eq!(keyframes, 5);
        let audio = flv::parse_audio_tag(&clip.tags[1].payload).unwrap();
        assert!(audio.sequence_header);
        let kbps = clip.payload_kbps();
        assert!((kbps - 2628.0).abs() < 80.0, "{kbps}");
        // Timestamps never go backwards.
        assert!(clip
            .tags
            .windows(2)
            .all(|w| w[1].timestamp_ms >= w[0].timestamp_ms));
        // Frame sizes differ (the generator recognises frames by length).
        let mut sizes: Vec<usize> = video.iter().map(|t| t.payload.len()).collect();
        sizes.sort_unstable();
        sizes.dedup();
        assert!(sizes.len() > 250, "{}", sizes.len());
    }

    #[test]
    fn sps_is_exp_golomb_coded() {
        let sps = avc_sps(1280, 720);
        assert_eq!(&sps[..4], &[0x67, 66, 0xC0, 31]);
        // ue(0) ue(0) ue(2)=011 ue(1)=010 0 ue(79) …: first byte after level = 1 1 011 010
        assert_eq!(sps[4] >> 2, 0b110110);
        let cropped = avc_sps(1920, 1080);
        assert_ne!(cropped, sps);
    }

    #[test]
    fn flv_files_are_read_and_rebased() {
        let clip = Clip::synthetic(500, 25.0, 4).unwrap();
        let mut file = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
        let mut put = |type_id: u8, ts: u32, body: &[u8]| {
            let len = body.len() as u32;
            file.push(type_id);
            file.extend_from_slice(&len.to_be_bytes()[1..]);
            file.extend_from_slice(&(ts + 1000).to_be_bytes()[1..]);
            file.push(((ts + 1000) >> 24) as u8);
            file.extend_from_slice(&[0, 0, 0]);
            file.extend_from_slice(body);
            file.extend_from_slice(&(len + 11).to_be_bytes());
        };
        put(18, 0, clip.metadata.as_ref().unwrap());
        for t in &clip.tags {
            put(t.type_id, t.timestamp_ms, &t.payload);
        }
        let read = Clip::parse_flv(&file, "test.flv").unwrap();
        assert_eq!(read.tags, clip.tags);
        assert_eq!(read.metadata, clip.metadata);
        assert_eq!(read.duration_ms, clip.duration_ms);
        assert!(Clip::parse_flv(b"NOT", "x").is_err());
    }
}
