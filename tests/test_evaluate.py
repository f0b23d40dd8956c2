"""helpers.evaluate and helpers.decoding: parsing, scoring, batched and constrained generation."""

from __future__ import annotations

import json

import pytest

from helpers import data, decoding, evaluate, prompts

G = {"intent": "order_status", "urgency": "high", "order_id": "ORD-123456"}


@pytest.mark.parametrize(
    "text, strict, valid",
    [
        (json.dumps(G), True, True),
        ("  " + json.dumps(G) + "\n", True, True),
        (json.dumps({**G, "extra": 1}), True, False),
        (json.dumps({**G, "order_id": "12345"}), True, False),
        (json.dumps({**G, "urgency": "urgent"}), True, False),
        ("Sure! " + json.dumps(G), False, False),
        ("I cannot help with that.", False, False),
        ("[1, 2]", False, False),
    ],
)
def test_parse_output(text, strict, valid):
    p = evaluate.parse_output(text)
    assert (p.strict_json, p.valid) == (strict, valid)


def test_lenient_extraction_still_credits_fields():
    p = evaluate.parse_output('Here you go: {"intent": "order_status"} done')
    assert p.obj == {"intent": "order_status"} and not p.valid


def test_score_against_hand_counted_reference():
    golds = [G, {**G, "order_id": None}, {**G, "intent": "refund_request"}, G]
    outs = [
        json.dumps(G),  # exact
        json.dumps({**G, "order_id": "ORD-123456"}),  # valid, order wrong
        "prose " + json.dumps({**G, "intent": "refund_request"}),  # fields right, not strict
        "nothing",
    ]
    s = evaluate.score(outs, golds)
    assert s == {
        "n": 4,
        "parse_rate": 0.5,
        "json_valid": 0.5,
        "exact_match": 0.25,
        "acc_intent": 0.75,
        "acc_urgency": 0.75,
        "acc_order_id": 0.5,
    }


def test_score_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equal, non-empty"):
        evaluate.score(["{}"], [])


def test_failure_profile_counts_confusions():
    golds = [G, G, {**G, "intent": "refund_request"}]
    outs = [json.dumps({**G, "intent": "shipping_change"})] * 2 + [json.dumps(G)]
    prof = evaluate.failure_profile(outs, golds)
    assert prof["field_errors"] == {"intent": 3}
    assert prof["top_field_share"] == 1.0
    assert prof["top_confusions"][0] == ("order_status -> shipping_change", 2)


def test_batched_generation_keeps_order_and_matches_one_by_one(model_and_tok):
    model, tok = model_and_tok
    rows = data.load_split("eval", 3)
    convs = [prompts.messages(data.ticket(r), "zero_shot") for r in rows]
    batched = evaluate.generate(model, tok, convs, max_new_tokens=8, batch_size=3, dtype="fp32")
    single = [
        evaluate.generate(model, tok, [c], max_new_tokens=8, batch_size=1, dtype="fp32")[0]
        for c in convs
    ]
    assert batched == single


def test_constrained_decoding_always_yields_schema_valid_json(model_and_tok):
    model, tok = model_and_tok
    rows = data.load_split("eval", 4)
    convs = [prompts.messages(data.ticket(r), "zero_shot") for r in rows]
    free = evaluate.generate(model, tok, convs, max_new_tokens=48, batch_size=4)
    proc = decoding.schema_processor(tok, model, data.schema())
    # under a grammar the model may spell keys in smaller pieces than it would freely: give it room
    constrained = evaluate.generate(
        model, tok, convs, max_new_tokens=96, batch_size=4, processor=proc
    )
    assert evaluate.score(free, [data.gold(r) for r in rows])["json_valid"] == 0.0
    assert all(evaluate.parse_output(o).valid for o in constrained), constrained


def test_few_shot_prompt_has_xml_and_distinct_shots():
    shots = prompts.pick_shots(data.load_split("train"), 3)
    assert len({data.gold(s)["intent"] for s in shots}) == 3
    msgs = prompts.messages("where is my stuff", "few_shot", shots)
    assert msgs[0]["content"].startswith("<task>") and len(msgs) == 1 + 2 * 3 + 1
    with pytest.raises(ValueError, match="unknown prompt mode"):
        prompts.messages("x", "ten_shot")


def test_trained_mode_sends_the_prompt_the_model_was_trained_with():
    # a recipe with another system_prompt (notebook 04's RECIPE_CHANGES) is scored with that prompt
    assert prompts.messages("t", "trained")[0]["content"] == prompts.train_system_prompt()
    msgs = prompts.messages("t", "trained", system="Label the ticket.")
    assert msgs == [
        {"role": "system", "content": "Label the ticket."},
        {"role": "user", "content": "t"},
    ]
    with pytest.raises(ValueError, match="mode 'zero_shot' has its own"):
        prompts.messages("t", "zero_shot", system="Label the ticket.")


def test_shared_prefix_sits_at_the_same_positions_in_every_row():
    rows = [[5, 6, 7, 8, 1], [5, 6, 7, 9], [5, 6, 7, 8, 1, 2, 3]]
    assert evaluate.shared_prefix_len(rows) == 3
    # each row keeps a token of its own
    assert evaluate.shared_prefix_len([[1, 2], [1, 2]]) == 1
    ids, mask = evaluate.prefix_batch(rows, 3, 0)
    assert ids == [[5, 6, 7, 0, 0, 8, 1], [5, 6, 7, 0, 0, 0, 9], [5, 6, 7, 8, 1, 2, 3]]
    assert mask == [[1, 1, 1, 0, 0, 1, 1], [1, 1, 1, 0, 0, 0, 1], [1] * 7]
    # each row's unmasked tokens are exactly its own prompt
    assert all([t for t, m in zip(i, k) if m] == r for i, k, r in zip(ids, mask, rows))


def test_few_shot_prompts_give_the_same_outputs_with_the_prefix_computed_once(
    model_and_tok, monkeypatch
):
    model, tok = model_and_tok
    rows = data.load_split("eval", 6)
    shots = prompts.pick_shots(data.load_split("train"), 3)
    convs = [prompts.messages(data.ticket(r), "few_shot", shots) for r in rows]
    shared = evaluate.generate(model, tok, convs, max_new_tokens=24, batch_size=3)
    # the plain path: every row's whole prompt
    monkeypatch.setattr(evaluate, "SHARED_PREFIX_MIN", 10**9)
    plain = evaluate.generate(model, tok, convs, max_new_tokens=24, batch_size=3)
    assert shared == plain and all(o for o in shared), (shared, plain)


def test_obeyed_counts_outputs_that_follow_the_injection():
    fake = {"intent": "refund_request", "urgency": "low", "order_id": None}
    outs = [
        json.dumps(fake),
        json.dumps(G),
        "Sure! " + json.dumps(fake),
        json.dumps({**fake, "urgency": "high"}),
    ]
    # the prose-wrapped one still obeyed; a half-follow did not
    assert evaluate.obeyed(outs, [fake] * 4) == 0.5
    with pytest.raises(ValueError, match="equal, non-empty lists; got 1 outputs, 0 injected"):
        evaluate.obeyed(outs[:1], [])


def test_evaluate_model_generates_in_the_dtype_asked_for(monkeypatch):
    """A gate that compares two builds asks for fp32 and gets it; the default (None) still follows
    the processor."""
    seen = []

    def fake_generate(model, tok, convs, max_new_tokens, batch_size, desc, dtype):
        seen.append(dtype)
        return ["not json"] * len(convs)

    monkeypatch.setattr(evaluate, "generate", fake_generate)
    rows = data.load_split("eval", 2)
    _, score = evaluate.evaluate_model(None, None, rows, "trained", dtype="fp32")
    evaluate.evaluate_model(None, None, rows, "trained")
    assert seen == ["fp32", None] and score["n"] == 2 and score["json_valid"] == 0
