//! `rtmp-lab serve`: the real RTMP server (tokio) and its HTTP API (axum).
//!
//! ```text
//! listener ──accept──▶ session (handshake, ChunkReader, commands) ──publish──▶ relay::Stream
//!                         │                                                  │ GopCache (sim-core)
//!                         └─ outbox + writer task ◀── SubscriberQueue (sim-core) ◀─ shared Bytes
//! http (axum) ◀── ApiSource for relay::Relay (streams, ingest analysis, metrics)
//! ```
//!
//! | module | holds |
//! |---|---|
//! | [`api`] | JSON shapes shared by the relay, the HTTP API and the web lab |
//! | [`config`] | [`config::Settings`] (TOML, defaults that work; the full reference is there) |
//! | `listener` | socket options (TCP_NODELAY, TCP Fast Open, SO_SNDBUF), connection limit, accept loop |
//! | `session` | one connection: handshake (rml_rtmp), our codec, command handling |
//! | `outbox` | per-connection outbound state and the writer task (vectored writes) |
//! | [`relay`] | the stream registry, publish/play/unpublish, the fan-out hot path, metrics |
//! | [`ingest`] | pure analysis of an incoming stream (bitrate, GOP, jitter, VBV over real frames) |
//! | [`http`] | the axum router: `/api/streams`, `/api/streams/{app}/{key}`, `/metrics`, static files |
//!
//! Entry points: [`run`] (what `rtmp-lab serve` calls), or [`bind`] then
//! [`RunningServer::run`] to learn the bound addresses first (tests bind port 0).
//!
//! Shutdown: the future given to `run` resolving stops the listeners; every connection sees
//! the shutdown signal, players get Stream EOF, every socket is closed after its staged
//! bytes, and `run` returns once all connection tasks have ended (at most
//! [`SHUTDOWN_GRACE`]).

pub mod api;
pub mod config;
pub mod http;
pub mod ingest;
mod listener;
mod outbox;
pub mod relay;
mod session;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch};

use crate::protocol::ReaderLimits;
use config::Settings;
use relay::Relay;
use session::Shared;

/// How long shutdown waits for connections to finish writing and close.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A server whose listeners are bound, not yet serving.
pub struct RunningServer {
    /// The RTMP listener's address (the real port when 0 was asked).
    pub rtmp_addr: SocketAddr,
    /// The HTTP listener's address.
    pub http_addr: SocketAddr,
    relay: Arc<Relay>,
    settings: Arc<Settings>,
    web_root: Option<PathBuf>,
    rtmp: tokio::net::TcpListener,
    http: tokio::net::TcpListener,
    shutdown_tx: watch::Sender<bool>,
}

/// Validates `settings`, loads the auth key files and binds both listeners.
pub async fn bind(settings: Settings) -> Result<RunningServer> {
    settings.validate()?;
    let rtmp = listener::bind_rtmp(settings.rtmp, &settings.socket)?;
    bind_http(settings, rtmp).await
}

/// [`bind`] with an RTMP listener the caller made with [`rtmp_listener`] (e.g. inside a network
/// namespace: `rtmp-lab experiment --link emulated`); `settings.rtmp` is then not used.
pub async fn bind_with_listener(
    settings: Settings,
    rtmp: std::net::TcpListener,
) -> Result<RunningServer> {
    settings.validate()?;
    rtmp.set_nonblocking(true)?;
    let rtmp =
        tokio::net::TcpListener::from_std(rtmp).context("while registering the RTMP listener")?;
    bind_http(settings, rtmp).await
}

/// An RTMP listener with `options` applied (Fast Open, backlog), bound to `addr` in whatever
/// network namespace the calling thread is in; for [`bind_with_listener`].
pub fn rtmp_listener(
    addr: SocketAddr,
    options: &config::SocketOptions,
) -> Result<std::net::TcpListener> {
    listener::bind_rtmp_std(addr, options)
}

async fn bind_http(settings: Settings, rtmp: tokio::net::TcpListener) -> Result<RunningServer> {
    let auth = settings.publish_auth()?;
    let http = tokio::net::TcpListener::bind(settings.http)
        .await
        .with_context(|| {
            format!(
                "while binding HTTP to {} (in use? try --http ADDR)",
                settings.http
            )
        })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let relay = Arc::new(Relay::new(&settings, auth, shutdown_rx));
    Ok(RunningServer {
        rtmp_addr: rtmp.local_addr()?,
        http_addr: http.local_addr()?,
        relay,
        web_root: settings.resolved_web_root(),
        settings: Arc::new(settings),
        rtmp,
        http,
        shutdown_tx,
    })
}

/// Binds, prints the addresses, and serves until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let server = bind(settings).await?;
    println!(
        "rtmp-lab serve: RTMP on {}, HTTP on http://{}",
        server.rtmp_addr, server.http_addr
    );
    server.run(shutdown).await
}

impl RunningServer {
    /// The relay (stream registry, metrics): what the HTTP API reads.
    pub fn relay(&self) -> Arc<Relay> {
        self.relay.clone()
    }

    /// Serves RTMP and HTTP until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let RunningServer {
            rtmp_addr,
            http_addr,
            relay,
            settings,
            web_root,
            rtmp,
            http,
            shutdown_tx,
        } = self;
        tracing::info!(%rtmp_addr, %http_addr, web_root = ?web_root, "serving");
        let limits = &settings.limits;
        let shared = Arc::new(Shared {
            relay: relay.clone(),
            reader_limits: ReaderLimits {
                max_message_length: limits.max_message_bytes,
                max_chunk_streams: limits.max_chunk_streams,
                // Two maximum-size messages in flight, as the codec's default reasons.
                max_partial_bytes: (limits.max_message_bytes as usize).saturating_mul(2),
                ..ReaderLimits::default()
            },
            settings: settings.clone(),
        });

        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let accept = tokio::spawn(listener::accept_loop(
            rtmp,
            shared,
            shutdown_tx.subscribe(),
            done_tx,
        ));

        let source: Arc<dyn http::ApiSource> = relay.clone();
        let router = http::router(source, web_root);
        let mut http_shutdown = shutdown_tx.subscribe();
        let mut http_task = tokio::spawn(async move {
            let served = axum::serve(http, router)
                .with_graceful_shutdown(async move {
                    let _ = http_shutdown.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });

        shutdown.await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
        // The accept loop ends at once and drops its `done` sender; each connection task
        // drops its clone when it ends.
        let _ = accept.await;
        if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within the shutdown grace period");
        }
        if tokio::time::timeout(Duration::from_millis(500), &mut http_task)
            .await
            .is_err()
        {
            http_task.abort();
        }
        tracing::info!("stopped");
        Ok(())
    }
}
