//! The benchmark's publisher: one connection that publishes the clip in real time.
//!
//! Each tag goes out at `start + timestamp` (the clip looped, timestamps shifted by its
//! duration per loop; metadata and sequence headers once). Just before a coded video frame's
//! bytes are written, its send instant goes into the [`SendTable`](super::timeline::SendTable),
//! which is what every player's latency is measured against. A publisher that cannot keep its
//! schedule (the server does not read fast enough, or the generator is starved) shows as lag.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use bytes::BytesMut;

use super::client::{Connection, RtmpUrl};
use super::scanner::{classify_video, VideoKind};
use super::source::Clip;
use super::timeline::{SentFrame, Shared};
use crate::protocol::amf0::{self, Value};
use crate::protocol::message::type_id;
use crate::protocol::writer::{CSID_AUDIO, CSID_VIDEO};

/// Tags later than this behind their schedule are counted as late.
const LATE_US: u64 = 10_000;

/// What the publisher did.
#[derive(Debug, Clone, Default)]
pub struct PublisherReport {
    /// Wire bytes written (RTMP framing included).
    pub bytes_sent: u64,
    pub video_frames_sent: u64,
    /// Largest delay of a send behind its schedule, µs.
    pub max_lag_us: u64,
    /// Tags sent more than 10 ms behind schedule.
    pub late_tags: u64,
    /// Why it stopped before it was told to, if it did.
    pub error: Option<String>,
}

/// A connection that has published the stream and waits to send.
pub struct Publisher {
    conn: Connection,
    stream_id: u32,
    /// Wire bytes written so far (read by the main thread at the window's edges).
    pub bytes_sent: Arc<AtomicU64>,
}

impl Publisher {
    /// Connects, announces `chunk_size`, publishes `url`'s key (waiting for
    /// `NetStream.Publish.Start`).
    pub fn connect(url: &RtmpUrl, chunk_size: u32) -> Result<Publisher> {
        let addr = url.socket_addr()?;
        let mut conn =
            Connection::open(addr, std::time::Duration::from_secs(10)).context("publisher")?;
        conn.writer
            .set_chunk_size(chunk_size)
            .map_err(|e| anyhow!("--chunk-size: {e}"))?;
        conn.connect(url).context("publisher")?;
        let stream_id = conn.publish(&url.key).context("publisher")?;
        Ok(Publisher {
            conn,
            stream_id,
            bytes_sent: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sends `clip` in real time, looping, until `shared.stop`.
    pub fn run(mut self, clip: &Clip, shared: &Shared) -> PublisherReport {
        let mut report = PublisherReport::default();
        // The server may send acknowledgements, pings or status: drain them on a thread of
        // their own so they never block the socket (the publisher needs none of them).
        let drain = self.conn.socket.try_clone().ok().map(|mut s| {
            std::thread::Builder::new()
                .name("bench-publisher-rx".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    let _ = s.set_read_timeout(None);
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                })
        });
        if let Err(e) = self.send_all(clip, shared, &mut report) {
            report.error = Some(format!("{e:#}"));
        }
        let _ = self.conn.socket.shutdown(Shutdown::Both);
        if let Some(Ok(handle)) = drain {
            let _ = handle.join();
        }
        report.bytes_sent = self.bytes_sent.load(Ordering::Relaxed);
        report
    }

    fn send_all(
        &mut self,
        clip: &Clip,
        shared: &Shared,
        report: &mut PublisherReport,
    ) -> Result<()> {
        set_timer_slack_ns(1_000);
        super::timeline::raise_thread_priority();
        let clock = shared.clock;
        let sid = self.stream_id;
        let start_us = clock.now_us();
        if let Some(meta) = &clip.metadata {
            let mut payload = BytesMut::new();
            amf0::encode(&Value::string("@setDataFrame"), &mut payload);
            payload.extend_from_slice(meta);
            self.conn
                .writer
                .write_data(sid, 0, &payload)
                .map_err(|e| anyhow!("{e}"))?;
            self.write()?;
        }
        let loop_ms = u64::from(clip.duration_ms.max(1));
        for round in 0u64.. {
            for tag in &clip.tags {
                if round > 0 && tag.is_sequence_header() {
                    continue;
                }
                let ts_ms = u64::from(tag.timestamp_ms) + round * loop_ms;
                let due = start_us + ts_ms * 1000;
                clock.sleep_until(due);
                if shared.stopping() {
                    return Ok(());
                }
                let ts = (ts_ms & 0xFFFF_FFFF) as u32;
                let now = clock.now_us();
                let lag = now.saturating_sub(due);
                report.max_lag_us = report.max_lag_us.max(lag);
                if lag > LATE_US {
                    report.late_tags += 1;
                }
                let (csid, type_id) = if tag.type_id == type_id::VIDEO {
                    if let VideoKind::Frame { keyframe } =
                        classify_video(tag.payload.get(..2).unwrap_or(&tag.payload))
                    {
                        shared.table.record(SentFrame {
                            timestamp_ms: ts,
                            send_us: now,
                            len: tag.payload.len() as u32,
                            keyframe,
                        });
                        report.video_frames_sent += 1;
                    }
                    (CSID_VIDEO, type_id::VIDEO)
                } else {
                    (CSID_AUDIO, type_id::AUDIO)
                };
                self.conn
                    .writer
                    .write(csid, ts, type_id, sid, &tag.payload)
                    .map_err(|e| anyhow!("{e}"))?;
                self.write()?;
            }
        }
        Ok(())
    }

    fn write(&mut self) -> Result<()> {
        let bytes = self.conn.writer.take();
        self.conn
            .socket
            .write_all(&bytes)
            .context("publisher: the server stopped reading (write timed out or failed)")?;
        self.bytes_sent
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Lets `sleep` wake within ~1 µs of its deadline instead of the default 50 µs slack.
fn set_timer_slack_ns(ns: u64) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes a value and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0);
    }
}
