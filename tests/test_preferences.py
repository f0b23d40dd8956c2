"""Preference data: byte-identical regeneration, loaders that name file/line/field, and the offline reply judge."""

from __future__ import annotations

import json

import pytest

from helpers import data, preferences as P


def test_regeneration_is_byte_identical(tmp_path):
    sizes = P.write_all(tmp_path)
    assert sizes == P.SIZES
    for name in [*P.FILES.values(), "preferences.card.md"]:
        assert (tmp_path / name).read_bytes() == (data.data_dir() / name).read_bytes(), name


def test_committed_pairs_load_and_the_chosen_reply_always_scores_higher():
    pairs = P.load_data("pairs")
    assert len(pairs) == P.SIZES["pairs"] and {p["failure"] for p in pairs} == set(P.FAILURES)
    for p in pairs:
        chosen = P.reply_score(p["chosen"][0]["content"], p["intent"], p["order_id"])
        rejected = P.reply_score(p["rejected"][0]["content"], p["intent"], p["order_id"])
        assert chosen == 6 and rejected < chosen, p["id"]


def test_unpaired_rows_never_pair_a_ticket_and_one_in_three_is_good():
    rows = P.load_data("kto")
    tickets = [r["prompt"][-1]["content"] for r in rows]
    assert len(set(tickets)) == len(tickets)
    assert sum(r["label"] for r in rows) == len(rows) // 3
    assert all(P.reply_score(r["completion"][0]["content"], r["intent"], r["order_id"]) == 6 for r in rows if r["label"])


def test_reply_tickets_do_not_overlap_eval_prompts():
    train_side = {p["prompt"][-1]["content"] for p in P.load_data("pairs") + P.load_data("kto")}
    assert not train_side & {r["prompt"][-1]["content"] for r in P.load_data("eval")}


GOOD = {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "t"}],
        "chosen": [{"role": "assistant", "content": "yes"}], "rejected": [{"role": "assistant", "content": "no"}]}


@pytest.mark.parametrize("change, field", [
    ({"rejected": "just a string"}, "rejected"),
    ({"chosen": [{"role": "user", "content": "x"}]}, "chosen"),
    ({"chosen": [{"role": "assistant", "content": "  "}]}, "chosen"),
    ({"prompt": [{"role": "system", "content": "s"}]}, "prompt"),
    ({"rejected": [{"role": "assistant", "content": "yes"}]}, "rejected"),
])
def test_bad_pairs_raise_with_file_line_and_field(tmp_path, change, field):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, **change}) + "\n")
    with pytest.raises(data.DataError) as err:
        P.load(path)
    assert err.value.line == 3 and err.value.field == field
    assert str(err.value).startswith(f"{path}:3: field '{field}'")


def test_missing_key_and_broken_json_are_named(tmp_path):
    path = tmp_path / "pairs.jsonl"
    no_rejected = {k: v for k, v in GOOD.items() if k != "rejected"}
    path.write_text(json.dumps(no_rejected) + "\n{not json\n" + json.dumps(GOOD) + "\n")
    rows, errors = P.load(path, strict=False)
    assert len(rows) == 1 and [(e.line, e.field) for e in errors] == [(1, "rejected"), (2, "<row>")]


def test_kto_rows_need_a_boolean_label(tmp_path):
    path = tmp_path / "kto.jsonl"
    row = {"prompt": GOOD["prompt"], "completion": GOOD["chosen"], "label": "yes"}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(data.DataError, match="kto.jsonl:1: field 'label'"):
        P.load(path, "kto")


def test_judge_checks_read_each_failure_mode():
    assert not P.reply_checks("Sorry! Upgrade to Premium Plus for 20% off every order today.", "billing_issue", None)["no_upsell"]
    assert not P.reply_checks("I'm sorry, but we can't help with this request at all.", "refund_request", "ORD-123456")["no_refusal"]
    assert not P.reply_checks("Per our policy, refunds carry a $15 processing fee today.", "refund_request", "ORD-123456")["no_invented_policy"]
    missing = P.reply_checks("Thanks. I'll look up your order and update you today.", "order_status", None)
    assert not missing["order_handling"]
    asked = P.reply_checks("Thanks. Could you send me your order number so I can check it?", "order_status", None)
    assert all(asked.values())
    assert P.reply_score('{"intent": "order_status", "urgency": "low", "order_id": null}', "order_status", None) == 0
    assert not P.reply_checks(" ".join(["word"] * 61), "product_question", None)["concise"]


def test_rule_verdict_is_symmetric_and_win_rate_counts_ties_half():
    good, bad = "Thanks. Could you send me your order number so I can check it?", "We can't help with this request, sorry."
    assert P.rule_verdict(good, bad, "order_status", None) == "A"
    assert P.rule_verdict(bad, good, "order_status", None) == "B"
    assert P.rule_verdict(good, good, "order_status", None) == "tie"
    assert P.win_rate(["A", "tie", "B", "A"]) == pytest.approx(0.625)
    with pytest.raises(ValueError):
        P.win_rate([])
