"""Score notebook 02's cleaning steps against the defects the generator planted
(raw_dump_truth.jsonl)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from helpers.curation import recall_precision


def load_truth(path: str | Path) -> dict[str, dict]:
    """The truth file, keyed by row id."""
    with open(path, encoding="utf-8") as f:
        return {t["row_id"]: t for t in map(json.loads, f)}


def planted(truth: dict[str, dict], defect: str, among: list[dict] | None = None) -> set[str]:
    """Ids of rows carrying a planted defect, optionally only those still present in `among`."""
    ids = {i for i, t in truth.items() if defect in t["defects"]}
    return ids & {r["id"] for r in among} if among is not None else ids


def score_drop(
    dropped: list[str], truth: dict[str, dict], defects: tuple[str, ...], among: list[dict]
) -> dict:
    """Recall and precision of a step's dropped ids against rows (still present) with any of the
    defects."""
    target = set().union(*(planted(truth, d, among) for d in defects))
    return recall_precision(set(dropped), target)


def score_dedup(
    dropped: list[str],
    truth: dict[str, dict],
    among: list[dict],
    defects: tuple[str, ...] = ("exact_duplicate", "near_duplicate"),
) -> dict:
    """Dedup scores against planted copies, and with same-template twins (other users, same
    words) counted as redundancy."""
    target = set().union(*(planted(truth, d, among) for d in defects))
    base = recall_precision(set(dropped), target)
    kept_cores = Counter(truth[r["id"]]["core"] for r in among if r["id"] not in set(dropped))
    twins = {i for i in set(dropped) - target if kept_cores[truth[i]["core"]] > 0}
    base["template_twins"] = len(twins)
    base["precision_with_twins"] = (
        (len(set(dropped) & target) + len(twins)) / len(dropped) if dropped else 1.0
    )
    return base


def score_pii(
    before: list[dict], after: list[dict], hits: dict[str, list], truth: dict[str, dict]
) -> tuple[dict, list]:
    """Per PII type: recall (planted value gone from the text), precision (hits that overlap a
    planted value), misses."""
    text_after = {r["id"]: r["text"] for r in after}
    found, total, true_hits, all_hits, misses = Counter(), Counter(), Counter(), Counter(), []
    for r in before:
        spans = truth[r["id"]]["pii"]
        for s in spans:
            total[s["type"]] += 1
            if s["value"] in text_after[r["id"]]:
                misses.append(
                    {
                        "id": r["id"],
                        "type": s["type"],
                        "value": s["value"],
                        "text": text_after[r["id"]],
                    }
                )
            else:
                found[s["type"]] += 1
        for h in hits.get(r["id"], []):
            all_hits[h.type] += 1
            true_hits[h.type] += any(
                s["type"] == h.type and (h.value in s["value"] or s["value"] in h.value)
                for s in spans
            )
    table = {
        t: {
            "planted": total[t],
            "recall": found[t] / total[t],
            "precision": true_hits[t] / all_hits[t] if all_hits[t] else 1.0,
        }
        for t in sorted(total)
    }
    return table, misses


def score_format(
    dropped: list[str], truth: dict[str, dict], among: list[dict], kept: list[dict]
) -> dict:
    """Drifted rows: share of repairable ones repaired to the true-as-given label, share of
    unrepairable ones dropped."""
    drift = planted(truth, "format_drift", among)
    unrepairable = {i for i in drift if truth[i]["repairable"] is False}
    repairable = drift - unrepairable
    kept_ids = {r["id"] for r in kept}
    return {
        "drifted": len(drift),
        "repaired": len(repairable & kept_ids) / len(repairable) if repairable else 1.0,
        "unrepairable_dropped": len(unrepairable & set(dropped)) / len(unrepairable)
        if unrepairable
        else 1.0,
        "clean_rows_dropped": len(set(dropped) - drift),
    }


def remaining_defects(rows: list[dict], truth: dict[str, dict]) -> dict[str, int]:
    """What should be gone from the curated rows but is not: injections, wrong labels, copy
    pairs, visible PII."""
    ids = {r["id"] for r in rows}
    return {
        "injections": sum("injection" in truth[r["id"]]["defects"] for r in rows),
        "wrong_labels": sum(1 for r in rows if r["label"] != truth[r["id"]]["true_label"]),
        "copy_pairs": sum(1 for r in rows if truth[r["id"]]["duplicate_of"] in ids),
        "pii_values_visible": sum(
            s["value"] in r["text"] for r in rows for s in truth[r["id"]]["pii"]
        ),
    }
