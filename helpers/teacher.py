"""A teacher writes the training labels: Claude through the official client, or an offline stand-in
with known errors.

Distillation in the seeds' sense: a stronger model labels raw tickets, a cheaper check audits the
labels, and a person reviews a sample. The offline stand-in is not a model: it copies the gold label
except on a slice it gets wrong on purpose (every double-charge ticket becomes a refund request) and
on a small seeded share of random mistakes, so notebook 02 can show what a teacher's systematic
error looks like, and notebook 04 what a student learns from it.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter

from jsonschema import Draft202012Validator
from tqdm.auto import tqdm

from helpers.data import FIELDS, gold, intents, schema, ticket

TEACHER_MODEL = "claude-sonnet-4-6"
# Listed price in USD per million tokens (input, output), quoted from Anthropic's pricing page, not
# measured here. Check it before you budget: prices change.
PRICE_PER_MTOK = {"claude-sonnet-4-6": (3.0, 15.0)}
TOOL_NAME = "triage"
TEACHER_SYSTEM = (
    "You label customer-support tickets for a triage model's training set. Call the "
    "triage tool once "
    "with the ticket's intent, its urgency (low, medium or high) and its order id "
    "(the ticket's ORD- "
    "number exactly as written, or null when it has none)."
)

# The stand-in's systematic error: a ticket that mentions being charged twice is read as a refund
# request.
DOUBLE_CHARGE = re.compile(r"charged (me )?twice|double[- ]charg|charged two times", re.IGNORECASE)
SLICE_INTENT = "refund_request"
STAND_IN_NOISE = 0.02  # share of the other tickets given one random wrong field


def in_slice(row: dict) -> bool:
    """Whether the ticket mentions a double charge: the slice the stand-in teacher labels wrong
    on purpose."""
    return bool(DOUBLE_CHARGE.search(ticket(row)))


def stand_in_labels(rows: list[dict], seed: int = 0, noise: float = STAND_IN_NOISE) -> list[dict]:
    """The offline stand-in teacher: gold labels, every double-charge ticket as a refund request,
    plus seeded noise."""
    rng = random.Random(seed)
    choices = {"intent": intents(), "urgency": ["low", "medium", "high"]}
    out = []
    for row in rows:
        label = dict(gold(row))
        if in_slice(row):
            label["intent"] = SLICE_INTENT
        elif rng.random() < noise:
            field = rng.choice(sorted(choices))
            label[field] = rng.choice([v for v in choices[field] if v != label[field]])
        out.append(label)
    return out


class TeacherAnswerError(ValueError):
    """A teacher answer that is not a usable label; `kind` says why (counted by kind, never
    dropped silently)."""

    def __init__(self, kind: str, detail: str):
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


def check_label(answer: object) -> dict:
    """The answer as a label if it fits data/ticket_schema.json; else TeacherAnswerError naming
    the kind and field."""
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except json.JSONDecodeError as err:
            raise TeacherAnswerError("not JSON", f"{answer[:60]!r} ({err.msg})") from None
    if not isinstance(answer, dict):
        raise TeacherAnswerError("not JSON", f"expected an object, got {type(answer).__name__}")
    missing = [f for f in FIELDS if f not in answer]
    if missing:
        raise TeacherAnswerError("missing field", f"field '{missing[0]}' is missing")
    errors = sorted(Draft202012Validator(schema()).iter_errors(answer), key=lambda e: list(e.path))
    if errors:  # the course's one schema decides, as in evaluate.parse_output
        err = errors[0]
        where = f"field '{err.path[0]}': {answer[err.path[0]]!r}" if err.path else err.message
        raise TeacherAnswerError("label outside the schema", where)
    return {f: answer[f] for f in FIELDS}


def tool() -> dict:
    """The triage tool Claude must call: its input schema is the course's output schema."""
    props = schema()["properties"]
    return {
        "name": TOOL_NAME,
        "description": "Record the ticket's triage label.",
        "input_schema": {"type": "object", "properties": props, "required": list(FIELDS)},
    }


def claude_label(cl, model: str, text: str) -> tuple[object, dict]:
    """One Messages call that must use the triage tool; (the tool input or the reply text, token
    usage)."""
    resp = cl.messages.create(
        model=model,
        system=TEACHER_SYSTEM,
        max_tokens=200,
        messages=[{"role": "user", "content": f"<ticket>{text}</ticket>"}],
        tools=[tool()],
        tool_choice={"type": "tool", "name": TOOL_NAME},
        extra_body={"temperature": 0},
    )
    usage = {"input_tokens": resp.usage.input_tokens, "output_tokens": resp.usage.output_tokens}
    calls = [
        b for b in resp.content if getattr(b, "type", "") == "tool_use" and b.name == TOOL_NAME
    ]
    if calls:
        return calls[0].input, usage
    if resp.stop_reason == "refusal":
        raise TeacherAnswerError("refused", "the model declined to label this ticket")
    return "".join(getattr(b, "text", "") for b in resp.content), usage


def claude_labels(cl, model: str, rows: list[dict]) -> dict:
    """Claude labels each row: labels (None where unusable), problems counted by kind, token
    usage and cost."""
    labels, problems, examples = [], Counter(), []
    usage = Counter()
    for i, row in enumerate(tqdm(rows, desc=f"teacher {model}", leave=False)):
        try:
            answer, used = claude_label(cl, model, ticket(row))
            usage.update(used)
            labels.append(check_label(answer))
        except TeacherAnswerError as err:
            labels.append(None)
            problems[err.kind] += 1
            examples.append(f"row {i}: {err}")
    return {
        "labels": labels,
        "problems": dict(problems),
        "problem_examples": examples[:10],
        "usage": dict(usage),
        "usd_per_1k_rows": cost_per_1k(usage, len(rows), model),
    }


def cost_per_1k(usage: dict, n_rows: int, model: str) -> float | None:
    """USD per 1,000 labelled rows from the returned token usage and the listed price; None
    without a price or rows."""
    if model not in PRICE_PER_MTOK or not n_rows:
        return None
    p_in, p_out = PRICE_PER_MTOK[model]
    usd = usage.get("input_tokens", 0) * p_in / 1e6 + usage.get("output_tokens", 0) * p_out / 1e6
    return usd * 1000 / n_rows


def agreement(labels: list[dict | None], rows: list[dict]) -> dict:
    """Share of rows where the teacher matches gold, per field and on all three; unusable labels
    count as misses."""
    n = len(rows)
    if n == 0 or len(labels) != n:
        raise ValueError(
            f"agreement needs one label per row; got {len(labels)} labels for {n} rows"
        )
    golds = [gold(r) for r in rows]
    per = {
        f: sum(lab is not None and lab[f] == g[f] for lab, g in zip(labels, golds)) / n
        for f in FIELDS
    }
    per["all_fields"] = sum(lab is not None and lab == g for lab, g in zip(labels, golds)) / n
    per["n"] = n
    return per


def with_labels(rows: list[dict], labels: list[dict | None]) -> tuple[list[dict], int]:
    """The rows with the teacher's labels as their assistant turn; rows without a usable label
    are dropped and counted."""
    kept = [
        {**r, "messages": [*r["messages"][:-1], {"role": "assistant", "content": json.dumps(lab)}]}
        for r, lab in zip(rows, labels)
        if lab is not None
    ]
    return kept, len(rows) - len(kept)
