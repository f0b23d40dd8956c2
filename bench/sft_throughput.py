"""SFT throughput: TRL's SFTTrainer with its defaults against the course's recipe, in one run.

    python bench/sft_throughput.py              # 256 curated examples, 12 timed steps per arm
    python bench/sft_throughput.py --steps 6    # quicker, noisier

Every arm trains the same LoRA adapter (the recipe's rank, alpha and targets) on the same 256
curated rows, each arm in its own process so that peak RSS is its own. For each arm it prints
examples/s, non-pad tokens/s, the padding share, peak RSS, and model FLOP utilisation (MFU) against
this machine's own matmul peak in the arm's dtype (fp32, or bf16 where the CPU has bf16 units),
measured by this script in the same run. The recipe's arms train as the course does by default:
on a bf16 CPU, SDPA's math kernel wherever gradients flow (runtime.attention_impl); TRL's arm keeps
plain SDPA, TRL's own. Where the recipe trains in bf16 on a CPU, one more arm trains it with plain
SDPA (WORKBOOK_ATTENTION=sdpa), to price that switch, and one more without train.frozen_bf16_on_cpu
(autocast then rounds the frozen base to bf16 at every forward), to price that one. The recipe
compiles its decoder layers in fp32 only (compile: auto); one arm trains fp32 with eager layers
and, where the recipe trains in bf16, one compiles them there, to price that switch both ways (the
warm-up steps pay the compile, and each arm's first step is reported). Then it prints the ratios.
Seconds drift on a shared machine; the ratios, taken minutes apart in one run, are what to read.

Model FLOPs per non-pad token are counted for what LoRA training really computes: a forward (2 FLOPs
per weight) and a backward to the activations (2 more) through every frozen linear layer, the LM
head only on the positions that carry loss (TRL's fused head skips the rest), and the adapter's own
weight gradients. Attention scores are left out (sequences here are ~100 tokens), and so is gradient
checkpointing's recomputation, which is overhead, not model work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from helpers import curation as cu, data, models, prompts, runtime, train

WARMUP_STEPS = 2  # the first steps pay for allocation and caches; they are not timed


def matmul_peak(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of an n x n matmul in `dtype` at the current thread count."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def flops_per_token(model, loss_share: float, lora_params: int) -> float:
    """Model FLOPs per non-pad token of LoRA training (see the module docstring)."""
    head = model.get_output_embeddings().weight.numel()
    linear = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and "lora_" not in n
        and m is not model.get_output_embeddings()
    )
    return 4 * linear + 4 * head * loss_share + 6 * lora_params


def arms(recipe: train.SFTRecipe) -> dict[str, dict]:
    """name -> how the arm differs: TRL defaults (same data, same adapter, plain SDPA), the
    course's recipe in its own dtype (bf16 autocast where the CPU has bf16 units) and attention,
    the recipe forced to fp32 (only where that differs), the label-list prompt, the recipe with
    plain SDPA (only where the attention switch applies)."""
    found = {
        "TRL defaults": {
            "config": "trl",
            "system": recipe.system_prompt,
            "dtype": "fp32",
            "attention": "sdpa",
        },
        "course recipe": {"config": "recipe", "system": recipe.system_prompt, "dtype": "auto"},
        "course recipe, fp32": {
            "config": "recipe",
            "system": recipe.system_prompt,
            "dtype": "fp32",
        },
        "course recipe, label-list prompt": {
            "config": "recipe",
            "system": prompts.label_list_prompt(),
            "dtype": "auto",
        },
    }
    # compile: auto compiles the decoder layers in fp32 only (helpers/recipes/sft.yaml): price it
    found["course recipe, fp32, eager layers"] = {**found["course recipe, fp32"], "compile": False}
    if runtime.compute_dtype("cpu", "auto")[0] == "fp32":
        del found["course recipe, fp32"]  # the recipe already runs in fp32 here
    else:
        # what compiling would buy in bf16, where the recipe keeps eager layers
        found["course recipe, layers compiled"] = {**found["course recipe"], "compile": True}
        # the recipe with plain SDPA, whose flash kernel also runs the backward, against the
        # course's math kernel wherever gradients flow
        found["course recipe, plain SDPA attention"] = {
            "config": "recipe",
            "system": recipe.system_prompt,
            "dtype": "auto",
            "attention": "sdpa",
        }
        # autocast rounding the frozen base at every forward, against once per run
        found["course recipe, frozen weights cast per step"] = {
            **found["course recipe"],
            "frozen_copies": False,
        }
    return found


def rows_256(seed: int = 0) -> list[dict]:
    """The first 256 curated training rows (the curation pipeline runs once, ~30 s)."""
    made = cu.curate(data.data_dir() / "raw_dump.jsonl", seed)
    return [cu.to_chat(r) for r in made.train[:256]]


def run_arm(name: str, steps: int, rows_path: Path, out: Path) -> dict:
    """Train one arm for WARMUP_STEPS + steps and measure it (runs in its own process)."""
    from trl import SFTConfig, SFTTrainer

    rt = runtime.setup(0)
    recipe = train.load_recipe(steps=WARMUP_STEPS + steps)
    spec = arms(recipe)[name]
    rows = data.read_jsonl(rows_path)[0]
    model, tok = train.load_for_training(models.resolve(models.OFFLINE_PRESET), recipe, rt.device)
    ordered = rows if spec["config"] == "trl" else train.training_rows(rows, recipe)
    dataset = train.to_dataset(ordered, spec["system"])
    if spec["config"] == "trl":  # TRL's defaults, plus only what a CPU run must set
        args = SFTConfig(
            output_dir=str(out),
            max_steps=recipe.steps,
            use_cpu=True,
            bf16=False,
            report_to=[],
            save_strategy="no",
            logging_steps=1,
        )
    else:
        args = train.sft_config(recipe, out, rt.device)
    if spec["config"] != "trl":
        # the course's switch: TRL's LM head scores only the answer positions on CPU
        train.compact_lm_head_on_cpu()
        if spec.get("frozen_copies", True):  # in bf16, the frozen base rounded once per run
            train.frozen_bf16_on_cpu()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        peft_config=train.lora_config(recipe),
    )
    train.keep_adapters_fp32(trainer, rt.device)
    # compiled as the course's full run would be: compile: auto skips runs under
    # train.COMPILE_MIN_STEPS, and this arm times only a few steps of one
    course_run = train.load_recipe()
    compiled = spec["config"] != "trl" and spec.get(
        "compile", course_run.compiles(rt.device, rt.dtype)
    )
    if compiled:  # the first (warm-up) step pays the compile
        train.compile_layers(trainer)
    padded = real = 0
    # the same sampler, seed and order as training
    for i, batch in enumerate(trainer.get_train_dataloader()):
        if WARMUP_STEPS <= i < recipe.steps:
            padded += batch["input_ids"].numel()
            real += int(batch["attention_mask"].sum())
        if i + 1 == recipe.steps:
            break
    sample = trainer.data_collator([trainer.train_dataset[i] for i in range(32)])
    loss_share = float((sample["labels"] != -100).sum() / sample["attention_mask"].sum())
    lora_params = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    stats = train.run(trainer)
    seconds = stats["step_seconds"][recipe.steps] - stats["step_seconds"][WARMUP_STEPS]
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
    return {
        "arm": name,
        "examples_per_s": steps * batch / seconds,
        "tokens_per_s": real / seconds,
        "padding_share": 1 - real / padded,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "flops_per_token": flops_per_token(trainer.model.get_base_model(), loss_share, lora_params),
        "seconds": seconds,
        "batch": batch,
        "checkpointing": getattr(args, train.CHECKPOINTING),
        "sampling": str(args.train_sampling_strategy),
        "threads": rt.threads,
        "dtype": "bf16" if getattr(args, "bf16", False) else "fp32",
        "attention": model.config._attn_implementation,
        "compiled": bool(compiled),
        "first_step_s": stats["first_step_seconds"],
    }


def main(argv: list[str]) -> int:
    """Run every arm in a subprocess, then print the table and the ratios."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--steps",
        type=int,
        default=12,
        help="timed steps per arm (after %d warm-up steps)" % WARMUP_STEPS,
    )
    ap.add_argument("--out", default="runs/bench", help="scratch folder")
    # internal: run one arm and print its JSON
    ap.add_argument("--arm", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows_256.jsonl"
    if a.arm:
        print(json.dumps(run_arm(a.arm, a.steps, rows_path, out / "trainer")))
        return 0
    runtime.set_threads()
    data.write_jsonl(rows_path, rows_256())
    peaks = {"fp32": matmul_peak(), "bf16": matmul_peak(dtype=torch.bfloat16)}
    print(
        f"matmul peak here: {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} GFLOP/s bf16 "
        f"({torch.get_num_threads()} threads; {runtime.cpu_label()})",
        flush=True,
    )
    results = []
    for name, spec in arms(train.load_recipe()).items():
        # each arm's dtype and attention through the course's own switches
        env = dict(
            os.environ,
            WORKBOOK_DTYPE=spec["dtype"],
            WORKBOOK_ATTENTION=spec.get("attention", "math-when-training"),
        )
        proc = subprocess.run(
            [sys.executable, __file__, "--arm", name, "--steps", str(a.steps), "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            print(f"arm {name!r} failed: {proc.stderr.strip().splitlines()[-1]}", file=sys.stderr)
            return 1
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        # against its dtype's peak
        res["mfu"] = res["tokens_per_s"] * res["flops_per_token"] / (peaks[res["dtype"]] * 1e9)
        results.append(res)
        print(
            f"{name:36s} {res['examples_per_s']:5.2f} ex/s  {res['tokens_per_s']:6.0f} tok/s  "
            f"padding {res['padding_share']:5.1%}  peak RSS {res['peak_rss_gb']:.2f} GB  MFU "
            f"{res['mfu']:5.1%}  "
            f"({res['dtype']}, batch {res['batch']}, {res['sampling']}, checkpointing "
            f"{res['checkpointing']})",
            flush=True,
        )
    trl, ours = results[0], results[1]
    print(
        f"\ncourse recipe / TRL defaults: {ours['examples_per_s'] / trl['examples_per_s']:.2f}x "
        "examples/s, "
        f"{ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x non-pad tokens/s; course recipe MFU "
        f"{ours['mfu']:.1%} "
        f"of the measured {ours['dtype']} matmul peak"
    )
    by_name = {r["arm"]: r for r in results}
    if "course recipe, fp32" in by_name:
        print(
            f"course recipe in bf16 autocast / in fp32: "
            f"{ours['examples_per_s'] / by_name['course recipe, fp32']['examples_per_s']:.2f}x "
            "examples/s"
        )
    if "course recipe, plain SDPA attention" in by_name:
        plain = by_name["course recipe, plain SDPA attention"]["examples_per_s"]
        print(
            f"course recipe ({ours['attention']}) / plain SDPA attention: "
            f"{ours['examples_per_s'] / plain:.2f}x examples/s"
        )
    if "course recipe, frozen weights cast per step" in by_name:
        per_step = by_name["course recipe, frozen weights cast per step"]["examples_per_s"]
        print(
            f"course recipe (frozen base rounded once) / rounded at every forward: "
            f"{ours['examples_per_s'] / per_step:.2f}x examples/s"
        )
    fp32 = by_name.get("course recipe, fp32", ours)
    pairs = [(fp32, by_name["course recipe, fp32, eager layers"])]
    if "course recipe, layers compiled" in by_name:
        pairs.append((by_name["course recipe, layers compiled"], ours))
    for compiled, eager in pairs:
        print(
            f"compiled / eager layers in {eager['dtype']}: "
            f"{compiled['examples_per_s'] / eager['examples_per_s']:.2f}x examples/s "
            f"(first step {compiled['first_step_s']:.0f} s compiling, "
            f"{eager['first_step_s']:.1f} s eager)"
        )
    label_list = by_name["course recipe, label-list prompt"]["examples_per_s"]
    print(
        f"one-line prompt / label-list prompt (same recipe): "
        f"{ours['examples_per_s'] / label_list:.2f}x examples/s"
    )
    (out / "sft_throughput.json").write_text(
        json.dumps(
            {"matmul_peak_gflops": peaks, "cpu": runtime.cpu_label(), "arms": results}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
