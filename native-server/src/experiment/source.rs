//! What the experiment's publisher sends: [`OutTag`]s, from ffmpeg (a real x264 + AAC
//! encode of a test pattern, read as FLV from its stdout) or from the replay of the simulator's
//! encoder decisions ([`super::replay`]).
//!
//! **ffmpeg**: `testsrc2` and `sine` read in real time (`-re`), encoded with the scenario's x264
//! settings ([`ffmpeg_args`]), muxed to FLV on a pipe with every packet flushed at once
//! (`-flush_packets 1`). Each tag is stamped with the instant it was read from the pipe: the
//! encoder output as far as the publisher can see it (after ffmpeg's own interleaving of audio
//! and video, as OBS's muxer also interleaves). ffmpeg is given a few seconds more than the
//! experiment lasts and its tags past the duration are not sent, so x264 never flushes its
//! delayed frames early inside the measured span (it would at end of input).
//!
//! The **capture time** of an ffmpeg frame is not observable: it is estimated as the instant
//! the FLV header came out of the pipe plus the frame's presentation time after the first
//! frame of its track. With `-re` ffmpeg reads frame *k* at (its input start + pts_k); the FLV
//! header is written once both encoders are initialised, i.e. after the first frames were read,
//! so the estimate is late by x264's and AAC's initialisation (milliseconds to a few tens of
//! milliseconds) and the measured encode stage is short by as much.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use sim_core::encoder::FrameType;
use sim_core::rate_control::RateControlMode;
use sim_core::scenario::Scenario;
use sim_core::server::MediaKind;
use sim_core::Micros;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};

use crate::protocol::amf0::{self, Value};
use crate::protocol::flv;

/// Largest FLV tag accepted from ffmpeg (a 1080p keyframe at high rate is a few hundred KB).
const MAX_TAG_BYTES: usize = 16 * 1024 * 1024;

/// ffmpeg runs this much longer than the experiment (see the module docs).
pub const FFMPEG_EXTRA_SECONDS: f64 = 3.0;

/// One coded frame's identity and, for a replay, the simulated times it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameMeta {
    /// Index within its kind in send (decode) order.
    pub index: u64,
    pub frame_type: Option<FrameType>,
    pub keyframe: bool,
    /// Codec bytes (the FLV tag body without its audio/video header).
    pub size_bytes: u32,
    /// Stream timestamps in µs: exact for a replay; the FLV's milliseconds for ffmpeg (snapped
    /// to the frame grid when the trace is built).
    pub dts_us: Micros,
    pub pts_us: Micros,
    /// Replay: the simulator's capture, capture-done and encode times (µs since the origin).
    pub replayed: Option<ReplayedTimes>,
}

/// Times a replayed frame carries over from the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayedTimes {
    pub captured_us: Option<Micros>,
    pub capture_done_us: Option<Micros>,
    pub encoded_us: Option<Micros>,
}

/// A message for the publisher to send.
#[derive(Debug, Clone)]
pub struct OutTag {
    /// Video, audio, or data (metadata).
    pub kind: MediaKind,
    pub timestamp_ms: u32,
    /// The RTMP message payload (FLV tag body; for metadata, `@setDataFrame` included).
    pub payload: Bytes,
    /// Send no earlier than this (replay); `None`: at once (ffmpeg).
    pub release_at: Option<Instant>,
    /// When the publisher had it: read from the pipe, or the replay's release time.
    pub ready_at: Instant,
    /// `None` for metadata and sequence headers.
    pub frame: Option<FrameMeta>,
}

/// H.264 slice type of the first slice in an AVCC (4-byte length prefixed) payload.
pub fn avc_slice_type(nal_data: &[u8]) -> Option<FrameType> {
    let mut pos = 0usize;
    while pos + 4 <= nal_data.len() {
        let len = u32::from_be_bytes([
            nal_data[pos],
            nal_data[pos + 1],
            nal_data[pos + 2],
            nal_data[pos + 3],
        ]) as usize;
        let start = pos + 4;
        let end = start.checked_add(len)?.min(nal_data.len());
        let nal = nal_data.get(start..end)?;
        match nal.first().map(|h| h & 0x1F) {
            Some(1) | Some(5) => {
                // Strip emulation prevention bytes from the little we read.
                let mut rbsp = Vec::with_capacity(16);
                let mut zeros = 0;
                for &b in nal.iter().skip(1).take(24) {
                    if zeros >= 2 && b == 3 {
                        zeros = 0;
                        continue;
                    }
                    zeros = if b == 0 { zeros + 1 } else { 0 };
                    rbsp.push(b);
                }
                let mut bits = BitReader {
                    data: &rbsp,
                    pos: 0,
                };
                let _first_mb = bits.ue()?;
                return match bits.ue()? % 5 {
                    0 | 3 => Some(FrameType::P),
                    1 => Some(FrameType::B),
                    _ => Some(FrameType::I),
                };
            }
            _ => {}
        }
        pos = start.checked_add(len)?;
    }
    None
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    /// Unsigned exp-Golomb.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut v = 1u32;
        for _ in 0..zeros {
            v = (v << 1) | self.bit()?;
        }
        Some(v - 1)
    }
}

/// What one FLV audio/video tag is, for the trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TagClass {
    /// A coded frame (not a sequence header or command).
    pub coded: bool,
    pub keyframe: bool,
    pub composition_ms: i32,
    /// Codec bytes.
    pub body_bytes: u32,
    pub frame_type: Option<FrameType>,
}

/// Classifies a video or audio message payload (legacy FLV and Enhanced RTMP).
pub fn classify(kind: MediaKind, payload: &[u8]) -> Option<TagClass> {
    let tag = match kind {
        MediaKind::Video => flv::parse_video_tag(payload).ok()?,
        MediaKind::Audio => flv::parse_audio_tag(payload).ok()?,
        MediaKind::Data => return None,
    };
    let body = payload.get(tag.body.clone()).unwrap_or(&[]);
    let frame_type = match kind {
        MediaKind::Video if tag.is_coded_frame() => {
            let legacy_avc = tag.codec == flv::CodecId::AVC;
            let parsed = if legacy_avc || tag.codec.name() == "avc1" {
                avc_slice_type(body)
            } else {
                None
            };
            parsed.or(Some(if tag.keyframe {
                FrameType::I
            } else {
                FrameType::P
            }))
        }
        _ => None,
    };
    Some(TagClass {
        coded: tag.is_coded_frame(),
        keyframe: tag.keyframe,
        composition_ms: tag.composition_time_ms,
        body_bytes: u32::try_from(body.len()).unwrap_or(u32::MAX),
        frame_type,
    })
}

/// `@setDataFrame` + an FLV script tag body (`onMetaData`, {…}): what a publisher sends.
pub fn set_data_frame(script_body: &[u8]) -> Bytes {
    let mut out = amf0::to_bytes(&[Value::string("@setDataFrame")]).to_vec();
    out.extend_from_slice(script_body);
    Bytes::from(out)
}

/// The ffmpeg command line for the scenario's encoder (see the module docs).
pub fn ffmpeg_args(s: &Scenario) -> Vec<String> {
    let e = &s.encoder;
    let rc = &s.rate_control;
    let fps = fmt_num(e.fps);
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-hide_banner", "-nostdin", "-loglevel", "error"]);
    let video = format!("testsrc2=size={}x{}:rate={fps}", e.width, e.height);
    push(&["-re", "-f", "lavfi", "-i", &video]);
    if s.audio.enabled {
        let audio = format!("sine=frequency=440:sample_rate={}", s.audio.sample_rate_hz);
        push(&["-re", "-f", "lavfi", "-i", &audio]);
    }
    let t = fmt_num(s.duration_s + FFMPEG_EXTRA_SECONDS);
    push(&["-t", &t, "-map", "0:v"]);
    if s.audio.enabled {
        push(&["-map", "1:a"]);
    }
    push(&[
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
    ]);
    if e.zerolatency {
        push(&["-tune", "zerolatency"]);
    }
    let keyint = e.keyframe_interval_frames.to_string();
    push(&["-g", &keyint, "-r", &fps]);
    push(&["-sc_threshold", if e.scenecut { "40" } else { "0" }]);
    let bframes = if e.zerolatency { 0 } else { e.bframes };
    push(&["-bf", &bframes.to_string()]);
    if !e.zerolatency {
        push(&["-rc-lookahead", &e.lookahead_frames.to_string()]);
    }
    push(&["-threads", &e.threads.max(1).to_string()]);
    let kbps = |v: f64| format!("{}k", fmt_num(v.round().max(1.0)));
    let max_rate = if rc.max_rate_kbps > 0.0 {
        rc.max_rate_kbps
    } else {
        rc.bitrate_kbps
    };
    let mut x264_params: Vec<String> = vec!["force-cfr=1".into()];
    let vbv = rc.vbv_buffer_kbits > 0.0;
    match rc.mode {
        RateControlMode::Cbr => {
            push(&[
                "-b:v",
                &kbps(rc.bitrate_kbps),
                "-maxrate",
                &kbps(rc.bitrate_kbps),
            ]);
            push(&["-bufsize", &kbps(rc.vbv_buffer_kbits.max(1.0))]);
            if rc.filler {
                x264_params.push("nal-hrd=cbr".into());
            }
        }
        RateControlMode::Abr | RateControlMode::Vbr => {
            push(&["-b:v", &kbps(rc.bitrate_kbps)]);
            if vbv {
                push(&[
                    "-maxrate",
                    &kbps(max_rate),
                    "-bufsize",
                    &kbps(rc.vbv_buffer_kbits),
                ]);
            }
        }
        RateControlMode::CappedCrf => {
            push(&["-crf", &fmt_num(rc.crf)]);
            if vbv {
                push(&[
                    "-maxrate",
                    &kbps(max_rate),
                    "-bufsize",
                    &kbps(rc.vbv_buffer_kbits),
                ]);
            }
        }
        RateControlMode::Cqp => push(&["-qp", &fmt_num(rc.qp.round())]),
    }
    if vbv && rc.mode != RateControlMode::Cqp {
        x264_params.push(format!("vbv-init={}", fmt_num(rc.vbv_init)));
    }
    push(&["-x264-params", &x264_params.join(":")]);
    if s.audio.enabled {
        let ar = s.audio.sample_rate_hz.to_string();
        push(&[
            "-c:a",
            "aac",
            "-b:a",
            &kbps(s.audio.bitrate_kbps),
            "-ar",
            &ar,
            "-ac",
            "2",
        ]);
    }
    push(&[
        "-flush_packets",
        "1",
        "-flvflags",
        "no_duration_filesize",
        "-f",
        "flv",
        "pipe:1",
    ]);
    a
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// What the ffmpeg source reports when it ends.
#[derive(Debug, Default)]
pub struct FfmpegReport {
    /// When the FLV header came out of the pipe: the capture-time anchor.
    pub anchor: Option<Instant>,
    /// The command line, for the record.
    pub command: String,
    /// ffmpeg's stderr (errors only: it runs with `-loglevel error`), trimmed.
    pub stderr: String,
    /// Tags not sent because they were past the experiment's duration.
    pub tags_past_duration: u64,
}

/// Starts ffmpeg for `s` and forwards its FLV tags (up to the scenario's duration) to `tx`.
/// `capture_started` receives the capture anchor (the FLV header's arrival). Ends when ffmpeg
/// ends, its output passes the duration, or `tx` is closed; ffmpeg is killed then.
pub async fn run_ffmpeg(
    ffmpeg: &str,
    s: &Scenario,
    tx: mpsc::UnboundedSender<OutTag>,
    capture_started: oneshot::Sender<Instant>,
) -> Result<FfmpegReport> {
    let args = ffmpeg_args(s);
    let mut report = FfmpegReport {
        command: format!("{ffmpeg} {}", args.join(" ")),
        ..FfmpegReport::default()
    };
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {ffmpeg} (install ffmpeg, e.g. `apt-get install ffmpeg`, or use \
                 --publisher replay)"
            )
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no ffmpeg stdout"))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no ffmpeg stderr"))?;
    let stderr_task = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).trim().to_owned()
    });
    let end_us = Micros::from_secs_f64(s.duration_s);
    let read = read_flv(stdout, end_us, &tx, capture_started, &mut report).await;
    let _ = child.start_kill();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    report.stderr = tokio::time::timeout(Duration::from_secs(2), stderr_task)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    match read {
        Ok(()) => Ok(report),
        Err(e) => {
            let status = match status {
                Ok(Ok(st)) => format!(" (ffmpeg {st})"),
                _ => String::new(),
            };
            Err(e.context(format!(
                "reading ffmpeg's FLV output{status}; ffmpeg said: {}",
                if report.stderr.is_empty() {
                    "nothing"
                } else {
                    &report.stderr
                }
            )))
        }
    }
}

async fn read_flv(
    mut input: impl AsyncRead + Unpin,
    end: Micros,
    tx: &mpsc::UnboundedSender<OutTag>,
    capture_started: oneshot::Sender<Instant>,
    report: &mut FfmpegReport,
) -> Result<()> {
    let mut header = [0u8; 13];
    input
        .read_exact(&mut header)
        .await
        .context("no FLV header from ffmpeg")?;
    if &header[..3] != b"FLV" {
        bail!("ffmpeg's output is not FLV");
    }
    let anchor = Instant::now();
    report.anchor = Some(anchor);
    let _ = capture_started.send(anchor);
    let mut counters = [0u64; 2];
    let mut passed = [false; 2];
    loop {
        let mut th = [0u8; 11];
        match input.read_exact(&mut th).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let size = (usize::from(th[1]) << 16) | (usize::from(th[2]) << 8) | usize::from(th[3]);
        if size > MAX_TAG_BYTES {
            bail!("FLV tag of {size} bytes");
        }
        let ts = (u32::from(th[7]) << 24)
            | (u32::from(th[4]) << 16)
            | (u32::from(th[5]) << 8)
            | u32::from(th[6]);
        let mut body = vec![0u8; size + 4]; // + PreviousTagSize
        input.read_exact(&mut body).await?;
        let ready_at = Instant::now();
        body.truncate(size);
        let payload = Bytes::from(body);
        let kind = match th[0] & 0x1F {
            8 => MediaKind::Audio,
            9 => MediaKind::Video,
            18 => {
                let tag = OutTag {
                    kind: MediaKind::Data,
                    timestamp_ms: ts,
                    payload: set_data_frame(&payload),
                    release_at: None,
                    ready_at,
                    frame: None,
                };
                if tx.send(tag).is_err() {
                    return Ok(());
                }
                continue;
            }
            _ => continue,
        };
        let slot = usize::from(kind == MediaKind::Audio);
        let class = classify(kind, &payload);
        let frame = match class {
            Some(c) if c.coded => {
                if Micros::from_ms(u64::from(ts)) >= end {
                    passed[slot] = true;
                    report.tags_past_duration += 1;
                    if passed[0] && (passed[1] || counters[1] == 0) {
                        return Ok(());
                    }
                    continue;
                }
                let index = counters[slot];
                counters[slot] += 1;
                let dts_us = Micros::from_ms(u64::from(ts));
                let pts_ms = i64::from(ts) + i64::from(c.composition_ms);
                Some(FrameMeta {
                    index,
                    frame_type: c.frame_type,
                    keyframe: c.keyframe,
                    size_bytes: c.body_bytes,
                    dts_us,
                    pts_us: Micros::from_ms(pts_ms.max(0) as u64),
                    replayed: None,
                })
            }
            _ => None,
        };
        let tag = OutTag {
            kind,
            timestamp_ms: ts,
            payload,
            release_at: None,
            ready_at,
            frame,
        };
        if tx.send(tag).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_types_from_nal_headers() {
        // first_mb_in_slice = 0 ('1'), slice_type ue: 7 (I) = 0001000, 5 (P) = 00110, 6 (B) = 00111.
        let nal = |hdr: u8, bits: u8| vec![0, 0, 0, 3, hdr, bits, 0xFF];
        assert_eq!(avc_slice_type(&nal(0x65, 0b1000_1000)), Some(FrameType::I));
        assert_eq!(avc_slice_type(&nal(0x41, 0b1001_1000)), Some(FrameType::P));
        assert_eq!(avc_slice_type(&nal(0x01, 0b1001_1100)), Some(FrameType::B));
        // An SEI first, then the slice.
        let mut two = vec![0, 0, 0, 2, 0x06, 0x05];
        two.extend(nal(0x41, 0b1001_1000));
        assert_eq!(avc_slice_type(&two), Some(FrameType::P));
        assert_eq!(avc_slice_type(&[0, 0, 0, 9, 0x65]), None);
        assert_eq!(avc_slice_type(&[]), None);
    }

    #[test]
    fn ffmpeg_command_carries_the_scenario() {
        let s = sim_core::scenario::preset("obs-default").unwrap();
        let a = ffmpeg_args(&s).join(" ");
        for needle in [
            "testsrc2=size=1920x1080:rate=30",
            "-g 250",
            "-bf 3",
            "-rc-lookahead 10",
            "-b:v 6000k -maxrate 6000k -bufsize 6000k",
            "nal-hrd=cbr",
            "-b:a 160k",
            "-f flv pipe:1",
        ] {
            assert!(a.contains(needle), "{needle:?} not in {a}");
        }
        let s = sim_core::scenario::preset("low-latency").unwrap();
        let a = ffmpeg_args(&s).join(" ");
        assert!(
            a.contains("-tune zerolatency") && a.contains("-bf 0"),
            "{a}"
        );
    }

    #[tokio::test]
    async fn reads_flv_tags_up_to_the_duration() {
        let mut flv = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        let mut tag = |t: u8, ts: u32, body: &[u8]| {
            let n = body.len();
            flv.extend([t, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
            flv.extend([
                (ts >> 16) as u8,
                (ts >> 8) as u8,
                ts as u8,
                (ts >> 24) as u8,
                0,
                0,
                0,
            ]);
            flv.extend(body);
            flv.extend(((n + 11) as u32).to_be_bytes());
        };
        tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64]);
        tag(9, 0, &[0x17, 1, 0, 0, 0x43, 0, 0, 0, 3, 0x65, 0x88, 0xFF]);
        tag(8, 10, &[0xAF, 1, 1, 2, 3]);
        tag(9, 33, &[0x27, 1, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x98, 0xFF]);
        tag(9, 2000, &[0x27, 1, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x98, 0xFF]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (cs, _crx) = oneshot::channel();
        let mut report = FfmpegReport::default();
        read_flv(&flv[..], Micros::from_secs(1), &tx, cs, &mut report)
            .await
            .unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Some(t) = rx.recv().await {
            got.push(t);
        }
        assert_eq!(got.len(), 4, "the tag past 1 s is not forwarded");
        assert!(got[0].frame.is_none(), "sequence header");
        let key = got[1].frame.as_ref().unwrap();
        assert_eq!((key.index, key.keyframe, key.size_bytes), (0, true, 7));
        assert_eq!(key.frame_type, Some(FrameType::I));
        assert_eq!(key.pts_us, Micros::from_ms(67));
        let audio = got[2].frame.as_ref().unwrap();
        assert_eq!((audio.index, audio.size_bytes), (0, 3));
        let p = got[3].frame.as_ref().unwrap();
        assert_eq!((p.index, p.frame_type), (1, Some(FrameType::P)));
        assert_eq!(report.tags_past_duration, 1);
    }
}
