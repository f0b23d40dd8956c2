"""Serving throughput in one run: a naive one-request-at-a-time loop, batched generate with left
padding, and the guarded `transformers serve` under 1 and 4 concurrent clients, with and without
continuous batching.

    python bench/serving.py                          # 32 held-out tickets, greedy, 48 new tokens
    python bench/serving.py --n 16 --json out.json   # quicker; also write the table as JSON
                                                     # (notebook 08 plots it)
    python bench/serving.py --server-batching off    # skip the continuous-batching server
                                                     # (CI's notebook 08)

Every arm answers the same tickets with the same merged model at T=0. For each it prints generated
tokens/s (padding excluded, up to each answer's end token), p50 and p95 request latency, and
tokens/s as a multiple of the naive loop. A batched request waits for its whole batch, so its
latency is the batch's. Seconds drift on a shared machine; the ratios, taken minutes apart in one
run, are what to read. Target: batched >= 4x naive.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from helpers import data, deploy, models, prompts, runtime, serve_client

TARGET_BATCHED_X = 4.0


def model_dir(arg: str) -> tuple[str, str]:
    """The model to serve and where it came from: --model, else notebook 04's merged model, else
    the base."""
    if arg:
        return arg, "--model"
    hit = runtime.find_artifact("merged/config.json", "04_qlora_training")
    if hit is not None:
        return str(hit.parent), "notebook 04's merged model"
    return models.resolve(
        models.OFFLINE_PRESET
    ), "the base model (no merged notebook-04 model found)"


# the server arms: transformers serve without and with continuous batching
SERVER_BATCHING = ("off", "continuous")


def run(
    model: str,
    n: int,
    max_new_tokens: int,
    batch: int,
    log_dir: Path,
    server_batching: tuple[str, ...] = SERVER_BATCHING,
) -> dict[str, dict]:
    """All arms on the first n held-out tickets; name -> summary row."""
    convs = [prompts.messages(data.ticket(r), "trained") for r in data.load_split("eval", n)]
    mdl, tok = models.load(model)
    deploy.run_generate(mdl, tok, convs[:2], max_new_tokens, 2, desc="warm-up")
    naive = deploy.run_generate(mdl, tok, convs, max_new_tokens, 1, desc="naive loop")
    rows = {
        "naive loop (batch 1)": deploy.summarise(naive, naive),
        f"batched generate (batch {batch})": deploy.summarise(
            deploy.run_generate(mdl, tok, convs, max_new_tokens, batch, desc="batched"), naive
        ),
    }
    del mdl
    for cb in [mode == "continuous" for mode in server_batching]:
        with serve_client.running(
            model, log_dir, served_name="bench", continuous_batching=cb
        ) as srv:
            # warm-up
            serve_client.server_load(srv.base_url, srv.model, convs[:2], 1, max_new_tokens)
            for clients in (1, 4) if not cb else (4,):
                tag = f"server, {clients} client{'s' if clients > 1 else ''}" + (
                    ", continuous batching" if cb else ""
                )
                rows[tag] = deploy.summarise(
                    serve_client.server_load(
                        srv.base_url, srv.model, convs, clients, max_new_tokens
                    ),
                    naive,
                )
    return rows


def table(rows: dict[str, dict]) -> str:
    """The rows as aligned text."""
    lines = [f"{'arm':<48}{'tokens/s':>10}{'p50 s':>8}{'p95 s':>8}{'x naive':>9}"]
    lines += [
        f"{k:<48}{r['tokens_per_s']:>10.1f}{r['p50_s']:>8.2f}{r['p95_s']:>8.2f}{r['x_naive']:>9.2f}"
        for k, r in rows.items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the arms, print the table and the target line; exit 0 (a benchmark reports, it does
    not fail)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=32, help="held-out tickets (requests) per arm")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--model", default="", help="a merged model folder (default: notebook 04's, else the base)"
    )
    ap.add_argument("--json", default="", help="also write {model, rows, ...} here")
    ap.add_argument(
        "--server-batching",
        default=",".join(SERVER_BATCHING),
        help="comma-separated server arms to run: off (one server, 1 and 4 clients), "
        "continuous (4 clients)",
    )
    args = ap.parse_args(argv)
    modes = tuple(m for m in args.server_batching.split(",") if m)
    if not set(modes) <= set(SERVER_BATCHING):
        print(
            f"serving.py: --server-batching {args.server_batching!r}: choose from "
            f"{', '.join(SERVER_BATCHING)}",
            file=sys.stderr,
        )
        return 2
    rt = runtime.setup(0)
    model, source = model_dir(args.model)
    print(runtime.env_line(rt))
    print(
        f"model: {source} ({model}); {args.n} requests per arm, greedy, <= {args.max_new_tokens} "
        "new tokens"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(model, args.n, args.max_new_tokens, args.batch, Path(tmp), modes)
    print(table(rows))
    batched = rows[f"batched generate (batch {args.batch})"]["x_naive"]
    print(
        f"batched vs naive: {batched:.2f}x (target >= {TARGET_BATCHED_X:g}x: "
        f"{'met' if batched >= TARGET_BATCHED_X else 'MISSED'})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "model": model,
                    "model_source": source,
                    "n": args.n,
                    "batch": args.batch,
                    "max_new_tokens": args.max_new_tokens,
                    "rows": rows,
                    "target_batched_x": TARGET_BATCHED_X,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
