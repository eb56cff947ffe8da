//! Tests of the link emulator with real kernel TCP across it. They need root and
//! `/dev/net/tun`; without them each test prints why it is skipped and passes.
//!
//! They run one at a time (a lock), since each measures time on a small shared machine.

use super::*;
use sim_core::net::{JitterConfig, LossConfig};
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Instant;

static SERIAL: Mutex<()> = Mutex::new(());

/// The reason the emulator cannot run here, if any.
fn skip_reason() -> Option<String> {
    match netns::check_supported() {
        Ok(()) => None,
        Err(e) => Some(e.to_string()),
    }
}

macro_rules! require_emulator {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipping link emulator test: {why}");
            return;
        }
    };
}

fn path(prop_ms: f64, kbps: f64) -> PathConfig {
    PathConfig {
        propagation_ms: prop_ms,
        bottleneck_kbps: kbps,
        jitter: JitterConfig {
            ms: 0.0,
            ..JitterConfig::default()
        },
        loss: LossConfig::None,
        queue_limit_bytes: 0,
        mss_bytes: 1448,
        per_packet_overhead_bytes: 0,
    }
}

fn config(uplink: PathConfig, downlink: PathConfig) -> EmuConfig {
    EmuConfig {
        uplink,
        downlink,
        seed: 42,
        max_duration: Duration::from_secs(30),
    }
}

fn netns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listen(emu: &Emulator) -> (TcpListener, u16) {
    let l = emu
        .in_server_ns(|| TcpListener::bind(SocketAddrV4::new(SERVER_IP, 0)))
        .expect("bind in the server namespace");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Sends `total` bytes from `from` to a listener in the server namespace and returns the
/// receiver's throughput in Mb/s between its first and last byte, and the total time.
fn transfer(emu: &Emulator, from: Ipv4Addr, total: usize, timeout: Duration) -> (f64, Duration) {
    let (listener, port) = listen(emu);
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut got = 0usize;
        let mut first = None;
        while got < total {
            let n = s.read(&mut buf).expect("read within the timeout");
            assert!(n > 0, "sender closed after {got} of {total} bytes");
            first.get_or_insert_with(Instant::now);
            got += n;
        }
        let span = first.unwrap().elapsed();
        s.write_all(b"k").unwrap();
        span
    });
    let started = Instant::now();
    let mut s = emu.connect_from(from, port).expect("connect");
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        s.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).expect("receiver's ack");
    let span = receiver.join().unwrap();
    let mbps = total as f64 * 8.0 / span.as_secs_f64() / 1e6;
    (mbps, started.elapsed())
}

#[test]
fn rtt_of_a_connect_and_a_ping_pong_is_twice_the_propagation_delay() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let emu = Emulator::start(config(path(20.0, 0.0), path(20.0, 0.0))).expect("start");
    let (srv_name, cli_name) = (
        emu.server_ns_name().to_string(),
        emu.client_ns_name().to_string(),
    );
    let listed = netns_list();
    assert!(
        listed.contains(&srv_name) && listed.contains(&cli_name),
        "{listed}"
    );

    // TCP Fast Open is on in both namespaces.
    assert_eq!(
        emu.sysctl(Side::Server, "net.ipv4.tcp_fastopen").unwrap(),
        "3"
    );
    assert_eq!(
        emu.sysctl(Side::Client, "net.ipv4.tcp_fastopen").unwrap(),
        "3"
    );

    let (listener, port) = listen(&emu);
    // One thread per connection: the first one's end (its FIN takes 20 ms) must not hold up
    // the second's first echo.
    let echo = std::thread::spawn(move || {
        let conns: Vec<_> = (0..2)
            .map(|_| {
                let (mut s, _) = listener.accept().unwrap();
                std::thread::spawn(move || {
                    s.set_nodelay(true).unwrap();
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).is_ok() {
                        s.write_all(&b).unwrap();
                    }
                })
            })
            .collect();
        for c in conns {
            c.join().unwrap();
        }
    });
    for from in [emu.publisher_ip(), emu.player_ip()] {
        let t0 = Instant::now();
        let mut s = emu.connect_from(from, port).expect("connect");
        let connect = t0.elapsed();
        s.set_nodelay(true).unwrap();
        let mut rtts = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            s.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            rtts.push(t.elapsed());
        }
        drop(s);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "from {from}: connect {:.2} ms, ping-pong {:?} ms",
            ms(connect),
            rtts.iter()
                .map(|d| (ms(*d) * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
        // Never faster than the physics (40 ms RTT, less 2 ms for clock granularity); the
        // upper bounds allow for a busy 2-core CI machine preempting the relay or this
        // thread, so the tight check is on the best of the five round trips.
        assert!(
            (38.0..500.0).contains(&ms(connect)),
            "connect took {:.2} ms",
            ms(connect)
        );
        for r in &rtts {
            assert!(
                (38.0..500.0).contains(&ms(*r)),
                "round trip {:.2} ms",
                ms(*r)
            );
        }
        let best = rtts.iter().map(|d| ms(*d)).fold(f64::INFINITY, f64::min);
        assert!(
            (38.0..60.0).contains(&best),
            "best of 5 round trips {best:.2} ms"
        );
    }
    echo.join().unwrap();
    let stats = emu.stats();
    eprintln!("{stats}");
    assert_eq!(stats.flows, 2);
    assert!(stats.uplink.packets > 0 && stats.uplink_reverse.packets > 0);
    assert!(stats.downlink.packets > 0 && stats.downlink_reverse.packets > 0);
    assert_eq!(stats.dropped_unclassified, 0, "{stats:?}");
    assert!(stats.largest_packet_bytes <= TUN_MTU);
    drop(emu);
    let listed = netns_list();
    assert!(
        !listed.contains(&srv_name) && !listed.contains(&cli_name),
        "namespaces left behind: {listed}"
    );
}

#[test]
fn a_4_mbps_bottleneck_limits_throughput() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let emu = Emulator::start(config(path(20.0, 4_000.0), path(20.0, 0.0))).expect("start");
    let (mbps, total) = transfer(&emu, emu.publisher_ip(), 2_000_000, Duration::from_secs(15));
    let stats = emu.stats();
    eprintln!("2 MB through 4 Mb/s: {mbps:.3} Mb/s, {total:?} in all\n{stats}");
    assert!(mbps <= 4.2, "{mbps} Mb/s through a 4 Mb/s bottleneck");
    assert!(mbps >= 3.0, "only {mbps} Mb/s through a 4 Mb/s bottleneck");
    assert!(stats.uplink.delivered > 1_300);
}

#[test]
fn ten_percent_loss_slows_a_transfer_but_it_completes() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut up = path(20.0, 0.0);
    up.loss = LossConfig::Bernoulli { p: 0.1 };
    let emu = Emulator::start(config(up, path(20.0, 0.0))).expect("start");
    let (mbps, total) = transfer(&emu, emu.publisher_ip(), 150_000, Duration::from_secs(15));
    let stats = emu.stats();
    eprintln!("150 kB at 10 % loss: {mbps:.3} Mb/s, {total:?} in all\n{stats}");
    let lost = stats.uplink.dropped_loss as f64 / stats.uplink.packets as f64;
    assert!(stats.uplink.dropped_loss > 0);
    assert!((0.03..0.25).contains(&lost), "loss rate {lost}");
    assert_eq!(stats.uplink_reverse.dropped_loss, 0, "ACKs are never lost");
}

#[test]
fn tcp_fast_open_saves_one_round_trip_on_a_repeat_connection() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let emu = Emulator::start(config(path(20.0, 0.0), path(20.0, 0.0))).expect("start");
    let listener = emu
        .in_server_ns(|| -> std::io::Result<TcpListener> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.bind(&SocketAddrV4::new(SERVER_IP, 0).into())?;
            let qlen: libc::c_int = 16;
            // SAFETY: setsockopt with an int.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::IPPROTO_TCP,
                    libc::TCP_FASTOPEN,
                    (&qlen as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "TCP_FASTOPEN on the listener");
            s.listen(16)?;
            Ok(s.into())
        })
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    // Time from the client's connect() to the server reading the first byte: 1.5 RTT without
    // a cookie (SYN, SYN-ACK, ACK + data), 0.5 RTT with one (data in the SYN).
    let mut first_byte = Vec::new();
    for _ in 0..3 {
        let accept = std::thread::scope(|sc| {
            let server = sc.spawn(|| {
                let (mut s, _) = listener.accept().unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                Instant::now()
            });
            let t0 = Instant::now();
            let client = emu
                .in_client_ns(|| -> std::io::Result<TcpStream> {
                    let s =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                    let one: libc::c_int = 1;
                    // SAFETY: setsockopt with an int.
                    let rc = unsafe {
                        libc::setsockopt(
                            std::os::fd::AsRawFd::as_raw_fd(&s),
                            libc::IPPROTO_TCP,
                            libc::TCP_FASTOPEN_CONNECT,
                            (&one as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                    assert_eq!(rc, 0, "TCP_FASTOPEN_CONNECT");
                    s.connect(&SocketAddrV4::new(SERVER_IP, port).into())?;
                    let mut s: TcpStream = s.into();
                    s.write_all(b"R")?;
                    Ok(s)
                })
                .unwrap();
            let arrived = server.join().unwrap();
            drop(client);
            arrived.duration_since(t0)
        });
        first_byte.push(accept.as_secs_f64() * 1e3);
    }
    eprintln!("first byte at the server after {first_byte:?} ms (1st: no cookie yet)");
    // Lower bounds are physics (never faster than the model); upper bounds are loose for a
    // busy CI machine; the claim under test is the saving: the best repeat connection is at
    // least ~one 40 ms RTT quicker than the first.
    assert!(
        (55.0..500.0).contains(&first_byte[0]),
        "first connection: {:.1} ms",
        first_byte[0]
    );
    for t in &first_byte[1..] {
        assert!(
            (18.0..500.0).contains(t),
            "repeat connection with TFO: {t:.1} ms"
        );
    }
    let best_repeat = first_byte[1..]
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    assert!(
        best_repeat <= first_byte[0] - 30.0 && best_repeat < 35.0,
        "TFO saved too little: first {:.1} ms, best repeat {best_repeat:.1} ms",
        first_byte[0]
    );
}

#[test]
fn max_duration_stops_the_relay_and_removes_the_namespaces() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = config(path(5.0, 0.0), path(5.0, 0.0));
    cfg.max_duration = Duration::from_millis(300);
    let emu = Emulator::start(cfg).expect("start");
    let name = emu.server_ns_name().to_string();
    assert_eq!(emu.stop_reason(), None);
    assert_eq!(
        emu.wait(Some(Duration::from_secs(5))),
        Some(StopReason::MaxDuration)
    );
    assert!(!netns_list().contains(&name));
    assert_eq!(emu.stats().stopped, Some(StopReason::MaxDuration));
}

#[test]
fn namespaces_of_dead_processes_are_swept_at_start() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A pid that no longer exists: a child that has exited and been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    if std::path::Path::new(&format!("/proc/{dead}")).exists() {
        eprintln!("skipping: pid {dead} was reused already");
        return;
    }
    let stale = format!("rl-{dead}-0-srv");
    let out = std::process::Command::new("ip")
        .args(["netns", "add", &stale])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(netns_list().contains(&stale));
    let emu = Emulator::start(config(path(1.0, 0.0), path(1.0, 0.0))).expect("start");
    assert!(!netns_list().contains(&stale), "stale namespace not swept");
    drop(emu);
}

#[test]
fn a_panic_while_running_still_removes_the_namespaces() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let names = std::sync::Arc::new(Mutex::new(Vec::new()));
    let names2 = names.clone();
    let result = std::panic::catch_unwind(move || {
        let emu = Emulator::start(config(path(1.0, 0.0), path(1.0, 0.0))).expect("start");
        names2.lock().unwrap().extend([
            emu.server_ns_name().to_string(),
            emu.client_ns_name().to_string(),
        ]);
        // A panic inside the namespace thread reaches the caller, and Drop runs on unwind.
        emu.in_client_ns(|| panic!("boom"));
    });
    assert!(result.is_err());
    let listed = netns_list();
    for n in names.lock().unwrap().iter() {
        assert!(!listed.contains(n), "{n} left behind after a panic");
    }
}

#[test]
fn uniform_jitter_spreads_round_trips_over_plus_minus_j() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut up = path(20.0, 0.0);
    up.jitter = JitterConfig {
        ms: 10.0,
        ..JitterConfig::default()
    };
    let emu = Emulator::start(config(up, path(20.0, 0.0))).expect("start");
    let (listener, port) = listen(&emu);
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() {
            s.write_all(&b).unwrap();
        }
    });
    let mut s = emu.connect_from(emu.publisher_ip(), port).unwrap();
    s.set_nodelay(true).unwrap();
    let mut rtts = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        rtts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(s);
    echo.join().unwrap();
    let (lo, hi) = rtts
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
    eprintln!("round trips with ±10 ms on the uplink: {lo:.1}–{hi:.1} ms");
    // Uplink 20 ± 10 ms, reverse 20 ms: every round trip in [30, 50] ms (+ relay overhead).
    // The lower bound is physics; the upper one is checked on the 90th percentile so that a
    // busy CI machine preempting the relay once or twice does not fail the test.
    let mut sorted = rtts.clone();
    sorted.sort_by(f64::total_cmp);
    let p90 = sorted[sorted.len() * 9 / 10 - 1];
    assert!(lo >= 29.5 && p90 <= 53.0 && hi < 500.0, "{rtts:?}");
    assert!(hi - lo > 5.0, "no visible jitter: {rtts:?}");
}

#[test]
fn a_small_router_queue_drops_and_tcp_recovers() {
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut up = path(20.0, 4_000.0);
    up.queue_limit_bytes = 20_000;
    let emu = Emulator::start(config(up, path(20.0, 0.0))).expect("start");
    let (mbps, total) = transfer(&emu, emu.publisher_ip(), 1_000_000, Duration::from_secs(15));
    let stats = emu.stats();
    eprintln!("1 MB through 4 Mb/s with a 20 kB queue: {mbps:.3} Mb/s, {total:?}\n{stats}");
    assert!(stats.uplink.dropped_queue_full > 0, "{stats:?}");
    assert!(mbps <= 4.2);
}

/// Set by [`ctrl_c_removes_the_namespaces_and_ends_the_process`] for the child it runs.
const SIGNAL_CHILD_ENV: &str = "RTMP_LAB_EMU_SIGNAL_CHILD";

/// Not a test on its own: the child process of the Ctrl-C test (does nothing otherwise).
#[test]
fn signal_child_holding_an_emulator() {
    if std::env::var_os(SIGNAL_CHILD_ENV).is_none() {
        return;
    }
    // Whatever the parent's shell did to SIGINT (a background job ignores it), start from the
    // default disposition, as in a terminal.
    // SAFETY: resetting a signal disposition before any handler is installed.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let emu = Emulator::start(config(path(1.0, 0.0), path(1.0, 0.0))).expect("start");
    println!("NAMES {} {}", emu.server_ns_name(), emu.client_ns_name());
    std::thread::sleep(Duration::from_secs(20));
    panic!("the parent should have interrupted this process");
}

#[test]
fn ctrl_c_removes_the_namespaces_and_ends_the_process() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    require_emulator!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "emu::tests::signal_child_holding_an_emulator",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SIGNAL_CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut names = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints "test NAME ... " first, on the same line.
        if let Some(at) = line.find("NAMES ") {
            names = line[at + 6..]
                .split_whitespace()
                .map(str::to_string)
                .collect();
            break;
        }
    }
    assert_eq!(names.len(), 2, "the child did not start an emulator");
    let listed = netns_list();
    assert!(names.iter().all(|n| listed.contains(n)), "{listed}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not end on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let listed = netns_list();
    assert!(
        names.iter().all(|n| !listed.contains(n)),
        "left behind after Ctrl-C: {listed}"
    );
}

#[test]
fn an_emulator_can_be_shared_across_threads_and_tasks() {
    fn check<T: Send + Sync>() {}
    check::<Emulator>();
    check::<EmuStats>();
}
