//! `rtmp-lab bench` against a real `rtmp-lab serve`: 20 players for a few seconds must all
//! connect, keep up, see finite positive latencies, and together receive about 20 times the
//! stream; the report must carry the generator's and (with --server-pid) the server's figures.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{rtmp_lab_path, unique_key, Server};

const PLAYERS: u64 = 20;

fn num(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number in {v}", path.join(".")))
}

#[test]
fn bench_drives_20_players_against_rtmp_lab_serve() {
    let server = Server::start();
    let url = server.url("live", &unique_key("bench"));
    let started = Instant::now();
    let output = Command::new(rtmp_lab_path())
        .args(["bench", "--url", &url, "--players"])
        .arg(PLAYERS.to_string())
        .args([
            "--duration",
            "2",
            "--ramp-per-s",
            "200",
            "--json",
            "--server-pid",
        ])
        .arg(server.pid().to_string())
        .output()
        .expect("run rtmp-lab bench");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "rtmp-lab bench failed ({}):\n{stderr}\n--- server log ---\n{}",
        output.status,
        server.logs(4000)
    );
    assert!(
        elapsed < Duration::from_secs(12),
        "bench took {elapsed:?} for a 2 s window"
    );
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line on stdout:\n{stdout}\n{stderr}"));
    let r: serde_json::Value = serde_json::from_str(line).expect("the JSON line parses");
    let context = format!("report: {line}\ntable:\n{stderr}");

    assert_eq!(num(&r, &["connected"]), PLAYERS as f64, "{context}");
    assert_eq!(num(&r, &["failed"]), 0.0, "{context}");
    assert_eq!(r["all_kept_up"], true, "{context}");
    assert_eq!(num(&r, &["frames_missing_total"]), 0.0, "{context}");
    assert_eq!(num(&r, &["unmatched_frames"]), 0.0, "{context}");

    // 30 fps × 2 s × 20 players, give or take a frame per player at the window's edges.
    let samples = num(&r, &["latency_samples"]);
    assert!(
        (1100.0..=1300.0).contains(&samples),
        "{samples} latency samples\n{context}"
    );
    for q in ["p50", "p99", "max"] {
        let ms = num(&r, &["latency_ms", q]);
        assert!(
            ms.is_finite() && ms > 0.0 && ms < 500.0,
            "latency {q} = {ms} ms\n{context}"
        );
    }
    let first = num(&r, &["first_frame_ms", "p50"]);
    assert!(
        first > 0.0 && first < 1000.0,
        "first frame p50 = {first} ms (GOP cache on)\n{context}"
    );

    // Everyone gets the whole stream: delivered ≈ players × what the publisher sends.
    let stream = num(&r, &["stream_mbps"]);
    let delivered = num(&r, &["delivered_mbps"]);
    assert!(
        (2.3..3.2).contains(&stream),
        "synthetic stream at {stream} Mb/s\n{context}"
    );
    let expected = stream * PLAYERS as f64;
    assert!(
        (delivered - expected).abs() < 0.1 * expected,
        "delivered {delivered:.1} Mb/s, expected ≈ {expected:.1}\n{context}"
    );

    // The generator reports itself, and the server's process was found and measured.
    assert!(num(&r, &["generator", "cpu_pct"]) > 0.0, "{context}");
    assert_eq!(r["generator"]["saturated"], false, "{context}");
    assert!(num(&r, &["server", "cpu_pct"]) > 0.0, "{context}");
    assert!(num(&r, &["server", "peak_rss_kb"]) > 1000.0, "{context}");
    // The human table went to stderr.
    assert!(stderr.contains("kept up"), "{stderr}");
}

#[test]
fn bench_explains_a_bad_url_and_an_unreachable_server() {
    let out = Command::new(rtmp_lab_path())
        .args(["bench", "--url", "http://127.0.0.1/live/x"])
        .output()
        .expect("run rtmp-lab bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rtmp://HOST"), "{err}");

    let port = e2e::free_port();
    let out = Command::new(rtmp_lab_path())
        .args(["bench", "--url", &format!("rtmp://127.0.0.1:{port}/live/x")])
        .output()
        .expect("run rtmp-lab bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not publish"), "{err}");
}
