"""Shared fixtures: offline hub, the converted offline model, and one course run folder for all notebooks."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
    """One course run folder shared by every notebook test, so later notebooks find earlier artifacts."""
    from helpers import course

    return course.new_course_dir("pytest")
