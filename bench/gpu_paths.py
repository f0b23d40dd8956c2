"""Exercise the course's CUDA paths and time them in one run: LoRA (16-bit base) vs QLoRA (NF4 base)
SFT, and DPO.

    python bench/gpu_paths.py --model ~/.cache/finetuning-workbook/models/smollm2-135m --steps 30
    python bench/gpu_paths.py --random-init CONFIG_DIR ...   # same architecture, random weights
                                                             # (speed only)

Prints one JSON object: versions, the GPU, seconds per step, tokens/s and peak CUDA memory per arm,
the DPO/SFT cost ratio, and whether our hand-built NF4 matches bitsandbytes' CUDA kernel. It needs
CUDA; on a CPU it says so and exits 2. Accuracy is not measured here (notebook 04 does that): with
--random-init only speed means anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def sync(reset: bool = False) -> None:
    """Wait for the GPU (and reset its peak-memory counter) so that wall times are the GPU's;
    no-op on CPU."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        if reset:
            torch.cuda.reset_peak_memory_stats()


def free() -> None:
    """Release cached GPU memory between arms."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def random_model_dir(config_dir: Path, out: Path, seed: int = 0) -> Path:
    """Save a randomly initialised model of config_dir's architecture (with its tokenizer) to
    out."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        AutoConfig.from_pretrained(config_dir), dtype=torch.float32
    )
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(out)
    return out


def nf4_matches_bnb(model_dir: Path, device: str) -> dict:
    """Our NF4 round trip against bitsandbytes' on `device` and on the CPU: max difference and
    share of weights that differ."""
    from bitsandbytes import functional as F
    from transformers import AutoModelForCausalLM

    from helpers import quant

    w = (
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        .model.layers[0]
        .mlp.down_proj.weight.data
    )
    ours = quant.dequantise(quant.quantise(w, quant.nf4_levels(), 64))
    out = {}
    for where in dict.fromkeys([device, "cpu"]):
        packed, state = F.quantize_4bit(w.to(where), blocksize=64, quant_type="nf4")
        theirs = F.dequantize_4bit(packed, state).float().cpu()
        diff = (ours - theirs).abs()
        out[where] = {
            "max_diff": diff.max().item(),
            "share_differing": (diff > 1e-5).float().mean().item(),
        }
    return out


def sft_arm(model_dir: str, rows: list[dict], steps: int, four_bit: bool, device: str) -> dict:
    """Train the course recipe for `steps` steps with a 16-bit or NF4 base; time it."""
    from helpers import train

    recipe = train.load_recipe(steps=steps, load_in_4bit=four_bit)
    model, tok = train.load_for_training(model_dir, recipe, device)
    trainer = train.build_trainer(
        model,
        tok,
        train.to_dataset(rows, recipe.system_prompt),
        None,
        recipe,
        Path("/tmp/gpu_paths") / ("qlora" if four_bit else "lora"),
        device,
    )
    kinds = sorted(
        {type(m).__name__ for m in trainer.model.modules() if "Linear" in type(m).__name__}
    )
    stats = train.run(trainer)
    del trainer, model
    free()
    return {
        "s_per_step": stats["seconds"] / stats["steps"],
        "tokens_per_s": stats["tokens_per_s"],
        "peak_gb": stats["peak_memory_gb"],
        "linear_kinds": kinds,
        "optim": "adamw_8bit" if device == "cuda" else "adamw_torch",
        "loss_first_last": [stats["train_loss"][0][1], stats["train_loss"][-1][1]],
    }


def dpo_arm(model_dir: str, steps: int, batch: int, device: str) -> dict:
    """DPO with a LoRA adapter (reference = adapter disabled) on the reply pairs; time it against
    SFT on the chosen side."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from helpers import preferences

    pairs = preferences.load_data("pairs")
    tok = AutoTokenizer.from_pretrained(model_dir)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    out = {}
    for name in ("sft_on_chosen", "dpo"):
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.bfloat16 if device == "cuda" else torch.float32
        ).to(device)
        common = dict(
            output_dir=f"/tmp/gpu_paths/{name}",
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=5e-5,
            bf16=device == "cuda",
            use_cpu=device == "cpu",
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            max_length=192,
        )
        if name == "dpo":
            ds = Dataset.from_list(
                [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]
            )
            trainer = DPOTrainer(
                model=model,
                args=DPOConfig(beta=0.1, **common),
                train_dataset=ds,
                processing_class=tok,
                peft_config=lora,
            )
        else:
            ds = Dataset.from_list(
                [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
            )
            trainer = SFTTrainer(
                model=model,
                args=SFTConfig(**common),
                train_dataset=ds,
                processing_class=tok,
                peft_config=lora,
            )
        sync(reset=True)
        t0 = time.perf_counter()
        trainer.train()
        sync()
        out[name] = {
            "s_per_step": (time.perf_counter() - t0) / steps,
            "peak_gb": torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None,
        }
        del trainer, model
        free()
    out["dpo_over_sft"] = out["dpo"]["s_per_step"] / out["sft_on_chosen"]["s_per_step"]
    return out


def main() -> int:
    """Run every arm and print one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a local HF model dir (real weights)")
    ap.add_argument(
        "--random-init", help="a dir with config.json + tokenizer: random weights, speed only"
    )
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rows", type=int, default=800)
    ap.add_argument(
        "--device", default="cuda", help="cpu: a dry run of the same code (2 steps is plenty)"
    )
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_paths: no CUDA device here; this benchmark only measures the GPU paths",
            file=sys.stderr,
        )
        return 2
    from helpers import data, runtime

    runtime.seed_everything(0)
    model_dir = args.model or str(
        random_model_dir(Path(args.random_init), Path("/tmp/gpu_paths/random-model"))
    )
    rows = data.load_split("train", args.rows)
    report = {
        "env": {p: runtime.version(p) for p in runtime.VERSIONED},
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else "none (cpu dry run)",
        "weights": "real" if args.model else "random (speed only)",
        "steps": args.steps,
        "nf4_vs_bnb": nf4_matches_bnb(Path(model_dir), args.device),
    }
    for name, four_bit in (("lora_16bit", False), ("qlora_nf4", True)):
        report[name] = sft_arm(model_dir, rows, args.steps, four_bit, args.device)
    report["qlora_over_lora_time"] = (
        report["qlora_nf4"]["s_per_step"] / report["lora_16bit"]["s_per_step"]
    )
    report["qlora_over_lora_memory"] = (
        report["qlora_nf4"]["peak_gb"] / report["lora_16bit"]["peak_gb"]
    )
    report["dpo_vs_sft"] = dpo_arm(model_dir, args.steps, 8, args.device)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
