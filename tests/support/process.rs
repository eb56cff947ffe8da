//! Child processes that never outlive a test: the `rtmp-lab serve` guard ([`Server`]) and a
//! guard for the real clients ([`Proc`]: ffmpeg, rtmpdump, gst-launch). Both kill on drop (also
//! when the test panics), every wait is bounded, and their output goes to files so a failing
//! assertion can show it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned; no memory is involved.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Raises this process's soft RLIMIT_NOFILE to at least `want` (up to the hard limit);
/// children inherit it. Returns the soft limit in force afterwards.
pub fn raise_nofile_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The last `max` bytes of a file, as text.
pub fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running external program; killed (SIGKILL) on drop if still running.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout+stderr going to `<dir>/<name>.log`.
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_child(&mut self.child, timeout);
        }
        self.status
    }

    /// One SIGINT (ffmpeg then finishes its output file), then waits at most `timeout`;
    /// SIGKILL if it did not exit.
    pub fn interrupt_and_wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            signal(self.pid(), libc::SIGINT);
            self.wait_timeout(timeout);
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.status
    }

    /// Waits at most `timeout`; if still running then, SIGKILL. Returns the exit status if it
    /// exited by itself.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = self.wait_timeout(timeout);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        status
    }

    /// The log so far (last 6 KB).
    pub fn output(&self) -> String {
        tail(&self.log, 6000)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `rtmp-lab serve` on free loopback ports, with its own config and log; killed on
/// drop. Its log tail is printed when the test is panicking.
pub struct Server {
    child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

/// Default time to wait for the server to be up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Server {
    /// `rtmp-lab serve` with the built-in defaults (no config file).
    pub fn start() -> Server {
        Self::start_with_config("")
    }

    /// `rtmp-lab serve --config <file with config_toml>` on free loopback ports (`--rtmp`,
    /// `--http`). Retries with other ports if the chosen ones were taken meanwhile.
    pub fn start_with_config(config_toml: &str) -> Server {
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = dir.path().join("serve.toml");
            std::fs::write(&config, config_toml).expect("write config");
            let rtmp: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            if rtmp == http {
                continue;
            }
            let log = dir.path().join("serve.log");
            let out = File::create(&log).expect("create server log");
            let err = out.try_clone().expect("clone log");
            let mut cmd = Command::new(crate::rtmp_lab_path());
            cmd.arg("serve")
                .arg("--rtmp")
                .arg(rtmp.to_string())
                .arg("--http")
                .arg(http.to_string());
            if !config_toml.is_empty() {
                cmd.arg("--config").arg(&config);
            }
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
            let child = cmd.spawn().expect("start rtmp-lab serve");
            let mut server = Server {
                child,
                rtmp,
                http,
                dir,
                log,
                exited: None,
            };
            match server.wait_ready(START_TIMEOUT) {
                Ok(()) => return server,
                Err(e) => {
                    let text = server.logs(4000).to_lowercase();
                    if !(text.contains("in use") || text.contains("addrinuse")) {
                        panic!("rtmp-lab serve did not start: {e}");
                    }
                    last_error = e;
                    server.kill();
                }
            }
        }
        panic!("rtmp-lab serve did not start after 5 attempts: {last_error}")
    }

    /// Waits for the "rtmp-lab serve: RTMP on …" line and an accepting RTMP port.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Err(format!(
                    "exited with {status} before listening; its output:\n{}",
                    tail(&self.log, 4000)
                ));
            }
            let printed = std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains("RTMP on");
            if printed && TcpStream::connect_timeout(&self.rtmp, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not listening on {} after {timeout:?} (announcement printed: {printed}); \
                     its output:\n{}",
                    self.rtmp,
                    tail(&self.log, 4000)
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `rtmp://127.0.0.1:PORT/app/key`.
    pub fn url(&self, app: &str, key: &str) -> String {
        format!("rtmp://{}/{app}/{key}", self.rtmp)
    }

    /// Waits until `/api/streams` lists `app/key` with a publisher (at most `timeout`).
    pub fn wait_published(&self, app: &str, key: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(r) = crate::http::get(self.http, "/api/streams") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) {
                    let found = v.as_array().is_some_and(|a| {
                        a.iter().any(|s| {
                            s["app"] == app && s["key"] == key && !s["publisher"].is_null()
                        })
                    });
                    if found {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The server's output so far (last `max` bytes).
    pub fn logs(&self, max: usize) -> String {
        tail(&self.log, max)
    }

    /// Panics (with the server's log) if the process has exited.
    pub fn assert_alive(&mut self, context: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.exited = Some(status);
            panic!(
                "rtmp-lab serve is no longer running after {context}: {status}\n--- server log \
                 ---\n{}",
                self.logs(8000)
            );
        }
    }

    /// Resident memory of the server process (kB), from /proc/PID/status.
    pub fn rss_kb(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Panics if the server's RSS is `max_mb` MB or more.
    pub fn assert_rss_below(&self, max_mb: u64, context: &str) {
        let rss = self.rss_kb();
        assert!(
            rss > 0 && rss < max_mb * 1024,
            "rtmp-lab serve RSS is {} MB after {context} (bound {max_mb} MB)",
            rss / 1024
        );
    }

    /// The server is alive and a scripted publisher's frames reach a scripted player.
    pub fn assert_healthy(&mut self, context: &str) {
        self.assert_alive(context);
        if let Err(e) = crate::check_publish_play(self.rtmp) {
            self.assert_alive(context);
            panic!(
                "after {context}, rtmp-lab serve no longer relays a normal publish+play: {e}\n--- \
                 server log ---\n{}",
                self.logs(8000)
            );
        }
        self.assert_alive(context);
    }

    /// SIGINT, then waits at most `timeout` for the exit status.
    pub fn interrupt(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            signal(self.pid(), libc::SIGINT);
            self.exited = wait_child(&mut self.child, timeout);
        }
        self.exited
    }

    fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let running = self.exited.is_none();
        self.kill();
        if std::thread::panicking() && running {
            eprintln!(
                "--- rtmp-lab serve log ({}) ---\n{}",
                self.log.display(),
                self.logs(6000)
            );
        }
    }
}
