"""A real OpenAI-compatible endpoint: `transformers serve` pinned to a merged model, behind a request guard, started
as a subprocess on a free port and always stopped; the openai-client checks notebook 08 runs against it.

Run the guarded server on its own with `python -m helpers.serve MODEL_DIR --port 8000 --served-name NAME`.
"""

from __future__ import annotations

import argparse
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

MAX_PROMPT_TOKENS = 2048          # the guard's limit: our tickets are under 200 tokens; the model's context is 8192
SECRET_ENV = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Fields that transformers serve 5.23 accepts and then ignores (a warning in its log, a 200 to the client).
IGNORED_BY_TRANSFORMERS_SERVE = {
    "logprobs": "per-token log-probabilities are not computed",
    "top_logprobs": "per-token log-probabilities are not computed",
    "n": "only one choice is generated",
    "response_format": "the output is not constrained to the format",
}


# ---------------------------------------------------------------- the guard in front of transformers serve

def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> tuple[int, dict]:
    """An OpenAI-style error body."""
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _prompt_text(messages: list[dict]) -> str:
    """All text of a message list (string contents and text parts), for counting tokens."""
    parts = []
    for m in messages:
        c = m.get("content") or ""
        parts += [c] if isinstance(c, str) else [p.get("text", "") for p in c if isinstance(p, dict)]
    return "\n".join(parts)


ROLES = ("system", "developer", "user", "assistant")
MAX_BODY_BYTES = 1_000_000        # a body over this gets a 413 before it is parsed or tokenized (--max-body-bytes)
MAX_NEW_TOKENS_CAP = 4096         # max_tokens above this is refused: the model's context is 8192 and prompts are capped
MAX_JSON_DEPTH = 32               # deeper nesting is refused (measured on the parsed body, without recursion)
# Fields OpenAI clients send that the server cannot honour: refused with a 400 naming the field and why.
UNSUPPORTED = {**IGNORED_BY_TRANSFORMERS_SERVE,
               "tools": "tool calling is not set up on this server", "tool_choice": "tool calling is not set up",
               "functions": "function calling is not set up", "function_call": "function calling is not set up",
               "logit_bias": "token ids are not checked against the vocabulary here, so it is refused",
               "presence_penalty": "transformers serve does not apply it", "audio": "audio is not supported",
               "modalities": "only text is supported", "prediction": "predicted outputs are not supported",
               "parallel_tool_calls": "tool calling is not set up", "service_tier": "there is one tier",
               "store": "completions are not stored", "metadata": "completions are not stored",
               "reasoning_effort": "this is not a reasoning model", "web_search_options": "there is no web search"}


def _schema():
    """The accepted chat-completion request as pydantic models (built on first use; pydantic comes with fastapi)."""
    from typing import Annotated, Literal, Union

    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

    class TextPart(BaseModel):
        model_config = ConfigDict(extra="forbid")
        type: Literal["text"]
        text: StrictStr

    class Message(BaseModel):
        model_config = ConfigDict(extra="forbid")
        role: Literal[ROLES]
        content: Union[StrictStr, Annotated[list[TextPart], Field(min_length=1)]]
        name: StrictStr | None = None

    class StreamOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        include_usage: StrictBool | None = None

    Stop = Union[StrictStr, Annotated[list[StrictStr], Field(min_length=1, max_length=4)]]

    class ChatRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: StrictStr | None = None
        messages: Annotated[list[Message], Field(min_length=1)]
        max_tokens: Annotated[StrictInt, Field(ge=1, le=MAX_NEW_TOKENS_CAP)] | None = None
        max_completion_tokens: Annotated[StrictInt, Field(ge=1, le=MAX_NEW_TOKENS_CAP)] | None = None
        temperature: Annotated[float, Field(ge=0, le=2, strict=False)] | None = None
        top_p: Annotated[float, Field(gt=0, le=1)] | None = None
        frequency_penalty: Annotated[float, Field(gt=-1, le=2)] | None = None   # served as repetition_penalty = 1 + it
        n: Literal[1] | None = None
        seed: StrictInt | None = None
        stop: Stop | None = None
        stream: StrictBool | None = None
        stream_options: StreamOptions | None = None
        user: StrictStr | None = None
        generation_config: StrictStr | None = None   # transformers serve's extension: a JSON GenerationConfig
        logprobs: Literal[False] | None = None

        @field_validator("generation_config")
        @classmethod
        def _a_json_object(cls, v):
            try:
                ok = v is None or isinstance(json.loads(v), dict)
            except (ValueError, RecursionError):
                ok = False
            if not ok:
                raise ValueError("must be a JSON object encoded as a string")
            return v

        @model_validator(mode="after")
        def _stream_options_need_stream(self):
            if self.stream_options is not None and not self.stream:
                raise ValueError("'stream_options' is only allowed with 'stream': true")
            return self

    return ChatRequest


@functools.lru_cache(maxsize=1)
def chat_request_model():
    """The pydantic model of an accepted request (cached)."""
    return _schema()


def _json_depth(obj) -> int:
    """The deepest nesting of lists and objects in parsed JSON (iterative: strings cost nothing, no recursion)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, depth)
            stack += [(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)]
    return deepest


def _first_error(exc) -> tuple[str, str]:
    """(param, message) for the most telling pydantic validation error, in OpenAI's dotted-path style.

    For a field that may be a string or a list (`stop`, `content`), a list value's error comes from the list branch.
    """
    errors = exc.errors()
    telling = [e for e in errors if not (e["type"].endswith("_type") and isinstance(e.get("input"), (list, dict))
                                         and not e["type"].startswith(("list", "dict", "model")))]
    err = (telling or errors)[0]
    loc = [str(x) for x in err["loc"] if not str(x).startswith(("str", "list[", "function-", "literal[", "union[", "json-"))]
    param = ""
    for part in loc:
        param += f"[{part}]" if part.isdigit() else (f".{part}" if param else part)
    return param or "body", f"'{param or 'body'}': {err['msg'].lower()} (got {err.get('input')!r:.60})"


def check_request(raw: bytes, served_name: str, count_tokens: Callable[[list[dict]], int],
                  max_prompt_tokens: int = MAX_PROMPT_TOKENS, aliases: tuple[str, ...] = (),
                  max_body_bytes: int = MAX_BODY_BYTES) -> tuple[int, dict] | dict:
    """Validate a chat request: an (status, error body) pair for a bad one, else the parsed body."""
    from pydantic import ValidationError

    if len(raw) > max_body_bytes:
        return _error(413, f"the body is {len(raw)} bytes; this server accepts at most {max_body_bytes}",
                      code="request_too_large")
    too_deep = _error(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
    try:
        body = json.loads(raw.decode("utf-8"))            # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError as e:
        return _error(400, f"the body is not UTF-8: {e.reason} at byte {e.start}", code="invalid_json")
    except RecursionError:                                 # deeper than Python's parser goes
        return too_deep
    except json.JSONDecodeError as e:
        return _error(400, f"malformed JSON body: {getattr(e, 'msg', e)} at line {getattr(e, 'lineno', 1)} "
                           f"column {getattr(e, 'colno', 1)}", code="invalid_json")
    if _json_depth(body) > MAX_JSON_DEPTH:
        return too_deep
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if model is not None and model != served_name and model not in aliases:
        return _error(404, f"model {model!r} is not served here; this server serves {served_name!r}",
                      "model", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "'messages' must be a non-empty list of {role, content} objects", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return _error(400, f"messages[{i}] needs a 'role' and a 'content'", f"messages[{i}]")
    for name, why in UNSUPPORTED.items():
        value = body.get(name)
        if value is not None and value is not False and not (name == "n" and type(value) is int and value == 1):
            return _error(400, f"'{name}' is not supported: {why}", name, "unsupported_parameter")
    unknown = sorted(set(body) - set(chat_request_model().model_fields))
    if unknown:
        return _error(400, f"'{unknown[0]}' is not a chat-completion parameter this server knows", unknown[0],
                      "unknown_parameter")
    try:
        chat_request_model().model_validate(body)
    except ValidationError as e:
        param, message = _first_error(e)
        return _error(400, message, param, "invalid_value")
    n = count_tokens(messages)
    if n > max_prompt_tokens:
        return _error(400, f"the prompt is {n} tokens; this server accepts at most {max_prompt_tokens}",
                      "messages", "context_length_exceeded")
    return body


async def _send_json(send, status: int, payload: dict) -> None:
    """Answer an ASGI request with a JSON body."""
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def _discard_body(receive, limit: int) -> None:
    """Read and drop the rest of a request body (up to `limit` bytes), so an early answer reaches the client."""
    seen, more = 0, True
    while more and seen <= limit:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        seen += len(msg.get("body", b""))
        more = msg.get("more_body", False)


def authorized(headers: list[tuple[bytes, bytes]], api_key: str) -> bool:
    """Whether the request carries `Authorization: Bearer <api_key>` (always true when no key is set)."""
    import hmac

    if not api_key:
        return True
    got = dict(headers).get(b"authorization", b"").decode("latin-1")
    return hmac.compare_digest(got, f"Bearer {api_key}")


def guard_app(inner, model_dir: str, served_name: str, count_tokens: Callable[[list[dict]], int],
              max_prompt_tokens: int = MAX_PROMPT_TOKENS, api_key: str = "", max_body_bytes: int = MAX_BODY_BYTES):
    """Wrap the transformers serve ASGI app: a key on every route but /health, bad chat requests refused with a 4xx
    (a 413 for an oversized body before it is read in full), and /v1/models answered."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        if scope["path"] != "/health" and not authorized(scope["headers"], api_key):
            return await _send_json(send, 401, _error(401, "missing or wrong API key: send 'Authorization: Bearer "
                                                            "<key>'", code="invalid_api_key")[1])
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            return await _send_json(send, 200, {"object": "list", "data": [
                {"id": served_name, "object": "model", "created": 0, "owned_by": "fine-tuning-workbook"}]})
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            return await inner(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > max_body_bytes:
            await _discard_body(receive, 64 * max_body_bytes)   # drained unparsed, so the client reads the 413
            return await _send_json(send, *_error(413, f"the body is {int(declared)} bytes; this server accepts at most "
                                                       f"{max_body_bytes}", code="request_too_large"))
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > max_body_bytes:                      # a chunked body without a length: stop keeping it
                if more:
                    await _discard_body(receive, 64 * max_body_bytes)
                return await _send_json(send, *_error(413, f"the body is over {max_body_bytes} bytes",
                                                           code="request_too_large"))
        raw = b"".join(chunks)
        checked = check_request(raw, served_name, count_tokens, max_prompt_tokens, (model_dir,), max_body_bytes)
        if isinstance(checked, tuple):
            return await _send_json(send, *checked)
        checked["model"] = model_dir                       # the pinned server knows the model by its folder
        body = json.dumps(checked).encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"] + [(b"content-length", str(len(body)).encode())]
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()                         # later reads wait for the client to disconnect

        return await inner({**scope, "headers": headers}, replay, send)

    return app


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage block) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


LOOPBACK = ("127.0.0.1", "localhost", "::1")
API_KEY_ENV = "WORKBOOK_SERVE_API_KEY"


def preflight(args) -> str | None:
    """The one-line reason the server cannot start with these arguments, or None."""
    folder = Path(args.model_dir)
    if not folder.is_dir():
        return f"{folder}: no such model folder"
    if not (folder / "config.json").exists():
        return f"{folder}: no config.json (a merged model folder is needed; adapters are not served)"
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return f"{folder}: no weights (*.safetensors or *.bin) next to config.json"
    if args.host not in LOOPBACK and not args.api_key:
        return (f"--host {args.host} reaches beyond this machine: set --api-key or ${API_KEY_ENV}, "
                "or bind to 127.0.0.1")
    with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as e:
            return f"cannot listen on {args.host}:{args.port}: {e.strerror or e}"
    return None


def main(argv: list[str] | None = None) -> None:
    """`transformers serve` pinned to one model folder, behind the request guard."""
    ap = _OneLineParser(description=main.__doc__)
    ap.add_argument("model_dir")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-name", default="", help="the name clients send as `model` (default: the folder name)")
    ap.add_argument("--max-prompt-tokens", type=int, default=MAX_PROMPT_TOKENS)
    ap.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="larger bodies get a 413")
    ap.add_argument("--api-key", default=os.environ.get(API_KEY_ENV, ""),
                    help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV})")
    ap.add_argument("--continuous-batching", action="store_true")
    args = ap.parse_args(argv)
    problem = preflight(args)
    if problem:
        sys.exit(f"error: {problem}")
    model_dir = str(Path(args.model_dir).resolve())
    from transformers import AutoTokenizer
    import transformers.cli.serving.server as server

    tok = AutoTokenizer.from_pretrained(model_dir)

    def count_tokens(messages: list[dict]) -> int:
        try:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:                                   # an odd role: count the raw text instead
            text = _prompt_text(messages)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    build = server.build_server
    server.build_server = lambda *a, **k: guard_app(build(*a, **k), model_dir, args.served_name or Path(model_dir).name,
                                                    count_tokens, args.max_prompt_tokens, args.api_key,
                                                    args.max_body_bytes)
    from transformers.cli.serve import Serve

    Serve(force_model=model_dir, host=args.host, port=args.port, continuous_batching=args.continuous_batching)


# ---------------------------------------------------------------- starting, waiting for and stopping a server

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
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(model_dir: str | Path, port: int, engine: str = "guarded", served_name: str = "",
                   continuous_batching: bool = False, max_prompt_tokens: int = MAX_PROMPT_TOKENS,
                   lora_modules: dict[str, str | Path] | None = None) -> list[str]:
    """The command line for an engine: 'guarded' (ours), 'transformers' (plain `transformers serve`) or 'vllm'."""
    model_dir = str(Path(model_dir).resolve()) if Path(model_dir).exists() else str(model_dir)
    if engine == "guarded":
        return [sys.executable, "-m", "helpers.serve", model_dir, "--port", str(port), "--served-name",
                served_name or Path(model_dir).name, "--max-prompt-tokens", str(max_prompt_tokens)] + \
               (["--continuous-batching"] if continuous_batching else [])
    if engine == "transformers":
        cli = Path(sys.executable).with_name("transformers")
        return [str(cli), "serve", model_dir, "--host", "127.0.0.1", "--port", str(port)] + \
               (["--continuous-batching"] if continuous_batching else [])
    if engine == "vllm":                                   # CUDA only: the base once, each adapter by name
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--host", "127.0.0.1",
               "--port", str(port), "--served-model-name", served_name or Path(model_dir).name, "--max-model-len", "2048"]
        if lora_modules:
            cmd += ["--enable-lora", "--max-lora-rank", "64", "--lora-modules"] + [f"{k}={v}" for k, v in lora_modules.items()]
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
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies (a killed kernel leaves no server)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # 1 = PR_SET_PDEATHSIG


def leftovers(marker: str) -> list[int]:
    """Pids of live processes whose command line contains marker (a run folder): should be none after a run."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


@contextmanager
def running(model_dir: str | Path, log_dir: str | Path, *, engine: str = "guarded", served_name: str = "",
            continuous_batching: bool = False, threads: int | None = None, timeout_s: float = 180,
            max_prompt_tokens: int = MAX_PROMPT_TOKENS, lora_modules: dict[str, str | Path] | None = None,
            api_key: str = "") -> Iterator[Server]:
    """Start a server on 127.0.0.1 and a free port, wait for /health, and always stop it on the way out.

    With api_key (guarded engine) the server requires it; it travels in the environment, never on the command line."""
    port = free_port()
    name = served_name or Path(model_dir).name
    cmd = server_command(model_dir, port, engine, name, continuous_batching, max_prompt_tokens, lora_modules)
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}   # the server never sees an API key
    env.update(HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"), TOKENIZERS_PARALLELISM="false",
               PYTHONWARNINGS="ignore", **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    env.pop(API_KEY_ENV, None)
    if api_key:
        env[API_KEY_ENV] = api_key
    log = Path(log_dir) / f"server-{engine}-{port}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parent.parent), preexec_fn=_die_with_parent)
    cleanup = functools.partial(stop, proc)
    atexit.register(cleanup)                               # a kernel that exits mid-notebook still stops it
    model = cmd[cmd.index("serve") + 1] if engine == "transformers" else name
    srv = Server(f"http://127.0.0.1:{port}/v1", model, proc, log, command=cmd, api_key=api_key)
    try:
        while get(f"http://127.0.0.1:{port}/health")[0] != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode} before it was healthy:\n{srv.log_tail()}")
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"the server was not healthy after {timeout_s:.0f} s:\n{srv.log_tail()}")
            time.sleep(0.5)
        srv.started_s = time.perf_counter() - t0
        yield srv
    finally:
        stop(proc)
        atexit.unregister(cleanup)


# ---------------------------------------------------------------- the client side

def server_load(base_url: str, model: str, conversations: list[list[dict]], concurrency: int,
                max_tokens: int) -> dict:
    """Send every conversation to the server at T=0 from `concurrency` client threads; tokens, seconds, latencies."""
    api = client(base_url)

    def one(conv):
        t0 = time.perf_counter()
        r = api.chat.completions.create(model=model, messages=conv, max_tokens=max_tokens, **preset_kwargs("strict_json"))
        return r.usage.completion_tokens, time.perf_counter() - t0

    t_all = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, conversations))
    return {"tokens": sum(t for t, _ in done), "seconds": time.perf_counter() - t_all, "latencies": [s for _, s in done]}



def client(base_url: str, timeout: float = 120.0, api_key: str = ""):
    """The official openai client for a base URL, sending api_key (else $WORKBOOK_SERVE_API_KEY, else a placeholder)."""
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key or os.environ.get(API_KEY_ENV, "not-needed"), timeout=timeout,
                  max_retries=0)


def preset_kwargs(preset: str) -> dict:
    """chat.completions.create keywords for a notebook-06 preset: temperature, plus min_p etc. via extra_body."""
    s = PRESETS[preset]
    if s.temperature == 0:
        return {"temperature": 0.0}
    gen = {"do_sample": True, "temperature": s.temperature}
    gen.update({k: v for k, v, off in (("top_k", s.top_k, 0), ("top_p", s.top_p, 1.0), ("min_p", s.min_p, 0.0),
                                       ("repetition_penalty", s.repetition_penalty, 1.0)) if v != off})
    return {"temperature": s.temperature, "extra_body": {"generation_config": json.dumps(gen)}}


def chat(api, model: str, messages: list[dict], preset: str = "strict_json", max_tokens: int = 64, **extra):
    """One chat completion with a preset."""
    kwargs = preset_kwargs(preset)
    if "extra_body" in kwargs:   # max_tokens must ride inside the generation_config the server rebuilds from
        gen = json.loads(kwargs["extra_body"]["generation_config"]) | {"max_new_tokens": max_tokens}
        kwargs["extra_body"] = {"generation_config": json.dumps(gen)}
    return api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, **kwargs, **extra)


def stream_text(api, model: str, messages: list[dict], max_tokens: int = 64) -> dict:
    """Stream one T=0 answer: the joined text, the chunk count, seconds to the first token, and the finish reason."""
    t0, first, parts, finish = time.perf_counter(), None, [], None
    for chunk in api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, stream=True,
                                             **preset_kwargs("strict_json")):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta.content
        if delta:
            first = first if first is not None else time.perf_counter() - t0
            parts.append(delta)
        finish = chunk.choices[0].finish_reason or finish
    return {"text": "".join(parts), "chunks": len(parts), "first_token_s": first, "finish_reason": finish}


def raw_post(url: str, body: bytes, timeout: float = 60.0, api_key: str = "") -> tuple[int, str]:
    """POST raw bytes as JSON; (status, body text), errors included."""
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {api_key}"} if api_key else {})}
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


def bad_requests(srv: Server, good: list[dict], oversized_tokens: int, extended: bool = True) -> list[dict]:
    """Bad requests (four, or eight when extended) and a good one after them: status, message, clear 4xx or not."""
    url = srv.base_url + "/chat/completions"
    cases = {
        "unknown model": {"model": "gpt-9-turbo", "messages": good, "max_tokens": 8},
        "empty message list": {"model": srv.model, "messages": [], "max_tokens": 8},
        "malformed JSON body": b'{"model": "x", "messages": [',
        "oversized prompt": {"model": srv.model, "max_tokens": 1,
                             "messages": [{"role": "user", "content": "refund " * oversized_tokens}]},
        "a role that does not exist": {"model": srv.model, "messages": [{"role": "hacker", "content": "hi"}]},
        "negative max_tokens": {"model": srv.model, "messages": good, "max_tokens": -3},
        "temperature as a word": {"model": srv.model, "messages": good, "temperature": "hot"},
        "a 2 MB body": {"model": srv.model, "messages": good, "user": "9" * 2_000_000},
        "good request after them": {"model": srv.model, "messages": good, "max_tokens": 48, "temperature": 0},
    }
    if not extended:
        cases = {k: v for i, (k, v) in enumerate(cases.items()) if i < 4 or k == "good request after them"}
    rows = []
    for case, body in cases.items():
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        (status, text), secs = timed(lambda: raw_post(url, raw, api_key=srv.api_key))
        rows.append({"request": case, "status": status, "seconds": round(secs, 2),
                     "clear_4xx": 400 <= status < 500, "message": error_message(text) if status >= 400 else
                     json.loads(text)["choices"][0]["message"]["content"][:80]})
    return rows


def fuzz_requests(model: str, n: int = 240, seed: int = 0) -> list[tuple[str, bytes]]:
    """n malformed chat requests, (kind, body), from a fixed seed: wrong types, out-of-range values, unknown or
    unsupported fields, bad roles and contents, broken encodings, deep nesting, huge fields and random bytes.
    Every one is invalid by the OpenAI API's rules, so a server must answer each with a 4xx."""
    import random

    rng = random.Random(seed)
    good = [{"role": "user", "content": "Where is ORD-123456?"}]
    invalid = {"max_tokens": [-1, 0, 3.5, "64", 10 ** 12, [], {}, True], "max_completion_tokens": [0, "8", 10 ** 9],
               "frequency_penalty": [-1, -2, 3, "high", []],
               "temperature": [-1, 2.5, "hot", [], {}], "top_p": [0, -0.5, 1.5, "x", []], "n": [0, 2, "1", 1.5],
               "seed": ["1", 1.5, [], {}], "stop": [1, [1], ["a"] * 5, {}, [None], []], "stream": ["yes", 1, []],
               "model": [5, [], {}, "no-such-model"], "stream_options": ["x", {"bogus": 1}, 5, {}],
               "user": [5, [], {}], "generation_config": [5, "not json", "[1]", {}, ""]}
    bad_messages = [{"role": "hacker", "content": "hi"}, {"role": "", "content": "hi"}, {"role": None, "content": "hi"},
                    {"role": 7, "content": "hi"}, {"role": "user", "content": 5}, {"role": "user", "content": None},
                    {"role": "user", "content": []}, {"role": "user", "content": {}}, {"role": "user"},
                    {"content": "hi"}, {"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                    {"role": "user", "content": [{"type": "text"}]}, "hi", 5, None, []]

    def one(kind: str) -> bytes:
        if kind == "wrong type or range":
            name = rng.choice(sorted(invalid))
            return json.dumps({"model": model, "messages": good, name: rng.choice(invalid[name])}).encode()
        if kind == "unsupported or unknown field":
            name = rng.choice(sorted(UNSUPPORTED) + ["temprature", "max_token", "system", "prompt"])
            value = rng.choice([True, 1, "x", [{"type": "function"}], {"type": "json_object"}])
            return json.dumps({"model": model, "messages": good, name: value}).encode()
        if kind == "bad message":
            msgs = rng.choice([[rng.choice(bad_messages)], good + [rng.choice(bad_messages)], "hi", {}, [], None])
            return json.dumps({"model": model, "messages": msgs}).encode()
        if kind == "broken encoding":
            raw = json.dumps({"model": model, "messages": good}).encode()
            cut = rng.randrange(1, len(raw) - 1)
            return rng.choice([raw[:cut], raw[:cut] + b"\xff\xfe" + raw[cut:], b"\xef\xbb\xbf" + raw,
                               raw.replace(b'"', b"'"), raw.decode().encode("utf-16"), raw.decode().encode("utf-32")])
        if kind == "deep nesting":
            depth = rng.choice([40, 1000, 50_000])
            return b'{"model": "x", "messages": ' + b"[" * depth + b"]" * depth + b"}"
        if kind == "huge field":
            size = rng.choice([10_000, 200_000, 2_000_000])
            name, value = rng.choice([("seed", "9" * size), ("stop", ["9" * size] * 5), ("user", list(range(size // 8))),
                                      ("messages", [{"role": "hacker", "content": "9" * size}])])
            return json.dumps({"model": model, "messages": good, name: value}).encode()
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))      # random bytes

    kinds = ["wrong type or range", "unsupported or unknown field", "bad message", "broken encoding", "deep nesting",
             "huge field", "random bytes"]
    return [(kinds[i % len(kinds)], one(kinds[i % len(kinds)])) for i in range(n)]


def unsupported_fields(api, model: str, messages: list[dict]) -> list[dict]:
    """Ask for logprobs, n=3 and a JSON response_format: what comes back (a 200 that ignored it, or a 4xx)."""
    import openai

    asks = {"logprobs": {"logprobs": True, "top_logprobs": 3}, "n": {"n": 3},
            "response_format": {"response_format": {"type": "json_object"}}}
    rows = []
    for name, extra in asks.items():
        try:
            r = api.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0.0, **extra)
            got = {"logprobs": f"logprobs={r.choices[0].logprobs}", "n": f"{len(r.choices)} choice(s)",
                   "response_format": "answered, unconstrained"}[name]
            rows.append({"field": name, "status": 200, "outcome": f"ignored silently ({got})"})
        except openai.APIStatusError as e:
            rows.append({"field": name, "status": e.status_code, "outcome": f"refused: {error_message(e.response.text)}"})
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
        """One T=0 probe (overrides go to the request): latency, answer, and alerts against the baseline median."""
        r, secs = timed(lambda: chat(self.api, self.model, self.probe, "strict_json", max_tokens, **overrides))
        text = r.choices[0].message.content or ""
        alerts = []
        if len(self.baseline) >= 3 and secs > self.spike_factor * statistics.median(self.baseline):
            alerts.append(f"latency spike: {secs:.2f} s > {self.spike_factor:g} x median {statistics.median(self.baseline):.2f} s")
        if not self.is_good(text) or r.choices[0].finish_reason == "length":
            alerts.append(f"degenerate output ({r.choices[0].finish_reason}): {text[:60]!r}")
        if not alerts and len(self.baseline) < 5:
            self.baseline.append(secs)
        return {"probe": note, "seconds": round(secs, 3), "alerts": alerts, "answer": text[:70]}


if __name__ == "__main__":
    main()
