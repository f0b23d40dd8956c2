"""Notebook 05's plumbing: error kinds, trends, memory accounting."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import align


def rec(text, label):
    return {
        "id": "t1",
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": json.dumps(label)},
        ],
    }


LABEL = {"intent": "order_status", "urgency": "high", "order_id": "ORD-123456"}


def test_error_kind_names_the_wrong_fields():
    assert align.error_kind(json.dumps(LABEL), LABEL) is None
    assert (
        align.error_kind(json.dumps({**LABEL, "urgency": "low", "order_id": None}), LABEL)
        == "urgency+order_id"
    )
    assert align.error_kind("Sure, here you go", LABEL) == "invalid JSON"


def test_first_last_needs_enough_steps():
    assert align.first_last([(i, float(i)) for i in range(1, 7)]) == (2.0, 5.0)
    with pytest.raises(ValueError, match="at least 6"):
        align.first_last([(1, 0.0), (2, 1.0)])


def test_tensor_bytes_counts_shared_storage_once():
    a = torch.nn.Linear(10, 10)
    b = torch.nn.Linear(10, 10)
    # tied, like a reference adapter that shares nothing but this
    b.weight = a.weight
    one = align.tensor_bytes(a)
    assert one == (100 + 10) * 4
    assert align.tensor_bytes(a, b) == one + 10 * 4
    assert align.tensor_bytes(a, None) == one


def test_peak_memory_sees_an_allocation():
    with align.PeakMemory() as mem:
        block = torch.ones(64_000_000)  # 256 MB
        block += 1
    assert mem.rise_gb > 0.2


def test_drift_reads_changes_on_fixed_pairs():
    before = [(-10.0, -20.0), (-12.0, -18.0)]
    after = [(-11.0, -25.0), (-13.0, -17.0)]
    d = align.drift(after, before)
    assert (
        d["logp_chosen_change"] == -1.0
        and d["logp_rejected_change"] == -2.0
        and d["margin_change"] == 1.0
    )
    assert d["mean_abs_change_nats"] == 2.0 and d["heldout_pref_accuracy"] == 0.5


def test_noise_verdict_needs_every_draw_and_no_more_accuracy_lost():
    # the shares kept and accuracy lost of the ablation-size run of 2026-12-05 (LEDGER, "IPO on
    # noisy preferences, three draws"): IPO against plain DPO, then against DPO + SFT term
    ipo_kept, ipo_cost = [0.758, 0.784, 0.643], [1 / 32, 1 / 32, 0.0]
    assert align.noise_verdict(
        ipo_kept, [0.439, 0.550, 0.495], ipo_cost, [0.0, 2 / 32, 2 / 32]
    ) == (
        "confirmed",
        3,
        0,
    )
    # ahead in every draw but one held-out pair more lost on average
    assert align.noise_verdict(ipo_kept, [0.652, 0.715, 0.584], ipo_cost, [0.0, 0.0, -1 / 32]) == (
        "inconclusive",
        3,
        0,
    )
    # behind in every draw; a lead under 5 points counts for neither side
    assert align.noise_verdict([0.4, 0.5], [0.6, 0.6], [0.0, 0.0], [0.1, 0.1])[0] == "refuted"
    assert align.noise_verdict([0.62, 0.5], [0.6, 0.6], [0.0, 0.0], [0.0, 0.0]) == (
        "inconclusive",
        0,
        1,
    )
    assert align.noise_verdict([0.9], [0.1], [0.0], [0.5])[0] == "inconclusive (one draw)"
    with pytest.raises(ValueError, match=r"3, 2, 3 and 3 values"):
        align.noise_verdict([0.9] * 3, [0.1] * 2, [0.0] * 3, [0.0] * 3)


def test_completion_logps_sums_only_the_reply_tokens(model_and_tok):
    model, tok = model_and_tok
    prompt = [{"role": "user", "content": "Say hi."}]
    short = align.completion_logps(model, tok, prompt, [{"role": "assistant", "content": "Hi"}])
    longer = align.completion_logps(
        model, tok, prompt, [{"role": "assistant", "content": "Hi there, how are you today?"}]
    )
    # more reply tokens, more (negative) log-probability summed
    assert short < 0 and longer < short


def test_answer_readout_scores_each_tickets_training_answer(model_and_tok):
    from helpers import data, train

    model, tok = model_and_tok
    rows = data.load_split("eval", 2)
    r = align.answer_readout(model, tok, rows, "Triage the ticket as JSON.")
    pc = train.prompt_completion(rows[1], "Triage the ticket as JSON.")
    assert r["logps"][1] == pytest.approx(
        align.completion_logps(model, tok, pc["prompt"], pc["completion"])
    )
    assert r["mean_logp"] == pytest.approx(sum(r["logps"]) / 2) and all(x < 0 for x in r["logps"])
    assert r["mean_p"] == pytest.approx((math.exp(r["logps"][0]) + math.exp(r["logps"][1])) / 2)


def test_recipes_load_with_changes_and_agree_with_the_reply_stage():
    dpo = align.load_recipe("dpo", beta=0.5)
    assert (dpo.beta, dpo.loss_type, dpo.max_length) == (0.5, ("sigmoid", "sft"), align.MAX_LENGTH)
    grpo = align.load_recipe("grpo", steps=6, prompts=2)
    assert (grpo.steps, grpo.prompts, grpo.loss_type) == (6, 2, "dapo")
    assert len(grpo.reward_weights) == 3  # valid, fields, brevity (helpers.rewards)


@pytest.mark.parametrize(
    "text,message",
    [
        ("lr: 1.0e-4\nbetta: 0.1\n", r"dpo\.yaml:2: unknown field 'betta'; known: lr, beta"),
        ("lr: fast\n", r"dpo\.yaml:1: field 'lr' must be a number, got 'fast'"),
        ("lr: 1.0e-4\n\nloss_type: sigmoid\n", r"dpo\.yaml:3: field 'loss_type' must be a list"),
        ("steps: true\n", r"dpo\.yaml:1: field 'steps' must be an integer, got True"),
        ("- lr\n", r"dpo\.yaml: expected a mapping of recipe fields, got list"),
        ("lr: [1\n", r"dpo\.yaml:2: not valid YAML"),
    ],
)
def test_a_bad_recipe_file_names_the_file_line_and_field(tmp_path, text, message):
    path = tmp_path / "dpo.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        align.load_recipe("dpo", path)


def test_a_bad_change_or_a_missing_field_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"a change to grpo\.yaml: field 'prompts' must be an int"):
        align.load_recipe("grpo", prompts=2.5)
    with pytest.raises(ValueError, match=r"a change to dpo\.yaml: unknown field 'rank'"):
        align.load_recipe("dpo", rank=16)
    with pytest.raises(ValueError, match=r"unknown recipe kind 'ppo'; known: dpo, grpo"):
        align.load_recipe("ppo")
    full = (align.RECIPES / "dpo.yaml").read_text()
    path = tmp_path / "dpo.yaml"
    path.write_text("\n".join(ln for ln in full.splitlines() if not ln.startswith("beta:")))
    with pytest.raises(ValueError, match=r"dpo\.yaml: missing field\(s\) beta"):
        align.load_recipe("dpo", path)


def test_inverse_cdf_sampler_draws_softmax_of_the_tempered_scores():
    """Frequencies over 40,000 draws match softmax(scores / T) within 5 standard errors, at two
    temperatures; a token of probability 0 is never drawn; greedy picks the drawn token."""
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf"), 0.5]])
    rows = scores.repeat(40_000, 1)
    for temperature in (1.0, 0.5):
        torch.manual_seed(0)
        out = align.InverseCdfSampler(temperature)(None, rows.clone())
        # one finite score a row, on the drawn token
        assert torch.isfinite(out).sum(-1).eq(1).all()
        picks = out.argmax(-1)
        freq = torch.bincount(picks, minlength=6).double() / len(picks)
        p = torch.softmax(scores[0].double() / temperature, -1)
        se = (p * (1 - p) / len(picks)).sqrt()
        assert freq[4] == 0  # the -inf token
        assert ((freq - p).abs() <= 5 * se + 1e-12).all(), (freq, p)


def test_inverse_cdf_sampler_follows_the_seed_and_refuses_a_bad_temperature():
    scores = torch.randn(4, 50)
    torch.manual_seed(3)
    a = align.InverseCdfSampler()(None, scores).argmax(-1)
    torch.manual_seed(3)
    b = align.InverseCdfSampler()(None, scores).argmax(-1)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        align.InverseCdfSampler(0)


def test_sample_is_seeded_and_varies_with_the_seed(model_and_tok):
    model, tok = model_and_tok
    convs = [[{"role": "user", "content": "Name a colour."}]]
    one = align.sample(model, tok, convs, 4, max_new_tokens=6, seed=0)
    assert one == align.sample(model, tok, convs, 4, max_new_tokens=6, seed=0)
    assert len(one) == 1 and len(one[0]) == 4
    # 4 rows x 3 seeds of free text at T = 1: not all the same
    others = [align.sample(model, tok, convs, 4, max_new_tokens=6, seed=s) for s in (1, 2)]
    assert len({t for g in [one, *others] for t in g[0]}) > 1
