"""Shared fixtures: real-data locations (skipped cleanly when absent) and loaded models.

Every test that asks for the ``data_root`` fixture, directly or through another fixture, is marked
``realdata`` here, so ``-m "not realdata"`` leaves out all of them; tests that look the data up
themselves carry the mark explicitly. ``browser`` and ``slow`` are set in the test files.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No background model load in AppTests (ui/resources.py): pages that need no model must not pay for one.
os.environ.setdefault("BTD_PRELOAD", "0")

from core import config  # noqa: E402

#: The public datasets folder as configured when the session starts: looked up once here, before any
#: test module points ``config.data_dir`` at a synthetic tree for its own tests.
REAL_DATA_DIR = config.data_dir()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``realdata`` every test that depends on the ``data_root`` fixture."""
    for item in items:
        if "data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The public datasets folder, or skip: set BTD_DATA_DIR (defaults to ../shared/data)."""
    if REAL_DATA_DIR is None:
        pytest.skip("real data not available: set BTD_DATA_DIR to the public datasets folder")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def analyzer():
    """The slice pipeline with the shipped weights (loaded once per test session)."""
    from core.slices.pipeline import Analyzer

    return Analyzer.load()
