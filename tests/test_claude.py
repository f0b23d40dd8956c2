"""helpers.claude through the real anthropic client and an httpx2 MockTransport: no network."""

from __future__ import annotations

import json

import httpx2
import pytest

from helpers import claude


def mock_client(replies, seen):
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        key = request.headers.get("x-api-key") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        seen.append({"url": str(request.url), "body": body, "key": key})
        text = replies[len(seen) - 1]
        return httpx2.Response(
            200,
            json={
                "id": f"msg_{len(seen)}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 9},
            },
        )

    return claude.client(http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def test_classify_sends_system_and_turns_and_returns_text(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    seen = []
    cl = mock_client(
        ['{"intent": "order_status", "urgency": "low", "order_id": null}', " {} "], seen
    )
    convs = [
        [{"role": "system", "content": "SYS"}, {"role": "user", "content": "where is it"}],
        [
            {"role": "system", "content": "SYS"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "{}"},
            {"role": "user", "content": "b"},
        ],
    ]
    outs = claude.classify(cl, "claude-sonnet-4-6", convs)
    assert outs == ['{"intent": "order_status", "urgency": "low", "order_id": null}', "{}"]
    assert seen[0]["url"].endswith("/v1/messages")
    assert seen[0]["body"]["system"] == "SYS" and seen[0]["body"]["temperature"] == 0
    assert [m["role"] for m in seen[1]["body"]["messages"]] == ["user", "assistant", "user"]
    assert seen[0]["key"] == "test-key-not-real"


def test_api_errors_surface(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    import anthropic

    def handler(request):
        return httpx2.Response(
            401,
            json={
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            },
        )

    cl = claude.client(http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    with pytest.raises(anthropic.AuthenticationError):
        claude.classify(cl, "claude-sonnet-4-6", [[{"role": "user", "content": "x"}]])


def test_key_presence(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert not claude.api_key_present()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "  ")
    assert not claude.api_key_present()


def test_claude_judge_flags_bad_labels_through_the_real_client(monkeypatch):
    from helpers import labels

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    seen = []
    cl = mock_client(["GOOD", "BAD - the ticket is about a refund", "bad"], seen)
    pairs = [
        (
            "where is ORD-123456",
            {"intent": "order_status", "urgency": "medium", "order_id": "ORD-123456"},
        ),
        ("refund me", {"intent": "order_status", "urgency": "low", "order_id": None}),
        ("hi", {"intent": "billing_issue", "urgency": "low", "order_id": None}),
    ]
    assert labels.claude_judge(cl, "claude-sonnet-4-6", "RULES", pairs) == [False, True, True]
    body = seen[1]["body"]
    assert (
        body["system"].endswith("RULES")
        and "<ticket>refund me</ticket>" in body["messages"][0]["content"]
    )
    assert body["max_tokens"] == 5


def test_pairwise_judge_request_shape_and_both_orders(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    seen = []
    # item 1: A then B (the candidate wins in both orders); item 2: A then A (pure position bias: a
    # tie overall)
    cl = mock_client(["A", "B", "A", "A"], seen)
    items = [
        ("where is my order?", "Could you send your order number?", "No."),
        ("cancel please", "Done, cancelled.", "You shouldn't cancel!"),
    ]
    res = claude.judge_both_orders(cl, claude.JUDGE_MODEL, items)
    assert res == {
        "n": 2,
        "win_rate": 0.75,
        "first_position_share": 0.75,
        "unparsed": 0,
        "verdicts": [("A", "B"), ("A", "A")],
    }
    body = seen[0]["body"]
    assert (
        body["model"] == claude.JUDGE_MODEL and body["max_tokens"] == 5 and body["temperature"] == 0
    )
    assert body["system"] == claude.PAIRWISE_SYSTEM
    text = body["messages"][0]["content"]
    assert (
        "<reply_a>Could you send your order number?</reply_a>" in text
        and "<reply_b>No.</reply_b>" in text
    )
    # the second call swaps the order
    assert "<reply_a>No.</reply_a>" in seen[1]["body"]["messages"][0]["content"]


def test_triage_judge_uses_its_own_system_prompt(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    seen = []
    cl = mock_client(["B", "A"], seen)  # prefers the base output in both orders
    items = [
        (
            "parcel ORD-123456 late",
            '{"intent": "order_status", "urgency": "medium", "order_id": "ORD-123456"}',
            "Sure!",
        )
    ]
    res = claude.judge_both_orders(
        cl, claude.JUDGE_MODEL, items, system=claude.TRIAGE_PAIRWISE_SYSTEM
    )
    assert (
        res["win_rate"] == 0.0
        and res["verdicts"] == [("B", "A")]
        and res["first_position_share"] == 0.5
    )
    assert all(c["body"]["system"] == claude.TRIAGE_PAIRWISE_SYSTEM for c in seen)
    assert "order_id" in claude.TRIAGE_PAIRWISE_SYSTEM


@pytest.mark.parametrize(
    "answer, verdict", [("A", "A"), (" b.", "B"), ("TIE", "tie"), ("**A**", "A")]
)
def test_verdict_parsing(answer, verdict):
    assert claude.parse_verdict(answer) == verdict


def test_malformed_answer_raises_and_is_counted_not_dropped(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    with pytest.raises(claude.JudgeError, match="'Reply A is better' is not A, B or TIE"):
        claude.parse_verdict("Reply A is better")
    seen = []
    cl = mock_client(["I cannot decide", "A", "B"], seen)
    res = claude.judge_both_orders(cl, claude.JUDGE_MODEL, [("t", "x", "y"), ("t2", "x2", "y2")])
    assert res["unparsed"] == 1 and res["n"] == 1 and res["win_rate"] == 1.0


def test_rate_limit_is_retried_then_surfaces(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    import anthropic

    calls = []

    def flaky(request):
        calls.append(request)
        if len(calls) == 1:
            return httpx2.Response(
                429,
                headers={"retry-after": "0"},
                json={
                    "type": "error",
                    "error": {"type": "rate_limit_error", "message": "slow down"},
                },
            )
        body = json.loads(request.content)
        return httpx2.Response(
            200,
            json={
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "B"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        )

    cl = claude.client(http_client=httpx2.Client(transport=httpx2.MockTransport(flaky)))
    assert claude.pairwise(cl, claude.JUDGE_MODEL, "t", "a", "b") == "B" and len(calls) == 2

    def always_429(request):
        return httpx2.Response(
            429,
            headers={"retry-after": "0"},
            json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        )

    cl = claude.client(http_client=httpx2.Client(transport=httpx2.MockTransport(always_429)))
    with pytest.raises(anthropic.RateLimitError):
        claude.pairwise(cl, claude.JUDGE_MODEL, "t", "a", "b")
