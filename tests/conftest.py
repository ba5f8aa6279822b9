"""Shared fixtures: real-data locations (skipped cleanly when absent) and loaded models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No background model load in AppTests (ui/resources.py): pages that need no model must not pay for one.
os.environ.setdefault("BTD_PRELOAD", "0")

from core import config  # noqa: E402


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The public datasets folder, or skip: set BTD_DATA_DIR (defaults to ../shared/data)."""
    root = config.data_dir()
    if root is None:
        pytest.skip("real data not available: set BTD_DATA_DIR to the public datasets folder")
    return root


@pytest.fixture(scope="session")
def analyzer():
    """The slice pipeline with the shipped weights (loaded once per test session)."""
    from core.slices.pipeline import Analyzer

    return Analyzer.load()
