//! `cargo xtask <command>`: the project's build and test entry points (see README.md).
//!
//! Plain `std` only, so it compiles in seconds on a fresh machine. Each command installs what it
//! needs when missing (rustup targets, cargo tools) and says clearly what it could not do.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod web;

const USAGE: &str = "\
cargo xtask <command>

Commands:
  test        Everything CI checks: rustfmt, clippy (-D warnings), the workspace's tests
              (unit, property, end-to-end against the real rtmp-lab binary), a wasm32 build of
              sim-core, and a check that sim-core's traces are identical natively and as wasm
              (wasm32-wasip1 under Node). Installs the wasm targets when missing.
  lab         Builds the browser lab (web/dist) and rtmp-lab (release), then runs
              `rtmp-lab serve` in the foreground: open http://127.0.0.1:8080.
  build-web   Builds only the browser lab into web/dist (wasm32 release, wasm-bindgen,
              wasm-opt); installs the wasm32 target, the matching wasm-bindgen-cli and
              binaryen (npm) when missing. Prints the wasm size.
  bench       Criterion benchmarks (sim-core engine: one hour of 60 fps video to 100 players).
  help        This text.
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("lab") => lab(&args[1..]),
        Some("build-web") => web::build_web(),
        Some("bench") => bench(&args[1..]),
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
    // The end-to-end tests run the real binary: build it first (tests/lib.rs finds it).
    run(
        "build rtmp-lab for the end-to-end tests",
        cargo().args(["build", "-p", "native-server"]),
    )?;
    run("tests", cargo().args(["test", "--workspace"]))?;
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
    run("criterion benchmarks", &mut c)
}
