"""helpers.curation and helpers.planted on tiny hand-made inputs, plus the full pipeline's
stability."""

from __future__ import annotations

import json

import pytest

from helpers import curation as cu
from helpers import data, planted


def row(i, text, user="u1", when="2026-01-01T00:00:00Z", answer=None):
    ans = answer or json.dumps({"intent": "order_status", "urgency": "low", "order_id": None})
    return {
        "id": f"r{i}",
        "user_id": user,
        "created_at": when,
        "text": text,
        "answer": ans,
        "line": i,
    }


def test_load_raw_reports_malformed_lines_and_drops_with_reasons(tmp_path):
    good = {
        "id": "a",
        "user_id": "u",
        "created_at": "t",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{}"}],
    }
    lines = [
        json.dumps(good),
        '{"id": "b", "messages": [',
        json.dumps(
            {
                **good,
                "id": "c",
                "messages": [
                    {"role": "user", "content": "   "},
                    {"role": "assistant", "content": "{}"},
                ],
            }
        ),
        json.dumps(
            {
                **good,
                "id": "d",
                "messages": [
                    {"role": "robot", "content": "x"},
                    {"role": "assistant", "content": "{}"},
                ],
            }
        ),
        json.dumps(
            {
                **good,
                "id": "e",
                "messages": [
                    {"role": "user", "content": "x" * 2500},
                    {"role": "assistant", "content": "{}"},
                ],
            }
        ),
    ]
    p = tmp_path / "dump.jsonl"
    p.write_text("\n".join(lines) + "\n")
    rows, rep, errors = cu.load_raw(p)
    assert [r["id"] for r in rows] == ["a"]
    assert [e.line for e in errors] == [2, 4] and "messages[0].role" in str(errors[1])
    assert rep.dropped == {
        "malformed line": 2,
        "empty or whitespace": 1,
        "overlong (> 2000 chars)": 1,
    }
    assert rep.n_in == 5 and rep.kept == 1


def test_exact_dedup_keeps_the_earliest():
    rows = [
        row(1, "Where is my order?", when="2026-01-02"),
        row(2, "where is my  order", when="2026-01-01"),
    ]
    kept, rep = cu.exact_dedup(rows)
    assert [r["id"] for r in kept] == ["r2"] and rep.dropped_ids == ["r1"]


@pytest.mark.parametrize("method, threshold", [("tfidf", 0.85), ("minhash", 0.5)])
@pytest.mark.parametrize("variant", ["typo", "reorder"])
def test_near_dedup_catches_typo_and_reorder(method, threshold, variant):
    base = (
        "Hello, my Nimbus standing desk arrived broken. I want a refund. My order number is "
        "ORD-123456. Thanks"
    )
    copy = {
        "typo": base.replace("arrived", "arived"),
        "reorder": "Hello, I want a refund. my Nimbus standing desk arrived broken. My order "
        "number is ORD-123456. Thanks",
    }
    background = [
        row(100 + i, data.ticket(r), when="0") for i, r in enumerate(data.load_split("train", 30))
    ]
    rows = background + [row(1, base, when="1"), row(2, copy[variant], when="2")]
    kept, rep = cu.near_dedup(rows, method, threshold)
    assert "r2" in rep.dropped_ids and "r1" not in rep.dropped_ids


def test_near_dedup_never_merges_different_orders():
    rows = [
        row(1, "Where is my order ORD-111111? It is late.", when="1"),
        row(2, "Where is my order ORD-222222? It is late.", when="2"),
    ]
    kept, _ = cu.near_dedup(rows, "tfidf", 0.5)
    assert len(kept) == 2


def test_split_by_user_and_contamination():
    rows = [
        row(i, f"ticket number {i} about product {i % 7}", user=f"u{i % 10}") for i in range(60)
    ]
    for r in rows:
        r["label"] = {"intent": "order_status", "urgency": "low", "order_id": None}
    train, ev = cu.split_by_user(rows, 0.2, seed=0)
    assert not {r["user_id"] for r in train} & {r["user_id"] for r in ev}
    twin = {**ev[0], "id": "twin", "user_id": "other"}
    assert cu.contamination(train + [twin], ev)
    clean, rep = cu.decontaminate(train + [twin], ev)
    assert "twin" in rep.dropped_ids and not cu.contamination(clean, ev)


def test_upsample_repeats_rare_long_and_ambiguous():
    rows = []
    for i in range(20):
        intent = "order_status" if i < 16 else "account_access"
        rows.append(
            {
                **row(i, "short" if i != 5 else "a much longer ticket " * 10),
                "label": {"intent": intent, "urgency": "low", "order_id": None},
            }
        )
    out, info = cu.upsample(rows, ambiguous={"r3"}, factor=2, seed=0)
    counts = {r["id"]: sum(o["id"] == r["id"] for o in out) for r in rows}
    assert info["rare_intents"] == ["account_access"]
    assert all(counts[f"r{i}"] == 2 for i in (3, 5, 16, 17, 18, 19)) and counts["r0"] == 1
    assert info["rows_tagged"] == 6 and info["rows_after"] == len(out) == 26
    # factor 1 (notebook 02's UPSAMPLE = 1): every row once, shuffled; the hard ones still counted
    once, info1 = cu.upsample(rows, ambiguous={"r3"}, factor=1, seed=0)
    assert sorted(r["id"] for r in once) == sorted(r["id"] for r in rows)
    assert info1["rows_tagged"] == 6 and info1["factor"] == 1 and info1["rows_after"] == 20


def test_version_hash_changes_with_content():
    a = [{**row(1, "x"), "label": {"intent": "order_status"}}]
    b = [{**row(1, "y"), "label": {"intent": "order_status"}}]
    assert cu.version_hash(a) == cu.version_hash([dict(a[0])]) != cu.version_hash(b)


def test_full_pipeline_is_deterministic_and_leak_free():
    raw = data.data_dir() / "raw_dump.jsonl"
    a, b = cu.curate(raw, seed=0), cu.curate(raw, seed=0)
    assert a.version == b.version
    assert not {r["user_id"] for r in a.train} & {r["user_id"] for r in a.eval}
    assert not cu.contamination(a.train, a.eval)
    truth = planted.load_truth(data.data_dir() / "raw_dump_truth.jsonl")
    assert [e.line for e in a.malformed] == sorted(
        t["line"] for t in truth.values() if "broken_line" in t["defects"]
    )
    left = planted.remaining_defects(a.train + a.eval, truth)
    assert left["pii_values_visible"] == 0 and left["wrong_labels"] / len(a.train) < 0.01


def test_recall_precision_edges():
    assert cu.recall_precision(set(), set()) == {
        "recall": 1.0,
        "precision": 1.0,
        "flagged": 0,
        "planted": 0,
    }
    assert cu.recall_precision({"a", "b"}, {"a", "c"})["recall"] == 0.5


def test_split_by_time_puts_the_latest_rows_in_eval():
    rows = [row(i, f"t{i}", user=f"u{i % 3}", when=f"2026-01-{i + 1:02d}") for i in range(20)]
    train, ev = cu.split_by_time(rows, 0.25)
    assert len(ev) == 5 and max(r["created_at"] for r in train) < min(r["created_at"] for r in ev)
    # a time split does not separate users
    assert {r["user_id"] for r in train} & {r["user_id"] for r in ev}


def test_inject_copies_keep_true_labels_and_never_use_the_probe_wording():
    import random

    from helpers import phrasebook as pb
    from helpers import probesets

    rows = data.load_split("train", 200)
    made = cu.inject_copies(rows, 0.25, seed=3)
    assert (
        len(made) == 50
        and cu.inject_copies(rows, 0.25, seed=3) == made
        and cu.inject_copies(rows, 0, 3) == []
    )
    by_id = {r["id"]: r for r in rows}
    for m in made:
        src = by_id[m["id"].removesuffix("-inj")]
        # the true label, not the injected one
        assert data.gold(m) == data.gold(src)
        assert (
            data.ticket(src) in data.ticket(m) and len(data.ticket(m)) > len(data.ticket(src)) + 20
        )
    # the source rows are untouched
    assert data.ticket(rows[0]) == data.ticket(data.load_split("train", 1)[0])
    # notebook 07's injection probes must stay unseen wording, or section 8d would test memory, not
    # transfer
    probe_note = data.ticket(probesets.injection(random.Random(0), rows[0]))[
        len(data.ticket(rows[0])) :
    ]
    assert "Ignore your instructions" in probe_note
    assert not any(
        "ignore your instructions" in t.lower() or "answer exactly" in t.lower()
        for t in pb.TRAIN_INJECTIONS
    )
    with pytest.raises(ValueError, match=r"share=1.5 must be between 0 and 1"):
        cu.inject_copies(rows, 1.5)


def test_flip_labels_flips_exactly_the_share_to_the_confusable_intent():
    from helpers import phrasebook as pb

    rows = data.load_split("train", 200)
    noisy, n = cu.flip_labels(rows, 0.1, seed=1)
    changed = [(a, b) for a, b in zip(rows, noisy) if data.gold(a) != data.gold(b)]
    assert n == 20 and len(changed) == 20 and len(noisy) == 200
    for a, b in changed:  # only the intent moves, and to its confusable neighbour
        ga, gb = data.gold(a), data.gold(b)
        assert (
            gb["intent"] == pb.CONFUSABLE[ga["intent"]]
            and gb["urgency"] == ga["urgency"]
            and data.ticket(a) == data.ticket(b)
        )
    assert cu.flip_labels(rows, 0.1, seed=1) == (noisy, n) and cu.flip_labels(rows, 0, 1) == (
        rows,
        0,
    )
    # the input is untouched
    assert data.gold(rows[0]) == data.gold(data.load_split("train", 1)[0])
    with pytest.raises(ValueError, match=r"rate=1.2 must be at least 0 and below 1"):
        cu.flip_labels(rows, 1.2)
