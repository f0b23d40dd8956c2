"""Plots shared by the notebooks: titled, labelled, with units."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from helpers.decision import Costs, roi

METRICS = ("json_valid", "exact_match", "acc_intent", "acc_urgency", "acc_order_id")


def metric_bars(results: dict[str, dict], title: str, metrics: tuple[str, ...] = METRICS):
    """Grouped bars: one group per metric, one bar per mode (scores in %)."""
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / max(len(results), 1)
    x = np.arange(len(metrics))
    for k, (mode, sc) in enumerate(results.items()):
        vals = [100 * sc[m] for m in metrics]
        bars = ax.bar(x + k * width, vals, width, label=mode)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(x + width * (len(results) - 1) / 2, metrics)
    ax.set_ylabel("score on held-out eval (%)")
    ax.set_ylim(0, 110)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def payback_plot(c: Costs, horizon_days: int = 60):
    """Cumulative spend of the prompted frontier model vs the fine-tuned model, in dollars."""
    from helpers.decision import payback_text

    r = roi(c)
    days = np.arange(0, horizon_days + 1)
    prompted = days * c.requests_per_day * c.prompted_cost_per_request
    tuned = r["upfront"] + days * (
        c.requests_per_day * c.tuned_cost_per_request + r["upkeep_per_year"] / 365
    )
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    ax.plot(days, prompted, label="prompted frontier model")
    ax.plot(days, tuned, label="fine-tuned small model (incl. up-front cost)")
    if r["payback_days"] <= horizon_days:
        ax.axvline(r["payback_days"], ls="--", c="grey")
        ax.annotate(
            f"payback {r['payback_days']:.1f} days",
            (r["payback_days"], max(prompted.max(), tuned.max()) * 0.9),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xlabel("days in production")
    ax.set_ylabel("cumulative cost (USD)")
    ax.set_title(
        f"Net saving {r['net_saving_per_year']:,.0f} USD/year; "
        f"{payback_text(r['payback_days'], horizon_days)}",
        fontsize=10,
    )
    # below the axes: it never covers a line
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)
    return fig


def memory_bars(gb: dict[str, float], title: str):
    """Horizontal bars of training GB per method, each labelled inside the chart's edge."""
    fig, ax = plt.subplots(figsize=(8, 2.8), layout="constrained")
    bars = ax.barh(
        list(gb), list(gb.values()), color=["tab:red", "tab:blue", "tab:green"][: len(gb)]
    )
    ax.bar_label(bars, fmt="%.1f GB", fontsize=8, padding=3)
    ax.set_xlim(0, max(gb.values()) * 1.25)  # room for the longest bar's label
    ax.set(xlabel="training memory (GB, batch 1, grad. checkpointing)")
    ax.set_title(title, fontsize=10)
    return fig


def funnel(steps: list[tuple[str, int]], title: str = "Rows kept after each cleaning step"):
    """Horizontal bars of rows kept per pipeline step, top to bottom."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(steps) + 1))
    names, kept = zip(*steps)
    bars = ax.barh(range(len(steps)), kept, color="tab:blue")
    ax.bar_label(bars, fmt="%d", fontsize=8, padding=2)
    ax.set_yticks(range(len(steps)), names)
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def threshold_sweep(curves: dict[str, list[tuple[float, dict]]], mark: dict[str, float]):
    """Recall and precision against the threshold, one panel per method; dashed lines mark the
    chosen values."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.4), squeeze=False)
    for ax, (method, pts) in zip(axes[0], curves.items()):
        th = [t for t, _ in pts]
        ax.plot(th, [s["recall"] for _, s in pts], "o-", label="recall (planted re-sends)")
        ax.plot(th, [s["precision"] for _, s in pts], "s--", label="precision (planted only)")
        ax.plot(
            th,
            [s["precision_with_twins"] for _, s in pts],
            "^-",
            label="precision (+ template twins)",
        )
        if method in mark:
            ax.axvline(mark[method], c="grey", ls=":")
        ax.set_xlabel("similarity threshold" + (" (cosine)" if method == "tfidf" else " (Jaccard)"))
        ax.set_ylabel("share")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"near-dedup: {method}")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def class_balance(before: dict[str, int], after: dict[str, int], title: str):
    """Side-by-side counts per class, before and after a step (e.g. upsampling)."""
    keys = sorted(set(before) | set(after))
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.bar(x - 0.2, [before.get(k, 0) for k in keys], 0.4, label="before")
    ax.bar(x + 0.2, [after.get(k, 0) for k in keys], 0.4, label="after")
    ax.set_xticks(x, keys, rotation=25, ha="right")
    ax.set_ylabel("rows")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
