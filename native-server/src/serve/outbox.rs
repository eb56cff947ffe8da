//! What one connection has to send, and the task that writes it.
//!
//! Every RTMP connection has one [`Outbox`] and one writer task ([`run_writer`]) that owns the
//! socket's write half. Two producers fill the outbox without ever waiting on the socket:
//!
//! - the connection's own reader task *stages* replies and control messages (`staged`: a
//!   bounded FIFO of ready-to-send chunked bytes);
//! - when the connection plays a stream, the publisher's task pushes media into the
//!   connection's [`SubscriberQueue`] — sim-core's state machine, which bounds the queue and
//!   applies the drop policy, so a slow player only ever fills (and loses from) its own queue.
//!
//! The writer drains `staged` first, then takes a batch from the queue when the queue's
//! [`SubscriberQueue::flush_at`] (write coalescing) says so, and writes everything with
//! vectored writes: many messages per syscall, each a `Bytes` shared with every other player
//! (no per-player copy). Staged bytes go before queued media within a round, which is the
//! order RTMP needs (play replies before the first media); where media must go *before* a
//! control message (`UnpublishNotify` after the last frame), [`Outbox::commit_then_stage`]
//! moves the queued media into `staged` first.
//!
//! On a runtime with one worker thread (the server pinned to one core) a second path takes
//! the common case: the stream's flusher task (`relay::run_flusher`), woken once per fan-out,
//! calls [`Outbox::flush_direct`] for every player, which — when the writer task is idle and
//! nothing is staged — sends the due media itself in one non-blocking call, as nginx's event
//! loop does; the writer task only takes over what a full socket leaves. The `writing` flag
//! (set while the writer task has bytes in flight) keeps the two from ever reordering bytes.
//!
//! Locking: one small `std::sync::Mutex` per outbox, held only to push or take (never across
//! an `.await`); the writer waits on a [`Doorbell`] (a flag and its waker) that new work and
//! close both ring, so no wake-up is lost and a wait costs no waiter-list bookkeeping.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use sim_core::server::{MediaInfo, PushOutcome, QueueStats, SubscriberQueue};
use sim_core::Micros;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use super::relay::{Clock, Metrics};

/// The message stream id every shared media message is chunked with (the id the first
/// `createStream` of a connection returns). A player that plays on another id gets the
/// 12-byte type-0 header rewritten for it (see [`retarget`]); the payload is still shared.
pub const MEDIA_STREAM_ID: u32 = 1;

/// Largest batch the writer takes from the queue per round: enough for many messages per
/// syscall, small enough that staged control messages are never stuck behind megabytes.
const WRITE_BATCH_BYTES: u64 = 256 * 1024;

/// Most messages [`Outbox::flush_direct`] sends in one call (more is the writer task's job).
pub const DIRECT_MESSAGES: usize = 8;

/// Most `IoSlice`s per `write_vectored` call (Linux accepts 1024; 64 × typical frame sizes
/// already fills a socket buffer).
const MAX_IOVECS: usize = 64;

/// Staged bytes allowed beyond the queue's own bound. Replies are tiny; a peer that keeps
/// sending commands while never reading its socket hits this and is closed.
const STAGED_SLACK_BYTES: usize = 1024 * 1024;

/// The writer task's wake-up: rung for every message queued (once per message per player,
/// so it must be cheap) and on close. One waiter only, so instead of [`Notify`]'s waiter
/// list (a lock and a list node per wait, another to unregister) it is a flag plus the
/// waiting task's waker: ringing an already rung bell costs one atomic swap.
#[derive(Debug, Default)]
pub struct Doorbell {
    rung: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Doorbell {
    pub fn ring(&self) {
        // Already rung: whoever rang it wakes (or has woken) the task, which will see it.
        if self.rung.swap(true, Ordering::AcqRel) {
            return;
        }
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Resolves once the bell has rung since the last `wait` (at once if it has).
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.rung.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            {
                let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
                match slot.as_ref() {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *slot = Some(cx.waker().clone()),
                }
            }
            // Rung between the first check and the registration: its `take` may have found
            // no waker, so look again.
            if self.rung.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// A close request: hard (stop now) or graceful (flush what is staged, then close).
#[derive(Debug, Default)]
pub struct CloseSignal {
    closed: AtomicBool,
    notify: Notify,
    /// The connection's writer task waits here (for new work as well; see [`Outbox`]).
    writer: Doorbell,
}

impl CloseSignal {
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
        self.writer.ring();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once [`Self::close`] has been called (at once if it already was).
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking the flag, so a close between the two is not missed.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct OutboxState {
    staged: VecDeque<Bytes>,
    staged_bytes: usize,
    /// Present while the connection plays a stream.
    queue: Option<SubscriberQueue<Bytes>>,
    /// The message stream id the player plays on.
    play_stream_id: u32,
    /// Write what is staged, then close.
    close_after_flush: bool,
    /// Queue statistics of earlier plays on this connection (the API shows totals).
    past: QueueStats,
    /// The socket's write half, once the writer task runs; see [`Outbox::push_media`].
    socket: Option<Arc<OwnedWriteHalf>>,
    /// The writer task took bytes from here and has not finished writing them: until it has,
    /// nothing may be written past it.
    writing: bool,
}

/// What [`Outbox::push_media`] did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// sim-core's decision.
    pub outcome: PushOutcome,
    /// Already-queued messages the push discarded.
    pub evicted: u64,
    /// It waits for the stream's flusher ([`Outbox::flush_direct`]).
    pub flush: bool,
}

/// One connection's outbound side. See the module docs.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    /// Set when the connection must end (by the writer, the reader, the relay or shutdown).
    pub close: CloseSignal,
    pub peer: SocketAddr,
    pub connected_at: Instant,
    staged_limit: usize,
}

impl Outbox {
    /// `queue_max_bytes` sizes the staged-bytes bound (staged may hold a committed queue).
    pub fn new(peer: SocketAddr, queue_max_bytes: u64) -> Self {
        let queue_part = usize::try_from(queue_max_bytes).unwrap_or(usize::MAX);
        Outbox {
            state: Mutex::new(OutboxState {
                staged: VecDeque::new(),
                staged_bytes: 0,
                queue: None,
                play_stream_id: MEDIA_STREAM_ID,
                close_after_flush: false,
                past: QueueStats::default(),
                socket: None,
                writing: false,
            }),
            close: CloseSignal::default(),
            peer,
            connected_at: Instant::now(),
            staged_limit: queue_part
                .saturating_mul(2)
                .saturating_add(STAGED_SLACK_BYTES),
        }
    }

    /// Wakes the writer task (it shares the close signal's doorbell, so one wait covers both).
    fn wake(&self) {
        self.close.writer.ring();
    }

    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        // A panic while holding this lock cannot leave the state inconsistent in a way that
        // matters more than losing the connection; keep serving rather than poison-cascade.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues ready-to-send bytes (replies, control). Closes the connection if the peer lets
    /// too much pile up.
    pub fn stage(&self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        let over = {
            let mut st = self.lock();
            st.staged_bytes = st.staged_bytes.saturating_add(bytes.len());
            st.staged.push_back(bytes);
            st.staged_bytes > self.staged_limit
        };
        if over {
            tracing::warn!(peer = %self.peer, "peer does not read its socket: closing");
            self.close.close();
        }
        self.wake();
    }

    /// Moves every queued media message into `staged` (so it is written before what follows),
    /// then stages `controls`. Used when the publisher leaves: the last frames, then
    /// `UnpublishNotify` and Stream EOF.
    pub fn commit_then_stage(&self, controls: &[Bytes]) {
        let over = {
            let mut st = self.lock();
            let st = &mut *st;
            let sid = st.play_stream_id;
            if let Some(q) = st.queue.as_mut() {
                let staged = &mut st.staged;
                let mut added = 0usize;
                q.pop_batch(u64::MAX, |_, b| {
                    added = added.saturating_add(b.len());
                    retarget(b, sid, |part| staged.push_back(part));
                });
                st.staged_bytes = st.staged_bytes.saturating_add(added);
            }
            for c in controls.iter().filter(|c| !c.is_empty()) {
                st.staged_bytes = st.staged_bytes.saturating_add(c.len());
                st.staged.push_back(c.clone());
            }
            st.staged_bytes > self.staged_limit
        };
        if over {
            self.close.close();
        }
        self.wake();
    }

    /// Starts playing: media pushed from now on goes through `queue` (which may already hold
    /// the join burst) and is addressed to message stream `stream_id`.
    pub fn start_playing(&self, queue: SubscriberQueue<Bytes>, stream_id: u32) {
        {
            let mut st = self.lock();
            st.play_stream_id = stream_id;
            st.queue = Some(queue);
        }
        self.wake();
    }

    /// Stops playing; what is still queued is dropped (the player asked to stop).
    pub fn stop_playing(&self) {
        let mut st = self.lock();
        if let Some(q) = st.queue.take() {
            let s = q.stats();
            add_stats(&mut st.past, &s);
        }
    }

    /// Offers one media message to the player's queue: sim-core decides (queue, drop, or
    /// disconnect).
    ///
    /// With `direct` (the stream's flusher will run, see `relay::Stream`), a message due at once
    /// whose queue was empty and whose writer task is idle does not wake the writer: the
    /// flusher writes it, with whatever else the publisher's read brought, in
    /// [`Outbox::flush_direct`]. Otherwise the writer is woken when its next flush time
    /// changed: the queue was empty, or the coalescing window was cut short (enough bytes
    /// queued); a push that does not move it (the writer is already due to write, or asleep
    /// until a deadline this push does not change) saves a wake-up per message per player.
    pub fn push_media(&self, now: Micros, info: MediaInfo, bytes: Bytes, direct: bool) -> Pushed {
        let mut evicted = 0u64;
        let (outcome, wake, flush) = {
            let mut guard = self.lock();
            let st = &mut *guard;
            match st.queue.as_mut() {
                Some(q) => {
                    let before = q.flush_at();
                    let outcome = q.push_with_drops(now, info, bytes, |_, _, _| evicted += 1);
                    let after = q.flush_at();
                    let queued = outcome == PushOutcome::Queued;
                    let for_flusher = direct
                        && queued
                        && after.is_some_and(|at| at <= now)
                        && !st.writing
                        && st.staged.is_empty()
                        && st.socket.is_some();
                    if for_flusher {
                        (outcome, false, true)
                    } else {
                        (outcome, queued && after != before, false)
                    }
                }
                None => (
                    PushOutcome::Dropped(sim_core::server::DropReason::Disconnected),
                    false,
                    false,
                ),
            }
        };
        match outcome {
            PushOutcome::Disconnect => self.close.close(),
            _ if wake => self.wake(),
            _ => {}
        }
        Pushed {
            outcome,
            evicted,
            flush,
        }
    }

    /// The stream's flusher calls this for every player after the publisher's task has handed
    /// over what it read: when the writer task is idle and media is due, up to
    /// [`DIRECT_MESSAGES`] messages go out in one non-blocking `send`/`writev` right here (no
    /// wake-up of the writer task, no task switch per message per player — what nginx's event
    /// loop does). Under load the publisher's reads carry several messages, so each player
    /// gets them in one call. Whatever the socket does not take, and any message beyond the
    /// batch, goes to the writer task (front of `staged`, which it writes first). Returns the
    /// bytes written.
    pub fn flush_direct(&self, now: Micros) -> u64 {
        let mut written = 0u64;
        let mut failed = false;
        let wake = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let idle = !st.writing && st.staged.is_empty();
            match (st.queue.as_mut(), st.socket.as_ref()) {
                (Some(q), Some(socket)) if idle && q.flush_at().is_some_and(|at| at <= now) => {
                    let mut parts: [Bytes; 2 * DIRECT_MESSAGES] = Default::default();
                    let mut count = 0;
                    let sid = st.play_stream_id;
                    for _ in 0..DIRECT_MESSAGES {
                        let Some((_, message)) = q.pop() else {
                            break;
                        };
                        retarget(message, sid, |part| {
                            if let Some(slot) = parts.get_mut(count) {
                                *slot = part;
                                count += 1;
                            }
                        });
                    }
                    let more = q.flush_at().is_some();
                    let parts = parts.get_mut(..count).unwrap_or(&mut []);
                    match write_now(socket, parts) {
                        Ok(n) => written = n,
                        Err(_) => failed = true,
                    }
                    // What the socket did not take waits, in order, for the writer.
                    let mut wake = more;
                    for part in parts.iter_mut().rev().filter(|p| !p.is_empty()) {
                        st.staged_bytes = st.staged_bytes.saturating_add(part.len());
                        st.staged.push_front(std::mem::take(part));
                        wake = true;
                    }
                    wake
                }
                // Busy writer, staged replies, no socket yet: the writer takes the media.
                (Some(q), _) => q.flush_at().is_some_and(|at| at <= now),
                (None, _) => false,
            }
        };
        if failed {
            self.close.close();
        } else if wake {
            self.wake();
        }
        written
    }

    /// Write what is staged, then close.
    pub fn close_after_flush(&self) {
        self.lock().close_after_flush = true;
        self.wake();
    }

    /// Bytes waiting (staged and queued) and the queue's counters, totals over the
    /// connection's plays.
    pub fn stats(&self) -> (u64, QueueStats) {
        let st = self.lock();
        let mut total = st.past;
        let mut queued = st.staged_bytes as u64;
        if let Some(q) = &st.queue {
            add_stats(&mut total, &q.stats());
            queued = queued.saturating_add(q.queued_bytes());
        }
        (queued, total)
    }
}

fn add_stats(acc: &mut QueueStats, s: &QueueStats) {
    acc.pushed = acc.pushed.saturating_add(s.pushed);
    acc.delivered = acc.delivered.saturating_add(s.delivered);
    acc.delivered_bytes = acc.delivered_bytes.saturating_add(s.delivered_bytes);
    acc.dropped_full = acc.dropped_full.saturating_add(s.dropped_full);
    acc.dropped_waiting_key = acc
        .dropped_waiting_key
        .saturating_add(s.dropped_waiting_key);
    acc.dropped_disconnected = acc
        .dropped_disconnected
        .saturating_add(s.dropped_disconnected);
    acc.dropped_bytes = acc.dropped_bytes.saturating_add(s.dropped_bytes);
}

/// Hands `message` (a shared chunked media message, chunked for [`MEDIA_STREAM_ID`]) to
/// `out`, addressed to `stream_id`. For another stream id only the 12-byte type-0 header
/// (1-byte basic header + 11 bytes; the media chunk stream ids are < 64) is copied and
/// patched — the message stream id appears nowhere else, type-3 continuation headers do not
/// carry it — and the rest is a shared slice.
fn retarget(message: Bytes, stream_id: u32, mut out: impl FnMut(Bytes)) {
    const HEADER: usize = 12;
    if stream_id == MEDIA_STREAM_ID || message.len() < HEADER {
        out(message);
        return;
    }
    let mut header = BytesMut::from(&message[..HEADER]);
    header[8..HEADER].copy_from_slice(&stream_id.to_le_bytes());
    out(header.freeze());
    out(message.slice(HEADER..));
}

/// The writer task of one connection: writes staged bytes and queued media until the
/// connection closes. `idle` bounds how long one write may make no progress (a player that
/// stops reading). Always ends by closing the outbox, which tells the reader task.
pub async fn run_writer(
    outbox: Arc<Outbox>,
    socket: OwnedWriteHalf,
    clock: Clock,
    metrics: Arc<Metrics>,
    idle: Duration,
) {
    let socket = Arc::new(socket);
    outbox.lock().socket = Some(socket.clone());
    let mut batch: VecDeque<Bytes> = VecDeque::with_capacity(MAX_IOVECS);
    loop {
        if outbox.close.is_closed() {
            break;
        }
        let mut deadline: Option<Micros> = None;
        let finish = {
            let mut st = outbox.lock();
            let st = &mut *st;
            if !st.staged.is_empty() {
                batch.extend(st.staged.drain(..));
                st.staged_bytes = 0;
            }
            let sid = st.play_stream_id;
            if let Some(q) = st.queue.as_mut() {
                if let Some(at) = q.flush_at() {
                    let now = clock.now();
                    if at <= now {
                        q.pop_batch(WRITE_BATCH_BYTES, |_, b| {
                            retarget(b, sid, |part| batch.push_back(part))
                        });
                    } else {
                        deadline = Some(at);
                    }
                }
            }
            st.writing = !batch.is_empty();
            st.close_after_flush
        };
        if !batch.is_empty() {
            let result = write_all(&socket, &mut batch, idle).await;
            outbox.lock().writing = false;
            match result {
                Ok(n) => metrics.add_bytes_out(n),
                Err(e) => {
                    tracing::debug!(peer = %outbox.peer, error = %e, "write failed");
                    break;
                }
            }
            continue;
        }
        if finish {
            break;
        }
        // One wait covers new work and close (both ring the doorbell; the loop re-checks the
        // close flag first); a coalescing deadline adds a timer.
        match deadline {
            None => outbox.close.writer.wait().await,
            Some(at) => {
                tokio::select! {
                    _ = outbox.close.writer.wait() => {}
                    _ = tokio::time::sleep_until(clock.instant_of(at).into()) => {}
                }
            }
        }
    }
    // Take the socket back from the outbox (no direct write can start any more), then
    // half-close so the peer sees a clean end after the last bytes (bounded: a peer that
    // does not read cannot hold the task).
    let shared = outbox.lock().socket.take();
    drop(shared);
    if let Ok(mut socket) = Arc::try_unwrap(socket) {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.shutdown()).await;
    }
    outbox.close.close();
}

/// Does this runtime run on one worker thread? (Then each stream's flusher writes to its
/// players' sockets; see [`Outbox::flush_direct`].)
pub fn single_worker_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|h| h.metrics().num_workers() == 1)
}

/// One non-blocking write of `parts`; advances them past what was
/// written and returns the count (`WouldBlock` is not an error: nothing was written).
fn write_now(socket: &OwnedWriteHalf, parts: &mut [Bytes]) -> std::io::Result<u64> {
    let result = match parts {
        [] => return Ok(0),
        // send(2) for one buffer: lighter than writev(2) (no iovec import, no fsnotify).
        [one] => socket.try_write(one),
        _ => {
            let mut slices = [IoSlice::new(&[]); 2 * DIRECT_MESSAGES];
            let mut count = 0;
            for (slot, part) in slices.iter_mut().zip(parts.iter()) {
                *slot = IoSlice::new(part);
                count += 1;
            }
            socket.try_write_vectored(slices.get(..count).unwrap_or(&[]))
        }
    };
    let n = match result {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let mut left = n;
    for part in parts.iter_mut() {
        let take = left.min(part.len());
        part.advance(take);
        left -= take;
    }
    Ok(n as u64)
}

/// Writes every buffer of `bufs` (emptying it), many per syscall (`writev`; `send` for one).
/// Fails if the socket stays full for `idle`.
async fn write_all(
    socket: &OwnedWriteHalf,
    bufs: &mut VecDeque<Bytes>,
    idle: Duration,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    while !bufs.is_empty() {
        let n = {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, buf) in slices.iter_mut().zip(bufs.iter()) {
                *slot = IoSlice::new(buf);
                count += 1;
            }
            let slices = slices.get(..count).unwrap_or(&[]);
            // The socket usually has room: write at once (no future, no timer); only a
            // full socket waits for writability, bounded by `idle`.
            let attempt = match slices {
                [one] => socket.try_write(one),
                _ => socket.try_write_vectored(slices),
            };
            match attempt {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if tokio::time::timeout(idle, socket.writable()).await.is_err() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "peer accepted no data within the idle timeout",
                        ));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        total = total.saturating_add(n as u64);
        let mut left = n;
        while left > 0 {
            let Some(front) = bufs.front_mut() else {
                break;
            };
            if left >= front.len() {
                left -= front.len();
                bufs.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
        while bufs.front().is_some_and(|b| b.is_empty()) {
            bufs.pop_front();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::writer::{ChunkedMessage, CSID_VIDEO};

    #[test]
    fn retarget_rewrites_only_the_stream_id() {
        let payload = vec![7u8; 10_000];
        let one = ChunkedMessage::new(CSID_VIDEO, 1234, 9, 1, &payload, 4096).expect("chunk");
        let three = ChunkedMessage::new(CSID_VIDEO, 1234, 9, 3, &payload, 4096).expect("chunk");
        let mut parts = Vec::new();
        retarget(one.bytes().clone(), 3, |p| parts.push(p));
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(joined, three.bytes().to_vec());
        let mut same = Vec::new();
        retarget(one.bytes().clone(), 1, |p| same.push(p));
        assert_eq!(same, vec![one.bytes().clone()]);
    }
}
