"""Decoding from scratch: each control equals transformers' logits processor on real SmolLM2
logits."""

from __future__ import annotations

import pytest
import torch

from helpers import decoding
from helpers.decoding import Sampler


@pytest.fixture(scope="module")
def real_logits(model_and_tok):
    """Next-token logits at 6 positions of a chat prompt + answer, with the ids seen so far."""
    model, tok = model_and_tok
    conv = [
        {"role": "system", "content": "Triage the ticket as JSON."},
        {"role": "user", "content": "My order ORD-123456 never arrived and I am furious."},
    ]
    ids = tok(
        tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        + '{"intent": "order_status", "urgency": "high", "order_id": "ORD-123456"}',
        add_special_tokens=False,
    )["input_ids"]
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0].float()
    cut = [len(ids) - k for k in (20, 15, 11, 7, 3, 1)]
    return logits[[c - 1 for c in cut]], [torch.tensor(ids[:c]) for c in cut]


CONFIGS = (
    [Sampler(temperature=t) for t in (0.3, 0.7, 1.5)]
    + [Sampler(top_k=k) for k in (1, 5, 40)]
    + [Sampler(top_p=p) for p in (0.3, 0.8, 0.9, 0.99)]
    + [Sampler(min_p=p) for p in (0.01, 0.05, 0.1, 0.5)]
    + [Sampler(repetition_penalty=r) for r in (1.05, 1.3, 2.0)]
    + [
        Sampler(0.7, top_k=50, top_p=0.9, min_p=0.05, repetition_penalty=1.1),
        decoding.PRESETS["persona_chat"],
    ]
)


@pytest.mark.parametrize("s", CONFIGS, ids=lambda s: s.label())
def test_matches_transformers_on_real_logits(real_logits, s):
    logits, seen = real_logits
    for row, ids in zip(logits, seen):
        r = decoding.compare_with_hf(row[None], ids[None], s)
        assert r["same_kept_set"], (s, r)
        assert r["max_prob_diff"] < 1e-6, (s, r)


def test_temperature_zero_is_argmax_and_controls_narrow(real_logits):
    row = real_logits[0][0]
    greedy = Sampler(0.0).apply(row)
    assert torch.isfinite(greedy).sum() == 1 and greedy.argmax() == row.argmax()
    kept = lambda s: int(torch.isfinite(s.apply(row)).sum())  # noqa: E731
    assert kept(Sampler(top_p=0.5)) <= kept(Sampler(top_p=0.9)) <= kept(Sampler())
    assert kept(Sampler(min_p=0.3)) <= kept(Sampler(min_p=0.05)) <= kept(Sampler())


def test_min_p_keeps_tokens_relative_to_the_top_one():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04]))
    assert torch.isfinite(decoding.apply_min_p(logits, 0.1)).tolist() == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert torch.isfinite(decoding.apply_top_p(logits, 0.75)).tolist() == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert torch.isfinite(decoding.apply_top_p(logits, 0.85)).tolist() == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_repetition_penalty_rule():
    logits = torch.tensor([2.0, -2.0, 1.0])
    out = decoding.apply_repetition_penalty(logits, torch.tensor([0, 1]), 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0]


def test_presets_become_generation_configs():
    strict, chat = (
        decoding.generation_config("strict_json"),
        decoding.generation_config("persona_chat"),
    )
    assert strict.do_sample is False
    assert (
        chat.do_sample
        and chat.temperature == 0.7
        and chat.min_p == 0.05
        and chat.repetition_penalty == 1.05
    )


def test_value_spans_and_ngram_repeats():
    text = '{"intent": "order_status", "urgency": "high", "order_id": null}'
    spans = decoding.value_spans(text)
    assert {k: text[a:b] for k, (a, b) in spans.items()} == {
        "intent": "order_status",
        "urgency": "high",
        "order_id": "null",
    }
    assert decoding.repeated_ngram_share("a b c a b c a b c") == pytest.approx(1 - 3 / 7)
    assert decoding.repeated_ngram_share("one two three four") == 0.0


def test_detector_scores():
    s = decoding.detector_scores([True, True, False, False], [True, False, True, False])
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["base_rate"] == 0.5


def test_per_row_sampler_is_reproducible_and_greedy_at_t0(model_and_tok):
    model, tok = model_and_tok
    tok.padding_side = "left"
    conv = [{"role": "user", "content": "Name a colour."}]
    a = decoding.sample_one(model, tok, conv, Sampler(1.2), seed=3, max_new_tokens=8)
    b = decoding.sample_one(model, tok, conv, Sampler(1.2), seed=3, max_new_tokens=8)
    assert a == b
    from helpers import evaluate

    # decoding samples in fp32
    greedy = evaluate.generate(model, tok, [conv], max_new_tokens=8, dtype="fp32")
    rows = decoding.sample_many(
        model, tok, [conv], [Sampler(0.0), Sampler(1.0)], draws=2, max_new_tokens=8
    )
    assert [r["text"] for r in rows if r["sampler"] == 0] == greedy * 2
    again = decoding.sample_many(
        model, tok, [conv], [Sampler(0.0), Sampler(1.0)], draws=2, max_new_tokens=8
    )
    assert again == rows  # the same seed repeats every row, sampled ones included


def test_notebook_06_sampler_cells_agree_with_the_tested_module():
    """Notebook 06 defines the five controls and Sampler in editable cells (tag `samplers`); they
    must match helpers."""
    from dataclasses import dataclass

    import nbformat

    from helpers import runtime

    nb = nbformat.read(runtime.repo_root() / "notebooks" / "06_decoding.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if "samplers" in c.metadata.get("tags", [])]
    assert len(cells) == 2, len(cells)
    ns = {"torch": torch, "dataclass": dataclass}
    for k, src in enumerate(cells):
        exec(compile(src, f"06_decoding.ipynb:samplers[{k}]", "exec"), ns)
    torch.manual_seed(0)
    logits = torch.randn(3, 500) * 3
    seen = torch.randint(0, 500, (3, 40))
    configs = [
        {},
        {"temperature": 0.0},
        {"temperature": 0.7, "top_p": 0.9},
        {"top_k": 10},
        {"min_p": 0.1},
        {"temperature": 1.3, "top_k": 50, "top_p": 0.95, "min_p": 0.05, "repetition_penalty": 1.3},
        {"repetition_penalty": 0.8},
    ]
    for cfg in configs:
        mine, tested = ns["Sampler"](**cfg), Sampler(**cfg)
        assert torch.equal(mine.apply(logits, seen), tested.apply(logits, seen)), cfg
        assert (
            torch.equal(mine.apply(logits), tested.apply(logits)) and mine.label() == tested.label()
        ), cfg
