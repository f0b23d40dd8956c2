"""Notebook 05's verifier: GRPO reward functions for the triage task, and pass@k.

TRL's GRPOTrainer calls each function as f(prompts=..., completions=..., **dataset_columns) and
expects one float per completion. The dataset carries the gold fields as columns `intent`, `urgency`
and `order_id`.
"""

from __future__ import annotations

import json
from math import comb

from helpers.data import FIELDS
from helpers.evaluate import first_object, parse_output


def _text(completion) -> str:
    """The generated text, for both conversational ([{"role", "content"}]) and plain-string
    completions."""
    return completion[-1]["content"] if isinstance(completion, list) else str(completion)


def reward_valid(completions, **kwargs) -> list[float]:
    """1.0 when the whole output is one JSON object that passes the ticket schema, else 0.0."""
    return [1.0 if parse_output(_text(c)).valid else 0.0 for c in completions]


def reward_fields(completions, intent, urgency, order_id, **kwargs) -> list[float]:
    """One third per field that equals the gold label (only for schema-valid outputs): 0, 1/3,
    2/3 or 1."""
    if not len(completions) == len(intent) == len(urgency) == len(order_id):
        raise ValueError(
            f"reward_fields: {len(completions)} completions but {len(intent)} intent, "
            f"{len(urgency)} urgency "
            f"and {len(order_id)} order_id values: give every prompt its gold columns "
            "(one per completion)"
        )
    out = []
    for c, gold in zip(completions, zip(intent, urgency, order_id)):
        p = parse_output(_text(c))
        out.append(sum(p.obj[f] == g for f, g in zip(FIELDS, gold)) / 3 if p.valid else 0.0)
    return out


def reward_brevity(completions, **kwargs) -> list[float]:
    """A small penalty for chatter around a JSON object: -0.01 per extra character, at most -0.5;
    0 for a bare object."""
    out = []
    for c in completions:
        text = _text(c).strip()
        obj = first_object(text)
        extra = (
            len(text) - len(json.dumps(obj))
            if obj is not None and not parse_output(text).strict_json
            else 0
        )
        out.append(-min(0.5, 0.01 * max(0, extra)))
    return out


REWARDS = (reward_valid, reward_fields, reward_brevity)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021): 1 - C(n-c, k) / C(n,
    k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)
