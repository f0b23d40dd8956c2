"""helpers.lora: the from-scratch layer, counting, rank energy, alpha scaling, memory arithmetic."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers import lora


def test_lora_starts_as_a_no_op_and_merges_exactly():
    torch.manual_seed(0)
    base = torch.nn.Linear(32, 48, bias=True)
    layer = lora.LoRALinear(base, r=4, alpha=8)
    x = torch.randn(5, 32)
    assert torch.equal(layer(x), base(x))  # B = 0 at init
    torch.nn.init.normal_(layer.B, std=0.1)
    assert (layer(x) - base(x)).abs().max() > 1e-3
    # bounds from this machine's own fp32 rounding of the layer (against float64), never a fixed
    # 1e-5
    floor = lora.rounding_floor(layer, x)
    assert 0 < floor < 1e-5 * layer(x).abs().max()
    assert (layer.merged()(x) - layer(x)).abs().max() <= 4 * floor
    assert (
        layer.scaling == 2.0
        and lora.LoRALinear(torch.nn.Linear(8, 8), 4, 8, rslora=True).scaling == 4.0
    )


def test_matches_peft_on_a_linear():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(16, 16, bias=False))
    pm = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, target_modules=["0"]))
    lay = pm.base_model.model[0]
    torch.nn.init.normal_(lay.lora_B["default"].weight, std=0.05)
    ours = lora.LoRALinear(torch.nn.Linear(16, 16, bias=False), 4, 8)
    ours.base.weight.data = lay.base_layer.weight.data.clone()
    ours.A.data, ours.B.data = (
        lay.lora_A["default"].weight.data.clone(),
        lay.lora_B["default"].weight.data.clone(),
    )
    x = torch.randn(3, 16)
    assert (pm(x) - ours(x)).abs().max() <= 4 * lora.rounding_floor(ours, x)


def test_seed_figure_and_target_ratios():
    assert lora.lora_params(4096, 4096, 16) == 131_072
    assert 131_072 / 4096**2 == pytest.approx(0.0078125)
    ratio = lora.count_lora(lora.LLAMA_8B, 16, lora.ATTN + lora.MLP) / lora.count_lora(
        lora.LLAMA_8B, 16, lora.ATTN
    )
    assert ratio == pytest.approx(81920 / 26624)


def test_count_matches_peft_on_the_real_model(model_and_tok):
    import copy

    from peft import LoraConfig, get_peft_model

    model, _ = model_and_tok
    arch = lora.arch_from_config("smol", model.config, sum(p.numel() for p in model.parameters()))
    pm = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=8, lora_alpha=8, target_modules=list(lora.ATTN))
    )
    assert pm.get_nb_trainable_parameters()[0] == lora.count_lora(arch, 8, lora.ATTN)


def test_low_rank_matrix_energy():
    torch.manual_seed(0)
    low = torch.randn(64, 3) @ torch.randn(3, 80)
    e = lora.energy_captured(low, [1, 3, 8])
    assert e[3]["energy"] == pytest.approx(1.0, abs=1e-9) and e[3]["rel_error"] < 1e-6
    assert e[1]["energy"] < 1.0


def test_update_norm_scaling_laws():
    fixed = [lora.update_norm(r, 16, False) for r in (4, 64)]
    rs = [lora.update_norm(r, 16, True) for r in (4, 64)]
    assert fixed[1] < fixed[0] / 2  # alpha fixed: bigger r, smaller step
    assert 0.7 < rs[1] / rs[0] < 1.4  # rsLoRA: roughly constant


def test_memory_headlines():
    q70 = lora.memory_gb(lora.LLAMA_70B, "qlora", "paged_adamw8bit")
    assert lora.LLAMA_70B.params * 0.5 / 1e9 == pytest.approx(35.3, abs=0.1)
    assert 35 < q70["weights"] < 38 and q70["total"] < 48
    m7 = {m: lora.memory_gb(lora.MISTRAL_7B, m, "adamw32")["total"] for m in ("full", "lora")}
    assert m7["full"] > 100 and 14 < m7["lora"] < 18
    assert lora.memory_gb(lora.MISTRAL_7B, "qlora", "paged_adamw8bit")["total"] < 7
    no_ckpt = lora.memory_gb(lora.MISTRAL_7B, "lora", grad_ckpt=False)["activations"]
    assert no_ckpt > 5 * lora.memory_gb(lora.MISTRAL_7B, "lora", grad_ckpt=True)["activations"]


def test_notebook_03_layer_cell_agrees_with_the_tested_module():
    """Notebook 03 defines LoRALinear in an editable cell (tag `lora-layer`); it must compute
    what helpers.lora does."""
    import math

    import nbformat
    from torch import nn

    from helpers import runtime

    nb = nbformat.read(runtime.repo_root() / "notebooks" / "03_lora_math.ipynb", as_version=4)
    (src,) = [c.source for c in nb.cells if "lora-layer" in c.metadata.get("tags", [])]
    ns = {"math": math, "torch": torch, "nn": nn}
    exec(compile(src, "03_lora_math.ipynb:lora-layer", "exec"), ns)
    x = torch.randn(3, 24)
    for bias, rslora in ((False, False), (True, True)):
        base = nn.Linear(24, 20, bias=bias)
        torch.manual_seed(1)
        mine = ns["LoRALinear"](copy.deepcopy(base), 4, 8, rslora=rslora)
        torch.manual_seed(1)
        tested = lora.LoRALinear(copy.deepcopy(base), 4, 8, rslora=rslora)
        assert (
            torch.equal(mine.A, tested.A)
            and torch.equal(mine.B, tested.B)
            and mine.scaling == tested.scaling
        )
        nn.init.normal_(mine.B, std=0.1)
        tested.B.data = mine.B.data.clone()
        assert torch.equal(mine(x), tested(x)) and torch.equal(mine.merged()(x), tested.merged()(x))
        trainable = [
            [n for n, p in m.named_parameters() if p.requires_grad] for m in (mine, tested)
        ]
        assert trainable[0] == trainable[1] and "base.weight" not in trainable[0], trainable
