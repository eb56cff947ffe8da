//! The browser lab's build and tests: `cargo xtask build-web`, the web part of `cargo xtask lab`,
//! and the two browser steps of `cargo xtask test` (wasm-bindgen-test in headless Chromium, and
//! the end-to-end test of the page served by the real `rtmp-lab serve`).
//!
//! What each step installs when missing, and what it costs cold on the development machine
//! (2 vCPU): the wasm32 target (rustup, seconds); `wasm-bindgen-cli` at exactly the version in
//! Cargo.lock (`cargo install`, ~3 min); `binaryen@132` for wasm-opt (npm, seconds); Debian's
//! `chromium` + `chromium-driver` (apt-get, ~1 min); `playwright-core` (npm ci, seconds).

use crate::{cargo, ensure_target, root, run};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// The Cargo profile of the shipped bundle (root Cargo.toml: opt-level "z", LTO, one codegen unit).
const WASM_PROFILE: &str = "wasm-release";
/// binaryen's npm package; Debian's binaryen (108) cannot read wasm-bindgen 0.2.130's output.
const BINARYEN_NPM: &str = "binaryen@132";

pub fn dist_dir() -> PathBuf {
    root().join("web/dist")
}

/// The version of the `wasm-bindgen` crate in Cargo.lock: the CLI must be exactly this one.
fn locked_wasm_bindgen_version() -> Result<String, String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return Ok(v.trim_matches('"').to_string());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen package (is the web crate in the workspace?)".into())
}

/// A cargo-installed tool: on PATH, or in `$CARGO_HOME/bin` (not always on PATH in CI).
fn cargo_tool(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(p) = home.map(|h| h.join("bin").join(name)) {
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Installs `wasm-bindgen-cli` (which also brings `wasm-bindgen-test-runner`) at the locked
/// version when the one present differs or is missing.
pub fn ensure_wasm_bindgen_cli() -> Result<PathBuf, String> {
    let want = locked_wasm_bindgen_version()?;
    let bin = cargo_tool("wasm-bindgen");
    let have = Command::new(&bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if have.as_deref() == Some(&format!("wasm-bindgen {want}")) {
        return Ok(bin);
    }
    eprintln!(
        "\nwasm-bindgen CLI: have {}, need {want} (the version in Cargo.lock); installing it \
         (about 3 minutes the first time).",
        have.as_deref().unwrap_or("none")
    );
    // Not `--locked`: the CLI's own lockfile wants a crate version the registry mirror lacks.
    run(
        &format!("install wasm-bindgen-cli {want}"),
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &want,
        ]),
    )?;
    Ok(cargo_tool("wasm-bindgen"))
}

fn has_program(name: &str, arg: &str) -> bool {
    Command::new(name)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `wasm-opt` from npm's binaryen, installed into `target/tools/binaryen`; `None` (with a note)
/// when npm is not available.
fn wasm_opt() -> Option<PathBuf> {
    let dir = root().join("target/tools/binaryen");
    let bin = dir.join("node_modules/binaryen/bin/wasm-opt");
    if bin.exists() {
        return Some(bin);
    }
    if !has_program("npm", "--version") {
        eprintln!("note: npm not found, so the wasm is not run through wasm-opt (it stays larger)");
        return None;
    }
    let _ = std::fs::create_dir_all(&dir);
    let ok = run(
        &format!("install {BINARYEN_NPM} (wasm-opt) into target/tools/binaryen"),
        Command::new("npm").current_dir(&dir).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            dir.to_str().unwrap_or("."),
            BINARYEN_NPM,
        ]),
    );
    match ok {
        Ok(()) if bin.exists() => Some(bin),
        _ => {
            eprintln!(
                "note: could not install {BINARYEN_NPM}; the wasm is not optimised by wasm-opt"
            );
            None
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))?;
    for entry in entries.flatten() {
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).map_err(|e| {
                format!("copy {} to {}: {e}", entry.path().display(), dest.display())
            })?;
        }
    }
    Ok(())
}

/// Size of `path` gzipped (`gzip -9`), when gzip is installed.
fn gzipped_size(path: &Path) -> Option<u64> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}

/// `cargo xtask build-web`: the wasm bundle in `web/dist` (index.html, style.css, web.js,
/// web_bg.wasm), which `rtmp-lab serve` serves.
pub fn build_web() -> Result<(), String> {
    let started = Instant::now();
    ensure_target(WASM_TARGET)?;
    let wasm_bindgen = ensure_wasm_bindgen_cli()?;
    run(
        "build the web lab (wasm32, profile wasm-release)",
        cargo().args([
            "build",
            "--profile",
            WASM_PROFILE,
            "--target",
            WASM_TARGET,
            "-p",
            "web",
        ]),
    )?;
    let wasm_in = root().join(format!("target/{WASM_TARGET}/{WASM_PROFILE}/web.wasm"));
    let dist = dist_dir();
    let _ = std::fs::remove_dir_all(&dist);
    std::fs::create_dir_all(&dist).map_err(|e| format!("create {}: {e}", dist.display()))?;
    run(
        "wasm-bindgen (JS glue for the browser)",
        Command::new(&wasm_bindgen)
            .args([
                "--target",
                "web",
                "--no-typescript",
                "--out-name",
                "web",
                "--out-dir",
            ])
            .arg(&dist)
            .arg(&wasm_in),
    )?;
    std::fs::copy(root().join("web/index.html"), dist.join("index.html"))
        .map_err(|e| format!("copy web/index.html: {e}"))?;
    copy_dir(&root().join("web/static"), &dist)?;

    let wasm_out = dist.join("web_bg.wasm");
    let raw = std::fs::metadata(&wasm_out).map(|m| m.len()).unwrap_or(0);
    let mut optimised = false;
    if let Some(opt) = wasm_opt() {
        // The features rustc enables by default for wasm32-unknown-unknown.
        let r = run(
            "wasm-opt -Oz",
            Command::new(&opt)
                .args([
                    "-Oz",
                    "--enable-bulk-memory",
                    "--enable-nontrapping-float-to-int",
                    "--enable-sign-ext",
                    "--enable-mutable-globals",
                    "--enable-reference-types",
                    "--enable-multivalue",
                    "-o",
                ])
                .arg(&wasm_out)
                .arg(&wasm_out),
        );
        match r {
            Ok(()) => optimised = true,
            Err(e) => eprintln!("note: {e}; keeping the wasm as wasm-bindgen wrote it"),
        }
    }
    let size = std::fs::metadata(&wasm_out).map(|m| m.len()).unwrap_or(0);
    let kb = |b: u64| b as f64 / 1024.0;
    eprintln!(
        "\nweb lab built in {:.0} s: {}\n  web_bg.wasm {:.0} KiB{}{}",
        started.elapsed().as_secs_f64(),
        dist.display(),
        kb(size),
        gzipped_size(&wasm_out).map_or(String::new(), |g| format!(", {:.0} KiB gzipped", kb(g))),
        if optimised {
            format!(" (before wasm-opt: {:.0} KiB)", kb(raw))
        } else {
            " (not run through wasm-opt)".into()
        },
    );
    Ok(())
}

/// Does this `rtmp-lab` binary have the `serve` command yet?
pub fn has_serve(bin: &Path) -> bool {
    Command::new(bin)
        .args(["serve", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo xtask lab`: builds the web bundle and the release binary, then runs the server in the
/// foreground. Returns `Ok(false)` when the binary has no `serve` yet (the caller falls back).
pub fn lab_serve() -> Result<bool, String> {
    build_web()?;
    run(
        "build rtmp-lab (release)",
        cargo().args(["build", "--release", "-p", "native-server"]),
    )?;
    let bin = root().join("target/release/rtmp-lab");
    if !has_serve(&bin) {
        eprintln!(
            "\nnote: this rtmp-lab has no `serve` command yet, so the lab cannot be served; \
             the web bundle is in {} (doing what `cargo xtask lab` did before instead).",
            dist_dir().display()
        );
        return Ok(false);
    }
    eprintln!("\nopen http://127.0.0.1:8080   (RTMP: rtmp://127.0.0.1/live/<key>; Ctrl-C stops)\n");
    run(
        "rtmp-lab serve",
        Command::new(&bin)
            .arg("serve")
            .arg("--web-root")
            .arg(dist_dir()),
    )?;
    Ok(true)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Debian's chromium and its matching chromedriver, installed with apt-get when missing.
fn ensure_chromium() -> Result<(), String> {
    let have = Path::new("/usr/bin/chromium").exists() && has_program("chromedriver", "--version");
    if have {
        return Ok(());
    }
    if !is_root() {
        return Err(
            "the browser tests need Debian's chromium and chromium-driver; this user is \
                    not root, so install them yourself: sudo apt-get install chromium \
                    chromium-driver"
                .into(),
        );
    }
    run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-q"]),
    )?;
    run(
        "install chromium and chromium-driver (apt)",
        Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The native `trace_digest` lines (what the browser test must reproduce).
fn native_digests() -> Result<String, String> {
    let out = cargo()
        .args(["run", "-q", "-p", "sim-core", "--bin", "trace_digest"])
        .output()
        .map_err(|e| format!("cannot run trace_digest: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "trace_digest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// wasm-bindgen-test in headless Chromium: sim-core in the browser gives the native traces, and
/// the lab's logic (URL state, controls, validation) works there.
pub fn test_wasm_in_browser() -> Result<(), String> {
    ensure_target(WASM_TARGET)?;
    ensure_wasm_bindgen_cli()?;
    ensure_chromium()?;
    let digests = native_digests()?;
    let runner_dir = cargo_tool("wasm-bindgen-test-runner");
    let mut c = cargo();
    c.args(["test", "--release", "--target", WASM_TARGET, "-p", "web"])
        .env("WEB_NATIVE_DIGESTS", digests.trim())
        .env(
            "WASM_BINDGEN_TEST_WEBDRIVER_JSON",
            root().join("web/webdriver.json"),
        )
        .env("CHROMEDRIVER", "/usr/bin/chromedriver")
        .env("WASM_BINDGEN_TEST_TIMEOUT", "120");
    // `.cargo/config.toml` names the runner; make sure cargo's bin dir is on PATH for it.
    if let Some(dir) = runner_dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths: Vec<PathBuf> = std::env::split_paths(&path).collect();
        paths.insert(0, dir.to_path_buf());
        if let Ok(joined) = std::env::join_paths(paths) {
            c.env("PATH", joined);
        }
    }
    run("web: wasm-bindgen-test in headless Chromium", &mut c)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Kills the server when the test ends, however it ends.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited before listening ({status})"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("nothing listens on 127.0.0.1:{port} after 30 s"))
}

/// The end-to-end browser test: the real server serves the built page; playwright-core drives
/// Debian's Chromium through `web/e2e/lab.mjs` (loads, waits for the charts, moves a slider,
/// checks the chart data changed and the console stayed clean, saves screenshots).
pub fn test_e2e_browser() -> Result<(), String> {
    ensure_chromium()?;
    if !has_program("node", "--version") {
        return Err(
            "the browser end-to-end test needs Node.js (apt-get install nodejs npm)".into(),
        );
    }
    build_web()?;
    run(
        "build rtmp-lab for the browser test",
        cargo().args(["build", "-p", "native-server"]),
    )?;
    let e2e = root().join("web/e2e");
    if !e2e.join("node_modules/playwright-core").exists() {
        run(
            "npm ci (playwright-core for the browser test)",
            Command::new("npm")
                .current_dir(&e2e)
                .args(["ci", "--no-audit", "--no-fund"]),
        )?;
    }
    let bin = root().join("target/debug/rtmp-lab");
    let http_port = free_port()?;
    let (mut guard, fallback) = if has_serve(&bin) {
        let rtmp_port = free_port()?;
        let child = Command::new(&bin)
            .arg("serve")
            .args(["--rtmp", &format!("127.0.0.1:{rtmp_port}")])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .arg("--web-root")
            .arg(dist_dir())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        (Some(ServerGuard(child)), false)
    } else {
        eprintln!(
            "\n!!! rtmp-lab has no `serve` yet: serving web/dist with the xtask's own static \
             server for this test (a temporary fallback; the Measured panel will say there is \
             no API)."
        );
        spawn_static_server(http_port, dist_dir())?;
        (None, true)
    };
    if let Some(g) = guard.as_mut() {
        wait_for_port(http_port, &mut g.0)?;
    }
    let screenshots = root().join("target/screenshots");
    let _ = std::fs::create_dir_all(&screenshots);
    let mut c = Command::new("node");
    c.arg(e2e.join("lab.mjs"))
        .arg(format!("http://127.0.0.1:{http_port}/"))
        .arg(&screenshots);
    if fallback {
        c.arg("--no-api");
    }
    let r = run("web: end-to-end test in headless Chromium", &mut c);
    drop(guard);
    r
}

/// A minimal static file server on a thread (GET only, no directory listing), used only when the
/// binary cannot `serve` yet.
fn spawn_static_server(port: u16, dir: PathBuf) -> Result<(), String> {
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind {port}: {e}"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = serve_one(stream, &dir);
            });
        }
    });
    Ok(())
}

fn serve_one(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let rel = if path == "/" {
        "index.html"
    } else {
        path.trim_start_matches('/')
    };
    let file = dir.join(rel);
    let body = if rel.contains("..") {
        None
    } else {
        std::fs::File::open(&file).ok().and_then(|mut f| {
            let mut b = Vec::new();
            f.read_to_end(&mut b).ok().map(|_| b)
        })
    };
    let mime = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    };
    match body {
        Some(b) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            stream.write_all(&b)
        }
        None => write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    }
}
