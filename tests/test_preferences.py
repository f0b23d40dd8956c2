"""Preference data: byte-identical regeneration, loaders that name file/line/field, and the
offline reply judge."""

from __future__ import annotations

import json

import pytest

from helpers import data, preferences as P


def test_regeneration_is_byte_identical(tmp_path):
    sizes = P.write_all(tmp_path)
    assert sizes == P.SIZES
    for name in [*P.FILES.values(), "preferences.card.md"]:
        assert (tmp_path / name).read_bytes() == (data.data_dir() / name).read_bytes(), name


# the judge check that each of the bot's flaws fails
FLAW_CHECK = {
    "upsell": "no_upsell",
    "redundant_ask": "order_handling",
    "invented_policy": "no_invented_policy",
    "ramble": "concise",
    "canned": "next_step",
}


def test_committed_pairs_set_a_good_reply_against_its_flawed_one_and_the_judge_sees_each_flaw():
    pairs = P.load_data("pairs")
    assert len(pairs) == P.SIZES["pairs"] and set(FLAW_CHECK) == set(P.FAILURES)
    seen = set()
    for p in pairs:
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        flaws = p["failure"].split("+")
        seen.update(flaws)
        assert P.reply_score(chosen, p["intent"], p["order_id"]) == len(P.CHECKS), p["id"]
        checks = P.reply_checks(rejected, p["intent"], p["order_id"])
        failed = {k for k, ok in checks.items() if not ok}
        # a long mix of flaws also runs past the length limit; a canned answer never asks for a
        # missing order id
        assert (
            {FLAW_CHECK[f] for f in flaws}
            <= failed
            <= {FLAW_CHECK[f] for f in flaws} | {"concise", "order_handling"}
        ), p["id"]
        # the same reply, with the flaws put in
        assert all(s in rejected for s in chosen.split(". ")[:1]), p["id"]
    assert seen == set(P.FAILURES)


def test_the_logs_are_mostly_the_bots_and_thumbs_up_means_flawless():
    rows = P.load_data("kto")
    tickets = [r["prompt"][-1]["content"] for r in rows]
    assert len(set(tickets)) == len(tickets)
    good = [r for r in rows if r["label"]]
    assert 0.1 * len(rows) < len(good) < 0.35 * len(rows)  # a thumbs-up minority
    for r in rows:
        score = P.reply_score(r["completion"][0]["content"], r["intent"], r["order_id"])
        assert (score == len(P.CHECKS)) == r["label"] == (r["failure"] is None), r["id"]
    upsell = sum("upsell" in (r["failure"] or "") for r in rows) / len(rows)
    assert upsell > 0.5, upsell  # the flaw SFT will copy: most logged replies carry it


def test_reply_tickets_do_not_overlap_eval_prompts():
    train_side = {p["prompt"][-1]["content"] for p in P.load_data("pairs") + P.load_data("kto")}
    assert not train_side & {r["prompt"][-1]["content"] for r in P.load_data("eval")}


GOOD = {
    "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "t"}],
    "chosen": [{"role": "assistant", "content": "yes"}],
    "rejected": [{"role": "assistant", "content": "no"}],
}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"rejected": "just a string"}, "rejected"),
        ({"chosen": [{"role": "user", "content": "x"}]}, "chosen"),
        ({"chosen": [{"role": "assistant", "content": "  "}]}, "chosen"),
        ({"prompt": [{"role": "system", "content": "s"}]}, "prompt"),
        ({"rejected": [{"role": "assistant", "content": "yes"}]}, "rejected"),
    ],
)
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
    assert not P.reply_checks(
        "Sorry! Upgrade to Premium Plus for 20% off every order today.", "billing_issue", None
    )["no_upsell"]
    assert not P.reply_checks(
        "I'm sorry, but we can't help with this request at all.", "refund_request", "ORD-123456"
    )["no_refusal"]
    assert not P.reply_checks(
        "Per our policy, refunds carry a $15 processing fee today.", "refund_request", "ORD-123456"
    )["no_invented_policy"]
    missing = P.reply_checks(
        "Thanks. I'll look up your order and update you today.", "order_status", None
    )
    assert not missing["order_handling"]
    again = P.reply_checks(
        "Thanks. Could you also confirm your order number for me?", "order_status", "ORD-123456"
    )
    assert not again["order_handling"]  # the customer gave it already
    assert P.reply_checks("I'll look up order ORD-123456 today.", "order_status", "ORD-123456")[
        "order_handling"
    ]
    asked = P.reply_checks(
        "Thanks. Could you send me your order number so I can check it?", "order_status", None
    )
    assert all(asked.values())
    assert (
        P.reply_score(
            '{"intent": "order_status", "urgency": "low", "order_id": null}', "order_status", None
        )
        == 0
    )
    assert not P.reply_checks(" ".join(["word"] * 61), "product_question", None)["concise"]
    # a greeting alone is a reply with no next step: what DPO at too high an lr collapses to
    assert not P.reply_checks("Thanks for getting in touch.", "billing_issue", None)["next_step"]
    assert list(P.reply_checks("I'll check it.", "billing_issue", None)) == list(P.CHECKS)


def test_rule_verdict_is_symmetric_and_win_rate_counts_ties_half():
    good, bad = (
        "Thanks. Could you send me your order number so I can check it?",
        "We can't help with this request, sorry.",
    )
    assert P.rule_verdict(good, bad, "order_status", None) == "A"
    assert P.rule_verdict(bad, good, "order_status", None) == "B"
    assert P.rule_verdict(good, good, "order_status", None) == "tie"
    assert P.win_rate(["A", "tie", "B", "A"]) == pytest.approx(0.625)
    with pytest.raises(ValueError):
        P.win_rate([])


def test_check_rates_are_shares_per_check_and_refuse_mismatched_lengths():
    rows = [{"intent": "billing_issue", "order_id": None}] * 2
    rates = P.check_rates(
        ["I'll fix the charge today.", "Upgrade to Premium Plus now and I'll fix it."], rows
    )
    assert rates["no_upsell"] == 0.5 and rates["next_step"] == 1.0 and list(rates) == list(P.CHECKS)
    with pytest.raises(ValueError, match="1 replies, 2 rows"):
        P.check_rates(["x"], rows)


def test_flaw_shares_count_each_flaw_of_a_combined_failure():
    rows = [
        {"failure": "upsell+ramble"},
        {"failure": None},
        {"failure": "upsell"},
        {"failure": "canned"},
    ]
    shares = P.flaw_shares(rows)
    assert shares["upsell"] == 0.5 and shares["ramble"] == 0.25 and shares["canned"] == 0.25
    assert shares["redundant_ask"] == 0 and list(shares) == list(P.FAILURES)
