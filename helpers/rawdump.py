"""The messy raw export that notebook 02 curates, with a truth file of every defect planted.

Rows look like a real ticket-system export: user id, timestamp, customer text and an
assistant label written by a past (imperfect) process. The truth file is for scoring only.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

from helpers import phrasebook as pb
from helpers.data import MAX_TICKET_CHARS
from helpers.tickets import (
    Ticket,
    add_typos,
    make_ticket,
    record,
    sample_urgency,
    surface_noise,
    when,
)

RATES = {
    "pii": 0.15,
    "injection": 0.03,
    "wrong_label": 0.09,
    "format_drift": 0.06,
    "duplicate": 0.10,
}
# A real queue is skewed: order questions dominate, account lock-outs are rare.
INTENT_WEIGHTS = {
    "order_status": 0.22,
    "refund_request": 0.16,
    "billing_issue": 0.15,
    "technical_problem": 0.14,
    "shipping_change": 0.10,
    "cancel_subscription": 0.09,
    "product_question": 0.09,
    "account_access": 0.05,
}
N_LENGTH_DEFECTS = 15  # each of: empty, whitespace-only, overlong
N_BROKEN = 10


def luhn_complete(rng: random.Random, prefix: str = "4") -> str:
    """A 16-digit card-like number with a valid Luhn check digit."""
    digits = prefix + "".join(str(rng.randint(0, 9)) for _ in range(14))
    total = 0
    for i, d in enumerate(reversed(digits)):
        v = int(d) * (2 if i % 2 == 0 else 1)
        total += v - 9 if v > 9 else v
    return digits + str((10 - total % 10) % 10)


def pii_value(rng: random.Random, kind: str) -> str:
    """Invent one PII value of the given kind, in one of several real-world formats."""
    if kind == "name":
        return rng.choice(pb.PII["name"])
    if kind == "email":
        return f"{rng.choice(pb.PII['email_user'])}@{rng.choice(pb.PII['email_domain'])}"
    if kind == "phone":
        a, b, c = rng.randint(200, 989), rng.randint(100, 999), rng.randint(1000, 9999)
        return rng.choice(
            [
                f"({a}) 555-{c}",
                f"+44 7700 {b}{c % 1000:03d}",
                f"{a}.555.{c}",
                f"0{a} {b} {c}",
                f"+1-{a}-555-{c}",
            ]
        )
    if kind == "address":
        return f"{rng.randint(2, 980)} {rng.choice(pb.PII['street'])}, {rng.choice(pb.PII['town'])}"
    card = luhn_complete(rng)
    return rng.choice(
        [
            " ".join(card[i : i + 4] for i in range(0, 16, 4)),
            "-".join(card[i : i + 4] for i in range(0, 16, 4)),
            card,
        ]
    )


def plant_pii(rng: random.Random, t: Ticket) -> list[dict]:
    """Insert one or two PII sentences into a ticket; return the planted spans."""
    spans = []
    for kind in rng.sample(list(pb.PII_TEMPLATES), k=rng.choice([1, 1, 2])):
        value = pii_value(rng, kind)
        t.sentences.insert(
            rng.randint(1, len(t.sentences)), rng.choice(pb.PII_TEMPLATES[kind]).format(v=value)
        )
        spans.append({"type": kind, "value": value})
    return spans


def drift(rng: random.Random, label: dict) -> tuple[str, str, bool]:
    """Write a label in a drifted format; return (text, drift kind, repairable)."""
    kind = rng.choice(
        [
            "extra_key",
            "yaml",
            "wrong_keys",
            "trailing_prose",
            "python_dict",
            "truncated",
            "prose_only",
        ]
    )
    if kind == "extra_key":
        return json.dumps({**label, "confidence": round(rng.uniform(0.5, 0.99), 2)}), kind, True
    if kind == "yaml":
        oid = label["order_id"] or "null"
        return (
            f"intent: {label['intent']}\nurgency: {label['urgency']}\norder_id: {oid}",
            kind,
            True,
        )
    if kind == "wrong_keys":
        return (
            json.dumps(
                {
                    "category": label["intent"],
                    "priority": label["urgency"],
                    "order": label["order_id"],
                }
            ),
            kind,
            True,
        )
    if kind == "trailing_prose":
        return json.dumps(label) + " Let me know if you need anything else!", kind, True
    if kind == "python_dict":
        return str(label), kind, True
    if kind == "truncated":
        s = json.dumps(label)
        return s[: len(s) // 2], kind, False
    return f"The customer seems to need help with {label['intent'].replace('_', ' ')}.", kind, False


def _near_copy(rng: random.Random, src: Ticket, protect: tuple[str, ...]) -> tuple[str, str]:
    """A near-duplicate of a ticket: typo variant, reordered sentences, or a re-framed opener."""
    kind = rng.choice(["typo", "reorder", "reframe"])
    if kind == "typo":
        text = add_typos(rng, src.text, rate=0.025, protect=protect)
        return (text if text != src.text else src.text.rstrip(".!") + "!!"), kind
    s = list(src.sentences)
    if kind == "reorder" and len([x for x in s[1:-1] if x]) >= 2:
        mid = s[1:-1]
        rng.shuffle(mid)
        text = " ".join(x for x in [s[0], *mid, s[-1]] if x)
        if text != src.text:
            return text, kind
    fam = pb.FAMILIES["train"]
    s[0] = rng.choice(fam["openers"]["polite"] + fam["openers"]["neutral"])
    s.append(rng.choice(["(sent again)", "Following up on this.", "Any news?"]))
    return " ".join(x for x in s if x), "reframe"


def _truth(rid: str, t: Ticket) -> dict:
    """An empty truth entry for one row."""
    return {
        "row_id": rid,
        "defects": [],
        "true_label": t.label,
        "core": t.meta["core"],
        "duplicate_of": None,
        "near_kind": None,
        "pii": [],
        "label_noise": None,
        "drift": None,
        "repairable": None,
    }


def _originals(rng: random.Random, n: int, users: list[str]) -> list[dict]:
    """Clean rows with planted PII and injections, before duplication."""
    out = []
    for i in range(n):
        intent = rng.choices(list(INTENT_WEIGHTS), weights=list(INTENT_WEIGHTS.values()))[0]
        t = make_ticket(rng, "train", intent, sample_urgency(rng, intent))
        truth = _truth(f"raw-{i:05d}", t)
        if rng.random() < RATES["pii"]:
            truth["pii"] = plant_pii(rng, t)
            truth["defects"].append("pii")
        if rng.random() < RATES["injection"]:
            t.sentences.insert(rng.randint(1, len(t.sentences)), rng.choice(pb.INJECTIONS))
            truth["defects"].append("injection")
        text = surface_noise(rng, t) if not truth["pii"] else t.text
        out.append(
            {"t": t, "text": text, "user": rng.choice(users), "when": when(rng), "truth": truth}
        )
    return out


def _length_defects(rng: random.Random, rows: list[dict]) -> set[int]:
    """Turn a few rows into empty, whitespace-only and overlong ones; return their indexes."""
    picked = rng.sample(range(len(rows)), 3 * N_LENGTH_DEFECTS)
    log = " ".join(
        f"[2026-03-0{k % 9 + 1} 10:{k % 60:02d}] sync attempt {k} failed (code 17)"
        for k in range(60)
    )
    for j, idx in enumerate(picked):
        kind = ("empty", "whitespace", "overlong")[j // N_LENGTH_DEFECTS]
        r = rows[idx]
        r["text"] = {"empty": "", "whitespace": "   \n\t ", "overlong": r["text"] + " Log: " + log}[
            kind
        ]
        if kind != "overlong":  # the text is gone, and with it any PII or injection planted in it
            r["truth"]["pii"] = []
            r["truth"]["defects"] = [
                d for d in r["truth"]["defects"] if d not in ("pii", "injection")
            ]
        r["truth"]["defects"].append(kind)
    return set(picked)


def _duplicates(
    rng: random.Random, rows: list[dict], skip: set[int], n: int, users: list[str]
) -> list[dict]:
    """Exact and near copies of earlier rows, mostly re-sent by the same user."""
    sources = [i for i in range(len(rows)) if i not in skip]
    out = []
    for k in range(n):
        src = rows[rng.choice(sources)]
        exact = rng.random() < 0.4
        spans = tuple(p["value"] for p in src["truth"]["pii"])
        text, near = (src["text"], None) if exact else _near_copy(rng, src["t"], spans)
        truth = json.loads(json.dumps(src["truth"]))
        truth.update(
            row_id=f"raw-{len(rows) + k:05d}", duplicate_of=src["truth"]["row_id"], near_kind=near
        )
        truth["defects"].append("exact_duplicate" if exact else "near_duplicate")
        user = src["user"] if rng.random() < 0.7 else rng.choice(users)
        out.append(
            {
                "t": src["t"],
                "text": text,
                "user": user,
                "truth": truth,
                "when": src["when"] + timedelta(minutes=rng.randint(3, 600)),
            }
        )
    return out


def _answer(rng: random.Random, row: dict) -> str:
    """The assistant side as the old process wrote it: sometimes mislabelled, sometimes drifted."""
    truth, label = row["truth"], dict(row["truth"]["true_label"])
    if rng.random() < RATES["wrong_label"]:
        if rng.random() < 0.8:
            label["intent"] = (
                pb.CONFUSABLE[label["intent"]]
                if rng.random() < 0.85
                else rng.choice([i for i in pb.INTENTS if i != label["intent"]])
            )
            truth["label_noise"] = "intent"
        else:
            label["urgency"] = {"high": "low", "low": "high", "medium": "high"}[label["urgency"]]
            truth["label_noise"] = "urgency"
        truth["defects"].append("wrong_label")
    if rng.random() < RATES["format_drift"]:
        text, truth["drift"], truth["repairable"] = drift(rng, label)
        truth["defects"].append("format_drift")
        return text
    return json.dumps(label)


def make_raw_dump(data_dir: Path, n: int, seed: int) -> int:
    """Write raw_dump.jsonl, raw_dump_truth.jsonl and the card; return the number of lines."""
    rng = random.Random(seed)
    users = [f"cust-{i:04d}" for i in range(900)]
    n_dup = int(n * RATES["duplicate"])
    rows = _originals(rng, n - n_dup, users)
    skip = _length_defects(rng, rows)
    rows += _duplicates(rng, rows, skip, n_dup, users)
    rows.sort(key=lambda r: (r["when"], r["truth"]["row_id"]))
    broken = set(rng.sample(range(n), N_BROKEN))
    lines, truths = [], []
    for i, r in enumerate(rows):
        rec = record(r["truth"]["row_id"], r["user"], r["when"], r["text"], _answer(rng, r))
        line = json.dumps(rec, ensure_ascii=False)
        if i in broken:
            line = line[: int(len(line) * 0.6)]
            r["truth"]["defects"].append("broken_line")
        lines.append(line)
        truths.append({"line": i + 1, **r["truth"], "defects": sorted(r["truth"]["defects"])})
    data_dir = Path(data_dir)
    (data_dir / "raw_dump.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data_dir / "raw_dump_truth.jsonl").write_text(
        "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in truths), encoding="utf-8"
    )
    (data_dir / "raw_dump.card.md").write_text(raw_card(truths), encoding="utf-8")
    return len(lines)


def raw_card(truths: list[dict]) -> str:
    """The data card of the raw dump, with the planted defect counts."""
    tally: dict[str, int] = {}
    for t in truths:
        for d in t["defects"]:
            tally[d] = tally.get(d, 0) + 1
    return "\n".join(
        [
            "# Data card: raw_dump.jsonl",
            "",
            "A messy export of a ticket system, for notebook 02 (data curation). Each line is "
            "meant to "
            "be "
            "`{id, user_id, created_at, messages:[user, assistant]}`, but some lines are broken on "
            "purpose.",
            "`raw_dump_truth.jsonl` lists, per line, every defect the generator planted; the "
            "notebook "
            "reads it only to score its own cleaning steps.",
            "",
            f"- lines: {len(truths)}, drawn from 900 user ids (a user can have several tickets)",
            f"- overlong means more than {MAX_TICKET_CHARS} characters",
            f"- planted defects (a row can carry several): {dict(sorted(tally.items()))}",
            "- generator: `helpers.rawdump.make_raw_dump` (seed 44), called by `python -m "
            "helpers.datagen`",
            "- synthetic: the names, e-mails, phones, addresses and card numbers are invented "
            "(card numbers pass the Luhn check so that a scrubber cannot cheat on it)",
            "",
        ]
    )
