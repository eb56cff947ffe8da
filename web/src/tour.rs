//! The guided tour: a few steps, each setting the scenario and saying what to watch. Each step
//! starts from a preset, so the steps can be taken in any order and repeated.

use crate::chart_data::STAGE_COUNT;
use crate::charts::{ChartKind, LatencyOptions};
use sim_core::scenario::{preset, Scenario};
use sim_core::trace::Stage;

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

/// Only the publisher's socket and the uplink network: their tens of ms would vanish beside
/// seconds of glass-to-glass.
const UPLINK_LINE: LatencyOptions = LatencyOptions::only_stages(&[Stage::Socket, Stage::Network]);

pub static TOUR: &[TourStep] = &[
    TourStep {
        title: "1. Nagle's algorithm",
        text: "OBS's librtmp leaves Nagle's algorithm on. A frame is rarely a whole number of TCP \
               segments, so its last small segment waits until the server has acknowledged the \
               data before it, and the server delays its ACKs. The latency chart shows only the \
               publisher's socket and network stages: with Nagle on, every frame pays that wait \
               (in the network line: the frame's first bytes have left). Tick \"Publisher \
               TCP_NODELAY\" (TCP group) and watch the network line drop by about 20 ms. \
               Glass-to-glass does not move: the player's 1 s buffer absorbs it.",
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
        title: "2. An 8-second keyframe interval, GOP cache on",
        text: "A player can start decoding only at a keyframe. Keyframes here come every 8 s and \
               the player joins 5 s after one. The GOP cache sends the last 5 s of the stream at \
               once, so the player starts quickly (start-up timeline), but 5 s behind the live \
               edge, and without catch-up it stays there: see glass-to-glass above the charts. \
               Drag the keyframe interval down to 60 frames (2 s) and watch the latency fall.",
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
        text: "Same stream, no GOP cache (nginx-rtmp has none). The joining player now gets no \
               video until the next keyframe: watch the red \"waiting for a keyframe\" bar in the \
               start-up timeline, seconds long. The reward: it starts near the live edge, so its \
               glass-to-glass latency is far lower.",
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
        text: "TCP delivers bytes in order, so a lost packet holds back everything behind it \
               until it is retransmitted, and each loss halves the sending rate. At 1 % loss and \
               a 40 ms RTT, TCP's throughput bound (Mathis: 1.22·MSS / (RTT·√p) ≈ 3.5 Mb/s) is \
               below the 6 Mb/s stream: the sender's queue grows until OBS's frame dropper steps \
               in. Watch the socket line (frames waiting behind earlier ones) climb to hundreds of \
               ms, and the frames lost.",
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
               both sides, no GOP cache, 1 s keyframes, a 100 ms player buffer with catch-up. \
               Glass-to-glass falls from seconds to a few hundred ms; the stacked breakdown shows \
               where the rest goes.",
        watch: ChartKind::Breakdown,
        apply: || base("low-latency"),
        latency: LatencyOptions::DEFAULT,
    },
];

impl LatencyOptions {
    pub const DEFAULT: LatencyOptions = LatencyOptions {
        video: true,
        audio: true,
        stages: [false; STAGE_COUNT],
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
