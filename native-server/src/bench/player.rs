//! The players: epoll worker threads, each owning a share of the player sockets.
//!
//! Why not tokio here: a player's whole job per wake-up is one `read` and a header scan, and
//! at thousands of players the cost that matters is syscalls and wake-ups, not parsing. A
//! worker is one thread with a level-triggered epoll set: per ready socket exactly one `read`
//! of up to [`READ_BUFFER_BYTES`] into the worker's one buffer (no read that returns
//! `EAGAIN`, no per-player buffer, no task or waker), then [`ChunkScanner::feed`], which skips
//! payload bytes without copying them. The arrival time of every message completed by a read
//! is that read's clock reading; a coded video frame's latency is that minus its send instant
//! from the [`SendTable`](super::timeline::SendTable), recorded in the worker's own histogram
//! (no sharing between threads on the hot path; histograms are merged at the end).
//!
//! Players are set up on blocking sockets by the connector threads (`client.rs`), then made
//! non-blocking and handed over: pushed to the worker's pending list, then registered in its
//! epoll set (in that order, so an event for an unknown player means "look in pending").

use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;

use super::client::{acknowledge, control_reply, ping_response, Connection};
use super::scanner::{classify_video, ChunkScanner, Event, MediaMessage, VideoKind, TYPE_VIDEO};
use super::stats::Histogram;
use super::timeline::Shared;
use crate::protocol::amf0::{Amf0Limits, Value};
use crate::protocol::command::parse_command;
use crate::protocol::message::type_id;

/// Bytes asked of the socket per read: a few hundred reads per second per player at most, and
/// one buffer per worker thread, so it can be large.
pub const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Events taken per `epoll_wait`.
const MAX_EVENTS: usize = 1024;

/// `epoll_wait` timeout: how soon a worker notices the stop flag.
const POLL_TIMEOUT_MS: i32 = 20;

/// Attempts at matching a player's frames to the publisher's when its server rewrites
/// timestamps (see [`PlayerStats::ts_offset`]).
const MAX_OFFSET_TRIES: u8 = 8;

/// What one player measured.
#[derive(Debug, Clone, Default)]
pub struct PlayerStats {
    pub id: usize,
    /// When its TCP connect started (clock µs).
    pub connect_us: u64,
    /// When its first video keyframe arrived (the first decodable picture).
    pub first_frame_us: Option<u64>,
    /// The send instant of that frame.
    pub first_frame_send_us: Option<u64>,
    /// Its RTMP timestamps minus the publisher's (0 for servers that forward timestamps as
    /// sent, e.g. nginx-rtmp and ours); found by matching a frame's length.
    pub ts_offset: Option<u32>,
    offset_tries: u8,
    /// Coded video frames received that were sent inside the window.
    pub frames_in_window: u64,
    /// Largest latency among them, µs.
    pub max_latency_us: u64,
    /// Frames that matched no sent frame (timestamp unknown or length different).
    pub unmatched: u64,
    /// Why it ended before the run did, if it did.
    pub ended: Option<String>,
}

/// A player whose `play` was sent: its socket and what it knows of the stream.
pub struct PlayerConn {
    socket: TcpStream,
    scanner: ChunkScanner,
    ack_window: Option<u32>,
    acked: u64,
    out: BytesMut,
    pub stats: PlayerStats,
}

impl PlayerConn {
    /// Takes over a connection that has sent `play` (it becomes non-blocking).
    pub fn from_connection(id: usize, connect_us: u64, conn: Connection) -> Result<PlayerConn> {
        conn.socket.set_nonblocking(true)?;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from a live local.
        unsafe {
            libc::setsockopt(
                conn.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(PlayerConn {
            socket: conn.socket,
            scanner: conn.scanner,
            ack_window: conn.ack_window,
            acked: conn.acked,
            out: BytesMut::new(),
            stats: PlayerStats {
                id,
                connect_us,
                ..PlayerStats::default()
            },
        })
    }
}

/// Per-read context of the event handler.
struct Arrival<'a> {
    shared: &'a Shared,
    hist: &'a mut Histogram,
    now_us: u64,
    window: (u64, u64),
}

impl PlayerStats {
    fn on_video(&mut self, m: &MediaMessage, a: &mut Arrival<'_>) {
        let head = m.head.get(..usize::from(m.head_len)).unwrap_or(&[]);
        let VideoKind::Frame { keyframe } = classify_video(head) else {
            return;
        };
        if self.first_frame_us.is_none() {
            if !keyframe {
                return; // not decodable yet (servers without a GOP cache start anywhere)
            }
            self.first_frame_us = Some(a.now_us);
        }
        let offset = match self.ts_offset {
            Some(o) => o,
            None => {
                let table = &a.shared.table;
                let found = match table.lookup(m.timestamp) {
                    Some((_, len)) if len == m.len => Some(0),
                    _ if self.offset_tries < MAX_OFFSET_TRIES => {
                        self.offset_tries += 1;
                        table
                            .find_recent(m.len, keyframe)
                            .map(|ts| m.timestamp.wrapping_sub(ts))
                    }
                    _ => None,
                };
                match found {
                    Some(o) => {
                        self.ts_offset = Some(o);
                        o
                    }
                    None => {
                        self.unmatched += 1;
                        return;
                    }
                }
            }
        };
        let Some((send_us, len)) = a.shared.table.lookup(m.timestamp.wrapping_sub(offset)) else {
            self.unmatched += 1;
            return;
        };
        if len != m.len {
            self.unmatched += 1;
            return;
        }
        if self.first_frame_send_us.is_none() {
            self.first_frame_send_us = Some(send_us);
        }
        let (start, end) = a.window;
        if send_us >= start && send_us <= end {
            let latency = a.now_us.saturating_sub(send_us);
            a.hist.record(latency);
            self.frames_in_window += 1;
            self.max_latency_us = self.max_latency_us.max(latency);
        }
    }

    /// A status the server sent: an error ends the player.
    fn on_command(&mut self, payload: &[u8]) {
        let Ok(cmd) = parse_command(payload, &Amf0Limits::default()) else {
            return;
        };
        if cmd.name != "onStatus" && cmd.name != "_error" {
            return;
        }
        let info = cmd.args.first();
        let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str);
        if field("level") == Some("error") || cmd.name == "_error" {
            self.ended = Some(format!(
                "play refused: {} ({})",
                field("code").unwrap_or("?"),
                field("description").unwrap_or("")
            ));
        }
    }
}

impl PlayerConn {
    /// Feeds one read's bytes; queues acknowledgements and ping responses.
    fn on_bytes(&mut self, data: &[u8], a: &mut Arrival<'_>) -> Result<()> {
        let PlayerConn {
            scanner,
            stats,
            ack_window,
            out,
            ..
        } = self;
        scanner.feed(data, &mut |e| match e {
            Event::Media(m) => {
                if m.type_id == TYPE_VIDEO {
                    stats.on_video(&m, a);
                }
            }
            Event::Message {
                type_id, payload, ..
            } => match type_id {
                type_id::COMMAND_AMF0 => stats.on_command(payload),
                type_id::COMMAND_AMF3 => stats.on_command(payload.get(1..).unwrap_or(&[])),
                _ => {
                    if let Some(pong) = control_reply(type_id, payload, ack_window) {
                        ping_response(&pong, out);
                    }
                }
            },
        })?;
        acknowledge(
            &self.scanner,
            self.ack_window,
            &mut self.acked,
            &mut self.out,
        );
        if !self.out.is_empty() {
            // A few bytes on a socket whose send buffer is empty: never blocks in practice;
            // if it would, they are dropped (an ack is informational, a late pong harmless).
            let _ = std::io::Write::write(&mut self.socket, &self.out);
            self.out.clear();
        }
        if let Some(why) = &self.stats.ended {
            bail!("{why}");
        }
        Ok(())
    }
}

/// What a worker hands back at the end.
pub struct WorkerResult {
    pub latency: Histogram,
    pub players: Vec<PlayerStats>,
}

/// A worker's running totals (one writer, read by the main thread at the window's edges).
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes read by its players.
    pub bytes: AtomicU64,
    /// `read` calls.
    pub reads: AtomicU64,
    /// `epoll_wait` calls that returned events.
    pub polls: AtomicU64,
    /// Reads that carried a kernel receive timestamp.
    pub stamped: AtomicU64,
}

/// A running worker: where connectors hand players over.
pub struct Worker {
    epoll: Arc<OwnedFd>,
    pending: Arc<Mutex<Vec<PlayerConn>>>,
    pub counters: Arc<Counters>,
    join: Option<JoinHandle<WorkerResult>>,
}

impl Worker {
    /// A worker thread; with `batch_us` > 0 it waits at least that long between polls
    /// (fewer wake-ups and reads, see `--batch-us`).
    pub fn spawn(index: usize, shared: Arc<Shared>, batch_us: u64) -> Result<Worker> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("epoll_create1");
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let epoll = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let pending = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let join = {
            let (epoll, pending, counters) = (epoll.clone(), pending.clone(), counters.clone());
            std::thread::Builder::new()
                .name(format!("bench-players-{index}"))
                .spawn(move || run(epoll.as_raw_fd(), &pending, &counters, &shared, batch_us))
                .context("while starting a player thread")?
        };
        Ok(Worker {
            epoll,
            pending,
            counters,
            join: Some(join),
        })
    }

    /// Hands a player over: into the pending list, then into the epoll set.
    pub fn add(&self, player: PlayerConn) -> Result<()> {
        let fd = player.socket.as_raw_fd();
        let id = player.stats.id as u64;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(player);
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: id,
        };
        // SAFETY: valid epoll and socket descriptors, `ev` lives across the call.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("epoll_ctl(ADD)");
        }
        Ok(())
    }

    /// Waits for the worker to end (after `shared.stop`).
    pub fn finish(mut self) -> WorkerResult {
        self.join
            .take()
            .and_then(|j| j.join().ok())
            .unwrap_or(WorkerResult {
                latency: Histogram::new(),
                players: Vec::new(),
            })
    }
}

/// `recvmsg` into `buf`; also returns the kernel's receive timestamp of the last segment
/// read (`SO_TIMESTAMPNS`, wall clock), when the socket has it enabled.
fn recv_timestamped(
    fd: RawFd,
    buf: &mut [u8],
    cmsg: &mut [u64; 8],
) -> std::io::Result<(usize, Option<libc::timespec>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call and the
    // lengths are those of the buffers they point to.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(cmsg) as _;
    // SAFETY: see above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled, within
    // msg_controllen; the timestamp is read unaligned from inside it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                stamp = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c).cast::<libc::timespec>(),
                ));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, stamp))
}

fn run(
    epfd: RawFd,
    pending: &Mutex<Vec<PlayerConn>>,
    counters: &Counters,
    shared: &Shared,
    batch_us: u64,
) -> WorkerResult {
    let mut players: Vec<Option<PlayerConn>> = Vec::new();
    let mut finished: Vec<PlayerStats> = Vec::new();
    let mut hist = Histogram::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let adopt = |players: &mut Vec<Option<PlayerConn>>| {
        let mut list = pending.lock().unwrap_or_else(|e| e.into_inner());
        for p in list.drain(..) {
            let id = p.stats.id;
            if players.len() <= id {
                players.resize_with(id + 1, || None);
            }
            if let Some(slot) = players.get_mut(id) {
                *slot = Some(p);
            }
        }
    };
    let mut cmsg = [0u64; 8];
    let mut last_poll = shared.clock.now_us();
    while !shared.stopping() {
        if batch_us > 0 {
            shared.clock.sleep_until(last_poll + batch_us);
            last_poll = shared.clock.now_us();
        }
        // SAFETY: `events` has MAX_EVENTS entries; the kernel writes at most that many.
        let n = unsafe {
            libc::epoll_wait(
                epfd,
                events.as_mut_ptr(),
                MAX_EVENTS as i32,
                POLL_TIMEOUT_MS,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if n > 0 {
            counters.polls.fetch_add(1, Ordering::Relaxed);
        }
        let window = shared.window();
        for ev in events.iter().take(n as usize) {
            let id = ev.u64 as usize;
            if players.get(id).is_none_or(|p| p.is_none()) {
                adopt(&mut players);
            }
            let Some(slot) = players.get_mut(id) else {
                continue;
            };
            let Some(player) = slot.as_mut() else {
                continue;
            };
            counters.reads.fetch_add(1, Ordering::Relaxed);
            let end = match recv_timestamped(player.socket.as_raw_fd(), &mut buf, &mut cmsg) {
                Ok((0, _)) => Some("the server closed the connection".to_owned()),
                Ok((n, stamp)) => {
                    let now_us = shared.clock.now_us();
                    if stamp.is_some() {
                        counters.stamped.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut arrival = Arrival {
                        shared,
                        hist: &mut hist,
                        now_us: stamp
                            .and_then(|ts| shared.clock.micros_since_start(ts))
                            .filter(|&t| t <= now_us + 1_000)
                            .unwrap_or(now_us),
                        window,
                    };
                    counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    match player.on_bytes(buf.get(..n).unwrap_or(&[]), &mut arrival) {
                        Ok(()) => None,
                        Err(e) => Some(format!("{e:#}")),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
                Err(e) => Some(format!("read: {e}")),
            };
            if let Some(why) = end {
                if let Some(mut p) = slot.take() {
                    // SAFETY: removing a descriptor we registered; the event pointer may be
                    // null for EPOLL_CTL_DEL.
                    unsafe {
                        libc::epoll_ctl(
                            epfd,
                            libc::EPOLL_CTL_DEL,
                            p.socket.as_raw_fd(),
                            std::ptr::null_mut(),
                        );
                    }
                    p.stats.ended.get_or_insert(why);
                    finished.push(p.stats);
                }
            }
        }
    }
    adopt(&mut players);
    finished.extend(players.into_iter().flatten().map(|p| p.stats));
    WorkerResult {
        latency: hist,
        players: finished,
    }
}
