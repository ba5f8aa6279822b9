"""Process-wide cached resources: loaded models and the sample catalogue.

Only immutable, user-independent objects live here (``st.cache_resource`` is shared by every
session); anything derived from an upload stays in ``st.session_state``.
"""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from core import config
from core.errors import ModelUnavailable
from core.pipeline import Analyzer


@st.cache_resource(show_spinner="Loading the models (first use only)…")
def load_analyzer() -> Analyzer:
    """The slice pipeline with the shipped, checksum-verified models."""
    return Analyzer.load()


def analyzer_or_error() -> Analyzer | None:
    """The analyzer, or ``None`` after showing why the models cannot be loaded."""
    try:
        return load_analyzer()
    except ModelUnavailable as err:
        st.error(f"The models cannot be loaded: {err}")
        return None


@st.cache_data(show_spinner=False)
def sample_catalogue() -> list[dict]:
    """Entries of ``sample_data/manifest.json`` (synthetic inputs made by ``python -m core.samples``)."""
    path = config.SAMPLE_DIR / "manifest.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text()).get("files", [])


def sample_bytes(name: str) -> bytes:
    """Bytes of one sample file (names come from the catalogue, never from user input)."""
    path = (config.SAMPLE_DIR / name).resolve()
    if config.SAMPLE_DIR.resolve() not in path.parents:
        raise ValueError(f"{name} is not inside sample_data/")
    return Path(path).read_bytes()
