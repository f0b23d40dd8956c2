"""Train the ticket triager from the command line with notebook 04's recipe
(helpers/recipes/sft.yaml).

    python scripts/train_sft.py --train runs/<course>/02_data_curation/curated_train.jsonl \\
        --out runs/my-adapter
    python scripts/train_sft.py ... --set steps=40 --set lr=5e-4    # override recipe fields
    accelerate launch scripts/train_sft.py ...      # several GPUs: the Trainer picks up the setup
    bash scripts/deploy/train_ddp.sh TRAIN OUT 2 ...  # 2 processes (gloo on a CPU); the same
                                                      # global batch at --set batch=4
    python scripts/train_sft.py ... --axolotl-yaml axolotl.yaml  # also write the Axolotl config

Bad input (a malformed JSONL line, an unknown recipe field) prints one line naming the file, line
and field, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from helpers import data, models, prompts, runtime, train


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line arguments; the training values come from the recipe file, changed only with
    --set."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--train", required=True, help="chat JSONL (messages: user, assistant)")
    ap.add_argument(
        "--out", required=True, help="folder for the adapter (and merged/ with --merge)"
    )
    ap.add_argument(
        "--recipe", default=str(train.RECIPE_PATH), help="YAML recipe (default: the course's)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one recipe field, e.g. --set steps=40 (repeatable)",
    )
    ap.add_argument("--model", default=models.OFFLINE_PRESET, help="preset name or local model dir")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N rows (smoke runs)")
    ap.add_argument("--merge", action="store_true", help="also save a merged full-precision copy")
    ap.add_argument("--axolotl-yaml", default="", help="write the equivalent Axolotl config here")
    return ap.parse_args(argv)


def overrides(pairs: list[str]) -> dict:
    """FIELD=VALUE pairs parsed with YAML typing (40 -> int, 5e-4 -> float, true -> bool)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise train.RecipeError(f"--set {pair!r}: expected FIELD=VALUE")
        key, value = pair.split("=", 1)
        parsed = yaml.safe_load(value)
        out[key.strip()] = float(value) if isinstance(parsed, str) and _is_number(value) else parsed
    return out


def _is_number(text: str) -> bool:
    """YAML 1.1 reads '5e-4' as a string; accept it as a float."""
    try:
        float(text)
        return True
    except ValueError:
        return False


def main(argv: list[str]) -> int:
    """Train, save the adapter (and optionally merge); print a JSON summary."""
    a = parse(argv)
    try:
        recipe = train.load_recipe(a.recipe, **overrides(a.set))
        rows, _ = data.read_jsonl(a.train)
    except (train.RecipeError, data.DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rt = runtime.setup(recipe.seed)
    print(runtime.env_line(rt), flush=True)
    rows = rows[: a.limit] if a.limit else rows
    base = models.resolve(a.model)
    if rt.backend == "Unsloth":
        model, tok = train.load_unsloth(base, recipe)
    else:
        model, tok = train.load_for_training(base, recipe, rt.device)
    out = Path(a.out)
    trainer = train.build_trainer(
        model,
        tok,
        train.to_dataset(train.training_rows(rows, recipe), recipe.system_prompt),
        None,
        recipe,
        out / "trainer",
        rt.device,
        peft=rt.backend != "Unsloth",
    )
    used = train.trained_with(trainer)
    stats = train.run(trainer)
    # several processes (torchrun, accelerate): the first one writes
    if not trainer.is_world_process_zero():
        return 0
    trainer.model.save_pretrained(out / "adapter")
    tok.save_pretrained(out / "adapter")
    prompts.save_trained_prompt(out / "adapter", recipe.system_prompt)
    if a.merge:
        train.merge(base, out / "adapter", out / "merged")
    if a.axolotl_yaml:
        hub = models.PRESETS[a.model].hub_id if a.model in models.PRESETS else a.model
        Path(a.axolotl_yaml).write_text(train.axolotl_yaml(recipe, hub, a.train))
    print(
        json.dumps(
            {
                "adapter": str(out / "adapter"),
                "seconds": round(stats["seconds"], 1),
                "final_loss": stats["train_loss"][-1][1] if stats["train_loss"] else None,
                "train_loss": stats["train_loss"],
                "processes": trainer.args.world_size,
                "dtype": rt.dtype,
                "recipe": recipe.to_dict(),
                "trained_with": used,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
