"""Notebook 05's preference data: reply pairs, unpaired thumbs for KTO, their loaders, and the
offline reply judge.

The reply task reuses the triage tickets: the assistant drafts a short answer to the customer. A
good reply is polite, short and actionable, and asks for the order number when an order-bound ticket
lacks one (never when it has one). The logs were written mostly by an old template bot with
recurring flaws (BOT_RATES); only the flawless minority got a thumbs-up, and each pair sets a good
reply against the bot's flawed version of it. `write_all(data_dir)` regenerates the committed files
byte for byte.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from helpers.data import (
    DataError,
    data_dir,
    gold,
    read_checked,
    read_jsonl,
    take,
    ticket,
    write_jsonl,
)

REPLY_SYSTEM = "Write a short, helpful reply to this customer."
# The old template bot that wrote most of the logs, and how often each of its recurring flaws shows
# in a reply: an upsell footer, a request for the order number the customer already gave, an
# invented policy, a long preamble. A canned acknowledgement replaces the whole answer: without it
# every flawed reply would be longer than its good version, and DPO would learn "shorter wins"
# instead of the flaws.
BOT_RATES = {
    "upsell": 0.7,
    "redundant_ask": 0.6,
    "invented_policy": 0.15,
    "ramble": 0.15,
    "canned": 0.2,
}
FAILURES = tuple(BOT_RATES)
ORDER_BOUND = ("order_status", "refund_request", "shipping_change")
FILES = {
    "pairs": "pref_replies.jsonl",
    "kto": "kto_replies.jsonl",
    "eval": "reply_prompts_eval.jsonl",
}
SIZES = {"pairs": 480, "kto": 480, "eval": 120}
SEED = 55

OPENERS = (
    "Thanks for getting in touch.",
    "Thanks for letting us know.",
    "Sorry about the trouble.",
    "Thank you for your message.",
    "Sorry for the hassle.",
    "Thanks for reaching out.",
)
ACTIONS = {
    "order_status": (
        "I'm checking where {order} is and will send you the tracking details today.",
        "I'll look up {order} with the carrier and update you today.",
    ),
    "refund_request": (
        "I've started the refund for {order}; you'll get a confirmation email once "
        "it is processed.",
        "I'm processing the refund for {order} and will confirm by email.",
    ),
    "shipping_change": (
        "I'll change the delivery for {order} if it hasn't shipped yet and confirm by email.",
        "I'm updating the shipping details for {order} now and will confirm shortly.",
    ),
    "cancel_subscription": (
        "I've cancelled your subscription, so you won't be charged again.",
        "Your subscription is cancelled and no further payments will be taken.",
    ),
    "billing_issue": (
        "I'm reviewing the charge now and will correct anything billed in error.",
        "I'll check your billing history and fix any wrong charge.",
    ),
    "technical_problem": (
        "Could you tell me your device and app version? I'll pass it to our tech team right away.",
        "I've logged the problem with our tech team; a restart of the app may help meanwhile.",
    ),
    "account_access": (
        "Please use the 'Forgot password' link; I'll stay on this ticket until you're back in.",
        "I've sent a secure sign-in link to the email on your account.",
    ),
    "product_question": (
        "Good question: I'll check the details and reply today.",
        "Happy to help; I'll confirm the details for you shortly.",
    ),
}
ASKS = (
    "Could you send me your order number (it starts with ORD-)?",
    "Could you share the order number so I can find it?",
)
CANNED = (
    "Your message has been received and added to our queue.",
    "We have logged your request.",
    "Your ticket is now in our system.",
)
REDUNDANT_ASKS = (
    "Could you also confirm your order number for me?",
    "Please reply with your order number to continue.",
)
CLOSERS = ("", "Have a good day.", "Thanks for your patience.")
# A good reply often ends with one more useful line; the bot never writes one, so a flawed reply is
# not always longer.
FOLLOW_UPS = (
    "You'll get an email from us as soon as it's done.",
    "Just reply to this message if anything else comes up.",
    "You don't need to do anything else for now.",
)
UPSELL = (
    "Upgrade to Premium Plus for 20% off.",
    "Premium members get priority help.",
    "Before you go: our Premium Plus membership gives 20% off every order, so upgrading is "
    "the smarter choice.",
    "You shouldn't cancel: most customers who stay on our Premium plan save more than they expect.",
    "While you wait, why not upgrade to Premium Plus? It's only $9.99 a month and includes "
    "priority help.",
)
RAMBLE = (
    "Thank you so much for taking the time to write to us today, we truly value each and "
    "every customer.",
    "We know how important this is to you and we always try our very best.",
    "As you may know, our team handles a very large number of messages every single day.",
    "Every message is looked at as carefully as we possibly can, in the order it arrived.",
    "In any case, I wanted to reassure you that your message has been received by the right "
    "people.",
    "We appreciate your patience and understanding while we work through everything on our side.",
)
POLICIES = (
    "Per our policy, this is only possible within 24 hours of purchase and carries a $15 "
    "processing fee.",
    "Company policy says changes like this take 30 business days and are non-refundable.",
)

# The offline judge's rules: the properties the generator controls, read back from any reply.
UPSELL_RE = re.compile(
    r"premium|upgrad|membership|% off|shouldn't cancel|smarter "
    r"choice|\$\d+\.\d\d a month",
    re.I,
)
REFUSAL_RE = re.compile(
    r"can't help|cannot help|unable to (help|assist)|can't assist|not able to "
    r"help",
    re.I,
)
POLICY_RE = re.compile(
    r"polic(y|ies)|processing fee|non-refundable|within \d+ (hours|days)|\d+ "
    r"business days",
    re.I,
)
ASK_RE = re.compile(r"order (number|id)|ORD-(?!\d)", re.I)
# A next step: something the agent does or asks for. A greeting alone ("Thanks for getting in
# touch.") has none.
NEXT_STEP_RE = re.compile(
    r"\bI('ll| will|'ve| have|'m| am)\b|\b(could|can) you\b|\bplease\b|is "
    r"cancelled|"
    r"won't be charged|no further",
    re.I,
)
MAX_WORDS = 60
CHECKS = (
    "a_reply",
    "next_step",
    "concise",
    "no_upsell",
    "no_refusal",
    "no_invented_policy",
    "order_handling",
)


def _good_parts(rng: random.Random, intent: str, order_id: str | None) -> list[str]:
    """A good reply's sentences: opener, the order-number ask where the id is missing, the
    action, a closer."""
    parts = [rng.choice(OPENERS)]
    if intent in ORDER_BOUND and order_id is None:
        parts.append(rng.choice(ASKS))
        parts.append(
            rng.choice(ACTIONS[intent]).format(order="it").replace(" it ", " your order ", 1)
        )
    else:
        parts.append(
            rng.choice(ACTIONS[intent]).format(
                order=f"order {order_id}" if order_id else "your order"
            )
        )
    parts.append(rng.choice(FOLLOW_UPS) if rng.random() < 0.5 else "")
    parts.append(rng.choice(CLOSERS))
    return [p for p in parts if p]


def _with_flaws(rng: random.Random, parts: list[str], flaws: tuple[str, ...]) -> str:
    """The old template bot's version of a good reply: its recurring flaws put in where the bot
    put them."""
    opener, body = parts[0], parts[1:]
    if "canned" in flaws:  # the answer itself is replaced by a canned line
        return f"{opener} {rng.choice(CANNED)}"
    out = [opener, *(rng.sample(RAMBLE, 4) if "ramble" in flaws else [])]
    # the bot answers, but never follows up
    core = [p for p in body if p not in FOLLOW_UPS and p not in CLOSERS]
    out += core[:1] + ([rng.choice(REDUNDANT_ASKS)] if "redundant_ask" in flaws else []) + core[1:]
    out += [rng.choice(POLICIES)] if "invented_policy" in flaws else []
    out += [rng.choice(UPSELL)] if "upsell" in flaws else []
    return " ".join(out)


def _bot_flaws(
    rng: random.Random, order_id: str | None, at_least_one: bool = False
) -> tuple[str, ...]:
    """Which of the bot's recurring flaws one reply shows, each drawn at its rate in BOT_RATES."""
    while True:
        flaws = tuple(
            f
            for f, rate in BOT_RATES.items()
            if rng.random() < rate and (f != "redundant_ask" or order_id is not None)
        )
        # the canned line replaces the whole reply: nothing else of the bot's is left
        if "canned" in flaws:
            flaws = ("canned",)
        if flaws or not at_least_one:
            return flaws


def _chosen(rng: random.Random, intent: str, order_id: str | None) -> str:
    """A polite, short, actionable reply that asks for the order number when an order-bound
    ticket lacks one."""
    return " ".join(_good_parts(rng, intent, order_id))


def prompt(text: str) -> list[dict]:
    """The reply task's chat prompt for one ticket."""
    return [{"role": "system", "content": REPLY_SYSTEM}, {"role": "user", "content": text}]


def make_pairs(rows: list[dict], seed: int = SEED) -> list[dict]:
    """One pair per ticket (TRL's conversational format): a good reply, and the bot's version of
    it with >= 1 flaw."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        g = gold(r)
        parts = _good_parts(rng, g["intent"], g["order_id"])
        flaws = _bot_flaws(rng, g["order_id"], at_least_one=True)
        out.append(
            {
                "id": f"pair-{r['id']}",
                "prompt": prompt(ticket(r)),
                "chosen": [{"role": "assistant", "content": " ".join(parts)}],
                "rejected": [{"role": "assistant", "content": _with_flaws(rng, parts, flaws)}],
                "failure": "+".join(flaws),
                "intent": g["intent"],
                "order_id": g["order_id"],
            }
        )
    return out


def make_unpaired(rows: list[dict], seed: int = SEED + 1) -> list[dict]:
    """The support logs: one bot reply per ticket with its flaws drawn at BOT_RATES; thumbs-up
    exactly when flawless."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        g = gold(r)
        parts = _good_parts(rng, g["intent"], g["order_id"])
        flaws = _bot_flaws(rng, g["order_id"])
        out.append(
            {
                "id": f"kto-{r['id']}",
                "prompt": prompt(ticket(r)),
                "completion": [{"role": "assistant", "content": _with_flaws(rng, parts, flaws)}],
                "label": not flaws,
                "failure": "+".join(flaws) or None,
                "intent": g["intent"],
                "order_id": g["order_id"],
            }
        )
    return out


def make_eval_prompts(rows: list[dict], seed: int = SEED + 2) -> list[dict]:
    """Held-out reply prompts (eval tickets) with the facts the judge needs and one reference
    reply."""
    rng = random.Random(seed)
    return [
        {
            "id": f"reply-{r['id']}",
            "prompt": prompt(ticket(r)),
            "intent": gold(r)["intent"],
            "order_id": gold(r)["order_id"],
            "reference": _chosen(rng, gold(r)["intent"], gold(r)["order_id"]),
        }
        for r in rows
    ]


def flaw_shares(rows: list[dict]) -> dict[str, float]:
    """Share of rows (logged replies or rejected sides) showing each of the bot's flaws."""
    return {
        f: sum(f in (r["failure"] or "").split("+") for r in rows) / len(rows) for f in FAILURES
    }


def card(sizes: dict[str, int], pairs: list[dict], logs: list[dict]) -> str:
    """The data card for the three preference files."""

    def shares(rows: list[dict]) -> str:
        return ", ".join(f"{f} {v:.0%}" for f, v in flaw_shares(rows).items())

    good = sum(r["label"] for r in logs)
    return "\n".join(
        [
            "# Data card: preference data for notebook 05",
            "",
            "A second, small task on the same synthetic tickets: draft a short reply to the "
            "customer. "
            "The logs were "
            "written mostly by an old template bot with five recurring flaws, each drawn "
            "independently "
            "at its rate "
            f"({', '.join(f'{f} {r:.0%}' for f, r in BOT_RATES.items())}; redundant_ask only where "
            "the "
            "ticket gives its "
            "order id; a canned acknowledgement replaces the answer). The bot never adds the "
            "follow-up "
            "line that half of the good "
            "replies end with, so a flawed reply is not always the longer one (DPO would otherwise "
            "learn that shorter wins). "
            "Only the flawless minority got a thumbs-up.",
            "",
            f"- `{FILES['kto']}` ({sizes['kto']} rows): the support logs. `prompt`, `completion`, "
            "`label` (true = thumbs "
            f"up = no flaw: {good} of {len(logs)}), `failure` (the flaws, joined by '+'). Notebook "
            "05's SFT stage imitates "
            "these replies with the labels ignored, as a team fine-tuning on its logs would; KTO "
            "reads "
            "the labels. Share "
            f"of replies with each flaw: {shares(logs)}. Tickets: rows "
            f"{sizes['pairs']}-{sizes['pairs'] + sizes['kto'] - 1} "
            "of `train.jsonl`, one reply per ticket, never a pair.",
            f"- `{FILES['pairs']}` ({sizes['pairs']} rows): `prompt` (system + ticket), `chosen` "
            "(the "
            "good reply), "
            "`rejected` (the bot's version of the same reply with at least one flaw), TRL's "
            "conversational preference "
            "format, plus `failure`, `intent`, `order_id`. Share of rejected replies with each "
            "flaw: "
            f"{shares(pairs)}. "
            f"Tickets: the first {sizes['pairs']} of `train.jsonl`.",
            f"- `{FILES['eval']}` ({sizes['eval']} rows): held-out reply prompts from "
            "`eval.jsonl`, "
            "with `intent`, "
            "`order_id` and one reference reply.",
            "- good reply: polite, at most two short sentences of substance, actionable; asks for "
            "the "
            "order number "
            "when an order-bound ticket (order status, refund, shipping change) has none, and "
            "never "
            "when it has one.",
            f"- generator: `helpers.preferences` (seed {SEED}); `python -m helpers.preferences` "
            "rewrites the files "
            "byte for byte. Synthetic: no customer or agent wrote any of it.",
            "",
        ]
    )


def write_all(target: Path | None = None) -> dict[str, int]:
    """Generate the three preference files and their card from train.jsonl and eval.jsonl."""
    target = Path(target or data_dir())
    train, _ = read_jsonl(data_dir() / "train.jsonl")
    ev, _ = read_jsonl(data_dir() / "eval.jsonl")
    n_pairs, n_kto = SIZES["pairs"], SIZES["kto"]
    made = {
        "pairs": make_pairs(train[:n_pairs]),
        "kto": make_unpaired(train[n_pairs : n_pairs + n_kto]),
        "eval": make_eval_prompts(ev[: SIZES["eval"]]),
    }
    for key, rows in made.items():
        write_jsonl(target / FILES[key], rows)
    sizes = {k: len(v) for k, v in made.items()}
    (target / "preferences.card.md").write_text(
        card(sizes, made["pairs"], made["kto"]), encoding="utf-8"
    )
    return sizes


def _check_turn(value: object, path: Path, line: int, fld: str) -> None:
    """A one-message assistant turn: [{"role": "assistant", "content": str}]."""
    if (
        not isinstance(value, list)
        or len(value) != 1
        or not isinstance(value[0], dict)
        or value[0].get("role") != "assistant"
        or not isinstance(value[0].get("content"), str)
    ):
        raise DataError(path, line, fld, 'expected [{"role": "assistant", "content": <text>}]')
    if not value[0]["content"].strip():
        raise DataError(path, line, fld, "the reply is empty")


def check_row(rec: object, path: Path, line: int, kind: str) -> dict:
    """Validate one preference row ('pairs' or 'kto'); raise DataError naming the file, line and
    field."""
    if not isinstance(rec, dict):
        raise DataError(path, line, "<row>", f"expected a JSON object, got {type(rec).__name__}")
    p = rec.get("prompt")
    if not (
        isinstance(p, list)
        and p
        and all(isinstance(m, dict) for m in p)
        and p[-1].get("role") == "user"
    ):
        raise DataError(
            path, line, "prompt", "expected a list of messages ending with the user's ticket"
        )
    if kind == "pairs":
        for fld in ("chosen", "rejected"):
            if fld not in rec:
                raise DataError(path, line, fld, "missing")
            _check_turn(rec[fld], path, line, fld)
        if rec["chosen"][0]["content"].strip() == rec["rejected"][0]["content"].strip():
            raise DataError(path, line, "rejected", "identical to chosen: the pair teaches nothing")
    else:
        if "completion" not in rec:
            raise DataError(path, line, "completion", "missing")
        _check_turn(rec["completion"], path, line, "completion")
        if not isinstance(rec.get("label"), bool):
            raise DataError(
                path, line, "label", f"expected true or false, got {rec.get('label')!r}"
            )
    return rec


def load(
    path: str | Path, kind: str = "pairs", strict: bool = True
) -> tuple[list[dict], list[DataError]]:
    """Read preference JSONL; strict raises on the first bad row, lenient returns every error
    (none is silent)."""
    if kind not in ("pairs", "kto"):
        raise ValueError(f"kind must be 'pairs' or 'kto', got {kind!r}")
    return read_checked(Path(path), lambda rec, where, n: check_row(rec, where, n, kind), strict)


def load_data(name: str, limit: int | None = None, param: str = "limit") -> list[dict]:
    """One committed preference file by key ('pairs', 'kto' or 'eval'), strictly; optionally its
    first `limit` rows."""
    kind = "kto" if name == "kto" else "pairs"
    # plain rows (prompt + facts); a broken line still fails with its file and line
    if name == "eval":
        rows, _ = read_checked(data_dir() / FILES["eval"], lambda rec, where, n: rec)
    else:
        rows, _ = load(data_dir() / FILES[name], kind)
    return take(rows, limit or None, param, f"data/{FILES[name]}")


def reply_checks(reply: str, intent: str, order_id: str | None) -> dict[str, bool]:
    """The offline judge's checks on one reply: each True is a property a good support reply has."""
    words = len(reply.split())
    stripped = reply.strip()
    is_json = stripped.startswith("{") and stripped.endswith("}")
    if intent in ORDER_BOUND and order_id is None:
        order_ok = bool(ASK_RE.search(reply)) and "?" in reply
    elif order_id:  # the customer gave it: asking again is the bot's redundant ask
        order_ok = not ASK_RE.search(reply)
    else:
        order_ok = True
    return {
        "a_reply": words >= 5 and not is_json,
        "next_step": bool(NEXT_STEP_RE.search(reply)),
        "concise": words <= MAX_WORDS,
        "no_upsell": not UPSELL_RE.search(reply),
        "no_refusal": not REFUSAL_RE.search(reply),
        "no_invented_policy": not POLICY_RE.search(reply),
        "order_handling": order_ok,
    }


def check_rates(replies: list[str], rows: list[dict]) -> dict[str, float]:
    """Share of replies passing each of the judge's checks (rows carry `intent` and `order_id`)."""
    if len(replies) != len(rows) or not rows:
        raise ValueError(
            f"check_rates needs one reply per row; got {len(replies)} replies, {len(rows)} rows"
        )
    passed = [reply_checks(r, row["intent"], row["order_id"]) for r, row in zip(replies, rows)]
    return {k: sum(p[k] for p in passed) / len(passed) for k in CHECKS}


def reply_score(reply: str, intent: str, order_id: str | None) -> int:
    """How many of the judge's checks a reply passes (0-7); a non-reply (JSON, a few words)
    scores 0."""
    checks = reply_checks(reply, intent, order_id)
    return sum(checks.values()) if checks["a_reply"] else 0


def rule_verdict(reply_a: str, reply_b: str, intent: str, order_id: str | None) -> str:
    """The offline stand-in judge: 'A', 'B' or 'tie' by reply_score; symmetric, so it has no
    position bias."""
    a, b = reply_score(reply_a, intent, order_id), reply_score(reply_b, intent, order_id)
    return "A" if a > b else "B" if b > a else "tie"


def win_rate(verdicts: list[str]) -> float:
    """Share of comparisons won by the candidate (verdict 'A'), ties counting half."""
    if not verdicts:
        raise ValueError("win_rate needs at least one verdict")
    return (sum(v == "A" for v in verdicts) + 0.5 * sum(v == "tie" for v in verdicts)) / len(
        verdicts
    )


if __name__ == "__main__":
    import sys

    print(write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
