//! The RTMP listener: socket options, the connection limit, and the accept loop.
//!
//! Each accepted socket gets a task ([`super::session::serve_connection`]) that holds one
//! permit of a semaphore sized `limits.max_connections`; a socket accepted while no permit is
//! free is closed at once and counted (`connections_rejected`), so a flood costs an accept
//! and a close, never a task. Every connection task also holds a clone of a `done` sender:
//! when the last one is dropped, shutdown knows every connection has ended (the mini-redis
//! pattern).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::config::SocketOptions;
use super::relay::Metrics;
use super::session::{serve_connection, Shared};

/// Listen backlog: the kernel queue of completed handshakes not yet accepted. Sized for a burst
/// of reconnecting encoders and players; Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 1024;

/// TCP Fast Open queue length (pending TFO requests without a completed handshake), the
/// value nginx and most servers use.
const FAST_OPEN_QUEUE: i32 = 256;

/// Pause after an accept error (EMFILE, ENFILE, ENOBUFS): retrying at once would spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Binds the RTMP listener with the configured socket options.
pub fn bind_rtmp(addr: SocketAddr, options: &SocketOptions) -> Result<TcpListener> {
    let std_listener = bind_rtmp_std(addr, options)?;
    TcpListener::from_std(std_listener).context("while registering the RTMP listener")
}

/// [`bind_rtmp`] without registering with tokio: callable where no runtime is current (a
/// thread that entered a network namespace to create the socket).
pub fn bind_rtmp_std(addr: SocketAddr, options: &SocketOptions) -> Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("while creating the RTMP socket")?;
    // Restarting the server must not wait for TIME_WAIT sockets of the previous run.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket
        .bind(&addr.into())
        .with_context(|| format!("while binding RTMP to {addr} (in use? try --rtmp ADDR)"))?;
    if options.fast_open {
        enable_fast_open(&socket);
    }
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// TCP_FASTOPEN on the listener: a returning client may send its first bytes (C0+C1) in the
/// SYN, saving one round trip of the connection set-up. Best effort: logged if unavailable.
#[cfg(target_os = "linux")]
fn enable_fast_open(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let queue: libc::c_int = FAST_OPEN_QUEUE;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid, live `c_int`; the fd
    // is owned by `socket` for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN,
            (&queue as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(),
            "TCP Fast Open unavailable on the RTMP listener; continuing without it");
        return;
    }
    // The option is accepted whatever the sysctl says; the server side only works with bit 2.
    match std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fastopen")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        Some(v) if v & 2 == 0 => tracing::info!(
            sysctl = v,
            "TCP Fast Open set on the listener, but the kernel has server TFO off \
             (net.ipv4.tcp_fastopen={v}; set it to 3 to enable)"
        ),
        _ => tracing::debug!("TCP Fast Open enabled on the RTMP listener"),
    }
}

#[cfg(not(target_os = "linux"))]
fn enable_fast_open(_socket: &Socket) {
    tracing::warn!("TCP Fast Open is only set on Linux; continuing without it");
}

/// Accepts RTMP connections until shutdown.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let limit = Arc::new(Semaphore::new(shared.settings.limits.max_connections));
    let next_id = AtomicU64::new(1);
    let metrics = shared.relay.metrics.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        Metrics::inc(&metrics.connections_total);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            Metrics::inc(&metrics.connections_rejected);
            tracing::debug!(%peer, "connection limit reached: closing");
            drop(socket);
            continue;
        };
        configure(&socket, &shared.settings.socket);
        let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        tokio::spawn(async move {
            serve_connection(shared, socket, peer, conn_id, shutdown).await;
            drop(permit);
            drop(done);
        });
    }
}

/// Per-connection socket options (failures are logged: the connection still works).
fn configure(socket: &TcpStream, options: &SocketOptions) {
    if let Err(e) = socket.set_nodelay(options.nodelay) {
        tracing::debug!(error = %e, "TCP_NODELAY");
    }
    if options.send_buffer_bytes > 0 {
        if let Err(e) = SockRef::from(socket).set_send_buffer_size(options.send_buffer_bytes) {
            tracing::debug!(error = %e, "SO_SNDBUF");
        }
    }
}
