//! `cargo xtask bench-peers`: `rtmp-lab serve` side by side with nginx-rtmp, measured in the
//! same run by `rtmp-lab bench` (the method of ../shared/BENCH.md).
//!
//! For each server and each point (players 100/500/1000/2000, or `--quick`: 100 and 500): a
//! fresh server pinned to core 0, the load generator pinned to core 1, both in their own
//! session at raised priority (SCHED_FIFO when root, else `nice`); a ramp, then a steady
//! window in which the generator samples the server's CPU (all its processes), peak RSS and
//! run-queue wait. A point where either side waited for a CPU more than
//! [`MAX_SCHED_WAIT_PCT`] measured the neighbours and is repeated (the run with the least
//! waiting is kept). A server's ramp stops at its first point where not every player kept up.
//! Then the floor: iperf3 over loopback, sender pinned to core 0 with `-l` at our server's
//! average write size. Prints one markdown table (ratios against nginx-rtmp at each point)
//! and writes everything to `target/bench-peers/`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{apt_install, cargo, is_root, on_path, root, run};

/// A point is repeated when the server or the generator waited this long for a CPU (% of
/// the window): the machine's other load was measured, not the server.
const MAX_SCHED_WAIT_PCT: f64 = 10.0;
/// The nginx-rtmp module as Debian installs it.
const NGINX_RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

const USAGE: &str = "\
cargo xtask bench-peers [--quick] [--points 100,500,1000,2000] [--duration S]
                        [--ramp-per-s R] [--repeats N] [--write-coalescing-ms MS] [--no-floor]

  --quick                 players 100 and 500, 10 s windows
  --points LIST           players per point (default 100,500,1000,2000)
  --duration S            steady window per point, seconds (default 20)
  --ramp-per-s R          players started per second (default 500)
  --repeats N             runs per server and point, servers alternating; the median run
                          (by CPU per Gb/s) is reported with the spread (default 3)
  --write-coalescing-ms MS
                          also measure rtmp-lab serve with `[relay] coalesce_ms = MS`
  --no-floor              skip the iperf3 floor
";

struct Options {
    points: Vec<usize>,
    duration_s: f64,
    ramp_per_s: f64,
    coalescing_ms: Option<f64>,
    floor: bool,
    repeats: usize,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        points: vec![100, 500, 1000, 2000],
        duration_s: 20.0,
        ramp_per_s: 500.0,
        coalescing_ms: None,
        floor: true,
        repeats: 3,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match a.as_str() {
            "--quick" => {
                o.points = vec![100, 500];
                o.duration_s = 10.0;
            }
            "--points" => {
                o.points = value("--points")?
                    .split(',')
                    .map(|p| p.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--points: {e}"))?;
            }
            "--duration" => {
                o.duration_s = value("--duration")?
                    .parse()
                    .map_err(|e| format!("--duration: {e}"))?
            }
            "--ramp-per-s" => {
                o.ramp_per_s = value("--ramp-per-s")?
                    .parse()
                    .map_err(|e| format!("--ramp-per-s: {e}"))?
            }
            "--write-coalescing-ms" => {
                o.coalescing_ms = Some(
                    value("--write-coalescing-ms")?
                        .parse()
                        .map_err(|e| format!("--write-coalescing-ms: {e}"))?,
                )
            }
            "--no-floor" => o.floor = false,
            "--repeats" => {
                o.repeats = value("--repeats")?
                    .parse()
                    .map_err(|e| format!("--repeats: {e}"))?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    if o.repeats == 0 {
        return Err("--repeats must be at least 1".into());
    }
    if o.points.is_empty() || o.points.contains(&0) {
        return Err("--points must list positive player counts".into());
    }
    Ok(o)
}

/// Which server a run measures.
#[derive(Clone)]
enum Server {
    Nginx,
    Ours { coalesce_ms: f64 },
}

impl Server {
    /// Table order within a point: the peer first.
    fn order(&self) -> u32 {
        match self {
            Server::Nginx => 0,
            Server::Ours { coalesce_ms } if *coalesce_ms > 0.0 => 2,
            Server::Ours { .. } => 1,
        }
    }

    fn label(&self) -> String {
        match self {
            Server::Nginx => "nginx-rtmp".into(),
            Server::Ours { coalesce_ms } if *coalesce_ms > 0.0 => {
                format!("rtmp-lab (coalesce {coalesce_ms} ms)")
            }
            Server::Ours { .. } => "rtmp-lab".into(),
        }
    }
}

pub fn bench_peers(args: &[String]) -> Result<(), String> {
    let opts = parse_options(args)?;
    if !cfg!(target_os = "linux") {
        return Err("bench-peers needs Linux (taskset, /proc, nginx from apt)".into());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return Err(format!(
            "bench-peers pins the server and the load generator to different cores; this \
             machine has {cpus}"
        ));
    }
    ensure_packages()?;
    run(
        "build rtmp-lab (release)",
        cargo().args(["build", "--release", "-p", "native-server"]),
    )?;
    let out_dir = root().join("target/bench-peers");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let clip = make_clip(&out_dir)?;
    let bin = root().join("target/release/rtmp-lab");
    let prio = Priority::detect();
    let command_line = format!("cargo xtask bench-peers {}", args.join(" "));
    eprintln!(
        "\n==> {command_line}: priority {}, clip {}",
        prio.describe(),
        clip.display()
    );

    let mut servers = vec![Server::Nginx, Server::Ours { coalesce_ms: 0.0 }];
    if let Some(ms) = opts.coalescing_ms {
        servers.push(Server::Ours { coalesce_ms: ms });
    }
    // Servers alternate within each point and repetition, so a change in the machine's
    // other load touches all of them alike; the median of the repetitions is reported.
    let mut results: Vec<PointResult> = Vec::new();
    let mut ramping: Vec<bool> = vec![true; servers.len()];
    for &players in &opts.points {
        let mut runs: Vec<Vec<PointResult>> = servers.iter().map(|_| Vec::new()).collect();
        for rep in 1..=opts.repeats {
            for (i, server) in servers.iter().enumerate() {
                if !ramping[i] {
                    continue;
                }
                let r = measure_once(server, players, rep, &opts, &bin, &clip, &out_dir, &prio)?;
                eprintln!("    {}", r.summary());
                runs[i].push(r);
            }
        }
        for (i, server_runs) in runs.into_iter().enumerate() {
            let Some(median) = PointResult::median(server_runs) else {
                continue;
            };
            if !median.kept_up {
                eprintln!(
                    "    {} did not keep up at {players} players: its ramp stops here",
                    median.server.label()
                );
                ramping[i] = false;
            }
            results.push(median);
        }
    }
    results.sort_by_key(|r| (r.players, r.server.order()));

    let mut floors: Vec<Floor> = Vec::new();
    if opts.floor {
        for r in results
            .iter()
            .filter(|r| matches!(r.server, Server::Ours { .. }))
        {
            let Some(len) = r.floor_write_bytes() else {
                continue;
            };
            if floors.iter().any(|f| f.write_bytes == len) {
                continue;
            }
            match iperf_floor(len, &prio) {
                Ok(f) => floors.push(f),
                Err(e) => eprintln!("    floor at {len} bytes: {e}"),
            }
        }
    }

    let machine = machine_description();
    let table = render_table(&results, &floors);
    println!("\n{machine}\n\n{table}");
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let json = results_json(&command_line, &machine, &prio, &clip, &results, &floors);
    for name in [format!("results-{stamp}.json"), "latest.json".into()] {
        let path = out_dir.join(name);
        std::fs::write(&path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let md = out_dir.join("latest.md");
    std::fs::write(&md, format!("{command_line}\n\n{machine}\n\n{table}"))
        .map_err(|e| format!("{}: {e}", md.display()))?;
    eprintln!("\nresults in {}", out_dir.join("latest.json").display());
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Set-up
// -------------------------------------------------------------------------------------------

/// nginx + libnginx-mod-rtmp, iperf3, ffmpeg (for the clip), taskset/chrt (util-linux).
fn ensure_packages() -> Result<(), String> {
    let mut missing = Vec::new();
    if !on_path("nginx") && !Path::new("/usr/sbin/nginx").exists() {
        missing.push("nginx");
    }
    if !Path::new(NGINX_RTMP_MODULE).exists() {
        missing.push("libnginx-mod-rtmp");
    }
    if !on_path("iperf3") {
        missing.push("iperf3");
    }
    if !on_path("ffmpeg") {
        missing.push("ffmpeg");
    }
    if !on_path("taskset") || !on_path("setsid") {
        missing.push("util-linux");
    }
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, "bench-peers needs the peer and its tools")
}

/// The clip of BENCH.md, made once: 720p30 x264, keyframe every 2 s, 2.5 Mb/s CBR, AAC
/// 128 kb/s, 60 s (the generator loops it).
fn make_clip(dir: &Path) -> Result<PathBuf, String> {
    let clip = dir.join("clip-720p30-2500k.flv");
    if clip.exists() {
        return Ok(clip);
    }
    let tmp = dir.join("clip-720p30-2500k.partial.flv");
    run(
        "make the benchmark clip (ffmpeg, once)",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", "60", "-c:v", "libx264", "-preset", "veryfast"])
            .args(["-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "2500k"])
            .args([
                "-x264-params",
                "nal-hrd=cbr",
                "-g",
                "60",
                "-keyint_min",
                "60",
            ])
            .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "flv"])
            .arg(&tmp),
    )?;
    std::fs::rename(&tmp, &clip).map_err(|e| format!("{}: {e}", clip.display()))?;
    Ok(clip)
}

/// How server and generator are raised above the machine's other load.
struct Priority {
    prefix: Vec<String>,
}

impl Priority {
    /// SCHED_FIFO 1 when root (the neighbours cannot preempt; the kernel's RT throttling
    /// still leaves them 5 %), else nothing extra.
    fn detect() -> Priority {
        let fifo_works = is_root()
            && Command::new("chrt")
                .args(["-f", "1", "true"])
                .status()
                .is_ok_and(|s| s.success());
        let prefix = if fifo_works {
            vec!["chrt".into(), "-f".into(), "1".into()]
        } else if is_root() {
            vec!["nice".into(), "-n".into(), "-10".into()]
        } else {
            Vec::new()
        };
        Priority { prefix }
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            "normal (not root)".into()
        } else {
            self.prefix.join(" ")
        }
    }

    /// `setsid <prio> taskset -c <core> <program>`.
    fn command(&self, core: u32, program: &Path) -> Command {
        let mut c = Command::new("setsid");
        c.args(&self.prefix)
            .arg("taskset")
            .arg("-c")
            .arg(core.to_string())
            .arg(program);
        c
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn wait_listening(port: u16, child: &mut Child, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited with {status} before listening"));
        }
        if Instant::now() > deadline {
            return Err(format!("nothing listens on port {port} after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a server we started (SIGTERM to its pid, then SIGKILL) and reaps it.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts a fresh server pinned to core 0; returns it and its RTMP port.
fn start_server(
    server: &Server,
    dir: &Path,
    bin: &Path,
    prio: &Priority,
) -> Result<(Child, u16), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = match server {
        Server::Nginx => {
            let conf = dir.join("nginx.conf");
            std::fs::write(
                &conf,
                format!(
                    "load_module {NGINX_RTMP_MODULE};\n\
                     worker_processes 1;\n\
                     worker_rlimit_nofile 20000;\n\
                     daemon off;\n\
                     pid {dir}/nginx.pid;\n\
                     error_log {dir}/logs/error.log warn;\n\
                     events {{ worker_connections 10000; }}\n\
                     rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096; \
                     application live {{ live on; }} }} }}\n",
                    dir = dir.display()
                ),
            )
            .map_err(|e| e.to_string())?;
            let nginx = if on_path("nginx") {
                PathBuf::from("nginx")
            } else {
                PathBuf::from("/usr/sbin/nginx")
            };
            let mut c = prio.command(0, &nginx);
            c.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.join("logs/error.log"));
            c
        }
        Server::Ours { coalesce_ms } => {
            let conf = dir.join("serve.toml");
            let http = free_port()?;
            std::fs::write(
                &conf,
                format!(
                    "rtmp = \"127.0.0.1:{port}\"\nhttp = \"127.0.0.1:{http}\"\n\n[relay]\n\
                     coalesce_ms = {coalesce_ms:.1}\n"
                ),
            )
            .map_err(|e| e.to_string())?;
            let mut c = prio.command(0, bin);
            c.arg("serve")
                .arg("--config")
                .arg(&conf)
                .env("RUST_LOG", "warn");
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", server.label()))?;
    if let Err(e) = wait_listening(port, &mut child, Duration::from_secs(10)) {
        stop(&mut child);
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        return Err(format!("{}: {e}\n{log}", server.label()));
    }
    Ok((child, port))
}

// -------------------------------------------------------------------------------------------
// One point
// -------------------------------------------------------------------------------------------

struct PointResult {
    server: Server,
    players: usize,
    /// The bench's JSON line, as printed (of the median run); every run's.
    raw: String,
    all_raw: Vec<String>,
    /// Runs behind this result, those that kept up, and the spread of CPU per Gb/s.
    runs: usize,
    runs_kept_up: usize,
    cpu_per_gbps_range: Option<(f64, f64)>,
    connected: usize,
    kept_up: bool,
    server_cpu_pct: Option<f64>,
    cpu_per_gbps: Option<f64>,
    cpu_with_softirq_per_gbps: Option<f64>,
    peak_rss_mb: Option<f64>,
    delivered_mbps: f64,
    latency_p50: Option<f64>,
    latency_p99: Option<f64>,
    first_frame_p50: Option<f64>,
    generator_cpu_pct: f64,
    generator_saturated: bool,
    server_wait_pct: f64,
    generator_wait_pct: f64,
    avg_write_bytes: Option<f64>,
    bytes_per_read: Option<f64>,
}

impl PointResult {
    fn summary(&self) -> String {
        format!(
            "{} × {}: {}/{} connected, kept up {}, CPU {} ({} per Gb/s), {:.0} Mb/s, latency \
             p99 {}, waits {:.1}/{:.1} %",
            self.server.label(),
            self.players,
            self.connected,
            self.players,
            self.kept_up,
            opt(self.server_cpu_pct, 1, " %"),
            opt(self.cpu_per_gbps, 1, " %"),
            self.delivered_mbps,
            opt(self.latency_p99, 2, " ms"),
            self.server_wait_pct,
            self.generator_wait_pct
        )
    }

    fn from_json(server: &Server, players: usize, raw: String) -> Result<Self, String> {
        let j = Json::parse(&raw).map_err(|e| format!("bench output is not JSON ({e}): {raw}"))?;
        let num = |path: &[&str]| j.at(path).and_then(Json::num);
        let kept_up = j
            .at(&["all_kept_up"])
            .and_then(Json::boolean)
            .unwrap_or(false);
        Ok(PointResult {
            server: server.clone(),
            players,
            all_raw: vec![raw.clone()],
            runs: 1,
            runs_kept_up: usize::from(kept_up),
            cpu_per_gbps_range: None,
            connected: num(&["connected"]).unwrap_or(0.0) as usize,
            kept_up: j
                .at(&["all_kept_up"])
                .and_then(Json::boolean)
                .unwrap_or(false),
            server_cpu_pct: num(&["server", "cpu_pct"]),
            cpu_per_gbps: num(&["server", "cpu_pct_per_gbps"]),
            cpu_with_softirq_per_gbps: num(&["server", "cpu_with_softirq_pct_per_gbps"]),
            peak_rss_mb: num(&["server", "peak_rss_kb"]).map(|kb| kb / 1024.0),
            delivered_mbps: num(&["delivered_mbps"]).unwrap_or(0.0),
            latency_p50: num(&["latency_ms", "p50"]),
            latency_p99: num(&["latency_ms", "p99"]),
            first_frame_p50: num(&["first_frame_ms", "p50"]),
            generator_cpu_pct: num(&["generator", "cpu_pct"]).unwrap_or(0.0),
            generator_saturated: j
                .at(&["generator", "saturated"])
                .and_then(Json::boolean)
                .unwrap_or(false),
            server_wait_pct: num(&["server", "sched_wait_pct"]).unwrap_or(0.0),
            generator_wait_pct: num(&["generator", "sched_wait_pct"]).unwrap_or(0.0),
            avg_write_bytes: num(&["server", "avg_write_bytes"]),
            bytes_per_read: num(&["generator", "bytes_per_read"]),
            raw,
        })
    }

    /// The write size the floor is measured at: the server's average write (when
    /// /proc/PID/io sees its writes), else the average segment its players read (our server
    /// writes with send(2) too, one message per call), rounded to 512 bytes so neighbouring
    /// points share a measurement.
    fn floor_write_bytes(&self) -> Option<usize> {
        let size = self.avg_write_bytes.or(self.bytes_per_read)?;
        Some(((size / 512.0).round() as usize).max(1) * 512)
    }

    fn waited(&self) -> f64 {
        self.server_wait_pct.max(self.generator_wait_pct)
    }

    /// The median run by CPU per Gb/s (runs without it sort last), carrying the spread and
    /// how many runs kept up; it kept up when most runs did.
    fn median(mut runs: Vec<PointResult>) -> Option<PointResult> {
        let n = runs.len();
        let kept = runs.iter().filter(|r| r.kept_up).count();
        let values: Vec<f64> = runs.iter().filter_map(|r| r.cpu_per_gbps).collect();
        let range = values
            .iter()
            .copied()
            .fold(None, |acc: Option<(f64, f64)>, v| {
                Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
            });
        let all_raw: Vec<String> = runs.iter().map(|r| r.raw.clone()).collect();
        runs.sort_by(|a, b| {
            let key = |r: &PointResult| r.cpu_per_gbps.unwrap_or(f64::INFINITY);
            key(a).total_cmp(&key(b))
        });
        let mut m = runs.into_iter().nth((n.saturating_sub(1)) / 2)?;
        m.runs = n;
        m.runs_kept_up = kept;
        m.kept_up = kept * 2 > n;
        m.cpu_per_gbps_range = range;
        m.all_raw = all_raw;
        Some(m)
    }
}

#[allow(clippy::too_many_arguments)]
fn measure_once(
    server: &Server,
    players: usize,
    rep: usize,
    opts: &Options,
    bin: &Path,
    clip: &Path,
    out_dir: &Path,
    prio: &Priority,
) -> Result<PointResult, String> {
    let slug = server.label().replace([' ', '(', ')'], "");
    let dir = out_dir.join(format!("run-{slug}-{players}-{rep}"));
    eprintln!("\n==> {} × {players} players (run {rep})", server.label());
    let (mut child, port) = start_server(server, &dir, bin, prio)?;
    let mut cmd = prio.command(1, bin);
    cmd.arg("bench")
        .arg("--url")
        .arg(format!("rtmp://127.0.0.1:{port}/live/bench"))
        .arg("--players")
        .arg(players.to_string())
        .arg("--duration")
        .arg(opts.duration_s.to_string())
        .arg("--ramp-per-s")
        .arg(opts.ramp_per_s.to_string())
        .arg("--flv")
        .arg(clip)
        .arg("--server-pid")
        .arg(child.id().to_string())
        .arg("--json");
    let output = cmd.output();
    stop(&mut child);
    let output = output.map_err(|e| format!("could not run rtmp-lab bench: {e}"))?;
    let table = String::from_utf8_lossy(&output.stderr).into_owned();
    let _ = std::fs::write(dir.join("bench.txt"), &table);
    if !output.status.success() {
        return Err(format!(
            "rtmp-lab bench against {} failed ({}):\n{table}",
            server.label(),
            output.status
        ));
    }
    let raw = String::from_utf8_lossy(&output.stdout)
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or("")
        .to_owned();
    let _ = std::fs::write(dir.join("bench.json"), &raw);
    let r = PointResult::from_json(server, players, raw)?;
    if r.waited() > MAX_SCHED_WAIT_PCT {
        eprintln!(
            "    note: waited {:.1} % of the window for a CPU: this run measured the neighbours too",
            r.waited()
        );
    }
    Ok(r)
}

// -------------------------------------------------------------------------------------------
// The floor
// -------------------------------------------------------------------------------------------

struct Floor {
    write_bytes: usize,
    gbps: f64,
    sender_cpu_pct: f64,
}

impl Floor {
    fn cpu_per_gbps(&self) -> f64 {
        self.sender_cpu_pct / self.gbps.max(1e-9)
    }
}

/// iperf3 over loopback: receiver on core 1, sender on core 0 (where the servers ran) writing
/// `len` bytes per call, 5 s.
fn iperf_floor(len: usize, prio: &Priority) -> Result<Floor, String> {
    eprintln!("\n==> floor: iperf3, one socket, {len}-byte writes (median of 3 runs)");
    let mut runs: Vec<Floor> = (0..3)
        .map(|_| iperf_once(len, prio))
        .collect::<Result<_, _>>()?;
    runs.sort_by(|a, b| a.cpu_per_gbps().total_cmp(&b.cpu_per_gbps()));
    runs.into_iter()
        .nth(1)
        .ok_or_else(|| "no iperf3 run".into())
}

fn iperf_once(len: usize, prio: &Priority) -> Result<Floor, String> {
    let port = free_port()?;
    let iperf = Path::new("iperf3");
    let mut receiver = prio
        .command(1, iperf)
        .args(["-s", "-1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3 -s: {e}"))?;
    std::thread::sleep(Duration::from_millis(500));
    let out = prio
        .command(0, iperf)
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "4", "-J"])
        .arg("-l")
        .arg(len.to_string())
        .output();
    let _ = receiver.kill();
    let _ = receiver.wait();
    let out = out.map_err(|e| format!("iperf3 -c: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let j = Json::parse(&text).map_err(|e| format!("iperf3 output ({e}): {text}"))?;
    let bps = j
        .at(&["end", "sum_sent", "bits_per_second"])
        .and_then(Json::num)
        .ok_or("iperf3: no end.sum_sent.bits_per_second")?;
    let cpu = j
        .at(&["end", "cpu_utilization_percent", "host_total"])
        .and_then(Json::num)
        .ok_or("iperf3: no end.cpu_utilization_percent.host_total")?;
    Ok(Floor {
        write_bytes: len,
        gbps: bps / 1e9,
        sender_cpu_pct: cpu,
    })
}

// -------------------------------------------------------------------------------------------
// Output
// -------------------------------------------------------------------------------------------

fn opt(v: Option<f64>, decimals: usize, unit: &str) -> String {
    v.map_or("–".into(), |v| format!("{v:.decimals$}{unit}"))
}

fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let nginx = Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    let module = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "libnginx-mod-rtmp"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "Machine: {cpus} CPUs ({model}), Linux {kernel}; {nginx} with libnginx-mod-rtmp \
         {module}; rtmp-lab at {commit}. Server on core 0, generator on core 1."
    )
}

/// "yes", or "**no**" with how many runs kept up and how many players connected.
fn kept_up_cell(r: &PointResult) -> String {
    let mut cell = if r.kept_up {
        "yes".to_string()
    } else {
        "**no**".to_string()
    };
    if r.runs > 1 && r.runs_kept_up != r.runs {
        cell.push_str(&format!(" ({} of {} runs)", r.runs_kept_up, r.runs));
    }
    if r.connected < r.players {
        cell.push_str(&format!(", {} connected", r.connected));
    }
    cell
}

fn render_table(results: &[PointResult], floors: &[Floor]) -> String {
    let mut s = String::from(
        "| server | players | kept up | server CPU % | CPU % per Gb/s (runs: min–max) | × nginx \
         | × floor | with core softirq, per Gb/s | peak RSS | delivered Mb/s | latency p50 / p99 | \
         × nginx p99 | first frame p50 | generator CPU % | CPU wait (server / gen.) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let nginx = results
            .iter()
            .find(|n| matches!(n.server, Server::Nginx) && n.players == r.players);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        };
        let floor = r
            .floor_write_bytes()
            .and_then(|len| floors.iter().find(|f| f.write_bytes == len));
        let floor_ratio = match (&r.server, floor) {
            (Server::Ours { .. }, Some(f)) => {
                ratio(r.cpu_per_gbps, Some(f.cpu_per_gbps())) + &format!(" ({} B)", f.write_bytes)
            }
            _ => "–".into(),
        };
        let (cpu_ratio, p99_ratio) = match (&r.server, nginx) {
            (Server::Nginx, _) | (_, None) => ("–".into(), "–".into()),
            (_, Some(n)) => (
                ratio(r.cpu_per_gbps, n.cpu_per_gbps),
                ratio(r.latency_p99, n.latency_p99),
            ),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {:.0} | {} / {} | {} | {} | {:.0}{} | {:.1} / {:.1} |\n",
            r.server.label(),
            r.players,
            kept_up_cell(r),
            opt(r.server_cpu_pct, 1, ""),
            opt(r.cpu_per_gbps, 1, ""),
            r.cpu_per_gbps_range
                .filter(|_| r.runs > 1)
                .map_or(String::new(), |(lo, hi)| format!(" ({lo:.1}–{hi:.1})")),
            cpu_ratio,
            floor_ratio,
            opt(r.cpu_with_softirq_per_gbps, 1, ""),
            opt(r.peak_rss_mb, 1, " MB"),
            r.delivered_mbps,
            opt(r.latency_p50, 2, ""),
            opt(r.latency_p99, 2, " ms"),
            p99_ratio,
            opt(r.first_frame_p50, 1, " ms"),
            r.generator_cpu_pct,
            if r.generator_saturated { " (saturated)" } else { "" },
            r.server_wait_pct,
            r.generator_wait_pct,
        ));
    }
    for f in floors {
        s.push_str(&format!(
            "| floor: iperf3, one socket, {} B writes | – | – | {:.1} | {:.1} | – | – | – | – | {:.0} | – | – | – | – | – |\n",
            f.write_bytes,
            f.sender_cpu_pct,
            f.cpu_per_gbps(),
            f.gbps * 1000.0
        ));
    }
    s
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn results_json(
    command: &str,
    machine: &str,
    prio: &Priority,
    clip: &Path,
    results: &[PointResult],
    floors: &[Floor],
) -> String {
    let runs: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{{\"server\":{},\"players\":{},\"runs_kept_up\":{},\"median\":{},\"runs\":[{}]}}",
                json_string(&r.server.label()),
                r.players,
                r.runs_kept_up,
                if r.raw.is_empty() { "null" } else { &r.raw },
                r.all_raw
                    .iter()
                    .filter(|x| !x.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    let floors: Vec<String> = floors
        .iter()
        .map(|f| {
            format!(
                "{{\"write_bytes\":{},\"gbps\":{:.3},\"sender_cpu_pct\":{:.1},\"cpu_pct_per_gbps\":{:.2}}}",
                f.write_bytes,
                f.gbps,
                f.sender_cpu_pct,
                f.cpu_per_gbps()
            )
        })
        .collect();
    format!(
        "{{\"command\":{},\"machine\":{},\"priority\":{},\"clip\":{},\"runs\":[{}],\"floor\":[{}]}}\n",
        json_string(command),
        json_string(machine),
        json_string(&prio.describe()),
        json_string(&clip.display().to_string()),
        runs.join(","),
        floors.join(",")
    )
}

// -------------------------------------------------------------------------------------------
// Just enough JSON to read `rtmp-lab bench --json` and `iperf3 -J` (xtask is plain std).
// -------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at {}", p.i));
        }
        Ok(v)
    }

    fn at(&self, path: &[&str]) -> Option<&Json> {
        let mut v = self;
        for key in path {
            match v {
                Json::Obj(fields) => v = &fields.iter().find(|(k, _)| k == key)?.1,
                _ => return None,
            }
        }
        Some(v)
    }

    fn num(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    fn boolean(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 64 {
            return Err("nested too deep".into());
        }
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let Json::Str(key) = self.string()? else {
                        return Err("object key".into());
                    };
                    self.ws();
                    if !self.eat(":") {
                        return Err(format!("':' expected at {}", self.i));
                    }
                    let v = self.value(depth + 1)?;
                    fields.push((key, v));
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(Json::Obj(fields));
                    }
                    return Err(format!("',' or '}}' expected at {}", self.i));
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Json::Arr(items));
                    }
                    return Err(format!("',' or ']' expected at {}", self.i));
                }
            }
            Some(b'"') => self.string(),
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(_) => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at {start}"))
            }
        }
    }

    fn string(&mut self) -> Result<Json, String> {
        if !self.eat("\"") {
            return Err(format!("string expected at {}", self.i));
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("unterminated escape".into());
                    };
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.i..self.i + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or("bad \\u escape")?;
                            self.i += 4;
                            let ch = char::from_u32(hex).unwrap_or('\u{FFFD}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
        Ok(Json::Str(String::from_utf8_lossy(&out).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bench_and_iperf_json() {
        let j =
            Json::parse(r#"{"a":{"b":[1,2.5e3,-3],"c":"x\"y\u0041"},"t":true,"n":null,"f":false}"#)
                .unwrap();
        assert_eq!(j.at(&["t"]).and_then(Json::boolean), Some(true));
        assert_eq!(j.at(&["a", "c"]), Some(&Json::Str("x\"yA".into())));
        assert_eq!(
            j.at(&["a", "b"]),
            Some(&Json::Arr(vec![
                Json::Num(1.0),
                Json::Num(2500.0),
                Json::Num(-3.0)
            ]))
        );
        assert_eq!(j.at(&["n"]), Some(&Json::Null));
        assert!(j.at(&["a", "zz"]).is_none());
        assert!(Json::parse("{\"a\":").is_err());
        assert!(Json::parse("[1,]").is_err());
    }

    #[test]
    fn options() {
        let o = parse_options(&["--quick".into()]).unwrap();
        assert_eq!(o.points, vec![100, 500]);
        let o = parse_options(&[
            "--points".into(),
            "100,1000".into(),
            "--write-coalescing-ms".into(),
            "100".into(),
        ])
        .unwrap();
        assert_eq!(o.points, vec![100, 1000]);
        assert_eq!(o.coalescing_ms, Some(100.0));
        assert!(parse_options(&["--bogus".into()]).is_err());
    }
}
