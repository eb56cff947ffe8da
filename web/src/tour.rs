//! The guided tour: a few steps, each setting the scenario and saying what to watch. Each step
//! starts from a preset, so the steps can be taken in any order and repeated.

use crate::charts::{ChartKind, LatencyOptions};
use sim_core::scenario::{preset, Scenario};

pub struct TourStep {
    pub title: &'static str,
    /// What the step changes and why, in plain language.
    pub text: &'static str,
    /// The chart to look at.
    pub watch: ChartKind,
    pub apply: fn() -> Scenario,
    pub latency: LatencyOptions,
}

fn base(name: &str) -> Scenario {
    preset(name).unwrap_or_default()
}

/// Uplink stage shown, glass-to-glass lines kept.
const UPLINK_LINE: LatencyOptions = LatencyOptions {
    video: true,
    audio: false,
    stages: [false, false, true, false, false, false],
};

pub static TOUR: &[TourStep] = &[
    TourStep {
        title: "1. Nagle's stalls",
        text: "OBS's librtmp leaves Nagle's algorithm on. A frame is rarely a whole number of TCP \
               segments, so its last small segment waits until the server has acknowledged the \
               data before it, and the server delays its ACKs (40 ms on Linux). Watch the uplink \
               line in the latency chart: frames that hit the delayed-ACK timer stand out above the \
               rest. Then tick \"Publisher TCP_NODELAY\" and watch them go.",
        watch: ChartKind::Latency,
        apply: || {
            let mut s = base("obs-default");
            s.name = "tour: nagle".into();
            s.publisher_tcp.nodelay = false;
            s.encoder.bframes = 0;
            s
        },
        latency: UPLINK_LINE,
    },
    TourStep {
        title: "2. An 8-second keyframe interval",
        text: "A player can start decoding only at a keyframe. With the GOP cache on, the server \
               sends the last GOP at once, so the player starts quickly, but it starts up to 8 s \
               behind the live edge and (without catch-up) stays there: watch glass-to-glass \
               latency jump by seconds.",
        watch: ChartKind::Startup,
        apply: || {
            let mut s = base("obs-default");
            s.name = "tour: keyint 8 s".into();
            s.encoder.keyframe_interval_frames = (8.0 * s.encoder.fps) as u32;
            s.players.join_at_s = 13.0;
            s
        },
        latency: LatencyOptions::DEFAULT,
    },
    TourStep {
        title: "3. Turn off the GOP cache",
        text: "Same stream, no GOP cache (nginx-rtmp's default). Now the joining player gets \
               nothing until the next keyframe: watch the red \"waiting for a keyframe\" bar in the \
               start-up timeline, up to a whole keyframe interval. The reward: it starts at the \
               live edge, so its latency is low from the first frame.",
        watch: ChartKind::Startup,
        apply: || {
            let mut s = base("obs-default");
            s.name = "tour: no GOP cache".into();
            s.encoder.keyframe_interval_frames = (8.0 * s.encoder.fps) as u32;
            s.players.join_at_s = 13.0;
            s.server.gop_cache = false;
            s
        },
        latency: LatencyOptions::DEFAULT,
    },
    TourStep {
        title: "4. Add 1 % packet loss",
        text: "TCP delivers bytes in order, so one lost packet holds back everything behind it \
               until it is retransmitted (at least one round trip; a 200 ms timeout when the loss \
               cannot be detected by duplicate ACKs). Watch spikes in the uplink line, and the \
               player's buffer absorb them (or not).",
        watch: ChartKind::Latency,
        apply: || {
            let mut s = base("obs-default");
            s.name = "tour: 1% loss".into();
            s.uplink.loss = sim_core::net::LossConfig::Bernoulli { p: 0.01 };
            s
        },
        latency: UPLINK_LINE,
    },
    TourStep {
        title: "5. The low-latency preset",
        text: "Everything turned for latency: x264 zerolatency, a VBV of 4 frames, TCP_NODELAY on \
               both sides, no GOP cache, a 100 ms player buffer with catch-up. Compare the stacked \
               breakdown with the OBS defaults: the encoder and player stages shrink most.",
        watch: ChartKind::Breakdown,
        apply: || base("low-latency"),
        latency: LatencyOptions::DEFAULT,
    },
];

impl LatencyOptions {
    pub const DEFAULT: LatencyOptions = LatencyOptions {
        video: true,
        audio: true,
        stages: [false; 6],
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_a_valid_scenario() {
        for step in TOUR {
            let s = (step.apply)();
            assert_eq!(s.check(), vec![], "{}", step.title);
        }
    }
}
