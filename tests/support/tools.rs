//! The real clients the tests drive (ffmpeg/ffprobe, rtmpdump, GStreamer): presence checks that
//! fail with the package to install, and small wrappers.

use std::path::Path;
use std::process::Command;

/// What `cargo xtask test` installs (Debian packages).
pub const INSTALL_HINT: &str = "`cargo xtask test` installs it (as root: apt-get install -y \
     --no-install-recommends ffmpeg rtmpdump gstreamer1.0-tools gstreamer1.0-plugins-base \
     gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
     gstreamer1.0-libav)";

/// Is `bin` an executable on PATH?
pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(bin);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| {
                        use std::os::unix::fs::PermissionsExt;
                        m.permissions().mode() & 0o111 != 0
                    })
                    .unwrap_or(false)
        })
    })
}

/// Fails the test (never skips it) when `bin` is missing, naming the Debian package.
pub fn require(bin: &str, package: &str) {
    assert!(
        on_path(bin),
        "`{bin}` is not installed: this test needs the Debian package `{package}`; {INSTALL_HINT}"
    );
}

/// Fails the test when GStreamer's `element` is missing, naming the package.
pub fn require_gst_element(element: &str, package: &str) {
    require("gst-launch-1.0", "gstreamer1.0-tools");
    require("gst-inspect-1.0", "gstreamer1.0-tools");
    let ok = Command::new("gst-inspect-1.0")
        .arg(element)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "GStreamer element `{element}` is missing: this test needs the Debian package \
         `{package}`; {INSTALL_HINT}"
    );
}

/// `ffprobe -v error -print_format json <args> <file>` as JSON.
pub fn ffprobe_json(file: &Path, args: &[&str]) -> serde_json::Value {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        o.status.success(),
        "ffprobe {args:?} {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe output is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}
