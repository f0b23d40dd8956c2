"""helpers.facts: the hand-written policies load, bad rows are named, answers are matched as
whole tokens."""

from __future__ import annotations

import json
import re

import pytest

from helpers import facts
from helpers.data import DataError


def test_the_policies_load_with_three_training_questions_and_two_paraphrases_each():
    policies = facts.load()
    assert len(policies) == 12 and len({p["id"] for p in policies}) == 12
    assert all(len(p["train_questions"]) == 3 and len(p["test_questions"]) == 2 for p in policies)
    rows = facts.sft_rows(policies)
    assert len(rows) == 36 and rows[0]["completion"][0]["content"] == policies[0]["fact"]
    assert rows[0]["prompt"][0]["content"] == facts.SYSTEM
    chats, owners = facts.conversations(policies, "test_questions", in_prompt=True)
    assert len(chats) == 24 and chats[3][1]["content"] == owners[3]["test_questions"][1]
    assert all(
        chat[0]["content"] == f"{facts.SYSTEM} The policy: {p['fact']}"
        for chat, p in zip(chats, owners)
    )
    first, second = facts.split(policies)
    assert len(first) == len(second) == 6 and not {p["id"] for p in first} & {
        p["id"] for p in second
    }


@pytest.mark.parametrize(
    "text,accept,right",
    [
        ("Returns are accepted within 45 days.", ["45"], True),
        ("Within 145 days.", ["45"], False),
        ("It is 4.5 percent.", ["45"], False),
        ("You have 19 days.", ["9", "nine"], False),
        ("You have nine days to report it.", ["9", "nine"], True),
        ("Express costs 8,90 euros.", ["8.90", "8,90"], True),
        ("Express costs 8.905 euros.", ["8.90"], False),
        ("Order before 2:30 pm.", ["14:30", "2:30"], True),
    ],
)
def test_an_answer_counts_only_with_the_number_as_a_whole_token(text, accept, right):
    assert facts.answered(text, accept) is right


def test_accuracy_counts_answers_that_state_their_policy():
    policies = facts.load()[:2]
    assert facts.accuracy(["within 45 days", "no idea"], policies) == 0.5
    with pytest.raises(ValueError, match="equal, non-empty lists; got 1 answers, 2 policies"):
        facts.accuracy(["45"], policies)


@pytest.mark.parametrize(
    "row,where",
    [
        (
            {
                "id": "x",
                "fact": "Fee is 5 euros.",
                "accept": ["5"],
                "train_questions": ["What fee?"],
            },
            "field 'test_questions'",
        ),
        (
            {
                "id": "x",
                "fact": "Fee is 5 euros.",
                "accept": ["7"],
                "train_questions": ["Fee?"],
                "test_questions": ["Cost?"],
            },
            "field 'accept': no accepted answer occurs in the fact",
        ),
        (
            {
                "id": "x",
                "fact": "Fee is 5 euros.",
                "accept": ["5"],
                "train_questions": ["Fee?"],
                "test_questions": ["Is it 5 euros?"],
            },
            "field 'test_questions[0]': the question contains its own answer",
        ),
    ],
)
def test_a_bad_policy_row_names_the_file_the_line_and_the_field(tmp_path, row, where):
    path = tmp_path / "policies.jsonl"
    good = facts.load()[0]
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=re.escape(f"policies.jsonl:2: {where}")):
        facts.load(path)
