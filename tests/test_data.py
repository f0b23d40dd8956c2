"""helpers.data: JSONL reading with precise errors; the committed data obeys the schema and its
promises."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator

from helpers import data, datagen, phrasebook, preferences, tickets

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{}"}]}


def write(tmp_path, lines):
    p = tmp_path / "rows.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_bad_json_line_is_named_by_file_and_line(tmp_path):
    p = write(tmp_path, [json.dumps(GOOD), '{"messages": [', json.dumps(GOOD)])
    with pytest.raises(data.DataError) as exc:
        data.read_jsonl(p)
    assert f"{p}:2:" in str(exc.value) and "not valid JSON" in str(exc.value)
    assert exc.value.line == 2


def test_wrong_role_names_the_field(tmp_path):
    bad = {
        "messages": [{"role": "customer", "content": "x"}, {"role": "assistant", "content": "{}"}]
    }
    p = write(tmp_path, [json.dumps(GOOD), json.dumps(bad)])
    with pytest.raises(
        data.DataError,
        match=r":2: field 'messages\[0\]\.role': 'customer' is not "
        r"one of",
    ):
        data.read_jsonl(p)


@pytest.mark.parametrize(
    "row, fld",
    [
        ({"id": 1}, "messages"),
        (
            {"messages": [{"role": "user"}, {"role": "assistant", "content": "{}"}]},
            r"messages\[0\]\.content",
        ),
        ({"messages": [{"role": "user", "content": "x"}]}, r"messages\[0\]\.role"),
        ([1, 2], "<row>"),
    ],
)
def test_missing_or_malformed_fields(tmp_path, row, fld):
    with pytest.raises(data.DataError, match=rf":1: field '{fld}'"):
        data.read_jsonl(write(tmp_path, [json.dumps(row)]))


def test_lenient_load_counts_every_dropped_row(tmp_path):
    lines = [json.dumps(GOOD), "not json", json.dumps({"id": 3}), "", json.dumps(GOOD)]
    rows, report = data.read_jsonl(write(tmp_path, lines), strict=False)
    assert len(rows) == 2 and report.kept == 2
    assert [e.line for e in report.errors] == [2, 3]
    assert "dropped 2" in str(report)


@pytest.mark.parametrize("split", ["train", "eval", "canary"])
def test_committed_splits_match_the_schema(split):
    rows = data.load_split(split)
    validator = Draft202012Validator(data.schema())
    for r in rows:
        label = data.gold(r)
        assert not list(validator.iter_errors(label)), (r["id"], label)
        oid = label["order_id"]
        assert (oid is None) or (oid.lower() in data.ticket(r).lower()), (
            r["id"],
            "order id must be quoted from the ticket",
        )
    assert len(rows) == datagen.SIZES[split]


# written by hand (probes: tickets; policies: notebook 01's facts), never generated
HAND_WRITTEN = ("probes.", "policies.")
# checked in tests/test_preferences.py
PREFERENCES = {*preferences.FILES.values(), "preferences.card.md"}


def test_regeneration_is_byte_identical(tmp_path):
    datagen.write_all(tmp_path)
    generated = [
        f
        for f in sorted(data.data_dir().glob("*.jsonl")) + sorted(data.data_dir().glob("*.card.md"))
        if not f.name.startswith(HAND_WRITTEN) and f.name not in PREFERENCES
    ]
    assert len(generated) == 9
    for f in generated:
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), (
            f"{f.name} differs from a fresh regeneration"
        )


def test_eval_shares_no_text_template_or_product_with_train():
    train_text = {data.ticket(r).lower() for r in data.load_split("train")}
    ev = data.load_split("eval")
    assert not train_text & {data.ticket(r).lower() for r in ev}
    tr, evf = phrasebook.FAMILIES["train"], phrasebook.FAMILIES["eval"]
    for key in ("products", "fillers", "order_mentions", "low", "closers", "cities"):
        assert not set(map(str.lower, tr[key])) & set(map(str.lower, evf[key])) - {""}, key
    train_products = [p.lower() for p in tr["products"]]
    leaked = [r["id"] for r in ev if any(p in data.ticket(r).lower() for p in train_products)]
    assert not leaked


def test_urgency_rules_hold_in_generated_tickets():
    fam = phrasebook.FAMILIES["train"]
    low_cues = [c.lower() for c in fam["low"]]
    for r in data.load_split("train"):
        text, label = data.ticket(r).lower(), data.gold(r)
        if any(c.rstrip(".") in text for c in low_cues):
            assert label["urgency"] == "low", r["id"]
        if label["urgency"] == "medium":
            assert "furious" not in text and "unacceptable" not in text, r["id"]


def test_every_intent_and_urgency_is_represented():
    rows = data.load_split("train")
    assert set(datagen.counts(rows, "intent")) == set(data.intents())
    assert set(datagen.counts(rows, "urgency")) == {"low", "medium", "high"}
    canary = data.load_split("canary")
    assert set(datagen.counts(canary, "intent")) == set(data.intents())


def test_typos_never_touch_order_ids():
    import random

    rng = random.Random(0)
    text = "My order number is ORD-123456 and the account password and address are wrong."
    for _ in range(50):
        assert "ORD-123456" in tickets.add_typos(rng, text, rate=0.5)


def test_raw_dump_truth_matches_the_dump():
    lines = (data.data_dir() / "raw_dump.jsonl").read_text(encoding="utf-8").splitlines()
    truth = [
        json.loads(t) for t in (data.data_dir() / "raw_dump_truth.jsonl").read_text().splitlines()
    ]
    assert len(lines) == len(truth) == datagen.SIZES["raw_dump"]
    by_id = {}
    for line, t in zip(lines, truth):
        broken = "broken_line" in t["defects"]
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            assert broken, t["line"]
            continue
        assert not broken
        by_id[rec["id"]] = rec
        text = rec["messages"][0]["content"]
        for span in t["pii"]:
            assert span["value"] in text, (t["line"], span)
        if "empty" in t["defects"]:
            assert text == ""
        if "overlong" in t["defects"]:
            assert len(text) > 2000
        if not {"wrong_label", "format_drift"} & set(t["defects"]):
            assert json.loads(rec["messages"][1]["content"]) == t["true_label"]
    for t in truth:
        if (
            "exact_duplicate" in t["defects"]
            and t["row_id"] in by_id
            and t["duplicate_of"] in by_id
        ):
            assert (
                by_id[t["row_id"]]["messages"][0]["content"]
                == by_id[t["duplicate_of"]]["messages"][0]["content"]
            )
    share = lambda d: sum(d in t["defects"] for t in truth) / len(truth)
    assert 0.08 <= share("wrong_label") <= 0.10
    assert 0.12 <= share("pii") <= 0.18
    assert share("injection") > 0.02 and share("format_drift") > 0.05


def test_raw_dump_card_numbers_pass_luhn():
    truth = [
        json.loads(t) for t in (data.data_dir() / "raw_dump_truth.jsonl").read_text().splitlines()
    ]
    cards = [s["value"] for t in truth for s in t["pii"] if s["type"] == "card"]
    assert len(cards) > 20
    for c in cards:
        digits = [int(d) for d in re.sub(r"\D", "", c)]
        total = sum(
            d if i % 2 == 0 else (2 * d - 9 if 2 * d > 9 else 2 * d)
            for i, d in enumerate(reversed(digits))
        )
        assert total % 10 == 0, c


def test_probe_set_is_hand_written_sized_and_unseen():
    probes = data.load_split("probes")
    assert len(probes) >= 60 and len({r["id"] for r in probes}) == len(probes)
    validator = Draft202012Validator(data.schema())
    for r in probes:
        assert not list(validator.iter_errors(data.gold(r))), r["id"]
    tags = {t for r in probes for t in r["tags"]}
    for needed in (
        "one-liner",
        "caps",
        "typos",
        "mixed-language",
        "multi-order",
        "injection",
        "pii",
        "no-order-number",
        "pre-purchase",
        "angry",
        "polite",
    ):
        assert needed in tags, needed
    generated = set()
    for split in ("train", "eval", "canary"):
        generated |= {data.ticket(r).lower() for r in data.load_split(split)}
    generated |= {
        data.ticket(r).lower()
        for r in data.read_jsonl(data.data_dir() / "raw_dump.jsonl", strict=False)[0]
    }
    for r in probes:
        assert data.ticket(r).lower() not in generated, (
            r["id"],
            "a probe ticket appears in a generated file",
        )
    assert (data.data_dir() / "probes.card.md").exists()


def test_take_names_the_parameter_when_the_data_is_short():
    rows = list(range(5))
    assert (
        data.take(rows, 3, "N_X", "x.jsonl") == [0, 1, 2]
        and data.take(rows, None, "N_X", "x.jsonl") == rows
    )
    with pytest.raises(
        ValueError,
        match=r"N_X=6 asks for 6 rows, but x.jsonl has only 5: set N_X "
        r"<= 5",
    ):
        data.take(rows, 6, "N_X", "x.jsonl")
    with pytest.raises(ValueError, match=r"N_X=-1"):
        data.take(rows, -1, "N_X", "x.jsonl")
    with pytest.raises(ValueError, match=r"N_EVAL=201 .* data/eval.jsonl has only 200"):
        data.load_split("eval", 201, "N_EVAL")


def test_shots_and_probe_sets_refuse_sizes_they_cannot_fill():
    from helpers import probesets, prompts

    with pytest.raises(ValueError, match=r"N_SHOTS=9 .* only 8"):
        prompts.pick_shots(data.load_split("train"), 9, "N_SHOTS")
    ev = data.load_split("eval")
    sets = probesets.build(ev, 25, 0, param="N_PROBE_SET")
    assert all(len(v) == 25 for v in sets.values())
    with pytest.raises(ValueError, match=r"N_PROBE_SET=25: only 0 of the 0 tickets"):
        probesets.build(ev[200:], 25, 0, param="N_PROBE_SET")
