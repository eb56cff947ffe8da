//! Engine tests: determinism, physical lower bounds, and the effects the lab teaches.

use super::*;
use crate::scenario::preset;
use crate::server::MediaKind;
use crate::trace::{Stage, Trace};

fn short(name: &str, secs: f64) -> Scenario {
    let mut s = preset(name).unwrap();
    s.duration_s = secs;
    s
}

fn p50(t: &Trace, stage: Stage, kind: MediaKind) -> f64 {
    t.stage_latency(stage, kind)
        .unwrap_or_else(|| panic!("no {stage:?} latency for {kind:?}"))
        .p50
}

#[test]
fn same_seed_same_trace_bit_for_bit() {
    let s = short("mobile-3g", 15.0);
    let a = Engine::run(&s).to_json();
    let b = Engine::run(&s).to_json();
    assert_eq!(a, b);
    let mut s2 = s.clone();
    s2.seed += 1;
    assert_ne!(a, Engine::run(&s2).to_json());
}

#[test]
fn every_frame_is_accounted_for() {
    for name in crate::scenario::PRESET_NAMES {
        let t = Engine::run(&short(name, 12.0));
        assert!(!t.frames.is_empty(), "{name}");
        for f in &t.frames {
            // Each frame was either shown or dropped somewhere, never both, never neither.
            assert!(
                f.played_us.is_some() != f.dropped.is_some(),
                "{name}: frame {f:?}"
            );
        }
    }
}

#[test]
fn stages_are_ordered_and_never_beat_propagation() {
    // Jitter has netem's semantics (D ± J), so the floor of a path is D − J: check both a
    // jittered path against D − J and a jitter-free one against D itself.
    let mut s = short("obs-default", 20.0);
    s.downlink.jitter.ms = 0.0;
    let up = Micros::from_ms_f64(s.uplink.propagation_ms - s.uplink.jitter.ms);
    let down = Micros::from_ms_f64(s.downlink.propagation_ms);
    let t = Engine::run(&s);
    let mut checked = 0;
    for f in &t.frames {
        let seq = [
            f.captured_us,
            f.capture_done_us,
            f.encoded_us,
            f.sent_us,
            f.first_departure_us,
            f.server_arrival_us,
            f.server_departure_us,
            f.player_arrival_us,
            f.decode_start_us,
            f.played_us,
        ];
        let known: Vec<Micros> = seq.iter().flatten().copied().collect();
        assert!(known.windows(2).all(|w| w[0] <= w[1]), "{f:?}");
        if let (Some(sent), Some(arr)) = (f.sent_us, f.server_arrival_us) {
            assert!(arr >= sent + up, "uplink faster than light: {f:?}");
        }
        if let (Some(dep), Some(arr)) = (f.server_departure_us, f.player_arrival_us) {
            assert!(arr >= dep + down, "downlink faster than light: {f:?}");
            checked += 1;
        }
    }
    assert!(checked > 500, "only {checked} frames reached the player");
}

#[test]
fn pipeline_stages_sum_exactly_to_glass_to_glass() {
    // Every preset, every played frame: the
    // nine stages chain without gap or overlap, each is non-negative, and their sum in whole
    // microseconds is glass-to-glass.
    for name in crate::scenario::PRESET_NAMES {
        let t = Engine::run(&short(name, 12.0));
        let mut played = 0;
        for f in t.frames.iter().filter(|f| f.played_us.is_some()) {
            played += 1;
            let mut sum = 0u64;
            for st in Stage::PIPELINE {
                let (a, b) = st
                    .span(f)
                    .unwrap_or_else(|| panic!("{name}: {st:?} missing in {f:?}"));
                assert!(b >= a, "{name}: {st:?} negative in {f:?}");
                sum += (b - a).0;
            }
            let (a, b) = Stage::GlassToGlass.span(f).unwrap();
            assert_eq!(sum, (b - a).0, "{name}: {f:?}");
        }
        assert!(played > 100, "{name}: only {played} frames played");
    }
    // The pipeline's index table agrees with the list.
    for (i, st) in Stage::PIPELINE.iter().enumerate() {
        assert_eq!(st.pipeline_index(), Some(i));
    }
    assert_eq!(Stage::ALL[..Stage::PIPELINE_LEN], Stage::PIPELINE);
}

#[test]
fn capture_and_decode_stages_follow_their_settings() {
    let mut s = short("obs-default", 10.0);
    s.encoder.capture_delay_frames = 2.0;
    s.player.decode_ms = 50.0;
    let t = Engine::run(&s);
    // Two frame periods at 30 fps, within the µs rounding.
    let cap = p50(&t, Stage::Capture, MediaKind::Video);
    assert!((cap - 66.667).abs() < 0.01, "{cap}");
    // Audio capture is the frame's duration: 1024 samples at 48 kHz.
    let cap_a = p50(&t, Stage::Capture, MediaKind::Audio);
    assert!((cap_a - 21.333).abs() < 0.01, "{cap_a}");
    // Decode: 50 ms, plus pts − dts for reordered video (0 for the B-frames).
    assert!((p50(&t, Stage::Decode, MediaKind::Audio) - 50.0).abs() < 1e-9);
    let dec = t.stage_latency(Stage::Decode, MediaKind::Video).unwrap();
    assert!(dec.p50 >= 50.0 && dec.max <= 50.0 + 5.0 * 33.4, "{dec:?}");
}

#[test]
fn nagle_holds_single_segment_frames_in_the_socket() {
    // Audio frames are one sub-MSS segment: with Nagle, each may be held until the ACK of earlier
    // data returns or the next write fills a segment, and that hold is socket time.
    let on = short("obs-default", 15.0);
    let mut off = on.clone();
    off.publisher_tcp.nodelay = true;
    let mean = |s: &Scenario| {
        let t = Engine::run(s);
        t.stage_latency(Stage::Socket, MediaKind::Audio)
            .unwrap()
            .mean
    };
    let (with_nagle, without) = (mean(&on), mean(&off));
    assert!(with_nagle > 2.0 * without, "{with_nagle} vs {without}");
}

#[test]
fn more_rtt_never_means_less_latency() {
    let mut last = 0.0;
    for prop in [0.0, 10.0, 40.0, 100.0] {
        let mut s = short("lan", 10.0);
        s.uplink.propagation_ms = prop;
        s.downlink.propagation_ms = prop;
        let t = Engine::run(&s);
        let d = p50(&t, Stage::Delivery, MediaKind::Video);
        assert!(d >= last, "RTT {} ms gave p50 {d} < {last}", 2.0 * prop);
        // Two crossings of the one-way delay, at least.
        assert!(d >= 2.0 * prop, "p50 {d} below 2×{prop}");
        last = d;
    }
}

#[test]
fn nagle_adds_latency_on_the_publisher_socket() {
    let mut on = short("obs-default", 20.0);
    on.publisher_tcp.nodelay = false;
    let mut off = on.clone();
    off.publisher_tcp.nodelay = true;
    let uplink = |s: &Scenario| {
        let t = Engine::run(s);
        p50(&t, Stage::Socket, MediaKind::Video) + p50(&t, Stage::Network, MediaKind::Video)
    };
    let with_nagle = uplink(&on);
    let without = uplink(&off);
    assert!(
        with_nagle > without,
        "Nagle {with_nagle} ms vs NODELAY {without} ms"
    );
}

#[test]
fn gop_cache_starts_playback_sooner_than_waiting_for_a_keyframe() {
    let mut cached = short("obs-default", 25.0);
    cached.encoder.keyframe_interval_frames = 240; // 8 s at 30 fps
    cached.encoder.scene_cuts_per_min = 0.0; // no early keyframe from a scene cut
    cached.players.join_at_s = 5.0; // mid-GOP
    let mut uncached = cached.clone();
    uncached.server.gop_cache = false;
    let a = Engine::run(&cached).summary();
    let b = Engine::run(&uncached).summary();
    let ja = a.join_to_first_frame_ms.expect("cached player starts");
    let jb = b.join_to_first_frame_ms.expect("uncached player starts");
    assert!(
        jb > ja + 1000.0,
        "join→first frame: GOP cache {ja} ms, without {jb} ms"
    );
    // Without the cache the player skipped frames waiting for the keyframe.
    assert!(b.drops.waiting_for_keyframe > 0);
}

#[test]
fn low_latency_preset_beats_obs_defaults_glass_to_glass() {
    let ll = Engine::run(&short("low-latency", 20.0));
    let obs = Engine::run(&short("obs-default", 20.0));
    let a = p50(&ll, Stage::GlassToGlass, MediaKind::Video);
    let b = p50(&obs, Stage::GlassToGlass, MediaKind::Video);
    assert!(a < b / 2.0, "low-latency {a} ms vs obs-default {b} ms");
}

#[test]
fn the_seed_example_overloads_every_player() {
    let t = Engine::run(&short("seed-example", 8.0));
    let sum = t.summary();
    // A 100 Mb/s stream into 1 Mb/s players: the server's queues must drop or disconnect.
    assert!(
        sum.audience.frames_dropped_server > 0 || sum.audience.disconnected > 0,
        "{:?}",
        sum.audience
    );
    assert_eq!(sum.audience.players, 100);
}

#[test]
fn batching_arrivals_changes_nothing() {
    // Players never interact, so running each through a batch of arrivals before the next
    // player gives the trace of one arrival at a time in global time order (batch of 1):
    // an overloaded audience with server drops and full sockets, write coalescing, players
    // joining one after another, Nagle on the server's sockets, a lossy downlink.
    let mut seed = short("seed-example", 6.0);
    seed.players.count = 12;
    let mut coalesced = short("obs-default", 12.0);
    coalesced.server.coalesce_ms = 120.0;
    coalesced.players.count = 5;
    coalesced.players.join_spread_s = 4.0;
    coalesced.server_tcp.nodelay = false;
    let mut lossy = short("mobile-3g", 12.0);
    lossy.downlink.loss = crate::net::LossConfig::Bernoulli { p: 0.02 };
    lossy.players.count = 4;
    lossy.players.join_spread_s = 3.0;
    for s in [seed, coalesced, lossy] {
        let run = |batch: usize| {
            let mut e = Engine::new(&s);
            e.batch_max = batch;
            while !e.step(usize::MAX).done {}
            e.into_trace().to_json()
        };
        let reference = run(1);
        for batch in [2, 7, BATCH] {
            assert!(run(batch) == reference, "{}: batch {batch} differs", s.name);
        }
    }
}

#[test]
fn stepping_in_slices_gives_the_same_trace() {
    let s = short("twitch", 8.0);
    let whole = Engine::run(&s).to_json();
    let mut e = Engine::new(&s);
    let mut steps = 0;
    while !e.step(20).done {
        steps += 1;
    }
    assert!(steps > 10);
    assert_eq!(e.into_trace().to_json(), whole);
}

#[test]
fn compare_with_itself_is_exact_and_with_a_shifted_copy_finds_the_shift() {
    let t = Engine::run(&short("lan", 6.0));
    let c = crate::trace::compare(&t, &t);
    let d = c
        .stages
        .iter()
        .find(|s| s.stage == Stage::Delivery && s.kind == MediaKind::Video)
        .unwrap();
    assert_eq!(d.abs_error.unwrap().max, 0.0);
    assert_eq!(c.unmatched_measured, 0);

    let mut m = t.clone();
    m.source = "measured".into();
    for f in &mut m.frames {
        if let Some(a) = f.player_arrival_us.as_mut() {
            *a += Micros::from_ms(5);
        }
    }
    let c = crate::trace::compare(&t, &m);
    let d = c
        .stages
        .iter()
        .find(|s| s.stage == Stage::Delivery && s.kind == MediaKind::Video)
        .unwrap();
    assert!((d.bias_ms + 5.0).abs() < 1e-9, "bias {}", d.bias_ms);
    assert!(d.p50_rel_error.unwrap() < 0.0);
}

#[test]
fn csv_has_one_row_per_frame() {
    let t = Engine::run(&short("lan", 3.0));
    let csv = t.frames_csv();
    assert_eq!(csv.lines().count(), t.frames.len() + 1);
    assert!(csv.starts_with("kind,index,frame_type"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]

        #[test]
        fn same_seed_same_trace(seed in any::<u64>(), which in 0usize..6) {
            let mut s = short(crate::scenario::PRESET_NAMES[which], 4.0);
            s.seed = seed;
            s.players.count = s.players.count.min(5);
            prop_assert_eq!(Engine::run(&s).to_json(), Engine::run(&s).to_json());
        }

        #[test]
        fn latency_grows_with_added_rtt(
            seed in any::<u64>(),
            base_ms in 0.0f64..40.0,
            extra_ms in 5.0f64..80.0,
            jitter_ms in 0.0f64..5.0,
        ) {
            // With NODELAY: under Nagle + delayed ACK a longer path can pair a held segment with
            // the next one and get it ACKed sooner — real, and the reason this property (from
            // issue #2) is stated for NODELAY sockets. See net.rs for the counter-example.
            let mut s = short("obs-default", 8.0);
            s.publisher_tcp.nodelay = true;
            s.server_tcp.nodelay = true;
            s.seed = seed;
            s.uplink.propagation_ms = base_ms;
            s.downlink.propagation_ms = base_ms;
            s.uplink.jitter.ms = jitter_ms;
            s.downlink.jitter.ms = jitter_ms;
            let mut slower = s.clone();
            slower.uplink.propagation_ms += extra_ms / 2.0;
            slower.downlink.propagation_ms += extra_ms / 2.0;
            let a = p50(&Engine::run(&s), Stage::Delivery, MediaKind::Video);
            let b = p50(&Engine::run(&slower), Stage::Delivery, MediaKind::Video);
            prop_assert!(b >= a, "RTT +{extra_ms} ms: p50 {a} → {b}");
        }
    }
}
