"""Facts vs format (notebook 01, section 7): invented shop policies a model cannot know, asked two
ways.

data/policies.jsonl is written by hand: twelve policies, each with the fact, the strings a right
answer contains, three training questions and two paraphrases that share none of the training
questions' wording.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers.data import DataError, data_dir, read_checked

POLICIES = "policies.jsonl"
SYSTEM = "You answer questions about Northwind Shop's policies in one short sentence."
FIELDS = {"id": str, "fact": str, "accept": list, "train_questions": list, "test_questions": list}


def check_policy(rec: object, path: str | Path, line: int) -> dict:
    """Validate one policy row; raise DataError naming the file, line and field."""
    if not isinstance(rec, dict):
        raise DataError(path, line, "<row>", f"expected a JSON object, got {type(rec).__name__}")
    for fld, kind in FIELDS.items():
        if not isinstance(rec.get(fld), kind) or not rec[fld]:
            raise DataError(path, line, fld, f"missing or not a non-empty {kind.__name__}")
    if not any(answered(rec["fact"], [a]) for a in rec["accept"]):
        raise DataError(path, line, "accept", "no accepted answer occurs in the fact")
    for fld in ("train_questions", "test_questions"):
        for i, q in enumerate(rec[fld]):
            if answered(q, rec["accept"]):
                raise DataError(path, line, f"{fld}[{i}]", "the question contains its own answer")
    return rec


def load(path: str | Path | None = None) -> list[dict]:
    """The policies, checked (the first bad row raises, named)."""
    rows, _ = read_checked(path or data_dir() / POLICIES, check_policy)
    return rows


def answered(text: str, accept: list[str]) -> bool:
    """True if text contains one of the accepted answers as a whole token ("9" does not match
    "19")."""
    return any(
        re.search(rf"(?<![\w.,]){re.escape(a)}(?![\w]|[.,]\d)", text, re.IGNORECASE) for a in accept
    )


def split(policies: list[dict]) -> tuple[list[dict], list[dict]]:
    """Two halves by alternating rows: the reading adapter trains on the first and is tested on
    the second."""
    return policies[0::2], policies[1::2]


def conversations(
    policies: list[dict], which: str, in_prompt: bool = False
) -> tuple[list[list[dict]], list[dict]]:
    """(chats, their policies) for every question of one kind ('train_questions' or
    'test_questions'); with in_prompt the question's own policy is in the system prompt:
    retrieval that always finds the right one."""
    pairs = [(q, p) for p in policies for q in p[which]]
    system = [SYSTEM + (f" The policy: {p['fact']}" if in_prompt else "") for _, p in pairs]
    return (
        [
            [{"role": "system", "content": s}, {"role": "user", "content": q}]
            for s, (q, _) in zip(system, pairs)
        ],
        [p for _, p in pairs],
    )


def sft_rows(policies: list[dict], in_prompt: bool = False) -> list[dict]:
    """Prompt-completion rows for TRL: each training question answered with its policy's fact."""
    chats, owners = conversations(policies, "train_questions", in_prompt)
    return [
        {"prompt": c, "completion": [{"role": "assistant", "content": p["fact"]}]}
        for c, p in zip(chats, owners)
    ]


def accuracy(answers: list[str], policies: list[dict]) -> float:
    """Share of answers that state their policy's fact."""
    if not answers or len(answers) != len(policies):
        raise ValueError(
            f"accuracy needs equal, non-empty lists; got {len(answers)} answers, "
            f"{len(policies)} policies"
        )
    return sum(answered(a, p["accept"]) for a, p in zip(answers, policies)) / len(answers)
