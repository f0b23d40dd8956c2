"""helpers.serve: the request guard, and a real guarded `transformers serve` queried with the openai client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from helpers import course, serve
from helpers.runtime import repo_root

GOOD = [{"role": "system", "content": "Extract the ticket as JSON."}, {"role": "user", "content": "Where is ORD-123456?"}]


def words(messages):
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def check(body, limit=50):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return serve.check_request(raw, "triage", words, limit, ("/models/triage",))


@pytest.mark.parametrize("body, status, needle", [
    (b'{"model": "triage", "messages": [', 400, "malformed JSON body: Expecting value at line 1 column 34"),
    ([1, 2], 400, "must be a JSON object"),
    ({"model": "gpt-9", "messages": GOOD}, 404, "'gpt-9' is not served here; this server serves 'triage'"),
    ({"model": "triage", "messages": []}, 400, "'messages' must be a non-empty list"),
    ({"model": "triage", "messages": [{"content": "hi"}]}, 400, "messages[0] needs a 'role'"),
    ({"model": "triage", "messages": GOOD, "logprobs": True}, 400, "'logprobs' is not supported"),
    ({"model": "triage", "messages": GOOD, "n": 3}, 400, "'n' is not supported"),
    ({"model": "triage", "messages": GOOD, "response_format": {"type": "json_object"}}, 400, "'response_format'"),
    ({"model": "triage", "messages": [{"role": "user", "content": "x " * 60}]}, 400, "the prompt is 60 tokens; this server accepts at most 50"),
])
def test_guard_refuses_bad_requests_with_a_clear_message(body, status, needle):
    got = check(body)
    assert isinstance(got, tuple), got
    assert got[0] == status and needle in got[1]["error"]["message"], got


def test_guard_passes_good_requests():
    assert check({"model": "triage", "messages": GOOD, "n": 1, "logprobs": False})["messages"] == GOOD
    assert check({"model": "/models/triage", "messages": GOOD})["model"] == "/models/triage"   # the folder is an alias
    assert check({"messages": GOOD}) == {"messages": GOOD}


def test_presets_become_request_keywords():
    assert serve.preset_kwargs("strict_json") == {"temperature": 0.0}
    chat = serve.preset_kwargs("persona_chat")
    assert chat["temperature"] == 0.7
    assert json.loads(chat["extra_body"]["generation_config"]) == {"do_sample": True, "temperature": 0.7, "min_p": 0.05,
                                                                    "repetition_penalty": 1.05}


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown engine 'tgi'"):
        serve.server_command("/tmp/x", 8000, engine="tgi")


def test_a_server_that_cannot_start_says_why(tmp_path):
    with pytest.raises(RuntimeError, match="exited with status 1 before it was healthy(.|\n)*no config.json"):
        with serve.running(tmp_path, tmp_path, served_name="nothing"):
            pass


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """The guarded server on the offline base model; yields (server, unique marker of its command line)."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    with serve.running(model_dir, tmp_path_factory.mktemp("serve"), served_name=name, max_prompt_tokens=256) as srv:
        yield srv
    assert srv.proc.returncode is not None
    assert serve.leftovers(name) == [], "a server process outlived its context"


def test_real_server_answers_like_the_openai_api(server):
    api = serve.client(server.base_url)
    assert [m.id for m in api.models.list().data] == [server.model]
    first = serve.chat(api, server.model, GOOD, "strict_json", max_tokens=24)
    second = serve.chat(api, server.model, GOOD, "strict_json", max_tokens=24)
    text = first.choices[0].message.content
    assert text and text == second.choices[0].message.content          # T=0 is deterministic
    assert first.choices[0].finish_reason in ("stop", "length")
    u = first.usage
    assert u.prompt_tokens > 10 and 0 < u.completion_tokens <= 24 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    streamed = serve.stream_text(api, server.model, GOOD, max_tokens=24)
    assert streamed["text"] == text and streamed["chunks"] >= 2 and streamed["finish_reason"] == first.choices[0].finish_reason


def test_real_server_refuses_bad_requests_and_keeps_serving(server):
    rows = serve.bad_requests(server, GOOD, oversized_tokens=300)
    by_name = {r["request"]: r for r in rows}
    assert [by_name[k]["status"] for k in ("unknown model", "empty message list", "malformed JSON body", "oversized prompt")] \
        == [404, 400, 400, 400], rows
    assert "accepts at most 256" in by_name["oversized prompt"]["message"]
    assert by_name["good request after them"]["status"] == 200
    fields = serve.unsupported_fields(serve.client(server.base_url), server.model, GOOD)
    assert [r["status"] for r in fields] == [400, 400, 400], fields


def test_copy_cell_talks_to_a_real_server(server, tmp_path):
    src = "import sys\nsys.modules['helpers'] = None\n" + course.recipe_source(repo_root() / "notebooks" / "08_serving.ipynb")
    script = tmp_path / "copy_cell.py"
    script.write_text(src)
    env = {**os.environ, "WORKBOOK_SERVER_URL": server.base_url, "OMP_NUM_THREADS": "2"}
    res = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "strict_json: " in res.stdout and "persona_chat: " in res.stdout, res.stdout
