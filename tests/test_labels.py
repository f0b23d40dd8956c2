"""helpers.labels: repairing drifted answers, and the offline label audit."""

from __future__ import annotations

import random

import pytest

from helpers import labels

GOLD = {"intent": "refund_request", "urgency": "high", "order_id": "ORD-000123"}


@pytest.mark.parametrize(
    "answer, how",
    [
        ('{"intent": "refund_request", "urgency": "high", "order_id": "ORD-000123"}', "ok"),
        (
            '{"intent": "refund_request", "urgency": "high", "order_id": "ORD-000123", '
            '"confidence": 0.9}',
            "dropped extra keys",
        ),
        ("intent: refund_request\nurgency: high\norder_id: ORD-000123", "yaml"),
        (
            '{"category": "refund_request", "priority": "high", "order": "ORD-000123"}',
            "renamed keys",
        ),
        (
            '{"intent": "refund_request", "urgency": "high", "order_id": "ORD-000123"} Hope this '
            "helps!",
            "embedded_json",
        ),
        (
            "{'intent': 'refund_request', 'urgency': 'high', 'order_id': 'ORD-000123'}",
            "python_dict",
        ),
    ],
)
def test_drifted_answers_are_repaired(answer, how):
    label, done = labels.repair_label(answer)
    assert label == GOLD and done == how


@pytest.mark.parametrize(
    "answer, why",
    [
        ('{"intent": "refund_request", "urg', "unparseable"),
        ("The customer wants a refund.", "unparseable"),
        ('{"intent": "refund_request", "urgency": "asap", "order_id": null}', "schema"),
        ('{"intent": "refund_request"}', "missing intent or urgency"),
    ],
)
def test_unrepairable_answers_say_why(answer, why):
    label, done = labels.repair_label(answer)
    assert label is None and done.startswith(why)


def test_yaml_null_order_id():
    label, _ = labels.repair_label("intent: order_status\nurgency: low\norder_id: null")
    assert label == {"intent": "order_status", "urgency": "low", "order_id": None}


def test_classifier_audit_flags_planted_flips():
    rng = random.Random(0)
    words = {
        "refund": "I want my money back for the {} please",
        "login": "I cannot log in to my {} account",
        "ship": "Where is my {} parcel it has not arrived",
    }
    texts, given, flipped = [], [], []
    for i in range(300):
        kind = list(words)[i % 3]
        texts.append(words[kind].format(rng.choice(["blue", "red", "old", "new", "big"])))
        wrong = i % 25 == 0
        given.append(list(words)[(i + 1) % 3] if wrong else kind)
        flipped.append(wrong)
    res = labels.classifier_audit(texts, given, seed=0)
    caught = sum(f and w for f, w in zip(res.flagged, flipped))
    false = sum(f and not w for f, w in zip(res.flagged, flipped))
    assert caught == sum(flipped) and false == 0
