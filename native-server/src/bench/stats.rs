//! Measurement helpers of the load generator: a fixed-size latency histogram, and CPU, memory
//! and scheduler figures read from `/proc` (for the generator itself and, when it is given the
//! server's pid, for the server under test).
//!
//! Everything here is cheap enough for the hot path (`Histogram::record` is a few integer
//! instructions) or is called a handful of times per run (the `/proc` readers).

use std::collections::HashMap;
use std::path::Path;

/// Histogram values are exact below this (µs).
const EXACT_BELOW: u64 = 64;
/// Sub-buckets per power of two above [`EXACT_BELOW`]: 32 gives at most 1/32 ≈ 3.1 % relative
/// error, finer than the run-to-run noise of any latency measured on a shared machine.
const SUB_BUCKET_BITS: u32 = 5;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Largest value recorded without clamping: 2^36 µs ≈ 19 hours.
const MAX_VALUE_BITS: u32 = 36;
const BUCKETS: usize =
    (EXACT_BELOW + (MAX_VALUE_BITS - SUB_BUCKET_BITS - 1) as u64 * SUB_BUCKETS) as usize;

/// A log-linear histogram of microsecond values (HDR-histogram style): 1,024 buckets, 8 KiB,
/// exact below 64 µs and within 3.1 % above. One per worker thread; merged at the end.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    min: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
            min: u64::MAX,
        }
    }

    fn index(value: u64) -> usize {
        let v = value.min((1u64 << MAX_VALUE_BITS) - 1);
        if v < EXACT_BELOW {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros(); // ≥ 6
        let shift = msb - SUB_BUCKET_BITS; // ≥ 1
        let sub = (v >> shift) - SUB_BUCKETS; // 0..32
        (EXACT_BELOW + u64::from(shift - 1) * SUB_BUCKETS + sub) as usize
    }

    /// The middle of bucket `index` (its value for percentiles).
    fn value_at(index: usize) -> u64 {
        let i = index as u64;
        if i < EXACT_BELOW {
            return i;
        }
        let j = i - EXACT_BELOW;
        let shift = j / SUB_BUCKETS + 1;
        let sub = j % SUB_BUCKETS;
        ((SUB_BUCKETS + sub) << shift) + (1u64 << shift) / 2
    }

    pub fn record(&mut self, value_us: u64) {
        let i = Self::index(value_us);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(value_us);
        self.min = self.min.min(value_us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The `q`-quantile (0..=1), `None` when empty. Clamped to the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value_at(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// The `q`-quantile of a sorted slice (nearest rank), `None` when empty.
pub fn quantile_sorted(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// Clock ticks per second of `/proc/*/stat` times.
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU time (user + system) of this process so far, in seconds (getrusage).
pub fn self_cpu_s() -> f64 {
    let (user, system) = self_user_system_s();
    user + system
}

/// (user, system) CPU time of this process so far, seconds (getrusage).
pub fn self_user_system_s() -> (f64, f64) {
    // SAFETY: getrusage writes one valid, live `rusage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    if !ok {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Run-queue wait of this process's threads so far, seconds (`/proc/self/task/*/schedstat`).
pub fn self_sched_wait_s() -> f64 {
    tasks_sched_wait_s("/proc/self/task")
}

fn tasks_sched_wait_s(dir: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e9)
        .sum()
}

/// The fields of a `/proc/.../stat` line after the `(comm)`: index 0 is the state, 1 the
/// parent pid, 11 utime and 12 stime (in clock ticks).
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let after = text.get(text.rfind(')')? + 1..)?;
    Some(after.split_whitespace().collect())
}

/// (name, utime + stime in ticks) of one `/proc/.../stat` file.
fn read_stat_ticks(path: &Path) -> Option<(String, u64)> {
    read_stat_user_system(path).map(|(name, u, s)| (name, u + s))
}

/// (name, utime, stime in ticks) of one `/proc/.../stat` file.
fn read_stat_user_system(path: &Path) -> Option<(String, u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let name = text
        .get(text.find('(')? + 1..text.rfind(')')?)
        .unwrap_or("")
        .to_owned();
    let f = stat_fields(&text)?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((name, utime, stime))
}

/// CPU ticks of every thread of this process, by thread id (with its name).
pub fn self_thread_ticks() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(v) = read_stat_ticks(&entry.path().join("stat")) {
            out.insert(tid, v);
        }
    }
    out
}

/// The busiest thread between two [`self_thread_ticks`] samples: (name, % of one core).
pub fn busiest_thread(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    seconds: f64,
) -> Option<(String, f64)> {
    let hz = clock_ticks_per_s();
    after
        .iter()
        .map(|(tid, (name, ticks))| {
            let start = before.get(tid).map_or(0, |(_, t)| *t);
            let pct = ticks.saturating_sub(start) as f64 / hz / seconds.max(1e-9) * 100.0;
            (name.clone(), pct)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// `pid` and all its descendants (nginx: the master and its worker).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some(ppid) =
                stat_fields(&text).and_then(|f| f.get(1).and_then(|s| s.parse::<u32>().ok()))
            {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while let Some(&p) = tree.get(i) {
        for (child, _) in parent_of.iter().filter(|(_, pp)| *pp == p) {
            if !tree.contains(child) {
                tree.push(*child);
            }
        }
        i += 1;
    }
    tree
}

/// The one CPU `pid` may run on, if its affinity mask holds exactly one (`taskset -c N`).
pub fn single_core_of(pid: u32) -> Option<usize> {
    // SAFETY: an all-zero cpu_set_t is valid; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::sched_getaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: CPU_ISSET reads the set filled above, for indices below CPU_SETSIZE.
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    match cpus.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Softirq time of one CPU so far, seconds (`/proc/stat`). On loopback the receive side of
/// every segment a process sends is processed in softirq on the sender's CPU, and with IRQ
/// time accounting that time is charged to no process.
pub fn cpu_softirq_s(cpu: usize) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let label = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    // cpuN user nice system idle iowait irq softirq …
    let ticks: u64 = line.split_whitespace().nth(7)?.parse().ok()?;
    Some(ticks as f64 / clock_ticks_per_s())
}

/// One sample of the server's processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerSample {
    /// utime + stime of all its processes, seconds.
    pub cpu_s: f64,
    /// The utime part (user space), seconds.
    pub user_s: f64,
    /// Time its threads waited on a run queue (schedstat field 2), seconds.
    pub sched_wait_s: f64,
    /// Bytes written by write-like syscalls (`/proc/PID/io` wchar).
    pub write_bytes: u64,
    /// Write-like syscalls (`/proc/PID/io` syscw: write, writev, sendfile…).
    pub write_calls: u64,
    /// Softirq time of the CPU the server is pinned to (when it is pinned to one), seconds.
    pub core_softirq_s: Option<f64>,
}

/// Reads the server's figures from `/proc` (the pids are fixed when the probe is made).
#[derive(Debug, Clone)]
pub struct ServerProbe {
    pub pids: Vec<u32>,
    /// The CPU it is pinned to, if exactly one.
    pub core: Option<usize>,
}

impl ServerProbe {
    pub fn new(pid: u32) -> Self {
        ServerProbe {
            pids: process_tree(pid),
            core: single_core_of(pid),
        }
    }

    pub fn sample(&self) -> ServerSample {
        let hz = clock_ticks_per_s();
        let mut s = ServerSample {
            core_softirq_s: self.core.and_then(cpu_softirq_s),
            ..ServerSample::default()
        };
        for pid in &self.pids {
            let base = format!("/proc/{pid}");
            if let Some((_, user, system)) =
                read_stat_user_system(Path::new(&format!("{base}/stat")))
            {
                s.cpu_s += (user + system) as f64 / hz;
                s.user_s += user as f64 / hz;
            }
            s.sched_wait_s += tasks_sched_wait_s(&format!("{base}/task"));
            let io = std::fs::read_to_string(format!("{base}/io")).unwrap_or_default();
            for line in io.lines() {
                let mut parts = line.split(':');
                let (Some(k), Some(v)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let v: u64 = v.trim().parse().unwrap_or(0);
                match k {
                    "wchar" => s.write_bytes += v,
                    "syscw" => s.write_calls += v,
                    _ => {}
                }
            }
        }
        s
    }

    /// (peak RSS, current RSS) summed over the processes, kB (VmHWM, VmRSS).
    pub fn memory_kb(&self) -> (u64, u64) {
        let mut peak = 0;
        let mut now = 0;
        for pid in &self.pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            peak += field("VmHWM:");
            now += field("VmRSS:");
        }
        (peak, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_exact_below_64_and_close_above() {
        let mut h = Histogram::new();
        for v in 0..64 {
            assert_eq!(Histogram::value_at(Histogram::index(v)), v);
        }
        for v in [64u64, 100, 1_000, 12_345, 1_000_000, 60_000_000] {
            let back = Histogram::value_at(Histogram::index(v));
            let err = (back as f64 - v as f64).abs() / v as f64;
            assert!(err <= 1.0 / 32.0, "{v} → {back} ({err})");
            h.record(v);
        }
        assert!(Histogram::index(u64::MAX) < BUCKETS);
        assert_eq!(h.count(), 6);
        assert_eq!(h.max(), 60_000_000);
        assert_eq!(h.quantile(1.0), Some(60_000_000));
        assert!(matches!(h.quantile(0.0), Some(64..=66)));
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.035, "{p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.035, "{p99}");
        let mut other = Histogram::new();
        other.record(20_000);
        h.merge(&other);
        assert_eq!(h.count(), 10_001);
        assert_eq!(h.max(), 20_000);
        assert_eq!(Histogram::new().quantile(0.5), None);
    }

    #[test]
    fn sorted_quantiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile_sorted(&v, 0.5), Some(50));
        assert_eq!(quantile_sorted(&v, 0.99), Some(99));
        assert_eq!(quantile_sorted(&v, 1.0), Some(100));
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }

    #[test]
    fn probes_read_this_process() {
        let probe = ServerProbe::new(std::process::id());
        assert_eq!(probe.pids.first(), Some(&std::process::id()));
        let (peak, now) = probe.memory_kb();
        assert!(peak > 0 && now > 0);
        assert!(self_cpu_s() >= 0.0);
        assert!(!self_thread_ticks().is_empty());
    }
}
