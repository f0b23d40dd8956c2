"""Notebook 03: LoRA from scratch, parameter counting, rank/alpha behaviour and a training-memory
calculator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR = ATTN + MLP  # what PEFT's "all-linear" selects on Llama-style models


class LoRALinear(nn.Module):
    """y = W x + (alpha / r) * B A x, with W frozen, A (r x in) random and B (out x r) zero at
    start."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, rslora: bool = False):
        super().__init__()
        self.base, self.r = base, r
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        # zero: the adapted model starts equal to the base
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        base.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the scaled low-rank update."""
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain Linear with W + scaling * B A folded in (what you ship)."""
        out = nn.Linear(
            self.base.in_features, self.base.out_features, bias=self.base.bias is not None
        )
        out.weight.data = self.base.weight.data + self.scaling * (self.B @ self.A)
        if self.base.bias is not None:
            out.bias.data = self.base.bias.data.clone()
        return out


def lora_params(d_in: int, d_out: int, r: int) -> int:
    """Trainable parameters of one LoRA pair: r * (d_in + d_out)."""
    return r * (d_in + d_out)


@dataclass(frozen=True)
class Arch:
    """The shapes that decide LoRA and memory arithmetic for a decoder-only transformer."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    params: float  # total parameters

    @property
    def shapes(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear projection in one layer."""
        kv = self.hidden // self.heads * self.kv_heads
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }


def arch_from_config(name: str, cfg, params: float) -> Arch:
    """An Arch from a transformers config object."""
    return Arch(
        name,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.vocab_size,
        params,
    )


# Published shapes (config.json of each model), for arithmetic only: nothing is downloaded.
MISTRAL_7B = Arch("Mistral-7B", 4096, 14336, 32, 32, 8, 32768, 7.24e9)
LLAMA_8B = Arch("Llama-3.1-8B", 4096, 14336, 32, 32, 8, 128256, 8.03e9)
LLAMA_70B = Arch("Llama-3.1-70B", 8192, 28672, 80, 64, 8, 128256, 70.6e9)
# a test checks it against the model
SMOLLM2_135M = Arch("SmolLM2-135M", 576, 1536, 30, 9, 3, 49152, 134_515_008)
ARCHS = {a.name: a for a in (SMOLLM2_135M, MISTRAL_7B, LLAMA_8B, LLAMA_70B)}
TARGET_SETS = {"all-linear": ALL_LINEAR, "attention": ATTN, "q,v": ("q_proj", "v_proj")}


def count_lora(arch: Arch, r: int, targets: tuple[str, ...]) -> int:
    """Trainable LoRA parameters for a model when the given projections are adapted in every
    layer."""
    return arch.layers * sum(lora_params(*arch.shapes[t], r) for t in targets)


def memory_gb(
    arch: Arch,
    method: str,
    optimizer: str = "adamw32",
    seq: int = 2048,
    batch: int = 1,
    grad_ckpt: bool = True,
    r: int = 16,
    targets: tuple[str, ...] = ALL_LINEAR,
    double_quant: bool = True,
) -> dict[str, float]:
    """Training memory in GB for 'full', 'lora' (bf16 base) or 'qlora' (NF4 base): weights,
    grads, optimizer, activations."""
    n, gb = arch.params, 1e9
    trainable = n if method == "full" else count_lora(arch, r, targets)
    if method == "qlora":
        # absmax constants per parameter
        quant_bits = (8 / 64 + 32 / (64 * 256)) if double_quant else 32 / 64
        weights = n * (0.5 + quant_bits / 8) + trainable * 2
    else:
        weights = n * 2 + (trainable * 2 if method == "lora" else 0)
    grads = trainable * 2
    # fp32 master copy in mixed-precision full fine-tuning
    master = trainable * 4 if method == "full" else 0
    opt_bytes = {"adamw32": 8, "adamw8bit": 2, "paged_adamw8bit": 2, "sgd": 0}[optimizer]
    per_layer_token = arch.hidden * 2 if grad_ckpt else arch.hidden * 34 + 5 * arch.heads * seq
    acts = arch.layers * seq * batch * per_layer_token
    if grad_ckpt:  # one layer is recomputed in full during backward
        acts += seq * batch * (arch.hidden * 34 + 5 * arch.heads * seq)
    parts = {
        "weights": weights / gb,
        "gradients": grads / gb,
        "optimizer": (trainable * opt_bytes + master) / gb,
        "activations": acts / gb,
    }
    parts["total"] = sum(parts.values())
    return parts


def readout(model_name: str, rank: int, alpha: int, targets: str, seq: int) -> dict[str, float]:
    """What the rank/alpha sliders show: trainable count and share, alpha/r, and training GB per
    method."""
    a, tg = ARCHS[model_name], TARGET_SETS[targets]
    n = count_lora(a, rank, tg)
    mem = {
        m: memory_gb(a, m, "adamw32" if m == "lora" else "adamw8bit", seq=seq, r=rank, targets=tg)[
            "total"
        ]
        for m in ("full", "lora", "qlora")
    }
    return {
        "trainable": n,
        "trainable_pct": 100 * n / a.params,
        "scaling": alpha / rank,
        **{f"{k}_gb": round(v, 1) for k, v in mem.items()},
    }


def readout_line(r: dict[str, float]) -> str:
    """The read-out dict as one line of text (the browser test matches it)."""
    return (
        f"trainable {r['trainable']:,} ({r['trainable_pct']:.2f}%) · alpha/r "
        f"{r['scaling']:.2f} · "
        f"full {r['full_gb']:.1f} GB · LoRA {r['lora_gb']:.1f} GB · QLoRA {r['qlora_gb']:.1f} "
        "GB"
    )


def energy_captured(delta: torch.Tensor, ranks: list[int]) -> dict[int, dict[str, float]]:
    """For each r: share of ||dW||_F^2 in the top-r singular values, and the relative error of
    the best rank-r fit."""
    s = torch.linalg.svdvals(delta.double())
    total = float((s**2).sum())
    return {
        r: {
            "energy": float((s[:r] ** 2).sum()) / total,
            "rel_error": math.sqrt(max(0.0, 1 - float((s[:r] ** 2).sum()) / total)),
        }
        for r in ranks
    }


def update_norm(
    r: int, alpha: float, rslora: bool, d: int = 576, seed: int = 0, trials: int = 8
) -> float:
    """Mean ||scaling * B A x|| for entries drawn like trained factors (std 1/sqrt(d)): how alpha
    and r set the step size."""
    g = torch.Generator().manual_seed(seed)
    scaling = alpha / math.sqrt(r) if rslora else alpha / r
    norms = []
    for _ in range(trials):
        a = torch.randn(r, d, generator=g) / math.sqrt(d)
        b = torch.randn(d, r, generator=g) / math.sqrt(d)
        x = torch.randn(d, generator=g)
        norms.append(float((scaling * b @ (a @ x)).norm()))
    return sum(norms) / len(norms)


def rounding_floor(module: torch.nn.Module, x: torch.Tensor) -> float:
    """How far this machine's fp32 forward of `module` on x lands from the same module run in
    float64."""
    import copy

    with torch.no_grad():
        return (module(x) - copy.deepcopy(module).double()(x.double())).abs().max().item()
