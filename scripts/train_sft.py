"""Train the ticket triager from the command line with the same recipe as notebook 04.

    python scripts/train_sft.py --train runs/<course>/02_data_curation/curated_train.jsonl --steps 150 --out runs/my-adapter
    accelerate launch scripts/train_sft.py ...        # several GPUs: the Trainer picks up the distributed setup
    python scripts/train_sft.py ... --axolotl-yaml axolotl.yaml   # also write the equivalent Axolotl config
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers import data, models, prompts, runtime, train


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line arguments; defaults are the recipe's."""
    d = train.SFTRecipe()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="chat JSONL (messages: user, assistant)")
    ap.add_argument("--out", required=True, help="folder for the adapter (and merged/ with --merge)")
    ap.add_argument("--model", default=models.OFFLINE_PRESET, help="preset name or local model dir")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--rank", type=int, default=d.rank)
    ap.add_argument("--alpha", type=int, default=d.alpha)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N rows (smoke runs)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--load-in-4bit", action="store_true", help="QLoRA: NF4 base via bitsandbytes")
    ap.add_argument("--merge", action="store_true", help="also save a merged full-precision copy")
    ap.add_argument("--axolotl-yaml", default="", help="write the equivalent Axolotl config here")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    """Train, save the adapter (and optionally merge); print a JSON summary."""
    a = parse(argv)
    rt = runtime.setup(a.seed)
    print(runtime.env_line(rt), flush=True)
    rows, _ = data.read_jsonl(a.train)
    rows = rows[: a.limit] if a.limit else rows
    rc = train.SFTRecipe(rank=a.rank, alpha=a.alpha, lr=a.lr, steps=a.steps, batch=a.batch,
                         load_in_4bit=a.load_in_4bit, seed=a.seed)
    base = models.resolve(a.model)
    if rt.backend == "Unsloth":
        model, tok = train.load_unsloth(base, rc)
    else:
        model, tok = train.load_for_training(base, rc, rt.device)
    out = Path(a.out)
    trainer = train.build_trainer(model, tok, train.to_dataset(rows, prompts.train_system_prompt()), None, rc,
                                  out / "trainer", rt.device, peft=rt.backend != "Unsloth")
    stats = train.run(trainer)
    trainer.model.save_pretrained(out / "adapter")
    tok.save_pretrained(out / "adapter")
    if a.merge:
        train.merge(base, out / "adapter", out / "merged")
    if a.axolotl_yaml:
        hub = models.PRESETS[a.model].hub_id if a.model in models.PRESETS else a.model
        Path(a.axolotl_yaml).write_text(train.axolotl_yaml(rc, hub, a.train))
    print(json.dumps({"adapter": str(out / "adapter"), "seconds": round(stats["seconds"], 1),
                      "final_loss": stats["train_loss"][-1][1] if stats["train_loss"] else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
