"""Notebook 06: decoding from scratch (temperature, top-k, top-p, min-p, repetition penalty),
presets, the per-position distribution read-outs, batched sampling sweeps, the hesitation
monitor, and JSON-schema-constrained generation with xgrammar (CPU and GPU)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from helpers.data import FIELDS

NEG_INF = float("-inf")


# ---------------------------------------------------------------- the five controls, from scratch,
# on one logits row


def apply_temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """logits / T; T = 0 keeps only the argmax (greedy)."""
    if t == 0:
        out = torch.full_like(logits, NEG_INF)
        idx = logits.argmax(-1, keepdim=True)
        return out.scatter(-1, idx, logits.gather(-1, idx))
    return logits / t


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest logits (ties with the k-th are kept)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the nucleus: drop the least likely tokens while their total probability stays at or
    below 1 - p."""
    if p >= 1.0:
        return logits
    ascending, order = logits.sort(dim=-1)
    tail_mass = ascending.softmax(-1).cumsum(-1)  # summed from the least likely token up
    drop_sorted = tail_mass <= 1 - p
    drop_sorted[..., -1] = False  # the top token always stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def apply_min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least p times the top token's."""
    if p <= 0:
        return logits
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < p * probs.amax(-1, keepdim=True), NEG_INF)


def apply_repetition_penalty(
    logits: torch.Tensor, seen_ids: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Tokens already in seen_ids: positive logits divided by the penalty, negative ones
    multiplied (CTRL's rule)."""
    if penalty == 1.0:
        return logits
    seen = logits.gather(-1, seen_ids)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, seen_ids, seen)


@dataclass(frozen=True)
class Sampler:
    """One decoding configuration; apply() runs the controls in transformers' order."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0

    def apply(self, logits: torch.Tensor, seen_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Processed logits (-inf where a token can no longer be drawn)."""
        if seen_ids is not None:
            logits = apply_repetition_penalty(logits, seen_ids, self.repetition_penalty)
        logits = apply_temperature(logits, self.temperature)
        return apply_min_p(apply_top_p(apply_top_k(logits, self.top_k), self.top_p), self.min_p)

    def label(self) -> str:
        """A short name for tables: 'T=0.7 min_p=0.05 rep=1.05' (settings at their default are
        left out)."""
        rest = {
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "rep": self.repetition_penalty,
        }
        off = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "rep": 1.0}
        return " ".join(
            [f"T={self.temperature:g}"] + [f"{k}={v:g}" for k, v in rest.items() if v != off[k]]
        )


def hf_processors(s: Sampler):
    """The same configuration as transformers' own LogitsProcessorList (the reference we check
    against)."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if s.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(float(s.repetition_penalty)))
    if s.temperature not in (0, 1.0):
        procs.append(TemperatureLogitsWarper(float(s.temperature)))
    if s.top_k > 0:
        procs.append(TopKLogitsWarper(s.top_k))
    if s.top_p < 1.0:
        procs.append(TopPLogitsWarper(float(s.top_p)))
    if s.min_p > 0:
        procs.append(MinPLogitsWarper(float(s.min_p)))
    return procs


def compare_with_hf(logits: torch.Tensor, seen_ids: torch.Tensor, s: Sampler) -> dict[str, float]:
    """Our processed distribution vs transformers' for one config: kept-set agreement and max
    probability gap."""
    ours = s.apply(logits, seen_ids)
    theirs = hf_processors(s)(seen_ids, logits.clone())
    same_set = bool(torch.equal(torch.isinf(ours), torch.isinf(theirs)))
    gap = (ours.softmax(-1) - theirs.softmax(-1)).abs().max().item()
    return {
        "same_kept_set": same_set,
        "max_prob_diff": gap,
        "kept": int((~torch.isinf(ours)).sum(-1).float().mean()),
    }


# ---------------------------------------------------------------- presets (the seeds' two
# production configs)

PRESETS: dict[str, Sampler] = {
    "strict_json": Sampler(temperature=0.0),
    "persona_chat": Sampler(temperature=0.7, min_p=0.05, repetition_penalty=1.05),
}


def generation_config(preset: str, max_new_tokens: int = 64):
    """A transformers GenerationConfig for a named preset (T = 0 becomes greedy decoding)."""
    from transformers import GenerationConfig

    s = PRESETS[preset]
    if s.temperature == 0:
        return GenerationConfig(
            do_sample=False, max_new_tokens=max_new_tokens, repetition_penalty=s.repetition_penalty
        )
    return GenerationConfig(
        do_sample=True,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k or None,
        min_p=s.min_p or None,
        repetition_penalty=s.repetition_penalty,
        max_new_tokens=max_new_tokens,
    )


def preset_table() -> dict[str, dict]:
    """The presets as plain dicts (for metrics.json and the serving notebook)."""
    return {k: asdict(v) for k, v in PRESETS.items()}


# ---------------------------------------------------------------- distributions at the JSON value
# positions


def entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits of each probability row."""
    p = probs.clamp_min(1e-30)
    return -(probs * p.log2()).sum(-1)


def value_spans(completion: str) -> dict[str, tuple[int, int]]:
    """Character span of each JSON value (inside the quotes for strings) in a triage completion."""
    spans = {}
    for key in FIELDS:
        m = re.search(rf'"{key}":\s*("?)([^",}}]*)', completion)
        if m:
            spans[key] = (m.start(2), m.end(2))
    return spans


def encode_with_completion(
    tok, conversation: list[dict], completion: str
) -> tuple[list[int], int, list]:
    """Token ids of prompt + completion, where the completion starts, and its tokens' character
    offsets."""
    prompt = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    enc = tok(completion, add_special_tokens=False, return_offsets_mapping=True)
    return p_ids + enc["input_ids"], len(p_ids), enc["offset_mapping"]


@torch.inference_mode()
def value_position_logits(model, tok, conversation: list[dict], completion: str) -> dict[str, dict]:
    """Teacher-forced next-token logits at the first token of each JSON value, with the gold
    token and its prefix."""
    ids, start, offsets = encode_with_completion(tok, conversation, completion)
    logits = model(torch.tensor([ids], device=model.device)).logits[0].float().cpu()
    out = {}
    for key, (a, b) in value_spans(completion).items():
        first = next(
            (i for i, (s, e) in enumerate(offsets) if s <= a < e or (s >= a and s < max(b, a + 1))),
            None,
        )
        if first is None:
            continue
        pos = start + first
        out[key] = {
            "logits": logits[pos - 1],
            "gold_id": ids[pos],
            "seen_ids": torch.tensor(ids[:pos]),
        }
    return out


def distribution_stats(logits: torch.Tensor, gold_id: int | None = None, k: int = 10) -> dict:
    """Top-1 probability, entropy (bits), the top-k probabilities, and whether gold is the top
    token."""
    probs = logits.softmax(-1)
    top = probs.topk(k)
    out = {
        "top1": top.values[0].item(),
        "entropy_bits": entropy_bits(probs).item(),
        "topk": [round(v, 4) for v in top.values.tolist()],
        "topk_ids": top.indices.tolist(),
    }
    if gold_id is not None:
        out["gold_is_top1"] = int(top.indices[0].item() == gold_id)
    return out


def position_readout(logits: torch.Tensor, seen_ids: torch.Tensor, s: Sampler) -> dict[str, float]:
    """What a sampler leaves at one position: tokens kept, top-1 probability, entropy (bits)."""
    probs = s.apply(logits, seen_ids).softmax(-1)
    return {
        "kept": int((probs > 0).sum()),
        "top1": probs.max().item(),
        # + 0.0 turns -0.0 into 0.0
        "entropy_bits": max(entropy_bits(probs).item(), 0.0) + 0.0,
    }


def load_slider_position(course_dir: str = "") -> dict[str, dict]:
    """The logits notebook 06 saved for its slider (newest run); a clear error if it has not run
    yet."""
    from helpers.runtime import find_artifact

    path = find_artifact("slider_position.pt", "06_decoding", course_dir)
    if path is None:
        raise FileNotFoundError(
            "no slider_position.pt from notebook 06 yet: run its section 2 and "
            "the cell above "
            "the sliders (or `make course`) first"
        )
    return torch.load(path, weights_only=True)


def readout_line(name: str, r: dict[str, float]) -> str:
    """One model's read-out at the slider position, as the browser test matches it."""
    kept = f"{r['kept']} token{'s' if r['kept'] != 1 else ''} kept"
    return f"{name}: {kept} · top-1 {r['top1']:.1%} · entropy {r['entropy_bits']:.2f} bits"


# ---------------------------------------------------------------- batched sampling with one config
# per row


class PerRowSampler:
    """A transformers logits processor that applies row i's Sampler to row i (greedy rows keep
    only the argmax)."""

    def __init__(self, samplers: list[Sampler]):
        self.groups: dict[Sampler, torch.Tensor] = {}
        for i, s in enumerate(samplers):
            self.groups.setdefault(s, []).append(i)
        self.groups = {s: torch.tensor(rows) for s, rows in self.groups.items()}
        self.seconds = 0.0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        t0 = time.perf_counter()
        out = torch.empty_like(scores)
        for s, rows in self.groups.items():
            out[rows] = s.apply(scores[rows], input_ids[rows])
        self.seconds += time.perf_counter() - t0
        return out


def prompt_texts(tok, conversations: list[list[dict]]) -> list[str]:
    """The chat-templated prompt strings."""
    return [
        tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]


@torch.inference_mode()
def shared_prompt_generate(
    model, tok, prompt: str, samplers: list[Sampler], max_new_tokens: int
) -> list[str]:
    """One prompt, one row per sampler: the prompt is prefilled once and its KV cache copied to
    every row."""
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
    # all but the last token; generate feeds that one
    cache = model(ids[:, :-1], use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(samplers))
    rows = ids.repeat(len(samplers), 1)
    gen = model.generate(
        input_ids=rows,
        attention_mask=torch.ones_like(rows),
        past_key_values=cache,
        do_sample=True,
        temperature=1.0,
        top_k=None,
        top_p=1.0,
        logits_processor=[PerRowSampler(samplers)],
        max_new_tokens=max_new_tokens,
        pad_token_id=tok.pad_token_id,
    )
    return [t.strip() for t in tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)]


def sample_many(
    model,
    tok,
    conversations: list[list[dict]],
    samplers: list[Sampler],
    draws: int = 1,
    max_new_tokens: int = 40,
    seed: int = 0,
    desc: str = "sample",
) -> list[dict]:
    """Every conversation x sampler x draw; one seeded generate call per conversation, one row
    per (sampler, draw)."""
    from helpers.runtime import decode_layout

    texts, results = prompt_texts(tok, conversations), []
    rows = [(si, d) for si in range(len(samplers)) for d in range(draws)]
    # fp32 sampling: many rows per step, so the layout pays
    with decode_layout(model, "fp32", len(rows)):
        for ci, text in enumerate(tqdm(texts, desc=desc, leave=False)):
            torch.manual_seed(seed * 1_000_003 + ci)
            outs = shared_prompt_generate(
                model, tok, text, [samplers[si] for si, _ in rows], max_new_tokens
            )
            results += [
                {"conv": ci, "sampler": si, "draw": d, "text": t} for (si, d), t in zip(rows, outs)
            ]
    return results


@torch.inference_mode()
def sample_one(
    model, tok, conversation: list[dict], s: Sampler, seed: int, max_new_tokens: int = 40
) -> str:
    """One sample from a conversation with one config and seed (for the reproducibility check)."""
    enc = tok(prompt_texts(tok, [conversation]), return_tensors="pt", add_special_tokens=False).to(
        model.device
    )
    torch.manual_seed(seed)
    gen = model.generate(
        **enc,
        do_sample=True,
        temperature=1.0,
        top_k=None,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        logits_processor=[PerRowSampler([s])],
        pad_token_id=tok.pad_token_id,
    )
    return tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of word n-grams in a text that repeat an earlier one (0 = no repetition)."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 0.0 if not grams else 1 - len(set(grams)) / len(grams)


# ---------------------------------------------------------------- the hesitation monitor


@torch.inference_mode()
def greedy_with_top1(
    model,
    tok,
    conversations: list[list[dict]],
    max_new_tokens: int = 40,
    batch_size: int | None = None,
) -> list[dict]:
    """Greedy outputs with each generated token's top-1 probability
    (generate(output_scores=True))."""
    from helpers.runtime import GEN_ROWS, row_batches

    texts, out = prompt_texts(tok, conversations), []
    for span in tqdm(
        row_batches(len(texts), batch_size or GEN_ROWS), desc="greedy + scores", leave=False
    ):
        enc = tok(
            texts[span.start : span.stop],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        gen = model.generate(
            **enc.to(model.device),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tok.pad_token_id,
        )
        new = gen.sequences[:, enc["input_ids"].shape[1] :]
        top1 = torch.stack([s.float().softmax(-1).max(-1).values for s in gen.scores], 1)
        for row, p in zip(new.tolist(), top1.tolist()):
            keep = [i for i, t in enumerate(row) if t not in (tok.pad_token_id, tok.eos_token_id)]
            ids = [row[i] for i in keep]
            out.append(
                {
                    "ids": ids,
                    "top1": [p[i] for i in keep],
                    "text": tok.decode(ids, skip_special_tokens=True),
                }
            )
    return out


def field_hesitation(tok, sample: dict, threshold: float = 0.5) -> dict[str, dict]:
    """Per JSON field of one output: its value and the lowest top-1 probability among the tokens
    that wrote it."""
    pieces = [
        tok.decode(sample["ids"][: i + 1], skip_special_tokens=True)
        for i in range(len(sample["ids"]))
    ]
    ends = [len(p) for p in pieces]
    text = pieces[-1] if pieces else ""
    fields = {}
    for key, (a, b) in value_spans(text).items():
        toks = [i for i, e in enumerate(ends) if e > a and (i == 0 or ends[i - 1] < max(b, a + 1))]
        low = min((sample["top1"][i] for i in toks), default=1.0)
        fields[key] = {"value": text[a:b], "min_top1": low, "hesitant": low < threshold}
    return fields


def detector_scores(flags: list[bool], wrong: list[bool]) -> dict[str, float]:
    """Precision and recall of 'hesitant' as a detector of 'wrong'."""
    tp = sum(f and w for f, w in zip(flags, wrong))
    return {
        "precision": tp / max(sum(flags), 1),
        "recall": tp / max(sum(wrong), 1),
        "flagged": sum(flags),
        "wrong": sum(wrong),
        "n": len(flags),
        "base_rate": sum(wrong) / max(len(wrong), 1),
    }


# ---------------------------------------------------------------- constrained decoding


def schema_processor(tok, model, json_schema: dict) -> Callable[[], object]:
    """Compile a JSON schema once; return a factory of fresh xgrammar logits processors (one per
    generate call)."""
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size)
    compiled = xgr.GrammarCompiler(info).compile_json_schema(
        json.dumps(json_schema), any_whitespace=False
    )
    return lambda: LogitsProcessor(compiled)
