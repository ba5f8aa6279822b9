"""Process-wide cached resources: loaded models, the sample catalogues and the bundled examples.

This module is the home of the app's Streamlit caching. Loaded models are ``st.cache_resource``
(one object shared by every session); user-independent data read from the repository is
``st.cache_data`` (a copy per call). Both caches are shared by every session, so only immutable,
user-independent objects live here: anything derived from an upload or a user's choices stays in
``st.session_state``. Two view-specific data caches live beside their views: the held-out image
lists in :mod:`ui.heldout` and the evaluation artifacts of the Compare models page in
:mod:`ui.comparison_artifacts`. Without a ``ttl`` an entry lives as long as the server process
(or until the function's source changes); ``max_entries`` bounds the caches that can grow.

The slice models load once per server. :func:`start_preload` (called by ``streamlit_app.py`` on the
first page view) starts loading them in a background thread, so that they are usually ready before
anyone presses *Analyse*; :func:`load_analyzer` takes that load's result (waiting for it under a
spinner that says what is happening when it is not finished). ``BTD_PRELOAD=0`` turns the
background load off (the test suite does, so that pages that need no model do not load them).

Pages get the models through :func:`analyzer_or_error`: one :class:`core.slices.inference_queue.SharedAnalyzer`
per server, so that concurrent sessions' analyses are batched on one inference thread and identical
inputs are served from its cache instead of being recomputed.
"""
from __future__ import annotations

import gc
import json
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import streamlit as st

from core import config
from core.data import examples as bundled_examples
from core.data.datasets import read_mask
from core.errors import ModelUnavailable
from core.slices.pipeline import Analyzer
from core.slices.inference_queue import SharedAnalyzer
from core.volumes.brats_model import VolumeSegmenter

#: The background load of the analyzer (one per server process), once started.
_preload: Future | None = None
_preload_lock = threading.Lock()
#: Set once the analyzer is loaded (by the background thread or on demand).
_ready = threading.Event()


def freeze_heap() -> None:
    """Take everything allocated so far out of the garbage collector's view (``gc.freeze``).

    Streamlit collects garbage after every script run of every session (``runner.postScriptGC``, and
    again inside ``keras.backend.clear_session``, which it also calls). With TensorFlow and the models
    in memory (about half a million objects), each full collection took about 0.3 s holding the GIL,
    twice per run: the largest cost of a rerun, and with many sessions they queue behind each other.
    Frozen objects are never scanned again; they are the libraries and models, which live as long as
    the process anyway.
    """
    gc.collect()
    gc.freeze()


def _loaded_analyzer() -> Analyzer:
    analyzer = Analyzer.load()
    freeze_heap()
    return analyzer


def _load_in_background(future: Future) -> None:
    try:
        future.set_result(_loaded_analyzer())
        _ready.set()
    except BaseException as err:  # noqa: BLE001 -- handed to whoever waits for the models
        future.set_exception(err)


def start_preload() -> None:
    """Start loading the slice models in a background thread, once per process (no-op afterwards,
    or when ``BTD_PRELOAD=0``)."""
    global _preload
    if _preload is not None or os.environ.get("BTD_PRELOAD", "1") == "0":
        return
    with _preload_lock:
        if _preload is None:
            _preload = Future()
            threading.Thread(target=_load_in_background, args=(_preload,), name="btd-model-preload",
                             daemon=True).start()


def models_ready() -> bool:
    """Whether the slice models are loaded in this process."""
    return _ready.is_set()


@st.cache_resource(show_spinner=False)
def load_analyzer() -> Analyzer:
    """The slice pipeline with the shipped, checksum-verified models (the background load's, when started)."""
    future = _preload
    if future is not None:
        try:
            return future.result()
        except ModelUnavailable:
            raise
        except Exception:  # noqa: BLE001 -- an unexpected failure in the thread: load here and report it normally
            pass
    analyzer = _loaded_analyzer()
    _ready.set()
    return analyzer


@st.cache_resource(show_spinner=False)
def shared_analyzer() -> SharedAnalyzer:
    """The loaded analyzer behind the server's one batching inference queue and result cache."""
    return SharedAnalyzer(load_analyzer())


def analyzer_or_error() -> SharedAnalyzer | None:
    """The shared analyzer, or ``None`` after showing why the models cannot be loaded."""
    try:
        if models_ready():
            return shared_analyzer()
        with st.spinner("Loading the models (first run only)… the first analysis after the server starts waits "
                        "for them; later ones do not.", show_time=True):
            return shared_analyzer()
    except ModelUnavailable as err:
        st.error(f"The models cannot be loaded: {err}")
        return None


@st.cache_data(show_spinner=False)
def sample_catalogue() -> list[dict]:
    """Entries of ``sample_data/manifest.json`` (synthetic inputs made by ``python -m core.samples``).

    One cache entry, read once per server process.
    """
    path = config.SAMPLE_DIR / "manifest.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text()).get("files", [])


@st.cache_data(show_spinner=False)
def brats_samples() -> dict[str, str]:
    """Synthetic BraTS cases in ``sample_data/manifest.json``: ``{name: description}``.

    One cache entry, read once per server process.
    """
    path = config.SAMPLE_DIR / "manifest.json"
    if not path.is_file():
        return {}
    files = json.loads(path.read_text()).get("files", [])
    return {f["name"]: f["description"] for f in files if f.get("kind") == "brats_case"}


@st.cache_data(show_spinner=False)
def example_list() -> list[bundled_examples.Example]:
    """The real slices bundled in ``sample_data/`` (``SOURCES.csv``).

    One cache entry, read once per server process.
    """
    return bundled_examples.bundled()


@st.cache_data(show_spinner=False, max_entries=32)
def example_mask(relative: str) -> np.ndarray:
    """The expert mask of a bundled example (``relative`` to ``sample_data/``, from :func:`example_list`).

    Keyed by the path; at most 32 masks are kept (least recently used dropped), for the server's life.
    """
    return read_mask(config.SAMPLE_DIR / relative)


@st.cache_resource(show_spinner="Loading the BraTS model (first use only)…", max_entries=2)
def load_segmenter(weights_dir: str, name: str, sha256: str) -> VolumeSegmenter:
    """The BraTS model ``name`` from ``weights_dir`` (checksum verified), one shared object per key.

    ``sha256`` is part of the key so that a retrained model reloads; at most two models are held
    (the least recently used is dropped), for the server's life.
    """
    return VolumeSegmenter.load(name, Path(weights_dir))


def sample_bytes(name: str) -> bytes:
    """Bytes of one sample file (names come from the catalogue, never from user input)."""
    path = (config.SAMPLE_DIR / name).resolve()
    if config.SAMPLE_DIR.resolve() not in path.parents:
        raise ValueError(f"{name} is not inside sample_data/")
    return Path(path).read_bytes()
