"""Load test of the guarded server: N concurrent clients for a bounded time, a mix of good and
malformed requests.

    python bench/serve_load.py                        # 4 clients, 60 s, 1 request in 4 good
    python bench/serve_load.py --clients 8 --seconds 30 --good-share 0.5

One server on 127.0.0.1 (with an API key), notebook 04's merged model if one exists, else the base
model. Good requests ask for at most 16 new tokens at T=0; bad ones come from
serve_client.fuzz_requests (seed 0). It prints requests/s, p50 and p95 latency for good and bad
requests, the status codes by kind, and the server's RSS before and after. It fails (exit 1) on any
5xx, any request left unanswered within --timeout, or RSS growth over --max-rss-growth-mb. Loopback
only, bounded in time and count.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from helpers import models, runtime, serve_client


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (from /proc)."""
    import subprocess

    out = subprocess.run(
        ["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)], capture_output=True, text=True
    ).stdout
    return sum(int(x) for x in out.split()) / 1024


def main(argv: list[str]) -> int:
    """Run the load and print the report; non-zero exit on a 5xx, a hang or memory growth."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--good-share", type=float, default=0.25)
    ap.add_argument("--max-requests", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--max-rss-growth-mb", type=float, default=300.0)
    ap.add_argument("--model", default="")
    a = ap.parse_args(argv)
    hit = runtime.find_artifact("merged/config.json", "04_qlora_training")
    model = a.model or (str(hit.parent) if hit else models.resolve(models.OFFLINE_PRESET))
    key = uuid.uuid4().hex
    bad = serve_client.fuzz_requests("load", n=240, seed=0)
    good = json.dumps(
        {
            "messages": [{"role": "user", "content": "Where is ORD-123456? It is late."}],
            "max_tokens": 16,
            "temperature": 0,
        }
    ).encode()
    rng = random.Random(0)
    plan = [
        ("good", good) if rng.random() < a.good_share else bad[i % len(bad)]
        for i in range(a.max_requests)
    ]
    with (
        tempfile.TemporaryDirectory() as logs,
        serve_client.running(model, logs, served_name="load", api_key=key) as srv,
    ):
        url = srv.base_url + "/chat/completions"
        serve_client.raw_post(url, good, api_key=key)  # warm-up
        rss_before = rss_mb(srv.proc.pid)
        deadline = time.perf_counter() + a.seconds
        results: list[tuple[str, object, float]] = []

        def one(item):
            kind, body = item
            if time.perf_counter() > deadline:
                return None
            t0 = time.perf_counter()
            try:
                status = serve_client.raw_post(url, body, timeout=a.timeout, api_key=key)[0]
            # a hang or a dropped connection
            except Exception as e:
                status = type(e).__name__
            return kind, status, time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.clients) as pool:
            results = [r for r in pool.map(one, plan) if r is not None]
        wall = time.perf_counter() - t0
        rss_after = rss_mb(srv.proc.pid)
        alive = srv.proc.poll() is None
    by_kind: dict[str, Counter] = {}
    for kind, status, _ in results:
        by_kind.setdefault(kind, Counter())[status] += 1
    lat = {
        g: sorted(s for k, _, s in results if (k == "good") == (g == "good"))
        for g in ("good", "bad")
    }
    print(
        f"{len(results)} requests in {wall:.1f} s from {a.clients} clients: "
        f"{len(results) / wall:.1f} requests/s "
        f"(model: {model}; {runtime.cpu_label()})"
    )
    for g, xs in lat.items():
        if xs:
            print(
                f"  {g:4s}: {len(xs):4d} requests, p50 {statistics.median(xs) * 1000:.0f} ms, "
                f"p95 {xs[int(0.95 * (len(xs) - 1))] * 1000:.0f} ms"
            )
    for kind, c in sorted(by_kind.items()):
        print(f"  {kind:30s} {dict(c)}")
    print(
        f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after "
        f"({rss_after - rss_before:+.0f} MB); "
        f"alive after: {alive}"
    )
    failures = [
        (k, s)
        for k, s, _ in results
        if not isinstance(s, int) or s >= 500 or (k == "good") != (s == 200)
    ]
    if failures or not alive or rss_after - rss_before > a.max_rss_growth_mb:
        print(
            f"FAILED: {len(failures)} wrong answers {Counter(failures).most_common(5)}, alive "
            f"{alive}, "
            f"RSS growth {rss_after - rss_before:.0f} MB (bound {a.max_rss_growth_mb:.0f})"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
