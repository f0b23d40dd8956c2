"""Deterministic generator for the running example: support tickets mapped to strict JSON.

`write_all(data_dir)` writes train/eval/canary sets and the messy raw dump (with its truth file),
each with a short data card. Same seed in, same bytes out.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from helpers import phrasebook as pb

ORDER_RE = re.compile(r"ORD-\d{6}")
SIZES = {"train": 1500, "eval": 200, "canary": 24, "raw_dump": 3000}
SEEDS = {"train": 11, "eval": 22, "canary": 33, "raw_dump": 44}
EPOCH = datetime(2026, 1, 5, tzinfo=timezone.utc)


@dataclass
class Ticket:
    """One generated ticket: its sentences and its gold label."""

    sentences: list[str]
    intent: str
    urgency: str
    order_id: str | None
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The customer message as one string."""
        return " ".join(s for s in self.sentences if s).strip()

    @property
    def label(self) -> dict:
        """The gold JSON object, keys in schema order."""
        return {"intent": self.intent, "urgency": self.urgency, "order_id": self.order_id}


def sample_urgency(rng: random.Random, intent: str) -> str:
    """Draw an urgency that the intent can plausibly carry."""
    if intent == "product_question":
        return "high" if rng.random() < 0.2 else "low"
    return rng.choices(["high", "medium", "low"], weights=[0.3, 0.5, 0.2])[0]


def _fill(rng: random.Random, fam: dict, template: str) -> str:
    """Fill the {slots} of one template from a family's value lists."""
    slots = {"product": fam["products"], "plan": fam["plans"], "device": fam["devices"],
             "error": fam["errors"], "amount": fam["amounts"], "city": fam["cities"]}
    out = template
    for key, values in slots.items():
        if "{" + key + "}" in out:
            out = out.replace("{" + key + "}", rng.choice(values))
    return out.replace("{days}", str(rng.randint(2, 12)))


def _mood(rng: random.Random, urgency: str, cue_kind: str | None) -> str:
    """Pick the customer's mood so that it never contradicts the urgency label."""
    if cue_kind == "fury":
        return "frustrated"
    if urgency == "low":
        return rng.choice(["neutral", "polite"])
    return rng.choice(["neutral", "neutral", "polite", "frustrated", "anxious"])


def make_ticket(rng: random.Random, family: str, intent: str, urgency: str) -> Ticket:
    """Compose one ticket from a family's phrases; the urgency rules decide which cue is added."""
    fam = pb.FAMILIES[family]
    oid = f"ORD-{rng.randint(0, 999999):06d}" if rng.random() < pb.ORDER_ID_RATE[intent] else None
    cue_kind = rng.choice(pb.HIGH_KINDS[intent]) if urgency == "high" else None
    core = _fill(rng, fam, rng.choice(fam["cores"][intent]))
    body = [core]
    if oid:
        mention = rng.choice(fam["order_mentions"]).format(oid=oid)
        body.insert(rng.randint(0, 1), mention)
    if cue_kind:
        body.insert(rng.randint(0, len(body)), _fill(rng, fam, rng.choice(fam["high"][cue_kind])))
    elif urgency == "low" and (intent != "product_question" or rng.random() < 0.3):
        body.append(rng.choice(fam["low"]))
    fillers = rng.sample(fam["fillers"], k=rng.choice([0, 0, 1, 2]))
    opener = rng.choice(fam["openers"][_mood(rng, urgency, cue_kind)])
    sentences = [opener, *fillers, *body, rng.choice(fam["closers"])]
    if rng.random() < 0.1:
        sentences.insert(-1, rng.choice(["My ticket #" + str(rng.randint(1000, 99999)) + " was closed.",
                                         "Invoice INV-" + str(rng.randint(100, 9999)) + " is attached."]))
    return Ticket(sentences, intent, urgency, oid, {"cue": cue_kind, "family": family, "core": core})


def add_typos(rng: random.Random, text: str, rate: float = 0.04, protect: tuple[str, ...] = ()) -> str:
    """Misspell common words and swap letters, never touching an order id or a protected span."""
    spans = [(m.start(), m.end()) for m in ORDER_RE.finditer(text)]
    spans += [(i, i + len(p)) for p in protect if (i := text.find(p)) >= 0]
    out, pos = [], 0
    for w in text.split(" "):
        inside = any(a <= pos + k < b for a, b in spans for k in range(len(w)))
        bare = w.strip(".,!?").lower()
        if not inside and bare in pb.MISSPELLINGS and rng.random() < 0.5:
            w = w.lower().replace(bare, pb.MISSPELLINGS[bare])
        elif not inside and len(w) > 3 and w.isalpha() and rng.random() < rate * 3:
            i = rng.randint(0, len(w) - 2)
            w = w[:i] + w[i + 1] + w[i] + w[i + 2:]
        out.append(w)
        pos += len(w) + 1
    return " ".join(out)


def surface_noise(rng: random.Random, t: Ticket) -> str:
    """Render a ticket with realistic noise: typos, all-lowercase, missing punctuation."""
    text = t.text
    if rng.random() < 0.3:
        text = add_typos(rng, text)
    if rng.random() < 0.1:
        text = re.sub(r"\bord-(\d{6})\b", r"ORD-\1", text.lower())
    if rng.random() < 0.1:
        text = text.rstrip(".!")
    return re.sub(r"\s+", " ", text).strip()


def _record(rid: str, user: str, when: datetime, text: str, label: dict | str) -> dict:
    """One chat-format JSONL record."""
    answer = label if isinstance(label, str) else json.dumps(label)
    return {"id": rid, "user_id": user, "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]}


def _when(rng: random.Random) -> datetime:
    """A timestamp in the 300 days after the course epoch."""
    return EPOCH + timedelta(minutes=rng.randint(0, 300 * 24 * 60))


def clean_set(name: str, family: str, n: int, seed: int, avoid: set[str] = frozenset()) -> list[dict]:
    """Generate n unique, correctly labelled tickets from one family."""
    rng = random.Random(seed)
    rows, seen = [], set(avoid)
    while len(rows) < n:
        intent = pb.INTENTS[len(rows) % len(pb.INTENTS)] if name == "canary" else rng.choice(pb.INTENTS)
        t = make_ticket(rng, family, intent, sample_urgency(rng, intent))
        text = surface_noise(rng, t)
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        rows.append(_record(f"{name}-{len(rows):05d}", f"{name[0]}{rng.randint(0, n // 2):05d}",
                            _when(rng), text, t.label))
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows as UTF-8 JSON lines, keys in insertion order."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def counts(rows: list[dict], key: str) -> dict[str, int]:
    """Count gold labels per value of one field."""
    out: dict[str, int] = {}
    for r in rows:
        v = str(json.loads(r["messages"][-1]["content"])[key])
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def card(name: str, rows: list[dict], purpose: str) -> str:
    """A short markdown data card for one generated file."""
    lines = [f"# Data card: {name}.jsonl", "", purpose, "",
             f"- rows: {len(rows)}", f"- generator: `helpers.datagen` (seed {SEEDS[name]}); "
             "`python -m helpers.datagen` rewrites it byte for byte",
             "- format: one JSON object a line: `id`, `user_id`, `created_at`, `messages` "
             "(user ticket, assistant JSON per `ticket_schema.json`)",
             f"- intents: {counts(rows, 'intent')}", f"- urgency: {counts(rows, 'urgency')}",
             "- synthetic: no real customer wrote any of it; names, e-mails and numbers are invented"]
    return "\n".join(lines) + "\n"


PURPOSES = {
    "train": "Training pool. Train-family templates, products and cue phrases only.",
    "eval": "Held-out eval set. Its templates, products, cue phrases and fillers never appear in the "
            "train family, so scores measure generalisation, not memorised strings.",
    "canary": "Small canary set: every intent, eval-family phrasing. A fast smoke check for "
              "serving and regressions.",
}


def write_all(data_dir: Path) -> dict[str, int]:
    """Generate every committed data file (and its card) into data_dir; return row counts."""
    from helpers.rawdump import make_raw_dump

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
        (data_dir / f"{name}.card.md").write_text(card(name, rows, PURPOSES[name]), encoding="utf-8")
    sizes = {k: len(v) for k, v in out.items()}
    sizes["raw_dump"] = make_raw_dump(data_dir, SIZES["raw_dump"], SEEDS["raw_dump"])
    return sizes


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "data"
    print(write_all(target))
