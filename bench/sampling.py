"""Sampled decoding (notebook 05's pre-flight and pass@k) as transformers samples, and as
align.sample does by default, in one run, on the same tickets.

    python bench/sampling.py                 # 48 training tickets x 4 samples, base + notebook
                                             # 04's adapter if found
    python bench/sampling.py --n 16 --k 2    # quicker
    python bench/sampling.py --course runs/<run>   # the adapter of that course run

"transformers": generate(do_sample=True), whose torch.multinomial draws an exponential number for
every vocabulary entry of every row at every step. "fast": align.InverseCdfSampler (one uniform
number a row, read through the cumulative distribution). Both decode the same model the same way;
they draw different random streams, so their samples differ, and both should be about as often
right (pass@1 below, against the gold labels).
The script prints the machine, the matmul peaks, one sampling step's kernel cost both ways, then
the end-to-end times (arms alternated, best of --rounds) and their ratio.
"""

from __future__ import annotations

import argparse
import time
import timeit

import torch

from helpers import align, data, models, prompts, runtime


def kernel_ms(rows: int, vocab: int, reps: int = 10) -> tuple[float, float]:
    """Milliseconds per call: torch.multinomial on softmax(scores), and InverseCdfSampler."""
    scores = torch.randn(rows, vocab)
    sampler = align.InverseCdfSampler()

    def best(f) -> float:
        f()
        return 1e3 * min(timeit.repeat(f, number=1, repeat=reps))

    multinomial = best(lambda: torch.multinomial(torch.softmax(scores, -1), 1))
    return multinomial, best(lambda: sampler(None, scores).argmax(-1))


def main() -> None:
    """Time both ways of sampling and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="training tickets (the pre-flight's)")
    ap.add_argument("--k", type=int, default=4, help="samples per ticket")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of both arms")
    ap.add_argument("--course", default="", help="a course run folder to take the adapter from")
    args = ap.parse_args()
    runtime.set_threads()
    base = models.ensure_smollm2()
    adapter = runtime.find_artifact("adapter/adapter_config.json", "04_qlora_training", args.course)
    model, tok = models.load(str(base))
    if adapter:
        model = align.policy(str(base), adapter.parent, trainable=False).eval()
    rows = data.load_split("train", args.n, "--n")
    convs = [prompts.messages(data.ticket(r), "trained") for r in rows]
    dtype = runtime.generation_dtype(model)
    print(
        f"{runtime.cpu_model()} | {runtime.cpu_label()} | {runtime.set_threads()} threads | "
        f"{dtype} | matmul 1024²: {runtime.matmul_gflops(1024):.0f} GFLOP/s fp32, "
        f"{runtime.matmul_gflops(1024, 'bfloat16'):.0f} bf16 | "
        f"{'base + notebook 04 adapter' if adapter else 'base model'} | {args.n} tickets x "
        f"{args.k} samples"
    )
    rows_per_batch = len(runtime.row_batches(args.n * args.k)[0])
    slow, fast = kernel_ms(rows_per_batch, model.config.vocab_size)
    print(
        f"one sampling step, {rows_per_batch} rows x {model.config.vocab_size} tokens: "
        f"torch.multinomial {slow:.1f} ms, InverseCdfSampler {fast:.1f} ms ({slow / fast:.0f}x)"
    )
    times: dict[str, list[float]] = {"transformers": [], "fast": []}
    right: dict[str, float] = {}
    align.sample(model, tok, convs[:2], 1, max_new_tokens=4)  # warm-up
    for _ in range(args.rounds):
        for name in times:
            t0 = time.perf_counter()
            groups = align.sample(model, tok, convs, args.k, fast=name == "fast")
            times[name].append(time.perf_counter() - t0)
            right[name] = sum(
                align.error_kind(s, data.gold(r)) is None for g, r in zip(groups, rows) for s in g
            ) / (args.n * args.k)
    best = {k: min(v) for k, v in times.items()}
    print(
        f"transformers {best['transformers']:.1f} s (pass@1 {right['transformers']:.1%}), fast "
        f"{best['fast']:.1f} s (pass@1 {right['fast']:.1%}), best of {args.rounds}: "
        f"{best['transformers'] / best['fast']:.2f}x"
    )


if __name__ == "__main__":
    main()
