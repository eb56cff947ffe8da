//! Helpers for the end-to-end tests: find the real `rtmp-lab` binary and run it.
//!
//! The binary is the one cargo built for this workspace (`target/<profile>/rtmp-lab`), or the one
//! named by `RTMP_LAB_BIN`. `cargo xtask test` builds it before running the tests.
//!
//! For `rtmp-lab serve`: [`Server`] (a server on free loopback ports, killed on drop),
//! [`Proc`] (a real client: ffmpeg, rtmpdump, gst-launch), [`rtmp`] (a scripted RTMP client
//! written independently of the server's codec), [`http`], [`flv`] (reading recorded files)
//! and [`tools`] (presence checks that name the package to install).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "support/flv.rs"]
pub mod flv;
#[path = "support/http.rs"]
pub mod http;
#[path = "support/process.rs"]
mod process;
#[path = "support/rtmp.rs"]
pub mod rtmp;
#[path = "support/tools.rs"]
pub mod tools;

pub use process::{free_port, raise_nofile_limit, signal, tail, Proc, Server};

/// Path of the `rtmp-lab` binary under test.
pub fn rtmp_lab_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RTMP_LAB_BIN") {
        return PathBuf::from(p);
    }
    // This test binary lives in target/<profile>/deps/; rtmp-lab in target/<profile>/.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary is in target/<profile>/deps");
    let bin = profile_dir.join(format!("rtmp-lab{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p native-server`), or run `cargo xtask test`, \
         or set RTMP_LAB_BIN",
        bin.display()
    );
    bin
}

/// Runs `rtmp-lab` with `args` and returns its output (panics if it cannot start).
pub fn run(args: &[&str]) -> Output {
    Command::new(rtmp_lab_path())
        .args(args)
        .output()
        .expect("start rtmp-lab")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh stream key for `label` (unique within this process).
pub fn unique_key(label: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A normal session on `addr`: a scripted publisher publishes `live/<fresh key>`, a scripted
/// player plays it, the publisher sends metadata, sequence headers and 30 video frames (a
/// keyframe every 10) with audio, and the player must receive the video sequence header and
/// then the frames in order, starting with a keyframe and ending with the last one, within 5 s.
pub fn check_publish_play(addr: SocketAddr) -> Result<(), String> {
    use rtmp::{classify, Frame};
    let key = unique_key("health");
    let mut publisher =
        rtmp::publisher(addr, "live", &key).map_err(|e| format!("publisher: {e}"))?;
    let mut player = rtmp::player(addr, "live", &key).map_err(|e| format!("player: {e}"))?;
    let send_err = |e: std::io::Error| format!("publisher send: {e}");
    publisher
        .send_data(0, &rtmp::metadata(320.0, 240.0, 30.0))
        .map_err(send_err)?;
    publisher
        .send_video(0, &rtmp::avc_sequence_header())
        .map_err(send_err)?;
    publisher
        .send_audio(0, &rtmp::aac_sequence_header())
        .map_err(send_err)?;
    const FRAMES: u32 = 30;
    for i in 0..FRAMES {
        let ts = i * 33;
        publisher
            .send_video(ts, &rtmp::avc_frame(i % 10 == 0, i, 700))
            .map_err(send_err)?;
        publisher
            .send_audio(ts, &rtmp::aac_frame(i, 60))
            .map_err(send_err)?;
        std::thread::sleep(Duration::from_millis(3));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seq = false;
    let mut markers: Vec<u32> = Vec::new();
    while markers.last() != Some(&(FRAMES - 1)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(m) = player
            .next_media(left)
            .map_err(|e| format!("player: {e} (video frames so far {markers:?})"))?
        else {
            break;
        };
        match classify(&m) {
            Frame::VideoSeq => seq = true,
            Frame::Video { key, marker } => {
                if !seq {
                    return Err(format!(
                        "player got video frame {marker} before the AVC sequence header"
                    ));
                }
                if markers.is_empty() && !key {
                    return Err(format!(
                        "player's first video frame {marker} is not a keyframe"
                    ));
                }
                if markers.last().is_some_and(|&l| marker <= l) {
                    return Err(format!(
                        "video frames out of order: {marker} after {markers:?}"
                    ));
                }
                markers.push(marker);
            }
            _ => {}
        }
    }
    if markers.len() < 20 || markers.last() != Some(&(FRAMES - 1)) {
        return Err(format!(
            "player received video frames {markers:?} within 5 s (sequence header: {seq}); \
             expected most of 0..{FRAMES}, ending with {}",
            FRAMES - 1
        ));
    }
    Ok(())
}
