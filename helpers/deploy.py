"""Deployment choices, measured in one process: merged vs adapter, multi-LoRA routing, int8 and
NF4 inference, and the throughput loops of bench/serving.py (naive one-at-a-time vs batched
generate)."""

from __future__ import annotations

import copy
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from helpers import models, train


# ---------------------------------------------------------------- artifacts: merged vs adapter


def dir_mb(path: str | Path) -> float:
    """Size of a file or folder on disk, in MB."""
    p = Path(path)
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def load_adapter_model(
    base_dir: str | Path,
    adapter_dir: str | Path | None = None,
    device: str = "cpu",
    merge: bool = False,
):
    """The course's one model loader: base + a LoRA adapter, unmerged (PEFT applies B·A every
    forward) or merged."""
    model = models.load(str(base_dir), device)[0]
    # None: the base alone
    return model if adapter_dir is None else models.with_adapter(model, adapter_dir, merge)


def merge(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """notebook 04's merge into a plain model folder, with do_sample=True so a request's
    temperature is honoured."""
    train.merge(str(base_dir), Path(adapter_dir), Path(out_dir))
    gen_path = Path(out_dir) / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    gen_path.write_text(json.dumps({**gen, "do_sample": True}, indent=2))
    return Path(out_dir)


def logits_gap(model_a, model_b, tok, conversations: list[list[dict]]) -> float:
    """Largest absolute logit difference between two models over every position of the given
    prompts."""
    import torch

    worst = 0.0
    for conv in conversations:
        ids = tok(
            tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True),
            return_tensors="pt",
            add_special_tokens=False,
        )
        with torch.inference_mode():
            worst = max(worst, (model_a(**ids).logits - model_b(**ids).logits).abs().max().item())
    return worst


def merge_gap(
    adapter_model, merged_model, tok, conversations: list[list[dict]]
) -> dict[str, float]:
    """The merged-vs-adapter logit gap in fp32, beside this machine's fp32 rounding floor and the
    gap in fp64.

    floor: how far this very machine's fp32 forward pass lands from the same model run in float64
    (the larger of the two models); the kernels, and so the rounding, differ between processors.
    gap_fp64: the merge's own error with inference rounding taken out (what is left is the rounding
    of the merged weights to fp32). A correct merge has gap_fp64 <= floor; a wrong one (a lost
    adapter, a wrong alpha) is orders of magnitude above it.
    """
    import torch

    models_ = {
        "a32": adapter_model,
        "m32": merged_model,
        "a64": copy.deepcopy(adapter_model).double(),
        "m64": copy.deepcopy(merged_model).double(),
    }
    out = {"gap": 0.0, "floor": 0.0, "gap_fp64": 0.0, "logit_scale": 0.0}
    for conv in conversations:
        ids = tok(
            tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True),
            return_tensors="pt",
            add_special_tokens=False,
        )
        with torch.inference_mode():  # each model's logits once per prompt
            lg = {k: m(**ids).logits.double() for k, m in models_.items()}
        worst = lambda x, y: (lg[x] - lg[y]).abs().max().item()
        out = {
            "gap": max(out["gap"], worst("a32", "m32")),
            "floor": max(out["floor"], worst("a32", "a64"), worst("m32", "m64")),
            "gap_fp64": max(out["gap_fp64"], worst("a64", "m64")),
            "logit_scale": max(out["logit_scale"], lg["m32"].abs().max().item()),
        }
    return out


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """Call fn once; return (result, seconds)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ---------------------------------------------------------------- multi-LoRA in one process


def multi_lora(base_dir: str | Path, adapters: dict[str, str | Path]):
    """One base with several named LoRA adapters loaded (PEFT load_adapter); the first is active."""
    from peft import PeftModel

    names = list(adapters)
    model = PeftModel.from_pretrained(
        models.load(str(base_dir))[0], str(adapters[names[0]]), adapter_name=names[0]
    )
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    return model.eval()


def routed_generate(
    model,
    tok,
    requests: list[tuple[str, list[dict]]],
    max_new_tokens: int = 48,
    batch_size: int = 8,
) -> list[str]:
    """Greedy answers for (adapter name, conversation) requests; each row of a batch uses its own
    adapter."""
    import torch

    out = [""] * len(requests)
    for start in tqdm(range(0, len(requests), batch_size), desc="routed", leave=False):
        chunk = requests[start : start + batch_size]
        prompts = [
            tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for _, c in chunk
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(
                **enc,
                adapter_names=[name for name, _ in chunk],
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        for i, text in enumerate(
            tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        ):
            out[start + i] = text.strip()
    return out


def adapter_mb(model, name: str) -> float:
    """MB of the LoRA tensors that belong to one named adapter."""
    return (
        sum(p.numel() * p.element_size() for n, p in model.named_parameters() if f".{name}." in n)
        / 1e6
    )


# ---------------------------------------------------------------- inference quantisation


def int8_dynamic(model):
    """A copy with every nn.Linear in int8 (torch.ao dynamic: per-channel weights, activations
    per tensor, CPU)."""
    import torch

    # torch 2.13 marks torch.ao.quantization deprecated in favour of torchao's quantize_; it still
    # works, and it is the CPU path the course measures. The two deprecation notices are silenced
    # here only, by their exact text.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore",
            message=r"torch\.quantize_per_tensor, "
            r"torch\.quantize_per_channel",
            category=UserWarning,
        )
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # per-channel weight scales: on notebook 04's model (48 tickets) per-tensor scales kept 31%
        # exact, per-channel 44%
        return quantize_dynamic(
            copy.deepcopy(model).eval(),
            {torch.nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )


def saved_mb(model) -> float:
    """Size of torch.save(state_dict) in MB (works for quantised modules, which save_pretrained
    refuses)."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.pt"
        torch.save(model.state_dict(), path)
        return path.stat().st_size / 1e6


def nf4_adapter_model(base_dir: str | Path, adapter_dir: str | Path):
    """The QLoRA deployment the seeds warn against: an NF4 (bitsandbytes) base with the adapter
    on top."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    base = AutoModelForCausalLM.from_pretrained(
        str(base_dir), quantization_config=q, dtype=torch.float32
    )
    return PeftModel.from_pretrained(base, str(adapter_dir)).eval()


# ---------------------------------------------------------------- throughput (bench/serving.py and
# notebook 08)


def generated_tokens(row, eos_ids: set[int], pad_id: int | None) -> int:
    """Tokens a request really produced: up to and including its first end token, padding
    excluded."""
    n = 0
    for t in row.tolist():
        if t == pad_id and t not in eos_ids:
            continue
        n += 1
        if t in eos_ids:
            break
    return n


def run_generate(
    model,
    tok,
    conversations: list[list[dict]],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generate",
) -> dict:
    """Greedy generation in batches of batch_size (1 = the naive loop); tokens, seconds and
    per-request latency."""
    import torch

    eos = {tok.eos_token_id}
    prompts = [
        tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]
    tokens, latencies, t_all = 0, [], time.perf_counter()
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, leave=False):
        enc = tok(
            prompts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            gen = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
        dt = time.perf_counter() - t0
        tokens += sum(
            generated_tokens(r, eos, tok.pad_token_id) for r in gen[:, enc["input_ids"].shape[1] :]
        )
        # every request of a batch waits for the whole batch
        latencies += [dt] * len(enc["input_ids"])
    return {"tokens": tokens, "seconds": time.perf_counter() - t_all, "latencies": latencies}


def summarise(run: dict, naive: dict | None = None) -> dict:
    """tokens/s, p50/p95 latency, and the ratio of tokens/s against the naive loop."""
    tps = run["tokens"] / run["seconds"]
    p50, p95 = np.percentile(run["latencies"], [50, 95]).tolist()
    row = {
        "tokens_per_s": tps,
        "p50_s": p50,
        "p95_s": p95,
        "requests": len(run["latencies"]),
        "tokens": run["tokens"],
    }
    if naive is not None:
        row["x_naive"] = tps / (naive["tokens"] / naive["seconds"])
    return row


def cost_per_million(tokens_per_s: float, usd_per_hour: float) -> float:
    """USD per million generated tokens for a machine at usd_per_hour kept busy at tokens_per_s."""
    return usd_per_hour / (tokens_per_s * 3600) * 1e6
