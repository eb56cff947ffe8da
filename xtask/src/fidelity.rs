//! `cargo xtask fidelity`: how close the simulator comes to the real thing, row by row.
//!
//! Each row of [`MATRIX`] is a scenario: [`BASE`] with one or two factors changed. For every row
//! the xtask runs `rtmp-lab experiment --link emulated --publisher replay` (the simulator's own
//! frames sent for real, through the TUN link emulator, to the in-process server and a player
//! probe, with real kernel TCP) and reads the run's `fidelity.json` (written by
//! `native-server/src/experiment/fidelity.rs`, which defines the steady-state window and the
//! figures). A row passes when the simulated steady-state p50 and p95 of per-frame latency
//! (publisher send → player arrival) and the player's start-up are each within 10 % or 5 ms of
//! the measured ones, whichever is larger. The two TCP Fast Open rows are compared as a pair:
//! the modelled saving of a repeat connection against the measured one.
//!
//! Outputs: `target/fidelity/<row>/` (the experiment's files, `table.txt`), `target/fidelity/
//! summary.json` and the generated block of `docs/fidelity.md` (between the `fidelity:begin` /
//! `fidelity:end` markers, so the hand-written analysis around it survives a regeneration).
//!
//! `cargo xtask test` runs [`QUICK_ROWS`] for a few seconds each with a looser bound (25 % or
//! 5 ms), and skips them, saying why, when the emulator cannot run (not root, no /dev/net/tun).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{cargo, is_root, root, run};

/// One scenario value: (TOML table, key, TOML value). The table `link` stands for both
/// `uplink` and `downlink` (`link.jitter`, `link.loss` likewise).
type Change = (&'static str, &'static str, &'static str);

/// The base every row starts from: 720p30 x264 veryfast CBR 3 Mb/s with 2 s keyframes and AAC
/// 128 kb/s, replayed; 10 Mb/s each way with 40 ms RTT, no jitter, no loss; TCP_NODELAY on the
/// publisher and the server; GOP cache on, chunk size 4096; one player joining at 3 s; Reno in
/// the emulator's namespaces.
pub const BASE: &[Change] = &[
    ("", "duration_s", "15.0"),
    ("", "seed", "1"),
    ("encoder", "width", "1280"),
    ("encoder", "height", "720"),
    ("encoder", "keyframe_interval_frames", "60"),
    ("audio", "bitrate_kbps", "128.0"),
    ("rate_control", "bitrate_kbps", "3000.0"),
    ("rate_control", "vbv_buffer_kbits", "3000.0"),
    ("link", "propagation_ms", "20.0"),
    ("link", "bottleneck_kbps", "10000.0"),
    ("link.jitter", "ms", "0.0"),
    ("publisher_tcp", "nodelay", "true"),
    ("server_tcp", "nodelay", "true"),
    ("players", "count", "1"),
    ("players", "join_at_s", "3.0"),
    ("experiment", "publisher", "\"replay\""),
    ("experiment", "congestion_control", "\"reno\""),
];

/// One row of the matrix.
pub struct Row {
    pub id: &'static str,
    /// What differs from the base, for the table.
    pub varies: &'static str,
    pub changes: &'static [Change],
    /// The start-up pair this row belongs to (`Some(true)`: TFO on).
    pub tfo: Option<bool>,
}

const fn row(id: &'static str, varies: &'static str, changes: &'static [Change]) -> Row {
    Row {
        id,
        varies,
        changes,
        tfo: None,
    }
}

/// Repeat connections for the TCP Fast Open pair: four players joining 2 s apart from the
/// same address (the first fetches the cookie; the other three are repeat connections).
const TFO_PLAYERS: &[Change] = &[
    ("players", "count", "4"),
    ("players", "join_spread_s", "6.0"),
    ("server", "gop_cache", "false"),
];

/// The matrix: the base, then one or two factors at a time.
pub const MATRIX: &[Row] = &[
    row("base", "— (40 ms RTT, 10 Mb/s, 3 Mb/s stream)", &[]),
    row("rtt-0", "RTT 0 ms", &[("link", "propagation_ms", "0.0")]),
    row(
        "rtt-100",
        "RTT 100 ms",
        &[("link", "propagation_ms", "50.0")],
    ),
    row(
        "jitter-10",
        "jitter ±10 ms",
        &[("link.jitter", "ms", "10.0")],
    ),
    row(
        "jitter-30-rtt-100",
        "jitter ±30 ms, RTT 100 ms",
        &[
            ("link", "propagation_ms", "50.0"),
            ("link.jitter", "ms", "30.0"),
        ],
    ),
    row(
        "loss-0.5",
        "loss 0.5 %",
        &[
            ("link.loss", "model", "\"bernoulli\""),
            ("link.loss", "p", "0.005"),
        ],
    ),
    row(
        "loss-1",
        "loss 1 %",
        &[
            ("link.loss", "model", "\"bernoulli\""),
            ("link.loss", "p", "0.01"),
        ],
    ),
    row(
        "loss-1-stream-1M",
        "loss 1 %, stream 1 Mb/s",
        &[
            ("link.loss", "model", "\"bernoulli\""),
            ("link.loss", "p", "0.01"),
            ("rate_control", "bitrate_kbps", "1000.0"),
            ("rate_control", "vbv_buffer_kbits", "1000.0"),
        ],
    ),
    row(
        "stream-1M",
        "stream 1 Mb/s",
        &[
            ("rate_control", "bitrate_kbps", "1000.0"),
            ("rate_control", "vbv_buffer_kbits", "1000.0"),
        ],
    ),
    row(
        "stream-6M",
        "stream 6 Mb/s",
        &[
            ("rate_control", "bitrate_kbps", "6000.0"),
            ("rate_control", "vbv_buffer_kbits", "6000.0"),
        ],
    ),
    row(
        "link-4M",
        "bottleneck 4 Mb/s",
        &[("link", "bottleneck_kbps", "4000.0")],
    ),
    row(
        "gop-cache-off",
        "GOP cache off",
        &[("server", "gop_cache", "false")],
    ),
    row(
        "nagle-publisher",
        "publisher TCP_NODELAY off",
        &[("publisher_tcp", "nodelay", "false")],
    ),
    row(
        "nagle-server",
        "server TCP_NODELAY off",
        &[("server_tcp", "nodelay", "false")],
    ),
    row(
        "chunk-128",
        "chunk size 128",
        &[
            ("rtmp", "publisher_chunk_size", "128"),
            ("server", "chunk_size", "128"),
        ],
    ),
    row(
        "obs-like",
        "publisher Nagle, jitter ±2 ms, 6 Mb/s stream, 20/50 Mb/s",
        &[
            ("publisher_tcp", "nodelay", "false"),
            ("link.jitter", "ms", "2.0"),
            ("rate_control", "bitrate_kbps", "6000.0"),
            ("rate_control", "vbv_buffer_kbits", "6000.0"),
            ("uplink", "bottleneck_kbps", "20000.0"),
            ("downlink", "bottleneck_kbps", "50000.0"),
        ],
    ),
    Row {
        id: "tfo-off",
        varies: "4 players 2 s apart, TCP Fast Open off",
        changes: TFO_PLAYERS,
        tfo: Some(false),
    },
    Row {
        id: "tfo-on",
        varies: "4 players 2 s apart, TCP Fast Open on",
        changes: &[
            ("players", "count", "4"),
            ("players", "join_spread_s", "6.0"),
            ("server", "gop_cache", "false"),
            ("server_tcp", "fast_open", "true"),
        ],
        tfo: Some(true),
    },
];

/// The rows `cargo xtask test` runs.
pub const QUICK_ROWS: &[&str] = &["base", "nagle-publisher", "jitter-10"];

/// Bounds: the target, and the looser one of the quick subset on a busy machine.
const TARGET: Bound = Bound {
    rel: 0.10,
    abs_ms: 5.0,
};
const QUICK: Bound = Bound {
    rel: 0.25,
    abs_ms: 5.0,
};

/// Quick runs: seconds of capture and the player's join.
const QUICK_DURATION_S: &str = "8.0";
const QUICK_JOIN_S: &str = "2.0";

#[derive(Clone, Copy)]
struct Bound {
    rel: f64,
    abs_ms: f64,
}

impl Bound {
    fn ok(&self, sim: f64, measured: f64) -> bool {
        (sim - measured).abs() <= (self.rel * measured.abs()).max(self.abs_ms)
    }

    fn label(&self) -> String {
        format!(
            "within {:.0} % or {:.0} ms, whichever is larger",
            self.rel * 100.0,
            self.abs_ms
        )
    }
}

/// The TOML of a row's scenario.
pub fn scenario_toml(row: &Row, quick: bool) -> String {
    let mut tables: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut set = |table: &str, key: &str, value: &str| {
        let targets: Vec<String> = match table.strip_prefix("link") {
            Some(rest) if rest.is_empty() || rest.starts_with('.') => {
                vec![format!("uplink{rest}"), format!("downlink{rest}")]
            }
            _ => vec![table.to_owned()],
        };
        for t in targets {
            let idx = match tables.iter().position(|(name, _)| *name == t) {
                Some(i) => i,
                None => {
                    tables.push((t.clone(), Vec::new()));
                    tables.len() - 1
                }
            };
            let entries = &mut tables[idx].1;
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some(e) => e.1 = value.to_owned(),
                None => entries.push((key.to_owned(), value.to_owned())),
            }
        }
    };
    set("", "name", &format!("\"fidelity-{}\"", row.id));
    for (t, k, v) in BASE.iter().chain(row.changes) {
        set(t, k, v);
    }
    if quick {
        set("", "duration_s", QUICK_DURATION_S);
        set("players", "join_at_s", QUICK_JOIN_S);
    }
    let mut out = format!(
        "# cargo xtask fidelity, row {:?}: {}\n# (xtask/src/fidelity.rs: BASE + the row's changes)\n",
        row.id, row.varies
    );
    // Top-level keys first, then the tables in order (a sub-table after its parent).
    tables.sort_by_key(|(name, _)| !name.is_empty());
    for (name, entries) in &tables {
        if !name.is_empty() {
            let _ = writeln!(out, "\n[{name}]");
        }
        for (k, v) in entries {
            let _ = writeln!(out, "{k} = {v}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// fidelity.json: one flat object
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
}

/// Parses a flat JSON object (values: numbers, strings, booleans, null), which is all
/// `fidelity.json` holds; anything else is an error.
fn parse_flat_json(text: &str) -> Result<BTreeMap<String, Val>, String> {
    let b = text.as_bytes();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let string = |i: &mut usize| -> Result<String, String> {
        if b.get(*i) != Some(&b'"') {
            return Err(format!("expected a string at byte {i}"));
        }
        *i += 1;
        let mut s = String::new();
        loop {
            match b.get(*i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    *i += 1;
                    return Ok(s);
                }
                Some(b'\\') => {
                    let c = b.get(*i + 1).ok_or("bad escape")?;
                    match c {
                        b'n' => s.push('\n'),
                        b't' => s.push('\t'),
                        b'r' => s.push('\r'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'u' => {
                            let hex = text.get(*i + 2..*i + 6).ok_or("bad \\u escape")?;
                            let code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            *i += 4;
                        }
                        other => s.push(*other as char),
                    }
                    *i += 2;
                }
                Some(_) => {
                    // Copy one UTF-8 character.
                    let rest = &text[*i..];
                    let ch = rest.chars().next().ok_or("bad UTF-8")?;
                    s.push(ch);
                    *i += ch.len_utf8();
                }
            }
        }
    };
    let mut out = BTreeMap::new();
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return Err("expected an object".into());
    }
    i += 1;
    loop {
        ws(&mut i);
        if b.get(i) == Some(&b'}') {
            break;
        }
        let key = string(&mut i)?;
        ws(&mut i);
        if b.get(i) != Some(&b':') {
            return Err(format!("expected ':' after {key:?}"));
        }
        i += 1;
        ws(&mut i);
        let val = match b.get(i) {
            Some(b'"') => Val::Str(string(&mut i)?),
            Some(b'{') | Some(b'[') => {
                return Err(format!("{key:?}: nested values are not expected"))
            }
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b'}') && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                match &text[start..i] {
                    "true" => Val::Bool(true),
                    "false" => Val::Bool(false),
                    "null" => Val::Null,
                    n => Val::Num(
                        n.parse::<f64>()
                            .map_err(|_| format!("{key:?}: not a number: {n:?}"))?,
                    ),
                }
            }
        };
        out.insert(key, val);
        ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            _ => return Err("expected ',' or '}'".into()),
        }
    }
    Ok(out)
}

/// A row's figures, from its `fidelity.json`.
#[derive(Debug, Clone, Default)]
struct Figures {
    emulated: bool,
    link: String,
    congestion_control: String,
    frames: f64,
    sim_p50: Option<f64>,
    meas_p50: Option<f64>,
    sim_p95: Option<f64>,
    meas_p95: Option<f64>,
    startup_sim: Option<f64>,
    startup_meas: Option<f64>,
    repeat_probes: f64,
    repeat_tfo: f64,
    repeat_startup_meas: Option<f64>,
    uplink_sim_p50: Option<f64>,
    uplink_meas_p50: Option<f64>,
    downlink_sim_p50: Option<f64>,
    downlink_meas_p50: Option<f64>,
    all_sim_p95: Option<f64>,
    all_meas_p95: Option<f64>,
}

fn figures(map: &BTreeMap<String, Val>) -> Figures {
    let num = |k: &str| match map.get(k) {
        Some(Val::Num(x)) => Some(*x),
        _ => None,
    };
    let text = |k: &str| match map.get(k) {
        Some(Val::Str(s)) => s.clone(),
        _ => String::new(),
    };
    Figures {
        emulated: map.get("emulated") == Some(&Val::Bool(true)),
        link: text("link"),
        congestion_control: text("congestion_control"),
        frames: num("steady_video_frames").unwrap_or(0.0),
        sim_p50: num("sim_p50_ms"),
        meas_p50: num("measured_p50_ms"),
        sim_p95: num("sim_p95_ms"),
        meas_p95: num("measured_p95_ms"),
        startup_sim: num("startup_sim_ms"),
        startup_meas: num("startup_measured_ms"),
        repeat_probes: num("repeat_probes").unwrap_or(0.0),
        repeat_tfo: num("repeat_fast_open_used").unwrap_or(0.0),
        repeat_startup_meas: num("repeat_startup_measured_ms"),
        uplink_sim_p50: num("uplink_sim_p50_ms"),
        uplink_meas_p50: num("uplink_measured_p50_ms"),
        downlink_sim_p50: num("downlink_sim_p50_ms"),
        downlink_meas_p50: num("downlink_measured_p50_ms"),
        all_sim_p95: num("all_sim_p95_ms"),
        all_meas_p95: num("all_measured_p95_ms"),
    }
}

/// One row's outcome.
struct Outcome {
    row: &'static Row,
    figures: Figures,
    seconds: f64,
    p50_ok: bool,
    p95_ok: bool,
    startup_ok: bool,
    error: Option<String>,
}

impl Outcome {
    fn pass(&self) -> bool {
        self.error.is_none() && self.p50_ok && self.p95_ok && self.startup_ok
    }
}

fn check(bound: Bound, a: Option<f64>, b: Option<f64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if bound.ok(a, b))
}

/// Runs one row with `bin`; the experiment's files go to `dir`.
fn run_row(bin: &Path, row: &'static Row, dir: &Path, quick: bool, bound: Bound) -> Outcome {
    let started = Instant::now();
    let fail = |e: String, seconds: f64| Outcome {
        row,
        figures: Figures::default(),
        seconds,
        p50_ok: false,
        p95_ok: false,
        startup_ok: false,
        error: Some(e),
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(format!("create {}: {e}", dir.display()), 0.0);
    }
    let input = dir.join("input.toml");
    if let Err(e) = std::fs::write(&input, scenario_toml(row, quick)) {
        return fail(format!("write {}: {e}", input.display()), 0.0);
    }
    eprintln!("\n==> fidelity row {}: {}", row.id, row.varies);
    let output = Command::new(bin)
        .args(["experiment", "--link", "emulated", "--publisher", "replay"])
        .arg("--scenario")
        .arg(&input)
        .arg("--out")
        .arg(dir)
        .output();
    let seconds = started.elapsed().as_secs_f64();
    let output = match output {
        Ok(o) => o,
        Err(e) => return fail(format!("could not run {}: {e}", bin.display()), seconds),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::write(dir.join("table.txt"), format!("{stdout}{stderr}"));
    if !output.status.success() {
        return fail(
            format!(
                "rtmp-lab experiment failed ({}): {}",
                output.status,
                stderr.trim()
            ),
            seconds,
        );
    }
    let json = match std::fs::read_to_string(dir.join("fidelity.json")) {
        Ok(t) => t,
        Err(e) => return fail(format!("no fidelity.json: {e}"), seconds),
    };
    let map = match parse_flat_json(&json) {
        Ok(m) => m,
        Err(e) => return fail(format!("fidelity.json: {e}"), seconds),
    };
    let f = figures(&map);
    if !f.emulated {
        return fail(
            format!(
                "the run was not over the emulated link ({}); the fidelity matrix needs the \
                 link emulator",
                f.link
            ),
            seconds,
        );
    }
    let out = Outcome {
        row,
        p50_ok: check(bound, f.sim_p50, f.meas_p50),
        p95_ok: check(bound, f.sim_p95, f.meas_p95),
        startup_ok: check(bound, f.startup_sim, f.startup_meas),
        figures: f,
        seconds,
        error: None,
    };
    eprintln!(
        "    {}: p50 {} / {}, p95 {} / {}, start-up {} / {} (simulated / measured, ms) in {:.0} s",
        if out.pass() { "pass" } else { "MISS" },
        ms(out.figures.sim_p50),
        ms(out.figures.meas_p50),
        ms(out.figures.sim_p95),
        ms(out.figures.meas_p95),
        ms(out.figures.startup_sim),
        ms(out.figures.startup_meas),
        out.seconds
    );
    out
}

fn ms(x: Option<f64>) -> String {
    x.map_or("–".to_owned(), |x| format!("{x:.1}"))
}

fn err(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.abs() > 0.0 => {
            format!("{:+.1} ({:+.0} %)", a - b, (a / b - 1.0) * 100.0)
        }
        (Some(a), Some(b)) => format!("{:+.1}", a - b),
        _ => "–".into(),
    }
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

/// The TCP Fast Open pair: (modelled saving, measured saving, pass), ms.
fn tfo_pair(outcomes: &[Outcome], bound: Bound) -> Option<(f64, f64, bool, f64, f64)> {
    let find = |on: bool| {
        outcomes
            .iter()
            .find(|o| o.row.tfo == Some(on) && o.error.is_none())
    };
    let (off, on) = (find(false)?, find(true)?);
    let modelled = off.figures.startup_sim? - on.figures.startup_sim?;
    let measured = off.figures.repeat_startup_meas? - on.figures.repeat_startup_meas?;
    let ok = bound.ok(modelled, measured);
    Some((
        modelled,
        measured,
        ok,
        on.figures.repeat_tfo,
        on.figures.repeat_probes,
    ))
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// "2 × AMD EPYC …, Linux 6.x, load 3.1" for the report.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpus} × {model}, Linux {}",
        sh("uname", &["-r"]).if_empty("unknown")
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_owned()
        } else {
            self
        }
    }
}

fn json_num(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => "null".into(),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `target/fidelity/summary.json`.
fn summary_json(outcomes: &[Outcome], bound: Bound, quick: bool, total_s: f64) -> String {
    let mut rows = Vec::new();
    for o in outcomes {
        let f = &o.figures;
        rows.push(format!(
            "    {{\"id\": {}, \"varies\": {}, \"dir\": {}, \"pass\": {}, \"p50_ok\": {}, \
             \"p95_ok\": {}, \"startup_ok\": {}, \"error\": {}, \"seconds\": {:.1}, \
             \"steady_video_frames\": {}, \"sim_p50_ms\": {}, \"measured_p50_ms\": {}, \
             \"sim_p95_ms\": {}, \"measured_p95_ms\": {}, \"startup_sim_ms\": {}, \
             \"startup_measured_ms\": {}, \"repeat_startup_measured_ms\": {}, \
             \"repeat_fast_open_used\": {}, \"repeat_probes\": {}, \"tfo\": {}}}",
            json_str(o.row.id),
            json_str(o.row.varies),
            json_str(o.row.id),
            o.pass(),
            o.p50_ok,
            o.p95_ok,
            o.startup_ok,
            o.error.as_deref().map_or("null".into(), json_str),
            o.seconds,
            f.frames,
            json_num(f.sim_p50),
            json_num(f.meas_p50),
            json_num(f.sim_p95),
            json_num(f.meas_p95),
            json_num(f.startup_sim),
            json_num(f.startup_meas),
            json_num(f.repeat_startup_meas),
            f.repeat_tfo,
            f.repeat_probes,
            o.row.tfo.map_or("null".into(), |t| t.to_string()),
        ));
    }
    let tfo = match tfo_pair(outcomes, bound) {
        Some((m, x, ok, used, n)) => format!(
            "{{\"modelled_saving_ms\": {m}, \"measured_saving_ms\": {x}, \"pass\": {ok}, \
             \"repeat_connections_using_tfo\": {used}, \"repeat_connections\": {n}}}"
        ),
        None => "null".into(),
    };
    format!(
        "{{\n  \"quick\": {quick},\n  \"bound_rel\": {},\n  \"bound_abs_ms\": {},\n  \
         \"machine\": {},\n  \"seconds\": {total_s:.1},\n  \"passed\": {},\n  \"rows_total\": {},\n  \
         \"tfo\": {tfo},\n  \"rows\": [\n{}\n  ]\n}}\n",
        bound.rel,
        bound.abs_ms,
        json_str(&machine()),
        outcomes.iter().filter(|o| o.pass()).count(),
        outcomes.len(),
        rows.join(",\n")
    )
}

/// The generated block of docs/fidelity.md.
fn markdown(outcomes: &[Outcome], bound: Bound, quick: bool, total_s: f64, load: &str) -> String {
    let mut md = String::new();
    let passed = outcomes.iter().filter(|o| o.pass()).count();
    let cc = outcomes
        .iter()
        .map(|o| o.figures.congestion_control.as_str())
        .find(|c| !c.is_empty())
        .unwrap_or("?");
    let _ = writeln!(
        md,
        "Regenerate with `cargo xtask fidelity{}` (root, Linux: the TUN link emulator). Last \
         run: {}, {:.0} s for {} rows, load average {load} → {}; congestion control in the \
         emulator's namespaces: {cc}. Bound: {}.\n",
        if quick { " --quick" } else { "" },
        machine(),
        total_s,
        outcomes.len(),
        loadavg(),
        bound.label()
    );
    let _ = writeln!(
        md,
        "**{passed} of {} rows pass** (p50, p95 and start-up all within the bound).\n",
        outcomes.len()
    );
    let _ = writeln!(
        md,
        "| row | varies | frames | p50 sim | p50 meas | p50 error | p95 sim | p95 meas | p95 \
         error | start-up sim | start-up meas | start-up error | |"
    );
    let _ = writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for o in outcomes {
        let f = &o.figures;
        if let Some(e) = &o.error {
            let _ = writeln!(
                md,
                "| `{}` | {} | | | | | | | | | | | ✗ {} |",
                o.row.id,
                o.row.varies,
                e.replace('|', "/").replace('\n', " ")
            );
            continue;
        }
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.0} | {} | {} | {} {} | {} | {} | {} {} | {} | {} | {} {} | {} |",
            o.row.id,
            o.row.varies,
            f.frames,
            ms(f.sim_p50),
            ms(f.meas_p50),
            err(f.sim_p50, f.meas_p50),
            mark(o.p50_ok),
            ms(f.sim_p95),
            ms(f.meas_p95),
            err(f.sim_p95, f.meas_p95),
            mark(o.p95_ok),
            ms(f.startup_sim),
            ms(f.startup_meas),
            err(f.startup_sim, f.startup_meas),
            mark(o.startup_ok),
            if o.pass() { "pass" } else { "**miss**" }
        );
    }
    let _ = writeln!(
        md,
        "\nPer-frame latency: video, publisher `write()` → the player's read of the frame's \
         last byte, over the steady-state window (from 1 s after the later of the two traces' \
         join bursts has been delivered; the same frames on both sides). Start-up: the first \
         player's TCP connect → `NetStream.Play.Start`. All times in ms.\n"
    );
    let _ = writeln!(
        md,
        "The two hops at p50 (publisher → server, server → player), simulated / measured, and \
         the whole-run p95 with the join burst:\n"
    );
    let _ = writeln!(
        md,
        "| row | publisher → server | server → player | whole-run p95 (burst) | run time |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for o in outcomes.iter().filter(|o| o.error.is_none()) {
        let f = &o.figures;
        let _ = writeln!(
            md,
            "| `{}` | {} / {} | {} / {} | {} / {} | {:.0} s |",
            o.row.id,
            ms(f.uplink_sim_p50),
            ms(f.uplink_meas_p50),
            ms(f.downlink_sim_p50),
            ms(f.downlink_meas_p50),
            ms(f.all_sim_p95),
            ms(f.all_meas_p95),
            o.seconds
        );
    }
    if let Some((modelled, measured, ok, used, n)) = tfo_pair(outcomes, bound) {
        let on = outcomes.iter().find(|o| o.row.tfo == Some(true));
        let off = outcomes.iter().find(|o| o.row.tfo == Some(false));
        let rep = |o: Option<&Outcome>| ms(o.and_then(|o| o.figures.repeat_startup_meas));
        let _ =
            writeln!(
            md,
            "\n**TCP Fast Open, repeat connections** (`tfo-off` / `tfo-on`: players 2–4 connect \
             again to the server the first one fetched a cookie from): mean start-up {} ms \
             without and {} ms with TFO; {used:.0} of {n:.0} repeat connections carried data on \
             the SYN. Saving: modelled {modelled:.1} ms, measured {measured:.1} ms — {}.\n",
            rep(off),
            rep(on),
            if ok { "within the bound" } else { "**outside the bound**" }
        );
    }
    md
}

const BEGIN: &str = "<!-- fidelity:begin (generated by `cargo xtask fidelity`; edit outside) -->";
const END: &str = "<!-- fidelity:end -->";

/// Replaces the generated block of `path` (creating the file with a title when missing).
fn write_doc(path: &Path, block: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path)
        .unwrap_or_else(|_| format!("# Fidelity: simulated vs measured\n\n{BEGIN}\n{END}\n"));
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{BEGIN}\n{block}{}", &old[..a], &old[b..])
        }
        _ => format!("{old}\n{BEGIN}\n{block}{END}\n"),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, new).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Can the link emulator run here? `Err(why not)` otherwise.
pub fn emulator_available() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("the link emulator needs Linux".into());
    }
    if !is_root() {
        return Err("the link emulator needs root (network namespaces, TUN devices)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun does not exist (no TUN support)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err("the `ip` command (iproute2) is missing".into());
    }
    Ok(())
}

fn out_root() -> PathBuf {
    root().join("target/fidelity")
}

/// Runs `rows` with `bin`; returns the outcomes and the seconds taken.
fn run_rows(bin: &Path, rows: &[&'static Row], quick: bool, bound: Bound) -> (Vec<Outcome>, f64) {
    let started = Instant::now();
    let base = out_root().join(if quick { "quick" } else { "full" });
    let outcomes: Vec<Outcome> = rows
        .iter()
        .map(|row| run_row(bin, row, &base.join(row.id), quick, bound))
        .collect();
    (outcomes, started.elapsed().as_secs_f64())
}

/// `cargo xtask fidelity [--quick] [--out FILE] [--rows a,b,…] [--bin RTMP_LAB]` (`--bin`: use
/// that binary instead of building the release one, e.g. the debug build `cargo xtask test`
/// uses).
pub fn fidelity(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    let mut out: Option<PathBuf> = None;
    let mut only: Option<Vec<String>> = None;
    let mut bin: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(PathBuf::from(it.next().ok_or("--out needs a file")?)),
            "--bin" => bin = Some(PathBuf::from(it.next().ok_or("--bin needs a path")?)),
            "--rows" => {
                only = Some(
                    it.next()
                        .ok_or("--rows needs a comma-separated list")?
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: cargo xtask fidelity [--quick] \
                     [--out FILE] [--rows ID,…] [--bin RTMP_LAB]"
                ))
            }
        }
    }
    emulator_available().map_err(|e| format!("cargo xtask fidelity: {e}"))?;
    let rows: Vec<&'static Row> = match &only {
        Some(ids) => {
            let mut v = Vec::new();
            for id in ids {
                v.push(MATRIX.iter().find(|r| r.id == id).ok_or_else(|| {
                    format!(
                        "no row {id:?}; rows: {}",
                        MATRIX.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
                    )
                })?);
            }
            v
        }
        None if quick => QUICK_ROWS
            .iter()
            .filter_map(|id| MATRIX.iter().find(|r| r.id == *id))
            .collect(),
        None => MATRIX.iter().collect(),
    };
    let bin = match bin {
        Some(b) => b,
        None => {
            run(
                "build rtmp-lab (release)",
                cargo().args(["build", "--release", "-p", "native-server"]),
            )?;
            root().join("target/release/rtmp-lab")
        }
    };
    let bound = if quick { QUICK } else { TARGET };
    let load = loadavg();
    let (outcomes, total) = run_rows(&bin, &rows, quick, bound);
    report(&outcomes, bound, quick, total, &load, out, only.is_some())
}

fn report(
    outcomes: &[Outcome],
    bound: Bound,
    quick: bool,
    total: f64,
    load: &str,
    out: Option<PathBuf>,
    partial: bool,
) -> Result<(), String> {
    let dir = out_root();
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    // The full matrix is summary.json / latest.md (what the notebook and the docs read); a
    // quick or partial run does not overwrite it.
    let stem = match (quick, partial) {
        (true, _) => "quick",
        (false, true) => "partial",
        (false, false) => "summary",
    };
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&json, summary_json(outcomes, bound, quick, total))
        .map_err(|e| format!("write {}: {e}", json.display()))?;
    let block = markdown(outcomes, bound, quick, total, load);
    // The docs get the full matrix; a quick or partial run writes only where asked.
    let doc = match out {
        Some(p) => Some(p),
        None if !quick && !partial => Some(root().join("docs/fidelity.md")),
        None => None,
    };
    if let Some(doc) = &doc {
        write_doc(doc, &block)?;
    }
    let md = dir.join(if stem == "summary" {
        "latest.md".to_owned()
    } else {
        format!("{stem}.md")
    });
    std::fs::write(&md, &block).map_err(|e| format!("write {}: {e}", md.display()))?;
    eprintln!("\n{block}");
    eprintln!(
        "wrote {}{}",
        json.display(),
        doc.map_or(String::new(), |d| format!(", {}", d.display()))
    );
    let missed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.pass())
        .map(|o| o.row.id)
        .collect();
    let tfo_ok = tfo_pair(outcomes, bound).is_none_or(|t| t.2);
    if missed.is_empty() && tfo_ok {
        eprintln!(
            "fidelity: all {} rows {} ({total:.0} s)",
            outcomes.len(),
            bound.label()
        );
        Ok(())
    } else {
        Err(format!(
            "fidelity: {} of {} rows miss ({}: {}){}",
            missed.len(),
            outcomes.len(),
            bound.label(),
            missed.join(", "),
            if tfo_ok {
                ""
            } else {
                "; the TCP Fast Open saving is outside the bound"
            }
        ))
    }
}

/// `cargo xtask test`'s subset: [`QUICK_ROWS`], short, 25 % / 5 ms, with `bin` (the debug
/// build the end-to-end tests use). Skipped with a message when the emulator cannot run.
pub fn quick_in_test(bin: &Path) -> Result<(), String> {
    if let Err(why) = emulator_available() {
        eprintln!(
            "\n==> fidelity subset SKIPPED: {why}. (CI runs as root; run `sudo cargo xtask \
             fidelity --quick` to check by hand.)"
        );
        return Ok(());
    }
    let rows: Vec<&'static Row> = QUICK_ROWS
        .iter()
        .filter_map(|id| MATRIX.iter().find(|r| r.id == *id))
        .collect();
    let load = loadavg();
    let (outcomes, total) = run_rows(bin, &rows, true, QUICK);
    report(&outcomes, QUICK, true, total, &load, None, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_json_reads_what_fidelity_json_holds() {
        let m = parse_flat_json(
            "{\n  \"a\": 1.5,\n  \"b\": \"x \\\"y\\\" — z\",\n  \"c\": null,\n  \"d\": true,\n  \
             \"e\": -2e3\n}",
        )
        .unwrap();
        assert_eq!(m["a"], Val::Num(1.5));
        assert_eq!(m["b"], Val::Str("x \"y\" — z".into()));
        assert_eq!(m["c"], Val::Null);
        assert_eq!(m["d"], Val::Bool(true));
        assert_eq!(m["e"], Val::Num(-2000.0));
        assert!(parse_flat_json("{\"a\": [1]}").is_err());
        assert_eq!(parse_flat_json("{}").unwrap().len(), 0);
    }

    #[test]
    fn rows_are_unique_and_link_expands_to_both_directions() {
        let mut ids: Vec<&str> = MATRIX.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), MATRIX.len());
        assert!(MATRIX.len() >= 12);
        for q in QUICK_ROWS {
            assert!(ids.contains(q));
        }
        let jitter = MATRIX.iter().find(|r| r.id == "jitter-10").unwrap();
        let toml = scenario_toml(jitter, false);
        assert!(toml.contains("[uplink.jitter]\nms = 10.0"), "{toml}");
        assert!(toml.contains("[downlink.jitter]\nms = 10.0"), "{toml}");
        assert!(toml.contains("name = \"fidelity-jitter-10\""));
        let quick = scenario_toml(jitter, true);
        assert!(quick.contains(&format!("duration_s = {QUICK_DURATION_S}")));
    }

    #[test]
    fn the_bound_is_relative_or_absolute() {
        assert!(TARGET.ok(110.0, 100.0));
        assert!(!TARGET.ok(111.0, 100.0));
        assert!(TARGET.ok(24.0, 20.0));
        assert!(QUICK.ok(124.0, 100.0));
    }

    #[test]
    fn the_doc_block_is_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("xtask-fid-{}", std::process::id()));
        let path = dir.join("f.md");
        write_doc(&path, "one\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("intro\n{text}outro\n")).unwrap();
        write_doc(&path, "two\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("intro\n"));
        assert!(text.ends_with("outro\n"));
        assert!(text.contains("two\n") && !text.contains("one\n"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
