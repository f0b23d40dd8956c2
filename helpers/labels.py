"""Label repair (format drift -> strict schema) and label audits: an offline classifier and a
Claude judge."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass

import numpy as np
import yaml
from jsonschema import Draft202012Validator

from helpers.data import FIELDS, schema
from helpers.evaluate import first_object

KEY_ALIASES = {
    "category": "intent",
    "intent_label": "intent",
    "type": "intent",
    "priority": "urgency",
    "severity": "urgency",
    "order": "order_id",
    "orderid": "order_id",
    "order_number": "order_id",
}


def _as_dict(text: str) -> tuple[dict | None, str]:
    """Try strict JSON, then an embedded JSON object, a Python dict literal and YAML; say which
    worked."""
    text = text.strip()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj, "json"
    except json.JSONDecodeError:
        pass
    if (obj := first_object(text)) is not None:
        return obj, "embedded_json"
    try:
        obj = ast.literal_eval(text)
        if isinstance(obj, dict):
            return obj, "python_dict"
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        obj = yaml.safe_load(text)
        if isinstance(obj, dict):
            return obj, "yaml"
    except yaml.YAMLError:
        pass
    return None, "unparseable"


def repair_label(text: str) -> tuple[dict | None, str]:
    """Normalise an assistant answer to the strict schema; return (label or None, what was done
    or why not)."""
    obj, how = _as_dict(text)
    if obj is None:
        return None, how
    renamed = {KEY_ALIASES.get(str(k).lower(), str(k).lower()): v for k, v in obj.items()}
    label = {k: renamed.get(k) for k in FIELDS}
    if "intent" not in renamed or "urgency" not in renamed:
        return None, "missing intent or urgency"
    if label["order_id"] in ("", "null", "None"):
        label["order_id"] = None
    errs = list(Draft202012Validator(schema()).iter_errors(label))
    if errs:
        return None, f"schema: {errs[0].message}"
    fixes = [how] if how != "json" else []
    fixes += ["renamed keys"] if any(str(k).lower() in KEY_ALIASES for k in obj) else []
    fixes += ["dropped extra keys"] if set(renamed) - set(label) else []
    return label, "+".join(fixes) if fixes else "ok"


@dataclass
class AuditResult:
    """Per-row audit outcome: flagged rows, the classifier's suggestion and its confidence."""

    flagged: list[bool]
    suggested: list[str]
    confidence: list[float]


def classifier_audit(
    texts: list[str], labels: list[str], seed: int = 0, threshold: float = 0.6, folds: int = 5
) -> AuditResult:
    """Confident-learning style: flag rows whose out-of-fold TF-IDF+LR prediction confidently
    disagrees."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        LogisticRegression(max_iter=2000, C=4.0),
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(pipe, texts, labels, cv=cv, method="predict_proba")
    classes = np.array(sorted(set(labels)))
    best = proba.argmax(axis=1)
    given = np.searchsorted(classes, labels)
    conf = proba[np.arange(len(texts)), best]
    # flag when the model prefers another class with confidence, and the given class looks unlikely
    flagged = (best != given) & (conf >= threshold) & (proba[np.arange(len(texts)), given] < 0.2)
    return AuditResult(flagged.tolist(), classes[best].tolist(), conf.round(4).tolist())


JUDGE_SYSTEM = (
    "You audit training labels for a support-ticket triager. Given a ticket and its "
    "label, reply with "
    "exactly GOOD if the label is correct under these rules, else BAD.\n"
)


def claude_judge(cl, model: str, rules: str, pairs: list[tuple[str, dict]]) -> list[bool]:
    """Ask Claude GOOD/BAD for each (ticket, label); True means BAD (flagged)."""
    from helpers.claude import complete

    verdicts = []
    for text, label in pairs:
        msg = [
            {
                "role": "user",
                "content": f"<ticket>{text}</ticket>\n<label>{json.dumps(label)}</label>",
            }
        ]
        verdicts.append(
            complete(cl, model, JUDGE_SYSTEM + rules, msg, max_tokens=5).upper().startswith("BAD")
        )
    return verdicts
