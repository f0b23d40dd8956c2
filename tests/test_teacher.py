"""helpers.teacher: the stand-in's known errors, and Claude as labeller through the real client
and a MockTransport."""

from __future__ import annotations

import json

import httpx2
import pytest

from helpers import claude, data, teacher

GOOD = {"intent": "billing_issue", "urgency": "high", "order_id": None}


def row(text: str, label: dict) -> dict:
    return {
        "id": "r",
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": json.dumps(label)},
        ],
    }


def tool_reply(body: dict, n: int, block: dict, stop: str = "tool_use") -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 400, "output_tokens": 50},
        },
    )


def mock_teacher(blocks, seen):
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        seen.append(body)
        block, stop = blocks[len(seen) - 1]
        return tool_reply(body, len(seen), block, stop)

    return claude.client(http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def use(inp) -> tuple[dict, str]:
    return {
        "type": "tool_use",
        "id": "toolu_1",
        "name": teacher.TOOL_NAME,
        "input": inp,
    }, "tool_use"


def test_stand_in_teacher_is_wrong_exactly_on_its_slice_and_its_noise():
    rows = data.load_split("train")
    labels = teacher.stand_in_labels(rows, seed=0)
    golds = [data.gold(r) for r in rows]
    in_slice = [teacher.in_slice(r) for r in rows]
    # the double-charge tickets: a real slice
    assert 30 <= sum(in_slice) <= 80
    assert all(lab["intent"] == teacher.SLICE_INTENT for lab, s in zip(labels, in_slice) if s)
    wrong_outside = sum(lab != g for lab, g, s in zip(labels, golds, in_slice) if not s)
    n_outside = len(rows) - sum(in_slice)
    assert (
        0.5 * teacher.STAND_IN_NOISE * n_outside
        <= wrong_outside
        <= 2 * teacher.STAND_IN_NOISE * n_outside
    )
    assert (
        teacher.stand_in_labels(rows, seed=0) == labels
        and teacher.stand_in_labels(rows, seed=1) != labels
    )
    assert teacher.stand_in_labels(rows[:50], seed=0, noise=0.0) == [
        {**g, "intent": teacher.SLICE_INTENT} if s else g for g, s in zip(golds[:50], in_slice[:50])
    ]


def test_claude_labels_through_the_real_client_with_the_tool_and_the_cost(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    seen = []
    rows = [
        row("I've been charged twice!", GOOD),
        row(
            "where is ORD-123456",
            {"intent": "order_status", "urgency": "medium", "order_id": "ORD-123456"},
        ),
    ]
    cl = mock_teacher(
        [use(GOOD), use({"intent": "order_status", "urgency": "low", "order_id": "ORD-123456"})],
        seen,
    )
    res = teacher.claude_labels(cl, teacher.TEACHER_MODEL, rows)
    assert res["labels"] == [
        GOOD,
        {"intent": "order_status", "urgency": "low", "order_id": "ORD-123456"},
    ]
    assert res["problems"] == {} and res["usage"] == {"input_tokens": 800, "output_tokens": 100}
    # 800 x $3 + 100 x $15 per million tokens for 2 rows -> $1.95 per 1,000 rows
    assert res["usd_per_1k_rows"] == pytest.approx((800 * 3 + 100 * 15) / 1e6 * 1000 / 2)
    body = seen[0]
    assert (
        body["model"] == teacher.TEACHER_MODEL
        and body["temperature"] == 0
        and body["system"] == teacher.TEACHER_SYSTEM
    )
    assert body["tool_choice"] == {"type": "tool", "name": "triage"}
    assert body["tools"][0]["input_schema"]["properties"]["urgency"]["enum"] == [
        "low",
        "medium",
        "high",
    ]
    assert body["messages"] == [
        {"role": "user", "content": "<ticket>I've been charged twice!</ticket>"}
    ]
    agree = teacher.agreement(res["labels"], rows)
    assert agree == {"intent": 1.0, "urgency": 0.5, "order_id": 1.0, "all_fields": 0.5, "n": 2}


def test_bad_teacher_answers_are_counted_by_kind_and_the_run_continues(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    seen = []
    answers = [
        use(GOOD),
        # no tool call, not JSON
        ({"type": "text", "text": "Sure! The intent is billing."}, "end_turn"),
        # outside the schema
        use({"intent": "complaint", "urgency": "high", "order_id": None}),
        # a field missing
        use({"intent": "billing_issue", "urgency": "high"}),
        # a bad order id
        use({**GOOD, "order_id": "12345"}),
        # declined
        ({"type": "text", "text": ""}, "refusal"),
    ]
    cl = mock_teacher(answers, seen)
    rows = [row(f"ticket {i}", GOOD) for i in range(len(answers))]
    res = teacher.claude_labels(cl, teacher.TEACHER_MODEL, rows)
    assert res["labels"] == [GOOD, None, None, None, None, None] and len(seen) == len(answers)
    assert res["problems"] == {
        "not JSON": 1,
        "label outside the schema": 2,
        "missing field": 1,
        "refused": 1,
    }
    assert "row 2: label outside the schema: field 'intent': 'complaint'" in res["problem_examples"]
    assert "row 3: missing field: field 'order_id' is missing" in res["problem_examples"]
    kept, dropped = teacher.with_labels(rows, res["labels"])
    assert dropped == 5 and len(kept) == 1 and data.gold(kept[0]) == GOOD


def test_a_rate_limit_is_retried_then_surfaces(monkeypatch):
    """The client's own retry (max_retries=2) absorbs one 429; three in a row reach the caller as
    RateLimitError."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    import anthropic

    def teacher_after(failures: int):
        calls = []

        def handler(request):
            calls.append(request)
            if len(calls) <= failures:
                return httpx2.Response(
                    429,
                    headers={"retry-after": "0"},
                    json={
                        "type": "error",
                        "error": {"type": "rate_limit_error", "message": "slow down"},
                    },
                )
            return tool_reply(json.loads(request.content), len(calls), use(GOOD)[0])

        return claude.client(
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
        ), calls

    cl, calls = teacher_after(1)
    assert (
        teacher.claude_labels(cl, teacher.TEACHER_MODEL, [row("x", GOOD)])["labels"] == [GOOD]
        and len(calls) == 2
    )
    cl, calls = teacher_after(3)
    with pytest.raises(anthropic.RateLimitError):
        teacher.claude_labels(cl, teacher.TEACHER_MODEL, [row("x", GOOD)])
    assert len(calls) == 3


def test_teacher_labels_become_training_rows_with_the_teachers_answer():
    rows = data.load_split("train", 40)
    labels = teacher.stand_in_labels(rows, seed=0, noise=0.0)
    kept, dropped = teacher.with_labels(rows, labels)
    assert dropped == 0 and [data.gold(r) for r in kept] == labels
    assert [data.ticket(r) for r in kept] == [data.ticket(r) for r in rows]


def test_agreement_needs_one_label_per_row():
    with pytest.raises(ValueError, match="one label per row; got 1 labels for 2 rows"):
        teacher.agreement([GOOD], [row("a", GOOD), row("b", GOOD)])


def test_cost_needs_a_listed_price():
    assert teacher.cost_per_1k({"input_tokens": 10}, 5, "some-unpriced-model") is None
