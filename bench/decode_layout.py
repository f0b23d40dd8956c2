"""Batched greedy decoding with and without runtime.decode_layout, in one run, on the same tickets.

    python bench/decode_layout.py               # 48 held-out tickets, batch 16, base + notebook
                                                # 04's adapter if found
    python bench/decode_layout.py --n 16        # quicker
    python bench/decode_layout.py --bf16        # bf16 autocast with and without the weight copies
                                                # (CPUs with bf16 units)

nn.Linear multiplies by the transpose of its stored weight. On the course's CPUs MKL runs that
layout several times slower when the batch is small (16 rows at each decoding step) than a plain
product with a contiguous transposed copy; decode_layout takes that copy for the length of a
generate call (and folds a LoRA adapter into it, as a merge would). This script prints the
kernel-level gain that decides whether the switch is on, then the end-to-end time of
evaluate.generate both ways, alternated so that drift on a shared machine hits both, the ratio, and
how many of the outputs differ (fp32 rounding may flip a near-tie; it should be 0 or a handful).

With --bf16 both sides decode under bf16 autocast; "switched" multiplies by bf16 copies of the
weights taken once per generate call (runtime.BF16_PRECAST) instead of autocast rounding every fp32
weight at every step. The rounding is the same, so no output may differ.
"""

from __future__ import annotations

import argparse
import time

from helpers import align, data, evaluate, models, prompts, runtime


def main() -> None:
    """Time both layouts and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="held-out tickets")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds of plain and switched"
    )
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast, weight copies on and off")
    args = ap.parse_args()
    runtime.set_threads()
    base = models.ensure_smollm2()
    adapter = runtime.find_artifact("adapter/adapter_config.json", "04_qlora_training")
    model, tok = models.load(str(base))
    if adapter:
        model = align.policy(str(base), adapter.parent, trainable=False).eval()
    convs = [prompts.messages(data.ticket(r), "trained") for r in data.load_split("eval", args.n)]
    print(
        f"{runtime.cpu_model()} | {runtime.cpu_label()} | {runtime.set_threads()} threads | "
        f"{'base + notebook 04 adapter' if adapter else 'base model'} | {args.n} tickets, batch "
        f"{args.batch}"
    )
    if args.bf16 and runtime.compute_dtype("cpu")[0] != "bf16":
        raise SystemExit(f"--bf16: {runtime.compute_dtype('cpu')[1]}")
    if not args.bf16:
        gain = runtime.small_batch_layout_gain(rows=args.batch)
        print(
            f"kernel: x @ W' is {gain:.2f}x x @ W.T at {args.batch} rows (switch on at >= "
            f"{runtime.LAYOUT_MIN_GAIN})"
        )
    times: dict[str, list[float]] = {"plain": [], "switched": []}
    outs: dict[str, list[str]] = {}
    evaluate.generate(model, tok, convs[:2], batch_size=2, desc="warm-up")
    for _ in range(args.rounds):
        for name, dtype in (("plain", "fp32"), ("switched", None)):
            if args.bf16:
                dtype, runtime.BF16_PRECAST = "bf16", name == "switched"
            t0 = time.perf_counter()
            outs[name] = evaluate.generate(
                model, tok, convs, batch_size=args.batch, desc=name, dtype=dtype
            )
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    diff = sum(a != b for a, b in zip(outs["plain"], outs["switched"]))
    print(
        f"plain {best['plain']:.1f} s, switched {best['switched']:.1f} s (best of "
        f"{args.rounds}): "
        f"{best['plain'] / best['switched']:.2f}x; outputs that differ: {diff} of {len(convs)}"
    )


if __name__ == "__main__":
    main()
