"""Batch: many slices or a .zip → progress bar → results table → CSV and ZIP downloads."""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.batch import BatchItem, expand_uploads, results_csv, results_table, results_zip, run_batch, truth_summary
from core import config
from core.comparison_figures import confusion_figure
from core.io import SUPPORTED_EXTENSIONS
from core.pipeline import AnalysisOptions
from ui.heldout import choose_held_out_sample
from ui.navigation import ensure_app_navigation
from ui.resources import analyzer_or_error, sample_catalogue, sample_bytes

ensure_app_navigation()

st.title("Analyse a batch")
st.write("Upload many slices, or a .zip of them, and get one row per file: the class and its probability, "
         "the warnings and the main measurements. A file that cannot be read, or that the input guard refuses, "
         "is reported in its own row and the batch goes on.")


def chosen_files() -> tuple[list[tuple[str, bytes]], Callable[[], list[BatchItem]] | None]:
    """Uploaded or sample files to expand, or held-out files with a loader of their items carrying
    the ground truth (expert masks are read only when the batch runs, not on every rerun)."""
    source = st.radio("Input", ["Upload files", "The synthetic samples", "Held-out public images"],
                      horizontal=True, key="bt_source")
    if source == "The synthetic samples":
        names = [s["name"] for s in sample_catalogue() if s.get("kind") in {"slice", "volume"}]
        st.info("The project's synthetic phantoms (`python -m core.samples`), not patient scans.",
                icon=":material/science:")
        return [(n, sample_bytes(n)) for n in names], None
    if source == "Held-out public images":
        picked = choose_held_out_sample()
        return [(item.relative, data) for item, data in picked], lambda: [
            BatchItem(item.relative, data, item.label, item.expert_mask()) for item, data in picked]
    uploads = st.file_uploader("Slices (PNG, JPEG, TIFF, BMP, DICOM, NIfTI) or .zip archives of them",
                               type=[*SUPPORTED_EXTENSIONS, "zip"], accept_multiple_files=True, key="bt_upload")
    return [(u.name, u.getvalue()) for u in uploads or []], None


def batch_options() -> tuple[AnalysisOptions, bool]:
    with st.sidebar:
        st.subheader("Batch settings")
        anyway = st.checkbox("Segment even when no tumour is found", key="bt_anyway")
        typed = st.number_input("Pixel spacing for files that state none (mm, 0 = pixels)", min_value=0.0,
                                max_value=10.0, value=0.0, step=0.05, format="%.3f", key="bt_spacing")
        gradcam = st.checkbox("Compute Grad-CAM (slower)", key="bt_gradcam")
        guard = st.checkbox("Refuse images that do not look like brain MRI", value=True, key="bt_guard")
    spacing = (typed, typed) if typed > 0 else None
    return AnalysisOptions(segment_anyway=anyway, spacing_override_mm=spacing, gradcam=gradcam), guard


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
batch_key = digest.hexdigest() + repr((options, use_guard))

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
        st.session_state["batch"] = {"key": batch_key, "rows": rows}

stored = st.session_state.get("batch")
if stored and stored["key"] == batch_key:
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
    d1, d2 = st.columns(2)
    d1.download_button("Results (CSV)", results_csv(rows), "batch_results.csv", "text/csv", key="bt_csv")
    d2.download_button("Everything (ZIP)", lambda: results_zip(rows), "batch_results.zip", "application/zip",
                       key="bt_zip", on_click="ignore")
elif stored:
    st.caption("The files or settings changed: press **Run batch** again.")
