"""Notebook 07's evaluation helpers: F1 and confusions by hand, the canary gate, Pareto choice,
probes, report."""

from __future__ import annotations

import json

import pytest

from helpers import data, general, probesets, shipcheck


def out(intent, urgency="low", order_id=None):
    return json.dumps({"intent": intent, "urgency": urgency, "order_id": order_id})


def test_f1_and_confusion_match_a_hand_computed_case():
    y_true = ["order_status", "order_status", "refund_request", "billing_issue"]
    outputs = [out("order_status"), out("refund_request"), out("refund_request"), "not json"]
    rep = shipcheck.intent_report(y_true, shipcheck.predicted_intents(outputs))
    # order_status: tp 1, fp 0, fn 1 -> F1 2/3; refund_request: tp 1, fp 1, fn 0 -> 2/3;
    # billing_issue: 0; 5 others 0
    assert rep["per_intent_f1"]["order_status"] == pytest.approx(2 / 3)
    assert rep["per_intent_f1"]["refund_request"] == pytest.approx(2 / 3)
    assert rep["per_intent_f1"]["billing_issue"] == 0
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 8)
    cm = rep["confusion"]
    rows, cols = rep["rows"], rep["cols"]
    assert cm[rows.index("order_status")][cols.index("order_status")] == 1
    assert cm[rows.index("order_status")][cols.index("refund_request")] == 1
    assert cm[rows.index("billing_issue")][cols.index(shipcheck.INVALID)] == 1
    # macro-F1 above averages over all 8 intents, as sklearn does with labels=
    assert sum(map(sum, cm)) == 4


def test_canary_gate_blocks_a_regression_over_five_points_and_passes_otherwise():
    ref = {"json_valid": 1.0, "exact_match": 0.80}
    assert shipcheck.canary_gate(ref, {"json_valid": 1.0, "exact_match": 0.76})["verdict"] == "PASS"
    # exactly 5 points
    assert shipcheck.canary_gate(ref, {"json_valid": 1.0, "exact_match": 0.75})["verdict"] == "PASS"
    blocked = shipcheck.canary_gate(ref, {"json_valid": 0.9, "exact_match": 0.80})
    assert blocked["verdict"] == "BLOCK" and blocked["failed"] == ["json_valid"]


def test_overfit_flag():
    train = [(s, 2.0 - 0.01 * s) for s in range(1, 101)]
    assert not shipcheck.overfit_flag(train, [(25, 0.5), (50, 0.4), (75, 0.3)])["overfitting"]
    flag = shipcheck.overfit_flag(train, [(25, 0.5), (50, 0.4), (75, 0.45)])
    assert flag["overfitting"] and flag["events"][0]["to_step"] == 75


def test_choice_is_on_the_pareto_front_and_follows_the_rule():
    pts = [
        {"step": 10, "exact_match": 0.50, "json_valid": 1.0, "general_retention": 1.00},
        {"step": 40, "exact_match": 0.78, "json_valid": 1.0, "general_retention": 0.97},
        {"step": 80, "exact_match": 0.80, "json_valid": 1.0, "general_retention": 0.90},
        {"step": 60, "exact_match": 0.70, "json_valid": 0.9, "general_retention": 0.95},
    ]
    front = shipcheck.pareto_front(pts, ("exact_match", "json_valid", "general_retention"))
    assert front == [True, True, True, False]
    chosen = shipcheck.choose_checkpoint(pts, below_peak=0.03, floor=0.95)
    assert (
        chosen["step"] == 40 and front[pts.index({k: v for k, v in chosen.items() if k != "rule"})]
    )
    # nothing near the peak keeps 95%: fall back to the best that does
    assert shipcheck.choose_checkpoint(pts[:1] + pts[2:], below_peak=0.03, floor=0.95)["step"] == 10
    # a checkpoint that writes no valid JSON is never chosen, however much general capability it
    # keeps
    broken = {"step": 2, "exact_match": 0.0, "json_valid": 0.0, "general_retention": 1.0}
    pick = shipcheck.choose_checkpoint([broken, pts[2]], below_peak=0.03, floor=0.95)
    assert pick["step"] == 80 and "flagged for review" in pick["rule"]


def test_probe_sets_keep_gold_and_apply_their_stress():
    rows = data.load_split("eval")
    sets = probesets.build(rows, 5, seed=0)
    assert set(sets) == set(probesets.SETS) and all(len(v) == 5 for v in sets.values())
    by_id = {r["id"]: r for r in rows}
    # noqa: E731 - probe ids are "<source id>-<set>"
    src = lambda p: by_id[p["id"].rsplit("-", 1)[0]]
    for kind, probes in sets.items():
        for p in probes:
            assert data.gold(p) == data.gold(src(p)) and p["probe_set"] == kind
    assert all(
        data.ticket(p).isupper() or not any(c.isalpha() for c in data.ticket(p))
        for p in sets["typos_shouting"]
    )
    assert all(len(probesets.order_ids_in(data.ticket(p))) == 2 for p in sets["multiple_order_ids"])
    assert all("Ignore your instructions" in data.ticket(p) for p in sets["injection"])
    # the label it asks for is kept, differs from gold, and is the one in the text
    for p in sets["injection"]:
        fake, g = p["injected"], data.gold(p)
        assert fake["intent"] != g["intent"] and fake["urgency"] != g["urgency"]
        assert f'"intent": "{fake["intent"]}", "urgency": "{fake["urgency"]}"' in data.ticket(p)
    assert all(len(data.ticket(p)) > len(data.ticket(src(p))) + 200 for p in sets["long"])
    assert probesets.build(rows, 5, seed=0) == sets  # seeded


def test_stand_in_judge_prefers_the_output_that_reads_the_ticket():
    judge = shipcheck.StandInJudge(data.load_split("train"))
    t = "My parcel ORD-123456 has not arrived and I need it tomorrow for a wedding!"
    good, bad = out("order_status", "high", "ORD-123456"), out("product_question", "low", None)
    assert judge.pairwise(t, good, bad) == "A" and judge.pairwise(t, bad, good) == "B"
    assert judge.pairwise(t, "garbage", "garbage") == "tie"
    assert shipcheck.agreement(["A", "B", "tie"], ["A", "A", "tie"]) == {
        "agreement": 0.5,
        "decided_pairs": 2,
        "n": 3,
    }


def test_report_needs_every_section(tmp_path):
    sections = {s: "text" for s in shipcheck.REPORT_SECTIONS}
    md, html = shipcheck.write_report(tmp_path, "t", sections, {})
    assert (
        all(f"## {s}" in md.read_text() for s in shipcheck.REPORT_SECTIONS)
        and "<h2>Verdict</h2>" in html.read_text()
    )
    with pytest.raises(ValueError, match="without content: Judge"):
        shipcheck.write_report(tmp_path, "t", {**sections, "Judge": " "}, {})


def test_general_items_are_well_formed():
    for task in general.MC_TASKS:
        items = general.load_items(task)
        assert len(items) == 12 and all(0 <= it["answer"] < len(it["choices"]) == 4 for it in items)
    assert len(general.load_items(general.GEN_TASK)) == 10
    # the SFT mix never asks the check's questions
    questions = {it["question"] for t in general.TASKS for it in general.load_items(t)}
    assert not questions & set(general.MIX_PROMPTS)


def test_own_scorer_matches_lm_eval(model_dir, model_and_tok):
    model, tok = model_and_tok
    lm = general.run_lm_eval(str(model_dir), tasks=("workbook_facts",), limit=6)
    own = general.own_mc_accuracy(model, tok, tasks=("workbook_facts",), limit=6)
    assert own["per_task"]["workbook_facts"] == pytest.approx(lm["scores"]["workbook_facts"])
    assert {k: own["picks"][k] for k in lm["mc_picks"]["workbook_facts"]} == lm["mc_picks"][
        "workbook_facts"
    ]


def test_retention_check_says_when_the_set_cannot_resolve_the_floor():
    # notebook 07's CI case: 19 of 36 items right for the base, 18 for the adapter (one item
    # changed)
    base = [True] * 19 + [False] * 17
    tuned = [True] * 18 + [False] * 18
    r = shipcheck.retention_check(base, tuned, floor=0.95)
    assert r["retention"] == pytest.approx(18 / 19) and r["items_changed"] == 1
    lo, hi = r["ci95"]
    assert lo < 0.95 <= hi and lo <= r["retention"] <= hi and r["verdict"] == "not resolved", r
    # the same one-item-in-19 loss rate on 20x the items is resolved: a 30% loss is "lost", no
    # change is "kept"
    big_base = base * 20
    assert (
        shipcheck.retention_check(big_base, [b and k % 10 > 2 for k, b in enumerate(big_base)])[
            "verdict"
        ]
        == "lost"
    )
    assert shipcheck.retention_check(big_base, big_base)["verdict"] == "kept"
    # gains and losses
    noisy = [b != (k % 7 == 0) for k, b in enumerate(big_base)]
    assert (
        shipcheck.retention_check(big_base, noisy, seed=1)["ci95"]
        != shipcheck.retention_check(big_base, noisy)["ci95"]
    )
    # a seed reproduces
    assert shipcheck.retention_check(base, tuned, seed=0) == r


def test_retention_check_rejects_unpaired_or_empty_results():
    with pytest.raises(
        ValueError, match="one result per item from each model; got 3 base and 2 tuned"
    ):
        shipcheck.retention_check([True] * 3, [True] * 2)
    with pytest.raises(ValueError, match="base model got no item right"):
        shipcheck.retention_check([False] * 4, [True] * 4)
