//! The path between the experiment's clients and the server: the TUN link emulator
//! ([`crate::emu`], the scenario's uplink and downlink applied packet by packet by sim-core's
//! link model between two network namespaces), or plain loopback without any impairment when
//! the emulator cannot run (not root, not Linux) or was not asked for.
//!
//! Every output of the experiment carries [`Link::label`], so a loopback run is never mistaken
//! for an emulated one.
//!
//! The emulated namespaces get the scenario's `experiment.congestion_control` (Reno by default:
//! what `sim_core::net::TcpPath` models; they would otherwise inherit the host's, BBR on the
//! lab's machines), and clients can use TCP Fast Open ([`SocketOpts::fast_open`]:
//! `TCP_FASTOPEN_CONNECT`; the namespaces have `net.ipv4.tcp_fastopen = 3`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sim_core::scenario::Scenario;
use tokio::net::TcpStream;

use crate::emu::{EmuConfig, EmuStats, Emulator};
use crate::serve::config::Settings;
use crate::serve::{self, RunningServer};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkChoice {
    /// The TUN link emulator (needs root on Linux); falls back to loopback, labelled, if it
    /// cannot run.
    Emulated,
    /// Loopback, no impairment.
    Loopback,
}

/// Which client is connecting (the emulator applies the uplink to the publisher's address and
/// the downlink to the players').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Player,
}

/// A client socket's options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOpts {
    /// TCP_NODELAY (Nagle off).
    pub nodelay: bool,
    /// The client side of TCP Fast Open (see [`Link::connect`]).
    pub fast_open: bool,
}

/// The label of an unimpaired loopback run, in every output.
pub const LOOPBACK_LABEL: &str = "loopback (no impairment)";

/// The path in use.
pub enum Link {
    Loopback {
        /// Why the emulator is not used, when it was asked for.
        fallback_reason: Option<String>,
    },
    Emulated {
        emu: Box<Emulator>,
        uplink: sim_core::net::PathConfig,
        downlink: sim_core::net::PathConfig,
        /// `net.ipv4.tcp_congestion_control` in both namespaces, as read back.
        congestion_control: String,
    },
}

/// Sets the namespaces' congestion controller (`experiment.congestion_control`; empty keeps
/// the host's, which new namespaces inherit) and returns what both sides use, as read back.
#[cfg(target_os = "linux")]
fn set_congestion_control(emu: &Emulator, wanted: &str) -> String {
    use crate::emu::Side;
    const KEY: &str = "net.ipv4.tcp_congestion_control";
    let mut problems = Vec::new();
    if !wanted.is_empty() {
        for side in [Side::Server, Side::Client] {
            if let Err(e) = emu.set_sysctl(side, KEY, wanted) {
                problems.push(format!("{side:?}: {e}"));
            }
        }
    }
    let read = |side| emu.sysctl(side, KEY).map(|v| v.trim().to_owned());
    let (srv, cli) = (read(Side::Server), read(Side::Client));
    let mut label = match (srv, cli) {
        (Ok(a), Ok(b)) if a == b => a,
        (a, b) => format!("server {a:?}, clients {b:?}"),
    };
    if !problems.is_empty() {
        label = format!("{label} (could not set {wanted}: {})", problems.join("; "));
    } else if wanted.is_empty() {
        label = format!("{label} (inherited from the host)");
    }
    label
}

#[cfg(not(target_os = "linux"))]
fn set_congestion_control(_emu: &Emulator, _wanted: &str) -> String {
    "unknown".into()
}

impl Link {
    /// Opens the link: starts the emulator for `s` (bounded by `max_duration`) when asked and
    /// possible, else loopback with the reason.
    pub fn open(choice: LinkChoice, s: &Scenario, max_duration: Duration) -> Link {
        match choice {
            LinkChoice::Loopback => Link::Loopback {
                fallback_reason: None,
            },
            LinkChoice::Emulated => {
                match Emulator::start(EmuConfig::from_scenario(s, max_duration)) {
                    Ok(emu) => {
                        let congestion_control =
                            set_congestion_control(&emu, &s.experiment.congestion_control);
                        Link::Emulated {
                            emu: Box::new(emu),
                            uplink: s.uplink.clone(),
                            downlink: s.downlink.clone(),
                            congestion_control,
                        }
                    }
                    Err(e) => Link::Loopback {
                        fallback_reason: Some(e.to_string()),
                    },
                }
            }
        }
    }

    /// The congestion controller of the emulated namespaces (what was set, or what they
    /// inherited, or why it could not be set); `None` on loopback.
    pub fn congestion_control(&self) -> Option<&str> {
        match self {
            Link::Loopback { .. } => None,
            Link::Emulated {
                congestion_control, ..
            } => Some(congestion_control),
        }
    }

    /// For every output: what the path was.
    pub fn label(&self) -> String {
        match self {
            Link::Loopback { .. } => LOOPBACK_LABEL.to_owned(),
            Link::Emulated {
                uplink,
                downlink,
                congestion_control,
                ..
            } => format!(
                "emulated (TUN relay, sim-core link model; uplink {}; downlink {}; \
                 congestion control {congestion_control})",
                describe_path(uplink),
                describe_path(downlink)
            ),
        }
    }

    pub fn is_emulated(&self) -> bool {
        matches!(self, Link::Emulated { .. })
    }

    /// Why loopback is used although the emulator was asked for.
    pub fn fallback_reason(&self) -> Option<&str> {
        match self {
            Link::Loopback { fallback_reason } => fallback_reason.as_deref(),
            Link::Emulated { .. } => None,
        }
    }

    /// The emulator's packet counters, when emulated.
    pub fn stats(&self) -> Option<EmuStats> {
        match self {
            Link::Loopback { .. } => None,
            Link::Emulated { emu, .. } => Some(emu.stats()),
        }
    }

    /// Binds the in-process server on this link: on loopback at 127.0.0.1 (ephemeral ports),
    /// emulated in the server namespace at the emulator's server address (HTTP stays on the
    /// host's loopback). Returns the server and the RTMP address clients connect to.
    pub async fn bind_server(&self, mut settings: Settings) -> Result<(RunningServer, SocketAddr)> {
        settings.http = SocketAddr::from(([127, 0, 0, 1], 0));
        match self {
            Link::Loopback { .. } => {
                settings.rtmp = SocketAddr::from(([127, 0, 0, 1], 0));
                let server = serve::bind(settings).await?;
                let addr = server.rtmp_addr;
                Ok((server, addr))
            }
            Link::Emulated { emu, .. } => {
                let addr = SocketAddr::V4(SocketAddrV4::new(emu.server_ip(), 1935));
                let options = settings.socket.clone();
                let listener = emu
                    .in_server_ns(|| serve::rtmp_listener(addr, &options))
                    .context("while binding the RTMP listener in the server namespace")?;
                let server = serve::bind_with_listener(settings, listener).await?;
                Ok((server, addr))
            }
        }
    }

    /// Connects a client to `server` over this link (an emulated link binds the socket to the
    /// role's address in the client namespace) with the options given; returns the stream
    /// and how long `connect` took. Needs tokio's multi-threaded runtime (the emulated connect
    /// blocks a worker in `block_in_place`).
    ///
    /// `opts.fast_open`: the client side of TCP Fast Open (`TCP_FASTOPEN_CONNECT`, emulated link
    /// only; the namespaces have `net.ipv4.tcp_fastopen = 3`). With a cookie from an earlier
    /// connection to the server, `connect` returns at once and the first write (C0+C1) rides
    /// on the SYN, so the TCP round trip is then counted in the RTMP handshake step; without
    /// one, `connect` is an ordinary handshake that asks for a cookie.
    pub async fn connect(
        &self,
        role: Role,
        server: SocketAddr,
        opts: SocketOpts,
    ) -> Result<(TcpStream, Duration)> {
        let SocketOpts { nodelay, fast_open } = opts;
        match self {
            Link::Loopback { .. } => {
                let start = Instant::now();
                let stream = TcpStream::connect(server)
                    .await
                    .with_context(|| format!("while connecting to {server}"))?;
                let took = start.elapsed();
                stream.set_nodelay(nodelay)?;
                Ok((stream, took))
            }
            Link::Emulated { emu, .. } => {
                let local = match role {
                    Role::Publisher => emu.publisher_ip(),
                    Role::Player => emu.player_ip(),
                };
                // The blocking connect runs on a thread that enters the namespace; time it
                // there, around connect() alone.
                let (std_stream, took) = tokio::task::block_in_place(|| {
                    emu.in_client_ns(|| connect_blocking(local, server, nodelay, fast_open))
                })
                .with_context(|| format!("while connecting to {server} from {local}"))?;
                std_stream.set_nonblocking(true)?;
                Ok((TcpStream::from_std(std_stream)?, took))
            }
        }
    }
}

fn connect_blocking(
    local: Ipv4Addr,
    server: SocketAddr,
    nodelay: bool,
    fast_open: bool,
) -> std::io::Result<(std::net::TcpStream, Duration)> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddrV4::new(local, 0).into())?;
    socket.set_tcp_nodelay(nodelay)?;
    if fast_open {
        set_fast_open_connect(&socket)?;
    }
    let start = Instant::now();
    socket.connect(&server.into())?;
    let took = start.elapsed();
    Ok((socket.into(), took))
}

/// `TCP_FASTOPEN_CONNECT` (Linux ≥ 4.11): `connect` is deferred to the first write, whose
/// bytes go on the SYN when a cookie for the server is cached.
#[cfg(target_os = "linux")]
fn set_fast_open_connect(socket: &socket2::Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from a valid pointer of the given length; the fd is
    // owned by `socket` for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN_CONNECT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_fast_open_connect(_socket: &socket2::Socket) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "TCP_FASTOPEN_CONNECT is Linux only",
    ))
}

/// Whether the SYN of `socket`'s connection carried data that the server acknowledged (TCP Fast
/// Open used: `TCPI_OPT_SYN_DATA` in `TCP_INFO`); `None` when it cannot be read.
#[cfg(target_os = "linux")]
pub fn syn_data_acked(socket: &impl std::os::fd::AsRawFd) -> Option<bool> {
    const TCPI_OPT_SYN_DATA: u8 = 32;
    // SAFETY: tcp_info is plain old data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a valid tcp_info, and updates
    // `len`; the fd is owned by the caller's socket for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0 && len as usize > std::mem::offset_of!(libc::tcp_info, tcpi_options))
        .then_some(info.tcpi_options & TCPI_OPT_SYN_DATA != 0)
}

#[cfg(not(target_os = "linux"))]
pub fn syn_data_acked<T>(_socket: &T) -> Option<bool> {
    None
}

/// `20 ms, 20000 kb/s, jitter 2 ms, loss none`-style summary of a path.
pub fn describe_path(p: &sim_core::net::PathConfig) -> String {
    let rate = if p.bottleneck_kbps > 0.0 {
        format!("{} kb/s", p.bottleneck_kbps)
    } else {
        "unlimited".into()
    };
    let loss = match p.loss {
        sim_core::net::LossConfig::None => "no loss".to_owned(),
        sim_core::net::LossConfig::Bernoulli { p } => format!("loss {:.2} %", p * 100.0),
        sim_core::net::LossConfig::GilbertElliott { .. } => "Gilbert–Elliott loss".to_owned(),
    };
    let jitter = if p.jitter.ms > 0.0 {
        format!(", jitter ±{} ms", p.jitter.ms)
    } else {
        String::new()
    };
    format!("{} ms one way, {rate}{jitter}, {loss}", p.propagation_ms)
}
