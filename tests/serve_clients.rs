//! `rtmp-lab serve` with the real clients people use: FFmpeg publishing and playing, rtmpdump
//! (librtmp, the lineage of OBS's RTMP output) playing, GStreamer's rtmp2sink publishing and
//! rtmp2src playing, and the HTTP API describing a real encoder's stream.
//!
//! A missing client fails the test with the Debian package to install (`cargo xtask test`
//! installs them). Every client runs under a guard that kills it on drop, and every wait is
//! bounded.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{flv, http, tools, Proc, Server};

fn require_ffmpeg() {
    tools::require("ffmpeg", "ffmpeg");
    tools::require("ffprobe", "ffmpeg");
}

/// ffmpeg publishing a synthetic H.264 + AAC stream (`-re`, so at real time) for `seconds`.
fn ffmpeg_publisher(url: &str, size: &str, seconds: u32, dir: &Path) -> Proc {
    Proc::spawn(
        "ffmpeg-publish",
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "warning",
            "-re",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "60",
            "-b:v",
            "2500k",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-t",
            &seconds.to_string(),
            "-f",
            "flv",
            url,
        ]),
        dir,
    )
}

/// `ffmpeg -v error -i file -f null -`: the decoder's complaints (empty when clean).
fn decode_errors(file: &Path) -> String {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg to decode");
    let mut s = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        s.push_str(&format!("\n(ffmpeg exited with {})", o.status));
    }
    s
}

/// Checks a recording: (failures) — video h264 `width`x`height`, audio aac, at least
/// `min_frames` video frames, first video packet a keyframe, decodes without errors.
fn check_recording(file: &Path, width: u64, height: u64, min_frames: u64) -> Vec<String> {
    let mut failures = Vec::new();
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return vec![format!("{} is empty or missing", file.display())];
    }
    let streams = tools::ffprobe_json(file, &["-show_streams"]);
    let streams = streams["streams"].as_array().cloned().unwrap_or_default();
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    let audio = streams.iter().find(|s| s["codec_type"] == "audio");
    match video {
        Some(v) => {
            if v["codec_name"] != "h264" || v["width"] != width || v["height"] != height {
                failures.push(format!(
                    "video stream is {} {}x{}, expected h264 {width}x{height}",
                    v["codec_name"], v["width"], v["height"]
                ));
            }
        }
        None => failures.push(format!("no video stream in the recording: {streams:?}")),
    }
    match audio {
        Some(a) if a["codec_name"] == "aac" => {}
        Some(a) => failures.push(format!("audio codec {}, expected aac", a["codec_name"])),
        None => failures.push(format!("no audio stream in the recording: {streams:?}")),
    }
    let counted = tools::ffprobe_json(
        file,
        &[
            "-count_frames",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=nb_read_frames",
        ],
    );
    let frames: u64 = counted["streams"][0]["nb_read_frames"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    eprintln!(
        "{}: {size} bytes, {frames} video frames, first video packet flags below",
        file.display()
    );
    if frames < min_frames {
        failures.push(format!(
            "{frames} video frames decoded, expected at least {min_frames}"
        ));
    }
    let first = tools::ffprobe_json(
        file,
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "packet=flags,pts_time",
            "-read_intervals",
            "%+#1",
        ],
    );
    let flags = first["packets"][0]["flags"].as_str().unwrap_or("");
    if !flags.starts_with('K') {
        failures.push(format!(
            "the first video packet is not a keyframe (flags {flags:?}): a joining player \
             must start at a keyframe"
        ));
    }
    if let Ok(f) = flv::read(file) {
        let repeated = f.repeated_tags();
        if !repeated.is_empty() {
            failures.push(format!(
                "messages delivered twice (tag index, timestamp): {repeated:?}"
            ));
        }
    }
    let errors = decode_errors(file);
    if !errors.trim().is_empty() {
        failures.push(format!("decoding the recording printed errors:\n{errors}"));
    }
    failures
}

/// Panics with every failure, the clients' output and the server's log; the test's directory
/// (recordings, logs) is kept for inspection.
fn report(failures: &[String], procs: &[&Proc], server: &Server, dir: tempfile::TempDir) {
    if failures.is_empty() {
        return;
    }
    let kept = dir.keep();
    let mut msg = format!("(recordings and logs kept in {})\n", kept.display());
    for f in failures {
        msg.push_str(&format!("- {f}\n"));
    }
    for p in procs {
        msg.push_str(&format!("--- {} output ---\n{}\n", p.name, p.output()));
    }
    msg.push_str(&format!("--- server log ---\n{}", server.logs(6000)));
    panic!("{} check(s) failed:\n{msg}", failures.len());
}

#[test]
fn ffmpeg_publishes_720p30_and_ffmpeg_records_it_and_the_api_describes_it() {
    require_ffmpeg();
    let mut server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("live", "e2e");
    let t0 = Instant::now();
    let mut publisher = ffmpeg_publisher(&url, "1280x720", 8, dir.path());
    let mut failures = Vec::new();
    if !server.wait_published("live", "e2e", Duration::from_secs(10)) {
        failures.push("live/e2e never appeared in /api/streams with a publisher".to_string());
        report(&failures, &[&publisher], &server, dir);
        unreachable!();
    }
    std::thread::sleep(Duration::from_secs(1).saturating_sub(t0.elapsed()));
    let out = dir.path().join("out.flv");
    let mut player = Proc::spawn(
        "ffmpeg-play",
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "warning",
                "-y",
                "-i",
                &url,
                "-t",
                "5",
                "-c",
                "copy",
            ])
            .arg(&out),
        dir.path(),
    );

    // The HTTP API while both run: from 4.5 s into the stream, once two keyframe intervals
    // have been seen (later if the machine is slow; the publisher stops at 8 s).
    std::thread::sleep(Duration::from_millis(4500).saturating_sub(t0.elapsed()));
    while t0.elapsed() < Duration::from_millis(7000) {
        let ready = http::get(server.http, "/api/streams/live/e2e")
            .ok()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .is_some_and(|d| d["ingest"]["keyframes"].as_u64().unwrap_or(0) >= 3);
        if ready {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match http::get(server.http, "/api/streams") {
        Ok(r) if r.status == 200 => {
            let v = r.json();
            eprintln!("/api/streams at {:?}: {v}", t0.elapsed());
            let s = v
                .as_array()
                .and_then(|a| a.iter().find(|s| s["app"] == "live" && s["key"] == "e2e"))
                .cloned();
            match s {
                None => failures.push(format!("/api/streams lacks live/e2e: {v}")),
                Some(s) => {
                    let ing = &s["ingest"];
                    let mut check = |ok: bool, what: &str| {
                        if !ok {
                            failures.push(format!("/api/streams live/e2e: {what}: {s}"));
                        }
                    };
                    check(ing["video_codec"] == "avc1", "video_codec should be avc1");
                    check(ing["audio_codec"] == "mp4a", "audio_codec should be mp4a");
                    check(ing["width"] == 1280, "width should be 1280");
                    check(ing["height"] == 720, "height should be 720");
                    let fps = ing["fps"].as_f64().unwrap_or(0.0);
                    check((27.0..=33.0).contains(&fps), "fps should be about 30");
                    let gop = ing["keyframe_interval_s"].as_f64().unwrap_or(0.0);
                    check(
                        (1.8..=2.2).contains(&gop),
                        "keyframe_interval_s should be about 2 (-g 60 at 30 fps)",
                    );
                    let vkbps = ing["video_kbps"].as_f64().unwrap_or(0.0);
                    check(
                        (500.0..=10_000.0).contains(&vkbps),
                        "video_kbps should be near the 2500k target",
                    );
                    check(
                        ing["video_frames"].as_u64().unwrap_or(0) >= 60,
                        "video_frames counted",
                    );
                    check(
                        ing["audio_frames"].as_u64().unwrap_or(0) >= 100,
                        "audio_frames counted",
                    );
                    check(
                        s["publisher"]["encoder"]
                            .as_str()
                            .is_some_and(|e| e.contains("Lavf")),
                        "publisher.encoder should come from ffmpeg's onMetaData (Lavf…)",
                    );
                    check(s["players"] == 1, "players should be 1 (the ffmpeg player)");
                }
            }
        }
        Ok(r) => failures.push(format!("/api/streams answered {}: {}", r.status, r.body)),
        Err(e) => failures.push(format!("/api/streams: {e}")),
    }
    match http::get(server.http, "/api/streams/live/e2e") {
        Ok(r) if r.status == 200 => {
            let d = r.json();
            let frames = d["frames"].as_array().map(Vec::len).unwrap_or(0);
            if frames == 0 {
                failures.push(format!(
                    "/api/streams/live/e2e has no per-frame record: {d}"
                ));
            }
        }
        Ok(r) => failures.push(format!("/api/streams/live/e2e answered {}", r.status)),
        Err(e) => failures.push(format!("/api/streams/live/e2e: {e}")),
    }
    match http::get(server.http, "/metrics") {
        Ok(r) => {
            if r.status != 200 || !r.body.lines().any(|l| l.starts_with("rtmp_lab_")) {
                failures.push(format!(
                    "/metrics ({}) has no rtmp_lab_ samples:\n{}",
                    r.status, r.body
                ));
            }
            if !r.body.contains("rtmp_lab_stream_players{") {
                failures.push("/metrics lacks per-stream rtmp_lab_stream_players".into());
            }
        }
        Err(e) => failures.push(format!("/metrics: {e}")),
    }
    match http::get(server.http, "/healthz") {
        Ok(r) if r.status == 200 && r.body.trim() == "ok" => {}
        Ok(r) => failures.push(format!("/healthz answered {} {:?}", r.status, r.body)),
        Err(e) => failures.push(format!("/healthz: {e}")),
    }

    match player.wait_or_kill(Duration::from_secs(25)) {
        Some(s) if s.success() => {}
        Some(s) => failures.push(format!("the ffmpeg player exited with {s}")),
        None => failures
            .push("the ffmpeg player did not finish its 5 s recording within 25 s (killed)".into()),
    }
    match publisher.wait_or_kill(Duration::from_secs(20)) {
        Some(s) if s.success() => {}
        Some(s) => failures.push(format!("the ffmpeg publisher exited with {s}")),
        None => failures.push("the ffmpeg publisher did not finish its 8 s (killed)".into()),
    }
    if failures.is_empty() {
        // 5 s at 30 fps is 150 frames.
        failures.extend(check_recording(&out, 1280, 720, 140));
    }
    server.assert_alive("ffmpeg publish and play");
    report(&failures, &[&publisher, &player], &server, dir);
}

#[test]
fn rtmpdump_plays_a_stream_published_by_ffmpeg() {
    require_ffmpeg();
    tools::require("rtmpdump", "rtmpdump");
    let mut server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("live", "rtmpdump");
    let mut publisher = ffmpeg_publisher(&url, "320x240", 10, dir.path());
    let mut failures = Vec::new();
    if !server.wait_published("live", "rtmpdump", Duration::from_secs(10)) {
        failures.push("live/rtmpdump never got a publisher".to_string());
        report(&failures, &[&publisher], &server, dir);
        unreachable!();
    }
    std::thread::sleep(Duration::from_millis(1000));
    let out = dir.path().join("rtmpdump.flv");
    // -v live, -B 4: stop 4 s into the stream.
    let mut player = Proc::spawn(
        "rtmpdump",
        Command::new("rtmpdump")
            .args(["-r", &url, "-v", "-B", "4", "-o"])
            .arg(&out),
        dir.path(),
    );
    let status = player.wait_or_kill(Duration::from_secs(15));
    if status.is_none() {
        failures.push("rtmpdump did not stop within 15 s (killed)".into());
    }
    let _ = publisher.wait_or_kill(Duration::from_secs(15));
    match flv::read(&out) {
        Err(e) => failures.push(format!("rtmpdump's output: {e}")),
        Ok(f) => {
            let video: Vec<&flv::Tag> = f.video().collect();
            let frames: Vec<&flv::Tag> = f.video_frames().collect();
            eprintln!(
                "rtmpdump: {} video frames, {} audio tags, {} tags in all",
                frames.len(),
                f.audio().count(),
                f.tags.len()
            );
            if !video.first().is_some_and(|t| t.is_sequence_header()) {
                failures.push("the first video tag is not the AVC sequence header".into());
            }
            if !frames.first().is_some_and(|t| t.is_video_keyframe()) {
                failures.push("the first video frame is not a keyframe".into());
            }
            // 4 s at 30 fps = 120 (allow for the stop rounding).
            if frames.len() < 90 {
                failures.push(format!(
                    "{} video frames in rtmpdump's recording, expected at least 90",
                    frames.len()
                ));
            }
            if f.audio().count() < 100 {
                failures.push(format!("{} audio tags", f.audio().count()));
            }
            let repeated = f.repeated_tags();
            if !repeated.is_empty() {
                failures.push(format!(
                    "rtmpdump: messages delivered twice (tag index, timestamp): {repeated:?}"
                ));
            }
            if !f.tags.iter().any(|t| t.tag_type == 18) {
                failures.push("no onMetaData (script tag) in rtmpdump's recording".into());
            }
        }
    }
    if failures.is_empty() {
        let errors = decode_errors(&out);
        if !errors.trim().is_empty() {
            failures.push(format!("decoding rtmpdump's recording:\n{errors}"));
        }
    }
    server.assert_alive("rtmpdump");
    report(&failures, &[&publisher, &player], &server, dir);
}

#[test]
fn gstreamer_rtmp2sink_publishes_and_rtmp2src_plays() {
    tools::require_gst_element("rtmp2sink", "gstreamer1.0-plugins-bad");
    tools::require_gst_element("rtmp2src", "gstreamer1.0-plugins-bad");
    tools::require_gst_element("flvmux", "gstreamer1.0-plugins-good");
    tools::require_gst_element("x264enc", "gstreamer1.0-plugins-ugly");
    tools::require_gst_element("videotestsrc", "gstreamer1.0-plugins-base");
    tools::require_gst_element("avenc_aac", "gstreamer1.0-libav");
    let mut server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("live", "gst");
    // 6 s of live 320x240@30 H.264 (keyframe every 30) + AAC.
    let publish = format!(
        "videotestsrc is-live=true num-buffers=180 ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency key-int-max=30 speed-preset=veryfast ! h264parse ! queue \
         ! flvmux name=m streamable=true ! rtmp2sink location={url} \
         audiotestsrc is-live=true num-buffers=280 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2 \
         ! audioconvert ! avenc_aac ! aacparse ! queue ! m."
    );
    let mut publisher = Proc::spawn(
        "gst-publish",
        Command::new("gst-launch-1.0")
            .arg("-e")
            .args(publish.split_whitespace()),
        dir.path(),
    );
    let mut failures = Vec::new();
    if !server.wait_published("live", "gst", Duration::from_secs(10)) {
        failures.push("live/gst never got a publisher (rtmp2sink)".to_string());
        report(&failures, &[&publisher], &server, dir);
        unreachable!();
    }
    // Join after GStreamer's first second: a live audiotestsrc + avenc_aac start-up can stamp
    // two AAC frames with the same millisecond (seen: 0, 20, 67, 67, 84), which FFmpeg's decode
    // check reports; the GOP cache then starts the player at the keyframe at 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    let out = dir.path().join("gst.flv");
    let play = format!(
        "rtmp2src location={url} ! queue ! filesink location={}",
        out.display()
    );
    let mut player = Proc::spawn(
        "gst-play",
        Command::new("gst-launch-1.0")
            .arg("-e")
            .args(play.split_whitespace()),
        dir.path(),
    );
    match publisher.wait_or_kill(Duration::from_secs(20)) {
        Some(s) if s.success() => {}
        Some(s) => failures.push(format!("gst-launch (rtmp2sink) exited with {s}")),
        None => failures.push("gst-launch (rtmp2sink) did not finish within 20 s".into()),
    }
    // rtmp2src ends at the publisher's unpublish (EOS) or keeps waiting: stop it (SIGINT + -e
    // makes gst-launch send EOS so filesink flushes).
    if player.wait_timeout(Duration::from_secs(3)).is_none() {
        player.interrupt_and_wait(Duration::from_secs(5));
    }
    match flv::read(&out) {
        Err(e) => failures.push(format!("rtmp2src's output: {e}")),
        Ok(f) => {
            let frames: Vec<&flv::Tag> = f.video_frames().collect();
            eprintln!(
                "rtmp2src: {} video frames, {} audio tags",
                frames.len(),
                f.audio().count()
            );
            if !f.video().next().is_some_and(|t| t.is_sequence_header()) {
                failures
                    .push("rtmp2src: the first video tag is not the AVC sequence header".into());
            }
            if !frames.first().is_some_and(|t| t.is_video_keyframe()) {
                failures.push("rtmp2src: the first video frame is not a keyframe".into());
            }
            let repeated = f.repeated_tags();
            if !repeated.is_empty() {
                failures.push(format!(
                    "rtmp2src: messages delivered twice (tag index, timestamp): {repeated:?}"
                ));
            }
            // Joined 1.5 s after the stream appeared (GOP from 1 s); the stream lasts 6 s.
            if frames.len() < 120 {
                failures.push(format!(
                    "rtmp2src received {} video frames, expected at least 120 of 180",
                    frames.len()
                ));
            }
            if f.audio().count() < 100 {
                failures.push(format!(
                    "rtmp2src received {} audio tags, expected at least 100",
                    f.audio().count()
                ));
            }
        }
    }
    if failures.is_empty() && tools::on_path("ffmpeg") {
        let errors = decode_errors(&out);
        if !errors.trim().is_empty() {
            failures.push(format!("decoding rtmp2src's recording:\n{errors}"));
        }
    }
    server.assert_alive("GStreamer");
    report(&failures, &[&publisher, &player], &server, dir);
}

#[test]
fn rtmp2src_plays_what_ffmpeg_publishes() {
    // Cross-client: what one library publishes, another plays.
    require_ffmpeg();
    tools::require_gst_element("rtmp2src", "gstreamer1.0-plugins-bad");
    let mut server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("live", "cross");
    let mut publisher = ffmpeg_publisher(&url, "320x240", 6, dir.path());
    let mut failures = Vec::new();
    if !server.wait_published("live", "cross", Duration::from_secs(10)) {
        failures.push("live/cross never got a publisher".to_string());
        report(&failures, &[&publisher], &server, dir);
        unreachable!();
    }
    let out = dir.path().join("cross.flv");
    let play = format!(
        "rtmp2src location={url} ! queue ! filesink location={}",
        out.display()
    );
    let mut player = Proc::spawn(
        "gst-play",
        Command::new("gst-launch-1.0")
            .arg("-e")
            .args(play.split_whitespace()),
        dir.path(),
    );
    std::thread::sleep(Duration::from_secs(3));
    player.interrupt_and_wait(Duration::from_secs(5));
    let _ = publisher.wait_or_kill(Duration::from_secs(10));
    match flv::read(&out) {
        Err(e) => failures.push(format!("rtmp2src's output: {e}")),
        Ok(f) => {
            let frames = f.video_frames().count();
            eprintln!("rtmp2src (ffmpeg's stream): {frames} video frames");
            if frames < 45 {
                failures.push(format!(
                    "rtmp2src got {frames} video frames of ffmpeg's stream in 3 s, expected 45+"
                ));
            }
        }
    }
    server.assert_alive("cross-client");
    report(&failures, &[&publisher, &player], &server, dir);
}
