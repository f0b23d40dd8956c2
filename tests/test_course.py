"""The course runner: bad choices fail in one line, --from resumes in the same folder, failures
and the summary read well."""

import json
import subprocess
import sys

import nbformat
import pytest
import torch

from helpers import course

RUNNER = [sys.executable, str(course.repo_root() / "scripts" / "run_course.py")]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--profile", "nosuch"], "unknown profile 'nosuch': choose one of full, ci, ablation"),
        (["--from", "99"], "unknown notebook '99': choose one of 01, 02, 03, 04, 05, 06, 07, 08"),
        (["--only", "01,9"], "unknown notebook '9'"),
        (["--run-dir", "runs"], "--run-dir only goes with --from"),
        pytest.param(
            ["--profile", "t4"],
            "profile 't4' needs a CUDA GPU and the model hub "
            "(llama-3.2-3b); this machine "
            "has no CUDA, so it was not run: choose one of full, ci, ablation, smoke here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
    ],
)
def test_bad_choice_is_one_line_and_exit_2(args, says):
    res = subprocess.run(RUNNER + args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res
    assert (
        says in res.stderr
        and len(res.stderr.strip().splitlines()) == 1
        and "Traceback" not in res.stderr
    ), res.stderr
    assert res.stdout == ""  # nothing started


def test_select_from_and_only():
    assert [nb.name[:2] for nb in course.select(start="06")] == ["06", "07", "08"]
    assert [nb.name[:2] for nb in course.select(only="02,05", start="03")] == ["05"]
    assert len(course.select()) == 8


def test_resume_finds_the_newest_run_of_the_profile_and_sets_old_outputs_aside(tmp_path):
    with pytest.raises(
        course.CourseError,
        match="no earlier course run with profile 'full'.*make course PROFILE=full",
    ):
        course.latest_course_dir("full", tmp_path)
    for name in ("20261129-100000-full", "20261130-090000-full", "20261130-120000-ci"):
        (tmp_path / name).mkdir()
    run = course.latest_course_dir("full", tmp_path)
    assert run.name == "20261130-090000-full"
    nbs = course.select(start="07")
    (run / "07_eval").mkdir()
    (run / "07_eval.ipynb").write_text("{}")
    (run / "06_decoding").mkdir()  # before the resume point: kept where it is
    moved = course.set_aside(run, nbs)
    assert sorted(p.name for p in moved) == ["07_eval.before-resume", "07_eval.ipynb.before-resume"]
    assert (run / "06_decoding").is_dir() and not (run / "07_eval").exists()
    (run / "07_eval").mkdir()
    assert [p.name for p in course.set_aside(run, nbs)] == ["07_eval.before-resume-2"]


def test_summary_shows_headline_numbers_walls_and_paths(tmp_path):
    nb04 = next(nb for nb in course.notebooks() if nb.name.startswith("04"))
    (tmp_path / nb04.stem).mkdir()
    (tmp_path / nb04.stem / "metrics.json").write_text(
        json.dumps({"after": {"exact_match": 0.8, "json_valid": 1.0}})
    )
    (tmp_path / nb04.stem / "wall_seconds.txt").write_text("901.4\n")
    (tmp_path / nb04.name).write_text("{}")
    (tmp_path / "07_eval").mkdir()
    (tmp_path / "07_eval" / "report.html").write_text("<html></html>")
    text = course.summary(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("04_"))
    assert (
        "901 s" in row and "exact 80.0%, valid 100.0%" in row and str(tmp_path / nb04.name) in row
    ), row
    assert "(no metrics.json)" in next(line for line in text.splitlines() if line.startswith("05_"))
    assert f"ship report: {tmp_path / '07_eval' / 'report.html'}" in text
    assert (
        course.dig({"a": {"fine-tuned": {"x": 2}}}, "a.fine-tuned.x") == 2
        and course.dig({}, "a.b") is None
    )
    assert course.headline("07_eval", {"ship": False}) == "held-out exact -, ship no"


def test_failed_notebook_names_the_cell_the_error_and_the_partial_copy(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("y = x / 0"),
            nbformat.v4.new_code_cell("z = 3"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
            "language_info": {"name": "python"},
        },
    )
    path = src / "99_fails.ipynb"
    nbformat.write(nb, path)
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(Exception) as info:
        course.execute(path, run, {})
    lines = course.failure_lines(info.value, run / path.name)
    assert (
        lines[0].startswith("FAILED in cell [")
        and "ZeroDivisionError: division by zero" in lines[0]
    ), lines
    assert (
        lines[1] == f"partial executed notebook: {run / path.name}" and (run / path.name).exists()
    )
    assert len(lines) == 2
    assert (
        course.failure_lines(ValueError("no kernel"), run / "x.ipynb")[0]
        == "FAILED before any cell ran: ValueError: no kernel"
    )


def test_a_relative_run_dir_is_made_absolute_because_notebooks_run_in_another_folder(
    tmp_path, monkeypatch
):
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert course.resume_dir("runs/mine", "ci") == tmp_path / "runs" / "mine"
    assert course.resume_dir("runs/mine", "ci").is_absolute()
    with pytest.raises(course.CourseError, match="--run-dir .*nope is not a folder"):
        course.resume_dir("runs/nope", "ci")


def test_gpu_profiles_name_hub_models_and_the_others_run_offline():
    assert course.hub_models("t4") == ["llama-3.2-3b"] and course.hub_models("rtx4090") == [
        "llama-3.1-8b"
    ]
    assert [k for k in course.profiles() if not course.hub_models(k)] == [
        "full",
        "ci",
        "ablation",
        "smoke",
    ]
    course.check_runnable("t4", cuda=True)  # a GPU machine may run it
    course.check_runnable("full", cuda=False)
    with pytest.raises(course.CourseError, match="profile 'rtx4090' needs a CUDA GPU"):
        course.check_runnable("rtx4090", cuda=False)


def test_make_test_runs_every_notebook_test_once_and_after_what_it_reads():
    """scripts/run_tests.py (make test): each notebook test in exactly one group, each group
    after its inputs."""
    import runpy

    rt = runpy.run_path(str(course.repo_root() / "scripts" / "run_tests.py"))
    stems = [nb.stem for nb in course.notebooks()]
    ids = [f"tests/test_notebooks.py::test_runs[{stem}]" for stem in stems]
    ids += ["tests/test_notebooks.py::test_unsloth_path", "tests/test_notebooks.py::test_vllm_path"]
    copies = [f"tests/test_notebooks.py::test_recipe_cell_runs_standalone[{s}]" for s in stems]
    parts = rt["partition"](ids + copies)
    assert sorted(t for group in parts.values() for t in group) == sorted(ids + copies)
    assert parts["04"][-1].endswith("test_unsloth_path") and parts["08"][-1].endswith(
        "test_vllm_path"
    )
    # a copy cell reads no notebook's output: it runs in a copy group, beside the critical path
    assert parts["copy-a"] == copies[:3] and parts["copy-b"] == copies[3:]
    assert not any("standalone" in t for stem in stems for t in parts[stem[:2]])
    with pytest.raises(
        SystemExit,
        match=r"test_new\] belongs to no notebook group; add it to "
        r"GROUPS",
    ):
        rt["partition"](["tests/test_notebooks.py::test_new]"])
    rt["check_phases"](rt["PHASES"])
    with pytest.raises(ValueError, match="group 06 reads notebook 05's artifacts"):
        rt["check_phases"](
            [
                [["01", "02", "03", "copy-a", "unit-ddp"]],
                [["04", "copy-b"]],
                [["05"], ["06"]],
                [["07", "unit"], ["08", "widgets", "ui"]],
            ]
        )
    with pytest.raises(ValueError, match="group widgets reads notebook 06's artifacts"):
        rt["check_phases"](
            [
                [["01", "02", "03", "copy-a", "unit-ddp"]],
                [["04", "widgets", "copy-b"]],
                [["05"], ["07", "unit"]],
                [["06", "ui"], ["08"]],
            ]
        )
    with pytest.raises(ValueError, match="must run exactly once"):
        rt["check_phases"]([[["01", "02", "03", "04"]], [["05"], ["06", "07", "08"]]])


def test_smoke_runs_every_ablation_arm_at_ci_sizes():
    """`PROFILE=smoke` takes every code path of the 8-hour ablation profile at CI's sizes: the
    ablation profile's lists (arms, seeds, rates), CI's sizes and steps, and the learner's list
    wherever CI shortens one the ablation profile leaves alone (notebook 08's server arms)."""
    ci, ablation, smoke = (course.profile(k) for k in ("ci", "ablation", "smoke"))
    assert set(smoke) == set(ci)
    for nb, params in smoke.items():
        for name, value in ablation.get(nb, {}).items():
            if isinstance(value, list):
                assert params[name] == value, (nb, name)
        for name, value in ci[nb].items():
            if not isinstance(value, list):
                assert params[name] == course.SMOKE_EXTRA.get(nb, {}).get(name, value), (nb, name)
    assert "BENCH_SERVER_BATCHING" not in smoke["08_serving"]  # CI runs 'off' alone
    assert smoke["05_dpo_and_siblings"]["N_NOISE_DRAWS"] >= 2  # the noise cell's verdict
