"""Run the course's notebooks headless with papermill into one course run folder, and summarise
them."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from helpers.runtime import free_path, fresh_dir, repo_root
from helpers.widgets import HEADLESS_ENV

RECIPE_TAG = "copy-into-project"
# Cells that define what later cells use: lesson code in the notebook itself (helpers keeps a tested
# copy of each) and notebook 05's recipes; a cell run out of context (a try-it cell in the browser
# test or the widget test) needs them after the setup and parameters.
DEFINITION_TAGS = ("lora-layer", "samplers", "recipes", "rewards")


def notebooks() -> list[Path]:
    """The course notebooks in order (their file names start with the course position)."""
    return sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


class CourseError(ValueError):
    """A bad --profile / --from / --only / --run-dir choice; the message is one line listing the
    valid ones."""


# What the smoke profile adds beyond the ablation profile's lists: two draws of flipped pairs, the
# fewest for which notebook 05's noise cell gives a verdict.
SMOKE_EXTRA = {"05_dpo_and_siblings": {"N_NOISE_DRAWS": 2}}


def smoke_profile(known: dict[str, dict]) -> dict[str, dict]:
    """CI's sizes and steps with every list the ablation profile sets (arms, seeds, rates,
    temperatures): each code path of `PROFILE=ablation` (8-9 h); 31 min on the Zen 5 in bf16."""
    out = {}
    for nb, ci in known["ci"].items():
        heavy = {k: v for k, v in known["ablation"].get(nb, {}).items() if isinstance(v, list)}
        # a CI list the ablation profile leaves alone goes too, so the learner's list runs
        sizes = {k: v for k, v in ci.items() if not isinstance(v, list)}
        out[nb] = {**sizes, **heavy, **SMOKE_EXTRA.get(nb, {})}
    return out


def profiles() -> dict[str, dict]:
    """Every profile in notebooks/profiles.json, and `smoke`, derived from its ci and ablation."""
    known = json.loads((repo_root() / "notebooks" / "profiles.json").read_text())
    return {**known, "smoke": smoke_profile(known)}


def profile(name: str) -> dict[str, dict]:
    """Per-notebook parameters of a profile (full, ci, ablation, smoke, or a GPU one: t4, rtx4090)
    from notebooks/profiles.json."""
    known = profiles()
    if name not in known:
        raise CourseError(
            f"unknown profile {name!r}: choose one of {', '.join(known)} (notebooks/profiles.json)"
        )
    return known[name]


def hub_models(name: str) -> list[str]:
    """The hub model presets a profile asks for (empty when it runs offline on the wheel's 135M
    model)."""
    from helpers.models import OFFLINE_PRESET

    return sorted(
        {
            p["MODEL"]
            for p in profile(name).values()
            if p.get("MODEL", OFFLINE_PRESET) != OFFLINE_PRESET
        }
    )


def check_runnable(name: str, cuda: bool) -> None:
    """Refuse, in one line, a GPU profile (hub models, Unsloth 4-bit) on a machine without CUDA."""
    if (hub := hub_models(name)) and not cuda:
        offline = [k for k in profiles() if not hub_models(k)]
        raise CourseError(
            f"profile {name!r} needs a CUDA GPU and the model hub "
            f"({', '.join(hub)}); this machine has "
            f"no CUDA, so it was not run: choose one of {', '.join(offline)} here"
        )


def select(only: str = "", start: str = "") -> list[Path]:
    """The notebooks to run: those whose prefix is in only (comma-separated), from start on; bad
    prefixes raise."""
    nbs = notebooks()
    prefixes = [nb.name[:2] for nb in nbs]
    wanted = [p.strip() for p in only.split(",") if p.strip()]
    bad = [p for p in wanted + ([start] if start else []) if p not in prefixes]
    if bad:
        raise CourseError(f"unknown notebook {bad[0]!r}: choose one of {', '.join(prefixes)}")
    return [
        nb
        for nb in nbs
        if (not wanted or nb.name[:2] in wanted) and (not start or nb.name[:2] >= start)
    ]


def latest_course_dir(tag: str, root: Path | None = None) -> Path:
    """The newest runs/<timestamp>-<tag>/ folder, where a resumed course finds the earlier
    notebooks' artifacts."""
    runs = root or repo_root() / "runs"
    found = sorted(p for p in runs.glob(f"2*-{tag}") if p.is_dir()) if runs.exists() else []
    if not found:
        raise CourseError(
            f"no earlier course run with profile {tag!r} under {runs}: run `make "
            f"course PROFILE={tag}` first"
        )
    return found[-1]


def resume_dir(run_dir: str, tag: str, root: Path | None = None) -> Path:
    """The course folder to resume, absolute (papermill runs in notebooks/): --run-dir, else the
    newest of this profile."""
    found = Path(run_dir).resolve() if run_dir else latest_course_dir(tag, root)
    if not found.is_dir():
        raise CourseError(f"--run-dir {found} is not a folder")
    return found


def set_aside(course_dir: Path, nbs: list[Path]) -> list[Path]:
    """Rename the outputs of notebooks about to run again (folder and executed copy) to
    *.before-resume[-k]; never delete."""
    moved = []
    for nb in nbs:
        for old in (course_dir / nb.stem, course_dir / nb.name):
            if old.exists():
                moved.append(old.rename(free_path(old.with_name(old.name + ".before-resume"))))
    return moved


def new_course_dir(tag: str = "") -> Path:
    """A new runs/<timestamp>[-tag]/ folder for one pass over the course."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return fresh_dir(repo_root() / "runs" / (stamp + (f"-{tag}" if tag else "")))


@contextmanager
def headless_kernel():
    """Kernels started inside this block see WORKBOOK_HEADLESS=1, so "Try it" cells draw their
    static plot."""
    old = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = old


def execute(nb: Path, course_dir: Path, params: dict, progress: bool = False) -> float:
    """Execute one notebook into course_dir/<name>.ipynb with papermill; return wall seconds."""
    import papermill as pm

    t0 = time.perf_counter()
    with headless_kernel():
        pm.execute_notebook(
            str(nb),
            str(course_dir / nb.name),
            parameters={**params, "COURSE_DIR": str(course_dir)},
            cwd=str(nb.parent),
            kernel_name="python3",
            progress_bar=progress,
        )
    seconds = time.perf_counter() - t0
    (course_dir / nb.stem).mkdir(exist_ok=True)
    (course_dir / nb.stem / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
    return seconds


PCT, NUM, TEXT = "{:.1%}", "{:.2g}", "{}"
HEAD_WIDTH = 72  # the summary's headline column: notebook 05's three numbers fit
# notebook -> (label, path into its metrics.json, format): the one or two numbers a learner looks
# for
HEADLINES = {
    "01_decision_check": [
        ("gate", "gate_decision", TEXT),
        ("best prompt exact", "prompt_baseline_exact", PCT),
    ],
    "02_data_curation": [
        ("curated rows", "train_rows", TEXT),
        ("label noise left", "label_noise_left", PCT),
    ],
    "03_lora_math": [
        ("merge gap", "max_abs_diff_merged", NUM),
        ("fp32 floor", "fp32_rounding_floor", NUM),
    ],
    "04_qlora_training": [("exact", "after.exact_match", PCT), ("valid", "after.json_valid", PCT)],
    "05_dpo_and_siblings": [
        ("DPO win rate", "reply_win_rate_dpo_vs_sft", PCT),
        ("weakest check after DPO", "sft_weakest_check.DPO", PCT),
        ("exact after GRPO", "grpo.report.GRPO.exact_match", PCT),
    ],
    "06_decoding": [
        ("top-1 base", "sharpening.base.mean_top1", PCT),
        ("top-1 tuned", "sharpening.fine-tuned.mean_top1", PCT),
    ],
    "07_eval": [("held-out exact", "tier2.fine-tuned.exact_match", PCT), ("ship", "ship", TEXT)],
    "08_serving": [
        ("merged vs adapter gap", "merged_vs_adapter.gap", NUM),
        ("served vs merged mismatches", "consistency.served_vs_merged_in_process", TEXT),
    ],
}


def dig(metrics: dict, path: str):
    """metrics['a']['b'] for path 'a.b' (keys may contain '-'); None when any step is missing."""
    node = metrics
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def shown(value, fmt: str) -> str:
    """One headline value: '-' when missing, 'yes' or 'no' for a flag, else in its format."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)


def headline(stem: str, metrics: dict) -> str:
    """The notebook's headline numbers as 'label value' pairs, each shown by `shown`."""
    pairs = HEADLINES.get(stem, [])
    return ", ".join(f"{label} {shown(dig(metrics, path), fmt)}" for label, path, fmt in pairs)


def read_metrics(course_dir: Path, nb: Path) -> dict:
    """The notebook's metrics.json in a course run folder, or {} when it wrote none."""
    mfile = course_dir / nb.stem / "metrics.json"
    return json.loads(mfile.read_text()) if mfile.exists() else {}


def summary(course_dir: Path, nbs: list[Path] | None = None) -> str:
    """A plain-text table: notebook, wall time, headline numbers, executed copy; then notebook
    07's report."""
    rows = [
        f"{'notebook':<22} {'wall':>7}  {'headline numbers':<{HEAD_WIDTH}} executed notebook",
        "-" * (HEAD_WIDTH + 62),
    ]
    for nb in nbs or notebooks():
        wfile = course_dir / nb.stem / "wall_seconds.txt"
        wall = f"{float(wfile.read_text()):.0f} s" if wfile.exists() else "-"
        metrics = read_metrics(course_dir, nb)
        heads = headline(nb.stem, metrics) if metrics else "(no metrics.json)"
        executed = course_dir / nb.name if (course_dir / nb.name).exists() else "-"
        rows.append(f"{nb.stem:<22} {wall:>7}  {heads:<{HEAD_WIDTH}} {executed}")
    report = course_dir / "07_eval" / "report.html"
    if report.exists():
        rows.append(f"notebook 07's ship report: {report}")
    return "\n".join(rows)


def failure_lines(exc: Exception, executed: Path) -> list[str]:
    """A failed notebook in a few lines: the cell, the error, and where the partial executed copy
    is."""
    cell = getattr(exc, "exec_count", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    last = str(evalue).strip().splitlines()[-1] if str(evalue).strip() else ""
    where = f"in cell [{cell}]" if cell is not None else "before any cell ran"
    lines = [f"FAILED {where}: {ename}: {last}"[:400]]
    lines.append(f"partial executed notebook: {executed}")
    return lines


def recipe_source(nb: Path) -> str:
    """The source of the notebook's 'copy into your project' cell (tagged copy-into-project)."""
    import nbformat

    cells = [
        c for c in nbformat.read(nb, as_version=4).cells if RECIPE_TAG in c.metadata.get("tags", [])
    ]
    if len(cells) != 1:
        raise ValueError(
            f"{nb.name}: expected exactly one cell tagged {RECIPE_TAG!r}, found {len(cells)}"
        )
    return cells[0].source
