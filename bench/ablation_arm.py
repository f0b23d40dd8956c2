"""One short ablation arm of notebook 04's section 8, two ways, in one run on the same rows.

    python bench/ablation_arm.py                 # 1-step arms (CI's ABL_STEPS), 3 rounds
    python bench/ablation_arm.py --steps 5 --rounds 2

"reload" is how section 8 ran each arm before 2026-12-04: TRL tokenizes the training set again
and the saved adapter is merged into a freshly loaded base. "reuse" is how it runs now: the set
as TRL tokenized it the first time (train.build_trainer's cache) and the trained model folded in
where it sits (train.merge(trained=...)). The two are alternated so that drift on a shared
machine hits both; the script prints seconds per arm for each part, the ratio, and whether the
two ways wrote the same merged weights and the same answers (expected: yes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from helpers import data, evaluate, models, runtime, train


def arm(base_dir: str, rows: list[dict], steps: int, out: Path, reuse: bool, env) -> dict:
    """Train one arm and answer 2 held-out tickets; seconds per part, the weights and answers."""
    times, t0 = {}, time.perf_counter()

    def tick(part: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        times[part] = now - t0
        t0 = now

    if not reuse:
        train._PREPARED.clear()
    recipe = train.load_recipe(steps=steps, seed=0)
    model, tok = train.load_for_training(base_dir, recipe, env.device, env.dtype)
    tick("load")
    ds = train.to_dataset(train.training_rows(rows, recipe), recipe.system_prompt)
    trainer = train.build_trainer(model, tok, ds, None, recipe, out, env.device, dtype=env.dtype)
    tick("trainer")
    runtime.seed_everything(0)
    train.run(trainer)
    trainer.model.save_pretrained(out)
    tick("train")
    merged, mtok = train.merge(base_dir, out, trained=trainer.model if reuse else None)
    tick("merge")
    tickets = data.load_split("eval", 2)
    convs = [
        [
            {"role": "system", "content": recipe.system_prompt},
            {"role": "user", "content": data.ticket(r)},
        ]
        for r in tickets
    ]
    answers = evaluate.generate(merged, mtok, convs, desc="arm")
    tick("score")
    weight = merged.model.layers[0].self_attn.q_proj.weight.detach().clone()
    return {"times": times, "weight": weight, "answers": answers}


def main() -> None:
    """Alternate the two ways for --rounds rounds and print the per-part means and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    env = runtime.setup(0)
    print(runtime.env_line(env))
    base_dir = models.resolve("smollm2-135m")
    rows = data.load_split("train")
    runs: dict[str, list[dict]] = {"reload": [], "reuse": []}
    with tempfile.TemporaryDirectory() as tmp:
        arm(base_dir, rows, args.steps, Path(tmp) / "warm", True, env)  # imports, first load
        for k in range(args.rounds):
            for way in ("reload", "reuse"):
                runs[way].append(
                    arm(base_dir, rows, args.steps, Path(tmp) / f"{way}{k}", way == "reuse", env)
                )
    mean = {
        way: {p: sum(r["times"][p] for r in rs) / len(rs) for p in rs[0]["times"]}
        for way, rs in runs.items()
    }
    for way, parts in mean.items():
        print(
            f"{way:>6}: "
            + ", ".join(f"{p} {s:.2f} s" for p, s in parts.items())
            + f" | arm {sum(parts.values()):.2f} s"
        )
    total = {way: sum(parts.values()) for way, parts in mean.items()}
    print(
        f"reuse / reload: {total['reuse'] / total['reload']:.2f} of the time per arm "
        f"({args.steps} training step(s), {args.rounds} rounds, 2 tickets scored)"
    )
    same_w = all(
        torch.equal(a["weight"], b["weight"]) for a, b in zip(runs["reload"], runs["reuse"])
    )
    same_a = all(a["answers"] == b["answers"] for a, b in zip(runs["reload"], runs["reuse"]))
    print(f"same merged weights: {same_w}; same answers: {same_a}")


if __name__ == "__main__":
    main()
