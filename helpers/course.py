"""Run the course's notebooks headless with papermill into one course run folder, and summarise them."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from helpers.runtime import fresh_dir, repo_root
from helpers.widgets import HEADLESS_ENV

RECIPE_TAG = "copy-into-project"


def notebooks() -> list[Path]:
    """The course notebooks in order (their file names start with the course position)."""
    return sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def profile(name: str) -> dict[str, dict]:
    """Per-notebook parameters of a profile ('ci' or 'full') from notebooks/profiles.json."""
    profiles = json.loads((repo_root() / "notebooks" / "profiles.json").read_text())
    if name not in profiles:
        raise KeyError(f"unknown profile {name!r}; notebooks/profiles.json has {', '.join(profiles)}")
    return profiles[name]


def new_course_dir(tag: str = "") -> Path:
    """A new runs/<timestamp>[-tag]/ folder for one pass over the course."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return fresh_dir(repo_root() / "runs" / (stamp + (f"-{tag}" if tag else "")))


@contextmanager
def headless_kernel():
    """Kernels started inside this block see WORKBOOK_HEADLESS=1, so "Try it" cells draw their static plot."""
    old = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = old


def execute(nb: Path, course_dir: Path, params: dict) -> float:
    """Execute one notebook into course_dir/<name>.ipynb with papermill; return wall seconds."""
    import papermill as pm

    t0 = time.perf_counter()
    with headless_kernel():
        pm.execute_notebook(str(nb), str(course_dir / nb.name), parameters={**params, "COURSE_DIR": str(course_dir)},
                            cwd=str(nb.parent), kernel_name="python3", progress_bar=False)
    seconds = time.perf_counter() - t0
    (course_dir / nb.stem).mkdir(exist_ok=True)
    (course_dir / nb.stem / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
    return seconds


def headline(metrics: dict, limit: int = 6) -> str:
    """The first few scalar metrics of a metrics.json, as 'key=value' pairs."""
    flat = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "written_at"]
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in flat[:limit])


def summary(course_dir: Path) -> str:
    """A plain-text table: notebook, wall time, headline metrics."""
    rows = ["notebook                  wall(s)  metrics", "-" * 100]
    for nb in notebooks():
        mfile, wfile = course_dir / nb.stem / "metrics.json", course_dir / nb.stem / "wall_seconds.txt"
        wall = wfile.read_text().strip() if wfile.exists() else "-"
        metrics = headline(json.loads(mfile.read_text())) if mfile.exists() else "(no metrics.json)"
        rows.append(f"{nb.stem:<25} {wall:>7}  {metrics}")
    return "\n".join(rows)


def recipe_source(nb: Path) -> str:
    """The source of the notebook's 'copy into your project' cell (tagged copy-into-project)."""
    import nbformat

    cells = [c for c in nbformat.read(nb, as_version=4).cells if RECIPE_TAG in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{nb.name}: expected exactly one cell tagged {RECIPE_TAG!r}, found {len(cells)}")
    return cells[0].source
