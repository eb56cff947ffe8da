//! What the publisher and the players share: one clock, the send instant of every video frame
//! (so a player turns an arrival into a latency with one table lookup), the measurement
//! window and the stop flag.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Microseconds since the benchmark started: the only time the generator's threads compare.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    /// CLOCK_REALTIME at `start`, ns (kernel receive timestamps are wall-clock).
    realtime_start_ns: i128,
}

fn realtime_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one valid, live timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
    }
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    pub fn new() -> Self {
        let start = Instant::now();
        Clock {
            start,
            realtime_start_ns: realtime_ns(),
        }
    }

    /// A kernel wall-clock timestamp on this clock (`None` if before the start). The two
    /// clocks are read back to back once; over a benchmark their drift is microseconds.
    pub fn micros_since_start(&self, ts: libc::timespec) -> Option<u64> {
        let ns = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
        u64::try_from((ns - self.realtime_start_ns) / 1000).ok()
    }

    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Sleeps until `at_us` (returns at once if it has passed).
    pub fn sleep_until(&self, at_us: u64) {
        let now = self.now_us();
        if at_us > now {
            std::thread::sleep(Duration::from_micros(at_us - now));
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Puts the calling thread one step ahead of the player threads, so that a saturated player
/// thread can starve neither the publisher's schedule (that would hide the saturation as a
/// lighter load) nor the connectors and the sampler. Under SCHED_FIFO/RR (`chrt`), where an
/// equally ranked busy thread is never preempted, one real-time priority step up; otherwise
/// five nice steps down, which needs privilege and is skipped without it. Threads spawned
/// afterwards by this thread inherit it.
pub fn raise_thread_priority() {
    // SAFETY: sched_getscheduler/getparam/setscheduler and get/setpriority on the calling
    // thread (pid 0 / its tid) with a valid, live sched_param.
    unsafe {
        let policy = libc::sched_getscheduler(0);
        if policy == libc::SCHED_FIFO || policy == libc::SCHED_RR {
            let mut param: libc::sched_param = std::mem::zeroed();
            if libc::sched_getparam(0, &mut param) == 0 {
                let max = libc::sched_get_priority_max(policy);
                param.sched_priority = (param.sched_priority + 1).min(max);
                libc::sched_setscheduler(0, policy, &param);
            }
        } else {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, nice - 5);
        }
    }
}

/// Slots of the send table: one per millisecond of RTMP time, reused after 2^20 ms (17.5
/// minutes); a player that far behind is long past keeping up, and the length check catches
/// a stale slot.
const SLOTS: usize = 1 << 20;

/// Bits of a slot holding the payload length (RTMP lengths are 24-bit).
const LEN_BITS: u32 = 24;

/// One video frame the publisher sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentFrame {
    pub timestamp_ms: u32,
    pub send_us: u64,
    pub len: u32,
    pub keyframe: bool,
}

/// Send instants of the publisher's coded video frames, by RTMP timestamp. Each slot packs
/// (send µs + 1) << 24 | payload length in one atomic word: the publisher stores it before the
/// frame's first byte goes to the socket, so a player that has the frame always finds it.
pub struct SendTable {
    slots: Box<[AtomicU64]>,
    frames: Mutex<Vec<SentFrame>>,
}

impl Default for SendTable {
    fn default() -> Self {
        Self::new()
    }
}

impl SendTable {
    pub fn new() -> Self {
        SendTable {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            frames: Mutex::new(Vec::new()),
        }
    }

    fn frames(&self) -> std::sync::MutexGuard<'_, Vec<SentFrame>> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, frame: SentFrame) {
        let packed = ((frame.send_us + 1) << LEN_BITS) | u64::from(frame.len & 0xFF_FFFF);
        if let Some(slot) = self.slots.get(frame.timestamp_ms as usize % SLOTS) {
            slot.store(packed, Ordering::Release);
        }
        self.frames().push(frame);
    }

    /// (send µs, payload length) of the frame with timestamp `timestamp_ms`, if sent.
    pub fn lookup(&self, timestamp_ms: u32) -> Option<(u64, u32)> {
        let packed = self
            .slots
            .get(timestamp_ms as usize % SLOTS)?
            .load(Ordering::Acquire);
        (packed != 0).then(|| {
            (
                (packed >> LEN_BITS) - 1,
                (packed & ((1 << LEN_BITS) - 1)) as u32,
            )
        })
    }

    /// The timestamp of the latest sent frame with this length and key flag (how a player
    /// whose server rewrites timestamps finds the offset, once).
    pub fn find_recent(&self, len: u32, keyframe: bool) -> Option<u32> {
        self.frames()
            .iter()
            .rev()
            .take(10_000)
            .find(|f| f.len == len && f.keyframe == keyframe)
            .map(|f| f.timestamp_ms)
    }

    /// Frames sent with `from_us <= send_us <= to_us`.
    pub fn count_sent_between(&self, from_us: u64, to_us: u64) -> u64 {
        let frames = self.frames();
        let lo = frames.partition_point(|f| f.send_us < from_us);
        let hi = frames.partition_point(|f| f.send_us <= to_us);
        hi.saturating_sub(lo) as u64
    }
}

/// Everything the generator's threads share.
pub struct Shared {
    pub clock: Clock,
    pub table: SendTable,
    /// The steady-state window, in clock µs (frames *sent* in it are measured); `u64::MAX`
    /// until the ramp is over.
    window_start_us: AtomicU64,
    window_end_us: AtomicU64,
    pub stop: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            clock: Clock::new(),
            table: SendTable::new(),
            window_start_us: AtomicU64::new(u64::MAX),
            window_end_us: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        }
    }

    pub fn set_window(&self, start_us: u64, end_us: u64) {
        self.window_end_us.store(end_us, Ordering::Release);
        self.window_start_us.store(start_us, Ordering::Release);
    }

    /// (start, end) µs; start is `u64::MAX` before it is set.
    pub fn window(&self) -> (u64, u64) {
        (
            self.window_start_us.load(Ordering::Acquire),
            self.window_end_us.load(Ordering::Acquire),
        )
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_and_counts() {
        let t = SendTable::new();
        assert_eq!(t.lookup(33), None);
        for i in 0..10u32 {
            t.record(SentFrame {
                timestamp_ms: i * 33,
                send_us: 1_000 + u64::from(i) * 33_000,
                len: 5_000 + i,
                keyframe: i % 5 == 0,
            });
        }
        assert_eq!(t.lookup(33), Some((34_000, 5_001)));
        assert_eq!(t.lookup(34), None);
        assert_eq!(t.find_recent(5_005, true), Some(165));
        assert_eq!(t.find_recent(5_005, false), None);
        assert_eq!(t.count_sent_between(34_000, 100_000), 3);
        assert_eq!(t.count_sent_between(0, u64::MAX), 10);
    }
}
