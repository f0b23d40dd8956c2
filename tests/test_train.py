"""helpers.train and scripts/train_sft.py: recipe, configs, Axolotl YAML, and a real 2-step run that saves and reloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from helpers import data, prompts, train


def test_recipe_to_lora_and_sft_configs(tmp_path):
    rc = train.SFTRecipe(rank=8, alpha=16, targets=("q_proj", "v_proj"), steps=5)
    lc = train.lora_config(rc)
    assert lc.r == 8 and lc.lora_alpha == 16 and set(lc.target_modules) == {"q_proj", "v_proj"}
    sc = train.sft_config(rc, tmp_path, "cpu")
    assert sc.use_cpu and not sc.bf16 and sc.max_steps == 5 and sc.optim == "adamw_torch"


def test_prompt_completion_puts_the_answer_in_the_completion():
    rec = data.load_split("train", 1)[0]
    pc = train.prompt_completion(rec, prompts.train_system_prompt())
    assert [m["role"] for m in pc["prompt"]] == ["system", "user"]
    assert json.loads(pc["completion"][0]["content"]) == data.gold(rec)
    assert all(i in pc["prompt"][0]["content"] for i in data.intents())


def test_axolotl_yaml_is_valid_and_carries_the_recipe():
    cfg = yaml.safe_load(train.axolotl_yaml(train.SFTRecipe(rank=32, alpha=32), "org/model", "data.jsonl"))
    assert cfg["lora_r"] == 32 and cfg["adapter"] == "qlora" and cfg["load_in_4bit"] is True
    assert len(cfg["lora_target_modules"]) == 7 and cfg["datasets"][0]["path"] == "data.jsonl"


def test_model_card_names_base_and_version():
    card = train.model_card("smollm2-135m", "abc123", train.SFTRecipe(), {"exact_match": 0.5}, "CPU · PEFT+TRL")
    assert "abc123" in card and "smollm2-135m" in card and '"exact_match": 0.5' in card


@pytest.mark.notebook
def test_cli_trains_saves_and_the_adapter_reloads(tmp_path, model_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "scripts/train_sft.py", "--train", str(data.data_dir() / "train.jsonl"),
                          "--out", str(tmp_path), "--steps", "2", "--batch", "4", "--limit", "8", "--merge",
                          "--axolotl-yaml", str(tmp_path / "ax.yaml")],
                         capture_output=True, text=True, env=env, timeout=600, cwd=data.data_dir().parent)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["final_loss"] is not None and (tmp_path / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "merged" / "model.safetensors").exists() and (tmp_path / "ax.yaml").exists()
    model, tok = train.merge(str(model_dir), tmp_path / "adapter")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.02)
