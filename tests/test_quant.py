"""helpers.quant: NF4 levels, round-trip error bounds, double quantisation, agreement with
bitsandbytes."""

from __future__ import annotations

import pytest
import torch

from helpers import quant


def test_nf4_levels_shape_and_symmetry():
    lv = quant.nf4_levels()
    assert len(lv) == 16 and lv[0] == -1 and lv[-1] == 1 and (lv == 0).sum() == 1
    assert (lv > 0).sum() == 8 and (lv < 0).sum() == 7
    assert torch.all(lv[1:] > lv[:-1])


def test_nf4_levels_equal_bitsandbytes():
    F = pytest.importorskip("bitsandbytes.functional")
    assert (quant.nf4_levels() - F.get_4bit_type("nf4", device="cpu").float()).abs().max() < 1e-6


@pytest.mark.parametrize(
    "levels, bound",
    [(quant.nf4_levels(), 0.10), (quant.int4_levels(), 0.125), (quant.fp4_levels(), 0.115)],
)
def test_roundtrip_error_bounds_on_gaussian_weights(levels, bound):
    torch.manual_seed(0)
    w = torch.randn(256, 512) * 0.02
    err = quant.error(w, quant.dequantise(quant.quantise(w, levels, 64)))
    assert err["rel_error"] < bound


def test_nf4_beats_uniform_int4_on_normal_weights():
    torch.manual_seed(0)
    w = torch.randn(512, 512)
    e = {
        n: quant.error(w, quant.dequantise(quant.quantise(w, lv)))["rmse"]
        for n, lv in {"nf4": quant.nf4_levels(), "int4": quant.int4_levels()}.items()
    }
    assert e["nf4"] < e["int4"]


def test_double_quant_bits_and_small_extra_error():
    torch.manual_seed(0)
    w = torch.randn(300, 700)  # not a multiple of the block: padding path
    plain, dq = (
        quant.quantise(w, quant.nf4_levels()),
        quant.quantise(w, quant.nf4_levels(), double_quant=True),
    )
    assert plain.bits_per_param == 4.5 and dq.bits_per_param == pytest.approx(
        4 + (8 + 32 / 256) / 64
    )
    assert plain.bits_per_param - dq.bits_per_param == pytest.approx(0.373, abs=0.001)
    assert quant.dequantise(dq).shape == w.shape
    a = quant.error(w, quant.dequantise(plain))["rel_error"]
    b = quant.error(w, quant.dequantise(dq))["rel_error"]
    assert b < a * 1.01


def test_matches_bitsandbytes_roundtrip():
    F = pytest.importorskip("bitsandbytes.functional")
    torch.manual_seed(0)
    w = torch.randn(128, 256) * 0.05
    packed, state = F.quantize_4bit(w, blocksize=64, quant_type="nf4")
    ours = quant.dequantise(quant.quantise(w, quant.nf4_levels(), 64))
    assert (ours - F.dequantize_4bit(packed, state)).abs().max() < 1e-5
