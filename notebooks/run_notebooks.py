"""Executes notebooks headlessly with nbclient and writes the executed copies elsewhere.

    python run_notebooks.py --out DIR NOTEBOOK.ipynb...   # run; exit 1 if any cell fails
    python run_notebooks.py --clear NOTEBOOK.ipynb...     # strip outputs in place

`cargo xtask notebooks` runs this inside its venv. The source notebooks must be committed
without outputs (checked here); the executed copies go to --out.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

# The kernel is this interpreter's ipykernel: put the venv's kernelspecs first, ahead of any
# user-level `python3` kernel that would point at another Python.
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    p for p in [str(Path(sys.prefix) / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")] if p
)
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

import nbformat  # noqa: E402
from traitlets.config import Config  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError  # noqa: E402


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def dirty_cells(nb) -> list[int]:
    """Indices of code cells that carry outputs or an execution count."""
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]


def clear(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
    nbformat.write(nb, path)
    print(f"cleared {path}")


def failing_cell(nb):
    """(index, code-cell number, cell) of the first cell with an error output."""
    number = 0
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        number += 1
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            return i, number, c
    return None


def execute(path: Path, out_dir: Path, timeout: int) -> str | None:
    """Runs one notebook; returns None on success or a message naming the failing cell."""
    nb = nbformat.read(path, as_version=4)
    dirty = dirty_cells(nb)
    if dirty:
        return (
            f"{path.name}: cells {dirty} are committed with outputs; keep the source notebooks "
            f"output-free (`python {Path(__file__).name} --clear {path}`)"
        )
    # The kernel talks over Unix sockets in a private temp dir, not TCP ports on loopback.
    sockets = tempfile.TemporaryDirectory(prefix="nb-kernel-")
    kernel = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets.name) / "k")}})
    client = NotebookClient(
        nb,
        config=kernel,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.monotonic()
    error = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        found = failing_cell(nb)
        if found:
            index, number, cell = found
            err = next(o for o in cell.outputs if o.get("output_type") == "error")
            frames = [ANSI.sub("", f) for f in err.get("traceback", [])]
            # The frame inside the cell ("Cell In[n], line k" with an arrow at the line).
            where = next((f for f in reversed(frames) if f.lstrip().startswith("Cell In")), "")
            context = "\n".join("      | " + line for line in where.splitlines()[-12:])
            error = (
                f"{path.name}: code cell {number} (cell {index + 1} of {len(nb.cells)}) failed: "
                f"{err.get('ename')}: {err.get('evalue')}\n{context}"
            )
        else:
            error = f"{path.name}: {type(e).__name__}: {str(e)[-2000:]}"
    finally:
        sockets.cleanup()
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    took = time.monotonic() - started
    status = "FAILED" if error else "ok"
    print(f"  {path.name}: {status} in {took:.1f} s -> {out_dir / path.name}", flush=True)
    return error


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="directory for the executed copies")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    ap.add_argument("--clear", action="store_true", help="strip outputs in place instead of running")
    args = ap.parse_args()
    if args.clear:
        for path in args.notebooks:
            clear(path)
        return 0
    if args.out is None:
        ap.error("--out is required to run notebooks")
    errors = [e for p in args.notebooks if (e := execute(p, args.out, args.timeout))]
    for e in errors:
        print(f"\nnotebook failed: {e}", file=sys.stderr)
    print(f"notebooks: {len(args.notebooks) - len(errors)} passed, {len(errors)} failed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
