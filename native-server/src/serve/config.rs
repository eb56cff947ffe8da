//! `Settings`: everything `rtmp-lab serve` can be told, from a TOML file (`--config lab.toml`)
//! and the command line (`--rtmp`, `--http`, `--web-root` override the file).
//!
//! Every field is optional and its default works out of the box. Unknown keys are errors (so a
//! typo is reported with its path instead of being silently ignored), and every value is
//! validated with a message per bad field.
//!
//! # Reference (all keys, with their defaults)
//!
//! ```toml
//! rtmp = "0.0.0.0:1935"        # RTMP listen address
//! http = "127.0.0.1:8080"      # HTTP (API, /metrics, the web lab) listen address
//! web_root = "web/dist"        # static files of the web lab; default: the workspace's
//!                              # web/dist if it exists, else no static files
//!
//! [limits]
//! max_connections = 10000      # open RTMP connections; more are closed at once (and counted)
//! handshake_timeout_s = 10     # a socket that has not completed the handshake by then is closed
//! idle_timeout_s = 30          # a publisher (or any non-player) that sends nothing, or a player
//!                              # whose socket accepts nothing, for this long is closed; players
//!                              # waiting for a publisher are not idle
//! max_message_bytes = 8388608  # largest inbound RTMP message (a keyframe), ≤ 16777215
//! max_chunk_streams = 64       # chunk stream ids one peer may use
//! max_streams = 1000           # (app, key) streams at once (published or waited for)
//!
//! [socket]
//! nodelay = true               # TCP_NODELAY on every RTMP connection (no Nagle delay)
//! fast_open = true             # TCP_FASTOPEN on the listener when the kernel allows (logged if not)
//! send_buffer_bytes = 0        # SO_SNDBUF of RTMP connections; 0 = the kernel's default/autotuning
//! chunk_size = 4096            # outbound RTMP chunk size (1..=2147483647)
//!
//! [relay]                      # the sim_core::server::ServerConfig the relay runs, plus two
//! gop_cache = true             # send joining players the GOP since the last keyframe
//! gop_cache_max_bytes = 67108864
//! queue_max_bytes = 8388608    # per-player queue bound (bytes waiting to be written)
//! queue_max_ms = 10000.0       # per-player queue bound in media time
//! drop_policy = "drop_to_keyframe"   # or "disconnect"
//! disconnect_after_ms = 30000.0      # a player over its bound for this long is disconnected
//! coalesce_ms = 0.0            # write coalescing window (0 = write each message at once)
//! publisher_takeover = false   # second publisher on a busy key: false → NetStream.Publish.BadName,
//!                              # true → the old publisher is disconnected
//! unpublish_linger_s = 30      # players stay connected this long after the publisher leaves
//!
//! [auth.apps.live]             # optional, per app: who may publish; an app without an entry is open
//! publish_keys = ["secret"]    # allowed stream keys
//! publish_keys_file = "keys.txt"   # one key per line ('#' comments); relative to the config file
//! ```
//!
//! A publish is allowed when the stream name (before any `?`) is in the app's list, or when the
//! value of any `?name=value` query parameter is (so `rtmp://host/live/show?key=secret` works
//! without making the secret the public stream name).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sim_core::check::Checker;
use sim_core::server::{DropPolicy, ServerConfig};

/// Default RTMP listen address (all interfaces, the standard port).
pub const DEFAULT_RTMP_ADDR: &str = "0.0.0.0:1935";
/// Default HTTP listen address (loopback only: the API is not meant to be public).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// The whole configuration. See the module docs for the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// Static files for the web lab; `None` → no static files (the API still works).
    pub web_root: Option<PathBuf>,
    pub limits: Limits,
    pub socket: SocketOptions,
    pub relay: RelaySettings,
    pub auth: AuthSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rtmp: DEFAULT_RTMP_ADDR
                .parse()
                .unwrap_or_else(|_| ([0, 0, 0, 0], 1935).into()),
            http: DEFAULT_HTTP_ADDR
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 8080).into()),
            web_root: None,
            limits: Limits::default(),
            socket: SocketOptions::default(),
            relay: RelaySettings::default(),
            auth: AuthSettings::default(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout_s: f64,
    pub idle_timeout_s: f64,
    pub max_message_bytes: u32,
    pub max_chunk_streams: usize,
    pub max_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Each connection costs two small tasks and its socket buffers; 10,000 is well
            // within a default `ulimit -n` raised for servers and far above a lab's needs.
            max_connections: 10_000,
            // A real client completes the handshake in 1–2 RTTs; 10 s covers the worst mobile
            // path while bounding what a socket that never handshakes can hold.
            handshake_timeout_s: 10.0,
            // OBS sends media continuously; 30 s is nginx-rtmp's `timeout` default order.
            idle_timeout_s: 30.0,
            max_message_bytes: crate::protocol::chunk::DEFAULT_MAX_MESSAGE_LENGTH,
            max_chunk_streams: crate::protocol::chunk::DEFAULT_MAX_CHUNK_STREAMS,
            max_streams: 1000,
        }
    }
}

/// `[socket]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketOptions {
    pub nodelay: bool,
    pub fast_open: bool,
    pub send_buffer_bytes: usize,
    pub chunk_size: u32,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            fast_open: true,
            send_buffer_bytes: 0,
            chunk_size: crate::protocol::writer::DEFAULT_OUTBOUND_CHUNK_SIZE,
        }
    }
}

/// `[relay]`: [`ServerConfig`]'s fields (the chunk size comes from `[socket]`) plus the relay's
/// own. Spelled out rather than `#[serde(flatten)]` because flatten and `deny_unknown_fields`
/// do not mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    pub gop_cache: bool,
    pub gop_cache_max_bytes: u64,
    pub queue_max_bytes: u64,
    pub queue_max_ms: f64,
    pub drop_policy: DropPolicy,
    pub disconnect_after_ms: f64,
    pub coalesce_ms: f64,
    pub publisher_takeover: bool,
    pub unpublish_linger_s: f64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        let s = ServerConfig::default();
        RelaySettings {
            gop_cache: s.gop_cache,
            gop_cache_max_bytes: s.gop_cache_max_bytes,
            queue_max_bytes: s.queue_max_bytes,
            queue_max_ms: s.queue_max_ms,
            drop_policy: s.drop_policy,
            disconnect_after_ms: s.disconnect_after_ms,
            coalesce_ms: s.coalesce_ms,
            publisher_takeover: false,
            // OBS retries a dropped connection after 2–10 s; 30 s covers several retries.
            unpublish_linger_s: 30.0,
        }
    }
}

impl RelaySettings {
    /// The state machines' configuration (`chunk_size` from `[socket]`).
    pub fn server_config(&self, chunk_size: u32) -> ServerConfig {
        ServerConfig {
            gop_cache: self.gop_cache,
            gop_cache_max_bytes: self.gop_cache_max_bytes,
            queue_max_bytes: self.queue_max_bytes,
            queue_max_ms: self.queue_max_ms,
            drop_policy: self.drop_policy,
            disconnect_after_ms: self.disconnect_after_ms,
            coalesce_ms: self.coalesce_ms,
            chunk_size,
            ..ServerConfig::default()
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub apps: HashMap<String, AppAuth>,
}

/// `[auth.apps.<app>]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppAuth {
    pub publish_keys: Vec<String>,
    pub publish_keys_file: Option<PathBuf>,
}

/// The publish allow lists, keys from files loaded (built once at start-up).
#[derive(Debug, Clone, Default)]
pub struct PublishAuth {
    apps: HashMap<String, HashSet<String>>,
}

impl PublishAuth {
    /// May `stream_name` (as sent, possibly with a `?query`) be published in `app`?
    pub fn allows(&self, app: &str, stream_name: &str) -> bool {
        let Some(keys) = self.apps.get(app) else {
            return true;
        };
        let (name, query) = match stream_name.split_once('?') {
            Some((n, q)) => (n, Some(q)),
            None => (stream_name, None),
        };
        if keys.contains(name) {
            return true;
        }
        query.is_some_and(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .any(|(_, v)| keys.contains(v))
        })
    }
}

impl Settings {
    /// Reads and validates a TOML file. Relative `publish_keys_file`s are resolved against the
    /// file's directory.
    pub fn from_file(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("while reading config {}", path.display()))?;
        let mut settings =
            Settings::from_toml(&text).with_context(|| format!("in config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for app in settings.auth.apps.values_mut() {
            if let Some(file) = &mut app.publish_keys_file {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        Ok(settings)
    }

    /// Parses TOML (unknown keys are errors naming the key) and validates.
    pub fn from_toml(text: &str) -> Result<Settings> {
        let settings: Settings = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Every bad value, each with its dotted path.
    pub fn validate(&self) -> Result<()> {
        let mut c = Checker::new();
        c.section("limits", |c| {
            let l = &self.limits;
            c.ensure(
                l.max_connections > 0,
                "max_connections",
                "must be at least 1",
            );
            c.range("handshake_timeout_s", l.handshake_timeout_s, 0.1, 3600.0);
            c.range("idle_timeout_s", l.idle_timeout_s, 0.1, 86_400.0);
            c.int_range(
                "max_message_bytes",
                u64::from(l.max_message_bytes),
                1024,
                u64::from(crate::protocol::chunk::MAX_PROTOCOL_MESSAGE_LENGTH),
            );
            c.int_range("max_chunk_streams", l.max_chunk_streams as u64, 2, 65_599);
            c.ensure(l.max_streams > 0, "max_streams", "must be at least 1");
        });
        c.section("socket", |c| {
            c.int_range(
                "chunk_size",
                u64::from(self.socket.chunk_size),
                1,
                u64::from(crate::protocol::chunk::MAX_PROTOCOL_CHUNK_SIZE),
            );
        });
        c.section("relay", |c| {
            // ServerConfig's own checks, minus its chunk size (validated under [socket] with
            // the protocol's range).
            let mut server = self.relay.server_config(self.socket.chunk_size.max(128));
            server.chunk_size = server.chunk_size.min(0x7FFF_FFFF);
            server.validate(c);
            c.range(
                "unpublish_linger_s",
                self.relay.unpublish_linger_s,
                0.0,
                86_400.0,
            );
        });
        let errors = c.into_errors();
        if errors.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        bail!("invalid configuration:\n{}", lines.join("\n"))
    }

    /// Loads the key files of `[auth]` (an unreadable file is an error: a server that was meant
    /// to be closed must not start open).
    pub fn publish_auth(&self) -> Result<PublishAuth> {
        let mut apps = HashMap::new();
        for (app, auth) in &self.auth.apps {
            let mut keys: HashSet<String> = auth.publish_keys.iter().cloned().collect();
            if let Some(file) = &auth.publish_keys_file {
                let text = std::fs::read_to_string(file).with_context(|| {
                    format!(
                        "while reading auth.apps.{app}.publish_keys_file {}",
                        file.display()
                    )
                })?;
                keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
            }
            apps.insert(app.clone(), keys);
        }
        Ok(PublishAuth { apps })
    }

    /// The web root to serve: the configured one, else the workspace's `web/dist` when it
    /// exists (next to the current directory, or next to this crate's sources).
    pub fn resolved_web_root(&self) -> Option<PathBuf> {
        if let Some(root) = &self.web_root {
            return Some(root.clone());
        }
        let candidates = [
            PathBuf::from("web/dist"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist"),
        ];
        candidates.into_iter().find(|p| p.is_dir())
    }

    pub fn handshake_timeout(&self) -> std::time::Duration {
        secs(self.limits.handshake_timeout_s)
    }

    pub fn idle_timeout(&self) -> std::time::Duration {
        secs(self.limits.idle_timeout_s)
    }

    pub fn unpublish_linger(&self) -> std::time::Duration {
        secs(self.relay.unpublish_linger_s)
    }
}

/// Seconds to a `Duration`, clamped (validation keeps them in range; this never panics).
fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.0, 1e9)
    } else {
        0.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let s = Settings::from_toml("").expect("defaults");
        assert_eq!(s, Settings::default());
        assert_eq!(s.rtmp.port(), 1935);
        assert_eq!(s.http.to_string(), "127.0.0.1:8080");
        assert_eq!(s.socket.chunk_size, 4096);
    }

    #[test]
    fn full_reference_parses() {
        let text = r#"
rtmp = "127.0.0.1:1936"
http = "127.0.0.1:8081"
web_root = "web/dist"
[limits]
max_connections = 100
handshake_timeout_s = 5
idle_timeout_s = 20
max_message_bytes = 1048576
max_chunk_streams = 16
max_streams = 10
[socket]
nodelay = false
fast_open = false
send_buffer_bytes = 65536
chunk_size = 60000
[relay]
gop_cache = false
gop_cache_max_bytes = 1000000
queue_max_bytes = 1000000
queue_max_ms = 5000.0
drop_policy = "disconnect"
disconnect_after_ms = 1000.0
coalesce_ms = 10.0
publisher_takeover = true
unpublish_linger_s = 5
[auth.apps.live]
publish_keys = ["secret"]
"#;
        let s = Settings::from_toml(text).expect("parses");
        assert_eq!(s.limits.max_streams, 10);
        assert_eq!(s.relay.drop_policy, DropPolicy::Disconnect);
        assert!(s.relay.publisher_takeover);
        let auth = s.publish_auth().expect("auth");
        assert!(auth.allows("live", "secret"));
        assert!(auth.allows("live", "show?key=secret"));
        assert!(!auth.allows("live", "other"));
        assert!(auth.allows("open", "anything"));
    }

    #[test]
    fn typos_are_reported_with_their_path() {
        let err = Settings::from_toml("[limits]\nmax_conections = 5\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("max_conections"), "{text}");
        let err = Settings::from_toml("[socket]\nchunk_size = 0\n").unwrap_err();
        assert!(format!("{err:#}").contains("socket.chunk_size"), "{err:#}");
        let err = Settings::from_toml("[relay]\nqueue_max_ms = -1\n").unwrap_err();
        assert!(format!("{err:#}").contains("relay.queue_max_ms"), "{err:#}");
    }
}
