"""The client side of notebook 08's endpoint: start the guarded server as a subprocess on a free
port and always stop it, query it with the official `openai` client and notebook 06's presets, and
probe it with bad and fuzzed requests.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from helpers.decoding import PRESETS
from helpers.deploy import timed
from helpers.serve import API_KEY_ENV, MAX_PROMPT_TOKENS, SECRET_ENV, UNSUPPORTED


# ---------------------------------------------------------------- starting, waiting for and
# stopping a server


@dataclass
class Server:
    """A running server subprocess."""

    base_url: str
    model: str
    proc: subprocess.Popen
    log: Path
    started_s: float = 0.0
    command: list[str] = field(default_factory=list)
    api_key: str = ""

    def log_tail(self, n: int = 15) -> str:
        """The last n lines of the server's log."""
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
            if self.log.exists()
            else ""
        )


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(
    model_dir: str | Path,
    port: int,
    engine: str = "guarded",
    served_name: str = "",
    continuous_batching: bool = False,
    max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    lora_modules: dict[str, str | Path] | None = None,
) -> list[str]:
    """The command line for an engine: 'guarded' (ours), 'transformers' (plain `transformers
    serve`) or 'vllm'."""
    model_dir = str(Path(model_dir).resolve()) if Path(model_dir).exists() else str(model_dir)
    if engine == "guarded":
        return [
            sys.executable,
            "-m",
            "helpers.serve",
            model_dir,
            "--port",
            str(port),
            "--served-name",
            served_name or Path(model_dir).name,
            "--max-prompt-tokens",
            str(max_prompt_tokens),
        ] + (["--continuous-batching"] if continuous_batching else [])
    if engine == "transformers":
        cli = Path(sys.executable).with_name("transformers")
        return [str(cli), "serve", model_dir, "--host", "127.0.0.1", "--port", str(port)] + (
            ["--continuous-batching"] if continuous_batching else []
        )
    # CUDA only: the base once, each adapter by name
    if engine == "vllm":
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model_dir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            served_name or Path(model_dir).name,
            "--max-model-len",
            "2048",
        ]
        if lora_modules:
            cmd += ["--enable-lora", "--max-lora-rank", "64", "--lora-modules"] + [
                f"{k}={v}" for k, v in lora_modules.items()
            ]
        return cmd
    raise ValueError(f"unknown engine {engine!r}: use 'guarded', 'transformers' or 'vllm'")


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after grace_s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies (a killed kernel
    leaves no server)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def leftovers(marker: str) -> list[int]:
    """Pids of live processes whose command line contains marker (a run folder): should be none
    after a run."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


@contextmanager
def running(
    model_dir: str | Path,
    log_dir: str | Path,
    *,
    engine: str = "guarded",
    served_name: str = "",
    continuous_batching: bool = False,
    threads: int | None = None,
    timeout_s: float = 180,
    max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    lora_modules: dict[str, str | Path] | None = None,
    api_key: str = "",
) -> Iterator[Server]:
    """Start a server on 127.0.0.1 and a free port, wait for /health, and always stop it on the way
    out.

    With api_key (guarded engine) the server requires it; it travels in the environment, never on
    the command line."""
    port = free_port()
    name = served_name or Path(model_dir).name
    cmd = server_command(
        model_dir, port, engine, name, continuous_batching, max_prompt_tokens, lora_modules
    )
    # the server never sees an API key
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(
        HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"),
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
        **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
    )
    env.pop(API_KEY_ENV, None)
    if api_key:
        env[API_KEY_ENV] = api_key
    log = Path(log_dir) / f"server-{engine}-{port}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent),
            preexec_fn=_die_with_parent,
        )
    cleanup = functools.partial(stop, proc)
    # a kernel that exits mid-notebook still stops it
    atexit.register(cleanup)
    model = cmd[cmd.index("serve") + 1] if engine == "transformers" else name
    srv = Server(f"http://127.0.0.1:{port}/v1", model, proc, log, command=cmd, api_key=api_key)
    try:
        while get(f"http://127.0.0.1:{port}/health")[0] != 200:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {proc.returncode} before it was "
                    f"healthy:\n{srv.log_tail()}"
                )
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(
                    f"the server was not healthy after {timeout_s:.0f} s:\n{srv.log_tail()}"
                )
            time.sleep(0.5)
        srv.started_s = time.perf_counter() - t0
        yield srv
    finally:
        stop(proc)
        atexit.unregister(cleanup)


# ---------------------------------------------------------------- the client side


def server_load(
    base_url: str, model: str, conversations: list[list[dict]], concurrency: int, max_tokens: int
) -> dict:
    """Send every conversation to the server at T=0 from `concurrency` client threads; tokens,
    seconds, latencies."""
    api = client(base_url)

    def one(conv):
        t0 = time.perf_counter()
        r = api.chat.completions.create(
            model=model, messages=conv, max_tokens=max_tokens, **preset_kwargs("strict_json")
        )
        return r.usage.completion_tokens, time.perf_counter() - t0

    t_all = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, conversations))
    return {
        "tokens": sum(t for t, _ in done),
        "seconds": time.perf_counter() - t_all,
        "latencies": [s for _, s in done],
    }


def client(base_url: str, timeout: float = 120.0, api_key: str = ""):
    """The official openai client for a base URL, sending api_key (else $WORKBOOK_SERVE_API_KEY,
    else a placeholder)."""
    from openai import OpenAI

    return OpenAI(
        base_url=base_url,
        api_key=api_key or os.environ.get(API_KEY_ENV, "not-needed"),
        timeout=timeout,
        max_retries=0,
    )


def preset_kwargs(preset: str) -> dict:
    """chat.completions.create keywords for a notebook-06 preset: temperature, plus min_p etc.
    via extra_body."""
    s = PRESETS[preset]
    if s.temperature == 0:
        return {"temperature": 0.0}
    gen = {"do_sample": True, "temperature": s.temperature}
    gen.update(
        {
            k: v
            for k, v, off in (
                ("top_k", s.top_k, 0),
                ("top_p", s.top_p, 1.0),
                ("min_p", s.min_p, 0.0),
                ("repetition_penalty", s.repetition_penalty, 1.0),
            )
            if v != off
        }
    )
    return {"temperature": s.temperature, "extra_body": {"generation_config": json.dumps(gen)}}


def chat(
    api,
    model: str,
    messages: list[dict],
    preset: str = "strict_json",
    max_tokens: int = 64,
    **extra,
):
    """One chat completion with a preset."""
    kwargs = preset_kwargs(preset)
    # max_tokens must ride inside the generation_config the server rebuilds from
    if "extra_body" in kwargs:
        gen = json.loads(kwargs["extra_body"]["generation_config"]) | {"max_new_tokens": max_tokens}
        kwargs["extra_body"] = {"generation_config": json.dumps(gen)}
    return api.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, **kwargs, **extra
    )


def stream_text(api, model: str, messages: list[dict], max_tokens: int = 64) -> dict:
    """Stream one T=0 answer: the joined text, the chunk count, seconds to the first token, and
    the finish reason."""
    t0, first, parts, finish = time.perf_counter(), None, [], None
    for chunk in api.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        stream=True,
        **preset_kwargs("strict_json"),
    ):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta.content
        if delta:
            first = first if first is not None else time.perf_counter() - t0
            parts.append(delta)
        finish = chunk.choices[0].finish_reason or finish
    return {
        "text": "".join(parts),
        "chunks": len(parts),
        "first_token_s": first,
        "finish_reason": finish,
    }


def raw_post(url: str, body: bytes, timeout: float = 60.0, api_key: str = "") -> tuple[int, str]:
    """POST raw bytes as JSON; (status, body text), errors included."""
    headers = {
        "content-type": "application/json",
        **({"authorization": f"Bearer {api_key}"} if api_key else {}),
    }
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def error_message(text: str) -> str:
    """The message inside an OpenAI-style or FastAPI error body (or the text itself)."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))[:200]
    if isinstance(body, dict) and "detail" in body:
        return json.dumps(body["detail"])[:200]
    return text[:200]


def bad_requests(
    srv: Server, good: list[dict], oversized_tokens: int, extended: bool = True
) -> list[dict]:
    """Bad requests (four, or eight when extended) and a good one after them: status, message,
    clear 4xx or not."""
    url = srv.base_url + "/chat/completions"
    cases = {
        "unknown model": {"model": "gpt-9-turbo", "messages": good, "max_tokens": 8},
        "empty message list": {"model": srv.model, "messages": [], "max_tokens": 8},
        "malformed JSON body": b'{"model": "x", "messages": [',
        "oversized prompt": {
            "model": srv.model,
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "refund " * oversized_tokens}],
        },
        "a role that does not exist": {
            "model": srv.model,
            "messages": [{"role": "hacker", "content": "hi"}],
        },
        "negative max_tokens": {"model": srv.model, "messages": good, "max_tokens": -3},
        "temperature as a word": {"model": srv.model, "messages": good, "temperature": "hot"},
        "a 2 MB body": {"model": srv.model, "messages": good, "user": "9" * 2_000_000},
        "good request after them": {
            "model": srv.model,
            "messages": good,
            "max_tokens": 48,
            "temperature": 0,
        },
    }
    if not extended:
        cases = {
            k: v
            for i, (k, v) in enumerate(cases.items())
            if i < 4 or k == "good request after them"
        }
    rows = []
    for case, body in cases.items():
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        (status, text), secs = timed(lambda: raw_post(url, raw, api_key=srv.api_key))
        rows.append(
            {
                "request": case,
                "status": status,
                "seconds": round(secs, 2),
                "clear_4xx": 400 <= status < 500,
                "message": error_message(text)
                if status >= 400
                else json.loads(text)["choices"][0]["message"]["content"][:80],
            }
        )
    return rows


def fuzz_requests(model: str, n: int = 240, seed: int = 0) -> list[tuple[str, bytes]]:
    """n malformed chat requests, (kind, body), from a fixed seed: wrong types, out-of-range
    values, unknown or unsupported fields, bad roles and contents, broken encodings, deep
    nesting, huge fields and random bytes. Every one is invalid by the OpenAI API's rules, so a
    server must answer each with a 4xx."""
    import random

    rng = random.Random(seed)
    good = [{"role": "user", "content": "Where is ORD-123456?"}]
    invalid = {
        "max_tokens": [-1, 0, 3.5, "64", 10**12, [], {}, True],
        "max_completion_tokens": [0, "8", 10**9],
        "frequency_penalty": [-1, -2, 3, "high", []],
        "temperature": [-1, 2.5, "hot", [], {}],
        "top_p": [0, -0.5, 1.5, "x", []],
        "n": [0, 2, "1", 1.5],
        "seed": ["1", 1.5, [], {}],
        "stop": [1, [1], ["a"] * 5, {}, [None], []],
        "stream": ["yes", 1, []],
        "model": [5, [], {}, "no-such-model"],
        "stream_options": ["x", {"bogus": 1}, 5, {}],
        "user": [5, [], {}],
        "generation_config": [5, "not json", "[1]", {}, ""],
    }
    bad_messages = [
        {"role": "hacker", "content": "hi"},
        {"role": "", "content": "hi"},
        {"role": None, "content": "hi"},
        {"role": 7, "content": "hi"},
        {"role": "user", "content": 5},
        {"role": "user", "content": None},
        {"role": "user", "content": []},
        {"role": "user", "content": {}},
        {"role": "user"},
        {"content": "hi"},
        {"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
        {"role": "user", "content": [{"type": "text"}]},
        "hi",
        5,
        None,
        [],
    ]

    def one(kind: str) -> bytes:
        if kind == "wrong type or range":
            name = rng.choice(sorted(invalid))
            return json.dumps(
                {"model": model, "messages": good, name: rng.choice(invalid[name])}
            ).encode()
        if kind == "unsupported or unknown field":
            name = rng.choice(sorted(UNSUPPORTED) + ["temprature", "max_token", "system", "prompt"])
            value = rng.choice([True, 1, "x", [{"type": "function"}], {"type": "json_object"}])
            return json.dumps({"model": model, "messages": good, name: value}).encode()
        if kind == "bad message":
            msgs = rng.choice(
                [[rng.choice(bad_messages)], good + [rng.choice(bad_messages)], "hi", {}, [], None]
            )
            return json.dumps({"model": model, "messages": msgs}).encode()
        if kind == "broken encoding":
            raw = json.dumps({"model": model, "messages": good}).encode()
            cut = rng.randrange(1, len(raw) - 1)
            return rng.choice(
                [
                    raw[:cut],
                    raw[:cut] + b"\xff\xfe" + raw[cut:],
                    b"\xef\xbb\xbf" + raw,
                    raw.replace(b'"', b"'"),
                    raw.decode().encode("utf-16"),
                    raw.decode().encode("utf-32"),
                ]
            )
        if kind == "deep nesting":
            depth = rng.choice([40, 1000, 50_000])
            return b'{"model": "x", "messages": ' + b"[" * depth + b"]" * depth + b"}"
        if kind == "huge field":
            size = rng.choice([10_000, 200_000, 2_000_000])
            name, value = rng.choice(
                [
                    ("seed", "9" * size),
                    ("stop", ["9" * size] * 5),
                    ("user", list(range(size // 8))),
                    ("messages", [{"role": "hacker", "content": "9" * size}]),
                ]
            )
            return json.dumps({"model": model, "messages": good, name: value}).encode()
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))  # random bytes

    kinds = [
        "wrong type or range",
        "unsupported or unknown field",
        "bad message",
        "broken encoding",
        "deep nesting",
        "huge field",
        "random bytes",
    ]
    return [(kinds[i % len(kinds)], one(kinds[i % len(kinds)])) for i in range(n)]


def unsupported_fields(api, model: str, messages: list[dict]) -> list[dict]:
    """Ask for logprobs, n=3 and a JSON response_format: what comes back (a 200 that ignored it,
    or a 4xx)."""
    import openai

    asks = {
        "logprobs": {"logprobs": True, "top_logprobs": 3},
        "n": {"n": 3},
        "response_format": {"response_format": {"type": "json_object"}},
    }
    rows = []
    for name, extra in asks.items():
        try:
            r = api.chat.completions.create(
                model=model, messages=messages, max_tokens=16, temperature=0.0, **extra
            )
            got = {
                "logprobs": f"logprobs={r.choices[0].logprobs}",
                "n": f"{len(r.choices)} choice(s)",
                "response_format": "answered, unconstrained",
            }[name]
            rows.append({"field": name, "status": 200, "outcome": f"ignored silently ({got})"})
        except openai.APIStatusError as e:
            rows.append(
                {
                    "field": name,
                    "status": e.status_code,
                    "outcome": f"refused: {error_message(e.response.text)}",
                }
            )
    return rows


# ---------------------------------------------------------------- the health check


@dataclass
class HealthCheck:
    """Probe an endpoint with one fixed request; alert on a latency spike or a degenerate answer."""

    api: object
    model: str
    probe: list[dict]
    is_good: Callable[[str], bool]
    spike_factor: float = 3.0
    baseline: list[float] = field(default_factory=list)

    def run(self, note: str = "", max_tokens: int = 48, **overrides) -> dict:
        """One T=0 probe (overrides go to the request): latency, answer, and alerts against the
        baseline median."""
        r, secs = timed(
            lambda: chat(self.api, self.model, self.probe, "strict_json", max_tokens, **overrides)
        )
        text = r.choices[0].message.content or ""
        alerts = []
        if len(self.baseline) >= 3 and secs > self.spike_factor * statistics.median(self.baseline):
            alerts.append(
                f"latency spike: {secs:.2f} s > {self.spike_factor:g} x median "
                f"{statistics.median(self.baseline):.2f} s"
            )
        if not self.is_good(text) or r.choices[0].finish_reason == "length":
            alerts.append(f"degenerate output ({r.choices[0].finish_reason}): {text[:60]!r}")
        if not alerts and len(self.baseline) < 5:
            self.baseline.append(secs)
        return {"probe": note, "seconds": round(secs, 3), "alerts": alerts, "answer": text[:70]}
