//! The experiment's publisher: connects over the [`Link`], publishes, and sends every
//! [`OutTag`] it is given — at its release time (replay) or as soon as it arrives (ffmpeg) —
//! recording for each coded frame when the write started and when its last byte was accepted
//! by the socket, and the socket's unacknowledged bytes after it (`TIOCOUTQ`).
//!
//! While waiting for the next tag it keeps reading the connection (pings, acknowledgement
//! windows, status messages), so a server that polices idle or unresponsive clients keeps it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sim_core::server::MediaKind;
use tokio::sync::{mpsc, oneshot};

use super::client::{Client, Received, RtmpUrl, SetupTimes};
use super::link::{Link, Role, SocketOpts};
use super::source::{FrameMeta, OutTag};

/// Bound on each set-up step.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One coded frame as the publisher sent it.
#[derive(Debug, Clone)]
pub struct SentFrame {
    pub kind: MediaKind,
    pub timestamp_ms: u32,
    pub meta: FrameMeta,
    /// When the publisher had it (read from ffmpeg's pipe; the replay's release time).
    pub ready_at: Instant,
    /// `write()` started (the simulator's "written to the socket").
    pub write_start: Instant,
    /// Its last byte was accepted by the socket.
    pub write_end: Instant,
}

/// What the publisher did.
#[derive(Debug, Default)]
pub struct PublisherReport {
    pub setup: SetupTimes,
    /// The connection's SYN carried C0+C1 (TCP Fast Open), as the kernel reports it.
    pub fast_open_used: Option<bool>,
    /// When the publish set-up completed (media may flow).
    pub published_at: Option<Instant>,
    pub frames: Vec<SentFrame>,
    /// Unacknowledged bytes in the socket after each write (`TIOCOUTQ`; Linux).
    pub send_queue: Vec<(Instant, u64)>,
    /// Messages written (frames, headers, metadata).
    pub messages: u64,
    pub bytes: u64,
}

/// Connects, publishes to `url` on `server`, signals `published` and then sends every tag of
/// `tags` until the channel closes; ends the publish politely. The report is returned even
/// when the connection fails midway (with the error beside it).
pub async fn run(
    link: Arc<Link>,
    server: std::net::SocketAddr,
    url: RtmpUrl,
    opts: SocketOpts,
    chunk_size: u32,
    mut tags: mpsc::UnboundedReceiver<OutTag>,
    published: oneshot::Sender<Instant>,
) -> (PublisherReport, Option<anyhow::Error>) {
    let mut report = PublisherReport::default();
    let result = async {
        let (socket, tcp) = link.connect(Role::Publisher, server, opts).await?;
        report.setup.tcp_connect = tcp;
        let (mut client, hs) = Client::handshake(socket).await?;
        report.setup.handshake = hs;
        report.fast_open_used = client.fast_open_used();
        report.setup.connect = client.connect(&url, SETUP_TIMEOUT).await?;
        client.set_chunk_size(chunk_size)?;
        report.setup.create_stream = client.create_stream(&url, true, SETUP_TIMEOUT).await?;
        report.setup.publish_or_play = client.publish(&url, SETUP_TIMEOUT).await?;
        let now = Instant::now();
        report.published_at = Some(now);
        let _ = published.send(now);
        let mut discard: Vec<Received> = Vec::new();
        loop {
            tokio::select! {
                biased;
                read = client.read_once() => {
                    if !read? {
                        bail!("the server closed the publisher's connection");
                    }
                    client.flush_replies().await?;
                    discard.clear();
                    client.drain_into(&mut discard);
                }
                tag = tags.recv() => {
                    let Some(tag) = tag else { break };
                    if let Some(at) = tag.release_at {
                        tokio::time::sleep_until(at.into()).await;
                    }
                    let (write_start, write_end) = client
                        .write_message(tag.kind, tag.timestamp_ms, &tag.payload)
                        .await
                        .context("while publishing")?;
                    report.messages += 1;
                    report.bytes += tag.payload.len() as u64;
                    if let Some(q) = client.unacknowledged_bytes() {
                        report.send_queue.push((write_end, q));
                    }
                    if let Some(meta) = tag.frame {
                        report.frames.push(SentFrame {
                            kind: tag.kind,
                            timestamp_ms: tag.timestamp_ms,
                            meta,
                            ready_at: tag.ready_at,
                            write_start,
                            write_end,
                        });
                    }
                }
            }
        }
        client.unpublish(&url).await?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    (report, result.err())
}
