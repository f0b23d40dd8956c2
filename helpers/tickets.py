"""Ticket primitives shared by the clean sets (`helpers.datagen`) and the raw dump
(`helpers.rawdump`).

One ticket is composed from a family's phrases in `helpers.phrasebook`; its urgency follows fixed
rules.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from helpers import phrasebook as pb
from helpers.data import ORDER_ID

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
    slots = {
        "product": fam["products"],
        "plan": fam["plans"],
        "device": fam["devices"],
        "error": fam["errors"],
        "amount": fam["amounts"],
        "city": fam["cities"],
    }
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
    if (
        "styles" in fam
        and rng.choices(list(fam["styles"]), weights=list(fam["styles"].values()))[0] == "terse"
    ):
        # empty opener/closer slots keep the shape
        return Ticket(
            ["", *body, ""],
            intent,
            urgency,
            oid,
            {"cue": cue_kind, "family": family, "core": core, "style": "terse"},
        )
    fillers = rng.sample(fam["fillers"], k=rng.choice([0, 0, 1, 2]))
    opener = rng.choice(fam["openers"][_mood(rng, urgency, cue_kind)])
    sentences = [opener, *fillers, *body, rng.choice(fam["closers"])]
    if rng.random() < 0.1:
        sentences.insert(
            -1,
            rng.choice(
                [
                    "My ticket #" + str(rng.randint(1000, 99999)) + " was closed.",
                    "Invoice INV-" + str(rng.randint(100, 9999)) + " is attached.",
                ]
            ),
        )
    return Ticket(
        sentences, intent, urgency, oid, {"cue": cue_kind, "family": family, "core": core}
    )


def add_typos(
    rng: random.Random, text: str, rate: float = 0.04, protect: tuple[str, ...] = ()
) -> str:
    """Misspell common words and swap letters, never touching an order id or a protected span."""
    spans = [(m.start(), m.end()) for m in ORDER_ID.finditer(text)]
    spans += [(i, i + len(p)) for p in protect if (i := text.find(p)) >= 0]
    out, pos = [], 0
    for w in text.split(" "):
        inside = any(a <= pos + k < b for a, b in spans for k in range(len(w)))
        bare = w.strip(".,!?").lower()
        if not inside and bare in pb.MISSPELLINGS and rng.random() < 0.5:
            w = w.lower().replace(bare, pb.MISSPELLINGS[bare])
        elif not inside and len(w) > 3 and w.isalpha() and rng.random() < rate * 3:
            i = rng.randint(0, len(w) - 2)
            w = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
        out.append(w)
        pos += len(w) + 1
    return " ".join(out)


def surface_noise(rng: random.Random, t: Ticket) -> str:
    """Render a ticket with realistic noise: typos, all-lowercase, missing punctuation."""
    text = t.text
    if rng.random() < 0.3:
        text = add_typos(rng, text)
    if rng.random() < 0.1:
        text = text.lower()
        # train also keeps a lowercase 'ord-' id
        if t.meta.get("family") != "train" or rng.random() < 0.5:
            text = re.sub(r"\bord-(\d{6})\b", r"ORD-\1", text)
    elif t.meta.get("family") == "train" and t.meta.get("cue") == "fury" and rng.random() < 0.3:
        text = text.upper()  # shouting
    if rng.random() < 0.1:
        text = text.rstrip(".!")
    return re.sub(r"\s+", " ", text).strip()


def record(rid: str, user: str, when: datetime, text: str, label: dict | str) -> dict:
    """One chat-format JSONL record."""
    answer = label if isinstance(label, str) else json.dumps(label)
    return {
        "id": rid,
        "user_id": user,
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}],
    }


def when(rng: random.Random) -> datetime:
    """A timestamp in the 300 days after the course epoch."""
    return EPOCH + timedelta(minutes=rng.randint(0, 300 * 24 * 60))
