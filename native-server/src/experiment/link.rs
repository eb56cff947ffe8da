//! The path between the experiment's clients and the server: the TUN link emulator
//! ([`crate::emu`], the scenario's uplink and downlink applied packet by packet by sim-core's
//! link model between two network namespaces), or plain loopback without any impairment when
//! the emulator cannot run (not root, not Linux) or was not asked for.
//!
//! Every output of the experiment carries [`Link::label`], so a loopback run is never mistaken
//! for an emulated one.

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
    },
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
                    Ok(emu) => Link::Emulated {
                        emu: Box::new(emu),
                        uplink: s.uplink.clone(),
                        downlink: s.downlink.clone(),
                    },
                    Err(e) => Link::Loopback {
                        fallback_reason: Some(e.to_string()),
                    },
                }
            }
        }
    }

    /// For every output: what the path was.
    pub fn label(&self) -> String {
        match self {
            Link::Loopback { .. } => LOOPBACK_LABEL.to_owned(),
            Link::Emulated {
                uplink, downlink, ..
            } => format!(
                "emulated (TUN relay, sim-core link model; uplink {}; downlink {})",
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
    /// role's address in the client namespace) with TCP_NODELAY as given; returns the stream
    /// and how long `connect` took. Needs tokio's multi-threaded runtime (the emulated connect
    /// blocks a worker in `block_in_place`).
    pub async fn connect(
        &self,
        role: Role,
        server: SocketAddr,
        nodelay: bool,
    ) -> Result<(TcpStream, Duration)> {
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
                    emu.in_client_ns(|| connect_blocking(local, server, nodelay))
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
) -> std::io::Result<(std::net::TcpStream, Duration)> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddrV4::new(local, 0).into())?;
    socket.set_tcp_nodelay(nodelay)?;
    let start = Instant::now();
    socket.connect(&server.into())?;
    let took = start.elapsed();
    Ok((socket.into(), took))
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
