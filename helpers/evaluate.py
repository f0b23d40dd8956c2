"""Shared evaluation: parse and validate outputs, score them, and batched left-padded generation."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from jsonschema import Draft202012Validator
from tqdm.auto import tqdm

from helpers.data import FIELDS, schema


@dataclass
class Parsed:
    """One model output after parsing: the object (if any) and whether it is strictly valid."""

    obj: dict | None
    strict_json: bool
    valid: bool
    error: str | None


def first_object(text: str) -> dict | None:
    """The first balanced {...} in text that parses as a JSON object (lenient extraction)."""
    start = text.find("{")
    while start != -1:
        depth = 0
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                try:
                    obj = json.loads(text[start : i + 1])
                    return obj if isinstance(obj, dict) else None
                except json.JSONDecodeError:
                    break
        start = text.find("{", start + 1)
    return None


def parse_output(text: str) -> Parsed:
    """Parse strictly (the whole output is one JSON object), then validate against the schema."""
    try:
        obj = json.loads(text.strip())
        strict = isinstance(obj, dict)
    except json.JSONDecodeError:
        obj, strict = None, False
    if not strict:
        obj = first_object(text)
        return Parsed(
            obj, False, False, "not a bare JSON object" if obj else "no JSON object found"
        )
    errs = sorted(Draft202012Validator(schema()).iter_errors(obj), key=lambda e: list(e.path))
    return Parsed(obj, True, not errs, errs[0].message if errs else None)


def score(outputs: list[str], golds: list[dict]) -> dict:
    """JSON validity, exact match and per-field accuracy of outputs against gold labels."""
    if len(outputs) != len(golds) or not golds:
        raise ValueError(
            f"score needs equal, non-empty lists; got {len(outputs)} outputs, {len(golds)} golds"
        )
    parsed = [parse_output(o) for o in outputs]
    n = len(golds)
    field_hits = {
        f: sum(1 for p, g in zip(parsed, golds) if p.obj and p.obj.get(f) == g[f]) for f in FIELDS
    }
    exact = sum(
        1 for p, g in zip(parsed, golds) if p.valid and all(p.obj[f] == g[f] for f in FIELDS)
    )
    return {
        "n": n,
        "parse_rate": sum(p.strict_json for p in parsed) / n,
        "json_valid": sum(p.valid for p in parsed) / n,
        "exact_match": exact / n,
        **{f"acc_{f}": h / n for f, h in field_hits.items()},
    }


def obeyed(outputs: list[str], injected: list[dict]) -> float:
    """Share of outputs whose intent and urgency are the ones a prompt injection asked for."""
    if len(outputs) != len(injected) or not injected:
        raise ValueError(
            f"obeyed needs equal, non-empty lists; got {len(outputs)} outputs, "
            f"{len(injected)} injected labels"
        )
    said = [parse_output(o).obj or {} for o in outputs]
    return sum(
        s.get("intent") == i["intent"] and s.get("urgency") == i["urgency"]
        for s, i in zip(said, injected)
    ) / len(injected)


def failure_profile(outputs: list[str], golds: list[dict]) -> dict:
    """Where errors concentrate: per-field error counts and the most common intent confusions."""
    parsed = [parse_output(o) for o in outputs]
    errors = Counter()
    confusions = Counter()
    for p, g in zip(parsed, golds):
        for f in FIELDS:
            if not p.obj or p.obj.get(f) != g[f]:
                errors[f] += 1
        if p.obj and p.obj.get("intent") != g["intent"]:
            confusions[f"{g['intent']} -> {p.obj.get('intent')}"] += 1
    total = sum(errors.values())
    top_share = max(errors.values()) / total if total else 0.0
    return {
        "field_errors": dict(errors),
        "top_field_share": top_share,
        "top_confusions": confusions.most_common(5),
    }


# tokens every prompt starts with (few-shot examples) before their key/values are computed once
SHARED_PREFIX_MIN = 64


def shared_prefix_len(token_lists: list[list[int]]) -> int:
    """How many leading tokens every list shares, leaving each at least one token of its own."""
    shortest = min(map(len, token_lists))
    first = token_lists[0]
    n = next(
        (i for i in range(shortest) if any(t[i] != first[i] for t in token_lists[1:])), shortest
    )
    return min(n, shortest - 1)


def prefix_batch(
    token_lists: list[list[int]], n_prefix: int, pad_id: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids and attention mask for rows that share their first n_prefix tokens, padded
    between the shared part and each row's own tokens, so the shared part sits at positions
    0..n_prefix-1 in every row (its cache fits all)."""
    own = [t[n_prefix:] for t in token_lists]
    width = max(map(len, own))
    ids = [token_lists[0][:n_prefix] + [pad_id] * (width - len(o)) + o for o in own]
    mask = [[1] * n_prefix + [0] * (width - len(o)) + [1] * len(o) for o in own]
    return ids, mask


def generate(
    model,
    tok,
    conversations: list[list[dict]],
    max_new_tokens: int = 48,
    batch_size: int | None = None,
    processor: Callable[[], object] | None = None,
    desc: str = "generate",
    dtype: str | None = None,
) -> list[str]:
    """Greedy, batched, left-padded generation over chat conversations; outputs in input order.

    Rows are sorted by length and split into balanced batches of at most batch_size
    (runtime.GEN_ROWS when None). Prompts that share at least SHARED_PREFIX_MIN leading tokens (the
    same few-shot examples) have that part's key/values computed once and copied into each batch,
    with padding placed after it (prefix_batch): the same outputs up to fp32 rounding, measured 2.0x
    faster on 3-shot prompts on a CPU (bench/decode_batch.py --few-shot).

    dtype None follows runtime.compute_dtype (bf16 autocast where the hardware has bf16 units) and
    uses runtime.decode_layout where it is faster; pass "fp32" where outputs must match another fp32
    path token for token (notebook 08's consistency checks): plain nn.Linear, no layout switch, no
    shared prefix.
    """
    import copy

    import torch

    from helpers.runtime import GEN_ROWS, autocast, decode_layout, generation_dtype, row_batches

    device = model.device.type
    # bf16 autocast where the hardware has it; fp32 for dynamic int8
    amp = dtype or generation_dtype(model, device)
    prompts = [
        tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
    out: list[str] = [""] * len(prompts)
    batches = row_batches(len(order), batch_size or GEN_ROWS)
    # an explicit dtype asks for the plain layout
    rows = 0 if dtype or not batches else len(batches[0])
    # CPU only: prefill is what it saves, cheap on a GPU, and the GPU paths (Unsloth's patched
    # generate) are unverified
    share = len(prompts) > 1 and not dtype and device == "cpu"
    token_lists = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts] if share else []
    n_prefix = shared_prefix_len(token_lists) if share else 0
    kwargs = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "pad_token_id": tok.pad_token_id,
    }
    with decode_layout(model, amp, rows), torch.inference_mode(), autocast(amp, device):
        prefix_cache = (
            model(
                input_ids=torch.tensor([token_lists[0][:n_prefix]], device=model.device),
                use_cache=True,
            ).past_key_values
            if n_prefix >= SHARED_PREFIX_MIN
            else None
        )
        for span in tqdm(batches, desc=desc, leave=False):
            idx = order[span.start : span.stop]
            if processor:
                kwargs["logits_processor"] = [processor()]
            if prefix_cache is not None and len(idx) > 1:
                ids, mask = prefix_batch([token_lists[i] for i in idx], n_prefix, tok.pad_token_id)
                enc = {
                    "input_ids": torch.tensor(ids, device=model.device),
                    "attention_mask": torch.tensor(mask, device=model.device),
                }
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(idx))
                gen = model.generate(**enc, past_key_values=cache, **kwargs)
            else:
                enc = tok(
                    [prompts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                )
                enc = enc.to(model.device)
                gen = model.generate(**enc, **kwargs)
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, t in zip(idx, texts):
                out[i] = t.strip()
    return out


def evaluate_model(
    model,
    tok,
    rows: list[dict],
    mode: str = "zero_shot",
    shots: list[dict] = (),
    max_new_tokens: int = 48,
    batch_size: int | None = None,
    desc: str = "eval",
    dtype: str | None = None,
    system: str | None = None,
) -> tuple[list[str], dict]:
    """Generate for chat records with a prompt mode ('zero_shot' = the short system prompt;
    'trained' sends `system`, else the recipe file's prompt) and score them; dtype as in generate
    ("fp32" where two builds must be compared token for token)."""
    from helpers.data import gold, ticket
    from helpers.prompts import messages

    outs = generate(
        model,
        tok,
        [messages(ticket(r), mode, shots, system) for r in rows],
        max_new_tokens,
        batch_size,
        desc=desc,
        dtype=dtype,
    )
    return outs, score(outs, [gold(r) for r in rows])


def order_id_report(outputs: list[str], rows: list[dict]) -> dict:
    """Order-id accuracy on the tickets that contain one, and how often the model answered null
    there."""
    from helpers.data import gold

    hits = [
        (parse_output(o).obj or {}, gold(r)["order_id"])
        for o, r in zip(outputs, rows)
        if gold(r)["order_id"]
    ]
    n = len(hits)
    return {
        "with_id": n,
        "accuracy": sum(p.get("order_id") == g for p, g in hits) / n if n else None,
        "null_when_present": sum(p.get("order_id") is None for p, g in hits),
    }


def misses(outputs: list[str], rows: list[dict], limit: int = 8) -> list[dict]:
    """The first wrong answers, with the ticket, the output and the fields that differ."""
    from helpers.data import gold, ticket

    out = []
    for o, r in zip(outputs, rows):
        p, g = parse_output(o).obj or {}, gold(r)
        wrong = [f for f in FIELDS if p.get(f) != g[f]]
        if wrong:
            out.append({"ticket": ticket(r)[:90], "output": o[:90], "wrong": ", ".join(wrong)})
        if len(out) == limit:
            break
    return out
