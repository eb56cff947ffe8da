//! `rtmp-lab simulate` and `rtmp-lab seed`, run as a user would.

use e2e::{run, stderr, stdout};

#[test]
fn simulate_a_preset_prints_the_summary_and_writes_json_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("t.json");
    let svg = dir.path().join("t.svg");
    let o = run(&[
        "simulate",
        "--preset",
        "obs-default",
        "--duration",
        "15",
        "--out",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "scenario obs-default",
        "glass-to-glass",
        "start-up",
        "first frame shown",
        "drops (probe)",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let frames = trace["frames"].as_array().unwrap();
    // 15 s of 30 fps video plus 48 kHz/1024 audio.
    let video = frames.iter().filter(|f| f["kind"] == "video").count();
    let audio = frames.iter().filter(|f| f["kind"] == "audio").count();
    assert_eq!(video, 450, "video frames");
    assert!((700..=705).contains(&audio), "audio frames {audio}");
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.contains("latency (ms)"));
}

#[test]
fn csv_output_and_same_seed_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    for p in [&a, &b] {
        let o = run(&[
            "simulate",
            "--preset",
            "mobile-3g",
            "--duration",
            "8",
            "--seed",
            "42",
            "--out",
            p.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let ta = std::fs::read(&a).unwrap();
    assert_eq!(ta, std::fs::read(&b).unwrap());
    let text = String::from_utf8(ta).unwrap();
    assert!(text.starts_with("kind,index,frame_type,keyframe,size_bytes"));
    assert!(text.lines().count() > 600);
}

#[test]
fn a_scenario_file_round_trips_through_print_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["simulate", "--preset", "twitch", "--print-scenario"]);
    assert!(o.status.success());
    let toml = stdout(&o);
    assert!(toml.contains("keyframe_interval_frames = 120"));
    let path = dir.path().join("twitch.toml");
    std::fs::write(&path, &toml).unwrap();
    let o = run(&[
        "simulate",
        "--scenario",
        path.to_str().unwrap(),
        "--duration",
        "5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["scenario"], "twitch");
    assert_eq!(summary["video_frames"], 300);
}

#[test]
fn bad_scenarios_fail_with_every_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[encoder]\nkeyframe_interval_frames = 0\nfps = -3\n[uplink.loss]\nmodel = \"bernoulli\"\np = 2\n",
    )
    .unwrap();
    let o = run(&["simulate", "--scenario", path.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    for needle in [
        "encoder.keyframe_interval_frames",
        "encoder.fps",
        "uplink.loss.p",
        "bad.toml",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    let o = run(&["simulate", "--preset", "nope"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("obs-default"), "{}", stderr(&o));
    let o = run(&["simulate", "--preset", "lan", "--duration", "-1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("duration_s"));
}

#[test]
fn seed_audit_text_and_json() {
    let o = run(&["seed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in ["58.29", "2.633", "Nagle", "Fast Open", "AVC-DPCM"] {
        assert!(text.contains(needle), "{needle:?} missing from the audit");
    }
    let o = run(&["seed", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v.is_object());
}

#[test]
fn help_documents_every_option() {
    let o = run(&["simulate", "--help"]);
    let h = stdout(&o);
    for opt in [
        "--preset",
        "--scenario",
        "--duration",
        "--seed",
        "--out",
        "--plot",
        "--print-scenario",
    ] {
        assert!(h.contains(opt), "{opt} missing from --help");
    }
}
