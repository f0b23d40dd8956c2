"""The server side of notebook 08's endpoint: `transformers serve` pinned to a merged model behind a
request guard.

The guard checks every request against a pydantic schema (OpenAI-shaped errors naming the field),
refuses oversized, non-UTF-8 or too deeply nested bodies before parsing, and asks for an API key
when one is set. Run it on its own with `python -m helpers.serve MODEL_DIR --port 8000 --served-name
NAME`; `helpers.serve_client` starts, queries and stops it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import sys
from pathlib import Path
from typing import Callable


# the guard's limit: our tickets are under 200 tokens; the model's context is 8192
MAX_PROMPT_TOKENS = 2048
SECRET_ENV = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Fields that transformers serve 5.23 accepts and then ignores (a warning in its log, a 200 to the
# client).
IGNORED_BY_TRANSFORMERS_SERVE = {
    "logprobs": "per-token log-probabilities are not computed",
    "top_logprobs": "per-token log-probabilities are not computed",
    "n": "only one choice is generated",
    "response_format": "the output is not constrained to the format",
}


# ---------------------------------------------------------------- the guard in front of
# transformers serve


def _error(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> tuple[int, dict]:
    """An OpenAI-style error body."""
    return status, {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def _prompt_text(messages: list[dict]) -> str:
    """All text of a message list (string contents and text parts), for counting tokens."""
    parts = []
    for m in messages:
        c = m.get("content") or ""
        parts += (
            [c] if isinstance(c, str) else [p.get("text", "") for p in c if isinstance(p, dict)]
        )
    return "\n".join(parts)


ROLES = ("system", "developer", "user", "assistant")
# a body over this gets a 413 before it is parsed or tokenized (--max-body-bytes)
MAX_BODY_BYTES = 1_000_000
# max_tokens above this is refused: the model's context is 8192 and prompts are capped
MAX_NEW_TOKENS_CAP = 4096
# deeper nesting is refused (measured on the parsed body, without recursion)
MAX_JSON_DEPTH = 32
# Fields OpenAI clients send that the server cannot honour: refused with a 400 naming the field and
# why.
UNSUPPORTED = {
    **IGNORED_BY_TRANSFORMERS_SERVE,
    "tools": "tool calling is not set up on this server",
    "tool_choice": "tool calling is not set up",
    "functions": "function calling is not set up",
    "function_call": "function calling is not set up",
    "logit_bias": "token ids are not checked against the vocabulary here, so it is refused",
    "presence_penalty": "transformers serve does not apply it",
    "audio": "audio is not supported",
    "modalities": "only text is supported",
    "prediction": "predicted outputs are not supported",
    "parallel_tool_calls": "tool calling is not set up",
    "service_tier": "there is one tier",
    "store": "completions are not stored",
    "metadata": "completions are not stored",
    "reasoning_effort": "this is not a reasoning model",
    "web_search_options": "there is no web search",
}


def _schema():
    """The accepted chat-completion request as pydantic models (built on first use; pydantic
    comes with fastapi)."""
    from typing import Annotated, Literal, Union

    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        StrictBool,
        StrictInt,
        StrictStr,
        field_validator,
        model_validator,
    )

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
        max_completion_tokens: Annotated[StrictInt, Field(ge=1, le=MAX_NEW_TOKENS_CAP)] | None = (
            None
        )
        temperature: Annotated[float, Field(ge=0, le=2, strict=False)] | None = None
        top_p: Annotated[float, Field(gt=0, le=1)] | None = None
        # served as repetition_penalty = 1 + it
        frequency_penalty: Annotated[float, Field(gt=-1, le=2)] | None = None
        n: Literal[1] | None = None
        seed: StrictInt | None = None
        stop: Stop | None = None
        stream: StrictBool | None = None
        stream_options: StreamOptions | None = None
        user: StrictStr | None = None
        # transformers serve's extension: a JSON GenerationConfig
        generation_config: StrictStr | None = None
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
    """The deepest nesting of lists and objects in parsed JSON (iterative: strings cost nothing,
    no recursion)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, depth)
            stack += [
                (child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
            ]
    return deepest


def _first_error(exc) -> tuple[str, str]:
    """(param, message) for the most telling pydantic validation error, in OpenAI's dotted-path
    style.

    For a field that may be a string or a list (`stop`, `content`), a list value's error comes from
    the list branch.
    """
    errors = exc.errors()
    telling = [
        e
        for e in errors
        if not (
            e["type"].endswith("_type")
            and isinstance(e.get("input"), (list, dict))
            and not e["type"].startswith(("list", "dict", "model"))
        )
    ]
    err = (telling or errors)[0]
    loc = [
        str(x)
        for x in err["loc"]
        if not str(x).startswith(("str", "list[", "function-", "literal[", "union[", "json-"))
    ]
    param = ""
    for part in loc:
        param += f"[{part}]" if part.isdigit() else (f".{part}" if param else part)
    return (
        param or "body",
        f"'{param or 'body'}': {err['msg'].lower()} (got {err.get('input')!r:.60})",
    )


def check_request(
    raw: bytes,
    served_name: str,
    count_tokens: Callable[[list[dict]], int],
    max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    aliases: tuple[str, ...] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
) -> tuple[int, dict] | dict:
    """Validate a chat request: an (status, error body) pair for a bad one, else the parsed body."""
    from pydantic import ValidationError

    if len(raw) > max_body_bytes:
        return _error(
            413,
            f"the body is {len(raw)} bytes; this server accepts at most {max_body_bytes}",
            code="request_too_large",
        )
    too_deep = _error(
        400, f"the body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json"
    )
    try:
        body = json.loads(raw.decode("utf-8"))  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError as e:
        return _error(
            400, f"the body is not UTF-8: {e.reason} at byte {e.start}", code="invalid_json"
        )
    except RecursionError:  # deeper than Python's parser goes
        return too_deep
    except json.JSONDecodeError as e:
        return _error(
            400,
            f"malformed JSON body: {getattr(e, 'msg', e)} at line "
            f"{getattr(e, 'lineno', 1)} "
            f"column {getattr(e, 'colno', 1)}",
            code="invalid_json",
        )
    if _json_depth(body) > MAX_JSON_DEPTH:
        return too_deep
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if model is not None and model != served_name and model not in aliases:
        return _error(
            404,
            f"model {model!r} is not served here; this server serves {served_name!r}",
            "model",
            "model_not_found",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(
            400, "'messages' must be a non-empty list of {role, content} objects", "messages"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return _error(400, f"messages[{i}] needs a 'role' and a 'content'", f"messages[{i}]")
    for name, why in UNSUPPORTED.items():
        value = body.get(name)
        if (
            value is not None
            and value is not False
            and not (name == "n" and type(value) is int and value == 1)
        ):
            return _error(400, f"'{name}' is not supported: {why}", name, "unsupported_parameter")
    unknown = sorted(set(body) - set(chat_request_model().model_fields))
    if unknown:
        return _error(
            400,
            f"'{unknown[0]}' is not a chat-completion parameter this server knows",
            unknown[0],
            "unknown_parameter",
        )
    try:
        chat_request_model().model_validate(body)
    except ValidationError as e:
        param, message = _first_error(e)
        return _error(400, message, param, "invalid_value")
    n = count_tokens(messages)
    if n > max_prompt_tokens:
        return _error(
            400,
            f"the prompt is {n} tokens; this server accepts at most {max_prompt_tokens}",
            "messages",
            "context_length_exceeded",
        )
    return body


async def _send_json(send, status: int, payload: dict) -> None:
    """Answer an ASGI request with a JSON body."""
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _discard_body(receive, limit: int) -> None:
    """Read and drop the rest of a request body (up to `limit` bytes), so an early answer reaches
    the client."""
    seen, more = 0, True
    while more and seen <= limit:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        seen += len(msg.get("body", b""))
        more = msg.get("more_body", False)


def authorized(headers: list[tuple[bytes, bytes]], api_key: str) -> bool:
    """Whether the request carries `Authorization: Bearer <api_key>` (always true when no key is
    set)."""
    import hmac

    if not api_key:
        return True
    got = dict(headers).get(b"authorization", b"").decode("latin-1")
    return hmac.compare_digest(got, f"Bearer {api_key}")


def guard_app(
    inner,
    model_dir: str,
    served_name: str,
    count_tokens: Callable[[list[dict]], int],
    max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    api_key: str = "",
    max_body_bytes: int = MAX_BODY_BYTES,
):
    """Wrap the transformers serve ASGI app: a key on every route but /health, bad chat requests
    refused with a 4xx (a 413 for an oversized body before it is read in full), and /v1/models
    answered."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        if scope["path"] != "/health" and not authorized(scope["headers"], api_key):
            return await _send_json(
                send,
                401,
                _error(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                )[1],
            )
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            return await _send_json(
                send,
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": served_name,
                            "object": "model",
                            "created": 0,
                            "owned_by": "fine-tuning-workbook",
                        }
                    ],
                },
            )
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            return await inner(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > max_body_bytes:
            # drained unparsed, so the client reads the 413
            await _discard_body(receive, 64 * max_body_bytes)
            return await _send_json(
                send,
                *_error(
                    413,
                    f"the body is {int(declared)} bytes; this "
                    "server accepts at most "
                    f"{max_body_bytes}",
                    code="request_too_large",
                ),
            )
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            # a chunked body without a length: stop keeping it
            if size > max_body_bytes:
                if more:
                    await _discard_body(receive, 64 * max_body_bytes)
                return await _send_json(
                    send,
                    *_error(
                        413, f"the body is over {max_body_bytes} bytes", code="request_too_large"
                    ),
                )
        raw = b"".join(chunks)
        checked = check_request(
            raw, served_name, count_tokens, max_prompt_tokens, (model_dir,), max_body_bytes
        )
        if isinstance(checked, tuple):
            return await _send_json(send, *checked)
        # the pinned server knows the model by its folder
        checked["model"] = model_dir
        body = json.dumps(checked).encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"] + [
            (b"content-length", str(len(body)).encode())
        ]
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            # later reads wait for the client to disconnect
            return await receive()

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
        return (
            f"{folder}: no config.json (a merged model folder is needed; adapters are not served)"
        )
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return f"{folder}: no weights (*.safetensors or *.bin) next to config.json"
    if args.host not in LOOPBACK and not args.api_key:
        return (
            f"--host {args.host} reaches beyond this machine: set --api-key or ${API_KEY_ENV}, "
            "or bind to 127.0.0.1"
        )
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
    ap.add_argument(
        "--served-name",
        default="",
        help="the name clients send as `model` (default: the folder name)",
    )
    ap.add_argument("--max-prompt-tokens", type=int, default=MAX_PROMPT_TOKENS)
    ap.add_argument(
        "--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="larger bodies get a 413"
    )
    ap.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV, ""),
        help="require 'Authorization: Bearer KEY' on every route but /health "
        f"(default: ${API_KEY_ENV})",
    )
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
        # an odd role: count the raw text instead
        except Exception:
            text = _prompt_text(messages)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    build = server.build_server
    server.build_server = lambda *a, **k: guard_app(
        build(*a, **k),
        model_dir,
        args.served_name or Path(model_dir).name,
        count_tokens,
        args.max_prompt_tokens,
        args.api_key,
        args.max_body_bytes,
    )
    from transformers.cli.serve import Serve

    Serve(
        force_model=model_dir,
        host=args.host,
        port=args.port,
        continuous_batching=args.continuous_batching,
    )


if __name__ == "__main__":
    main()
