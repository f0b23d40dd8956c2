"""Rows per generate call: batches of 16 against runtime.GEN_ROWS (balanced), in one run, on the
same tickets.

    python bench/decode_batch.py              # 50 held-out tickets, notebook 04's adapter if found
    python bench/decode_batch.py --n 96       # two balanced batches of 48
    python bench/decode_batch.py --few-shot   # base model, 3-shot prompts: the shared prefix
                                              # computed once vs per row

A 135M model decodes small batches far below the CPU's matmul speed, so fewer, larger batches finish
sooner until padding and the attention cache catch up. This script times evaluate.generate both
ways, alternated so that drift on a shared machine hits both, prints the ratio and how many greedy
outputs differ (expected 0: each row's tokens do not depend on its batch beyond fp32 rounding).

With --few-shot it times the base model on 3-shot prompts, whose examples every row shares:
evaluate.generate computes that shared prefix's key/values once per call
(evaluate.SHARED_PREFIX_MIN) against every row's whole prompt (2026-12-01, AMD EPYC, 2 threads,
fp32: 40 tickets 72.3 -> 36.1 s, 2.0x; 12 under the JSON grammar 23.0 -> 11.6 s; 0 outputs
different).

Not kept (measured 2026-12-01, same machine): batching DPO's held-out log-probabilities. A forward
over a whole prompt already runs at matrix speed (24 completions: 15 s one at a time, 19 s in one
left-padded batch).
"""

from __future__ import annotations

import argparse
import time

from helpers import align, data, evaluate, models, prompts, runtime


def timed(fn) -> tuple[float, object]:
    """Seconds taken by fn() and its result."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def few_shot(n: int, rounds: int) -> None:
    """Time 3-shot generation with the shared prefix computed once against the plain path, same
    tickets."""
    runtime.set_threads()
    model, tok = models.load(str(models.ensure_smollm2()))
    tok.padding_side = "left"
    model.eval()
    shots = prompts.pick_shots(data.load_split("train"), 3)
    convs = [
        prompts.messages(data.ticket(r), "few_shot", shots) for r in data.load_split("eval")[:n]
    ]
    print(runtime.env_line(runtime.setup()), "| base model, 3-shot prompts")
    keep = evaluate.SHARED_PREFIX_MIN
    times, outs = {"plain": [], "shared prefix": []}, {}
    try:
        for _ in range(rounds):
            for arm in times:
                evaluate.SHARED_PREFIX_MIN = 10**9 if arm == "plain" else keep
                sec, outs[arm] = timed(lambda: evaluate.generate(model, tok, convs))
                times[arm].append(sec)
    finally:
        evaluate.SHARED_PREFIX_MIN = keep
    plain, shared = min(times["plain"]), min(times["shared prefix"])
    differ = sum(a != b for a, b in zip(outs["plain"], outs["shared prefix"]))
    print(
        f"3-shot generate, {len(convs)} tickets: plain {plain:.1f} s, shared prefix {shared:.1f} "
        "s, "
        f"ratio {plain / shared:.2f}x, outputs that differ {differ}/{len(convs)}"
    )


def main() -> None:
    """Time both batchings and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="held-out tickets")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of each batching")
    ap.add_argument(
        "--few-shot", action="store_true", help="base model, 3-shot prompts: shared prefix vs none"
    )
    args = ap.parse_args()
    if args.few_shot:
        few_shot(args.n, args.rounds)
        return
    runtime.set_threads()
    base = models.ensure_smollm2()
    adapter = runtime.find_artifact("adapter", "04_qlora_training")
    model, tok = (
        (align.policy(base, adapter, trainable=False), models.load(str(base))[1])
        if adapter
        else models.load(str(base))
    )
    tok.padding_side = "left"
    model.eval()
    convs = [prompts.messages(data.ticket(r), "trained") for r in data.load_split("eval")[: args.n]]
    print(runtime.env_line(runtime.setup()), "|", f"adapter: {adapter or 'none (base model)'}")
    times = {16: [], runtime.GEN_ROWS: []}
    outs = {}
    for _ in range(args.rounds):
        for rows in times:
            sec, outs[rows] = timed(lambda: evaluate.generate(model, tok, convs, batch_size=rows))
            times[rows].append(sec)
    small, big = min(times[16]), min(times[runtime.GEN_ROWS])
    spans = [len(s) for s in runtime.row_batches(len(convs))]
    differ = sum(a != b for a, b in zip(outs[16], outs[runtime.GEN_ROWS]))
    print(
        f"generate, {len(convs)} tickets: batches of 16 {small:.1f} s, batches {spans} {big:.1f} "
        "s, "
        f"ratio {small / big:.2f}x, outputs that differ {differ}/{len(convs)}"
    )


if __name__ == "__main__":
    main()
