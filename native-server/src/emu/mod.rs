//! The link emulator: real kernel TCP between two network namespaces, every IP packet's fate
//! decided by [`sim_core::link::LinkModel`] with the scenario's path parameters and seed.
//!
//! # Why
//!
//! The lab compares simulated with measured latency. The usual tool, `tc qdisc … netem`, is not
//! available on this project's kernels (no `sch_netem`: "Specified qdisc kind is unknown"), and
//! even where it is, netem draws its own random numbers with its own semantics. Here the *same
//! model code* that the simulator's path is built from decides, packet by packet, on the wire:
//! rate, drop-tail queue, propagation, jitter (netem's distributions) and loss (Bernoulli,
//! Gilbert–Elliott). Everything above the link is real: the kernel's TCP (congestion control,
//! retransmissions, Nagle, delayed ACK, TCP Fast Open), the RTMP server, ffmpeg.
//!
//! # Picture
//!
//! ```text
//!  netns rl-<pid>-<n>-srv                 this process                 netns rl-<pid>-<n>-cli
//!  ┌────────────────────┐     ┌──────────────────────────────┐     ┌──────────────────────────┐
//!  │ rtmp-lab serve     │     │ reader thread: poll both TUN │     │ publisher  10.77.0.2     │
//!  │ 10.77.0.1 (+ .11)  │     │ fds → classify the flow →    │     │  (default source address)│
//!  │        │           │     │ LinkModel::on_packet → timer │     │ players    10.77.0.3     │
//!  │   rl0 (TUN) ───────┼─fd──┤ queue; writer thread: precise├──fd─┼── rl0 (TUN)              │
//!  │   lo up            │     │ timer, writes at the due time│     │   lo up                  │
//!  └────────────────────┘     └──────────────────────────────┘     └──────────────────────────┘
//! ```
//!
//! - **Namespaces and addresses.** Two namespaces with unique names `rl-<pid>-<n>-srv` and
//!   `rl-<pid>-<n>-cli` (`n` counts emulators within the process), created with `ip netns add`.
//!   The server side has 10.77.0.1/24; the client side has 10.77.0.2/24 (the publisher, and the
//!   namespace's default source address) and 10.77.0.3/24 (players: bind to it before
//!   connecting, e.g. [`Emulator::connect_from`]; programs that cannot bind connect to the
//!   server's second address 10.77.0.11 instead, which the client namespace routes with source
//!   10.77.0.3: [`SERVER_IP_FOR_PLAYERS`]). The addresses exist only inside the
//!   namespaces, so every emulator can use the same ones. `lo` is up in both. IPv6 is disabled
//!   in both so no neighbour discovery chatter crosses the link.
//! - **TUN devices** (`rl0`, MTU 1500, `IFF_TUN | IFF_NO_PI`) are created by a thread that has
//!   entered the namespace (`setns`), so nothing ever appears in the root namespace; the fd stays
//!   valid and usable from any thread. A TUN without `IFF_VNET_HDR`/`TUNSETOFFLOAD` advertises no
//!   TSO/GSO or checksum offload, so the kernel hands the relay MTU-sized, checksummed IP
//!   packets (one per `read`, [`EmuStats::largest_packet_bytes`] shows it) and does no GRO on
//!   what the relay writes: there is nothing to switch off (MODELS §D3's GSO pitfall cannot
//!   happen here).
//! - **Which model.** Each flow (protocol, client address and port, server address and port)
//!   gets its own pair of [`LinkModel`](sim_core::link::LinkModel)s, numbered in the order flows
//!   are first seen; the data direction's model draws from stream
//!   [`sim_core::link::flow_stream`]`(index, false)` under the scenario's seed. Flows from the
//!   publisher address use the scenario's **uplink**: data direction client → server; flows
//!   from the player address use the **downlink**: data direction server → client. The data
//!   direction gets the full model. The **reverse (ACK) direction gets propagation only** (the
//!   same `propagation_ms`, no rate limit, jitter or loss): exactly what
//!   [`sim_core::net::TcpPath`] assumes ("ACKs travel a clean reverse path"), so the emulated
//!   RTT is `2 × propagation_ms` as in the simulator. One flow per player means one bottleneck
//!   per player, as in the simulator ("players behind identical downlinks").
//! - **What the bottleneck counts.** A TCP segment costs its payload plus the path's
//!   `per_packet_overhead_bytes`
//!   ([`LinkModel::wire_bytes`](sim_core::link::LinkModel::wire_bytes)), the same as in the
//!   simulator; other packets cost their IP length. Set the overhead to 52 to charge IP + TCP headers.
//! - **Timing.** The reader timestamps each packet as it reads it (CLOCK_MONOTONIC, origin
//!   [`Emulator::started_at`]). The writer sleeps on a condition variable (a futex with a 1 ns
//!   timer slack, so new earlier packets wake it) until 50 µs before the next due time, then
//!   spins, then writes. Both threads ask for SCHED_FIFO priority 10 (root has it): without it an
//!   x264 encoder on the same cores made the relay's p99 lateness 1.5–2.5 ms, with it 30–150 µs.
//!   The lateness (write − due) of every packet is reported in [`EmuStats::lateness`], and of
//!   those that did not wait behind another write in [`EmuStats::timer_lateness`]. Measured
//!   with ffmpeg x264 + server + player on the same 2 busy vCPUs: timer p50 0–4 µs, p99
//!   50–110 µs; all packets p50 0–18 µs, p99 40–150 µs; rare ms spikes (the kernel is
//!   `PREEMPT_NONE`: a woken real-time thread may wait for kernel code to reach a preemption
//!   point). The link model keeps each flow in order; packets of different flows due at the
//!   same microsecond leave in arrival order.
//! - **Bounds.** At most [`MAX_QUEUED_PACKETS`] packets wait in the relay and [`MAX_FLOWS`] flows
//!   are tracked (beyond that packets are dropped and counted, never buffered without bound).
//!   `max_duration` bounds the whole thing: when it passes, the relay stops and the namespaces
//!   are deleted, whatever the caller is doing.
//! - **Cleanup, always.** [`Emulator`]'s `Drop` stops the relay and deletes both namespaces (it
//!   runs on panic unwinding too). A SIGINT/SIGTERM handler (installed with the first emulator;
//!   it chains to any handler installed before it) deletes the namespaces of every live
//!   emulator, then lets the signal terminate the process as it would have — unless the program
//!   installed its own handler or is blocked in [`Emulator::wait`], which then returns
//!   [`StopReason::Signal`]. At start, namespaces `rl-<pid>-…` of processes that no longer exist
//!   (a `kill -9`, a power cut) are swept.
//! - **TCP Fast Open.** `net.ipv4.tcp_fastopen` is per namespace; it is set to 3 (client and
//!   server) in both, so repeat connections can carry data in the SYN. Other per-namespace
//!   sysctls (e.g. `net.ipv4.tcp_congestion_control`, which new namespaces inherit from the host:
//!   BBR here, see MODELS §G) can be set with [`Emulator::set_sysctl`].
//!
//! Needs Linux, root (namespaces, TUN) and the `ip` command (iproute2); [`Emulator::start`]
//! says which is missing ([`EmuError::NotRoot`], [`EmuError::Unsupported`]).
//!
//! # Using it
//!
//! ```no_run
//! # use native_server::emu::{EmuConfig, Emulator};
//! # use std::time::Duration;
//! let scenario = sim_core::scenario::preset("mobile-3g").unwrap();
//! let emu = Emulator::start(EmuConfig::from_scenario(&scenario, Duration::from_secs(60)))?;
//! // A listener in the server namespace; usable from any thread or runtime afterwards
//! // (set_nonblocking + tokio::net::TcpListener::from_std).
//! let listener = emu.in_server_ns(|| std::net::TcpListener::bind((emu.server_ip(), 1935)))?;
//! // ffmpeg publishing from the client namespace (source address: the publisher's).
//! let publisher = emu
//!     .client_ns_command("ffmpeg")
//!     .args(["-re", "-f", "lavfi", "-i", "testsrc2", "-c:v", "libx264", "-f", "flv"])
//!     .arg(format!("rtmp://{}/live/test", emu.server_ip()))
//!     .spawn()?;
//! // A player probe: its socket is bound to the player address, so the downlink model applies.
//! let player = emu.connect_from(emu.player_ip(), 1935)?;
//! println!("{}", emu.stats());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `rtmp-lab emulate --preset NAME` runs one by hand ([`cli`]).

use serde::Serialize;
use sim_core::net::PathConfig;
use std::net::Ipv4Addr;
use std::time::Duration;

pub mod cli;
#[cfg(target_os = "linux")]
mod netns;
#[cfg(target_os = "linux")]
mod relay;
#[cfg(target_os = "linux")]
mod signals;
#[cfg(all(test, target_os = "linux"))]
mod tests;
#[cfg(target_os = "linux")]
mod tun;

#[cfg(target_os = "linux")]
pub use self::linux::Emulator;
#[cfg(not(target_os = "linux"))]
pub use self::other::Emulator;

/// The server's address, inside the server namespace.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The publisher's address (the client namespace's default source address): uplink model.
pub const PUBLISHER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The players' address in the client namespace: downlink model.
pub const PLAYER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// A second address of the server. The client namespace routes it with source [`PLAYER_IP`],
/// so a player program that cannot bind a source address (ffmpeg, ffplay, VLC, rtmpdump) gets
/// the downlink model just by connecting here. The server must listen on 0.0.0.0 (or on both
/// addresses) to accept it.
pub const SERVER_IP_FOR_PLAYERS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
/// Packets waiting in the relay's timer queue, all flows together; more are dropped and counted
/// ([`EmuStats::dropped_relay_overflow`]). 50,000 MTU-sized packets are 75 MB, 100 s of a
/// 6 Mb/s stream: far beyond any queue a scenario asks for.
pub const MAX_QUEUED_PACKETS: usize = 50_000;
/// Flows tracked at once (each holds two small link models).
pub const MAX_FLOWS: usize = 65_536;
/// MTU of the TUN devices: Ethernet's, so TCP's MSS with timestamps is 1448 as in the scenario
/// presets (`mss_bytes`).
pub const TUN_MTU: u32 = 1500;

/// What to emulate.
#[derive(Debug, Clone, PartialEq)]
pub struct EmuConfig {
    /// Publisher → server (data direction of flows from [`PUBLISHER_IP`]).
    pub uplink: PathConfig,
    /// Server → player (data direction of flows to [`PLAYER_IP`]).
    pub downlink: PathConfig,
    /// Seed of every random draw (flow `i` uses streams `flow_stream(i, _)` under it).
    pub seed: u64,
    /// After this the relay stops and the namespaces are deleted, whatever happens.
    pub max_duration: Duration,
}

impl EmuConfig {
    /// The scenario's uplink, downlink and seed.
    pub fn from_scenario(s: &sim_core::scenario::Scenario, max_duration: Duration) -> Self {
        EmuConfig {
            uplink: s.uplink.clone(),
            downlink: s.downlink.clone(),
            seed: s.seed,
            max_duration,
        }
    }
}

/// Why the emulator cannot run or failed to set up.
#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    #[error(
        "the link emulator needs root (network namespaces and TUN devices); run as root, e.g. \
         with sudo, or use loopback without impairment"
    )]
    NotRoot,
    #[error("the link emulator cannot run here: {0}")]
    Unsupported(String),
    #[error("setting up the link emulator failed: {0}")]
    Setup(String),
}

/// Which side of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Server,
    Client,
}

/// Why the relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The [`Emulator`] was dropped.
    Dropped,
    /// `max_duration` passed.
    MaxDuration,
    /// SIGINT (2) or SIGTERM (15).
    Signal(i32),
    /// Setting up failed (the namespaces made so far were removed).
    SetupFailed,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Dropped => write!(f, "stopped by the program"),
            StopReason::MaxDuration => write!(f, "max duration reached"),
            StopReason::Signal(2) => write!(f, "interrupted (SIGINT)"),
            StopReason::Signal(15) => write!(f, "terminated (SIGTERM)"),
            StopReason::Signal(s) => write!(f, "signal {s}"),
            StopReason::SetupFailed => write!(f, "set-up failed"),
        }
    }
}

/// Counters of one direction of the link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirectionStats {
    /// Packets that entered the link.
    pub packets: u64,
    /// Their IP bytes.
    pub bytes: u64,
    /// Packets written out at the far end.
    pub delivered: u64,
    pub dropped_queue_full: u64,
    pub dropped_loss: u64,
}

/// The relay's own added delay: when it wrote each packet minus when the model said it was due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatenessStats {
    pub samples: u64,
    /// Medians and tails at 1 µs resolution (values above 10 ms count as 10 ms in p50/p99).
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// What the emulator did so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmuStats {
    /// Publisher → server (uplink model).
    pub uplink: DirectionStats,
    /// Server → publisher (ACKs and replies: propagation only).
    pub uplink_reverse: DirectionStats,
    /// Server → players (downlink model).
    pub downlink: DirectionStats,
    /// Players → server (ACKs and commands: propagation only).
    pub downlink_reverse: DirectionStats,
    /// Packets that were not IPv4 between the server and a known client address.
    pub dropped_unclassified: u64,
    /// Packets dropped because the relay's queue or flow table was full.
    pub dropped_relay_overflow: u64,
    /// Flows seen (each TCP connection is one).
    pub flows: u64,
    /// Largest IP packet read from a TUN (≤ the MTU: no offload aggregates reach the relay).
    pub largest_packet_bytes: u32,
    pub lateness: LatenessStats,
    /// The same, only for packets that did not wait behind earlier writes (due after the
    /// previous write ended): the timer's own accuracy. Packets due together (a burst the
    /// FIFO clamp lines up behind a late one, or an unlimited-rate link) are written one after
    /// the other, each write running the receiving stack for ~10–50 µs; `lateness` includes
    /// that wait.
    pub timer_lateness: LatenessStats,
    /// Whether both relay threads run with real-time priority (SCHED_FIFO; needs root or
    /// CAP_SYS_NICE and a real-time budget in the cgroup).
    pub realtime_scheduling: bool,
    /// Time since the emulator started.
    pub elapsed_s: f64,
    /// `None` while running.
    pub stopped: Option<StopReason>,
}

impl std::fmt::Display for EmuStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<34} {:>9} {:>12} {:>9} {:>10} {:>8}",
            "direction", "packets", "bytes", "delivered", "queue-drop", "loss"
        )?;
        for (name, d) in [
            ("uplink (publisher → server)", &self.uplink),
            ("uplink reverse (server → publisher)", &self.uplink_reverse),
            ("downlink (server → players)", &self.downlink),
            (
                "downlink reverse (players → server)",
                &self.downlink_reverse,
            ),
        ] {
            writeln!(
                f,
                "{:<34} {:>9} {:>12} {:>9} {:>10} {:>8}",
                name, d.packets, d.bytes, d.delivered, d.dropped_queue_full, d.dropped_loss
            )?;
        }
        writeln!(
            f,
            "flows {}, unclassified drops {}, relay overflow drops {}, largest packet {} B",
            self.flows,
            self.dropped_unclassified,
            self.dropped_relay_overflow,
            self.largest_packet_bytes
        )?;
        let line = |l: &LatenessStats| {
            format!(
                "{} packets: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs, mean {:.1} µs",
                l.samples, l.p50_us, l.p99_us, l.max_us, l.mean_us
            )
        };
        writeln!(
            f,
            "relay lateness (write − due), all packets ({}): {}",
            if self.realtime_scheduling {
                "real-time priority"
            } else {
                "normal priority"
            },
            line(&self.lateness)
        )?;
        write!(
            f,
            "  packets not queued behind another write: {}",
            line(&self.timer_lateness)
        )
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use crate::emu::netns::Netns;
    use crate::emu::relay::Shared;
    use std::net::{SocketAddrV4, TcpStream};
    use std::process::Command;
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// A running link emulator: two namespaces, two TUN devices, a relay. Dropping it stops the
    /// relay and deletes the namespaces. See the module docs.
    pub struct Emulator {
        shared: Arc<Shared>,
        server_ns: Netns,
        client_ns: Netns,
        threads: Vec<JoinHandle<()>>,
        config: EmuConfig,
    }

    impl Emulator {
        /// Creates the namespaces and TUN devices and starts the relay.
        pub fn start(config: EmuConfig) -> Result<Emulator, EmuError> {
            netns::check_supported()?;
            signals::install();
            netns::sweep_stale();
            let base = netns::unique_base_name();
            let server_name = format!("{base}-srv");
            let client_name = format!("{base}-cli");
            let shared = Shared::new(
                [server_name.clone(), client_name.clone()],
                config.max_duration,
            );
            signals::register(&shared);
            // From here on, any error removes what was made.
            let guard = SetupGuard(Some(shared.clone()));

            let server_ns = Netns::add(&server_name)?;
            let client_ns = Netns::add(&client_name)?;
            let server_tun = server_ns.setup_side(&[SERVER_IP, SERVER_IP_FOR_PLAYERS])?;
            let client_tun = client_ns.setup_side(&[PUBLISHER_IP, PLAYER_IP])?;
            client_ns.ip(&[
                "route",
                "add",
                &format!("{SERVER_IP_FOR_PLAYERS}/32"),
                "dev",
                netns::TUN_NAME,
                "src",
                &PLAYER_IP.to_string(),
            ])?;
            let threads = relay::spawn(
                shared.clone(),
                [server_tun, client_tun],
                relay::Paths {
                    uplink: config.uplink.clone(),
                    downlink: config.downlink.clone(),
                    seed: config.seed,
                },
            )
            .map_err(|e| EmuError::Setup(format!("cannot start the relay threads: {e}")))?;
            guard.disarm();
            Ok(Emulator {
                shared,
                server_ns,
                client_ns,
                threads,
                config,
            })
        }

        pub fn server_ip(&self) -> Ipv4Addr {
            SERVER_IP
        }
        pub fn publisher_ip(&self) -> Ipv4Addr {
            PUBLISHER_IP
        }
        pub fn player_ip(&self) -> Ipv4Addr {
            PLAYER_IP
        }
        /// See [`SERVER_IP_FOR_PLAYERS`].
        pub fn server_ip_for_players(&self) -> Ipv4Addr {
            SERVER_IP_FOR_PLAYERS
        }
        /// `rl-<pid>-<n>-srv`.
        pub fn server_ns_name(&self) -> &str {
            &self.server_ns.name
        }
        /// `rl-<pid>-<n>-cli`.
        pub fn client_ns_name(&self) -> &str {
            &self.client_ns.name
        }
        pub fn config(&self) -> &EmuConfig {
            &self.config
        }
        /// The relay's time origin: a packet read at `started_at() + t` entered the link model
        /// at `Micros(t)`.
        pub fn started_at(&self) -> Instant {
            self.shared.start
        }

        /// Runs `f` on a thread that has entered the server namespace. Sockets created there
        /// stay in it and can then be used from any thread or runtime, e.g.
        /// `std::net::TcpListener` → `set_nonblocking(true)` → `tokio::net::TcpListener::from_std`.
        /// A panic in `f` is resumed on the caller's thread.
        pub fn in_server_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
            self.server_ns.run_in(f)
        }

        /// [`Emulator::in_server_ns`] for the client namespace.
        pub fn in_client_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
            self.client_ns.run_in(f)
        }

        /// `ip netns exec <client ns> <program>`: add arguments and spawn. The program's
        /// sockets use the publisher address unless it binds another one.
        pub fn client_ns_command(&self, program: &str) -> Command {
            self.client_ns.command(program)
        }

        /// `ip netns exec <server ns> <program>`.
        pub fn server_ns_command(&self, program: &str) -> Command {
            self.server_ns.command(program)
        }

        /// A blocking TCP connection from `local` (the publisher's or the players' address)
        /// to `server_ip():port`, made inside the client namespace.
        pub fn connect_from(&self, local: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
            let server = SocketAddrV4::new(SERVER_IP, port);
            self.in_client_ns(|| {
                let socket = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )?;
                socket.bind(&SocketAddrV4::new(local, 0).into())?;
                socket.connect(&server.into())?;
                Ok(socket.into())
            })
        }

        /// Writes a sysctl (`net.ipv4.tcp_congestion_control`, dotted or slashed) in one
        /// namespace.
        pub fn set_sysctl(&self, side: Side, key: &str, value: &str) -> Result<(), EmuError> {
            let ns = match side {
                Side::Server => &self.server_ns,
                Side::Client => &self.client_ns,
            };
            ns.set_sysctl(key, value)
        }

        /// Reads a sysctl in one namespace.
        pub fn sysctl(&self, side: Side, key: &str) -> Result<String, EmuError> {
            let ns = match side {
                Side::Server => &self.server_ns,
                Side::Client => &self.client_ns,
            };
            ns.sysctl(key)
        }

        /// Packets, bytes and drops per direction, and the relay's lateness.
        pub fn stats(&self) -> EmuStats {
            self.shared.stats()
        }

        /// Why the relay stopped, or `None` while it runs.
        pub fn stop_reason(&self) -> Option<StopReason> {
            self.shared.stop_reason()
        }

        /// Blocks until the relay stops (max duration, SIGINT/SIGTERM) or `timeout` passes
        /// (`None`: no timeout). While a thread waits here, SIGINT/SIGTERM do not terminate
        /// the process: they stop the emulator (namespaces deleted) and this returns
        /// `Some(StopReason::Signal(_))`, so a command can print its results and exit.
        pub fn wait(&self, timeout: Option<Duration>) -> Option<StopReason> {
            let _waiting = signals::Waiting::new();
            self.shared.wait(timeout)
        }

        /// Stops the relay and deletes the namespaces now (as `Drop` does); the statistics stay
        /// readable.
        pub fn stop(&self) {
            self.shared.shutdown(StopReason::Dropped);
        }
    }

    impl Drop for Emulator {
        fn drop(&mut self) {
            self.shared.shutdown(StopReason::Dropped);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    impl std::fmt::Debug for Emulator {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Emulator")
                .field("server_ns", &self.server_ns.name)
                .field("client_ns", &self.client_ns.name)
                .field("config", &self.config)
                .finish()
        }
    }

    /// Removes whatever a failed `start` created.
    struct SetupGuard(Option<Arc<Shared>>);

    impl SetupGuard {
        fn disarm(mut self) {
            self.0 = None;
        }
    }

    impl Drop for SetupGuard {
        fn drop(&mut self) {
            if let Some(shared) = self.0.take() {
                shared.shutdown(StopReason::SetupFailed);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use super::*;

    /// The link emulator needs Linux (network namespaces, TUN); elsewhere `start` says so.
    #[derive(Debug)]
    pub struct Emulator {
        never: std::convert::Infallible,
    }

    impl Emulator {
        pub fn start(_config: EmuConfig) -> Result<Emulator, EmuError> {
            Err(EmuError::Unsupported(
                "it needs Linux (network namespaces and TUN devices)".into(),
            ))
        }
        pub fn server_ip(&self) -> Ipv4Addr {
            match self.never {}
        }
        pub fn publisher_ip(&self) -> Ipv4Addr {
            match self.never {}
        }
        pub fn player_ip(&self) -> Ipv4Addr {
            match self.never {}
        }
        pub fn server_ns_name(&self) -> &str {
            match self.never {}
        }
        pub fn client_ns_name(&self) -> &str {
            match self.never {}
        }
        pub fn in_server_ns<T: Send>(&self, _f: impl FnOnce() -> T + Send) -> T {
            match self.never {}
        }
        pub fn in_client_ns<T: Send>(&self, _f: impl FnOnce() -> T + Send) -> T {
            match self.never {}
        }
        pub fn client_ns_command(&self, _program: &str) -> std::process::Command {
            match self.never {}
        }
        pub fn server_ns_command(&self, _program: &str) -> std::process::Command {
            match self.never {}
        }
        pub fn stats(&self) -> EmuStats {
            match self.never {}
        }
        pub fn wait(&self, _timeout: Option<Duration>) -> Option<StopReason> {
            match self.never {}
        }
    }
}
