"""The "Try it" cells: one plot per cell, live sliders in a kernel with a browser, the static plot
when headless.

Every slider cell in the course calls `try_it(fn, **controls)`. `fn` draws one figure and prints its
own read-out, so every number a slider affects is redrawn with it.
- Live (JupyterLab, Colab): only the interactive widget is shown; its first render is `fn` at the
  defaults.
- Headless (papermill via `helpers.course.execute`, which sets WORKBOOK_HEADLESS=1 for the kernel):
  `fn` runs
  once at the defaults and its figure stays in the executed notebook.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, Callable

HEADLESS_ENV = "WORKBOOK_HEADLESS"


def headless() -> bool:
    """True when the kernel was started by a headless run (papermill, CI, `make course`)."""
    return os.environ.get(HEADLESS_ENV) == "1"


def control_value(control: Any) -> Any:
    """The starting value of a widget, or the value itself for a fixed argument."""
    return getattr(control, "value", control)


def snapped(control: Any) -> Any:
    """The value the browser shows for a slider: its start value rounded to the slider's step
    grid."""
    step = getattr(control, "step", None)
    if not step or not hasattr(control, "min") or isinstance(control.value, (tuple, list)):
        return control_value(control)
    if hasattr(control, "base"):  # FloatLogSlider: the grid is on the exponent
        exp = math.log(control.value, control.base)
        return control.base ** (control.min + round((exp - control.min) / step) * step)
    return control.min + round((control.value - control.min) / step) * step


def check_defaults(fn: Callable, controls: dict[str, Any]) -> dict[str, Any]:
    """The controls' starting values; raises if one differs from fn's documented default (a
    snapped slider)."""
    params = inspect.signature(fn).parameters
    values = {}
    for name, control in controls.items():
        if name not in params:
            raise TypeError(
                f"{fn.__name__}() has no parameter {name!r} for the control of that name"
            )
        value, default = control_value(control), params[name].default
        shown = snapped(control)
        if (
            not math.isclose(shown, value, rel_tol=1e-9)
            if isinstance(value, float)
            else shown != value
        ):
            raise ValueError(
                f"the {name!r} control starts at {value!r}, but its steps snap that "
                f"to {shown:.3g} in the "
                "browser; use a slider whose steps include it (for example "
                "widgets.choice_slider)"
            )
        if default is not inspect.Parameter.empty and value != default:
            raise ValueError(
                f"the {name!r} control starts at {value!r} but {fn.__name__}() "
                f"documents {default!r}; "
                "use a slider whose steps include the default (for example "
                "widgets.choice_slider)"
            )
        values[name] = value
    return values


def nice_steps(lo: float, hi: float, include: float) -> list[float]:
    """1-2-3-5 steps per decade between lo and hi, plus `include` exactly: a log scale with an
    exact default."""
    steps = {include}
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 3, 5):
            v = float(f"{m}e{exp}")
            if lo <= v <= hi:
                steps.add(v)
    return sorted(steps)


def choice_slider(default: float, lo: float, hi: float, description: str, fmt: str = "{:g}"):
    """A log-like slider over nice_steps(lo, hi) that starts exactly on `default` (FloatLogSlider
    snaps it)."""
    import ipywidgets as ipw

    options = [(fmt.format(v), v) for v in nice_steps(lo, hi, default)]
    return ipw.SelectionSlider(
        options=options, value=default, description=description, continuous_update=False
    )


def _one_render(fn: Callable) -> Callable:
    """fn, then show (and close) its figure, so each render leaves exactly one plot."""
    import matplotlib.pyplot as plt

    def render(**kwargs):
        result = fn(**kwargs)
        plt.show()
        plt.close("all")
        return result

    render.__name__ = fn.__name__
    return render


def try_it(fn: Callable, **controls) -> Any:
    """Show fn with sliders (live) or its plot at the defaults (headless); return fn's result at
    the defaults."""
    defaults = check_defaults(fn, controls)
    render = _one_render(fn)
    try:
        import ipywidgets as ipw
    except ImportError:
        print("ipywidgets is not installed: the plot below is static, at the defaults")
        return render(**defaults)
    if headless():
        return render(**defaults)
    from IPython.display import display

    live = ipw.interactive(render, **controls)
    display(live)
    return live.result
