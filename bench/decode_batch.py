"""Rows per generate call: batches of 16 against runtime.GEN_ROWS (balanced), in one run, on the same tickets.

    python bench/decode_batch.py              # 50 held-out tickets, notebook 04's adapter if found
    python bench/decode_batch.py --n 96       # two balanced batches of 48

A 135M model decodes small batches far below the CPU's matmul speed, so fewer, larger batches finish sooner
until padding and the attention cache catch up. This script times evaluate.generate both ways, alternated so
that drift on a shared machine hits both, prints the ratio and how many greedy outputs differ (expected 0:
each row's tokens do not depend on its batch beyond fp32 rounding).

Not kept (measured 2026-12-01, same machine): batching DPO's held-out log-probabilities. A forward over a whole
prompt already runs at matrix speed (24 completions: 15 s one at a time, 19 s in one left-padded batch).
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


def main() -> None:
    """Time both batchings and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="held-out tickets")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of each batching")
    args = ap.parse_args()
    runtime.set_threads()
    base = models.ensure_smollm2()
    adapter = runtime.find_artifact("adapter", "04_qlora_training")
    model, tok = (align.policy(base, adapter, trainable=False), models.load(str(base))[1]) if adapter else models.load(str(base))
    tok.padding_side = "left"
    model.eval()
    convs = [prompts.messages(data.ticket(r), "trained") for r in data.load_split("eval")[:args.n]]
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
    print(f"generate, {len(convs)} tickets: batches of 16 {small:.1f} s, batches {spans} {big:.1f} s, "
          f"ratio {small / big:.2f}x, outputs that differ {differ}/{len(convs)}")


if __name__ == "__main__":
    main()
