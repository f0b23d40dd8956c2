"""Deterministic generator for the running example: support tickets mapped to strict JSON.

`write_all(data_dir)` writes train/eval/canary sets and the messy raw dump (with its truth file),
each with a short data card. Same seed in, same bytes out.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from helpers import phrasebook as pb
from helpers.data import write_jsonl
from helpers.rawdump import make_raw_dump
from helpers.tickets import make_ticket, record, sample_urgency, surface_noise, when

SIZES = {"train": 1500, "eval": 200, "canary": 24, "raw_dump": 3000}
SEEDS = {"train": 11, "eval": 22, "canary": 33, "raw_dump": 44}


def clean_set(
    name: str, family: str, n: int, seed: int, avoid: set[str] = frozenset()
) -> list[dict]:
    """Generate n unique, correctly labelled tickets from one family."""
    rng = random.Random(seed)
    rows, seen = [], set(avoid)
    while len(rows) < n:
        intent = (
            pb.INTENTS[len(rows) % len(pb.INTENTS)] if name == "canary" else rng.choice(pb.INTENTS)
        )
        t = make_ticket(rng, family, intent, sample_urgency(rng, intent))
        text = surface_noise(rng, t)
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        rows.append(
            record(
                f"{name}-{len(rows):05d}",
                f"{name[0]}{rng.randint(0, n // 2):05d}",
                when(rng),
                text,
                t.label,
            )
        )
    return rows


def counts(rows: list[dict], key: str) -> dict[str, int]:
    """Count gold labels per value of one field."""
    out: dict[str, int] = {}
    for r in rows:
        v = str(json.loads(r["messages"][-1]["content"])[key])
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def card(name: str, rows: list[dict], purpose: str) -> str:
    """A short markdown data card for one generated file."""
    lines = [
        f"# Data card: {name}.jsonl",
        "",
        purpose,
        "",
        f"- rows: {len(rows)}",
        f"- generator: `helpers.datagen` (seed {SEEDS[name]}); "
        "`python -m helpers.datagen` rewrites it byte for byte",
        "- format: one JSON object a line: `id`, `user_id`, `created_at`, `messages` "
        "(user ticket, assistant JSON per `ticket_schema.json`)",
        f"- intents: {counts(rows, 'intent')}",
        f"- urgency: {counts(rows, 'urgency')}",
        "- synthetic: no real customer wrote any of it; names, e-mails and numbers are invented",
    ]
    return "\n".join(lines) + "\n"


PURPOSES = {
    "train": "Training pool. Train-family templates, products and cue phrases only.",
    "eval": "Held-out eval set. Its templates, products, cue phrases and fillers never appear in "
    "the "
    "train family, so scores measure generalisation, not memorised strings.",
    "canary": "Small canary set: every intent, eval-family phrasing. A fast smoke check for "
    "serving and regressions.",
}


def write_all(data_dir: Path) -> dict[str, int]:
    """Generate every committed data file (and its card) into data_dir; return row counts."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    train = clean_set("train", "train", SIZES["train"], SEEDS["train"])
    seen = {r["messages"][0]["content"].lower() for r in train}
    ev = clean_set("eval", "eval", SIZES["eval"], SEEDS["eval"], seen)
    seen |= {r["messages"][0]["content"].lower() for r in ev}
    canary = clean_set("canary", "eval", SIZES["canary"], SEEDS["canary"], seen)
    out = {"train": train, "eval": ev, "canary": canary}
    for name, rows in out.items():
        write_jsonl(data_dir / f"{name}.jsonl", rows)
        (data_dir / f"{name}.card.md").write_text(
            card(name, rows, PURPOSES[name]), encoding="utf-8"
        )
    sizes = {k: len(v) for k, v in out.items()}
    sizes["raw_dump"] = make_raw_dump(data_dir, SIZES["raw_dump"], SEEDS["raw_dump"])
    return sizes


if __name__ == "__main__":
    import sys

    target = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "data"
    )
    print(write_all(target))
