//! Helpers for the end-to-end tests: find the real `rtmp-lab` binary and run it.
//!
//! The binary is the one cargo built for this workspace (`target/<profile>/rtmp-lab`), or the one
//! named by `RTMP_LAB_BIN`. `cargo xtask test` builds it before running the tests.

use std::path::PathBuf;
use std::process::{Command, Output};

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
