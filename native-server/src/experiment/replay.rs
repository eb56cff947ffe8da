//! The replay publisher's input: the simulator's encoder decisions — every frame's size, type,
//! timestamps and send time — packed as valid FLV/RTMP tags, so the real network and server
//! are measured with exactly the input the simulation assumed.
//!
//! What is sent, in the simulated order, each at its simulated send time (µs after the
//! experiment's origin, when the publisher started connecting, as in the simulator):
//!
//! - `@setDataFrame onMetaData` with the scenario's resolution, frame rate and bitrates;
//! - an AVC sequence header: an `AVCDecoderConfigurationRecord` (High profile, the level the
//!   resolution and frame rate need) holding a real SPS (width, height, cropping, VUI timing)
//!   and PPS;
//! - an AAC sequence header: the 2-byte AudioSpecificConfig of AAC-LC, stereo;
//! - every frame the simulated encoder did not drop: video as one NAL unit (IDR for keyframes,
//!   else a non-IDR slice whose header carries the I/P/B slice type) whose 4-byte length prefix
//!   plus NAL is exactly the simulated size, with the composition offset pts − dts; audio as a
//!   raw AAC frame of the simulated size.
//!
//! The payload after the slice header is a fixed pattern: nobody decodes it, and its bytes
//! avoid start-code emulation. RTMP timestamps are the simulated ones in whole milliseconds
//! (floor), which is how `sim_core::trace::compare` aligns frames.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sim_core::encoder::FrameType;
use sim_core::scenario::Scenario;
use sim_core::server::MediaKind;
use sim_core::trace::Trace;
use sim_core::Micros;

use super::source::{set_data_frame, FrameMeta, OutTag, ReplayedTimes};
use crate::protocol::amf0::{self, Value};

/// Smallest video NAL the packer writes (length prefix + header + slice header): a simulated
/// frame smaller than this is sent at this size.
pub const MIN_VIDEO_BYTES: u32 = 12;

/// Writes bits MSB first, with exp-Golomb codes.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: u32,
}

impl BitWriter {
    fn bit(&mut self, b: u32) {
        if self.bits.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if b != 0 {
            if let Some(last) = self.bytes.last_mut() {
                *last |= 0x80 >> (self.bits % 8);
            }
        }
        self.bits += 1;
    }

    fn u(&mut self, n: u32, v: u32) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1);
        }
    }

    fn ue(&mut self, v: u32) {
        let x = u64::from(v) + 1;
        let len = 64 - x.leading_zeros();
        for _ in 0..len - 1 {
            self.bit(0);
        }
        for i in (0..len).rev() {
            self.bit(((x >> i) & 1) as u32);
        }
    }

    fn se(&mut self, v: i32) {
        let mapped = if v > 0 {
            (2 * v - 1) as u32
        } else {
            (-2 * v) as u32
        };
        self.ue(mapped);
    }

    /// rbsp_trailing_bits.
    fn finish(mut self) -> Vec<u8> {
        self.bit(1);
        self.bytes
    }
}

/// Inserts emulation prevention bytes (0x03 after two zeros before a byte ≤ 3).
fn escape(rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + 4);
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// H.264 level_idc for a resolution and frame rate (Table A-1: max frame size and macroblock
/// rate), capped at 5.2.
fn level_idc(width: u32, height: u32, fps: f64) -> u8 {
    let mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
    let mbps = (mbs as f64 * fps).ceil() as u64;
    const LEVELS: [(u8, u64, u64); 15] = [
        (10, 99, 1485),
        (11, 396, 3000),
        (12, 396, 6000),
        (13, 396, 11880),
        (20, 396, 11880),
        (21, 792, 19800),
        (22, 1620, 20250),
        (30, 1620, 40500),
        (31, 3600, 108000),
        (32, 5120, 216000),
        (40, 8192, 245760),
        (42, 8704, 522240),
        (50, 22080, 589824),
        (51, 36864, 983040),
        (52, 36864, 2073600),
    ];
    LEVELS
        .iter()
        .find(|(_, fs, rate)| mbs <= *fs && mbps <= *rate)
        .map_or(52, |l| l.0)
}

const PROFILE_HIGH: u8 = 100;

/// A High-profile SPS NAL (with its header byte) for `width`×`height` at `fps`.
fn sps(width: u32, height: u32, fps: f64) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.u(8, u32::from(PROFILE_HIGH));
    w.u(8, 0); // constraint flags
    w.u(8, u32::from(level_idc(width, height, fps)));
    w.ue(0); // seq_parameter_set_id
    w.ue(1); // chroma_format_idc 4:2:0
    w.ue(0); // bit_depth_luma_minus8
    w.ue(0); // bit_depth_chroma_minus8
    w.bit(0); // qpprime_y_zero_transform_bypass_flag
    w.bit(0); // seq_scaling_matrix_present_flag
    w.ue(0); // log2_max_frame_num_minus4
    w.ue(0); // pic_order_cnt_type
    w.ue(2); // log2_max_pic_order_cnt_lsb_minus4
    w.ue(4); // max_num_ref_frames
    w.bit(0); // gaps_in_frame_num_value_allowed_flag
    let mb_w = width.div_ceil(16).max(1);
    let mb_h = height.div_ceil(16).max(1);
    w.ue(mb_w - 1);
    w.ue(mb_h - 1);
    w.bit(1); // frame_mbs_only_flag
    w.bit(1); // direct_8x8_inference_flag
    let crop_right = (mb_w * 16 - width) / 2;
    let crop_bottom = (mb_h * 16 - height) / 2;
    if crop_right > 0 || crop_bottom > 0 {
        w.bit(1);
        w.ue(0);
        w.ue(crop_right);
        w.ue(0);
        w.ue(crop_bottom);
    } else {
        w.bit(0);
    }
    w.bit(1); // vui_parameters_present_flag
    w.bit(0); // aspect_ratio_info_present_flag
    w.bit(0); // overscan_info_present_flag
    w.bit(0); // video_signal_type_present_flag
    w.bit(0); // chroma_loc_info_present_flag
    w.bit(1); // timing_info_present_flag
    w.u(32, 1000); // num_units_in_tick
    let time_scale = (fps * 2000.0).round().clamp(1.0, f64::from(u32::MAX)) as u32;
    w.u(32, time_scale);
    w.bit(1); // fixed_frame_rate_flag
    w.bit(0); // nal_hrd_parameters_present_flag
    w.bit(0); // vcl_hrd_parameters_present_flag
    w.bit(0); // pic_struct_present_flag
    w.bit(0); // bitstream_restriction_flag
    let mut nal = vec![0x67];
    nal.extend(escape(&w.finish()));
    nal
}

/// The matching PPS NAL (CABAC, as x264's High profile).
fn pps() -> Vec<u8> {
    let mut w = BitWriter::default();
    w.ue(0); // pic_parameter_set_id
    w.ue(0); // seq_parameter_set_id
    w.bit(1); // entropy_coding_mode_flag (CABAC)
    w.bit(0); // bottom_field_pic_order_in_frame_present_flag
    w.ue(0); // num_slice_groups_minus1
    w.ue(0); // num_ref_idx_l0_default_active_minus1
    w.ue(0); // num_ref_idx_l1_default_active_minus1
    w.bit(0); // weighted_pred_flag
    w.u(2, 0); // weighted_bipred_idc
    w.se(0); // pic_init_qp_minus26
    w.se(0); // pic_init_qs_minus26
    w.se(0); // chroma_qp_index_offset
    w.bit(1); // deblocking_filter_control_present_flag
    w.bit(0); // constrained_intra_pred_flag
    w.bit(0); // redundant_pic_cnt_present_flag
    let mut nal = vec![0x68];
    nal.extend(escape(&w.finish()));
    nal
}

/// FLV video payload: AVC sequence header (keyframe, packet type 0) with an
/// `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.2.4.1, High-profile extension included).
pub fn avc_sequence_header(width: u32, height: u32, fps: f64) -> Bytes {
    let sps = sps(width, height, fps);
    let pps = pps();
    let mut out = vec![0x17, 0x00, 0, 0, 0];
    out.extend([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]);
    out.extend((sps.len() as u16).to_be_bytes());
    out.extend(&sps);
    out.push(1);
    out.extend((pps.len() as u16).to_be_bytes());
    out.extend(&pps);
    // chroma_format 1, bit depths 8, no SPS extensions.
    out.extend([0xFD, 0xF8, 0xF8, 0x00]);
    Bytes::from(out)
}

/// FLV audio payload: AAC sequence header with the AudioSpecificConfig of AAC-LC, stereo.
pub fn aac_sequence_header(sample_rate_hz: u32) -> Bytes {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let index = RATES.iter().position(|&r| r == sample_rate_hz).unwrap_or(3) as u16;
    let asc: u16 = (2 << 11) | (index << 7) | (2 << 3); // object type 2 (LC), 2 channels
    let [a, b] = asc.to_be_bytes();
    Bytes::from(vec![0xAF, 0x00, a, b])
}

/// `@setDataFrame onMetaData {…}` for the scenario.
pub fn metadata(s: &Scenario) -> Bytes {
    let mut props = vec![
        ("width", Value::Number(f64::from(s.encoder.width))),
        ("height", Value::Number(f64::from(s.encoder.height))),
        ("framerate", Value::Number(s.encoder.fps)),
        ("videodatarate", Value::Number(s.rate_control.bitrate_kbps)),
        ("videocodecid", Value::Number(7.0)),
        ("encoder", Value::string("rtmp-lab experiment (replay)")),
    ];
    if s.audio.enabled {
        props.push(("audiodatarate", Value::Number(s.audio.bitrate_kbps)));
        props.push((
            "audiosamplerate",
            Value::Number(f64::from(s.audio.sample_rate_hz)),
        ));
        props.push(("audiocodecid", Value::Number(10.0)));
        props.push(("stereo", Value::Boolean(true)));
    }
    let body = amf0::to_bytes(&[
        Value::string("onMetaData"),
        Value::EcmaArray(props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
    ]);
    set_data_frame(&body)
}

/// FLV video payload of one coded frame whose codec bytes (length prefix + NAL) total
/// `size_bytes` (at least [`MIN_VIDEO_BYTES`]).
pub fn video_frame(frame_type: FrameType, keyframe: bool, cts_ms: i32, size_bytes: u32) -> Bytes {
    let size = size_bytes.max(MIN_VIDEO_BYTES) as usize;
    let mut out = Vec::with_capacity(5 + size);
    let cts = cts_ms.clamp(-(1 << 23), (1 << 23) - 1);
    out.push(if keyframe { 0x17 } else { 0x27 });
    out.push(1);
    out.extend(&cts.to_be_bytes()[1..]);
    let nal_len = size - 4;
    out.extend((nal_len as u32).to_be_bytes());
    let (header, slice_type) = match (keyframe, frame_type) {
        (true, _) => (0x65, 7),
        (false, FrameType::I) => (0x61, 7),
        (false, FrameType::P) => (0x41, 5),
        (false, FrameType::B) => (0x01, 6),
    };
    out.push(header);
    let mut w = BitWriter::default();
    w.ue(0); // first_mb_in_slice
    w.ue(slice_type);
    w.ue(0); // pic_parameter_set_id
    let slice = escape(&w.finish());
    let body_start = out.len();
    out.extend(slice.iter().take(nal_len - 1));
    while out.len() - body_start < nal_len - 1 {
        out.push(0x5A); // filler: never forms a start code
    }
    Bytes::from(out)
}

/// FLV audio payload of one raw AAC frame of `size_bytes` codec bytes.
pub fn audio_frame(size_bytes: u32) -> Bytes {
    let mut out = Vec::with_capacity(2 + size_bytes as usize);
    out.extend([0xAF, 0x01]);
    out.resize(2 + size_bytes as usize, 0x21);
    Bytes::from(out)
}

/// Every tag of the replay of `sim`, released at `origin` + its simulated send time.
pub fn replay_tags(s: &Scenario, sim: &Trace, origin: Instant) -> Vec<OutTag> {
    let at = |t: Micros| origin + Duration::from_micros(t.0);
    // The simulator sends metadata and sequence headers when the publish set-up completes.
    let headers_at = at(sim.startup.publisher.total);
    let mut tags = Vec::with_capacity(sim.frames.len() + 3);
    let header = |kind, payload| OutTag {
        kind,
        timestamp_ms: 0,
        payload,
        release_at: Some(headers_at),
        ready_at: headers_at,
        frame: None,
    };
    tags.push(header(MediaKind::Data, metadata(s)));
    tags.push(header(
        MediaKind::Video,
        avc_sequence_header(s.encoder.width, s.encoder.height, s.encoder.fps),
    ));
    if s.audio.enabled {
        tags.push(header(
            MediaKind::Audio,
            aac_sequence_header(s.audio.sample_rate_hz),
        ));
    }
    for f in &sim.frames {
        let Some(sent) = f.sent_us else { continue };
        let timestamp_ms = (f.dts_us.0 / 1000).min(u64::from(u32::MAX)) as u32;
        let payload = match f.kind {
            MediaKind::Video => {
                let cts = (f.pts_us.0 / 1000) as i64 - i64::from(timestamp_ms);
                video_frame(
                    f.frame_type.unwrap_or(FrameType::P),
                    f.keyframe,
                    cts.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                    f.size_bytes,
                )
            }
            MediaKind::Audio => audio_frame(f.size_bytes),
            MediaKind::Data => continue,
        };
        let release = at(sent);
        tags.push(OutTag {
            kind: f.kind,
            timestamp_ms,
            payload,
            release_at: Some(release),
            ready_at: release,
            frame: Some(FrameMeta {
                index: f.index,
                frame_type: f.frame_type,
                keyframe: f.keyframe,
                size_bytes: f.size_bytes,
                dts_us: f.dts_us,
                pts_us: f.pts_us,
                replayed: Some(ReplayedTimes {
                    captured_us: f.captured_us,
                    capture_done_us: f.capture_done_us,
                    encoded_us: f.encoded_us,
                }),
            }),
        });
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flv;

    /// Reads exp-Golomb back, to check the writer.
    fn read_ue(data: &[u8], pos: &mut usize) -> u32 {
        let bit = |p: usize| u32::from((data[p / 8] >> (7 - p % 8)) & 1);
        let mut zeros = 0;
        while bit(*pos) == 0 {
            zeros += 1;
            *pos += 1;
        }
        *pos += 1;
        let mut v = 1;
        for _ in 0..zeros {
            v = (v << 1) | bit(*pos);
            *pos += 1;
        }
        v - 1
    }

    #[test]
    fn sps_encodes_the_picture_size() {
        let s = sps(1920, 1080, 30.0);
        assert_eq!(s[0], 0x67);
        assert_eq!((s[1], s[3]), (PROFILE_HIGH, 40));
        let body = &s[4..];
        let mut pos = 0;
        let ids: Vec<u32> = (0..4).map(|_| read_ue(body, &mut pos)).collect();
        assert_eq!(ids, vec![0, 1, 0, 0], "sps id, chroma 4:2:0, bit depths");
        pos += 2; // two flags
        let poc: Vec<u32> = (0..4).map(|_| read_ue(body, &mut pos)).collect();
        assert_eq!(poc, vec![0, 0, 2, 4]);
        pos += 1; // gaps_in_frame_num_value_allowed_flag
        let size: Vec<u32> = (0..2).map(|_| read_ue(body, &mut pos)).collect();
        assert_eq!(size, vec![119, 67], "1920/16−1, 1088/16−1");
        assert_eq!(level_idc(1280, 720, 30.0), 31);
        assert_eq!(level_idc(1920, 1080, 60.0), 42);
    }

    #[test]
    fn frames_have_the_simulated_size_and_parse_as_flv() {
        let seq = avc_sequence_header(1280, 720, 30.0);
        let tag = flv::parse_video_tag(&seq).unwrap();
        assert!(tag.sequence_header);
        assert!(flv::parse_avc_config(&seq[tag.body.clone()]).is_ok());
        for (ft, key) in [
            (FrameType::I, true),
            (FrameType::P, false),
            (FrameType::B, false),
        ] {
            let f = video_frame(ft, key, 67, 5000);
            assert_eq!(f.len(), 5 + 5000);
            let tag = flv::parse_video_tag(&f).unwrap();
            assert_eq!(tag.keyframe, key);
            assert_eq!(tag.composition_time_ms, 67);
            assert_eq!(super::super::source::avc_slice_type(&f[5..]), Some(ft));
        }
        assert_eq!(
            video_frame(FrameType::P, false, 0, 3).len(),
            5 + MIN_VIDEO_BYTES as usize
        );
        let a = audio_frame(371);
        assert_eq!(a.len(), 373);
        assert!(!flv::parse_audio_tag(&a).unwrap().sequence_header);
        let asc = aac_sequence_header(48_000);
        assert_eq!(&asc[2..], &[0x11, 0x90]);
        assert!(flv::parse_audio_tag(&asc).unwrap().sequence_header);
    }

    #[test]
    fn replay_follows_the_simulation() {
        let mut s = sim_core::scenario::preset("lan").unwrap();
        s.duration_s = 2.0;
        let sim = sim_core::engine::Engine::run(&s);
        let origin = Instant::now();
        let tags = replay_tags(&s, &sim, origin);
        let sent = sim.frames.iter().filter(|f| f.sent_us.is_some()).count();
        assert_eq!(tags.len(), sent + 3);
        let mut last = origin;
        for t in &tags {
            let r = t.release_at.unwrap();
            assert!(r >= last, "released in order");
            last = r;
            if let Some(f) = &t.frame {
                assert_eq!(u64::from(t.timestamp_ms), f.dts_us.0 / 1000);
                let header = if t.kind == MediaKind::Video { 5 } else { 2 };
                assert_eq!(
                    t.payload.len() as u32,
                    f.size_bytes
                        .max(if header == 5 { MIN_VIDEO_BYTES } else { 0 })
                        + header
                );
            }
        }
    }
}
