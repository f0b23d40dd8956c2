"""The GRPO verifier and pass@k."""

from __future__ import annotations

import pytest

from helpers import rewards

GOLD = {"intent": ["order_status"], "urgency": ["high"], "order_id": ["ORD-123456"]}


def conv(text):
    return [[{"role": "assistant", "content": text}]]


def test_valid_and_field_rewards_follow_the_schema_and_gold():
    right = '{"intent": "order_status", "urgency": "high", "order_id": "ORD-123456"}'
    two = '{"intent": "order_status", "urgency": "low", "order_id": "ORD-123456"}'
    bad_enum = '{"intent": "track_order", "urgency": "high", "order_id": "ORD-123456"}'
    assert rewards.reward_valid(conv(right)) == [1.0] and rewards.reward_fields(
        conv(right), **GOLD
    ) == [1.0]
    assert rewards.reward_fields(conv(two), **GOLD) == [pytest.approx(2 / 3)]
    assert rewards.reward_valid(conv(bad_enum)) == [0.0] and rewards.reward_fields(
        conv(bad_enum), **GOLD
    ) == [0.0]
    # plain-string completions work too
    assert rewards.reward_valid(["Sure! Here is the JSON: {}"]) == [0.0]


def test_brevity_penalises_only_trailing_chatter_after_a_valid_object():
    right = '{"intent": "order_status", "urgency": "high", "order_id": "ORD-123456"}'
    assert rewards.reward_brevity(conv(right)) == [0.0]
    assert rewards.reward_brevity(conv("not json at all")) == [0.0]
    chatty = "Sure! " + right + " Hope this helps."
    assert rewards.reward_brevity(conv(chatty)) == [
        pytest.approx(-0.01 * (len(chatty) - len(right)))
    ]
    assert rewards.reward_brevity(conv(right + " " + "blah " * 40)) == [-0.5]  # capped


def test_pass_at_k_matches_the_closed_form():
    assert rewards.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert rewards.pass_at_k(4, 1, 4) == pytest.approx(1.0)
    assert rewards.pass_at_k(4, 0, 4) == 0.0
    assert rewards.pass_at_k(10, 3, 2) == pytest.approx(1 - (7 * 6) / (10 * 9))
    with pytest.raises(ValueError, match="n=4, c=5"):
        rewards.pass_at_k(4, 5, 1)


def test_notebook_05_reward_cell_agrees_with_the_tested_module():
    """Notebook 05 defines the verifier in an editable cell (tag `rewards`); it must score what
    helpers.rewards scores."""
    import json

    import nbformat

    from helpers import evaluate, runtime

    nb = nbformat.read(
        runtime.repo_root() / "notebooks" / "05_dpo_and_siblings.ipynb", as_version=4
    )
    (src,) = [c.source for c in nb.cells if "rewards" in c.metadata.get("tags", [])]
    ns = {"json": json, "evaluate": evaluate}
    exec(compile(src, "05_dpo_and_siblings.ipynb:rewards", "exec"), ns)
    right = '{"intent": "order_status", "urgency": "high", "order_id": "ORD-123456"}'
    texts = [
        right,
        right.replace("high", "low"),
        right.replace("order_status", "track_order"),
        "not json at all",
        "Sure! " + right + " Hope this helps.",
        right + " " + "blah " * 40,
        "",
        '{"intent": "order_status"}',
    ]
    # chat-style and plain strings
    batch = [[{"role": "assistant", "content": t}] for t in texts] + texts
    gold = {k: v * len(batch) for k, v in GOLD.items()}
    assert [f.__name__ for f in ns["REWARDS"]] == [f.__name__ for f in rewards.REWARDS]
    for mine, tested in zip(ns["REWARDS"], rewards.REWARDS):
        assert mine(completions=batch, **gold) == tested(completions=batch, **gold), mine.__name__
    # a dataset whose gold columns do not line up with the completions fails loudly in both, not by
    # zip's truncation
    short = {k: v[:-1] for k, v in gold.items()}
    for fn in (ns["reward_fields"], rewards.reward_fields):
        with pytest.raises(
            ValueError, match=f"{len(batch)} completions but {len(batch) - 1} intent"
        ):
            fn(completions=batch, **short)
