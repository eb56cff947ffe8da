//! `cargo xtask <command>`: the project's build and test entry points (see README.md).
//!
//! Plain `std` only, so it compiles in seconds on a fresh machine. Each command installs what it
//! needs when missing (rustup targets, cargo tools) and says clearly what it could not do.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench_peers;
mod fidelity;
mod notebooks;
mod web;

const USAGE: &str = "\
cargo xtask <command>

Commands:
  test        Everything CI checks: rustfmt, clippy (-D warnings), the workspace's tests
              (unit, property, end-to-end against the real rtmp-lab binary with real clients:
              ffmpeg, rtmpdump, GStreamer), a short run of each fuzz target, a wasm32 build of
              sim-core, and a check that sim-core's traces are identical natively and as wasm
              (wasm32-wasip1 under Node). Installs what is missing: the wasm targets, the real
              RTMP clients (apt-get, as root) and cargo-fuzz.
              Then the browser lab: wasm-bindgen-test in headless Chromium (sim-core traces
              in the browser = native; the lab's logic), and an end-to-end test of the page
              served by `rtmp-lab serve` (screenshots in target/screenshots). Installs
              chromium + chromium-driver (apt), wasm-bindgen-cli, playwright-core (npm ci).
              Also runs the notebooks (see `notebooks`) and the fidelity subset (see
              `fidelity`; skipped when not root).
  fuzz [TARGET] [SECONDS]
              Runs the cargo-fuzz targets of native-server (chunk_reader, amf0, flv; all when
              TARGET is omitted or `all`) for SECONDS each (default 300) on the stable
              toolchain. New inputs go to target/fuzz-corpus/<target>/; a crash stops with the
              path of the input that caused it.
  lab         Builds the browser lab (web/dist) and rtmp-lab (release), then runs
              `rtmp-lab serve` in the foreground: open http://127.0.0.1:8080.
  build-web   Builds only the browser lab into web/dist (wasm32 release, wasm-bindgen,
              wasm-opt); installs the wasm32 target, the matching wasm-bindgen-cli and
              binaryen (npm) when missing. Prints the wasm size.
  test-web    Only the browser steps of `test` (wasm-bindgen-test, the end-to-end test).
  bench       Criterion benchmarks: sim-core's engine (one hour of 60 fps video to 100
              players), then native-server's codec (chunk writer and reader beside memcpy,
              fan-out per player). Arguments go to criterion (e.g. a filter).
  bench-peers [--quick] [--points 100,500,1000,2000] [--duration S] [--write-coalescing-ms MS]
              rtmp-lab serve side by side with nginx-rtmp (worker_processes 1), each pinned
              to core 0 and driven by `rtmp-lab bench` pinned to core 1: server CPU, CPU per
              Gb/s, RSS, delivered Mb/s, latency, first frame, kept up, generator CPU; the
              iperf3 floor at our average write size. Installs nginx, libnginx-mod-rtmp,
              iperf3 (apt) when missing; makes the 720p30 clip once with ffmpeg. Results in
              target/bench-peers/ (latest.json, latest.md).
  notebooks   Executes every notebooks/*.ipynb headlessly (nbclient) against the debug
              rtmp-lab (RTMP_LAB_BIN), in a venv at target/notebooks-venv (pip install only
              when notebooks/requirements.txt changed); executed copies go to
              target/notebooks/. Fails naming the notebook and cell. Installs python3-venv
              (apt) when missing.
  fidelity [--quick] [--out FILE] [--rows ID,…] [--bin RTMP_LAB]
              Simulated vs measured over the TUN link emulator (root, Linux): runs the
              matrix of scenarios in xtask/src/fidelity.rs with `rtmp-lab experiment --link
              emulated --publisher replay` (release build) and checks each row's steady-state
              p50/p95 per-frame latency and start-up (bound: 10 % or 5 ms, whichever is
              larger), plus the TCP Fast Open saving. Writes docs/fidelity.md (its generated block) and
              target/fidelity/summary.json. --quick: the test subset, short, 25 %.
  help        This text.
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("lab") => lab(&args[1..]),
        Some("build-web") => web::build_web(),
        Some("test-web") => web::test_wasm_in_browser().and_then(|()| web::test_e2e_browser()),
        Some("bench") => bench(&args[1..]),
        Some("bench-peers") => bench_peers::bench_peers(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("notebooks") => notebooks::run_notebooks(),
        Some("fidelity") => fidelity::fidelity(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd`, echoing it, and turns a failure into an error naming the step.
fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("\n==> {step}");
    eprintln!("    $ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn rustup_has_target(target: &str) -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == target)
        })
        .unwrap_or(false)
}

fn ensure_target(target: &str) -> Result<(), String> {
    if rustup_has_target(target) {
        return Ok(());
    }
    run(
        &format!("install the {target} target"),
        Command::new("rustup").args(["target", "add", target]),
    )
    .map_err(|e| format!("{e}\n  install it with `rustup target add {target}`"))
}

/// Same scenario + seed → same trace, bit for bit, native and wasm: runs the `trace_digest`
/// program natively and as wasm32-wasip1 under Node's WASI and compares the digests.
fn check_wasm_determinism() -> Result<(), String> {
    ensure_target("wasm32-wasip1")?;
    if Command::new("node").arg("--version").output().is_err() {
        return Err(
            "node is needed to run sim-core as wasm (WASI) and compare its traces with \
                    the native ones; install Node.js (apt-get install nodejs)"
                .into(),
        );
    }
    let build = |target: Option<&str>| {
        let mut c = cargo();
        c.args(["build", "-q", "-p", "sim-core", "--bin", "trace_digest"]);
        if let Some(t) = target {
            c.args(["--target", t]);
        }
        run("build trace_digest", &mut c)
    };
    build(None)?;
    build(Some("wasm32-wasip1"))?;
    let output = |cmd: &mut Command| -> Result<String, String> {
        let o = cmd
            .output()
            .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let native = output(&mut Command::new(root().join("target/debug/trace_digest")))?;
    let wasm = output(
        Command::new("node").args([
            "--no-warnings",
            root()
                .join("xtask/run-wasi.mjs")
                .to_str()
                .unwrap_or_default(),
            root()
                .join("target/wasm32-wasip1/debug/trace_digest.wasm")
                .to_str()
                .unwrap_or_default(),
        ]),
    )?;
    eprintln!("\n==> traces native vs wasm32\n{native}");
    if native != wasm || native.lines().count() < 6 {
        return Err(format!(
            "sim-core traces differ between native and wasm32:\nnative:\n{native}\nwasm:\n{wasm}"
        ));
    }
    Ok(())
}

fn test() -> Result<(), String> {
    ensure_target("wasm32-unknown-unknown")?;
    run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The end-to-end tests drive real RTMP clients; install them first when missing.
    ensure_rtmp_clients()?;
    // The end-to-end tests run the real binary: build it first (tests/lib.rs finds it).
    run(
        "build rtmp-lab for the end-to-end tests",
        cargo().args(["build", "-p", "native-server"]),
    )?;
    run("tests", cargo().args(["test", "--workspace"]))?;
    // Simulated vs measured over the link emulator: a short subset with a loose bound (skipped
    // with a message when not root or without /dev/net/tun).
    fidelity::quick_in_test(&root().join("target/debug/rtmp-lab"))?;
    // The notebooks run the debug rtmp-lab built above (notebooks/README.md).
    notebooks::run_notebooks()?;
    fuzz_quick()?;
    run(
        "sim-core for wasm32",
        cargo().args([
            "build",
            "-p",
            "sim-core",
            "--target",
            "wasm32-unknown-unknown",
        ]),
    )?;
    check_wasm_determinism()?;
    // The browser lab: sim-core and the lab's logic in headless Chromium, then the page served
    // by the real server, driven end to end (screenshots in target/screenshots).
    web::test_wasm_in_browser()?;
    web::test_e2e_browser()?;
    eprintln!("\nxtask test: all checks passed");
    Ok(())
}

fn lab(_args: &[String]) -> Result<(), String> {
    // The browser lab served by `rtmp-lab serve`; without `serve` in the binary, what the lab
    // was before it: the command-line simulator.
    if web::lab_serve()? {
        return Ok(());
    }
    run(
        "build rtmp-lab (release)",
        cargo().args(["build", "--release", "-p", "native-server"]),
    )?;
    let bin = root().join("target/release/rtmp-lab");
    let out = root().join("out");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    run("the seed article, audited", Command::new(&bin).arg("seed"))?;
    run(
        "simulate the obs-default preset",
        Command::new(&bin).args([
            "simulate",
            "--preset",
            "obs-default",
            "--out",
            out.join("obs-default.json")
                .to_str()
                .unwrap_or("out/obs-default.json"),
            "--plot",
            out.join("obs-default.svg")
                .to_str()
                .unwrap_or("out/obs-default.svg"),
        ]),
    )?;
    eprintln!(
        "\nThe lab today is the command-line simulator: trace in out/obs-default.json, chart in \
         out/obs-default.svg.\nTry `target/release/rtmp-lab simulate --help`.\n\
         Not built yet: the RTMP server (`rtmp-lab serve`, RTMP :1935 + http://127.0.0.1:8080) \
         and the browser lab; see README.md."
    );
    Ok(())
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut c = cargo();
    c.args(["bench", "-p", "sim-core"]);
    if !args.is_empty() {
        c.arg("--").args(args);
    }
    run("criterion benchmarks (sim-core engine)", &mut c)?;
    let mut c = cargo();
    c.args(["bench", "-p", "native-server", "--bench", "codec"]);
    if !args.is_empty() {
        c.arg("--").args(args);
    }
    run("criterion benchmarks (RTMP codec and fan-out)", &mut c)
}

// ---------------------------------------------------------------------------------------------
// Real RTMP clients for the end-to-end tests (tests/serve_clients.rs)
// ---------------------------------------------------------------------------------------------

/// Is `bin` an executable file on PATH?
fn on_path(bin: &str) -> bool {
    env::var_os("PATH").is_some_and(|paths| {
        env::split_paths(&paths).any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(bin))
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    })
}

/// Does `gst-inspect-1.0` know `element`?
fn gst_has(element: &str) -> bool {
    Command::new("gst-inspect-1.0")
        .arg(element)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The Debian packages providing the real clients that are not there yet.
fn missing_client_packages() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !on_path("ffmpeg") || !on_path("ffprobe") {
        missing.push("ffmpeg");
    }
    if !on_path("rtmpdump") {
        missing.push("rtmpdump");
    }
    // (package, an element it provides that the tests use)
    let gst = [
        ("gstreamer1.0-plugins-base", "videotestsrc"),
        ("gstreamer1.0-plugins-good", "flvmux"),
        ("gstreamer1.0-plugins-bad", "rtmp2sink"),
        ("gstreamer1.0-plugins-ugly", "x264enc"),
        ("gstreamer1.0-libav", "avenc_aac"),
    ];
    if !on_path("gst-launch-1.0") || !on_path("gst-inspect-1.0") {
        missing.push("gstreamer1.0-tools");
        missing.extend(gst.iter().map(|(package, _)| *package));
    } else {
        missing.extend(
            gst.iter()
                .filter(|(_, element)| !gst_has(element))
                .map(|(package, _)| *package),
        );
    }
    missing
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs ffmpeg, rtmpdump and GStreamer (with rtmp2src/rtmp2sink) with apt-get when missing.
/// Quick when they are there; as non-root, fails with the command to run.
fn ensure_rtmp_clients() -> Result<(), String> {
    let missing = missing_client_packages();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "\n==> installing the real RTMP clients the end-to-end tests drive: {}",
        missing.join(" ")
    );
    apt_install(
        &missing,
        "the end-to-end tests need real RTMP clients that are missing",
    )?;
    let still = missing_client_packages();
    if !still.is_empty() {
        return Err(format!(
            "still missing after installing them: {} (is GStreamer's registry cache stale? try \
             `rm -rf ~/.cache/gstreamer-1.0`)",
            still.join(", ")
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Fuzzing (native-server/fuzz, a cargo-fuzz project outside the workspace)
// ---------------------------------------------------------------------------------------------

/// The fuzz targets (native-server/fuzz/fuzz_targets/*.rs).
const FUZZ_TARGETS: [&str; 3] = ["chunk_reader", "amf0", "flv"];
/// Seconds per target in `cargo xtask test`.
const FUZZ_QUICK_SECONDS: u64 = 20;
/// Seconds per target for `cargo xtask fuzz` by default.
const FUZZ_LONG_SECONDS: u64 = 300;

fn fuzz_dir() -> PathBuf {
    root().join("native-server/fuzz")
}

/// `cargo fuzz …` in native-server/ on the toolchain in use. cargo-fuzz passes nightly-only
/// flags (-Zsanitizer, -Cpasses=sancov-module, …); RUSTC_BOOTSTRAP=1 lets the stable compiler
/// accept them, so no nightly toolchain is needed.
fn cargo_fuzz() -> Command {
    let mut c = cargo();
    c.current_dir(root().join("native-server"))
        .arg("fuzz")
        .env("RUSTC_BOOTSTRAP", "1");
    c
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let have = cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    run(
        "install cargo-fuzz",
        cargo().args(["install", "cargo-fuzz", "--locked"]),
    )
    .or_else(|_| {
        // --locked can ask for a version the registry mirror lacks.
        run(
            "install cargo-fuzz (without --locked)",
            cargo().args(["install", "cargo-fuzz"]),
        )
    })
    .map_err(|e| format!("{e}\n  install it with `cargo install cargo-fuzz`"))
}

/// Builds every fuzz target (release, debug assertions and overflow checks, AddressSanitizer).
fn fuzz_build() -> Result<(), String> {
    ensure_cargo_fuzz()?;
    let t = std::time::Instant::now();
    run("build the fuzz targets", cargo_fuzz().args(["build", "-a"]))?;
    eprintln!("    fuzz targets built in {:.0?}", t.elapsed());
    Ok(())
}

/// Files in `dir` modified at or after `since`.
fn files_since(dir: &Path, since: std::time::SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m >= since)
        })
        .collect()
}

/// Runs one target for `seconds`, starting from the committed seeds (corpus/<target>/) and
/// writing new inputs to target/fuzz-corpus/<target>/ (so the committed corpus stays as is).
fn fuzz_run(target: &str, seconds: u64) -> Result<(), String> {
    let seeds = fuzz_dir().join("corpus").join(target);
    let scratch = root().join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let artifacts = fuzz_dir().join("artifacts").join(target);
    let started = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
    let mut cmd = cargo_fuzz();
    cmd.args(["run", "-a", target]).arg(&scratch);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    let result = run(
        &format!("fuzz {target} for {seconds} s"),
        cmd.arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // An input that takes 10 s is a hang; 2 GB is far beyond what any input may cost.
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1"),
    );
    if result.is_ok() {
        return Ok(());
    }
    let found = files_since(&artifacts, started);
    let list = if found.is_empty() {
        format!("(no new file in {})", artifacts.display())
    } else {
        found
            .iter()
            .map(|p| format!("    {}", p.display()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let input = found
        .first()
        .map_or("<file>".to_string(), |p| p.display().to_string());
    Err(format!(
        "fuzz target {target} failed; the input that triggered it:\n{list}\n  reproduce \
         with `cd native-server && RUSTC_BOOTSTRAP=1 cargo fuzz run -a {target} {input}`"
    ))
}

/// `cargo xtask test`'s fuzz step: build every target, run each briefly.
fn fuzz_quick() -> Result<(), String> {
    let t = std::time::Instant::now();
    fuzz_build()?;
    for target in FUZZ_TARGETS {
        fuzz_run(target, FUZZ_QUICK_SECONDS)?;
    }
    eprintln!("    fuzz step took {:.0?}", t.elapsed());
    Ok(())
}

/// `cargo xtask fuzz [TARGET|all] [SECONDS]`.
fn fuzz(args: &[String]) -> Result<(), String> {
    let target = args.first().map(String::as_str).unwrap_or("all");
    let seconds = match args.get(1) {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| format!("SECONDS must be a whole number, got {s:?}"))?,
        None => FUZZ_LONG_SECONDS,
    };
    let targets: Vec<&str> = if target == "all" {
        FUZZ_TARGETS.to_vec()
    } else if FUZZ_TARGETS.contains(&target) {
        vec![target]
    } else {
        return Err(format!(
            "unknown fuzz target {target:?}; targets: {} (or all)",
            FUZZ_TARGETS.join(", ")
        ));
    };
    fuzz_build()?;
    for t in targets {
        fuzz_run(t, seconds)?;
    }
    Ok(())
}

/// `apt-get install` (with an `apt-get update` retry) as root; otherwise the command to run.
pub(crate) fn apt_install(packages: &[&str], why: &str) -> Result<(), String> {
    let apt = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !is_root() || !on_path("apt-get") {
        return Err(format!(
            "{why}: install {} with `sudo {apt}` (Debian/Ubuntu) and try again",
            packages.join(", ")
        ));
    }
    let install = || {
        run(
            &format!("apt-get install {}", packages.join(" ")),
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        run(
            "apt-get update",
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        install().map_err(|e| format!("{why}: {e}\n  tried `{apt}`"))?;
    }
    Ok(())
}
