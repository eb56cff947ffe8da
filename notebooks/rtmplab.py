"""Small helpers the notebooks share: find and run the `rtmp-lab` binary, build scenarios from
its presets, and load what it writes (summary JSON, trace JSON) into plain Python and pandas.

Nothing here knows the list of pipeline stages or trace columns: they are read from the data,
so the notebooks keep working when the simulator gains a stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def binary() -> Path:
    """The rtmp-lab binary: $RTMP_LAB_BIN (set by `cargo xtask notebooks`), else the newest of
    target/release/rtmp-lab and target/debug/rtmp-lab."""
    env = os.environ.get("RTMP_LAB_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"RTMP_LAB_BIN={env} is not a file")
        return path
    built = [p for p in (ROOT / "target/release/rtmp-lab", ROOT / "target/debug/rtmp-lab") if p.is_file()]
    if not built:
        raise FileNotFoundError(
            "rtmp-lab not found: run `cargo build -p native-server` (or `cargo xtask notebooks`), "
            "or point RTMP_LAB_BIN at the binary"
        )
    return max(built, key=lambda p: p.stat().st_mtime)


def workdir() -> Path:
    """Where scenario files and traces go: $RTMP_LAB_WORK (set by the xtask), else a temp dir."""
    env = os.environ.get("RTMP_LAB_WORK")
    path = Path(env) if env else Path(tempfile.mkdtemp(prefix="rtmp-lab-nb-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(*args: str) -> str:
    """Runs rtmp-lab with `args` and returns its stdout; a failure raises with its stderr."""
    cmd = [str(binary()), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def run_json(*args: str):
    return json.loads(run(*args))


def preset(name: str) -> dict:
    """A preset as a plain dict, exactly as `rtmp-lab simulate --print-scenario` prints it."""
    return tomllib.loads(run("simulate", "--preset", name, "--print-scenario"))


def simulate(scenario: dict, name: str, duration_s: float | None = None, seed: int | None = None,
             trace: bool = False):
    """Writes `scenario` to <workdir>/<name>.json, runs `rtmp-lab simulate --json` on it and
    returns the summary (and the trace JSON too when `trace`)."""
    work = workdir()
    path = work / f"{name}.json"
    path.write_text(json.dumps(scenario, indent=1))
    args = ["simulate", "--scenario", str(path), "--json", "--quiet"]
    if duration_s is not None:
        args += ["--duration", str(duration_s)]
    if seed is not None:
        args += ["--seed", str(seed)]
    out = work / f"{name}.trace.json"
    if trace:
        args += ["--out", str(out)]
    summary = run_json(*args)
    if trace:
        return summary, json.loads(out.read_text())
    return summary


def with_changes(base: dict, changes: dict) -> dict:
    """A deep copy of `base` with `changes` (nested dicts) applied on top."""
    out = json.loads(json.dumps(base))
    stack = [(out, changes)]
    while stack:
        target, patch = stack.pop()
        for key, value in patch.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                stack.append((target[key], value))
            else:
                target[key] = value
    return out


def stages(summary: dict, kind: str = "video") -> pd.DataFrame:
    """Per-stage latency percentiles (ms) for one media kind, in the order the tool reports."""
    rows = []
    for s in summary["stages"]:
        if s["kind"] != kind:
            continue
        row = {"stage": s["stage"]}
        row.update(s["latency_ms"] or {})
        rows.append(row)
    return pd.DataFrame(rows).set_index("stage")


def stage_named(summary: dict, prefix: str, kind: str = "video") -> dict:
    """The percentiles of the first stage whose name starts with `prefix` (e.g. "encode")."""
    for s in summary["stages"]:
        if s["kind"] == kind and s["stage"].startswith(prefix):
            return {"stage": s["stage"], **(s["latency_ms"] or {})}
    names = sorted({s["stage"] for s in summary["stages"]})
    raise KeyError(f"no stage starting with {prefix!r}; the tool reports {names}")


def frames(trace: dict) -> pd.DataFrame:
    """The trace's per-frame records; every `*_us` column also as `*_ms`."""
    df = pd.DataFrame(trace["frames"])
    for col in [c for c in df.columns if c.endswith("_us")]:
        df[col[:-3] + "_ms"] = df[col] / 1000.0
    return df


def series(trace: dict) -> dict:
    """Every time series in the trace ({name: DataFrame[t_s, value]}), found by shape: a
    top-level object with `points`."""
    out = {}
    for key, value in trace.items():
        if isinstance(value, dict) and "points" in value:
            df = pd.DataFrame(value["points"], columns=["t_us", "value"])
            df["t_s"] = df["t_us"] / 1e6
            df.attrs.update(name=value.get("name", key), unit=value.get("unit", ""))
            out[key] = df
    return out


def series_like(trace: dict, word: str) -> pd.DataFrame:
    """The one series whose key or name contains `word` (case-insensitive)."""
    hits = [df for key, df in series(trace).items()
            if word.lower() in key.lower() or word.lower() in df.attrs["name"].lower()]
    if len(hits) != 1:
        raise KeyError(f"{len(hits)} series match {word!r}; the trace has {list(series(trace))}")
    return hits[0]
