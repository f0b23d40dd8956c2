"""Anthropic as frontier baseline, teacher, judge and auditor. Runs only when ANTHROPIC_API_KEY is set."""

from __future__ import annotations

import os

from tqdm.auto import tqdm

DEFAULT_MODEL = "claude-sonnet-4-6"


def api_key_present() -> bool:
    """True when a real Anthropic call is possible (the key's value is never read into output)."""
    return bool(os.environ.get("ANTHROPIC_API_KEY", "").strip())


def client(http_client=None):
    """An anthropic.Anthropic client; tests pass an httpx2.Client with a MockTransport."""
    import anthropic

    kwargs = {"http_client": http_client} if http_client is not None else {}
    return anthropic.Anthropic(max_retries=2, **kwargs)


def complete(cl, model: str, system: str, conversation: list[dict], max_tokens: int = 64) -> str:
    """One Messages call at temperature 0; returns the text of the reply."""
    msgs = [m for m in conversation if m["role"] != "system"]
    resp = cl.messages.create(model=model, system=system, messages=msgs, max_tokens=max_tokens,
                              extra_body={"temperature": 0})
    return "".join(b.text for b in resp.content if getattr(b, "type", "") == "text").strip()


def classify(cl, model: str, conversations: list[list[dict]], max_tokens: int = 64) -> list[str]:
    """Run the same few-shot conversations the small model sees through Claude, one call each."""
    outs = []
    for conv in tqdm(conversations, desc=f"{model}", leave=False):
        system = "\n".join(m["content"] for m in conv if m["role"] == "system")
        outs.append(complete(cl, model, system, conv, max_tokens))
    return outs
