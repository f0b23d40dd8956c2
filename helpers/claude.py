"""Anthropic as frontier baseline, teacher, judge and auditor. Runs only when ANTHROPIC_API_KEY
is set."""

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
    resp = cl.messages.create(
        model=model,
        system=system,
        messages=msgs,
        max_tokens=max_tokens,
        extra_body={"temperature": 0},
    )
    return "".join(b.text for b in resp.content if getattr(b, "type", "") == "text").strip()


def classify(cl, model: str, conversations: list[list[dict]], max_tokens: int = 64) -> list[str]:
    """Run the same few-shot conversations the small model sees through Claude, one call each."""
    outs = []
    for conv in tqdm(conversations, desc=f"{model}", leave=False):
        system = "\n".join(m["content"] for m in conv if m["role"] == "system")
        outs.append(complete(cl, model, system, conv, max_tokens))
    return outs


JUDGE_MODEL = DEFAULT_MODEL  # the one place the reply judge's model id lives (notebook 05)
PAIRWISE_SYSTEM = (
    "You judge customer-support replies. A good reply is polite, short and "
    "actionable, asks for the "
    "order number when an order-related ticket lacks one, never pushes an upsell, "
    "never refuses a "
    "valid request, and never invents a policy or fee. Answer with one token: A, B, "
    "or TIE."
)


class JudgeError(ValueError):
    """The judge's answer could not be read as a verdict."""


def parse_verdict(text: str) -> str:
    """'A', 'B' or 'tie' from the judge's answer; anything else raises JudgeError quoting the
    answer."""
    word = text.strip().strip(".*").upper()
    if word in ("A", "B"):
        return word
    if word in ("TIE", "T"):
        return "tie"
    raise JudgeError(f"judge answer {text[:60]!r} is not A, B or TIE")


TRIAGE_PAIRWISE_SYSTEM = (
    "You judge two triage outputs for one customer-support ticket. The right "
    "output is strict JSON "
    "with exactly intent, urgency (low|medium|high) and order_id (the "
    "ticket's ORD- number or "
    "null), and its labels fit the ticket. Answer with one token: A, B, or "
    "TIE."
)


def pairwise(
    cl, model: str, ticket: str, reply_a: str, reply_b: str, system: str = PAIRWISE_SYSTEM
) -> str:
    """One pairwise comparison at temperature 0: which output for this ticket is better ('A', 'B'
    or 'tie')."""
    user = (
        f"<ticket>{ticket}</ticket>\n<reply_a>{reply_a}</reply_a>\n"
        f"<reply_b>{reply_b}</reply_b>\nWhich reply is better?"
    )
    return parse_verdict(
        complete(cl, model, system, [{"role": "user", "content": user}], max_tokens=5)
    )


def judge_both_orders(
    cl, model: str, items: list[tuple[str, str, str]], system: str = PAIRWISE_SYSTEM
) -> dict:
    """Judge (ticket, candidate, baseline) triples in both orders; win rate, position bias and
    unreadable answers."""
    wins, first_pos, unparsed, n, verdicts = 0.0, 0, 0, 0, []
    for ticket, cand, base in tqdm(items, desc=f"judge {model}", leave=False):
        try:
            v1, v2 = (
                pairwise(cl, model, ticket, cand, base, system),
                pairwise(cl, model, ticket, base, cand, system),
            )
        except JudgeError:
            unparsed += 1
            continue
        n += 1
        verdicts.append((v1, v2))
        score = {"A": 1.0, "tie": 0.5, "B": 0.0}
        wins += (score[v1] + 1.0 - score[v2]) / 2  # the candidate is A first, then B
        first_pos += (v1 == "A") + (v2 == "A")
    return {
        "n": n,
        "win_rate": wins / n if n else None,
        "first_position_share": first_pos / (2 * n) if n else None,
        "unparsed": unparsed,
        "verdicts": verdicts,
    }
