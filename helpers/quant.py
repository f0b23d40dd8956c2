"""Notebook 04: 4-bit quantisation from scratch (NF4, uniform int4, FP4), blockwise absmax and
double quantisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.stats import norm


def nf4_levels() -> torch.Tensor:
    """The 16 NormalFloat-4 levels: normal quantiles, 8 positive and 7 negative plus an exact
    zero, scaled to [-1, 1]."""
    # keeps the extreme quantiles finite (~0.9677)
    offset = (1 - 1 / (2 * 15) + 1 - 1 / (2 * 16)) / 2
    pos = norm.ppf(torch.linspace(offset, 0.5, 9).numpy()[:-1])
    neg = -norm.ppf(torch.linspace(offset, 0.5, 8).numpy()[:-1])
    levels = torch.tensor(sorted([*pos, 0.0, *neg]), dtype=torch.float32)
    return levels / levels.abs().max()


def int4_levels() -> torch.Tensor:
    """Uniform symmetric int4 levels (-7..7)/7: 15 evenly spaced values."""
    return torch.arange(-7, 8, dtype=torch.float32) / 7


def fp4_levels() -> torch.Tensor:
    """FP4 (E2M1) magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6} with sign, scaled to [-1, 1]."""
    mags = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=torch.float32)
    return torch.unique(torch.cat([-mags, mags])) / 6


@dataclass
class Quantised:
    """4-bit codes plus one absmax scale per block (optionally themselves quantised to 8 bits)."""

    codes: torch.Tensor  # uint8 indices into the level table, one per weight
    absmax: torch.Tensor  # fp32 per block, or the dequantised double-quantised values
    levels: torch.Tensor
    shape: torch.Size
    block: int
    bits_per_param: float


def quantise(
    w: torch.Tensor,
    levels: torch.Tensor,
    block: int = 64,
    double_quant: bool = False,
    dq_block: int = 256,
) -> Quantised:
    """Blockwise absmax quantisation: scale each block of `block` weights to [-1, 1], snap to the
    nearest level."""
    flat = w.detach().float().flatten()
    pad = (-len(flat)) % block
    blocks = torch.cat([flat, flat.new_zeros(pad)]).view(-1, block)
    absmax = blocks.abs().amax(dim=1).clamp_min(1e-12)
    codes = (
        (blocks / absmax[:, None]).unsqueeze(-1).sub(levels).abs().argmin(dim=-1).to(torch.uint8)
    )
    bits = 4 + 32 / block
    if double_quant:
        absmax, extra_bits = double_quantise(absmax, dq_block)
        bits = 4 + extra_bits / block
    return Quantised(codes, absmax, levels, w.shape, block, bits)


def double_quantise(absmax: torch.Tensor, dq_block: int = 256) -> tuple[torch.Tensor, float]:
    """Quantise the fp32 block scales to 8 bits (mean-centred, blockwise absmax); return them and
    bits per block."""
    mean = absmax.mean()
    centred = absmax - mean
    pad = (-len(centred)) % dq_block
    groups = torch.cat([centred, centred.new_zeros(pad)]).view(-1, dq_block)
    scale = groups.abs().amax(dim=1).clamp_min(1e-12) / 127
    q = torch.round(groups / scale[:, None]).clamp(-127, 127)
    restored = (q * scale[:, None]).flatten()[: len(absmax)] + mean
    return restored, 8 + 32 / dq_block


def dequantise(q: Quantised) -> torch.Tensor:
    """Back to fp32 weights of the original shape."""
    vals = q.levels[q.codes.long()] * q.absmax[:, None]
    return vals.flatten()[: q.shape.numel()].view(q.shape)


def error(w: torch.Tensor, w_hat: torch.Tensor) -> dict[str, float]:
    """Reconstruction error: RMSE, and the relative Frobenius error ||w - w_hat|| / ||w||."""
    d = w.float() - w_hat.float()
    return {"rmse": float(d.pow(2).mean().sqrt()), "rel_error": float(d.norm() / w.float().norm())}
