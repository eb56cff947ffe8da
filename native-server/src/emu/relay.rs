//! The relay between the two TUN devices: a reader thread that asks each flow's
//! [`LinkModel`] for every packet's fate, a timer queue, and a writer thread with a precise
//! timer that releases packets at their due time (see the module docs of [`super`]).

use super::{
    DirectionStats, EmuStats, LatenessStats, StopReason, MAX_FLOWS, MAX_QUEUED_PACKETS, PLAYER_IP,
    PUBLISHER_IP, SERVER_IP, SERVER_IP_FOR_PLAYERS,
};
use sim_core::link::{flow_stream, DropReason, LinkModel, PacketFate};
use sim_core::net::PathConfig;
use sim_core::Micros;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The writer sleeps until this long before a packet is due, then spins: futex wake-ups on a
/// shared 2-vCPU machine land within a few tens of µs even with a 1 ns timer slack.
const SPIN_NS: u64 = 50_000;
/// The longest the reader blocks in `poll` before checking the deadline again.
const POLL_MS: u64 = 100;
/// Packets read from one TUN before looking at the other (fairness under a burst).
const READ_BATCH: usize = 64;
/// Real-time priority of the relay threads (SCHED_FIFO, 1–99): above every normal task (an
/// x264 encoder saturating both cores must not delay a packet), low among real-time ones.
const RT_PRIORITY: i32 = 10;
/// Lateness histogram: 1 µs buckets up to this many µs.
const LATENESS_BUCKETS: usize = 10_000;

/// Side index of the TUN fds: 0 = server namespace, 1 = client namespace.
const SERVER_SIDE: usize = 0;
const CLIENT_SIDE: usize = 1;

pub(super) struct Paths {
    pub uplink: PathConfig,
    pub downlink: PathConfig,
    pub seed: u64,
}

/// State shared by the [`super::Emulator`], the relay threads and the signal watcher.
pub(super) struct Shared {
    pub start: Instant,
    deadline: Instant,
    stopping: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    reason_cv: Condvar,
    timer: Mutex<BinaryHeap<Pending>>,
    timer_cv: Condvar,
    /// An eventfd that wakes the reader out of `poll` at shutdown.
    wake: OwnedFd,
    counters: Mutex<Counters>,
    /// Every packet's lateness, and only those of packets the writer was idle for (due after
    /// the previous write ended): the timer's own accuracy, without waiting behind a burst.
    lateness: Mutex<[Lateness; 2]>,
    ns_names: [String; 2],
    cleaned: AtomicBool,
    realtime_reader: AtomicBool,
    realtime_writer: AtomicBool,
}

#[derive(Default)]
struct Counters {
    dirs: [DirectionStats; 4],
    unclassified: u64,
    overflow: u64,
    flows: u64,
    largest: u32,
}

struct Lateness {
    buckets: Vec<u64>,
    samples: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Lateness {
    fn new() -> Lateness {
        Lateness {
            buckets: vec![0; LATENESS_BUCKETS],
            samples: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    fn record(&mut self, late_ns: u64) {
        let us = (late_ns / 1_000) as usize;
        self.buckets[us.min(LATENESS_BUCKETS - 1)] += 1;
        self.samples += 1;
        self.sum_ns += late_ns as u128;
        self.max_ns = self.max_ns.max(late_ns);
    }

    fn quantile_us(&self, q: f64) -> f64 {
        if self.samples == 0 {
            return 0.0;
        }
        let rank = ((q * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        let mut seen = 0;
        for (us, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return us as f64;
            }
        }
        (LATENESS_BUCKETS - 1) as f64
    }

    fn stats(&self) -> LatenessStats {
        LatenessStats {
            samples: self.samples,
            p50_us: self.quantile_us(0.5),
            p99_us: self.quantile_us(0.99),
            max_us: self.max_ns as f64 / 1e3,
            mean_us: if self.samples == 0 {
                0.0
            } else {
                self.sum_ns as f64 / self.samples as f64 / 1e3
            },
        }
    }
}

/// Direction indexes into `Counters::dirs`.
#[derive(Clone, Copy)]
enum Dir {
    Uplink = 0,
    UplinkReverse = 1,
    Downlink = 2,
    DownlinkReverse = 3,
}

/// A packet waiting for its due time. Ordered so that the heap's top is the earliest, ties in
/// arrival order.
struct Pending {
    due_ns: u64,
    seq: u64,
    to_side: usize,
    dir: Dir,
    packet: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ns, self.seq) == (other.due_ns, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due_ns, other.seq).cmp(&(self.due_ns, self.seq))
    }
}

impl Shared {
    pub fn new(ns_names: [String; 2], max_duration: Duration) -> Arc<Shared> {
        // SAFETY: eventfd has no memory preconditions.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let wake = if wake >= 0 {
            super::netns::owned(wake)
        } else {
            // Practically unreachable; the reader then notices a stop within POLL_MS.
            std::fs::File::open("/dev/null")
                .expect("/dev/null opens")
                .into()
        };
        let start = Instant::now();
        Arc::new(Shared {
            start,
            deadline: start
                .checked_add(max_duration)
                .unwrap_or(start + Duration::from_secs(86_400 * 365)),
            stopping: AtomicBool::new(false),
            reason: Mutex::new(None),
            reason_cv: Condvar::new(),
            timer: Mutex::new(BinaryHeap::new()),
            timer_cv: Condvar::new(),
            wake,
            counters: Mutex::new(Counters::default()),
            lateness: Mutex::new([Lateness::new(), Lateness::new()]),
            ns_names,
            cleaned: AtomicBool::new(false),
            realtime_reader: AtomicBool::new(false),
            realtime_writer: AtomicBool::new(false),
        })
    }

    fn elapsed_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Stops the relay and deletes the namespaces. Idempotent; the first reason sticks.
    pub fn shutdown(&self, reason: StopReason) {
        {
            let mut r = lock(&self.reason);
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.stopping.store(true, Ordering::Release);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        {
            let _q = lock(&self.timer);
            self.timer_cv.notify_all();
        }
        if !self.cleaned.swap(true, Ordering::AcqRel) {
            for name in &self.ns_names {
                super::netns::delete(name);
            }
            super::signals::unregister(self);
        }
        self.reason_cv.notify_all();
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        *lock(&self.reason)
    }

    pub fn wait(&self, timeout: Option<Duration>) -> Option<StopReason> {
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut r = lock(&self.reason);
        loop {
            if r.is_some() {
                return *r;
            }
            let step = match until {
                None => Duration::from_millis(500),
                Some(u) => {
                    let left = u.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    left
                }
            };
            r = self
                .reason_cv
                .wait_timeout(r, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn stats(&self) -> EmuStats {
        let c = lock(&self.counters);
        let (lateness, timer_lateness) = {
            let l = lock(&self.lateness);
            (l[0].stats(), l[1].stats())
        };
        EmuStats {
            uplink: c.dirs[Dir::Uplink as usize],
            uplink_reverse: c.dirs[Dir::UplinkReverse as usize],
            downlink: c.dirs[Dir::Downlink as usize],
            downlink_reverse: c.dirs[Dir::DownlinkReverse as usize],
            dropped_unclassified: c.unclassified,
            dropped_relay_overflow: c.overflow,
            flows: c.flows,
            largest_packet_bytes: c.largest,
            lateness,
            timer_lateness,
            realtime_scheduling: self.realtime_reader.load(Ordering::Relaxed)
                && self.realtime_writer.load(Ordering::Relaxed),
            elapsed_s: self.start.elapsed().as_secs_f64(),
            stopped: self.stop_reason(),
        }
    }
}

/// Locks, ignoring poisoning: the relay's state stays consistent under a panic elsewhere (each
/// critical section is a few plain updates) and cleanup must never fail.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the reader and writer threads.
pub(super) fn spawn(
    shared: Arc<Shared>,
    tuns: [OwnedFd; 2],
    paths: Paths,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let tuns = Arc::new(tuns);
    let reader = {
        let (shared, tuns) = (shared.clone(), tuns.clone());
        std::thread::Builder::new()
            .name("rl-emu-reader".into())
            .spawn(move || Reader::new(shared, tuns, paths).run())?
    };
    let writer = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("rl-emu-writer".into())
            .spawn(move || run_writer(&shared, &tuns))
    };
    match writer {
        Ok(writer) => Ok(vec![reader, writer]),
        Err(e) => {
            shared.shutdown(StopReason::SetupFailed);
            let _ = reader.join();
            Err(e)
        }
    }
}

/// A flow's two link models.
struct Flow {
    data: LinkModel,
    reverse: LinkModel,
}

/// (protocol, client address, client port, server address, server port).
type FlowKey = (u8, Ipv4Addr, u16, Ipv4Addr, u16);

fn is_server(a: Ipv4Addr) -> bool {
    a == SERVER_IP || a == SERVER_IP_FOR_PLAYERS
}

struct Reader {
    shared: Arc<Shared>,
    tuns: Arc<[OwnedFd; 2]>,
    paths: Paths,
    flows: HashMap<FlowKey, Flow>,
    seq: u64,
}

/// What the relay needs from an IPv4 header.
#[derive(Debug, PartialEq)]
struct Parsed {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    src_port: u16,
    dst_port: u16,
    /// TCP payload bytes, for TCP segments.
    tcp_payload: Option<u32>,
}

fn parse_ipv4(p: &[u8]) -> Option<Parsed> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = ((p[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([p[2], p[3]]) as usize;
    if ihl < 20 || total < ihl || total > p.len() {
        return None;
    }
    let proto = p[9];
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    let l4 = &p[ihl..total];
    let (mut src_port, mut dst_port, mut tcp_payload) = (0, 0, None);
    if frag_offset == 0 && (proto == 6 || proto == 17) && l4.len() >= 4 {
        src_port = u16::from_be_bytes([l4[0], l4[1]]);
        dst_port = u16::from_be_bytes([l4[2], l4[3]]);
        if proto == 6 && l4.len() >= 20 {
            let doff = ((l4[12] >> 4) as usize) * 4;
            tcp_payload = Some(l4.len().saturating_sub(doff) as u32);
        }
    }
    Some(Parsed {
        src,
        dst,
        proto,
        src_port,
        dst_port,
        tcp_payload,
    })
}

impl Reader {
    fn new(shared: Arc<Shared>, tuns: Arc<[OwnedFd; 2]>, paths: Paths) -> Reader {
        Reader {
            shared,
            tuns,
            paths,
            flows: HashMap::new(),
            seq: 0,
        }
    }

    fn run(mut self) {
        let rt = realtime_priority();
        self.shared.realtime_reader.store(rt, Ordering::Relaxed);
        let mut buf = vec![0u8; 65_536];
        loop {
            if self.shared.stopping() {
                return;
            }
            let now = Instant::now();
            if now >= self.shared.deadline {
                self.shared.shutdown(StopReason::MaxDuration);
                return;
            }
            let left_ms = self.shared.deadline.duration_since(now).as_millis() as u64 + 1;
            let mut fds = [
                pollfd(self.tuns[SERVER_SIDE].as_raw_fd()),
                pollfd(self.tuns[CLIENT_SIDE].as_raw_fd()),
                pollfd(self.shared.wake.as_raw_fd()),
            ];
            // SAFETY: `fds` is a valid array of 3 pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, left_ms.min(POLL_MS) as i32) };
            if n <= 0 {
                continue;
            }
            if fds[2].revents != 0 {
                return;
            }
            for side in [SERVER_SIDE, CLIENT_SIDE] {
                if fds[side].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    // The device went away (namespace gone): nothing more to relay.
                    return;
                }
                if fds[side].revents & libc::POLLIN == 0 {
                    continue;
                }
                for _ in 0..READ_BATCH {
                    match super::tun::read(&self.tuns[side], &mut buf) {
                        Ok(Some(len)) => self.on_packet(side, &buf[..len]),
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
            }
        }
    }

    fn on_packet(&mut self, from_side: usize, packet: &[u8]) {
        let now_ns = self.shared.elapsed_ns();
        let now = Micros(now_ns / 1_000);
        let mut counters = lock(&self.shared.counters);
        counters.largest = counters.largest.max(packet.len() as u32);
        let Some(p) = parse_ipv4(packet) else {
            counters.unclassified += 1;
            return;
        };
        // The client's end of the flow, and whether this packet goes server → client.
        let (client_ip, client_port, server, to_client) = match from_side {
            SERVER_SIDE if is_server(p.src) => (p.dst, p.dst_port, (p.src, p.src_port), true),
            CLIENT_SIDE if is_server(p.dst) => (p.src, p.src_port, (p.dst, p.dst_port), false),
            _ => {
                counters.unclassified += 1;
                return;
            }
        };
        let uplink = match client_ip {
            PUBLISHER_IP => true,
            PLAYER_IP => false,
            _ => {
                counters.unclassified += 1;
                return;
            }
        };
        let (dir, data_direction) = match (uplink, to_client) {
            (true, false) => (Dir::Uplink, true),
            (true, true) => (Dir::UplinkReverse, false),
            (false, true) => (Dir::Downlink, true),
            (false, false) => (Dir::DownlinkReverse, false),
        };
        let d = &mut counters.dirs[dir as usize];
        d.packets += 1;
        d.bytes += packet.len() as u64;

        let key = (p.proto, client_ip, client_port, server.0, server.1);
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= MAX_FLOWS {
                counters.overflow += 1;
                return;
            }
            let index = self.flows.len() as u64;
            let (path, seed) = if uplink {
                (&self.paths.uplink, self.paths.seed)
            } else {
                (&self.paths.downlink, self.paths.seed)
            };
            self.flows.insert(
                key,
                Flow {
                    data: LinkModel::new(path, seed, flow_stream(index, false)),
                    reverse: LinkModel::propagation_only(path.propagation_ms),
                },
            );
            counters.flows += 1;
        }
        let flow = self.flows.get_mut(&key).expect("inserted above");
        let model = if data_direction {
            &mut flow.data
        } else {
            &mut flow.reverse
        };
        let charged = match p.tcp_payload {
            Some(payload) => model.wire_bytes(payload),
            None => packet.len() as u32,
        };
        let due_ns = match model.on_packet(now, charged) {
            PacketFate::Drop(DropReason::QueueFull) => {
                counters.dirs[dir as usize].dropped_queue_full += 1;
                return;
            }
            PacketFate::Drop(DropReason::Loss) => {
                counters.dirs[dir as usize].dropped_loss += 1;
                return;
            }
            PacketFate::Deliver { at } => at.0.saturating_mul(1_000),
        };
        let mut timer = lock(&self.shared.timer);
        if timer.len() >= MAX_QUEUED_PACKETS {
            counters.overflow += 1;
            return;
        }
        drop(counters);
        self.seq += 1;
        let earliest = timer.peek().is_none_or(|top| due_ns < top.due_ns);
        timer.push(Pending {
            due_ns,
            seq: self.seq,
            to_side: if to_client { CLIENT_SIDE } else { SERVER_SIDE },
            dir,
            packet: packet.to_vec(),
        });
        if earliest {
            self.shared.timer_cv.notify_one();
        }
    }
}

/// Moves the calling thread to SCHED_FIFO at [`RT_PRIORITY`]; false when not permitted (then
/// it stays a normal thread and lateness shows what that costs). The kernel's real-time
/// throttling (95 % by default) keeps a runaway thread from locking the machine, and neither
/// relay thread runs for long: the reader blocks in `poll`, the writer sleeps until 50 µs
/// before each packet.
fn realtime_priority() -> bool {
    let param = libc::sched_param {
        sched_priority: RT_PRIORITY,
    };
    // SAFETY: pid 0 = the calling thread; `param` is valid.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Releases packets at their due time: condition-variable sleep (woken by earlier arrivals)
/// until `SPIN_NS` before, then a spin.
fn run_writer(shared: &Shared, tuns: &[OwnedFd; 2]) {
    // A 1 ns timer slack makes the futex timeout fire when asked (the default slack is 50 µs).
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let rt = realtime_priority();
    shared.realtime_writer.store(rt, Ordering::Relaxed);
    let mut previous_write_end_ns = 0;
    let mut timer = lock(&shared.timer);
    loop {
        if shared.stopping() {
            return;
        }
        let Some(due_ns) = timer.peek().map(|p| p.due_ns) else {
            timer = shared
                .timer_cv
                .wait_timeout(timer, Duration::from_millis(POLL_MS))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        };
        let now = shared.elapsed_ns();
        if due_ns > now + SPIN_NS {
            let sleep = Duration::from_nanos(due_ns - now - SPIN_NS);
            timer = shared
                .timer_cv
                .wait_timeout(timer, sleep)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let p = timer.pop().expect("peeked above");
        drop(timer);
        while shared.elapsed_ns() < p.due_ns {
            std::hint::spin_loop();
        }
        let late_ns = shared.elapsed_ns() - p.due_ns;
        let written = super::tun::write(&tuns[p.to_side], &p.packet).is_ok();
        {
            let mut l = lock(&shared.lateness);
            l[0].record(late_ns);
            if p.due_ns >= previous_write_end_ns {
                l[1].record(late_ns);
            }
        }
        previous_write_end_ns = shared.elapsed_ns();
        if written {
            lock(&shared.counters).dirs[p.dir as usize].delivered += 1;
        }
        timer = lock(&shared.timer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tcp_segment() {
        // IPv4, IHL 5, total 60: 20 IP + 32 TCP (doff 8) + 8 payload.
        let mut p = vec![0u8; 60];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&60u16.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 77, 0, 2]);
        p[16..20].copy_from_slice(&[10, 77, 0, 1]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&1935u16.to_be_bytes());
        p[32] = 8 << 4;
        let parsed = parse_ipv4(&p).unwrap();
        assert_eq!(
            parsed,
            Parsed {
                src: PUBLISHER_IP,
                dst: SERVER_IP,
                proto: 6,
                src_port: 40000,
                dst_port: 1935,
                tcp_payload: Some(8),
            }
        );
        // Truncated and non-IPv4 input is rejected, never a panic.
        assert!(parse_ipv4(&p[..30]).is_none());
        assert!(parse_ipv4(&[0x60; 40]).is_none());
        assert!(parse_ipv4(&[]).is_none());
    }

    #[test]
    fn lateness_quantiles() {
        let mut l = Lateness::new();
        for us in 1..=100u64 {
            l.record(us * 1_000 + 500);
        }
        let s = l.stats();
        assert_eq!(s.p50_us, 50.0);
        assert_eq!(s.p99_us, 99.0);
        assert_eq!(s.max_us, 100.5);
        assert!((s.mean_us - 51.0).abs() < 1e-9);
    }
}
