"""Shared fixtures: offline hub, the converted offline model, and one course run folder for all
notebooks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _recipe_prompt_for_trained_mode():
    """Each test starts and ends with 'trained' mode sending the recipe file's prompt
    (train.triage_adapter sets another for the rest of a session)."""
    from helpers import prompts

    prompts.use_trained_prompt(None)
    yield
    prompts.use_trained_prompt(None)


@pytest.fixture(scope="session")
def model_dir():
    """The converted SmolLM2-135M dir (converted once per machine, cached)."""
    from helpers import models

    return models.ensure_smollm2()


@pytest.fixture(scope="session")
def model_and_tok(model_dir):
    """The offline model and tokenizer, loaded once per test session."""
    from helpers import models, runtime

    runtime.set_threads()
    return models.load(str(model_dir))


@pytest.fixture(scope="session")
def course_dir():
    """One course run folder shared by every notebook test, so later notebooks find earlier
    artifacts; scripts/run_tests.py passes one folder to all its pytest processes in
    WORKBOOK_COURSE_DIR."""
    from helpers import course

    shared = os.environ.get("WORKBOOK_COURSE_DIR")
    return Path(shared) if shared else course.new_course_dir("pytest")
