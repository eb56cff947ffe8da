//! `cargo xtask notebooks` (also a step of `cargo xtask test`): executes every
//! `notebooks/*.ipynb` headlessly and fails on the first cell that raises.
//!
//! - A venv in `target/notebooks-venv` (created with `python3 -m venv`; Debian's `python3-venv` is
//!   installed with apt-get when venv support is missing). `pip install -r
//!   notebooks/requirements.txt` runs only when the requirements (or the venv's Python) changed
//!   since the last install: their hash is kept in the venv.
//! - The notebooks call the `rtmp-lab` binary named by `RTMP_LAB_BIN`: the debug build, which
//!   `cargo xtask test` has already built for the end-to-end tests (a release build would add
//!   minutes to CI for runs that take milliseconds). A `RTMP_LAB_BIN` already in the environment
//!   is used as is.
//! - `notebooks/run_notebooks.py` runs them with nbclient, checks the committed notebooks carry no
//!   outputs, and writes the executed copies to `target/notebooks/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{apt_install, cargo, on_path, root, run};

fn venv_dir() -> PathBuf {
    root().join("target/notebooks-venv")
}

fn out_dir() -> PathBuf {
    root().join("target/notebooks")
}

fn notebooks_dir() -> PathBuf {
    root().join("notebooks")
}

/// `cargo xtask notebooks`.
pub fn run_notebooks() -> Result<(), String> {
    let started = Instant::now();
    let notebooks = list_notebooks()?;
    let python = ensure_venv()?;
    ensure_requirements(&python)?;
    let bin = rtmp_lab_binary()?;
    execute(&python, &bin, &notebooks)?;
    eprintln!("    notebooks step took {:.1?}", started.elapsed());
    Ok(())
}

/// `notebooks/*.ipynb`, sorted.
fn list_notebooks() -> Result<Vec<PathBuf>, String> {
    let dir = notebooks_dir();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ipynb"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(format!("no notebooks (*.ipynb) in {}", dir.display()));
    }
    Ok(found)
}

/// Does `python` start and have a working stdlib?
fn python_works(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import sys"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Creates the venv when missing or broken (e.g. its base Python went away); returns its python.
fn ensure_venv() -> Result<PathBuf, String> {
    let venv = venv_dir();
    let python = venv.join("bin/python");
    if python_works(&python) {
        return Ok(python);
    }
    if !on_path("python3") {
        apt_install(&["python3", "python3-venv"], "the notebooks need Python 3")?;
    }
    let create = || {
        if venv.exists() {
            std::fs::remove_dir_all(&venv)
                .map_err(|e| format!("cannot remove the broken venv {}: {e}", venv.display()))?;
        }
        run(
            "create the notebooks' venv",
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
        )
    };
    if create().is_err() {
        // Debian's python3 ships venv without ensurepip unless python3-venv is installed.
        apt_install(
            &["python3-venv"],
            "`python3 -m venv` failed (no venv/ensurepip support)",
        )?;
        create()?;
    }
    if !python_works(&python) {
        return Err(format!(
            "created {} but {} does not run",
            venv.display(),
            python.display()
        ));
    }
    Ok(python)
}

/// 64-bit FNV-1a: stable across Rust versions (unlike `DefaultHasher`), enough to notice a change.
fn fnv1a(chunks: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for &b in *chunk {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate the chunks so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `pip install -r notebooks/requirements.txt` unless the stored hash says it is done.
fn ensure_requirements(python: &Path) -> Result<(), String> {
    let req = notebooks_dir().join("requirements.txt");
    let text = std::fs::read(&req).map_err(|e| format!("cannot read {}: {e}", req.display()))?;
    let version = Command::new(python)
        .arg("--version")
        .output()
        .map(|o| [o.stdout, o.stderr].concat())
        .unwrap_or_default();
    let hash = format!("{:016x}\n", fnv1a(&[&text, &version]));
    let stamp = venv_dir().join(".requirements-hash");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == hash) {
        eprintln!(
            "\n==> notebooks' requirements unchanged (hash {}): skipping pip install",
            hash.trim()
        );
        return Ok(());
    }
    let t = Instant::now();
    run(
        "pip install the notebooks' requirements",
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "-r",
            ])
            .arg(&req),
    )
    .map_err(|e| {
        format!(
            "{e}\n  (PyPI must be reachable; the list is {})",
            req.display()
        )
    })?;
    eprintln!("    pip install took {:.1?}", t.elapsed());
    std::fs::write(&stamp, hash).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// `RTMP_LAB_BIN` if set, else the debug build of rtmp-lab (built here; a no-op in
/// `cargo xtask test`, which has just built it).
fn rtmp_lab_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("RTMP_LAB_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            return Err(format!("RTMP_LAB_BIN={} is not a file", bin.display()));
        }
        eprintln!("\n==> notebooks use RTMP_LAB_BIN={}", bin.display());
        return Ok(bin);
    }
    run(
        "build rtmp-lab for the notebooks",
        cargo().args(["build", "-p", "native-server"]),
    )?;
    Ok(root().join("target/debug/rtmp-lab"))
}

/// Runs `notebooks/run_notebooks.py` on every notebook; on failure, the error names the notebook
/// and the cell (the runner's report).
fn execute(python: &Path, bin: &Path, notebooks: &[PathBuf]) -> Result<(), String> {
    let out = out_dir();
    // Executed copies of notebooks that no longer exist would mislead.
    if let Ok(entries) = std::fs::read_dir(&out) {
        for p in entries.filter_map(Result::ok).map(|e| e.path()) {
            if p.extension().is_some_and(|x| x == "ipynb") {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    for dir in ["work", "mplconfig", "ipython"] {
        let dir = out.join(dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let mut cmd = Command::new(python);
    cmd.current_dir(notebooks_dir())
        .arg("run_notebooks.py")
        .arg("--out")
        .arg(&out)
        .args(notebooks)
        .env("RTMP_LAB_BIN", bin)
        .env("RTMP_LAB_WORK", out.join("work"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("MPLCONFIGDIR", out.join("mplconfig"))
        .env("IPYTHONDIR", out.join("ipython"));
    eprintln!("\n==> execute the notebooks ({})", notebooks.len());
    eprintln!("    $ {cmd:?}");
    let o = cmd
        .output()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprint!("{stdout}");
    // The kernel's own start/shutdown chatter is noise; everything else is shown.
    let stderr: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("[IPKernelApp]"))
        .collect();
    for line in &stderr {
        eprintln!("{line}");
    }
    if o.status.success() {
        eprintln!("    executed copies in {}", out.display());
        return Ok(());
    }
    let report: Vec<&str> = stderr
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("notebook failed:"))
        .take(40)
        .collect();
    let report = if report.is_empty() {
        format!("the runner exited with {}", o.status)
    } else {
        report.join("\n")
    };
    Err(format!(
        "a notebook failed:\n{report}\n  the executed copies, with the traceback, are in {}",
        out.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn fnv1a_is_stable_and_separates_chunks() {
        // FNV-1a of the empty input is the offset basis; the separator byte follows each chunk.
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"abc"]), fnv1a(&[b"abc"]));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_ne!(fnv1a(&[b"pandas==3.1.1\n"]), fnv1a(&[b"pandas==3.1.0\n"]));
    }
}
