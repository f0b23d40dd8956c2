"""The "Try it" helper: exact slider defaults, one plot per cell, and the first live render equal
to the static one."""

from __future__ import annotations

import contextlib
import io
import math
import re
import sys

import ipywidgets as ipw
import matplotlib
import nbformat
import pytest

from helpers import course, decision, lora, widgets

matplotlib.use("Agg")


def try_it_cells():
    """(notebook, setup + parameters + definition cells, try-it source) for every slider cell in
    the course."""
    found = []
    for nb_path in course.notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        setup = [c.source for c in nb.cells if "setup" in c.metadata.get("tags", [])]
        params = [c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        params += [
            c.source
            for c in nb.cells
            if set(c.metadata.get("tags", [])) & set(course.DEFINITION_TAGS)
        ]
        for c in nb.cells:
            if "try-it" in c.metadata.get("tags", []):
                assert len(setup) == 1, (
                    f"{nb_path.name}: a try-it cell needs exactly one cell tagged 'setup'"
                )
                found.append((nb_path.name, setup[0] + "\n" + "\n".join(params), c.source))
    return found


def run_cell(setup: str, cell: str, headless: bool, monkeypatch) -> list[str]:
    """Execute setup + cell as plain Python; return the printed lines other than widget reprs."""
    from IPython.core.inputtransformer2 import TransformerManager

    monkeypatch.setenv(widgets.HEADLESS_ENV, "1" if headless else "0")
    # the Colab-only `!` and `%` lines become plain Python
    setup = TransformerManager().transform_cell(setup)
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(setup, "setup", "exec"), ns)
        exec(compile(cell, "try-it", "exec"), ns)
    # terminal control codes from progress bars
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out.getvalue())
    return [
        ln
        for ln in text.splitlines()
        if ln.strip() and not ln.startswith(("interactive(", "<Figure"))
    ]


def test_course_has_try_it_cells_and_the_browser_test_covers_them():
    import importlib.util

    names = {nb for nb, _, _ in try_it_cells()}
    assert {
        "01_decision_check.ipynb",
        "03_lora_math.ipynb",
        "05_dpo_and_siblings.ipynb",
        "06_decoding.ipynb",
    } <= names
    spec = importlib.util.spec_from_file_location(
        "ui_test", course.repo_root() / "scripts" / "ui_test.py"
    )
    ui = importlib.util.module_from_spec(spec)
    sys.modules["ui_test"] = ui  # dataclasses look their module up there
    spec.loader.exec_module(ui)
    assert {f"{c.notebook}.ipynb" for c in ui.CHECKS} == names, (
        "every try-it cell needs a slider move in scripts/ui_test.py"
    )


@pytest.mark.parametrize(
    "nb,setup,cell", try_it_cells(), ids=lambda v: v if v.endswith(".ipynb") else ""
)
def test_first_live_render_equals_static(nb, setup, cell, monkeypatch):
    try:
        static = run_cell(setup, cell, headless=True, monkeypatch=monkeypatch)
    # a slider that reads an executed notebook's output (06) before any run
    except FileNotFoundError as e:
        pytest.skip(f"{nb}: {e}")
    live = run_cell(setup, cell, headless=False, monkeypatch=monkeypatch)
    assert static, f"{nb}: the try-it function prints no read-out"
    assert live == static, f"{nb}: the first live render differs from the static one"


def test_log_slider_that_snaps_its_default_is_refused():
    def f(price=0.005):
        return price

    log = ipw.FloatLogSlider(value=0.005, base=10, min=-4, max=-1)  # exponent steps of 0.1
    assert widgets.snapped(log) == pytest.approx(10**-2.3)  # the browser shows 0.00501
    with pytest.raises(
        ValueError,
        match=r"'price' control starts at 0.005, but its steps snap "
        r"that to 0.00501",
    ):
        widgets.try_it(f, price=log)
    off_grid = ipw.FloatSlider(value=0.23, min=0, max=1, step=0.05)
    with pytest.raises(ValueError, match="snap that to 0.25"):
        widgets.try_it(lambda upkeep=0.23: upkeep, upkeep=off_grid)


def test_default_that_differs_from_the_signature_is_refused():
    with pytest.raises(ValueError, match=r"'rank' control starts at 8 but f\(\) documents 16"):

        def f(rank=16):
            return rank

        widgets.try_it(f, rank=ipw.IntSlider(8, 1, 64))


def test_choice_slider_starts_exactly_on_its_default():
    for default, lo, hi in [(0.005, 1e-4, 0.1), (0.0003, 1e-5, 0.01), (0.07, 0.01, 1.0)]:
        s = widgets.choice_slider(default, lo, hi, "x")
        assert s.value == default
        vals = [v for _, v in s.options]
        assert vals == sorted(vals) and vals[0] >= lo and vals[-1] <= hi
        assert len(vals) >= 3 * math.floor(math.log10(hi / lo))  # a few steps per decade


def test_unknown_control_names_the_parameter():
    with pytest.raises(TypeError, match="no parameter 'rnak'"):
        widgets.try_it(lambda rank=16: rank, rnak=ipw.IntSlider(16))


def test_headless_shows_exactly_one_figure(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv(widgets.HEADLESS_ENV, "1")
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(len(plt.get_fignums())))

    def draw(n=3):
        plt.subplots()
        return n * 2

    assert widgets.try_it(draw, n=ipw.IntSlider(3, 1, 9)) == 6
    assert shown == [1] and plt.get_fignums() == []


def test_execute_marks_the_kernel_headless(monkeypatch):
    monkeypatch.delenv(widgets.HEADLESS_ENV, raising=False)
    with course.headless_kernel():
        assert widgets.headless()
    assert not widgets.headless()


@pytest.mark.parametrize(
    "days,horizon,text",
    [
        (192.94, 365, "payback after 192.9 days"),
        (912.5, 365, "payback after 2.5 years, past this 365-day chart"),
        (400, 365, "payback after 1.1 years, past this 365-day chart"),
        (float("inf"), 365, "no payback: the upkeep eats the whole saving"),
    ],
)
def test_payback_text_is_honest_past_the_horizon(days, horizon, text):
    assert decision.payback_text(days, horizon) == text


def test_payback_readout_with_a_30k_build():
    c = decision.slider_costs(10_000, 0.005, 0.0003, 30_000, 0.20)
    r = decision.roi(c)
    assert r["payback_days"] > 365
    line = decision.readout(c, 365)
    assert f"{r['net_saving_per_year']:,.0f} USD/year" in line and "past this 365-day chart" in line


def test_smollm2_shape_constant_matches_the_model():
    from transformers import AutoConfig

    from helpers import models

    cfg = AutoConfig.from_pretrained(models.resolve("smollm2-135m"))
    a = lora.arch_from_config("SmolLM2-135M", cfg, lora.SMOLLM2_135M.params)
    assert a == lora.SMOLLM2_135M
    # total parameters with tied embeddings: embeddings + 30 layers + final norm
    h, i, kv = 576, 1536, 576 // 9 * 3
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    assert lora.SMOLLM2_135M.params == 49152 * h + 30 * per_layer + h


def test_lora_readout_follows_rank():
    r16, r32 = (
        lora.readout("Llama-3.1-8B", 16, 16, "all-linear", 2048),
        lora.readout("Llama-3.1-8B", 32, 16, "all-linear", 2048),
    )
    assert (
        r32["trainable"]
        == 2 * r16["trainable"]
        == 2 * lora.count_lora(lora.LLAMA_8B, 16, lora.ALL_LINEAR)
    )
    assert r32["scaling"] == 0.5 and f"{r16['trainable']:,}" in lora.readout_line(r16)
