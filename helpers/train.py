"""Notebook 04 and scripts/train_sft.py: one SFT recipe for every backend (PEFT+TRL on CPU/GPU,
Unsloth on CUDA)."""

from __future__ import annotations

import hashlib
import json
import random
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from functools import cache
from pathlib import Path

import torch

from helpers import prompts
from helpers.data import load_split, ticket
from helpers.lora import ALL_LINEAR
from helpers.prompts import RECIPE_PATH
from helpers.runtime import find_artifact


class RecipeError(ValueError):
    """A recipe file or override that does not fit SFTRecipe, named by file and field."""


# compile: auto's shortest run. The cold compile took 33-34 s and saved 0.59 s a step on the AMX
# Xeon (1.22x, eager 3.22 s a step), so it pays after about 58 steps there; on the Zen 5 EPYC it
# saved nothing (3.22 against 3.18 s a step). A 1-step CI arm or a 40-step ablation arm runs eager.
COMPILE_MIN_STEPS = 60


@dataclass
class SFTRecipe:
    """Notebook 04's training recipe; its values live in helpers/recipes/sft.yaml (use
    load_recipe)."""

    system_prompt: str
    rank: int
    alpha: int
    dropout: float
    targets: str | tuple[str, ...]
    lr: float
    scheduler: str
    warmup_steps: int | float
    steps: int
    batch: int
    grad_accum: int
    max_length: int
    sampling: str
    activation_checkpointing: bool
    load_in_4bit: bool | str
    seed: int
    save_steps: tuple[int, ...] = ()
    eval_steps: int = 0
    # scheduler warmup_stable_decay only: the last N steps (int) or share (float) decay to 0
    decay_steps: int | float = 0
    # scheduler cosine_with_min_lr only: the cosine ends at this share of lr, not at 0
    min_lr_rate: float = 0.0
    # torch.compile each decoder layer while training: "auto" means on a CPU in fp32 (compiles())
    compile: bool | str = False
    # clip the gradient's global norm to this before each step (transformers' default is 1.0)
    max_grad_norm: float = 1.0

    def to_dict(self) -> dict:
        """JSON-friendly view for model cards and metrics."""
        d = asdict(self)
        d["targets"] = d["targets"] if isinstance(d["targets"], str) else list(d["targets"])
        d["save_steps"] = list(d["save_steps"])
        return d

    def four_bit(self, device: str) -> bool:
        """Whether to load an NF4 base: 'auto' means on CUDA only."""
        return device == "cuda" if self.load_in_4bit == "auto" else bool(self.load_in_4bit)

    def compiles(self, device: str, dtype: str) -> bool:
        """Whether to compile the decoder layers while training: 'auto' means on a CPU in fp32,
        where compiled steps gave eager's losses (in bf16 they rounded differently and lost 2-3.5
        points of held-out exact match in each of three seeds: LEDGER, "Compiled layers"), and
        only for a run of COMPILE_MIN_STEPS or more, long enough to earn back the compile."""
        auto = device == "cpu" and dtype == "fp32" and self.steps >= COMPILE_MIN_STEPS
        on = auto if self.compile == "auto" else bool(self.compile)
        return on and not self.four_bit(device)


def load_recipe(path: str | Path = RECIPE_PATH, **overrides) -> SFTRecipe:
    """The YAML recipe with overrides applied; unknown or mistyped fields raise RecipeError
    naming them."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    names = {f.name: f for f in fields(SFTRecipe)}
    for where, values in ((str(path), raw), ("override", overrides)):
        for key in values:
            if key not in names:
                raise RecipeError(
                    f"{where}: unknown recipe field '{key}'; known: {', '.join(names)}"
                )
    merged = {**raw, **overrides}
    missing = [n for n, f in names.items() if n not in merged and f.default is MISSING]
    if missing:
        raise RecipeError(f"{path}: missing recipe field(s) {', '.join(missing)}")
    if not isinstance(merged.get("decay_steps", 0), (int, float)) or isinstance(
        merged.get("decay_steps"), bool
    ):
        raise RecipeError(
            f"{path}: field 'decay_steps' must be a step count or a share, got "
            f"{merged['decay_steps']!r}"
        )
    for key in ("rank", "alpha", "steps", "batch", "grad_accum", "max_length", "seed"):
        if not isinstance(merged[key], int) or isinstance(merged[key], bool):
            raise RecipeError(f"{path}: field '{key}' must be an integer, got {merged[key]!r}")
    if merged.get("compile", False) not in (True, False, "auto"):
        where = "override" if "compile" in overrides else path
        raise RecipeError(
            f"{where}: field 'compile' must be true, false or auto, got {merged['compile']!r}"
        )
    if isinstance(merged["targets"], list):
        merged["targets"] = tuple(merged["targets"])
    merged["save_steps"] = tuple(merged.get("save_steps", ()))
    recipe = SFTRecipe(**merged)
    if recipe.scheduler == COSINE_FLOOR and (
        isinstance(recipe.min_lr_rate, bool)
        or not isinstance(recipe.min_lr_rate, (int, float))
        or not 0 < recipe.min_lr_rate < 1
    ):
        where = "override" if "min_lr_rate" in overrides else path
        raise RecipeError(
            f"{where}: field 'min_lr_rate' must be a share of lr above 0 and below 1 with "
            f"scheduler {COSINE_FLOOR}, got {recipe.min_lr_rate!r}"
        )
    norm = recipe.max_grad_norm
    if isinstance(norm, bool) or not isinstance(norm, (int, float)) or not norm > 0:
        where = "override" if "max_grad_norm" in overrides else path
        raise RecipeError(f"{where}: field 'max_grad_norm' must be a number above 0, got {norm!r}")
    if recipe.scheduler == WSD and not 0 < decay_phase(recipe) <= recipe.steps:
        raise RecipeError(
            f"{path}: field 'decay_steps' must give 1..{recipe.steps} steps with "
            f"scheduler {WSD}, "
            f"got {recipe.decay_steps!r}"
        )
    return recipe


WSD = "warmup_stable_decay"
COSINE_FLOOR = "cosine_with_min_lr"


def decay_phase(recipe: SFTRecipe) -> int:
    """The recipe's decay phase in steps: an int as given, a float as a share of all steps."""
    d = recipe.decay_steps
    return round(d * recipe.steps) if isinstance(d, float) else int(d)


def scheduler_kwargs(recipe: SFTRecipe) -> dict:
    """Extra scheduler arguments: warmup-stable-decay's decay length, or the floor a cosine ends
    on."""
    if recipe.scheduler == WSD:
        return {"num_decay_steps": decay_phase(recipe), "decay_type": "linear"}
    if recipe.scheduler == COSINE_FLOOR:
        return {"min_lr_rate": recipe.min_lr_rate}
    return {}


def target_modules(recipe: SFTRecipe) -> list[str]:
    """The projections LoRA wraps, spelled out ('all-linear' becomes helpers.lora.ALL_LINEAR)."""
    return list(ALL_LINEAR) if recipe.targets == "all-linear" else list(recipe.targets)


def lora_config(recipe: SFTRecipe):
    """The PEFT LoraConfig of a recipe (notebook 04 writes the same call out in its own cell)."""
    from peft import LoraConfig

    targets = recipe.targets if isinstance(recipe.targets, str) else list(recipe.targets)
    return LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        lora_dropout=recipe.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def sft_config(recipe: SFTRecipe, out_dir: Path, device: str, dtype: str | None = None):
    """TRL SFTConfig: bf16 autocast where the hardware has bf16 units (runtime.compute_dtype),
    else fp32; 8-bit AdamW on CUDA."""
    from trl import SFTConfig

    from helpers.runtime import compute_dtype

    cpu = device == "cpu"
    dtype = dtype or compute_dtype(device)[0]
    return SFTConfig(
        output_dir=str(out_dir),
        max_steps=recipe.steps,
        per_device_train_batch_size=recipe.batch,
        gradient_accumulation_steps=recipe.grad_accum,
        learning_rate=recipe.lr,
        lr_scheduler_type=recipe.scheduler,
        lr_scheduler_kwargs=scheduler_kwargs(recipe),
        warmup_steps=recipe.warmup_steps,
        max_grad_norm=recipe.max_grad_norm,
        max_length=recipe.max_length,
        train_sampling_strategy=sampler_for(recipe),
        **{checkpointing_arg(): recipe.activation_checkpointing},
        seed=recipe.seed,
        data_seed=recipe.seed,
        logging_steps=1,
        report_to=[],
        use_cpu=cpu,
        bf16=dtype == "bf16",
        optim="adamw_torch" if cpu else "adamw_8bit",
        save_strategy="no",
        eval_strategy="steps" if recipe.eval_steps else "no",
        eval_steps=recipe.eval_steps or None,
        per_device_eval_batch_size=recipe.batch,
        dataloader_num_workers=0,
    )


@cache
def checkpointing_arg() -> str:
    """transformers 5.2x renamed gradient_checkpointing to activation_checkpointing; use the name
    this install has."""
    from transformers import TrainingArguments

    return (
        "activation_checkpointing"
        if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
        else "gradient_checkpointing"
    )


def shared_args() -> tuple[str, ...]:
    """The trainer arguments the recipe, the trainer and the Axolotl export must agree on."""
    return (
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "lr_scheduler_type",
        "lr_scheduler_kwargs",
        "warmup_steps",
        "max_grad_norm",
        "max_length",
        "train_sampling_strategy",
        checkpointing_arg(),
        "seed",
    )


def __getattr__(name: str):
    """train.CHECKPOINTING and train.SHARED_ARGS resolve on first use: importing this module
    stays free of transformers, so a command-line tool reports bad input before the heavy
    imports."""
    if name == "CHECKPOINTING":
        return checkpointing_arg()
    if name == "SHARED_ARGS":
        return shared_args()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def trained_with(trainer) -> dict:
    """The values a trainer really uses, in recipe terms (for metrics and the agreement test)."""
    args = trainer.args
    peft_cfg = getattr(trainer.model, "peft_config", {}).get("default")
    out = {k: getattr(args, k) for k in shared_args()}
    out["lr_scheduler_type"] = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    out["lr_scheduler_kwargs"] = args.lr_scheduler_kwargs or {}  # transformers' default is None
    if peft_cfg is not None:
        out.update(
            r=peft_cfg.r,
            lora_alpha=peft_cfg.lora_alpha,
            lora_dropout=peft_cfg.lora_dropout,
            target_modules=sorted(peft_cfg.target_modules),
        )
    return out


def expected_args(recipe: SFTRecipe) -> dict:
    """What trained_with() must report for a trainer built from this recipe."""
    return {
        "max_steps": recipe.steps,
        "per_device_train_batch_size": recipe.batch,
        "gradient_accumulation_steps": recipe.grad_accum,
        "learning_rate": recipe.lr,
        "lr_scheduler_type": recipe.scheduler,
        "lr_scheduler_kwargs": scheduler_kwargs(recipe),
        "warmup_steps": recipe.warmup_steps,
        "max_grad_norm": recipe.max_grad_norm,
        "max_length": recipe.max_length,
        "train_sampling_strategy": sampler_for(recipe),
        checkpointing_arg(): recipe.activation_checkpointing,
        "seed": recipe.seed,
        "r": recipe.rank,
        "lora_alpha": recipe.alpha,
        "lora_dropout": recipe.dropout,
        "target_modules": sorted(target_modules(recipe)),
    }


def from_axolotl(cfg: dict) -> dict:
    """An Axolotl config read back in trained_with() terms, every field but the sampler
    (Axolotl's nearest to our length buckets is its own group_by_length)."""
    return {
        "max_steps": cfg["max_steps"],
        "per_device_train_batch_size": cfg["micro_batch_size"],
        "gradient_accumulation_steps": cfg["gradient_accumulation_steps"],
        "learning_rate": cfg["learning_rate"],
        "lr_scheduler_type": cfg["lr_scheduler"],
        "lr_scheduler_kwargs": cfg.get("lr_scheduler_kwargs") or {},
        "warmup_steps": cfg["warmup_steps"],
        "max_grad_norm": cfg["max_grad_norm"],
        "max_length": cfg["sequence_len"],
        checkpointing_arg(): cfg["gradient_checkpointing"],
        "seed": cfg["seed"],
        "r": cfg["lora_r"],
        "lora_alpha": cfg["lora_alpha"],
        "lora_dropout": cfg["lora_dropout"],
        "target_modules": sorted(cfg["lora_target_modules"]),
    }


def prompt_completion(rec: dict, system: str) -> dict:
    """A chat record as TRL's conversational prompt/completion pair: loss falls on the completion
    only."""
    return {
        "prompt": [{"role": "system", "content": system}, {"role": "user", "content": ticket(rec)}],
        "completion": [{"role": "assistant", "content": rec["messages"][-1]["content"]}],
    }


def to_dataset(rows: list[dict], system: str):
    """A datasets.Dataset of prompt/completion pairs."""
    from datasets import Dataset

    return Dataset.from_list([prompt_completion(r, system) for r in rows])


def length_buckets(
    rows: list[dict],
    batch: int,
    seed: int,
    window: int = 16,
    key: Callable[[dict], int] | None = None,
) -> list[dict]:
    """Shuffle, sort each window of `window` batches by length (`key`, default the ticket's
    characters), cut into batches, shuffle the batches.

    Each batch then holds tickets of similar length (little padding), while the order of batches
    stays random: no long-to-short curriculum, unlike transformers' group_by_length over a run
    shorter than its megabatch. Read it with train_sampling_strategy="sequential".
    """
    size = key or (lambda r: len(ticket(r)))
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), batch * window):
        chunk = sorted(order[start : start + batch * window], key=lambda i: size(rows[i]))
        batches += [chunk[k : k + batch] for k in range(0, len(chunk), batch)]
    rng.shuffle(batches)
    return [rows[i] for b in batches for i in b]


def training_rows(rows: list[dict], recipe: SFTRecipe) -> list[dict]:
    """The rows in the order the trainer will read them: pre-bucketed when the recipe says
    'length_buckets'."""
    return (
        length_buckets(rows, recipe.batch * recipe.grad_accum, recipe.seed)
        if recipe.sampling == "length_buckets"
        else rows
    )


def sampler_for(recipe: SFTRecipe) -> str:
    """transformers' train_sampling_strategy for a recipe ('length_buckets' rows are already in
    order)."""
    return "sequential" if recipe.sampling == "length_buckets" else recipe.sampling


def load_for_training(model_dir: str, recipe: SFTRecipe, device: str, dtype: str | None = None):
    """(model, tokenizer): NF4 base via bitsandbytes when the recipe says 4-bit here (fp32
    compute on CPU), else full precision; attention as runtime.attention_impl picks for `dtype`
    (the math kernel under grad on a bf16 CPU unless $WORKBOOK_ATTENTION=sdpa)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from helpers.runtime import attention_impl, compute_dtype

    tok = AutoTokenizer.from_pretrained(model_dir)
    compute = torch.float32 if device == "cpu" else torch.bfloat16
    attn = attention_impl(device, dtype or compute_dtype(device)[0])
    kwargs = {"dtype": compute, "attn_implementation": attn}
    four_bit = recipe.four_bit(device)
    if four_bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    return model.to(device) if not four_bit else model, tok


def load_unsloth(model_name: str, recipe: SFTRecipe):
    """CUDA only: Unsloth's FastLanguageModel in 4-bit with the recipe's LoRA (the seeds' fast
    path)."""
    from unsloth import FastLanguageModel

    model, tok = FastLanguageModel.from_pretrained(
        model_name, max_seq_length=recipe.max_length, load_in_4bit=recipe.four_bit("cuda")
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        lora_dropout=recipe.dropout,
        target_modules=target_modules(recipe),
        use_gradient_checkpointing="unsloth",
        random_state=recipe.seed,
    )
    return model, tok


def save_at(steps: tuple[int, ...], out_dir: Path):
    """A TrainerCallback that saves the adapter at chosen steps (checkpoints the eval notebook
    can pick from)."""
    from transformers import TrainerCallback

    class SaveAt(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step in steps:
                model.save_pretrained(Path(out_dir) / f"checkpoint-{state.global_step}")

    return SaveAt()


def keep_adapters_fp32(trainer, device: str) -> None:
    """On CPU, cast the trainable (adapter) weights back to fp32: TRL casts them to bf16 on k-bit
    models."""
    if device == "cpu":
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.data = p.data.float()


def compile_layers(trainer) -> int:
    """torch.compile every decoder layer (regional compilation, dynamic shapes) for the length
    of trainer.train(), and put eager layers back when it ends: generation after training then
    runs the plain model. Returns the number of layers.

    One layer's graph serves all of them, so the first step pays one compile (about 30-60 s on a
    2-core CPU, 15-20 s with inductor's cache warm); fused elementwise ops then made a recipe
    step 1.22x faster in fp32 and 1.35x in bf16 on an AMX Xeon (LEDGER, "Compiled layers").
    """
    from transformers import TrainerCallback

    layers = list(trainer.model.get_base_model().get_decoder().layers)

    class CompiledLayers(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            for layer in layers:
                layer.compile(dynamic=True)

        def on_train_end(self, args, state, control, **kw):
            for layer in layers:
                layer._compiled_call_impl = None  # what nn.Module.compile() set: back to eager

    trainer.add_callback(CompiledLayers())
    return len(layers)


def compact_lm_head_on_cpu() -> bool:
    """Make TRL's fused LM head score only the positions that carry loss on a CPU, as it already
    does on GPUs.

    TRL 1.16 (trl.trainer.utils.add_fused_lm_head, used by SFT, DPO, KTO and GRPO) projects only the
    answer positions through the 49k-word head when Triton is available, and every position
    elsewhere. On a 2-core CPU that was ~3.4 s of a 9.4 s SFT step; with this switch a step took
    ~6.4 s and gave the same losses. Returns False (and changes nothing) where this TRL has no such
    switch.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        return False
    if getattr(original, "compact_on_cpu", False):
        return True

    def use_compact(device) -> bool:
        return torch.device(device).type == "cpu" or original(device)

    use_compact.compact_on_cpu = True
    trl_utils._use_triton = use_compact
    return True


def frozen_bf16_on_cpu() -> bool:
    """Give every trainer created from now on a callback that holds runtime.frozen_bf16_copies for
    the length of train() when it trains under bf16 autocast on a CPU (the frozen base's weights
    rounded to bf16 once, not at every forward; bit for bit the same step). Returns whether this
    machine trains that way: on its CPU (no CUDA), in bf16 (runtime.compute_dtype)."""
    import transformers.trainer as hf_trainer
    from transformers import TrainerCallback

    from helpers.runtime import compute_dtype, frozen_bf16_copies, pick_device

    class FrozenBf16Copies(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.held = None
            if args.bf16 and model is not None and next(model.parameters()).device.type == "cpu":
                self.held = frozen_bf16_copies(model)
                self.held.__enter__()

        def on_train_end(self, args, state, control, **kw):
            if getattr(self, "held", None) is not None:
                self.held.__exit__(None, None, None)
                self.held = None

    if not any(getattr(c, "frozen_bf16", False) for c in hf_trainer.DEFAULT_CALLBACKS):
        FrozenBf16Copies.frozen_bf16 = True
        hf_trainer.DEFAULT_CALLBACKS.append(FrozenBf16Copies)
    return pick_device() == "cpu" and compute_dtype("cpu")[0] == "bf16"


# Training sets as SFTTrainer tokenized them, by content: section 8's arms train on the same rows
# many times, and TRL skips tokenizing a set that already has input_ids.
_PREPARED: dict[str, object] = {}


def prepared_key(train_ds, tok, recipe: SFTRecipe) -> str:
    """A content key for a prompt/completion set as one tokenizer and max_length prepare it."""
    h = hashlib.sha1(json.dumps(train_ds.to_list(), sort_keys=True).encode())
    h.update(f"{tok.name_or_path}|{len(tok)}|{recipe.max_length}".encode())
    return h.hexdigest()


def build_trainer(
    model,
    tok,
    train_ds,
    eval_ds,
    recipe: SFTRecipe,
    out_dir: Path,
    device: str,
    peft: bool = True,
    dtype: str | None = None,
):
    """An SFTTrainer for the recipe (what notebook 04 writes out cell by cell), used by the CLI
    and the ablations."""
    from trl import SFTTrainer

    from helpers.runtime import compute_dtype

    compact_lm_head_on_cpu()
    frozen_bf16_on_cpu()
    key = prepared_key(train_ds, tok, recipe)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(recipe, out_dir, device, dtype),
        train_dataset=_PREPARED.get(key, train_ds),
        eval_dataset=eval_ds,
        processing_class=tok,
        peft_config=lora_config(recipe) if peft else None,
        callbacks=[save_at(tuple(recipe.save_steps), Path(out_dir))] if recipe.save_steps else None,
    )
    keep_adapters_fp32(trainer, device)
    if peft and recipe.compiles(device, dtype or compute_dtype(device)[0]):
        compile_layers(trainer)
    _PREPARED[key] = trainer.train_dataset
    return trainer


def run(trainer) -> dict:
    """Train and report wall time, seconds at each step, tokens/s, peak memory and the loss
    curves."""
    from transformers import TrainerCallback

    clock: dict[int, float] = {}

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            clock[state.global_step] = time.perf_counter() - t0

    trainer.add_callback(StepClock())
    t0 = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    seconds = time.perf_counter() - t0
    hist = trainer.state.log_history
    tokens = max((h.get("num_tokens", 0) for h in hist), default=0)
    peak = (
        torch.cuda.max_memory_allocated() / 1e9
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    )
    took = [clock[s] - clock.get(s - 1, 0.0) for s in sorted(clock)]
    return {
        "seconds": seconds,
        # the first step pays one-time costs (a compile, oneDNN's first shapes): speeds are read
        # from the median of the others, or from the one step there is
        "first_step_seconds": took[0] if took else seconds,
        "steady_s_per_step": statistics.median(took[1:]) if len(took) > 1 else seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "peak_memory_gb": peak,
        "peak_memory_kind": "cuda allocated" if torch.cuda.is_available() else "process RSS",
        "step_seconds": clock,
        "steps": trainer.state.global_step,
        "train_loss": [(h["step"], h["loss"]) for h in hist if "loss" in h],
        "eval_loss": [(h["step"], h["eval_loss"]) for h in hist if "eval_loss" in h],
    }


@dataclass
class TriageAdapter:
    """Notebook 04's adapter as a later notebook finds it, or the small one it trains when 04 has
    not run."""

    path: Path  # the adapter folder (adapter_config.json + weights)
    source: str  # "notebook 04" or "made here (N steps)"
    # notebook 04's run folder (metrics.json, checkpoints/, merged/) when found
    run04: Path | None = None
    stats: dict | None = None  # run()'s numbers when trained here
    system_prompt: str = ""  # the prompt it was trained with, which 'trained' mode now sends


def triage_adapter(
    base_dir: str,
    run_dir: Path,
    device: str,
    course_dir: str | Path = "",
    steps: int = 40,
    eval_rows: list[dict] | None = None,
    **changes,
) -> TriageAdapter:
    """Notebook 04's adapter (this course run first, then any run), else `steps` of the recipe
    trained now; prints which, and makes its trained prompt the one 'trained' mode sends."""
    found = find_artifact("adapter/adapter_config.json", "04_qlora_training", course_dir)
    if found is not None:
        print(f"triage adapter: notebook 04's, {found.parent}")
        saved = prompts.adapter_prompt(found.parent)
        if saved is None:
            print(
                f"  it has no {prompts.PROMPT_FILE} (notebook 04 before 2026-12-05): prompting "
                "with helpers/recipes/sft.yaml's"
            )
        system = prompts.use_trained_prompt(saved)
        print(f"  trained prompt, sent by every 'trained' call from here on: {system!r}")
        return TriageAdapter(found.parent, "notebook 04", found.parent.parent, None, system)
    print(
        f"notebook 04's adapter is missing: training a small one now ({steps} steps, about 3 min "
        "on 2 cores)"
    )
    recipe = load_recipe(steps=steps, **changes)
    model, tok = load_for_training(base_dir, recipe, device)
    evals = to_dataset(eval_rows, recipe.system_prompt) if eval_rows else None
    out = Path(run_dir) / "sft04"
    trainer = build_trainer(
        model,
        tok,
        to_dataset(load_split("train"), recipe.system_prompt),
        evals,
        recipe,
        out,
        device,
    )
    stats = run(trainer)
    trainer.model.save_pretrained(out / "adapter")
    prompts.save_trained_prompt(out / "adapter", recipe.system_prompt)
    print(
        f"triage adapter: made here, {stats['steps']} steps in {stats['seconds']:.0f} s, "
        f"{out / 'adapter'}"
    )
    system = prompts.use_trained_prompt(recipe.system_prompt)
    return TriageAdapter(out / "adapter", f"made here ({steps} steps)", None, stats, system)


def merge(base_dir: str, adapter_dir: Path, out_dir: Path | None = None, trained=None):
    """Load the full-precision base, apply the adapter and fold it in; optionally save the merged
    model. `trained`, the PeftModel that saved adapter_dir, is folded in where it sits when its
    base is fp32 (no reload: the same weights); a 16- or 4-bit base reloads in fp32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from helpers.models import with_adapter
    from helpers.runtime import drop_bf16_copies

    base = trained.get_base_model() if trained is not None else None
    if (
        base is not None
        and base.dtype == torch.float32
        and not getattr(base, "is_loaded_in_4bit", False)
    ):
        drop_bf16_copies(trained)  # an interrupted bf16 run's copies would outlive the merge
        model = trained.merge_and_unload().eval()
    else:
        # fp32 on a GPU too: deploy full precision
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        model = with_adapter(base, adapter_dir, merge=True)
    tok = AutoTokenizer.from_pretrained(base_dir)
    tok.padding_side = "left"
    if out_dir is not None:
        model.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    return model, tok


def running_average(start: int):
    """A TrainerCallback that keeps the running mean of the trainable (adapter) weights over every
    step from `start` on (stochastic weight averaging); `.save(model, dir)` writes that mean as an
    adapter folder."""
    from transformers import TrainerCallback

    class RunningAverage(TrainerCallback):
        def __init__(self) -> None:
            self.mean: dict[str, torch.Tensor] = {}
            self.steps: list[int] = []

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step < start:
                return
            self.steps.append(state.global_step)
            for name, p in model.named_parameters():
                if p.requires_grad:
                    w = p.detach().float()
                    if name in self.mean:
                        self.mean[name].add_(w - self.mean[name], alpha=1 / len(self.steps))
                    else:
                        self.mean[name] = w.clone()

        def save(self, model, out_dir: str | Path) -> Path:
            """Save the mean as `model`'s adapter in out_dir, then put the model's own weights
            back."""
            if not self.steps:
                raise ValueError(
                    f"running_average: training never reached step {start}, so nothing was averaged"
                )
            params = dict(model.named_parameters())
            own = {k: params[k].detach().clone() for k in self.mean}
            with torch.no_grad():
                for k, w in self.mean.items():
                    params[k].copy_(w.to(params[k].dtype))
                model.save_pretrained(str(out_dir))
                for k, w in own.items():
                    params[k].copy_(w)
            return Path(out_dir)

    return RunningAverage()


def model_card(
    base: str, dataset_version: str, recipe: SFTRecipe, metrics: dict, backend: str
) -> str:
    """A short markdown model card for a saved adapter."""
    return "\n".join(
        [
            "# Support-ticket triager (LoRA adapter)",
            "",
            f"- base model: {base}",
            f"- dataset version: {dataset_version}",
            f"- trained with: {backend}",
            f"- system prompt (send it at inference too): `{recipe.system_prompt}`",
            f"- recipe: `{json.dumps(recipe.to_dict())}`",
            f"- held-out metrics: `{json.dumps(metrics)}`",
            "- output: strict JSON per data/ticket_schema.json",
            "",
        ]
    )


def axolotl_config(
    recipe: SFTRecipe,
    base_model: str,
    dataset_path: str,
    device: str = "cuda",
    out_dir: str = "./outputs/triager",
) -> dict:
    """The same recipe as an Axolotl config ('experiment in Unsloth, productionise in Axolotl')."""
    four_bit = recipe.four_bit(device)
    return {
        "base_model": base_model,
        "load_in_4bit": four_bit,
        "adapter": "qlora" if four_bit else "lora",
        "lora_r": recipe.rank,
        "lora_alpha": recipe.alpha,
        "lora_dropout": recipe.dropout,
        "lora_target_modules": target_modules(recipe),
        "datasets": [
            {
                "path": dataset_path,
                "type": "chat_template",
                "field_messages": "messages",
                "roles_to_train": ["assistant"],
            }
        ],
        "chat_template": "tokenizer_default",
        "default_system_message": recipe.system_prompt,
        "sequence_len": recipe.max_length,
        "micro_batch_size": recipe.batch,
        "gradient_accumulation_steps": recipe.grad_accum,
        "max_steps": recipe.steps,
        "learning_rate": recipe.lr,
        "lr_scheduler": recipe.scheduler,
        "lr_scheduler_kwargs": scheduler_kwargs(recipe),
        "warmup_steps": recipe.warmup_steps,
        "max_grad_norm": recipe.max_grad_norm,
        "group_by_length": recipe.sampling != "random",
        "gradient_checkpointing": recipe.activation_checkpointing,
        "optimizer": "adamw_bnb_8bit",
        "bf16": "auto",
        "seed": recipe.seed,
        "output_dir": out_dir,
    }


def axolotl_yaml(
    recipe: SFTRecipe, base_model: str, dataset_path: str, device: str = "cuda"
) -> str:
    """axolotl_config written as YAML with yaml.safe_dump."""
    import yaml

    return yaml.safe_dump(axolotl_config(recipe, base_model, dataset_path, device), sort_keys=False)
