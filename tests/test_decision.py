"""helpers.decision: the gate, the ROI calculator and the 200-example rule."""

from __future__ import annotations

import pytest

from helpers import decision


def profile(**kw):
    base = dict(
        motivation="strict_format",
        has_xml_structure=True,
        n_few_shot=3,
        tried_top_tier_model=True,
        is_knowledge_task=False,
        has_rag=False,
        n_eval_examples=200,
        data_audited=True,
        prompt_baseline=0.4,
        eval_target=0.85,
    )
    return decision.TaskProfile(**{**base, **kw})


def test_all_checks_pass_proceeds_with_lora_baseline():
    v = decision.should_finetune(profile())
    assert v.decision == "PROCEED" and "r=16" in str(v)


@pytest.mark.parametrize(
    "kw, failed",
    [
        ({"n_few_shot": 2}, "prompt_optimized"),
        ({"has_xml_structure": False}, "prompt_optimized"),
        ({"tried_top_tier_model": False}, "tried_top_tier_model"),
        ({"is_knowledge_task": True}, "rag_tried_if_knowledge_task"),
        ({"n_eval_examples": 49}, "eval_set_at_least_50"),
        ({"data_audited": False}, "data_audited"),
        ({"prompt_baseline": None}, "prompt_baseline_known"),
    ],
)
def test_each_failed_check_blocks_training(kw, failed):
    v = decision.should_finetune(profile(**kw))
    assert v.decision == "DO NOT TRAIN" and v.failed == [failed]


def test_knowledge_task_with_rag_passes():
    assert (
        decision.should_finetune(profile(is_knowledge_task=True, has_rag=True)).decision
        == "PROCEED"
    )


def test_weak_motivation_and_small_gain_warn():
    v = decision.should_finetune(profile(motivation="make_it_smarter", prompt_baseline=0.75))
    assert v.decision == "WARN" and len(v.warnings) == 2
    assert "below 15%" in v.warnings[1]


def test_roi_reproduces_the_seed_example():
    r = decision.roi(decision.Costs())
    assert r["gross_saving_per_year"] == pytest.approx(17_155)
    assert r["prompted_per_year"] == pytest.approx(18_250) and r["tuned_per_year"] == pytest.approx(
        1_095
    )
    assert r["payback_days"] == pytest.approx(200 / 47)


def test_roi_with_build_cost_and_upkeep():
    r = decision.roi(decision.Costs(labelled_set_cost=5_800, maintenance_rate_per_year=0.2))
    assert r["upfront"] == 6_000 and r["upkeep_per_year"] == pytest.approx(1_200)
    assert r["payback_days"] == pytest.approx(6_000 / (47 - 1_200 / 365))
    assert decision.roi(decision.Costs(tuned_cost_per_request=0.01))["payback_days"] == float("inf")


@pytest.mark.parametrize(
    "score, share, n, expect",
    [
        (0.9, 0.5, 200, "unlikely"),
        (0.65, 0.6, 200, "worth fine-tuning"),
        (0.65, 0.3, 200, "check the failures"),
        (0.1, 0.5, 40, "the rule asks for 200"),
    ],
)
def test_rule_of_200(score, share, n, expect):
    assert expect in decision.rule_of_200(score, n, share)
