"""Every profile's sizes fit the shipped data: each notebook's `sizes` cell runs with them, in
seconds, no model.

A learner parameter the data cannot supply must fail here, naming the parameter, not two hours into
`make course`.
"""

from __future__ import annotations

import ast
import inspect
import re

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from helpers import course, curation, models

NOTEBOOKS = course.notebooks()
# full, ci, ablation, smoke and the GPU profiles (t4, rtx4090: sizes cells only here)
PROFILES = tuple(course.profiles())
# Notebook 02 reads the whole raw dump whatever its parameters: it has no size to check.
WITHOUT_SIZES = {"02_data_curation"}


def tagged(nb_path, tag: str) -> list[str]:
    """The sources of the notebook's cells carrying `tag`, in order."""
    return [
        c.source
        for c in nbformat.read(nb_path, as_version=4).cells
        if tag in c.metadata.get("tags", [])
    ]


def run_sizes(nb_path, overrides: dict) -> dict:
    """Execute setup, parameters (+ overrides, as papermill injects them) and the sizes cells;
    return the namespace."""
    ns: dict = {}
    (setup,), (params,) = tagged(nb_path, "setup"), tagged(nb_path, "parameters")
    exec(compile(TransformerManager().transform_cell(setup), f"{nb_path.name}:setup", "exec"), ns)
    exec(compile(params, f"{nb_path.name}:parameters", "exec"), ns)
    ns.update(overrides)
    for k, src in enumerate(tagged(nb_path, "sizes")):
        exec(compile(src, f"{nb_path.name}:sizes[{k}]", "exec"), ns)
    return ns


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_size_parameter_has_a_sizes_cell(nb):
    if nb.stem in WITHOUT_SIZES:
        return
    assert tagged(nb, "sizes"), (
        f"{nb.name}: pick the rows the size parameters choose in a cell tagged 'sizes'"
    )


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "nb", [p for p in NOTEBOOKS if p.stem not in WITHOUT_SIZES], ids=lambda p: p.stem
)
def test_profile_sizes_fit_the_shipped_data(nb, profile, capsys):
    overrides = course.profile(profile).get(nb.stem, {})
    ns = run_sizes(nb, overrides)
    printed = capsys.readouterr().out
    assert printed.strip(), f"{nb.name}: the sizes cell should print what it picked"
    for name, value in overrides.items():
        assert ns[name] == value, (name, ns[name], value)


@pytest.mark.parametrize("profile", ["full", "ablation"])
def test_notebook_07_gives_full_probe_sets(profile):
    """The crash this test exists for: N_TEST=200 (the ablation profile's, the learner's until
    2026-12-03) took the whole eval split and left every probe set empty."""
    ns = run_sizes(course.notebooks()[6], course.profile(profile).get("07_eval", {}))
    assert len(ns["test_rows"]) == ns["N_TEST"] >= 100
    assert {k: len(v) for k, v in ns["stress"].items()} == {
        k: ns["N_PROBE_SET"] for k in ns["stress"]
    }


@pytest.mark.parametrize(
    "param,value", [("N_TEST", 10_000), ("N_PROBE_SET", 500), ("N_ARM_EVAL", 201)]
)
def test_a_size_the_data_cannot_supply_fails_naming_the_parameter(param, value):
    with pytest.raises(ValueError, match=rf"{param}={value}"):
        run_sizes(course.notebooks()[6], {param: value})


SIZE_NAME = re.compile(
    r"^(N_\w+|\w+_STEPS|\w+_EVERY|\w+_PROMPTS|DRAWS|BATCH|FRONTIER_N|\w+_LIMIT)$"
)  # counts: a size, a step count, prompts per step
# a profile's recipe changes (RECIPE_CHANGES, DPO_CHANGES, GRPO_CHANGES): steps, and GRPO's
# tickets per step
RECIPE_SIZE_FIELDS = {"steps", "prompts"}


def learner_defaults(nb_path) -> dict:
    """The values the parameters cell assigns (the learner's defaults), after the notebook's
    setup cell."""
    ns: dict = {}
    (setup,), (params,) = tagged(nb_path, "setup"), tagged(nb_path, "parameters")
    exec(compile(TransformerManager().transform_cell(setup), f"{nb_path.name}:setup", "exec"), ns)
    exec(compile(params, f"{nb_path.name}:parameters", "exec"), ns)
    names = {
        t.id
        for node in ast.parse(params).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    return {k: ns[k] for k in names}


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "full"])
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_other_profiles_change_only_sizes_and_steps(nb, profile):
    """CI runs the learner's code paths, smaller: a scalar it changes is a size or a step count,
    a list it passes is a subset of the learner's list or of the ablation profile's (fewer seeds,
    arms or learning rates, never ones no profile runs), and a recipe change touches only the step
    count. The ablation profile runs the heavy experiments that do not fit the learner's hour: its
    lists keep every learner value and may add arms (the sizes cell refuses one the notebook cannot
    run); its scalars are sizes and step counts too."""
    defaults = learner_defaults(nb)
    ablation = course.profile("ablation").get(nb.stem, {})
    for name, value in course.profile(profile).get(nb.stem, {}).items():
        assert name in defaults, (
            f"{nb.name}: profile {profile!r} sets {name}, which its parameters cell lacks"
        )
        learner = defaults[name]
        # a GPU profile swaps the base model for a hub preset
        if name == "MODEL" and course.hub_models(profile):
            assert value in models.PRESETS, (
                f"{nb.name}: {profile} MODEL={value!r} is not a preset in helpers.models"
            )
        elif isinstance(value, list) and profile == "ablation":
            assert set(value) >= set(learner), (
                f"{nb.name}: ablation {name}={value} drops the learner's "
                f"{sorted(set(learner) - set(value), key=str)}"
            )
        elif isinstance(value, list):
            # CI may also run, smaller, an arm the learner's hour leaves to the ablation profile
            heavy = ablation.get(name, learner)
            assert set(value) <= set(learner) | set(heavy), (
                f"{nb.name}: {profile} {name}={value} is not a subset of the learner's {learner} "
                f"or the ablation profile's {heavy}"
            )
        elif isinstance(value, dict):
            assert set(value) <= RECIPE_SIZE_FIELDS, (
                f"{nb.name}: {profile} {name} changes {set(value) - RECIPE_SIZE_FIELDS}"
            )
        else:
            assert (
                SIZE_NAME.match(name) and isinstance(value, int) and not isinstance(value, bool)
            ), (
                f"{nb.name}: {profile} sets {name}={value!r}; only sizes and step counts may "
                "differ from the learner's run"
            )


@pytest.mark.parametrize(
    "nb_index,param,value",
    [
        (0, "FACT_STEPS", 0),  # section 7's fine-tune
        # the reward trend reads the first and last 3 logged steps
        (4, "GRPO_CHANGES", {"steps": 4}),
        (4, "SIBLINGS", ["IPO", "SimPO"]),
        (4, "NOISE_METHODS", ["DPO", "SimPO"]),
        (4, "N_NOISE_DRAWS", 0),
        # the sweep compares with the main DPO run saved at that step
        (4, "SWEEP_STEPS", 1000),
        # the GRPO arms compare with the main run saved at that step
        (4, "GRPO_ARM_STEPS", 1000),
        # the takeaways compare raw data and the label-list prompt
        (3, "ABL_ARMS", ["alpha=r"]),
        (3, "ABL_ARMS", ["raw", "label-list prompt", "dora"]),
        (3, "INJECT_SHARE", 1.5),  # section 8d copies a share of the curated rows
        # section 6b averages from a share of the run on; 1 leaves nothing
        (3, "AVG_FROM", 1.0),
        # section 8e's small noisy set needs its clean twin in SIZE_ARMS
        (3, "N_SMALL_SET", 100),
        (3, "SIZE_ARMS", [500, 50]),
        (3, "NOISE_RATES", [0, 0.1]),
    ],
)
def test_a_choice_the_notebook_cannot_run_fails_before_training(nb_index, param, value):
    with pytest.raises(ValueError, match=re.escape(f"{param}={value}")):
        run_sizes(course.notebooks()[nb_index], {param: value})


def test_notebook_02_defaults_match_the_pipelines():
    """Notebook 04 curates on its own with `curation.curate`'s defaults when notebook 02's rows are
    missing, so notebook 02's parameters must give the same rows."""
    nb02 = next(nb for nb in NOTEBOOKS if nb.stem == "02_data_curation")
    defaults = learner_defaults(nb02)
    curate = inspect.signature(curation.curate).parameters
    for param, arg in {
        "SEED": "seed",
        "NEAR_METHOD": "near_method",
        "NEAR_THRESHOLD": "near_threshold",
        "AUDIT_THRESHOLD": "audit_threshold",
        "EVAL_FRAC": "eval_frac",
        "UPSAMPLE": "factor",
    }.items():
        assert defaults[param] == curate[arg].default, (
            f"notebook 02's {param}={defaults[param]!r} differs from curation.curate's "
            f"{arg}={curate[arg].default!r}"
        )


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(nb):
    """papermill's parser skips a line it cannot read (a comment holding ' = ' did, in notebook
    05): `papermill --help-notebook` then omits the parameter and `make course` warns."""
    from papermill.inspection import inspect_notebook

    names = learner_defaults(nb)
    seen = inspect_notebook(str(nb))
    assert names and sorted(set(names) - set(seen)) == [], (nb.name, sorted(seen))
