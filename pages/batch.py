"""Batch: many slices or a .zip → progress bar → results table → CSV and ZIP downloads."""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.slices.batch import BatchItem, expand_uploads, results_csv, results_table, results_zip, run_batch, truth_summary
from core import config
from core.data import examples as bundled_examples
from core.slices.acquisition import CONFIDENT
from core.evaluation.comparison_figures import confusion_figure
from core.data.datasets import read_mask
from core.readers.detect import SUPPORTED_EXTENSIONS
from core.slices.pipeline import AnalysisOptions
from ui.heldout import choose_held_out_sample
from ui.navigation import ensure_app_navigation
from ui.resources import analyzer_or_error, sample_catalogue, sample_bytes
from ui.state import forget_upload, kept, kept_upload

ensure_app_navigation()

st.title("Analyse a batch")
st.write("Upload many slices, or a .zip of them, and get one row per file: the class and its probability, "
         "the warnings and the main measurements. A file that cannot be read, or that the input guard refuses, "
         "is reported in its own row and the batch goes on.")

UPLOAD = "Upload files"
EXAMPLES = "The bundled real examples"
SYNTHETIC = "The synthetic phantoms"
HELD_OUT = "Held-out public images"
SOURCES = [UPLOAD, EXAMPLES, HELD_OUT, SYNTHETIC]


def example_items() -> tuple[list[tuple[str, bytes]], Callable[[], list[BatchItem]]]:
    """The bundled real examples with their expert labels (and masks)."""
    found = bundled_examples.bundled()
    st.info(f"**{len(found)} real scans bundled with the app** (`sample_data/SOURCES.csv`), each with its expert "
            "label: the table will show whether each decision matches it and, for figshare slices, the Dice "
            "against the expert's outline.", icon=":material/radiology:")
    files = [(e.file.rsplit("/", 1)[-1], (config.SAMPLE_DIR / e.file).read_bytes()) for e in found]
    return files, lambda: [BatchItem(name, data, e.expert_label,
                                     read_mask(config.SAMPLE_DIR / e.mask) if e.mask else None)
                           for (name, data), e in zip(files, found)]


def chosen_files() -> tuple[list[tuple[str, bytes]], Callable[[], list[BatchItem]] | None]:
    """Uploaded or bundled files to expand, or files with a loader of their items carrying the ground
    truth (expert masks are read only when the batch runs, not on every rerun)."""
    source = st.radio("Input", SOURCES, horizontal=True, key=kept("bt_source", UPLOAD, SOURCES))
    if source == SYNTHETIC:
        names = [s["name"] for s in sample_catalogue() if s.get("kind") in {"slice", "volume"}]
        st.info("The project's synthetic phantoms (`python -m core.samples`), not patient scans.",
                icon=":material/science:")
        return [(n, sample_bytes(n)) for n in names], None
    if source == EXAMPLES:
        return example_items()
    if source == HELD_OUT:
        picked = choose_held_out_sample()
        return [(item.relative, data) for item, data in picked], lambda: [
            BatchItem(item.relative, data, item.label, item.expert_mask()) for item, data in picked]
    files, remembered = kept_upload("bt_upload", lambda: st.file_uploader(
        "Slices (PNG, JPEG, TIFF, BMP, DICOM, NIfTI) or .zip archives of them",
        type=[*SUPPORTED_EXTENSIONS, "zip"], accept_multiple_files=True, key="bt_upload"))
    if remembered:
        left, right = st.columns([3, 1], vertical_alignment="center")
        left.caption(f"Your last {len(files)} uploaded file(s), kept while you were away. Upload others to replace "
                     "them.")
        right.button("Forget them", key="bt_forget_upload", on_click=forget_upload, args=("bt_upload",))
    return files or [], None


def batch_options() -> tuple[AnalysisOptions, bool]:
    with st.sidebar:
        st.subheader("Batch settings")
        anyway = st.checkbox("Segment even when no tumour is found", key=kept("bt_anyway", False))
        typed = st.number_input("Pixel spacing for files that state none (mm, 0 = pixels)", min_value=0.0,
                                max_value=10.0, step=0.05, format="%.3f", key=kept("bt_spacing", 0.0))
        gradcam = st.checkbox("Compute Grad-CAM (slower)", key=kept("bt_gradcam", False))
        guard = st.checkbox("Refuse images that do not look like brain MRI", key=kept("bt_guard", True))
    spacing = (typed, typed) if typed > 0 else None
    return AnalysisOptions(segment_anyway=anyway, spacing_override_mm=spacing, gradcam=gradcam), guard


def zip_bytes(stored: dict) -> bytes:
    """The ZIP of a batch result, built once and kept with it (a download then never waits on a callable)."""
    if "zip" not in stored:
        with st.spinner("Preparing the ZIP of every result…"):
            stored["zip"] = results_zip(stored["rows"])
    return stored["zip"]


files, truth_items = chosen_files()
options, use_guard = batch_options()
if not files:
    st.stop()
items, problems = ([], []) if truth_items is not None else expand_uploads(files)
n_items = len(files) if truth_items is not None else len(items)
st.caption(f"{n_items} file(s) to analyse" + (f"; {len(problems)} archive problem(s)" if problems else "") + ".")
digest = hashlib.sha256()
for name, data in files:
    digest.update(name.encode())
    digest.update(hashlib.sha256(data).digest())
files_key = digest.hexdigest()
settings_key = repr((options, use_guard))

stored = st.session_state.get("batch")
if stored and stored.get("files") != files_key:     # other files: drop the results that depended on the old ones
    st.session_state.pop("batch", None)
    stored = None
if st.button("Run batch", type="primary", key="bt_go", disabled=not n_items and not problems):
    analyzer = analyzer_or_error()
    if analyzer is not None:
        if truth_items is not None:
            items = truth_items()
        bar = st.progress(0.0, text="Starting…")

        def progress(done: int, total: int, name: str) -> None:
            bar.progress(done / total, text=f"{done} of {total}: {name}")

        rows = problems + run_batch(items, analyzer, options, progress, use_guard)
        bar.progress(1.0, text=f"Done: {len(rows)} file(s).")
        stored = {"files": files_key, "settings": settings_key, "rows": rows, "csv": results_csv(rows)}
        st.session_state["batch"] = stored

if stored:
    if stored["settings"] != settings_key:
        st.caption("The batch settings in the sidebar changed since these results: press **Run batch** to apply them.")
    rows = stored["rows"]
    counts = pd.Series([r.status for r in rows]).value_counts()
    c1, c2, c3 = st.columns(3)
    c1.metric("Analysed", int(counts.get("ok", 0)))
    c2.metric("Refused by the guard", int(counts.get("refused", 0)))
    c3.metric("Errors", int(counts.get("error", 0)))
    truth = truth_summary(rows)
    if truth["n"]:
        t1, t2 = st.columns(2)
        t1.metric("Accuracy against the true class", f"{truth['accuracy']:.1%}",
                  help=f"{truth['correct']} of {truth['n']} analysed images classified as their true class.")
        if truth["n_dice"]:
            t2.metric("Mean Dice against the expert masks", f"{truth['mean_dice']:.3f}",
                      help=f"Over {truth['n_dice']} analysed slices; a slice the pipeline did not segment (no "
                           "tumour found) counts as an empty mask. Tick *Segment even when no tumour is found* "
                           "to compare the segmenter alone.")
        st.plotly_chart(confusion_figure(truth["confusion"], config.CLASS_NAMES, config.CLASS_LABELS,
                                         f"Confusion matrix of these {truth['n']} images"),
                        width="stretch", key="bt_confusion")
    st.dataframe(pd.DataFrame(results_table(rows)), hide_index=True, width="stretch",
                 column_config={"probability": st.column_config.ProgressColumn("probability", min_value=0.0,
                                                                               max_value=1.0, format="%.3f")})
    st.caption(f"**sequence/plane**: the MRI sequence and plane recognised from each image, with the recogniser's "
               f"confidence in each (unsure below {CONFIDENT:.2f}); **stated by the file**: what a DICOM or NIfTI "
               "header (or a BraTS-style file name) says, which the training-coverage caution then follows. "
               "**possible lesion**: for a slice the classifier "
               "calls No tumour, whether the lesion cross-check still finds a confident region (its measurements are "
               "then those of that region); empty where the check does not apply.")
    with st.container(horizontal=True):
        st.download_button("Results (CSV)", stored["csv"], "batch_results.csv", "text/csv", key="bt_csv",
                           on_click="ignore")
        st.download_button("Everything (ZIP)", zip_bytes(stored), "batch_results.zip", "application/zip",
                           key="bt_zip", on_click="ignore")
