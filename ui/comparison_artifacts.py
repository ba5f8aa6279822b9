"""Cached reads of the evaluation artifacts shown on the Compare models page.

The artifacts are files written by ``core.evaluation`` (``comparison.json``, per-model details,
predictions and training logs, the external benchmark); nothing in them comes from a user, so the
``st.cache_data`` caches here are shared by every session. Each reader is keyed by the folder, the
entry (or split) it reads and the file's modification time: a rewritten artifact is read again, the
old entry is left to age out. No ``ttl`` and no ``max_entries``: an entry lives as long as the
server process, and there is one per artifact file version (a few dozen files).

The ``*_of`` helpers are what the page calls: they pass the modification time and show a warning
(returning ``None``) when an artifact is missing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.evaluation import comparison, external_view
from core.evaluation.comparison import ArtifactMissing


def artifact_mtime(path: Path) -> float:
    """The file's modification time, ``0.0`` when it is absent (part of the cache keys below)."""
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_data(show_spinner=False)
def read_summary(folder: str, mtime: float) -> dict:
    """``comparison.json`` of ``folder`` (:func:`core.evaluation.comparison.load_summary`); keyed by folder and mtime."""
    return comparison.load_summary(Path(folder))


@st.cache_data(show_spinner=False)
def read_detail(folder: str, entry: dict, mtime: float) -> dict:
    """A model's detail file (:func:`core.evaluation.comparison.load_detail`); keyed by folder, entry and mtime."""
    return comparison.load_detail(entry, Path(folder))


@st.cache_data(show_spinner=False)
def read_predictions(folder: str, entry: dict, mtime: float) -> pd.DataFrame:
    """A model's per-image predictions (:func:`core.evaluation.comparison.load_predictions`); keyed as above."""
    return comparison.load_predictions(entry, Path(folder))


@st.cache_data(show_spinner=False)
def read_log(folder: str, entry: dict, mtime: float) -> pd.DataFrame | None:
    """A model's training log (:func:`core.evaluation.comparison.load_log`), ``None`` without one; keyed as above."""
    return comparison.load_log(entry, Path(folder))


@st.cache_data(show_spinner=False)
def read_external(folder: str, split: str, mtime: float) -> dict | None:
    """The external benchmark of ``split`` (:func:`core.evaluation.external_view.load`); keyed by folder, split, mtime."""
    return external_view.load(Path(folder), split)


def summary_of(folder: Path) -> dict:
    """The comparison summary of ``folder`` (``comparison.json`` must exist)."""
    return read_summary(str(folder), artifact_mtime(folder / "comparison.json"))


def detail_of(folder: Path, entry: dict) -> dict | None:
    """A model's detail, or ``None`` after a warning saying why it is missing."""
    try:
        return read_detail(str(folder), entry, artifact_mtime(folder / (entry.get("detail") or "")))
    except ArtifactMissing as err:
        st.warning(str(err))
        return None


def predictions_of(folder: Path, entry: dict) -> pd.DataFrame | None:
    """A model's per-image predictions, or ``None`` after a warning saying why they are missing."""
    try:
        return read_predictions(str(folder), entry, artifact_mtime(folder / entry["predictions"]["file"]))
    except (ArtifactMissing, KeyError, TypeError) as err:
        st.warning(f"No per-image predictions for {entry['name']}: {err}")
        return None


def log_of(folder: Path, entry: dict) -> pd.DataFrame | None:
    """A model's training log, ``None`` without one."""
    return read_log(str(folder), entry, artifact_mtime(folder / (entry.get("log") or "")))


def external_of(folder: Path, split: str | None) -> dict | None:
    """The external benchmark of ``split``; ``None`` without a split or results."""
    if not split:
        return None
    return read_external(str(folder), split, artifact_mtime(folder / external_view.FILES[split]))


@st.cache_data(show_spinner=False)
def read_external_segmentation(folder: str, mtime: float) -> dict | None:
    """The segmenter's external benchmark (:func:`core.evaluation.external_view.load_segmentation`); keyed by
    folder and mtime."""
    return external_view.load_segmentation(Path(folder))


def external_segmentation_of(folder: Path) -> dict | None:
    """The segmenter's external benchmark; ``None`` without results."""
    return read_external_segmentation(str(folder), artifact_mtime(folder / external_view.SEGMENTATION_FILE))
