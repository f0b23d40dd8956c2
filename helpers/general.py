"""Notebook 07's general-capability check: our own lm-eval tasks (data/general), run offline,
cross-checked by our own log-likelihood scorer, and the general prompts mixed into SFT to keep
that capability."""

from __future__ import annotations

import contextlib
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from helpers.runtime import repo_root

MC_TASKS = ("workbook_arithmetic", "workbook_commonsense", "workbook_facts")
GEN_TASK = "workbook_short_answer"
TASKS = MC_TASKS + (GEN_TASK,)
PROMPT = "Question: {question}\nAnswer:"

# Generic requests for the SFT mix: other kinds of work than the general-knowledge check (no
# arithmetic quiz, no trivia), so mixing them in cannot teach that check's answers. Targets are the
# base model's own replies.
MIX_PROMPTS = [
    "Write one friendly sentence to welcome a new colleague.",
    "Give three tips for staying focused while studying.",
    "Describe a sunset in two sentences.",
    "Suggest a name for a small bakery.",
    "Explain what a library card is for, in one sentence.",
    "Write a short thank-you note to a neighbour.",
    "List three things to pack for a day at the beach.",
    "How do you make a cup of tea? Answer in three steps.",
    "Write a haiku about rain.",
    "Give a polite way to decline a meeting invitation.",
    "Summarise why sleep matters, in one sentence.",
    "Suggest two healthy breakfast ideas.",
    "Rewrite this sentence more formally: we gotta fix this asap.",
    "What is a good way to start a presentation?",
    "Give one reason people keep plants at home.",
    "Write a short reminder to water the garden.",
    "Describe the smell of fresh bread.",
    "Give a tip for remembering people's names.",
    "Write an encouraging message for someone starting a new job.",
    "Explain what recycling means to a child.",
    "Suggest a weekend activity for a rainy day.",
    "Write a two-line poem about coffee.",
    "How can someone save water at home? Give two ideas.",
    "Write a one-sentence product description for a notebook.",
]


def load_items(task: str) -> list[dict]:
    """The JSONL items of one of our tasks."""
    name = task.removeprefix("workbook_")
    return [
        json.loads(line)
        for line in (repo_root() / "data" / "general" / f"{name}.jsonl").read_text().splitlines()
    ]


@contextmanager
def _in_repo_root():
    """lm-eval reads data_files relative to the working directory: run it from the repository
    root."""
    old = os.getcwd()
    os.chdir(repo_root())
    try:
        yield
    finally:
        os.chdir(old)


def run_lm_eval(
    model_dir: str,
    adapter: str | Path | None = None,
    tasks: tuple[str, ...] = TASKS,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
) -> dict:
    """lm-eval's HF backend on our tasks, offline; returns each task's score and the per-item MC
    predictions."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    args = f"pretrained={model_dir},dtype=float32" + (f",peft={adapter}" if adapter else "")
    # lm-eval draws several tqdm bars on stderr, which a notebook shows as warning boxes; they are
    # captured here and shown only if the run fails. Its logging and any exception still come
    # through.
    bars = io.StringIO()
    try:
        with _in_repo_root(), contextlib.redirect_stderr(bars):
            res = lm_eval.simple_evaluate(
                model="hf",
                model_args=args,
                tasks=list(tasks),
                batch_size=batch_size,
                device=device,
                limit=limit,
                log_samples=True,
                verbosity="ERROR",
                task_manager=TaskManager(include_path=str(repo_root() / "data" / "general")),
            )
    except Exception:
        print(bars.getvalue()[-2000:])
        raise
    scores, picks = {}, {}
    for task in tasks:
        r = res["results"][task]
        scores[task] = r.get("acc,none", r.get("exact_match,strip"))
        if task in MC_TASKS:
            picks[task] = {
                s["doc"]["id"]: int(max(range(len(s["resps"])), key=lambda i: s["resps"][i][0][0]))
                for s in res["samples"][task]
            }
    return {"scores": scores, "mc_picks": picks}


@torch.inference_mode()
def choice_logliks(model, tok, item: dict) -> list[float]:
    """Sum of log-probabilities of each choice (" " + choice) after the prompt: lm-eval's 'acc'
    score, by hand."""
    context = PROMPT.format(question=item["question"])
    ctx = len(tok(context, add_special_tokens=False)["input_ids"])
    seqs = [tok(context + " " + c, add_special_tokens=False)["input_ids"] for c in item["choices"]]
    width = max(map(len, seqs))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    # right-padded
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=model.device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=model.device)
    logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
    return [
        sum(logp[k, i - 1, s[i]].item() for i in range(ctx, len(s))) for k, s in enumerate(seqs)
    ]


def own_mc_accuracy(
    model, tok, tasks: tuple[str, ...] = MC_TASKS, limit: int | None = None
) -> dict:
    """Our scorer over the MC tasks: accuracy per task, overall, each item's pick and whether it
    was right."""
    picks, correct, per_task = {}, {}, {}
    for task in tasks:
        items = load_items(task)[:limit]
        for it in tqdm(items, desc=task, leave=False):
            ll = choice_logliks(model, tok, it)
            picks[it["id"]] = max(range(len(ll)), key=ll.__getitem__)
            correct[it["id"]] = picks[it["id"]] == it["answer"]
        per_task[task] = sum(correct[it["id"]] for it in items) / len(items)
    n, right = len(correct), sum(correct.values())
    return {
        "per_task": per_task,
        "overall": right / n,
        "right": right,
        "picks": picks,
        "n": n,
        "correct": correct,
    }


def self_distilled_mix(
    model, tok, prompts: list[str] = MIX_PROMPTS, max_new_tokens: int = 48
) -> list[dict]:
    """General prompt/completion rows whose answers are the base model's own greedy replies (no
    system prompt)."""
    from helpers.evaluate import generate

    convs = [[{"role": "user", "content": p}] for p in prompts]
    replies = generate(model, tok, convs, max_new_tokens, desc="general mix")
    return [
        {"prompt": c, "completion": [{"role": "assistant", "content": r}]}
        for c, r in zip(convs, replies)
    ]
