"""Analyse a slice: a bundled real example, an upload, a held-out public image or a synthetic phantom →
guard → classify, explain, segment, measure → report."""
from __future__ import annotations

import functools
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from core import config
from core.data import examples as bundled_examples
from core.errors import InputError
from core.slices.findings import (evidence_who, is_shown_apart, lesion_figures, outline_caption, possible_lesion_text,
                           shows_lesion_outline)
from core.slices.gradcam import AVERAGE
from core.data.heldout import HeldOutImage
from core.trust.guard import check_slice
from core.readers.decoded import Slice
from core.readers.detect import SUPPORTED_EXTENSIONS
from core.readers.slice import inspect_slice_source, read_slice
from core.imaging.morphology import feature_table
from core.slices.pipeline import AnalysisOptions, SliceResult
from core.slices.report import build_report, download_stem, features_csv, mask_png_bytes, png_bytes, report_json, report_pdf
from core.slices.inference_queue import ServingTimeout
from core.imaging.viz import EXPERT_COLOUR, draw_outline, overlay_heatmap, overlay_mask
from ui.charts import probability_chart
from ui.heldout import HELD_OUT_SOURCE, choose_held_out, select_handed_over_image, show_ground_truth
from ui.navigation import ensure_app_navigation
from ui.resources import analyzer_or_error, example_list, example_mask, sample_catalogue, sample_bytes
from ui.spacing import SPACING_KEY, spacing_button
from ui.state import forget_upload, kept, kept_upload
from ui.trust import (calibration_note, show_acquisition, show_caution, show_coverage, show_guard,
                      show_possible_lesion, show_training_match)

ensure_app_navigation()

PLANES = {"Axial": 2, "Coronal": 1, "Sagittal": 0}

st.title("Analyse a slice")
st.write("Classify an MRI slice as glioma, meningioma, pituitary tumour or no tumour with a stacking "
         "ensemble of four CNNs, see where each CNN looked (Grad-CAM) and how sure the ensemble is; when a "
         "tumour is found, outline it with a ResUNet, measure it and download a report.")


# ----------------------------------------------------------------------------- input
EXAMPLE_SOURCE = "Real example"
UPLOAD_SOURCE = "Upload a file"
SYNTHETIC_SOURCE = "Synthetic phantom"
SOURCES = [EXAMPLE_SOURCE, UPLOAD_SOURCE, HELD_OUT_SOURCE, SYNTHETIC_SOURCE]


@dataclass(frozen=True)
class Truth:
    """What the dataset's experts say about the input: its class and, for figshare slices, the tumour mask."""

    label: str
    mask: np.ndarray | None
    source: str                                   # where the label comes from, for captions


@dataclass(frozen=True)
class Chosen:
    """The input chosen on this page."""

    data: bytes
    name: str
    synthetic: bool = False
    held_out: HeldOutImage | None = None
    truth: Truth | None = None


def choose_example() -> Chosen | None:
    found = example_list()
    if not found:
        st.warning("No real examples are bundled (`sample_data/SOURCES.csv` is missing); choose another input.")
        return None
    by_file = {e.file: e for e in found}
    chosen = st.selectbox("Real example (expert label · plane · source)", list(by_file),
                          format_func=lambda f: by_file[f].title, key=kept("an_example", found[0].file, list(by_file)))
    example = by_file[chosen]
    truth = Truth(example.expert_label, example_mask(example.mask) if example.mask else None,
                  "figshare expert" if example.mask else "dataset label")
    held = ("a fold-4 patient, held out from training the segmenter and the lesion detector"
            if example.mask else "from the official Testing split, not a copy of any Training image")
    who = "Patient" if example.mask else "File"
    st.info(f"**Real scan** bundled with the app — {example.credit}. {who} "
            f"`{example.patient_or_original_name}`, {held}. Expert label: **{config.CLASS_LABELS[example.expert_label]}**"
            f", plane: {example.plane}.", icon=":material/radiology:")
    with st.expander("How these examples were chosen"):
        st.write(bundled_examples.RULE)
        st.caption("The list, with licences and citations, is `sample_data/SOURCES.csv`. The 4-class training set "
                   "contains copies of some figshare slices; the training-set check flags an example that matches "
                   "one, so that its result is not read as a test.")
    if example.spacing_mm:
        spacing_button(example.spacing_mm, "an_ex_spacing",
                       f"figshare files state no pixel spacing; the dataset notes give about {example.spacing_mm} mm "
                       "per pixel at this size.")
    return Chosen((config.SAMPLE_DIR / example.file).read_bytes(), example.file.rsplit("/", 1)[-1], truth=truth)


def choose_uploaded_slice() -> Chosen | None:
    """The slice uploader; the uploaded (or kept) file, ``None`` without one."""
    files, remembered = kept_upload("an_upload", lambda: st.file_uploader(
        "MRI slice: PNG, JPEG, TIFF, BMP, DICOM, or NIfTI (.nii / .nii.gz)",
        type=list(SUPPORTED_EXTENSIONS), key="an_upload"))
    if not files:
        return None
    name, data = files[0]
    if remembered:
        left, right = st.columns([3, 1], vertical_alignment="center")
        left.caption(f"Your last upload, **{name}**, kept while you were away. Upload another file to replace it.")
        right.button("Forget it", key="an_forget_upload", on_click=forget_upload, args=("an_upload",))
    return Chosen(data, name)


def choose_synthetic() -> Chosen | None:
    samples = [s for s in sample_catalogue() if s.get("kind") in {"slice", "volume"}]
    if not samples:
        st.warning("No synthetic phantoms found; regenerate them with `python -m core.samples`.")
        return None
    described = {s["name"]: s["description"] for s in samples}
    chosen = st.selectbox("Synthetic phantom", list(described), format_func=lambda n: f"{n} — {described[n]}",
                          key=kept("an_sample", samples[0]["name"], list(described)))
    st.info("**Synthetic phantom**, generated by this project's code (`python -m core.samples`): "
            "not a patient scan. Model outputs on it only demonstrate the app.", icon=":material/science:")
    return Chosen(sample_bytes(chosen), chosen, synthetic=True)


def choose_input() -> Chosen | None:
    """The chosen input, or ``None`` until there is one."""
    handed_over = select_handed_over_image()
    if handed_over:
        st.warning(handed_over)
    source = st.radio("Input", SOURCES, horizontal=True, key=kept("an_source", EXAMPLE_SOURCE, SOURCES),
                      help="Real example: a real scan bundled with the app, with its expert label. Held-out public "
                           "image: a real scan from the public data folder (`BTD_DATA_DIR`) that the models were "
                           "not trained on, with its true class (and expert mask).")
    if source == UPLOAD_SOURCE:
        return choose_uploaded_slice()
    if source == HELD_OUT_SOURCE:
        picked = choose_held_out()
        if picked is None:
            return None
        data, name, item = picked
        return Chosen(data, name, held_out=item, truth=Truth(item.label, item.expert_mask(),
                                                              "figshare expert" if item.mask else "dataset label"))
    if source == SYNTHETIC_SOURCE:
        return choose_synthetic()
    return choose_example()


def pick_slice(data: bytes, name: str) -> tuple[Slice, tuple] | None:
    """Read the file (asking for a frame, or a plane and slice, when it holds several) and the choice made."""
    try:
        source = inspect_slice_source(data, name)
        frame = axis = index = None
        if source.kind == "volume":
            st.caption(f"This NIfTI file is a 3D volume ({'×'.join(map(str, source.shape))}): choose a plane and a slice.")
            plane = st.radio("Plane", list(PLANES), horizontal=True, key=kept("an_plane", "Axial", list(PLANES)))
            axis = PLANES[plane]
            depth = source.shape[axis]
            index = st.slider("Slice", 0, depth - 1, key=kept(f"an_index_{axis}", depth // 2, range(depth)))
        elif source.kind == "multiframe" and source.n_frames > 1:
            frame = st.slider("Frame", 0, source.n_frames - 1,
                              key=kept("an_frame", source.n_frames // 2, range(source.n_frames)))
        return read_slice(data, name, frame=frame, axis=axis, index=index), (frame, axis, index)
    except InputError as err:
        st.error(f"**{name}** cannot be analysed. {err}")
        return None


# ----------------------------------------------------------------------------- settings
OVERLAY_STYLES = ["Green fill", "Red contour"]


def sidebar_options(slice_: Slice | None) -> tuple[AnalysisOptions, str, float]:
    """The sidebar's analysis settings (drawn even without an input, so that they always stay)."""
    with st.sidebar:
        st.subheader("Analysis settings")
        if slice_ is not None and slice_.spacing_mm:
            st.caption(f"Pixel spacing from the file: {slice_.spacing_mm[0]:.3g} × {slice_.spacing_mm[1]:.3g} mm.")
        elif slice_ is not None:
            st.caption("The file states no pixel spacing: measurements will be in pixels unless you enter it.")
        typed = st.number_input("Pixel spacing override (mm, 0 = use the file's)", min_value=0.0, max_value=10.0,
                                step=0.05, format="%.3f", key=kept(SPACING_KEY, 0.0))
        anyway = st.checkbox("Segment even when no tumour is found", key=kept("an_anyway", False))
        style = st.radio("Overlay", OVERLAY_STYLES, key=kept("an_style", OVERLAY_STYLES[0], OVERLAY_STYLES))
        opacity = st.slider("Overlay opacity", 0.0, 1.0, step=0.05, key=kept("an_opacity", 0.4))
    options = AnalysisOptions(segment_anyway=anyway, spacing_override_mm=(typed, typed) if typed > 0 else None,
                              gradcam=False)          # Grad-CAM only when asked for (show_gradcam)
    return options, ("fill" if style == OVERLAY_STYLES[0] else "contour"), opacity


# ----------------------------------------------------------------------------- results
def show_decision(result: SliceResult, truth: Truth | None) -> None:
    show_training_match(result)
    show_caution(result)
    with st.container(horizontal=True, gap="medium"):       # wraps rather than truncating at narrow widths
        st.metric("Decision", result.decision_label, width="content", border=True)
        if truth is not None:
            agrees = truth.label == result.decision
            st.metric("Expert label", config.CLASS_LABELS[truth.label], width="content", border=True,
                      delta="matches the decision" if agrees else "differs from the decision",
                      delta_color="normal" if agrees else "inverse", delta_arrow="off",
                      help=f"The class given by the {truth.source} (the dataset's label), not by a model.")
        st.metric("Ensemble probability", f"{result.confidence:.1%}", width="content",
                  help="Calibrated by temperature scaling.")
        st.metric("Members agreeing", f"{round(result.agreement * len(result.member_votes))} of "
                                      f"{len(result.member_votes)}", width="content")
        st.metric("Entropy", f"{result.entropy:.2f}", width="content",
                  help="Normalised Shannon entropy of the ensemble distribution: 0 = certain, 1 = all classes "
                       "equally likely.")
    show_acquisition(result)
    show_coverage(result)
    show_possible_lesion(result)
    for warning in result.warnings:
        if not is_shown_apart(warning, result):      # training match, coverage and lesion are shown above
            st.warning(warning)


def member_table(result: SliceResult) -> pd.DataFrame:
    rows = []
    for name, probs in result.member_probabilities.items():
        row = {"member": name, "vote": config.CLASS_LABELS[result.member_votes[name]],
               "vote probability": max(probs)}
        row.update({config.CLASS_LABELS[c]: p for c, p in zip(result.classes, probs)})
        rows.append(row)
    if result.uncalibrated_probabilities:
        raw = result.uncalibrated_probabilities
        best = result.classes[max(range(len(raw)), key=raw.__getitem__)]
        rows.append({"member": "ensemble before calibration", "vote": config.CLASS_LABELS[best],
                     "vote probability": max(raw), **{config.CLASS_LABELS[c]: p for c, p in zip(result.classes, raw)}})
    rows.append({"member": "ensemble", "vote": result.decision_label, "vote probability": result.confidence,
                 **{config.CLASS_LABELS[c]: p for c, p in zip(result.classes, result.probabilities)}})
    return pd.DataFrame(rows)


def table_height(rows: int) -> int:
    """Pixels that show ``rows`` rows of a data frame and its header without an inner scroll bar."""
    return 35 * (rows + 1) + 3


def show_probabilities(result: SliceResult) -> None:
    st.vega_lite_chart(spec=probability_chart(result.classes, result.probabilities, config.CLASS_LABELS,
                                              "Ensemble probabilities (calibrated)"), width="stretch")
    table = member_table(result)     # each member's vote and probabilities, with bars
    st.dataframe(table, hide_index=True, width="stretch", height=table_height(len(table)),
                 column_config={"member": st.column_config.TextColumn("member", width="medium"),
                                "vote": st.column_config.TextColumn("vote", width="small"),
                                **{c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="%.2f",
                                                                      width="small")
                                   for c in ["vote probability", *config.CLASS_LABELS.values()]}})
    st.caption(calibration_note(result))


#: Heat-map opacity until someone moves its slider (and in the report of a result without Grad-CAM).
CAM_OPACITY = 0.5


def ensure_gradcam(slice_: Slice, result: SliceResult) -> None:
    """Compute ``result``'s Grad-CAM maps once: they are kept with the result in the session, so reruns
    reuse them (and the server remembers them for identical pixels)."""
    if result.gradcam:
        return
    analyzer = analyzer_or_error()
    if analyzer is None:
        return
    with st.spinner("Computing Grad-CAM of every member…"):
        try:
            analyzer.explain(slice_, result)
        except ServingTimeout as err:
            st.error(f"Grad-CAM could not be computed now. {err}")


def show_gradcam(slice_: Slice, result: SliceResult, where) -> float:
    """The chosen Grad-CAM map over the slice, with its own opacity slider, once asked for; returns the opacity."""
    with where:
        if not st.toggle("Show Grad-CAM (takes a second or two)", key=kept("an_show_cam", False),
                         help="Where each CNN looked for the decided class. Computed only when you ask, so that "
                              "nobody waits for maps they do not open; the report includes them once shown."):
            st.caption("Grad-CAM heat-maps of the four CNNs and their average: switch on to compute them.")
            return CAM_OPACITY
        ensure_gradcam(slice_, result)
        if not result.gradcam:
            st.info("No Grad-CAM for this result.")
            return CAM_OPACITY
        names = [AVERAGE] + [n for n in result.gradcam if n != AVERAGE]
        chosen = st.selectbox("Grad-CAM of", names, key=kept("an_cam_map", AVERAGE, names),
                              format_func=lambda n: "average of the members" if n == AVERAGE else n)
        cam_opacity = st.slider("Heat-map opacity", 0.0, 1.0, step=0.05, key=kept("an_cam_opacity", CAM_OPACITY))
        st.image(overlay_heatmap(slice_.image, result.gradcam[chosen], cam_opacity),
                 caption=f"Grad-CAM for {config.CLASS_LABELS[result.gradcam_class]} (red = most evidence)",
                 width="stretch")
    return cam_opacity


def expert_outline(truth: Truth | None, image: np.ndarray) -> np.ndarray | None:
    """The expert mask to outline over the overlays, when there is one, it fits and the box is ticked."""
    if truth is None or truth.mask is None or truth.mask.shape != image.shape[:2]:
        return None
    show = st.checkbox("Show the expert's outline (yellow line)", key=kept("an_expert", False),
                       help=f"The tumour outline drawn by the {truth.source} for this slice, over the model's overlay.")
    return truth.mask if show else None


def show_images(slice_: Slice, result: SliceResult, style: str, opacity: float,
                truth: Truth | None) -> tuple[float, np.ndarray | None]:
    """Segmentation overlay and mask beside the Grad-CAM heat-map; returns the heat-map opacity and the
    overlay shown (``None`` when not segmented)."""
    st.subheader("Where the models looked, and the tumour outline")
    expert = expert_outline(truth, slice_.image)
    seg, cam, mask_col = st.columns(3)
    cam_opacity = show_gradcam(slice_, result, cam)
    if not result.segmented:
        seg.info(unsegmented_text(result))
        if expert is not None:
            seg.image(draw_outline(overlay_mask(slice_.image, expert, "fill", 0.0), expert, EXPERT_COLOUR),
                      caption="Expert outline (yellow); the model drew none", width="stretch")
        return cam_opacity, None
    overlay = overlay_mask(slice_.image, result.mask, style=style, opacity=opacity)
    if result.possible_lesion:
        also = "" if shows_lesion_outline(result) else " The outline shown is the tumour segmenter's, as asked."
        seg.warning(f"**{possible_lesion_text(result)}**{also}", icon=":material/radar:")
    shown = overlay if expert is None else draw_outline(overlay, expert, EXPERT_COLOUR)
    caption = outline_caption(result) + ("" if expert is None else " · yellow line: expert outline")
    seg.image(shown, caption=caption, width="stretch")
    mask_col.image((result.mask * 255).astype("uint8"), caption="Binary mask", width="stretch")
    if result.gradcam:
        with st.expander("Grad-CAM of every member"):
            cols = st.columns(max(1, len(result.gradcam) - 1))
            for col, (name, heat) in zip(cols, [(n, h) for n, h in result.gradcam.items() if n != AVERAGE]):
                col.image(overlay_heatmap(slice_.image, heat, cam_opacity), caption=name, width="stretch")
    return cam_opacity, overlay


def unsegmented_text(result: SliceResult) -> str:
    """Why no outline is shown: no tumour found (and, when it ran, the cross-check found no confident region)."""
    how = "tick *Segment even when no tumour is found* in the sidebar to see the segmenter's mask anyway"
    if result.lesion_check is not None:
        found = (f"no region large and confident enough to flag (its strongest: {lesion_figures(result)})"
                 if result.lesion_check.get("area_fraction") else "no region")
        return f"No tumour found, and {evidence_who(result)} found {found}, so no outline is shown ({how})."
    return f"No tumour found, so the slice was not segmented ({how})."


def show_measurements(result: SliceResult) -> None:
    if not result.segmented:
        return
    if result.features is None:
        st.info("The mask is empty: nothing to measure.")
        return
    units = ("millimetres (spacing from the file)" if result.spacing_source == "file"
             else "millimetres (spacing you entered)" if result.spacing_source == "user"
             else "pixels — the pixel spacing is unknown")
    st.subheader("Measurements")
    lesion = "Measurements of the possible lesion's outline (the classifier reports no tumour). " \
        if shows_lesion_outline(result) else ""
    st.caption(f"{lesion}Units: {units}. Width and height are the bounding box in image axes; "
               "the RANO product is maximum diameter × longest perpendicular diameter; the centroid is measured "
               "from the image's top-left corner.")
    rows = feature_table(result.features)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=table_height(len(rows)),
                 column_config={"value": st.column_config.NumberColumn("value", format="%.4g")})


class PreparedFiles(Mapping[str, bytes]):
    """The downloads of one result and display settings, each built the first time it is asked for and then
    kept (the PDF costs the server about 0.2 s: only those who download it pay). Thread-safe: a download
    button's callable runs outside the script's thread."""

    def __init__(self, key: tuple, builders: dict[str, Callable[[], bytes]]):
        self.key = key
        self._builders = builders
        self._built: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> bytes:
        with self._lock:
            if name not in self._built:
                self._built[name] = self._builders[name]()
            return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)

    def getter(self, name: str) -> Callable[[], bytes]:
        """What a download button calls when pressed."""
        return lambda: self[name]


def download_files(slice_: Slice, stored: dict, synthetic: bool, style: str, opacity: float, cam_opacity: float,
                   include_ids: bool, overlay: np.ndarray | None) -> PreparedFiles:
    """Every download of one result, kept in the session per result and display settings; each file is built
    once, when first pressed, however fast the buttons are pressed."""
    result: SliceResult = stored["result"]
    key = (stored["token"], style, opacity, cam_opacity, include_ids, result.gradcam is not None)
    files = st.session_state.get("an_files")
    if getattr(files, "key", None) != key:             # (the class is redefined on every run: no isinstance)
        report = functools.cache(lambda: build_report(
            slice_, result, synthetic=synthetic, include_identifiers=include_ids, overlay_style=style,
            overlay_opacity=opacity, cam_opacity=cam_opacity))
        builders = {"pdf": lambda: report_pdf(report()), "json": lambda: report_json(report()),
                    "csv": lambda: features_csv(result)}
        if overlay is not None:
            builders.update(mask=lambda: mask_png_bytes(result), overlay=lambda: png_bytes(overlay))
        files = PreparedFiles(key, builders)
        st.session_state["an_files"] = files
    return files


def show_downloads(slice_: Slice, stored: dict, synthetic: bool, style: str, opacity: float,
                   cam_opacity: float, overlay: np.ndarray | None, stem: str) -> None:
    result: SliceResult = stored["result"]
    st.subheader("Downloads")
    include_ids = False
    if slice_.identifiers:
        include_ids = st.checkbox("Include the DICOM patient identifiers in the report", key="an_ids",
                                  help="Off by default: the report then carries no name, ID, date or UID "
                                       "from the file, and any of them in the file name is withheld.")
    files = download_files(slice_, stored, synthetic, style, opacity, cam_opacity, include_ids, overlay)
    with st.container(horizontal=True):
        st.download_button("Report (PDF)", files.getter("pdf"), f"{stem}_report.pdf", "application/pdf",
                           key="dl_pdf", type="primary", icon=":material/picture_as_pdf:", on_click="ignore")
        st.download_button("Report (JSON)", files.getter("json"), f"{stem}_report.json", "application/json",
                           key="dl_json", on_click="ignore")
        st.download_button("Measurements (CSV)", files.getter("csv"), f"{stem}_features.csv", "text/csv",
                           key="dl_csv", disabled=result.features is None, on_click="ignore")
        if "mask" in files:
            st.download_button("Mask (PNG)", files.getter("mask"), f"{stem}_mask.png", "image/png", key="dl_mask",
                               on_click="ignore")
            st.download_button("Overlay (PNG)", files.getter("overlay"), f"{stem}_overlay.png", "image/png",
                               key="dl_overlay", on_click="ignore")
    st.caption("The report holds the input thumbnail, the decision and probabilities, the members' votes, Grad-CAM "
               "(once shown above), the overlay and mask, the measurements with units, the warnings, the models with "
               "their weight sha256, the app version and the time. Each file is made when you first press its button.")
    with st.expander("Model versions and timings"):
        st.dataframe(pd.DataFrame([{"model": k, "sha256": v, "runs on": result.model_runtimes.get(k, "")}
                                   for k, v in result.model_versions.items()]),
                     hide_index=True, width="stretch")
        st.caption(" · ".join(f"{k.removesuffix('_ms')}: {v:.0f} ms" for k, v in result.timings_ms.items()))


def show_result(slice_: Slice, stored: dict, style: str, opacity: float, chosen: Chosen) -> None:
    result: SliceResult = stored["result"]
    stem = download_stem(slice_.name)
    show_decision(result, chosen.truth)
    show_probabilities(result)
    cam_opacity, overlay = show_images(slice_, result, style, opacity, chosen.truth)
    if chosen.held_out is not None:
        show_ground_truth(chosen.held_out, slice_.image, result, opacity)
    show_measurements(result)
    show_downloads(slice_, stored, chosen.synthetic, style, opacity, cam_opacity, overlay, stem)


def run_analysis(slice_: Slice, options: AnalysisOptions, verdict, override: bool) -> SliceResult | None:
    """The models' result (loading them first, once per server, if the background load has not finished)."""
    analyzer = analyzer_or_error()
    if analyzer is None:
        return None
    # A still note, not st.spinner: when many sessions wait at once, the spinner's animation is most of what
    # their browsers spend while waiting (about 4 % of a core each; see python -m core.bench_load).
    note = st.empty()
    note.info("Classifying, segmenting and measuring…", icon=":material/hourglass_top:")
    try:
        result = analyzer.analyze(slice_, options)
    except ServingTimeout as err:
        st.error(f"The analysis could not run now. {err}")
        return None
    finally:
        note.empty()
    result.guard = {**verdict.to_dict(), "overridden": bool(override and not verdict.accepted)}
    if override and not verdict.accepted:
        result.warnings.insert(0, f"Input guard overridden by the user: {verdict.reason}")
    return result


# ----------------------------------------------------------------------------- page
chosen = choose_input()
picked = pick_slice(chosen.data, chosen.name) if chosen is not None else None
options, style, opacity = sidebar_options(picked[0] if picked else None)
if picked is None:
    st.stop()
slice_, selection = picked

preview, info = st.columns([1, 2], gap="medium")
preview.image(slice_.image, caption=f"{chosen.name}" + (" (synthetic)" if chosen.synthetic else ""), clamp=True,
              width="stretch")
with info:
    spacing = (f"{slice_.spacing_mm[0]:.3g} × {slice_.spacing_mm[1]:.3g} mm" if slice_.spacing_mm else "not stated")
    st.markdown(f"**Format:** {slice_.source_format.upper()} · **Size:** {slice_.shape[1]}×{slice_.shape[0]} px · "
                f"**Pixel spacing:** {spacing}")
    if slice_.metadata:
        st.caption(" · ".join(f"{k}: {v}" for k, v in slice_.metadata.items()))
    if slice_.identifiers:
        st.caption(f"The file carries {len(slice_.identifiers)} patient-identifying DICOM fields; they are "
                   "not shown and stay out of the report unless you include them.")
    verdict = check_slice(slice_)
    show_guard(verdict)
    override = False
    if not verdict.accepted:
        override = st.checkbox("It is a brain MRI slice — analyse it anyway", key="an_override")
    pressed = st.button("Analyse", type="primary", disabled=not (verdict.accepted or override), key="an_go")

input_key = hashlib.sha256(chosen.data).hexdigest() + repr(selection)
stored = st.session_state.get("analysis")
if stored and stored.get("input") != input_key:      # a new input: drop what depended on the old one
    st.session_state.pop("analysis", None)
    st.session_state.pop("an_files", None)
    stored = None
if pressed:
    result = run_analysis(slice_, options, verdict, override)
    if result is not None:
        stored = {"input": input_key, "options": repr(options), "result": result, "token": uuid.uuid4().hex}
        st.session_state["analysis"] = stored
        st.session_state.pop("an_files", None)

if stored:
    if stored["options"] != repr(options):
        st.caption("The analysis settings in the sidebar changed since this result: press **Analyse** to apply them.")
    show_result(slice_, stored, style, opacity, chosen)
