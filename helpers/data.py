"""The running example's data: schema, JSONL reading with precise errors, and chat rendering."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from helpers.runtime import repo_root

ROLES = ("system", "user", "assistant")
# the label's fields, in schema order: the one place they are listed
FIELDS = ("intent", "urgency", "order_id")
ORDER_ID = re.compile(r"\bORD-\d{6}\b")  # the one order-id pattern: "ORD-" and six digits
# longer rows are export accidents (logs pasted in), not tickets
MAX_TICKET_CHARS = 2000


class DataError(ValueError):
    """Bad input data, located by file, line and field."""

    def __init__(self, path: str | Path, line: int, fld: str, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, fld, problem
        super().__init__(f"{path}:{line}: field '{fld}': {problem}")


@dataclass
class LoadReport:
    """What a lenient load kept and what it dropped (never silently)."""

    path: str
    kept: int
    errors: list[DataError]

    def __str__(self) -> str:
        head = f"{self.path}: kept {self.kept} rows, dropped {len(self.errors)}"
        return "\n".join([head, *(f"  - {e}" for e in self.errors[:20])])


def data_dir() -> Path:
    """The course's data/ folder."""
    return repo_root() / "data"


@lru_cache(maxsize=1)
def schema() -> dict:
    """The strict output schema (data/ticket_schema.json)."""
    return json.loads((data_dir() / "ticket_schema.json").read_text(encoding="utf-8"))


def intents() -> list[str]:
    """The eight intents, in schema order."""
    return list(schema()["properties"]["intent"]["enum"])


def check_chat(rec: object, path: str | Path, line: int) -> dict:
    """Validate one chat record ({messages: [{role, content}, ...]}); raise DataError on the
    first fault."""
    if not isinstance(rec, dict):
        raise DataError(path, line, "<row>", f"expected a JSON object, got {type(rec).__name__}")
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise DataError(path, line, "messages", "missing or not a non-empty list")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise DataError(
                path, line, f"messages[{i}]", "expected an object with 'role' and 'content'"
            )
        for key in ("role", "content"):
            if key not in m:
                raise DataError(path, line, f"messages[{i}].{key}", "missing")
        if m["role"] not in ROLES:
            raise DataError(
                path, line, f"messages[{i}].role", f"{m['role']!r} is not one of {', '.join(ROLES)}"
            )
        if not isinstance(m["content"], str):
            raise DataError(path, line, f"messages[{i}].content", "expected a string")
    if msgs[-1]["role"] != "assistant":
        raise DataError(
            path,
            line,
            f"messages[{len(msgs) - 1}].role",
            "the last message must be the assistant's",
        )
    return rec


def read_checked(
    path: str | Path, check, strict: bool = True
) -> tuple[list[dict], list[DataError]]:
    """Read JSONL through check(rec, path, line); strict raises on the first bad line, lenient
    collects every error."""
    rows, errors = [], []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        path, n, "<row>", f"not valid JSON ({exc.msg}, column {exc.colno})"
                    ) from None
                rows.append(check(rec, path, n))
            except DataError as err:
                if strict:
                    raise
                errors.append(err)
    return rows, errors


def read_jsonl(
    path: str | Path, strict: bool = True, with_line: bool = False
) -> tuple[list[dict], LoadReport]:
    """Read chat JSONL; strict raises on the first bad line, lenient drops and reports every one."""

    def check(rec, where, n):
        rec = check_chat(rec, where, n)
        if with_line:
            rec["_line"] = n
        return rec

    rows, errors = read_checked(path, check, strict)
    return rows, LoadReport(str(path), len(rows), errors)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows as UTF-8 JSON lines, keys in insertion order."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def take(rows: list, n: int | None, param: str, source: str) -> list:
    """The first n rows (all when n is None); a ValueError naming the parameter when the source
    has fewer."""
    if n is None:
        return list(rows)
    if not isinstance(n, int) or n < 0:
        raise ValueError(
            f"{param}={n!r}: expected a whole number >= 0 (or None for all of {source})"
        )
    if n > len(rows):
        raise ValueError(
            f"{param}={n} asks for {n} rows, but {source} has only {len(rows)}: set "
            f"{param} <= {len(rows)}"
        )
    return list(rows[:n])


def load_split(name: str, limit: int | None = None, param: str = "limit") -> list[dict]:
    """Load data/<name>.jsonl strictly; optionally the first `limit` rows (more than the file has
    is an error)."""
    rows, _ = read_jsonl(data_dir() / f"{name}.jsonl")
    return take(rows, limit or None, param, f"data/{name}.jsonl")


def ticket(rec: dict) -> str:
    """The customer's text of a record (its last user message)."""
    return [m for m in rec["messages"] if m["role"] == "user"][-1]["content"]


def gold(rec: dict) -> dict:
    """The gold label of a record (its assistant message, parsed)."""
    return json.loads(rec["messages"][-1]["content"])
