"""Notebook 05's plumbing: the policies, the DPO and GRPO recipes, triage error kinds, rollouts,
memory and timing."""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from helpers.data import FIELDS
from helpers.evaluate import parse_output

# Notebook 05's shared training settings; the notebook writes each trainer's own knobs out.
MAX_LENGTH = 192  # a reply prompt + the longest (rambling) rejected reply fit (= dpo.yaml's)
RECIPES = Path(__file__).with_name("recipes")


@dataclass(frozen=True)
class DPORecipe:
    """Notebook 05's DPO recipe; its values live in helpers/recipes/dpo.yaml (use load_recipe)."""

    lr: float
    beta: float
    loss_type: tuple[str, ...]
    scheduler: str
    batch: int
    steps: int
    max_length: int


@dataclass(frozen=True)
class GRPORecipe:
    """Notebook 05's GRPO recipe; its values live in helpers/recipes/grpo.yaml (use load_recipe)."""

    lr: float
    beta: float
    loss_type: str
    scheduler: str
    prompts: int
    num_generations: int
    max_completion_length: int
    temperature: float
    reward_weights: tuple[float, ...]
    steps: int


RECIPE_KINDS = {"dpo": DPORecipe, "grpo": GRPORecipe}
# what each annotation accepts from YAML, and how an error message names it
_ACCEPTS = {
    "float": ((int, float), "a number"),
    "int": ((int,), "an integer"),
    "str": ((str,), "a string"),
    "tuple[str, ...]": ((str,), "a list of strings"),
    "tuple[float, ...]": ((int, float), "a list of numbers"),
}


def _field_value(value: object, kind: str, where: str, name: str) -> object:
    """One recipe field checked against its annotation: the value (a list becomes a tuple), or a
    RecipeError naming where and the field."""
    from helpers.train import RecipeError

    types, what = _ACCEPTS[kind]
    many = kind.startswith("tuple")
    items = value if many and isinstance(value, list) else [value]
    ok = (isinstance(value, list) and bool(value)) if many else True
    if not ok or any(isinstance(v, bool) or not isinstance(v, types) for v in items):
        raise RecipeError(f"{where}: field '{name}' must be {what}, got {value!r}")
    return tuple(items) if many else value


def load_recipe(kind: str, path: str | Path | None = None, **changes) -> DPORecipe | GRPORecipe:
    """Notebook 05's 'dpo' or 'grpo' recipe from helpers/recipes/<kind>.yaml with `changes` applied;
    an unknown, missing or mistyped field raises RecipeError naming the file, line and field."""
    import yaml

    from helpers.train import RecipeError

    if kind not in RECIPE_KINDS:
        raise RecipeError(f"unknown recipe kind {kind!r}; known: {', '.join(RECIPE_KINDS)}")
    cls, path = RECIPE_KINDS[kind], Path(path or RECIPES / f"{kind}.yaml")
    text = path.read_text(encoding="utf-8")
    try:
        node, raw = yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping of recipe fields, got {type(raw).__name__}")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    hints = {f.name: f.type for f in fields(cls)}
    out = {}
    for source in (raw, changes):  # the file's fields first, then the changes over them
        for name, value in source.items():
            where = f"{path}:{lines[name]}" if source is raw else f"a change to {path.name}"
            if name not in hints:
                raise RecipeError(f"{where}: unknown field '{name}'; known: {', '.join(hints)}")
            out[name] = _field_value(value, hints[name], where, name)
    missing = [n for n in hints if n not in out]
    if missing:
        raise RecipeError(f"{path}: missing field(s) {', '.join(missing)}")
    return cls(**out)


COLUMNS = {
    "pairs": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "sft": ("prompt", "completion"),
    "grpo": ("prompt", *FIELDS),
}


def policy(base_dir: str, adapter_dir: str | Path, trainable: bool = True):
    """The fp32 base with a saved adapter loaded (notebook 04's triage adapter or notebook 05's
    reply adapter), trainable unless asked."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from helpers.runtime import fast_generate

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    # fast rollouts
    return fast_generate(PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable))


def dataset(rows: list[dict], kind: str = "pairs"):
    """A datasets.Dataset with only the columns a trainer reads: 'pairs' (DPO, IPO, ORPO), 'kto',
    'sft' or 'grpo'."""
    from datasets import Dataset

    return Dataset.from_list([{k: r[k] for k in COLUMNS[kind]} for r in rows])


def series(trainer, key: str) -> list[tuple[int, float]]:
    """One logged metric over training, as (step, value) pairs."""
    return [(h["step"], h[key]) for h in trainer.state.log_history if key in h]


def dpo_gap_for_loss(beta: float, loss: float = 0.1) -> float:
    """The chosen-minus-rejected log-ratio gap (nats) at which the DPO loss -log sigmoid(beta *
    gap) falls to `loss`."""
    p = math.exp(-loss)
    return math.log(p / (1 - p)) / beta


def dpo_loss_readout(beta: float) -> str:
    """The DPO-loss slider's read-out line."""
    return (
        f"beta {beta:.2f}: the loss falls to 0.1 at a log-ratio gap of "
        f"{dpo_gap_for_loss(beta):.1f} nats "
        f"(0.693 at a gap of 0)"
    )


def first_last(points: list[tuple[int, float]], k: int = 3) -> tuple[float, float]:
    """The mean of the first k and of the last k logged values: a trend that a single noisy step
    cannot fake."""
    vals = [v for _, v in points]
    if len(vals) < 2 * k:
        raise ValueError(
            f"need at least {2 * k} logged steps to compare first and last {k}; got {len(vals)}"
        )
    return sum(vals[:k]) / k, sum(vals[-k:]) / k


def error_kind(output: str, label: dict) -> str | None:
    """None when the output is exactly right; else 'invalid JSON' or the wrong fields joined by
    '+'."""
    p = parse_output(output)
    if not p.valid:
        return "invalid JSON"
    wrong = [f for f in FIELDS if p.obj[f] != label[f]]
    return "+".join(wrong) or None


def tensor_bytes(*modules) -> int:
    """Bytes of parameters and buffers held by these modules, each storage counted once."""
    seen, total = set(), 0
    for m in modules:
        if m is None:
            continue
        for t in [*m.parameters(), *m.buffers()]:
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
    return total


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory while a block runs: CUDA allocated on a GPU, else the rise in process RSS
    (sampled every 20 ms)."""

    def __enter__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            try:
                # hand freed memory back, so the rise is this block's own
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except OSError:
                pass
            self.start = self.peak = rss_bytes()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())
        self.rise_gb = (self.peak - self.start) / 1e9
        return False


def quiet_progress(trainer) -> None:
    """Swap the trainer's per-step log printing for one tqdm bar (the logs stay in
    trainer.state.log_history)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StepBar(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.bar = tqdm(total=state.max_steps, desc=type(trainer).__name__, leave=False)

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(1)

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StepBar())


def timed_train(trainer) -> dict:
    """Train (one progress bar, no log spam); report seconds, seconds per step and the peak
    memory rise."""
    quiet_progress(trainer)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    steps = trainer.state.global_step
    return {
        "seconds": seconds,
        "steps": steps,
        "s_per_step": seconds / max(steps, 1),
        "peak_rise_gb": mem.rise_gb,
        "memory_kind": "cuda allocated" if mem.cuda else "process RSS rise",
    }


def reply_adapter(
    base_dir: str,
    tok,
    run_dir: Path,
    device: str,
    dtype: str,
    course_dir: str | Path = "",
    seed: int = 0,
    steps: int = 12,
) -> tuple[Path, str]:
    """Notebook 05's DPO reply adapter, else `steps` of SFT on the good replies trained now;
    prints which."""
    from helpers.preferences import load_data
    from helpers.runtime import find_artifact
    from helpers.train import checkpointing_arg

    found = find_artifact("dpo_adapter/adapter_config.json", "05_dpo_and_siblings", course_dir)
    if found is not None:
        print(f"reply adapter: notebook 05's DPO adapter, {found.parent}")
        return found.parent, "notebook 05 (DPO)"
    print(
        f"notebook 05's reply adapter is missing: training a small one now ({steps} SFT steps on "
        "good replies, about 1.5 min)"
    )
    from trl import SFTConfig, SFTTrainer

    good = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in load_data("pairs")]
    args = SFTConfig(
        output_dir=str(Path(run_dir) / "reply_sft"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,  # half notebook 04's 2e-3: notebook 05's reply stage, tuned at 1e-3
        lr_scheduler_type="constant",
        max_length=MAX_LENGTH,  # the longest reply fits
        bf16=dtype == "bf16",  # bf16 autocast only where the processor has bf16 units
        use_cpu=device == "cpu",
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        **{checkpointing_arg(): False},  # TRL turns it on; at 135M it only costs time
    )
    # a new adapter on the bare base, as notebook 05's reply adapter is
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
        peft_config=LoraConfig(
            r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
        args=args,
        train_dataset=dataset(good, "sft"),
        processing_class=tok,
    )
    timed_train(trainer)
    out = Path(run_dir) / "reply_adapter"
    trainer.model.save_pretrained(out)
    return out, f"made here ({steps} SFT steps)"


class InverseCdfSampler:
    """A logits processor that draws each row's next token from softmax(scores / temperature)
    and keeps a score only on that token, so greedy decoding emits the draw.

    One uniform number a row (torch's global generator) read through the cumulative
    distribution: the same distribution as transformers' sampling, whose torch.multinomial draws
    an exponential number for every entry of the vocabulary: 63-70 ms a decoding step at 64
    rows x 49k tokens on the course's 2-core AMX Xeon, against 6-13 ms here with greedy's argmax
    (LEDGER, "Sampling without torch.multinomial")."""

    def __init__(self, temperature: float = 1.0):
        if not temperature > 0:
            raise ValueError(f"InverseCdfSampler: temperature must be > 0, got {temperature!r}")
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cdf = torch.softmax(scores.float() / self.temperature, dim=-1).cumsum(-1)
        total = cdf[:, -1:]
        # strictly below the total, so the search never runs past the last token
        u = torch.minimum(
            torch.rand(total.shape, device=cdf.device) * total,
            torch.nextafter(total, torch.zeros_like(total)),
        )
        # the first token whose cdf exceeds u: a token of probability 0 is never drawn
        pick = torch.searchsorted(cdf, u, right=True)
        return torch.full_like(scores, float("-inf")).scatter_(1, pick, 0.0)


def sample(
    model,
    tok,
    conversations: list[list[dict]],
    k: int,
    temperature: float = 1.0,
    max_new_tokens: int = 48,
    batch_size: int | None = None,
    seed: int = 0,
    fast: bool = True,
) -> list[list[str]]:
    """k sampled completions per conversation (for pass@k), seeded, left-padded balanced batches
    (runtime.GEN_ROWS); fast=False samples through transformers' torch.multinomial instead of
    InverseCdfSampler (bench/sampling.py compares)."""
    from helpers.runtime import GEN_ROWS, autocast, decode_layout, generation_dtype, row_batches

    torch.manual_seed(seed)
    # bf16 autocast where the hardware has bf16 units (fp32 for a dynamic-int8 model)
    amp = generation_dtype(model)
    convs = [c for c in conversations for _ in range(k)]
    flat: list[str] = []
    batches = row_batches(len(convs), batch_size or GEN_ROWS)
    # greedy over scores that keep only the token InverseCdfSampler drew: sampling
    how = (
        {"do_sample": False, "logits_processor": [InverseCdfSampler(temperature)]}
        if fast
        else {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
    )
    with decode_layout(model, amp, len(batches[0]) if batches else 0):
        for span in tqdm(batches, desc=f"sample k={k}", leave=False):
            texts = [
                tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                for c in convs[span.start : span.stop]
            ]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                model.device
            )
            with torch.inference_mode(), autocast(amp, model.device.type):
                gen = model.generate(
                    **enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, **how
                )
            flat += [
                t.strip()
                for t in tok.batch_decode(
                    gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
                )
            ]
    return [flat[i * k : (i + 1) * k] for i in range(len(conversations))]


# a common serving default for chat; notebook 06 measures what temperature does
REPLY_TEMPERATURE = 0.7


def replies(
    model,
    tok,
    conversations: list[list[dict]],
    seed: int = 0,
    max_new_tokens: int = 72,
    temperature: float = REPLY_TEMPERATURE,
) -> list[str]:
    """One reply per prompt, sampled as a chat assistant is served (temperature 0.7), seeded for
    repeatability."""
    return [
        group[0]
        for group in sample(model, tok, conversations, 1, temperature, max_new_tokens, seed=seed)
    ]


def completion_logps(model, tok, prompt: list[dict], completion: list[dict]) -> float:
    """Summed log-probability of the completion's tokens given the chat prompt (what DPO's
    logps/* report)."""
    head = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(prompt + completion, tokenize=False)
    n_head = len(tok(head, add_special_tokens=False)["input_ids"])
    ids = torch.tensor([tok(full, add_special_tokens=False)["input_ids"]], device=model.device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
    return logp[n_head - 1 :].sum().item()


def pair_logps(model, tok, pairs: list[dict]) -> list[tuple[float, float]]:
    """(log p(chosen), log p(rejected)) for each pair, on a fixed set, so models and steps
    compare like for like."""
    model.eval()
    return [
        (
            completion_logps(model, tok, p["prompt"], p["chosen"]),
            completion_logps(model, tok, p["prompt"], p["rejected"]),
        )
        for p in tqdm(pairs, desc="pair log-probs", leave=False)
    ]


def answer_readout(model, tok, rows: list[dict], system: str) -> dict:
    """log p of each ticket's training answer, token for token, teacher-forced, with the means of
    it and of p: GRPO's hold on the right answer read without sampling noise."""
    from helpers.train import prompt_completion

    model.eval()
    pcs = [prompt_completion(r, system) for r in rows]
    logps = [
        completion_logps(model, tok, pc["prompt"], pc["completion"])
        for pc in tqdm(pcs, desc="answer log-probs", leave=False)
    ]
    return {
        "mean_logp": sum(logps) / len(logps),
        "mean_p": sum(math.exp(x) for x in logps) / len(logps),
        "logps": logps,
    }


def drift(after: list[tuple[float, float]], before: list[tuple[float, float]]) -> dict:
    """How far a policy moved from its reference on fixed pairs: mean change of each side, the
    margin, the mean |change|."""
    n = len(before)
    d_chosen = sum(a[0] - b[0] for a, b in zip(after, before)) / n
    d_rejected = sum(a[1] - b[1] for a, b in zip(after, before)) / n
    moved = sum(abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(after, before)) / (2 * n)
    acc = sum((a[0] - b[0]) > (a[1] - b[1]) for a, b in zip(after, before)) / n
    return {
        "logp_chosen_change": d_chosen,
        "logp_rejected_change": d_rejected,
        "margin_change": d_chosen - d_rejected,
        "mean_abs_change_nats": moved,
        "heldout_pref_accuracy": acc,
    }


# a draw counts for one side when its share of the clean margin kept is this far ahead
KEPT_MARGIN_LEAD = 0.05


def noise_verdict(
    kept_ipo: list[float], kept_dpo: list[float], cost_ipo: list[float], cost_dpo: list[float]
) -> tuple[str, int, int]:
    """'IPO is steadier on noisy preferences', per draw of flipped pairs: (verdict, draws IPO led,
    draws it trailed)."""
    if not len(kept_ipo) == len(kept_dpo) == len(cost_ipo) == len(cost_dpo):
        raise ValueError(
            f"noise_verdict: {len(kept_ipo)}, {len(kept_dpo)}, {len(cost_ipo)} and "
            f"{len(cost_dpo)} values: give one kept share and one cost per draw for both methods"
        )
    n = len(kept_ipo)
    ahead = sum(i > d + KEPT_MARGIN_LEAD for i, d in zip(kept_ipo, kept_dpo))
    behind = sum(d > i + KEPT_MARGIN_LEAD for i, d in zip(kept_ipo, kept_dpo))
    if n < 2:
        return "inconclusive (one draw)", ahead, behind
    if ahead == n and sum(cost_ipo) <= sum(cost_dpo):
        return "confirmed", ahead, behind
    return ("refuted" if behind == n else "inconclusive"), ahead, behind
