//! A player probe: joins at a given instant, times its start-up step by step, then records
//! every audio/video message it receives — timestamp, kind, size, keyframe, composition
//! offset, and the instant its last byte arrived — plus the stream's metadata.
//!
//! It stops when told to (`stop`), when the server closes the connection, or — once the
//! publisher has finished (`publisher_done`) — when the server sends Stream EOF, which a
//! server sends after everything queued for this player.

use std::sync::Arc;
use std::time::Instant;

use sim_core::encoder::FrameType;
use sim_core::server::MediaKind;
use tokio::sync::watch;

use super::client::{Client, Received, RtmpUrl, SetupTimes};
use super::link::{Link, Role, SocketOpts};
use super::publisher::SETUP_TIMEOUT;
use super::source::classify;
use crate::protocol::amf0::Amf0Limits;
use crate::protocol::command::{parse_metadata, MetadataFields};
use crate::protocol::message::type_id;

/// One media message as the probe received it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeFrame {
    pub kind: MediaKind,
    pub timestamp_ms: u32,
    /// A coded frame (not a sequence header).
    pub coded: bool,
    pub keyframe: bool,
    pub composition_ms: i32,
    /// Codec bytes.
    pub size_bytes: u32,
    pub frame_type: Option<FrameType>,
    pub at: Instant,
}

/// What one probe saw.
#[derive(Debug, Default)]
pub struct ProbeReport {
    pub index: usize,
    /// When it started connecting.
    pub joined_at: Option<Instant>,
    pub setup: SetupTimes,
    /// The connection's SYN carried C0+C1 (TCP Fast Open), as the kernel reports it.
    pub fast_open_used: Option<bool>,
    /// `NetStream.Play.Start` received.
    pub ready_at: Option<Instant>,
    pub frames: Vec<ProbeFrame>,
    /// The first `onMetaData` received.
    pub metadata: Option<MetadataFields>,
    /// Bytes of media received.
    pub bytes: u64,
    pub error: Option<String>,
    /// Ended because the server signalled the end of the stream.
    pub saw_stream_eof: bool,
}

impl ProbeReport {
    /// Arrival of the first coded video keyframe.
    pub fn first_keyframe_at(&self) -> Option<Instant> {
        self.frames
            .iter()
            .find(|f| f.kind == MediaKind::Video && f.coded && f.keyframe)
            .map(|f| f.at)
    }
}

/// Runs one probe (see the module docs). `fast_open`: the client side of TCP Fast Open.
#[allow(clippy::too_many_arguments)] // one call site each in `run` and `observe`; all distinct
pub async fn run(
    index: usize,
    link: Arc<Link>,
    server: std::net::SocketAddr,
    url: RtmpUrl,
    join_at: Instant,
    fast_open: bool,
    mut publisher_done: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> ProbeReport {
    let mut report = ProbeReport {
        index,
        ..ProbeReport::default()
    };
    tokio::select! {
        _ = tokio::time::sleep_until(join_at.into()) => {}
        _ = async { let _ = stop.wait_for(|s| *s).await; } => return report,
    }
    report.joined_at = Some(Instant::now());
    let result = async {
        let (socket, tcp) = link
            .connect(
                Role::Player,
                server,
                SocketOpts {
                    nodelay: true,
                    fast_open,
                },
            )
            .await?;
        report.setup.tcp_connect = tcp;
        let (mut client, hs) = Client::handshake(socket).await?;
        report.setup.handshake = hs;
        report.fast_open_used = client.fast_open_used();
        report.setup.connect = client.connect(&url, SETUP_TIMEOUT).await?;
        report.setup.create_stream = client.create_stream(&url, false, SETUP_TIMEOUT).await?;
        report.setup.publish_or_play = client.play(&url, SETUP_TIMEOUT).await?;
        report.ready_at = Some(Instant::now());
        let limits = Amf0Limits::default();
        let mut batch: Vec<Received> = Vec::new();
        let mut done = *publisher_done.borrow();
        loop {
            batch.clear();
            client.drain_into(&mut batch);
            for m in &batch {
                record(&mut report, m, &limits);
            }
            if client.saw_stream_eof() && done {
                report.saw_stream_eof = true;
                break;
            }
            tokio::select! {
                read = client.read_once() => {
                    if !read? {
                        break;
                    }
                    client.flush_replies().await?;
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
                changed = publisher_done.changed(), if !done => {
                    // A closed channel means the publisher is gone too.
                    done = changed.is_err() || *publisher_done.borrow();
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        report.error = Some(format!("{e:#}"));
    }
    report
}

fn record(report: &mut ProbeReport, m: &Received, limits: &Amf0Limits) {
    match m.media_kind() {
        Some(kind) => {
            report.bytes += m.raw.payload.len() as u64;
            let class = classify(kind, &m.raw.payload);
            report.frames.push(ProbeFrame {
                kind,
                timestamp_ms: m.raw.timestamp,
                coded: class.is_some_and(|c| c.coded),
                keyframe: class.is_some_and(|c| c.keyframe),
                composition_ms: class.map_or(0, |c| c.composition_ms),
                size_bytes: class.map_or(0, |c| c.body_bytes),
                frame_type: class.and_then(|c| c.frame_type),
                at: m.at,
            });
        }
        None if m.raw.type_id == type_id::DATA_AMF0 && report.metadata.is_none() => {
            if let Ok(Some(meta)) = parse_metadata(&m.raw.payload, limits) {
                report.metadata = Some(meta.fields);
            }
        }
        None => {}
    }
}
