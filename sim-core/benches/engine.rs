//! The simulator's headline benchmark: one hour of 60 fps video + AAC audio through the encoder,
//! rate control, uplink, server (GOP cache + 100 subscriber queues) and 100 players.
//!
//! A counting global allocator reports allocations per run beside the time, so "allocation-light"
//! is a number, not a claim.

use criterion::{criterion_group, criterion_main, Criterion};
use sim_core::engine::Engine;
use sim_core::scenario::{preset, Scenario};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(l.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(n as u64, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Twitch-style 1080p60 at 6000 kb/s, 100 players with 2 ms downlink jitter, one hour.
pub fn hour_scenario() -> Scenario {
    let mut s = preset("twitch").expect("preset");
    s.duration_s = 3600.0;
    s.players.count = 100;
    s.players.join_at_s = 5.0;
    s.players.join_spread_s = 0.0;
    s
}

fn report_allocations(name: &str, s: &Scenario) {
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let t = Engine::run(s);
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let msgs = t.frames.len() as f64 * s.players.count as f64;
    eprintln!(
        "{name}: {} frames × {} players: {} allocations ({:.4} per frame per player), {:.1} MB allocated",
        t.frames.len(),
        s.players.count,
        a1 - a0,
        (a1 - a0) as f64 / msgs,
        (b1 - b0) as f64 / 1e6
    );
}

/// `ENGINE_ONCE=1 target/release/deps/engine-…` (or `cargo bench --bench engine` with it set):
/// one timed run of the hour with 100 players and with 1, no criterion, for a profiler
/// (valgrind's callgrind) or a quick look; `ENGINE_SECS=60` shortens the hour,
/// `ENGINE_NO_JITTER=1` takes the jitter off the downlinks, `ENGINE_PRESET=obs-default` runs a
/// preset instead, `ENGINE_PLAYERS=10` sets the audience.
fn run_once_if_asked() {
    if std::env::var_os("ENGINE_ONCE").is_none() {
        return;
    }
    let mut many = hour_scenario();
    if let Ok(name) = std::env::var("ENGINE_PRESET") {
        many = preset(&name).expect("preset");
        many.players.count = 100;
    }
    if let Some(secs) = std::env::var("ENGINE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        many.duration_s = secs;
    }
    if let Some(n) = std::env::var("ENGINE_PLAYERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        many.players.count = n;
    }
    if std::env::var_os("ENGINE_NO_JITTER").is_some() {
        many.downlink.jitter.ms = 0.0;
    }
    let mut one = many.clone();
    one.players.count = 1;
    let many_name = format!("{} players", many.players.count);
    for (name, s) in [(many_name.as_str(), many), ("1 player", one)] {
        let (t0, cpu0) = (std::time::Instant::now(), cpu_seconds());
        let t = Engine::run(&s);
        let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
        eprintln!(
            "{name}, {} s: {:.3} s wall, {} s CPU ({} frames, {} deliveries)",
            s.duration_s,
            t0.elapsed().as_secs_f64(),
            cpu.map_or("?".into(), |c| format!("{c:.2}")),
            t.frames.len(),
            t.audience.frames_delivered
        );
    }
    std::process::exit(0);
}

/// User + system CPU time of this process so far (Linux; `None` elsewhere): on a shared machine
/// it moves less than wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn engine(c: &mut Criterion) {
    run_once_if_asked();
    let hour = hour_scenario();
    report_allocations("one hour, 60 fps, 100 players", &hour);
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("one_hour_60fps_100_players", |b| {
        b.iter(|| Engine::run(&hour))
    });
    let mut minute = preset("obs-default").expect("preset");
    minute.duration_s = 60.0;
    g.bench_function("obs_default_60s_1_player", |b| {
        b.iter(|| Engine::run(&minute))
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
