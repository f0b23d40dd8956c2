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
    r = roi(c)
    days = np.arange(0, horizon_days + 1)
    prompted = days * c.requests_per_day * c.prompted_cost_per_request
    tuned = r["upfront"] + days * (c.requests_per_day * c.tuned_cost_per_request + r["upkeep_per_year"] / 365)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(days, prompted, label="prompted frontier model")
    ax.plot(days, tuned, label="fine-tuned small model (incl. up-front cost)")
    if r["payback_days"] <= horizon_days:
        ax.axvline(r["payback_days"], ls="--", c="grey")
        ax.annotate(f"payback {r['payback_days']:.1f} days", (r["payback_days"], prompted.max() * 0.1))
    ax.set_xlabel("days in production")
    ax.set_ylabel("cumulative cost (USD)")
    ax.set_title(f"Net saving {r['net_saving_per_year']:,.0f} USD/year")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
