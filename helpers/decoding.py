"""Decoding controls. Today: JSON-schema-constrained generation with xgrammar (CPU and GPU)."""

from __future__ import annotations

import json
from typing import Callable


def schema_processor(tok, model, json_schema: dict) -> Callable[[], object]:
    """Compile a JSON schema once; return a factory of fresh xgrammar logits processors (one per generate call)."""
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size)
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(json_schema), any_whitespace=False)
    return lambda: LogitsProcessor(compiled)
