"""Notebook 07: the evaluation a team runs before shipping: overfitting flag, intent F1 and
confusions, a canary gate, an offline stand-in judge, checkpoint choice on a Pareto front, and
the ship / don't-ship report."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import numpy as np

from helpers.data import FIELDS, ORDER_ID, intents
from helpers.evaluate import parse_output

INVALID = "(invalid)"


# ---------------------------------------------------------------- tier 1: training metrics


def overfit_flag(
    train_loss: list[tuple[int, float]], eval_loss: list[tuple[int, float]], window: int = 10
) -> dict:
    """Flag overfitting: eval loss rose between two evaluations while the smoothed train loss
    fell."""

    def smoothed(step: int) -> float:
        near = [v for s, v in train_loss if step - window < s <= step]
        return float(np.mean(near)) if near else float("nan")

    events = []
    for (s0, e0), (s1, e1) in zip(eval_loss, eval_loss[1:]):
        if e1 > e0 and smoothed(s1) < smoothed(s0):
            events.append(
                {
                    "from_step": s0,
                    "to_step": s1,
                    "eval_loss": [e0, e1],
                    "train_loss": [smoothed(s0), smoothed(s1)],
                }
            )
    return {"overfitting": bool(events), "events": events, "evals": len(eval_loss)}


# ---------------------------------------------------------------- tier 2: held-out test


def predicted_intents(outputs: list[str]) -> list[str]:
    """The intent each output names, or '(invalid)' when the output is not schema-valid JSON."""
    out = []
    for text in outputs:
        p = parse_output(text)
        out.append(p.obj["intent"] if p.valid else INVALID)
    return out


def intent_report(y_true: list[str], y_pred: list[str]) -> dict:
    """Macro-F1 over the intents (sklearn), per-intent F1 and the confusion matrix with an
    '(invalid)' column."""
    from sklearn.metrics import confusion_matrix, f1_score

    labels = intents()
    cols = labels + [INVALID]
    cm = confusion_matrix(y_true, y_pred, labels=cols)[: len(labels)]
    per = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "per_intent_f1": dict(zip(labels, map(float, per))),
        "confusion": cm.tolist(),
        "rows": labels,
        "cols": cols,
    }


def confusion_plot(report: dict, title: str):
    """The confusion matrix as a heat map: gold intents down, predicted across (invalid output
    last)."""
    import matplotlib.pyplot as plt

    cm = np.array(report["confusion"])
    fig, ax = plt.subplots(figsize=(8, 5.2), layout="constrained")
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v > cm.max() / 2 else "black",
            )
    ax.set_xticks(range(len(report["cols"])), report["cols"], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(report["rows"])), report["rows"], fontsize=8)
    ax.set(xlabel="predicted", ylabel="gold", title=title)
    return fig


# ---------------------------------------------------------------- the canary gate


def canary_gate(
    reference: dict,
    candidate: dict,
    max_drop: float = 0.05,
    metrics: tuple[str, ...] = ("json_valid", "exact_match"),
) -> dict:
    """BLOCK when any metric fell by more than max_drop (absolute) against the reference version;
    else PASS."""
    drops = {m: reference[m] - candidate[m] for m in metrics}
    failed = [m for m, d in drops.items() if d > max_drop + 1e-12]
    return {
        "verdict": "BLOCK" if failed else "PASS",
        "drops": drops,
        "failed": failed,
        "max_drop": max_drop,
    }


# ---------------------------------------------------------------- an offline stand-in judge


class StandInJudge:
    """A labelled local stand-in for an LLM judge: a TF-IDF + logistic-regression reader of the
    ticket (trained on the training pool) and the ticket's own order id. It prefers the output
    that agrees with them and is valid."""

    def __init__(self, train_rows: list[dict], seed: int = 0):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        from helpers.data import gold, ticket

        texts = [ticket(r) for r in train_rows]
        self.readers = {}
        for field in ("intent", "urgency"):
            clf = make_pipeline(
                TfidfVectorizer(ngram_range=(1, 2), min_df=2),
                LogisticRegression(max_iter=1000, random_state=seed),
            )
            self.readers[field] = clf.fit(texts, [gold(r)[field] for r in train_rows])

    def expected(self, ticket_text: str) -> dict:
        """What the judge reads from the ticket alone (no gold label)."""
        ids = ORDER_ID.findall(ticket_text)
        return {
            "intent": self.readers["intent"].predict([ticket_text])[0],
            "urgency": self.readers["urgency"].predict([ticket_text])[0],
            "order_id": ids[0] if ids else None,
        }

    def score(self, ticket_text: str, output: str) -> int:
        """Valid schema (1) plus one per field that agrees with the judge's reading."""
        p = parse_output(output)
        if not p.valid:
            return 0
        exp = self.expected(ticket_text)
        return 1 + sum(p.obj[k] == exp[k] for k in FIELDS)

    def pairwise(self, ticket_text: str, a: str, b: str) -> str:
        """'A', 'B' or 'tie'."""
        sa, sb = self.score(ticket_text, a), self.score(ticket_text, b)
        return "A" if sa > sb else "B" if sb > sa else "tie"


def gold_preference(a_fields: int, b_fields: int) -> str:
    """Which output the gold labels prefer: more fields right (invalid output counts -1)."""
    return "A" if a_fields > b_fields else "B" if b_fields > a_fields else "tie"


def fields_right(output: str, g: dict) -> int:
    """How many of the three fields an output gets right; -1 when it is not schema-valid."""
    p = parse_output(output)
    return sum(p.obj[k] == g[k] for k in g) if p.valid else -1


def agreement(judge: list[str], truth: list[str]) -> dict:
    """Share of pairs where the judge's verdict equals the gold preference, over pairs gold does
    not call a tie."""
    decided = [(j, t) for j, t in zip(judge, truth) if t != "tie"]
    return {
        "agreement": sum(j == t for j, t in decided) / max(len(decided), 1),
        "decided_pairs": len(decided),
        "n": len(judge),
    }


# ---------------------------------------------------------------- tier 4: general capability kept


def retention_check(
    base_right: list[bool],
    tuned_right: list[bool],
    floor: float = 0.95,
    seed: int = 0,
    draws: int = 4000,
) -> dict:
    """The share of the base's general accuracy the tuned model keeps, with a paired 95%
    bootstrap interval over the items, and whether the set resolves the floor: "kept", "lost", or
    "not resolved" by this many items."""
    if len(base_right) != len(tuned_right) or not base_right:
        raise ValueError(
            "retention_check needs one result per item from each model; got "
            f"{len(base_right)} base "
            f"and {len(tuned_right)} tuned"
        )
    b, t = np.asarray(base_right, dtype=float), np.asarray(tuned_right, dtype=float)
    if b.sum() == 0:
        raise ValueError(
            "retention_check: the base model got no item right, so a kept share is undefined"
        )
    idx = np.random.default_rng(seed).integers(0, len(b), size=(draws, len(b)))
    base_sums = b[idx].sum(1)
    ratios = t[idx].sum(1)[base_sums > 0] / base_sums[base_sums > 0]
    lo, hi = (float(x) for x in np.percentile(ratios, [2.5, 97.5]))
    verdict = "kept" if lo >= floor else "lost" if hi < floor else "not resolved"
    return {
        "retention": float(t.sum() / b.sum()),
        "ci95": [lo, hi],
        "floor": floor,
        "verdict": verdict,
        "n_items": len(b),
        "base_right": int(b.sum()),
        "tuned_right": int(t.sum()),
        "items_both_right": int((b * t).sum()),
        "items_changed": int((b != t).sum()),
    }


# ---------------------------------------------------------------- checkpoint choice


def pareto_front(points: list[dict], keys: tuple[str, ...]) -> list[bool]:
    """True for each point no other point beats on every key (higher is better) and strictly on
    one."""
    front = []
    for p in points:
        dominated = any(
            all(q[k] >= p[k] for k in keys) and any(q[k] > p[k] for k in keys)
            for q in points
            if q is not p
        )
        front.append(not dominated)
    return front


def choose_checkpoint(
    points: list[dict],
    domain: str = "exact_match",
    general: str = "general_retention",
    below_peak: float = 0.03,
    floor: float = 0.95,
    fmt: str = "json_valid",
    format_floor: float = 0.95,
) -> dict:
    """The seeds' rule: among checkpoints within `below_peak` of the best domain score that keep
    >= `floor` of general capability, take the one that keeps the most general capability. Only
    checkpoints whose format compliance reaches `format_floor` are considered; the fallbacks say
    so in `rule`."""
    usable = [p for p in points if p[fmt] >= format_floor] or points
    peak = max(p[domain] for p in usable)
    near = [p for p in usable if p[domain] >= peak - below_peak - 1e-12 and p[general] >= floor]
    if near:
        best = max(near, key=lambda p: (p[general], p[domain]))
        reason = (
            f"within {below_peak:.0%} of the peak {domain} ({peak:.0%}), keeping >= {floor:.0%} of "
            "general capability"
        )
    elif keep := [p for p in usable if p[general] >= floor]:
        best = max(keep, key=lambda p: (p[domain], p[general]))
        reason = (
            f"none near the peak keeps {floor:.0%} of general capability: the best {domain} among "
            "those that do"
        )
    else:
        best = max(usable, key=lambda p: (p[domain], p[general]))
        reason = (
            f"no usable checkpoint keeps {floor:.0%} of general capability: the peak {domain}, "
            "flagged for review"
        )
    return {**best, "rule": reason}


# ---------------------------------------------------------------- the report


def figure_png(fig) -> str:
    """A matplotlib figure as a base64 PNG string (for the self-contained HTML report)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


REPORT_SECTIONS = (
    "Verdict",
    "Tier 1 · training metrics",
    "Tier 2 · held-out test",
    "Tier 3 · out-of-distribution probes",
    "Tier 4 · general capability",
    "Canary gate",
    "Judge",
    "Checkpoint",
    "Versions",
)


def write_report(
    folder: Path, title: str, sections: dict[str, str], figures: dict[str, str]
) -> tuple[Path, Path]:
    """report.md and report.html (figures embedded as base64 PNGs) in folder; every section must
    have text."""
    missing = [s for s in REPORT_SECTIONS if not sections.get(s, "").strip()]
    if missing:
        raise ValueError(f"report sections without content: {', '.join(missing)}")
    md = [f"# {title}", ""]
    for name in REPORT_SECTIONS:
        md += [f"## {name}", "", sections[name].strip(), ""]
        for fig_title, png in figures.items():
            if fig_title.startswith(name):
                md += [f"![{fig_title}](data:image/png;base64,{png})", ""]
    md_path = folder / "report.md"
    md_path.write_text("\n".join(md))
    body = []
    for name in REPORT_SECTIONS:
        text = html.escape(sections[name].strip()).replace("\n", "<br>")
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        body.append(f"<h2>{html.escape(name)}</h2><p>{text}</p>")
        body += [
            f'<img alt="{html.escape(t)}" src="data:image/png;base64,{png}" style="max-width:100%">'
            for t, png in figures.items()
            if t.startswith(name)
        ]
    html_path = folder / "report.html"
    html_path.write_text(
        "<!doctype html><html><head><meta "
        f"charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(body)}</body></html>"
    )
    return md_path, html_path
