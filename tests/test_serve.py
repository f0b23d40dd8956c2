"""helpers.serve: the request guard, and a real guarded `transformers serve` queried with the
openai client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from helpers import course, serve, serve_client
from helpers.runtime import repo_root

GOOD = [
    {"role": "system", "content": "Extract the ticket as JSON."},
    {"role": "user", "content": "Where is ORD-123456?"},
]


def words(messages):
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def check(body, limit=50):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return serve.check_request(raw, "triage", words, limit, ("/models/triage",))


@pytest.mark.parametrize(
    "body, status, needle",
    [
        (
            b'{"model": "triage", "messages": [',
            400,
            "malformed JSON body: Expecting value at line 1 column 34",
        ),
        ([1, 2], 400, "must be a JSON object"),
        (
            {"model": "gpt-9", "messages": GOOD},
            404,
            "'gpt-9' is not served here; this server serves 'triage'",
        ),
        ({"model": "triage", "messages": []}, 400, "'messages' must be a non-empty list"),
        ({"model": "triage", "messages": [{"content": "hi"}]}, 400, "messages[0] needs a 'role'"),
        (
            {"model": "triage", "messages": GOOD, "logprobs": True},
            400,
            "'logprobs' is not supported",
        ),
        ({"model": "triage", "messages": GOOD, "n": 3}, 400, "'n' is not supported"),
        (
            {"model": "triage", "messages": GOOD, "response_format": {"type": "json_object"}},
            400,
            "'response_format'",
        ),
        (
            {"model": "triage", "messages": [{"role": "user", "content": "x " * 60}]},
            400,
            "the prompt is 60 tokens; this server accepts at most 50",
        ),
    ],
)
def test_guard_refuses_bad_requests_with_a_clear_message(body, status, needle):
    got = check(body)
    assert isinstance(got, tuple), got
    assert got[0] == status and needle in got[1]["error"]["message"], got


def with_(**fields):
    return {"model": "triage", "messages": GOOD, **fields}


@pytest.mark.parametrize(
    "body, param, needle",
    [
        (
            {"model": "triage", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "valid string",
        ),
        (
            {"model": "triage", "messages": [{"role": "hacker", "content": "hi"}]},
            "messages[0].role",
            "'system'",
        ),
        (with_(max_tokens=-3), "max_tokens", "greater than or equal to 1"),
        (with_(max_tokens="64"), "max_tokens", "valid integer"),
        (with_(max_tokens=10**9), "max_tokens", "less than or equal to 4096"),
        (with_(temperature="hot"), "temperature", "valid number"),
        (with_(temperature=-1), "temperature", "greater than or equal to 0"),
        (with_(top_p=5), "top_p", "less than or equal to 1"),
        (with_(n=0), "n", "only one choice is generated"),
        (with_(seed="1"), "seed", "valid integer"),
        (with_(stop=[1, 2]), "stop[0]", "valid string"),
        (with_(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4"),
        (with_(tools=[{"type": "function"}]), "tools", "tool calling is not set up"),
        (with_(temprature=0.5), "temprature", "not a chat-completion parameter"),
    ],
)
def test_guard_validates_types_and_ranges_and_names_the_parameter(body, param, needle):
    got = check(body)
    assert isinstance(got, tuple) and got[0] == 400, got
    err = got[1]["error"]
    assert err["param"] == param and needle in err["message"].lower(), err
    assert set(got[1]["error"]) == {"message", "type", "param", "code"}  # the OpenAI error shape


def test_guard_refuses_size_and_depth_before_parsing():
    status, body = serve.check_request(b"x" * 2001, "triage", words, 50, max_body_bytes=2000)
    assert status == 413 and "2001 bytes" in body["error"]["message"]
    deep = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body = serve.check_request(deep, "triage", words, 50, max_body_bytes=10**6)
    assert status == 400 and "nests deeper than 32" in body["error"]["message"]


def test_guard_passes_good_requests():
    assert (
        check({"model": "triage", "messages": GOOD, "n": 1, "logprobs": False})["messages"] == GOOD
    )
    # the folder is an alias
    assert check({"model": "/models/triage", "messages": GOOD})["model"] == "/models/triage"
    assert check({"messages": GOOD}) == {"messages": GOOD}


def test_presets_become_request_keywords():
    assert serve_client.preset_kwargs("strict_json") == {"temperature": 0.0}
    chat = serve_client.preset_kwargs("persona_chat")
    assert chat["temperature"] == 0.7
    assert json.loads(chat["extra_body"]["generation_config"]) == {
        "do_sample": True,
        "temperature": 0.7,
        "min_p": 0.05,
        "repetition_penalty": 1.05,
    }


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown engine 'tgi'"):
        serve_client.server_command("/tmp/x", 8000, engine="tgi")


def test_a_server_that_cannot_start_says_why(tmp_path):
    with pytest.raises(
        RuntimeError, match="exited with status 1 before it was healthy(.|\n)*no config.json"
    ):
        with serve_client.running(tmp_path, tmp_path, served_name="nothing"):
            pass


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """The guarded server on the offline base model; yields (server, unique marker of its command
    line)."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    key = f"sk-test-{uuid.uuid4().hex}"
    with serve_client.running(
        model_dir,
        tmp_path_factory.mktemp("serve"),
        served_name=name,
        max_prompt_tokens=256,
        api_key=key,
    ) as srv:
        yield srv
    assert srv.proc.returncode is not None
    assert serve_client.leftovers(name) == [], "a server process outlived its context"


def test_real_server_answers_like_the_openai_api(server):
    api = serve_client.client(server.base_url, api_key=server.api_key)
    assert [m.id for m in api.models.list().data] == [server.model]
    first = serve_client.chat(api, server.model, GOOD, "strict_json", max_tokens=24)
    second = serve_client.chat(api, server.model, GOOD, "strict_json", max_tokens=24)
    text = first.choices[0].message.content
    assert text and text == second.choices[0].message.content  # T=0 is deterministic
    assert first.choices[0].finish_reason in ("stop", "length")
    u = first.usage
    assert (
        u.prompt_tokens > 10
        and 0 < u.completion_tokens <= 24
        and u.total_tokens == u.prompt_tokens + u.completion_tokens
    )
    streamed = serve_client.stream_text(api, server.model, GOOD, max_tokens=24)
    assert (
        streamed["text"] == text
        and streamed["chunks"] >= 2
        and streamed["finish_reason"] == first.choices[0].finish_reason
    )


def test_real_server_refuses_bad_requests_and_keeps_serving(server):
    rows = serve_client.bad_requests(server, GOOD, oversized_tokens=300)
    by_name = {r["request"]: r for r in rows}
    assert [
        by_name[k]["status"]
        for k in (
            "unknown model",
            "empty message list",
            "malformed JSON body",
            "oversized prompt",
            "a role that does not exist",
            "negative max_tokens",
            "temperature as a word",
            "a 2 MB body",
        )
    ] == [404, 400, 400, 400, 400, 400, 400, 413], rows
    assert "accepts at most 256" in by_name["oversized prompt"]["message"]
    assert "'messages[0].role'" in by_name["a role that does not exist"]["message"]
    assert by_name["a 2 MB body"]["seconds"] < 5, (
        "the 413 must come before the body is parsed or tokenized"
    )
    assert by_name["good request after them"]["status"] == 200
    fields = serve_client.unsupported_fields(
        serve_client.client(server.base_url, api_key=server.api_key), server.model, GOOD
    )
    assert [r["status"] for r in fields] == [400, 400, 400], fields


def test_copy_cell_talks_to_a_real_server(server, tmp_path):
    src = "import sys\nsys.modules['helpers'] = None\n" + course.recipe_source(
        repo_root() / "notebooks" / "08_serving.ipynb"
    )
    script = tmp_path / "copy_cell.py"
    script.write_text(src)
    env = {
        **os.environ,
        "WORKBOOK_SERVER_URL": server.base_url,
        "OMP_NUM_THREADS": "2",
        serve.API_KEY_ENV: server.api_key,
    }
    res = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "strict_json: " in res.stdout and "persona_chat: " in res.stdout, res.stdout


def test_real_server_requires_its_key_except_for_health(server):
    base = server.base_url.rsplit("/v1", 1)[0]
    # health checks need no key
    assert serve_client.get(base + "/health")[0] == 200
    body = json.dumps({"model": server.model, "messages": GOOD, "max_tokens": 4}).encode()
    for key in ("", "sk-wrong"):
        status, text = serve_client.raw_post(
            server.base_url + "/chat/completions", body, api_key=key
        )
        assert status == 401 and "API key" in serve_client.error_message(text), (status, text)
    import openai

    with pytest.raises(openai.AuthenticationError):
        serve_client.client(server.base_url, api_key="sk-wrong").models.list()


def test_fuzz_malformed_requests_get_a_4xx_and_the_server_keeps_serving(server):
    """240 generated malformed requests (seed 0) against the real server: no 5xx, none unanswered
    within 10 s, and a good request gets a 200 afterwards. Prints the status codes by kind."""
    from collections import Counter

    url = server.base_url + "/chat/completions"
    table: dict[str, Counter] = {}
    for kind, body in serve_client.fuzz_requests(server.model, n=240, seed=0):
        try:
            status, _ = serve_client.raw_post(url, body, timeout=10, api_key=server.api_key)
        # a timeout or a dropped connection is a failure too
        except Exception as e:
            status = type(e).__name__
        table.setdefault(kind, Counter())[status] += 1
    print("\n".join(f"{kind:30s} {dict(c)}" for kind, c in table.items()))
    bad = {
        k: c
        for k, c in table.items()
        if any(not isinstance(s, int) or s >= 500 or s < 400 for s in c)
    }
    assert not bad, f"5xx, 2xx or no answer for malformed requests: {bad}"
    assert sum(sum(c.values()) for c in table.values()) == 240
    good = json.dumps({"model": server.model, "messages": GOOD, "max_tokens": 4}).encode()
    assert serve_client.raw_post(url, good, api_key=server.api_key)[0] == 200
    assert server.proc.poll() is None


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["/nonexistent/model"], "no such model folder"),
        (["{tmp}"], "no config.json"),
        (["{weightless}"], "no weights"),
        (["{model}", "--host", "0.0.0.0"], "set --api-key"),
        (["{model}", "--port", "{busy}"], "cannot listen on 127.0.0.1:"),
        (["{model}", "--prot", "1"], "unrecognized arguments: --prot"),
    ],
)
def test_cli_reports_bad_input_in_one_line(argv, needle, tmp_path, model_dir):
    import socket

    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text("{}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [
            a.format(
                tmp=tmp_path, weightless=weightless, model=model_dir, busy=busy.getsockname()[1]
            )
            for a in argv
        ]
        env = {k: v for k, v in os.environ.items() if k != serve.API_KEY_ENV}
        res = subprocess.run(
            [sys.executable, "-m", "helpers.serve", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=repo_root(),
        )
    assert res.returncode != 0 and needle in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr


def test_serving_bench_refuses_an_unknown_server_arm_in_one_line():
    """bench/serving.py names the bad --server-batching value and the choices, without a
    traceback, before any model loads."""
    res = subprocess.run(
        [sys.executable, "bench/serving.py", "--server-batching", "off,fast"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert (
        res.stderr.strip()
        == "serving.py: --server-batching 'off,fast': choose from off, continuous"
    ), res.stderr
