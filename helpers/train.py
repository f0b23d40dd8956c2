"""Notebook 04 and scripts/train_sft.py: one SFT recipe for every backend (PEFT+TRL on CPU/GPU, Unsloth on CUDA)."""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from helpers.data import ticket


@dataclass
class SFTRecipe:
    """The seeds' LoRA defaults (r=16, alpha=r, all linear layers); lr and schedule are the learner's to tune."""

    rank: int = 16
    alpha: int = 16
    dropout: float = 0.0
    targets: str | tuple[str, ...] = "all-linear"
    lr: float = 2e-4
    scheduler: str = "constant"
    steps: int = 100
    batch: int = 8
    grad_accum: int = 1
    max_length: int = 256
    load_in_4bit: bool = True
    seed: int = 0
    save_steps: tuple[int, ...] = ()
    eval_steps: int = 0

    def to_dict(self) -> dict:
        """JSON-friendly view for model cards and metrics."""
        d = asdict(self)
        d["targets"] = d["targets"] if isinstance(d["targets"], str) else list(d["targets"])
        return d


def lora_config(rc: SFTRecipe):
    """The PEFT LoraConfig of a recipe."""
    from peft import LoraConfig

    targets = rc.targets if isinstance(rc.targets, str) else list(rc.targets)
    return LoraConfig(r=rc.rank, lora_alpha=rc.alpha, lora_dropout=rc.dropout, target_modules=targets,
                      task_type="CAUSAL_LM")


def sft_config(rc: SFTRecipe, out_dir: Path, device: str):
    """TRL SFTConfig: fp32 with use_cpu on CPU (bf16 ran ~15x slower here), bf16 + 8-bit AdamW on CUDA."""
    from trl import SFTConfig

    cpu = device == "cpu"
    return SFTConfig(
        output_dir=str(out_dir), max_steps=rc.steps, per_device_train_batch_size=rc.batch,
        gradient_accumulation_steps=rc.grad_accum, learning_rate=rc.lr, lr_scheduler_type=rc.scheduler,
        logging_steps=1, seed=rc.seed, data_seed=rc.seed, max_length=rc.max_length, report_to=[],
        use_cpu=cpu, bf16=not cpu and torch.cuda.is_bf16_supported(), optim="adamw_torch" if cpu else "adamw_8bit",
        save_strategy="no", eval_strategy="steps" if rc.eval_steps else "no", eval_steps=rc.eval_steps or None,
        per_device_eval_batch_size=rc.batch, dataloader_num_workers=0, disable_tqdm=False)


def prompt_completion(rec: dict, system: str) -> dict:
    """A chat record as TRL's conversational prompt/completion pair: loss falls on the completion only."""
    return {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": ticket(rec)}],
            "completion": [{"role": "assistant", "content": rec["messages"][-1]["content"]}]}


def to_dataset(rows: list[dict], system: str):
    """A datasets.Dataset of prompt/completion pairs."""
    from datasets import Dataset

    return Dataset.from_list([prompt_completion(r, system) for r in rows])


def load_for_training(model_dir: str, rc: SFTRecipe, device: str):
    """(model, tokenizer): NF4 base via bitsandbytes when load_in_4bit (fp32 compute on CPU), else full precision."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    compute = torch.float32 if device == "cpu" else torch.bfloat16
    kwargs = {"dtype": compute}
    if rc.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    return model.to(device) if not rc.load_in_4bit else model, tok


def load_unsloth(model_name: str, rc: SFTRecipe):
    """CUDA only: Unsloth's FastLanguageModel in 4-bit with the recipe's LoRA (the seeds' fast path)."""
    from unsloth import FastLanguageModel

    model, tok = FastLanguageModel.from_pretrained(model_name, max_seq_length=rc.max_length, load_in_4bit=rc.load_in_4bit)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = FastLanguageModel.get_peft_model(model, r=rc.rank, lora_alpha=rc.alpha, lora_dropout=rc.dropout,
                                             target_modules=targets if rc.targets == "all-linear" else list(rc.targets),
                                             use_gradient_checkpointing="unsloth", random_state=rc.seed)
    return model, tok


def save_at(steps: tuple[int, ...], out_dir: Path):
    """A TrainerCallback that saves the adapter at chosen steps (checkpoints the eval notebook can pick from)."""
    from transformers import TrainerCallback

    class SaveAt(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step in steps:
                model.save_pretrained(Path(out_dir) / f"checkpoint-{state.global_step}")

    return SaveAt()


def build_trainer(model, tok, train_ds, eval_ds, rc: SFTRecipe, out_dir: Path, device: str, peft: bool = True):
    """An SFTTrainer for the recipe; on CPU the trainable (adapter) weights are kept in fp32."""
    from trl import SFTTrainer

    trainer = SFTTrainer(model=model, args=sft_config(rc, out_dir, device), train_dataset=train_ds,
                         eval_dataset=eval_ds, processing_class=tok, peft_config=lora_config(rc) if peft else None,
                         callbacks=[save_at(tuple(rc.save_steps), Path(out_dir))] if rc.save_steps else None)
    if device == "cpu":  # TRL casts adapters on k-bit models to bf16, which is ~15x slower on this CPU
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    return trainer


def loss_tokens(trainer, tok, index: int = 0) -> tuple[str, str, float]:
    """Decode one collated example: (full text, the part that carries loss, share of tokens with loss)."""
    batch = trainer.data_collator([trainer.train_dataset[index]])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    mask = labels != -100
    return tok.decode(ids), tok.decode(ids[mask]), float(mask.float().mean())


def run(trainer) -> dict:
    """Train and report wall time, tokens/s, peak memory and the loss curves."""
    t0 = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    seconds = time.perf_counter() - t0
    hist = trainer.state.log_history
    tokens = max((h.get("num_tokens", 0) for h in hist), default=0)
    peak = (torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds if seconds else 0.0,
            "peak_memory_gb": peak, "peak_memory_kind": "cuda allocated" if torch.cuda.is_available() else "process RSS",
            "train_loss": [(h["step"], h["loss"]) for h in hist if "loss" in h],
            "eval_loss": [(h["step"], h["eval_loss"]) for h in hist if "eval_loss" in h]}


def merge(base_dir: str, adapter_dir: Path, out_dir: Path | None = None):
    """Load the full-precision base, apply the adapter and fold it in; optionally save the merged model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().eval()
    tok = AutoTokenizer.from_pretrained(base_dir)
    tok.padding_side = "left"
    if out_dir is not None:
        model.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    return model, tok


def model_card(base: str, dataset_version: str, rc: SFTRecipe, metrics: dict, backend: str) -> str:
    """A short markdown model card for a saved adapter."""
    return "\n".join([
        "# Support-ticket triager (LoRA adapter)", "",
        f"- base model: {base}", f"- dataset version: {dataset_version}", f"- trained with: {backend}",
        f"- recipe: `{json.dumps(rc.to_dict())}`", f"- held-out metrics: `{json.dumps(metrics)}`",
        "- output: strict JSON per data/ticket_schema.json; system prompt as in helpers.prompts.ZERO_SHOT_SYSTEM", ""])


def axolotl_yaml(rc: SFTRecipe, base_model: str, dataset_path: str, out_dir: str = "./outputs/triager") -> str:
    """The same recipe as an Axolotl config ('experiment in Unsloth, productionise in Axolotl')."""
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] \
        if rc.targets == "all-linear" else list(rc.targets)
    lines = [f"base_model: {base_model}", f"load_in_4bit: {str(rc.load_in_4bit).lower()}",
             f"adapter: {'qlora' if rc.load_in_4bit else 'lora'}", f"lora_r: {rc.rank}", f"lora_alpha: {rc.alpha}",
             f"lora_dropout: {rc.dropout}", "lora_target_modules:", *[f"  - {t}" for t in targets],
             "datasets:", f"  - path: {dataset_path}", "    type: chat_template", "    field_messages: messages",
             "    roles_to_train: [assistant]", "chat_template: tokenizer_default", f"sequence_len: {rc.max_length}",
             f"micro_batch_size: {rc.batch}", f"gradient_accumulation_steps: {rc.grad_accum}",
             f"max_steps: {rc.steps}", f"learning_rate: {rc.lr}", f"lr_scheduler: {rc.scheduler}",
             "optimizer: adamw_bnb_8bit", "bf16: auto", "gradient_checkpointing: true", f"seed: {rc.seed}",
             f"output_dir: {out_dir}"]
    return "\n".join(lines) + "\n"
