"""Prompts for the triage task: a bare zero-shot prompt and an XML-structured few-shot prompt."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.data import gold, intents, ticket

# the SFT recipe, which holds the trained prompt
RECIPE_PATH = Path(__file__).with_name("recipes") / "sft.yaml"

ZERO_SHOT_SYSTEM = (
    "Classify the customer support ticket. Reply with JSON only, with keys "
    "intent, urgency and order_id."
)


def train_system_prompt() -> str:
    """The one-line prompt the fine-tuned model is trained and served with (from the SFT recipe
    file)."""
    import yaml

    return str(yaml.safe_load(RECIPE_PATH.read_text())["system_prompt"])


# saved next to an adapter's weights: the system prompt it was trained with
PROMPT_FILE = "system_prompt.txt"
# what 'trained' mode sends when set (use_trained_prompt); None: the recipe file's prompt
_active_prompt: str | None = None


def save_trained_prompt(adapter_dir: str | Path, prompt: str) -> Path:
    """Write the system prompt an adapter was trained with into its folder; returns the file."""
    path = Path(adapter_dir) / PROMPT_FILE
    path.write_text(prompt, encoding="utf-8")
    return path


def adapter_prompt(adapter_dir: str | Path) -> str | None:
    """The system prompt saved with an adapter, or None when its folder has none."""
    path = Path(adapter_dir) / PROMPT_FILE
    if not path.is_file():
        return None
    prompt = path.read_text(encoding="utf-8")
    if not prompt.strip():
        raise ValueError(f"{path}: line 1: field 'system_prompt': the saved prompt is empty")
    return prompt


def use_trained_prompt(prompt: str | None) -> str:
    """Make `prompt` what 'trained' mode sends from now on (None: the recipe file's); returns the
    prompt in use."""
    global _active_prompt
    _active_prompt = prompt
    return trained_prompt()


def trained_prompt() -> str:
    """The system prompt 'trained' mode sends: the one set by use_trained_prompt, else the recipe
    file's."""
    return train_system_prompt() if _active_prompt is None else _active_prompt


def label_list_prompt() -> str:
    """The earlier trained prompt, which spells out the label set (~60 tokens more per row); kept
    to compare."""
    return (
        f"Triage the support ticket. Reply with JSON only: intent ({'|'.join(intents())}), "
        'urgency (low|medium|high), order_id ("ORD-" and 6 digits from the ticket, or null).'
    )


def xml_system_prompt() -> str:
    """The optimised system prompt: XML sections for task, labels, rules and output format."""
    return (
        "<task>Triage one customer support ticket into strict JSON.</task>\n"
        f"<intents>{', '.join(intents())}</intents>\n"
        "<urgency>high: money taken wrongly, safety, security breach, locked out with a same-day "
        "need, "
        "a deadline within a day, or open fury. low: pre-purchase questions or 'no rush'. "
        "medium: everything else.</urgency>\n"
        "<order_id>The ORD- number with 6 digits from the ticket, or null.</order_id>\n"
        '<format>{"intent": ..., "urgency": ..., "order_id": ...} and nothing else.</format>'
    )


def pick_shots(pool: list[dict], k: int, param: str = "k") -> list[dict]:
    """k examples with distinct intents (first seen in pool order); a ValueError naming `param`
    if there are fewer."""
    shots, seen = [], set()
    for rec in pool:
        g = gold(rec)
        if g["intent"] not in seen:
            shots.append(rec)
            seen.add(g["intent"])
        if len(shots) == k:
            break
    if len(shots) < k:
        raise ValueError(
            f"{param}={k} asks for {k} shots with distinct intents, but the pool has "
            f"only {len(shots)}"
        )
    return shots


def messages(text: str, mode: str, shots: list[dict] = (), system: str | None = None) -> list[dict]:
    """Chat messages for one ticket: 'zero_shot' (bare), 'trained' (the prompt the model was
    trained with: `system`, else trained_prompt()) or 'few_shot' (XML + examples)."""
    if system is not None and mode != "trained":
        raise ValueError(f"system= sets the trained prompt; mode {mode!r} has its own")
    if mode == "zero_shot":
        return [{"role": "system", "content": ZERO_SHOT_SYSTEM}, {"role": "user", "content": text}]
    if mode == "trained":
        return [
            {"role": "system", "content": trained_prompt() if system is None else system},
            {"role": "user", "content": text},
        ]
    if mode != "few_shot":
        raise ValueError(f"unknown prompt mode {mode!r}; use 'zero_shot', 'trained' or 'few_shot'")
    msgs = [{"role": "system", "content": xml_system_prompt()}]
    for s in shots:
        msgs += [
            {"role": "user", "content": ticket(s)},
            {"role": "assistant", "content": json.dumps(gold(s))},
        ]
    return msgs + [{"role": "user", "content": text}]
