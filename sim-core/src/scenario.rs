//! A `Scenario`: everything the simulator needs to run one experiment, loadable from TOML or
//! JSON, validated with a clear error for every bad value, plus the named presets.
//!
//! One scenario describes one publisher (encoder + rate control + uplink), one server and
//! `players.count` players behind identical downlinks. The same format is read by
//! `rtmp-lab simulate`, exported/imported by the web lab, and (later) used by `rtmp-lab experiment`.

use crate::check::{Checker, FieldError};
use crate::encoder::{AudioConfig, EncoderConfig};
use crate::net::{JitterConfig, JitterDistribution, LossConfig, PathConfig, TcpConfig};
use crate::player::{CatchUpConfig, PlayerConfig};
use crate::rate_control::RateControlConfig;
use crate::rtmp::RtmpConfig;
use crate::server::ServerConfig;
use serde::{Deserialize, Serialize};

/// When players join and how many there are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayersConfig {
    /// Number of players (subscribers). Player 0 is the probe whose every frame is traced; the
    /// others are summarised.
    pub count: u32,
    /// When the first player starts connecting, seconds after the publisher starts connecting.
    /// Joining mid-GOP is what makes the GOP cache (or its absence) visible.
    pub join_at_s: f64,
    /// Players 1.. join evenly spread over this many seconds after player 0.
    pub join_spread_s: f64,
}

impl Default for PlayersConfig {
    fn default() -> Self {
        PlayersConfig {
            count: 1,
            join_at_s: 5.0,
            join_spread_s: 0.0,
        }
    }
}

/// Which publisher `rtmp-lab experiment` runs for real (the simulator ignores it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentPublisher {
    /// The simulator's own encoder decisions (frame sizes, types, timestamps, send times) packed
    /// as valid FLV/RTMP tags and sent at their simulated send times: the real path is measured
    /// with exactly the simulated input.
    #[default]
    Replay,
    /// ffmpeg (libx264 + AAC) encoding a test pattern in real time with this scenario's encoder
    /// and rate-control settings: real x264 frames.
    Ffmpeg,
}

/// How `rtmp-lab experiment` runs this scenario for real.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    pub publisher: ExperimentPublisher,
    /// `net.ipv4.tcp_congestion_control` of the link emulator's two namespaces. `reno` (the
    /// default) is what [`crate::net::TcpPath`] models (slow start, no pacing, the Mathis rate
    /// under loss); new namespaces would otherwise inherit the host's controller (BBR on the
    /// lab's machines, whose pacing and PROBE_RTT the simulator does not model, MODELS §G).
    /// Empty: keep the inherited one.
    pub congestion_control: String,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            publisher: ExperimentPublisher::Replay,
            congestion_control: "reno".into(),
        }
    }
}

/// The whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Simulated time in seconds.
    pub duration_s: f64,
    /// Seed of every random draw: same scenario + seed = same trace, bit for bit.
    pub seed: u64,
    pub encoder: EncoderConfig,
    pub audio: AudioConfig,
    pub rate_control: RateControlConfig,
    pub rtmp: RtmpConfig,
    /// Publisher → server path.
    pub uplink: PathConfig,
    /// Server → each player path.
    pub downlink: PathConfig,
    /// The publisher's socket and stack (OBS's librtmp keeps Nagle on: `nodelay = false`).
    pub publisher_tcp: TcpConfig,
    /// The server's sockets towards players, and the players' stacks.
    pub server_tcp: TcpConfig,
    pub server: ServerConfig,
    pub player: PlayerConfig,
    pub players: PlayersConfig,
    /// Used by `rtmp-lab experiment` only.
    pub experiment: ExperimentConfig,
}

impl Default for Scenario {
    fn default() -> Self {
        preset("obs-default").expect("obs-default preset exists")
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    // The parser's message is part of ours (not a `source`), so it is printed once whether the
    // caller shows the chain (anyhow's `{:#}`) or only this error (the web lab).
    #[error("cannot parse scenario as TOML: {0}")]
    Toml(toml::de::Error),
    #[error("cannot parse scenario as JSON: {0}")]
    Json(serde_json::Error),
    #[error("invalid scenario:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
    #[error("unknown preset {0:?}; the presets are: {list}", list = PRESET_NAMES.join(", "))]
    UnknownPreset(String),
}

impl From<toml::de::Error> for ScenarioError {
    fn from(e: toml::de::Error) -> Self {
        ScenarioError::Toml(e)
    }
}

impl From<serde_json::Error> for ScenarioError {
    fn from(e: serde_json::Error) -> Self {
        ScenarioError::Json(e)
    }
}

impl Scenario {
    /// Every problem with the values, each with its dotted path.
    pub fn check(&self) -> Vec<FieldError> {
        let mut c = Checker::new();
        c.range("duration_s", self.duration_s, 0.1, 24.0 * 3600.0);
        c.section("encoder", |c| self.encoder.validate(c));
        c.section("audio", |c| self.audio.validate(c));
        c.section("rate_control", |c| self.rate_control.validate(c));
        c.section("rtmp", |c| self.rtmp.validate(c));
        c.section("uplink", |c| self.uplink.validate(c));
        c.section("downlink", |c| self.downlink.validate(c));
        c.section("publisher_tcp", |c| self.publisher_tcp.validate(c));
        c.section("server_tcp", |c| self.server_tcp.validate(c));
        c.section("server", |c| self.server.validate(c));
        c.section("player", |c| self.player.validate(c));
        c.section("players", |c| {
            c.int_range("count", self.players.count as u64, 1, 100_000);
            c.range("join_at_s", self.players.join_at_s, 0.0, 24.0 * 3600.0);
            c.range(
                "join_spread_s",
                self.players.join_spread_s,
                0.0,
                24.0 * 3600.0,
            );
        });
        c.section("experiment", |c| {
            let cc = &self.experiment.congestion_control;
            c.ensure(
                cc.len() <= 16 && cc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "congestion_control",
                "must be a kernel congestion-control name such as reno, cubic or bbr, or empty",
            );
        });
        c.into_errors()
    }

    /// `Ok(())` or every problem at once.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let errors = self.check();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ScenarioError::Invalid(errors))
        }
    }

    /// Parses and validates TOML. Missing fields take the defaults (the `obs-default` preset).
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Parses and validates JSON. Missing fields take the defaults (the `obs-default` preset).
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = serde_json::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialize: {e}\n"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Round-trip time of the uplink (publisher ↔ server), ms.
    pub fn uplink_rtt_ms(&self) -> f64 {
        2.0 * self.uplink.propagation_ms
    }
}

/// Names of the built-in presets, in the order the lab shows them.
pub const PRESET_NAMES: &[&str] = &[
    "seed-example",
    "obs-default",
    "twitch",
    "low-latency",
    "mobile-3g",
    "lan",
];

/// A named preset.
pub fn preset(name: &str) -> Result<Scenario, ScenarioError> {
    let base = base_obs();
    let s = match name {
        "obs-default" => base,
        "seed-example" => seed_example(base),
        "twitch" => twitch(base),
        "low-latency" => low_latency(base),
        "mobile-3g" => mobile_3g(base),
        "lan" => lan(base),
        other => return Err(ScenarioError::UnknownPreset(other.to_string())),
    };
    Ok(s)
}

/// OBS Studio's defaults with x264 (MODELS §B3, [O1]): 1080p30, CBR 6000 kb/s, VBV buffer =
/// bitrate (1 s), filler on, preset veryfast (lookahead 10, 3 B-frames), keyint 250 (x264's default
/// when OBS's keyframe interval is 0), AAC 160 kb/s; librtmp keeps Nagle on; a player with VLC's
/// 1000 ms network caching joining 5 s in.
fn base_obs() -> Scenario {
    Scenario {
        name: "obs-default".into(),
        description: "OBS Studio defaults: x264 veryfast CBR 6000 kb/s, VBV = 1 s, keyint 250, \
                      Nagle on in librtmp; a 20 Mb/s uplink with 40 ms RTT; server GOP cache on; \
                      a VLC-like player buffering 1 s."
            .into(),
        duration_s: 60.0,
        seed: 1,
        encoder: EncoderConfig::default(),
        audio: AudioConfig::default(),
        rate_control: RateControlConfig::default(),
        rtmp: RtmpConfig::default(),
        uplink: PathConfig {
            propagation_ms: 20.0,
            bottleneck_kbps: 20_000.0,
            jitter: JitterConfig {
                distribution: JitterDistribution::Uniform,
                ms: 2.0,
                preserve_order: true,
            },
            ..PathConfig::default()
        },
        downlink: PathConfig {
            propagation_ms: 20.0,
            bottleneck_kbps: 50_000.0,
            jitter: JitterConfig {
                distribution: JitterDistribution::Uniform,
                ms: 2.0,
                preserve_order: true,
            },
            ..PathConfig::default()
        },
        publisher_tcp: TcpConfig {
            nodelay: false,
            ..TcpConfig::default()
        },
        server_tcp: TcpConfig::default(),
        server: ServerConfig::default(),
        player: PlayerConfig::default(),
        players: PlayersConfig::default(),
        experiment: ExperimentConfig::default(),
    }
}

/// The seed article's §4.3 numbers taken literally: 100 connections of 1 Mb/s each, 1080p30 video
/// at 100 Mb/s, 128 kb/s audio at 44.1 kHz. The players' 1 Mb/s links cannot carry a 100 Mb/s
/// stream, so this preset shows what the article's arithmetic hides.
fn seed_example(mut s: Scenario) -> Scenario {
    s.name = "seed-example".into();
    s.description = "The seed article's §4.3 worked example taken literally: 1080p30 video at \
                     100 Mb/s, 128 kb/s audio at 44.1 kHz, 100 players on 1 Mb/s connections \
                     (R = n·r = 100 Mb/s). No link here can carry the stream: watch the server \
                     queues drop to keyframes and the players stall."
        .into();
    s.duration_s = 30.0;
    s.rate_control.bitrate_kbps = 100_000.0;
    s.rate_control.vbv_buffer_kbits = 100_000.0;
    s.audio.bitrate_kbps = 128.0;
    s.audio.sample_rate_hz = 44_100;
    s.uplink.bottleneck_kbps = 1_000_000.0;
    s.downlink.bottleneck_kbps = 1_000.0;
    s.players.count = 100;
    s.players.join_at_s = 2.0;
    s.players.join_spread_s = 1.0;
    s
}

/// Twitch's ingest recommendations ([O3], [T1]): 1080p60 at 6000 kb/s CBR, 2 s keyframes,
/// `scenecut=0`, AAC 160 kb/s.
fn twitch(mut s: Scenario) -> Scenario {
    s.name = "twitch".into();
    s.description = "Twitch's recommended ingest: 1080p60 CBR 6000 kb/s, keyframe every 2 s \
                     (scenecut off), veryfast; 60 ms RTT to the ingest."
        .into();
    s.encoder.fps = 60.0;
    s.encoder.keyframe_interval_frames = 120;
    s.encoder.scenecut = false;
    s.uplink.propagation_ms = 30.0;
    s
}

/// Everything turned for latency: x264 zerolatency, a VBV of a few frames, TCP_NODELAY on both
/// sides, no GOP cache, a player that starts at once and chases the live edge.
fn low_latency(mut s: Scenario) -> Scenario {
    s.name = "low-latency".into();
    s.description = "Tuned for latency: x264 zerolatency (no lookahead, no B-frames), VBV of \
                     ~4 frames, 1 s keyframes, TCP_NODELAY everywhere, no GOP cache, a player \
                     with 100 ms start-up buffer and live-edge catch-up."
        .into();
    s.encoder.width = 1280;
    s.encoder.height = 720;
    s.encoder.zerolatency = true;
    s.encoder.bframes = 0;
    s.encoder.lookahead_frames = 0;
    s.encoder.keyframe_interval_frames = 30;
    s.encoder.encode_time_ms = 5.0;
    s.rate_control.bitrate_kbps = 4_000.0;
    s.rate_control.vbv_buffer_kbits = 4_000.0 * 4.0 / 30.0;
    s.publisher_tcp.nodelay = true;
    s.server_tcp.nodelay = true;
    s.server.gop_cache = false;
    s.player.startup_buffer_ms = 100.0;
    s.player.rebuffer_ms = 100.0;
    s.player.decode_ms = 16.0;
    s.player.catch_up = CatchUpConfig {
        enabled: true,
        max_buffer_ms: 300.0,
        target_buffer_ms: 100.0,
        speed: 1.1,
    };
    s
}

/// A phone on a 3G-class uplink: 1.5 Mb/s, 150 ms RTT, normal jitter σ = 30 ms, bursty loss ~1 %,
/// a deep (bufferbloated) modem queue; 360p at 800 kb/s.
fn mobile_3g(mut s: Scenario) -> Scenario {
    s.name = "mobile-3g".into();
    s.description = "A phone on a 3G-class uplink: 1.5 Mb/s, 150 ms RTT, jitter σ 30 ms, bursty \
                     loss (~1 %, Gilbert–Elliott), a 256 KB modem queue; 640×360 at 800 kb/s."
        .into();
    s.encoder.width = 640;
    s.encoder.height = 360;
    s.encoder.keyframe_interval_frames = 60;
    s.rate_control.bitrate_kbps = 800.0;
    s.rate_control.vbv_buffer_kbits = 800.0;
    s.audio.bitrate_kbps = 64.0;
    s.uplink = PathConfig {
        propagation_ms: 75.0,
        bottleneck_kbps: 1_500.0,
        jitter: JitterConfig {
            distribution: JitterDistribution::Normal,
            ms: 30.0,
            preserve_order: true,
        },
        loss: LossConfig::GilbertElliott {
            p: 0.005,
            r: 0.4,
            loss_good: 0.005,
            loss_bad: 0.5,
        },
        queue_limit_bytes: 256 * 1024,
        ..PathConfig::default()
    };
    s
}

/// Publisher, server and player on one gigabit LAN.
fn lan(mut s: Scenario) -> Scenario {
    s.name = "lan".into();
    s.description = "Everything on one gigabit LAN: 0.2 ms RTT, no jitter, no loss; OBS \
                     defaults otherwise."
        .into();
    for path in [&mut s.uplink, &mut s.downlink] {
        *path = PathConfig {
            propagation_ms: 0.1,
            bottleneck_kbps: 1_000_000.0,
            ..PathConfig::default()
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_named_after_itself() {
        for name in PRESET_NAMES {
            let s = preset(name).unwrap();
            assert_eq!(s.name, *name);
            assert_eq!(s.check(), vec![], "preset {name}");
        }
        assert!(matches!(
            preset("nope"),
            Err(ScenarioError::UnknownPreset(_))
        ));
    }

    #[test]
    fn toml_and_json_round_trip() {
        for name in PRESET_NAMES {
            let s = preset(name).unwrap();
            assert_eq!(Scenario::from_toml(&s.to_toml()).unwrap(), s);
            assert_eq!(Scenario::from_json(&s.to_json()).unwrap(), s);
        }
    }

    #[test]
    fn partial_toml_takes_defaults() {
        let s = Scenario::from_toml("duration_s = 10\n[encoder]\nfps = 60\n").unwrap();
        assert_eq!(s.duration_s, 10.0);
        assert_eq!(s.encoder.fps, 60.0);
        assert_eq!(s.encoder.keyframe_interval_frames, 250);
    }

    #[test]
    fn bad_values_each_get_a_clear_error() {
        let text = r#"
            duration_s = -1
            [encoder]
            keyframe_interval_frames = 0
            [rate_control]
            bitrate_kbps = -5
            [uplink.loss]
            model = "bernoulli"
            p = 1.5
        "#;
        let err = Scenario::from_toml(text).unwrap_err();
        let ScenarioError::Invalid(errors) = &err else {
            panic!("expected Invalid, got {err}");
        };
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "duration_s",
            "encoder.keyframe_interval_frames",
            "rate_control.bitrate_kbps",
            "uplink.loss.p",
        ] {
            assert!(paths.contains(&p), "{p} not flagged in {paths:?}");
        }
        let msg = err.to_string();
        assert!(msg.contains("encoder.keyframe_interval_frames: must be between 1"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Scenario::from_toml("[encoder]\nfsp = 30\n").unwrap_err();
        assert!(err.to_string().contains("fsp"), "{err}");
    }
}
