"""Where one SFT step of the course's recipe spends its time, profiled op by op.

    python bench/sft_step_profile.py              # 2 warm-up steps, then 3 profiled ones
    python bench/sft_step_profile.py --steps 5    # more profiled steps, steadier shares

It trains the recipe (helpers/recipes/sft.yaml: LoRA on SmolLM2-135M-Instruct, batch 8, in the
dtype the course trains in here: bf16 autocast where the CPU has bf16 units, else fp32) on training
tickets, profiles the steps with torch.profiler and sorts every op's own time into the parts
issue 18 asks about: the frozen layers' matmuls, the LM head, LoRA's rank-r matmuls, attention,
dtype casts, the optimizer, the loss, Python and data loading outside any op, and everything else
(elementwise ops, norms, views). It prints
each part's share of the op time and the wall time of the profiled steps. Shares, not seconds, are
what to compare between machines: the profiler adds overhead of its own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

MATMULS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::matmul", "aten::linear")
# the LM head runs in vocabulary chunks (TRL's loss, the course's compact head): a matmul with a
# dimension this large is the head's; the body's are 576 and 1536 wide
HEAD_DIM = 8192
CASTS = ("aten::to", "aten::_to_copy", "aten::copy_")


def category(name: str, shapes: list, vocab: int, rank: int) -> str:
    """The part of a training step an op belongs to, from its name and its inputs' shapes."""
    n = name.lower()
    dims = {d for s in shapes if isinstance(s, (list, tuple)) for d in s}
    if name.startswith("ProfilerStep"):
        return "outside any op (Python, data loading)"
    if "scaled_dot_product" in n or "attention" in n:
        return "attention"
    if name in MATMULS or "mkldnn_matmul" in n:
        if vocab in dims or max(dims, default=0) >= HEAD_DIM:
            return "LM head matmuls"
        if rank in dims:
            return f"LoRA matmuls (rank {rank})"
        return "frozen-layer matmuls"
    if "_foreach" in n or "adam" in n or "optimizer" in n:
        return "optimizer"
    if name in CASTS:
        return "dtype casts and copies"
    if any(k in n for k in ("cross_entropy", "nll_loss", "log_softmax", "_softmax")):
        return "loss and softmax"
    return "other ops (elementwise, norms, views)"


def main() -> None:
    """Profile the steps and print each part's share of the op time."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="profiled steps (after 2 warm-up steps)")
    ap.add_argument("--top", type=int, default=0, help="also list the N ops with the most own time")
    args = ap.parse_args()

    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import TrainerCallback

    from helpers import data, models, runtime, train

    warmup = 2
    threads = runtime.set_threads()
    dtype, why = runtime.compute_dtype("cpu")
    recipe = train.load_recipe(steps=warmup + args.steps)
    base = str(models.ensure_smollm2())
    model, tok = train.load_for_training(base, recipe, "cpu")
    rows = train.training_rows(data.load_split("train", 256, "rows"), recipe)
    prof = profile(
        activities=[ProfilerActivity.CPU],
        schedule=schedule(wait=0, warmup=warmup, active=args.steps, repeat=1),
        record_shapes=True,
    )
    clock: dict[str, float] = {}

    class Step(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if state.global_step == warmup:
                clock["start"] = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            prof.step()
            clock["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        trainer = train.build_trainer(
            model,
            tok,
            train.to_dataset(rows, recipe.system_prompt),
            None,
            recipe,
            Path(out),
            "cpu",
            dtype=dtype,
        )
        trainer.add_callback(Step())
        with prof:
            trainer.train()
    vocab = trainer.model.get_output_embeddings().weight.shape[0]
    parts: dict[str, float] = defaultdict(float)
    events = prof.key_averages(group_by_input_shape=True)
    for ev in events:
        parts[category(ev.key, ev.input_shapes, vocab, recipe.rank)] += ev.self_cpu_time_total
    total = sum(parts.values())
    wall = clock["end"] - clock["start"]
    print(
        f"{runtime.cpu_model()} | {runtime.cpu_label()} | {threads} threads | {dtype} ({why}) | "
        f"recipe: rank {recipe.rank}, batch {recipe.batch}, {args.steps} profiled steps"
    )
    print(
        f"wall {wall / args.steps:.2f} s a step with the profiler on, of which ops' own time "
        f"{total / 1e6 / args.steps:.2f} s; op time by part:"
    )
    for name, us in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<40} {us / total:6.1%}  ({us / 1e6 / args.steps:.2f} s a step)")
    for ev in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        part = category(ev.key, ev.input_shapes, vocab, recipe.rank)
        print(f"  {ev.self_cpu_time_total / total:6.1%}  {ev.key:<36} {part:<24} {ev.input_shapes}")


if __name__ == "__main__":
    main()
