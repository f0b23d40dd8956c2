"""PII scrubbing with typed placeholders, and a multilingual prompt-injection scan (notebook 02).

Both are rule-based on purpose: they are fast, explainable and testable. Notebook 02 measures
their recall and precision against the defects the generator planted, and shows their misses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from helpers.data import ORDER_ID

STREET_WORDS = (
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Way|Drive|Dr|Boulevard|Blvd"
    r"|Close|Court|Place|Terrace)"
)
# A capitalised word (O'Neill and Smith-Jones too) that is not a common sentence opener.
OPENERS = (
    r"(?!(?:You|Your|My|I|It|Its|The|This|That|Call|Ship|Text|Email|Phone|Please|Thanks"
    r"|Account|Card|Contact)\b)"
)
NAME = rf"{OPENERS}[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:-[A-Z][a-z]+)?"
FULL_NAME = rf"{NAME}\s+(?:(?:van|de|da|von)\s+)?{NAME}"  # first + last name, optional particle

PII_PATTERNS: dict[str, list[re.Pattern]] = {
    "email": [re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")],
    "card": [re.compile(r"\b(?:\d[ -]?){12,18}\d\b")],
    "phone": [
        re.compile(r"(?<![\w-])\+?\d{1,3}[ .-]\d{2,5}[ .-]\d{3,4}[ .-]?\d{0,4}\b"),
        re.compile(r"(?<![\w-])\(\d{3}\)\s?\d{3}[ .-]\d{4}\b"),
        re.compile(r"(?<![\w-])\d{3}[.]\d{3}[.]\d{4}\b"),
        re.compile(r"(?<![\w-])0\d{2,4}[ ]\d{3}[ ]\d{3,4}\b"),
    ],
    "address": [
        re.compile(
            rf"\b\d{{1,5}}\s+(?:[A-Z][a-z]+\s+){{1,3}}{STREET_WORDS}\b\.?(?:,\s*[A-Z][a-z]+)?"
        )
    ],
    "name": [
        re.compile(
            r"(?i:\bmy name is|\bthis is|\baccount "
            rf"holder:?|\bregards,?|\bthanks,|\bcheers,|\bsincerely,?)\s+({FULL_NAME})"
        ),
        re.compile(rf"(?:^|\s)[-–—]\s*({FULL_NAME})\b"),
    ],
}
PLACEHOLDER = {
    "email": "<EMAIL>",
    "card": "<CARD>",
    "phone": "<PHONE>",
    "address": "<ADDRESS>",
    "name": "<NAME>",
}

INJECTION_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in [
        r"\b(ignore|disregard|forget|override)\b.{0,40}"
        r"\b(instructions?|rules|prompt|schema|guidelines)\b",
        r"\b(you are now|act as|pretend to be)\b.{0,30}\b(mode|admin|developer|assistant|dan)\b",
        r"^\s*(system|assistant)\s*:|\bsystem:\s*new\b|\bnew (policy|instructions)\b",
        r"\b(reveal|print|show)\b.{0,30}\bsystem prompt\b",
        r"\balways (classify|answer|reply|output)\b",
        r"\bignora\w*\b.{0,40}\b(instrucciones|istruzioni)\b",  # es, it
        r"\bignor\w*\b.{0,40}\binstruç\w*\b",  # pt
        r"\b(ignoriere|vergiss)\w*\b.{0,40}\banweisung\w*\b",  # de
        r"\boubli\w*\b.{0,40}\binstructions?\b",  # fr
        r"\bnegeer\b.{0,40}\binstructies\b",  # nl
    ]
]


def luhn_ok(digits: str) -> bool:
    """True when a digit string passes the Luhn check (cards do; most order or phone numbers
    don't)."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        v = int(d) * (2 if i % 2 else 1)
        total += v - 9 if v > 9 else v
    return total % 10 == 0


@dataclass
class Hit:
    """One PII detection: its type, the matched text and where it was."""

    type: str
    value: str
    start: int
    end: int


def find_pii(text: str) -> list[Hit]:
    """Every PII span in text, non-overlapping, earliest and longest first; order ids are never
    PII."""
    protected = [(m.start(), m.end()) for m in ORDER_ID.finditer(text)]
    hits: list[Hit] = []
    for kind, patterns in PII_PATTERNS.items():
        for pat in patterns:
            for m in pat.finditer(text):
                g = 1 if pat.groups else 0
                s, e = m.start(g), m.end(g)
                value = text[s:e].strip()
                if kind == "card" and not luhn_ok(re.sub(r"\D", "", value)):
                    continue
                if kind == "phone" and len(re.sub(r"\D", "", value)) < 9:
                    continue
                hits.append(Hit(kind, value, s, s + len(value)))
    hits.sort(key=lambda h: (h.start, -(h.end - h.start)))
    out: list[Hit] = []
    for h in hits:
        clash = any(
            h.start < b and a < h.end for a, b in protected + [(o.start, o.end) for o in out]
        )
        if not clash:
            out.append(h)
    return out


def scrub_pii(text: str) -> tuple[str, list[Hit]]:
    """Replace every PII span with its typed placeholder, e.g. <EMAIL>; return the text and the
    hits."""
    hits = find_pii(text)
    for h in sorted(hits, key=lambda h: h.start, reverse=True):
        text = text[: h.start] + PLACEHOLDER[h.type] + text[h.end :]
    return text, hits


TRIGGER_WORDS = (
    "ignore",
    "ignora",
    "ignoriere",
    "disregard",
    "forget",
    "override",
    "instructions",
    "instrucciones",
    "istruzioni",
    "anweisungen",
    "instructies",
    "previous",
    "anteriores",
    "vorherigen",
    "system",
    "prompt",
    "reveal",
    "classify",
    "policy",
    "admin",
    "oubliez",
    "negeer",
    "vergiss",
)


def one_edit_variants(word: str) -> set[str]:
    """Every string one deletion, adjacent swap, substitution or insertion away from word."""
    letters = "abcdefghijklmnopqrstuvwxyzäöüßéèçãõñ"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in letters}
    out |= {a + c + b for a, b in splits for c in letters}
    return out


@lru_cache(maxsize=1)
def _typo_map() -> dict[str, str]:
    """Misspelling -> trigger word, for every one-edit variant of every trigger word (built
    once)."""
    return {v: t for t in TRIGGER_WORDS for v in one_edit_variants(t) if len(v) >= 5}


def fix_trigger_typos(text: str) -> str:
    """Rewrite words one edit away from an injection trigger word (e.g. 'insturctions') to that
    word."""
    typos = _typo_map()
    return re.sub(r"\w+", lambda m: typos.get(m.group(0).lower(), m.group(0)), text)


def injection_match(text: str) -> str | None:
    """The first injection-like phrase in text (tolerating one typo per trigger word), or None."""
    for candidate in (text, fix_trigger_typos(text)):
        for pat in INJECTION_PATTERNS:
            if m := pat.search(candidate):
                return m.group(0)
    return None
