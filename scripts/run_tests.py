"""`make test`: the whole suite in four phases, two pytest processes side by side where the
notebooks allow it.

Usage: python scripts/run_tests.py [--serial]

The notebooks depend on each other (04 reads 01's baselines and 02's curated rows; 05-08 use 04's
adapter; 06 and 08 use 05's reply adapter; nothing reads 03), so they run in phases. A phase with
two workers runs each at one thread (WORKBOOK_THREADS=1): on a 2-core CPU two one-thread processes
do more work than one two-thread process, because generation, tokenising and imports do not scale
with threads (measured: a training step 3.3 s at 2 threads, 5.5 s at 1 thread alone, 6.0 s at 1
thread beside another; 16 tickets generated in 5.9 s, 8.2 s and 8.7 s). Notebook 04 runs alone at
two.

  phase 1  notebook 01   ||  notebooks 02, 03, copy cells 01-03, the two-process training test
  phase 2  notebook 04                                                        (2 threads)
  phase 3  notebook 05                                                        (2 threads)
  phase 4  notebook 06, widget tests, browser test, notebook 07  ||  notebook 08, copy cells
           04-08, the other unit tests

The browser test of the sliders (scripts/ui_test.py, `make ui-test`) runs in phase 4 only where
WORKBOOK_UI_TEST=1 (.ci/run sets it): it needs Chromium, which a learner's `make test` should not
install. It reads notebook 06's slider data and fits beside 08 (measured 44-51 s alone after the
suite, when it ran after everything).

The critical path is 01 -> 04 -> 05 -> 08, so whatever reads no notebook's output (the copy cells
run standalone, the unit tests) fills the lane beside 01 and beside 08. Notebooks 04 and 05 each
run alone at two threads: everything after 05 waits for it, and at one thread beside 07 and the
unit tests it took 458-489 s on the AMX Xeon against 314-324 s alone at two (2026-12-03); 07 reads
only 04's adapter, so it moved from beside 05 to beside 08. Measured on a fresh clone
before this split (2026-12-03, 133 GFLOP/s fp32): phase 1 245 s with 142 s of its second lane
idle, phase 3 835 s with 150 s idle, and the copy cells of 01, 04 and 05 (74 s) on the critical
path. After it (with the browser test in phase 4 and CI's 05 at 8 DPO steps): 32.7 min in all at
128 GFLOP/s and 26.8 min at 145 (LEDGER, "CI time by machine").

Every test in tests/test_notebooks.py must fall in exactly one group (checked before anything
runs); every other test file is a unit test; tests/test_widgets.py runs after notebook 06, whose
output its sliders read. --serial runs plain pytest, one process, as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_TESTS = "tests/test_notebooks.py"
GROUPS = {  # a notebook group: the notebook's stem, plus the tests that read its outputs
    "01": ["01_decision_check"],
    "02": ["02_data_curation"],
    "03": ["03_lora_math"],
    "04": ["04_qlora_training", "test_unsloth_path"],
    "05": ["05_dpo_and_siblings"],
    "06": ["06_decoding"],
    "07": ["07_eval"],
    "08": ["08_serving", "test_vllm_path"],
}
# the copy-into-your-project cells, each run standalone in a fresh process: they read no notebook's
# output, so they go where a lane would otherwise idle
COPY_TEST = "test_recipe_cell_runs_standalone["
COPY_GROUPS = {"copy-a": ["01", "02", "03"], "copy-b": ["04", "05", "06", "07", "08"]}
ID_GROUPS = [*GROUPS, *COPY_GROUPS]  # groups of test ids from tests/test_notebooks.py
UNIT_AFTER = {"widgets": ["tests/test_widgets.py"]}  # unit tests that read a notebook's outputs
# unit tests run on their own, before the rest (their ids); "unit" deselects them
UNIT_EARLY = {
    "unit-ddp": ["tests/test_train.py::test_two_processes_train_what_one_process_trains"],
}
# whose artifacts each group reads (runtime.find_artifact calls in the notebooks' cells; 06's slider
# data)
NEEDS = {
    "04": ["01", "02"],
    "05": ["04"],
    "06": ["04", "05"],
    "07": ["04"],
    "08": ["04", "05"],
    "widgets": ["06"],
    "ui": ["06"],
}
PHASES = [  # each phase: workers side by side; each worker: groups run one after another
    [["01"], ["02", "03", "copy-a", "unit-ddp"]],
    [["04"]],
    [["05"]],
    [["06", "widgets", "ui", "07"], ["08", "copy-b", "unit"]],
]


def check_phases(phases: list[list[list[str]]]) -> None:
    """Every group runs exactly once, and after (never beside) the notebooks whose artifacts it
    reads: in a later phase, or later in the same worker."""
    placed = {
        g: (n, w, k)
        for n, workers in enumerate(phases)
        for w, groups in enumerate(workers)
        for k, g in enumerate(groups)
    }
    names = sorted(g for workers in phases for groups in workers for g in groups)
    every = sorted([*ID_GROUPS, *UNIT_AFTER, *UNIT_EARLY, "unit", "ui"])
    if names != every:
        raise ValueError(f"the phases run {names}; each of {every} must run exactly once")
    for g, needs in NEEDS.items():
        for need in needs:
            (n, w, k), (n2, w2, k2) = placed[need], placed[g]
            if not (n < n2 or (n == n2 and w == w2 and k < k2)):
                raise ValueError(
                    f"group {g} reads notebook {need}'s artifacts, so it must run "
                    "after it, not beside it"
                )


def collect(args: list[str]) -> list[str]:
    """The test ids pytest would run for args."""
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if res.returncode not in (0, 5):
        sys.exit(f"run_tests: collecting {args} failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return [line for line in res.stdout.splitlines() if "::" in line]


def partition(ids: list[str]) -> dict[str, list[str]]:
    """Each notebook test id in exactly one group (a copy-cell test in its copy group); an id in
    none or in two stops the run, named."""
    parts: dict[str, list[str]] = {g: [] for g in ID_GROUPS}
    for tid in ids:
        if COPY_TEST in tid:
            stem = tid.split(COPY_TEST, 1)[1]
            hits = [g for g, nbs in COPY_GROUPS.items() if stem[:2] in nbs]
        else:
            hits = [g for g, keys in GROUPS.items() if any(k in tid for k in keys)]
        if len(hits) != 1:
            sys.exit(
                f"run_tests: {tid} belongs to {hits or 'no notebook group'}; add it to GROUPS "
                f"in {__file__}"
            )
        parts[hits[0]].append(tid)
    return parts


def pump(proc: subprocess.Popen, tag: str) -> None:
    """Copy a worker's output to ours, each line tagged with its worker."""
    for line in proc.stdout:
        sys.stdout.write(f"[{tag}] {line}")
        sys.stdout.flush()


def run_worker(groups: list[str], parts: dict[str, list[str]], env: dict, results: dict) -> None:
    """Run a worker's groups one after another: consecutive notebook groups in one pytest
    process, unit tests in their own."""
    runs: list[list[str]] = []
    for g in groups:
        if g in ID_GROUPS and runs and runs[-1][-1] in ID_GROUPS:
            runs[-1].append(g)
        else:
            runs.append([g])
    for run in runs:
        run_env = env
        if run == ["ui"]:
            if os.environ.get("WORKBOOK_UI_TEST") != "1":
                print(
                    "run_tests: ui not run here (WORKBOOK_UI_TEST unset): `make ui-test` runs the "
                    "browser test",
                    flush=True,
                )
                continue
            cmd = [sys.executable, "scripts/ui_test.py"]
            run_env = {**env, "UI_TEST_REQUIRE_ALL": "1"}  # after notebook 06 no slider may skip
        else:
            if run == ["unit"]:
                ignored = [NB_TESTS, *sum(UNIT_AFTER.values(), [])]
                args = ["tests", *(f"--ignore={f}" for f in ignored)]
                args += [f"--deselect={t}" for t in sum(UNIT_EARLY.values(), [])]
            elif run[0] in UNIT_EARLY:
                args = UNIT_EARLY[run[0]]
            else:
                args = UNIT_AFTER.get(run[0]) or [t for g in run for t in parts[g]]
            cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
        tag = ",".join(run)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=run_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        pump(proc, tag)
        results[tag] = (proc.wait(), time.perf_counter() - t0)


def main() -> int:
    """Run the phases; exit non-zero if any group failed or collected nothing."""
    if "--serial" in sys.argv[1:]:
        return subprocess.call([sys.executable, "-m", "pytest"], cwd=ROOT)
    from helpers import course

    check_phases(PHASES)
    parts = partition(collect([NB_TESTS]))
    course_dir = course.new_course_dir("pytest")
    print(f"run_tests: course folder {course_dir.relative_to(ROOT)}; phases {PHASES}", flush=True)
    results: dict[str, tuple[int, float]] = {}
    start = time.perf_counter()
    for n, workers in enumerate(PHASES, 1):
        env = {**os.environ, "WORKBOOK_COURSE_DIR": str(course_dir)}
        # side by side: one thread each, or the two would fight over both cores
        if len(workers) > 1:
            env.update(WORKBOOK_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        t0 = time.perf_counter()
        pool = [threading.Thread(target=run_worker, args=(w, parts, env, results)) for w in workers]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        print(f"run_tests: phase {n} {workers} took {time.perf_counter() - t0:.0f} s", flush=True)
    for tag, (rc, sec) in results.items():
        print(f"run_tests: {tag:<14} exit {rc}  {sec:5.0f} s")
    print(f"run_tests: all phases {time.perf_counter() - start:.0f} s", flush=True)
    # 5 (nothing collected) is a failure too
    failed = {g: rc for g, (rc, _) in results.items() if rc != 0}
    if failed:
        print(f"run_tests: FAILED groups {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
