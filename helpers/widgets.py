"""Sliders with a static fallback: the function is called once with defaults, so headless runs show the plot."""

from __future__ import annotations

from typing import Callable


def try_it(fn: Callable, **controls):
    """Call fn once with each control's default (static result), then show sliders for it where widgets exist."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    defaults = {k: getattr(w, "value", w) for k, w in controls.items()}
    result = fn(**defaults)
    plt.show()
    try:
        import ipywidgets as ipw
    except ImportError:
        print("ipywidgets is not installed: static plot only")
        return result
    display(ipw.interactive(lambda **kw: (fn(**kw), plt.show()), **controls))
    return result
