"""Explore BraTS volumes: a 4-modality case in three planes and in 3D, sub-region volumes, and the
shipped model's segmentation beside the expert one. A thin view over core.volumes.case, core.volumes.figures
and core.volumes.brats_model; everything derived from a user's case lives in st.session_state."""
from __future__ import annotations

import time
from typing import Any, Callable

import pandas as pd
import streamlit as st

from core import config

from core.serving import registry
from core.volumes import figures as vv
from core.serving.registry import card_dims
from core.volumes.brats_model import available_models, model_problem, shipped_name
from core.errors import InputError, ModelUnavailable
from core.volumes.case import MAX_CASE_BYTES, MODALITIES, MODALITY_NAMES, Case, read_case, read_case_folder
from core.volumes.nifti_export import prediction_nifti
from core.volumes.regions import compare_to_truth
from core.volumes.views import PLANES, window_presets
from ui.handoff import BRATS_REQUEST, take
from ui.navigation import ensure_app_navigation
from ui.resources import brats_samples, load_segmenter
from ui.state import STORE, kept, remember

ensure_app_navigation()

SOURCES = {"sample": "Synthetic sample", "public": "Public BraTS case", "upload": "Upload a case"}
VIEWS = (("axial", "bx_z", "Axial"), ("coronal", "bx_y", "Coronal"), ("sagittal", "bx_x", "Sagittal"))
VIEW_NOTES = {"axial": "top anterior, left = patient right", "coronal": "top superior, left = patient right",
              "sagittal": "top superior, left posterior"}
WINDOWS = {"default": "1–99 %", "narrow": "5–95 %", "full": "min–max", "manual": "manual"}
COLUMN_LABELS = {"expert_cm3": "Expert (cm³)", "model_cm3": "Model (cm³)", "difference_cm3": "Model − expert (cm³)",
                 "dice": "Dice", "hd95_mm": "HD95 (mm)"}
UPLOAD_LIMIT_MB = 200
CITATION = ("BraTS 2021 training case (RSNA-ASNR-MICCAI BraTS 2021: U. Baid et al. 2021; B. Menze et al. 2015; "
            "S. Bakas et al. 2017), cropped to 128³ around the brain and stored as 8-bit.")

st.title("Explore BraTS volumes")
st.write("Walk through a four-modality glioma MRI case (FLAIR, T1, T1ce, T2): necrotic core (NCR), oedema (ED) "
         "and enhancing tumour (ET) in any plane and in 3D, their volumes, and a model's segmentation beside "
         "the expert one.")


# ----------------------------------------------------------------------------- choosing a case
def public_cases() -> list[str]:
    """Case folders of the public BraTS data (``data_dir()/brats``), empty when absent."""
    root = config.data_dir()
    folder = root / "brats" if root is not None else None
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def choose_source() -> tuple[Any, Callable[[], Case], str] | None:
    """``(key, reader, kind)`` of the chosen case; ``None`` until there is something to read."""
    problem = select_handed_over_case()
    if problem:
        st.warning(problem)
    options = ["sample"] + (["public"] if public_cases() else []) + ["upload"]
    source = st.radio("Case", options, format_func=SOURCES.get, horizontal=True,
                      key=kept("bx_source", "sample", options))
    if source == "sample":
        samples = brats_samples()
        if not samples:
            st.warning("No synthetic BraTS sample found; regenerate it with `python -m core.samples`.")
            return None
        name = st.selectbox("Synthetic case", list(samples), format_func=lambda n: f"{n} — {samples[n]}",
                            key=kept("bx_sample", next(iter(samples)), list(samples)))
        return ("sample", name), lambda: read_case_folder(config.SAMPLE_DIR / name), "synthetic"
    if source == "public":
        cases = public_cases()
        name = st.selectbox("Case from the data folder", cases, key=kept("bx_public", cases[0], cases))
        return ("public", name), lambda: read_case_folder(config.data_dir() / "brats" / name), "public"
    return choose_uploaded_case()


def select_handed_over_case() -> str | None:
    """Select the public case handed over by another page (and ask to segment it on arrival).

    Call before the case widgets are drawn. Returns why the hand-off failed, or ``None`` (also when
    nothing was handed over); the caller shows it.
    """
    request = take(BRATS_REQUEST)
    if not request:
        return None
    if request.get("case") not in public_cases():
        return f"Case {request.get('case')} is not in the public data folder (`BTD_DATA_DIR`/brats)."
    remember("bx_source", "public")
    remember("bx_public", request["case"])
    if request.get("segment"):
        st.session_state["bx_autosegment"] = request["case"]
    return None


def choose_uploaded_case() -> tuple[Any, Callable[[], Case], str] | None:
    """Upload widgets for a case; ``(key, reader, "upload")`` of the uploaded (or kept) case, ``None`` without one."""
    modes = ["Files or one .zip", "A folder"]
    mode = st.radio("Upload", modes, horizontal=True, key=kept("bx_upload_mode", modes[0], modes))
    help_text = (f"The four modalities (+ optional label map) as .nii / .nii.gz, or one .zip; at most "
                 f"{UPLOAD_LIMIT_MB} MB per file and {MAX_CASE_BYTES / 2**20:.0f} MB per case. Names: BraTS 2021 "
                 "(<case>_flair, _t1, _t1ce, _t2, _seg), BraTS 2023 (<case>-t2f, -t1n, -t1c, -t2w, -seg) or "
                 "Decathlon (one 4D image + label map).")
    folder = mode == "A folder"
    widget = "bx_upload_dir" if folder else "bx_upload"
    fresh = widget not in st.session_state
    files = st.file_uploader("Case files", type=["nii", "gz", "zip"], help=help_text,
                             accept_multiple_files="directory" if folder else True, key=widget)
    had_files = st.session_state.pop(f"_had_files_{widget}", False)
    if files:
        st.session_state[f"_had_files_{widget}"] = True
    if not files:
        stored = st.session_state.get("bx_case")
        if had_files and not fresh:               # the user removed the files: forget that case
            st.session_state.pop("bx_case", None)
        elif stored is not None and stored["kind"] == "upload" and stored["case"] is not None:
            st.caption(f"Your last uploaded case, **{stored['case'].case_id}**, kept while you were away; upload "
                       "other files to replace it.")
            return stored["key"], lambda: stored["case"], "upload"
        st.caption(help_text)
        return None
    key = ("upload", tuple((f.name, f.size, getattr(f, "file_id", "")) for f in files))
    return key, lambda: read_case({f.name: f.getvalue() for f in files}), "upload"


def load_case(key: Any, reader: Callable[[], Case], kind: str) -> dict | None:
    """The case for ``key`` from session state, read once; errors shown (and remembered)."""
    stored = st.session_state.get("bx_case")
    if stored is None or stored["key"] != key:
        with st.spinner("Reading the case…"):
            try:
                case = reader()
                stored = {"key": key, "case": case, "kind": kind, "windows": {}, "error": None}
            except InputError as err:
                stored = {"key": key, "case": None, "kind": kind, "error": str(err)}
        st.session_state["bx_case"] = stored
        for stale in ("bx_pred", "bx_surfaces"):
            st.session_state.pop(stale, None)
        if stored["case"] is not None:
            set_cursor(vv.tumour_cursor(stored["case"].labels, stored["case"].shape))
    if stored["error"]:
        st.error(f"This case cannot be read. {stored['error']}")
        return None
    if any(k not in st.session_state for k in ("bx_x", "bx_y", "bx_z")):  # back from another page
        last = st.session_state.get(STORE, {})
        if all(k in last for k in ("bx_x", "bx_y", "bx_z")):
            set_cursor((last["bx_x"], last["bx_y"], last["bx_z"]))
        else:
            set_cursor(vv.tumour_cursor(stored["case"].labels, stored["case"].shape))
    return stored


def set_cursor(cursor: tuple[int, int, int]) -> None:
    st.session_state["bx_x"], st.session_state["bx_y"], st.session_state["bx_z"] = (int(c) for c in cursor)


def describe_case(stored: dict) -> None:
    case: Case = stored["case"]
    summary = vv.case_summary(case)
    st.caption(" · ".join(f"**{k}:** {v}" for k, v in summary.items()))
    if stored["kind"] == "synthetic":
        st.info("**Synthetic case**, generated by this project's code (`python -m core.samples`): a phantom, "
                "not a patient scan. Model results on it only demonstrate the page.", icon=":material/science:")
    elif stored["kind"] == "public":
        st.caption(CITATION)
        name = chosen_model()
        seen = training_role(case.case_id, name)
        if seen:
            st.warning(f"The model {name} was trained on this case ({seen} split): its scores here are optimistic.")


def training_role(case_id: str, name: str) -> str | None:
    """The split ("train", "val") that used ``case_id`` to build the model ``name``, if any."""
    try:
        card = registry.model_card(name)
    except ModelUnavailable:
        return None
    return next((part for part in ("train", "val") if case_id in card.get("split_cases", {}).get(part, [])), None)


# ----------------------------------------------------------------------------- model
def chosen_model() -> str:
    """The BraTS model picked on this page (session state), else the shipped one."""
    picked = st.session_state.get("bx_model")
    return picked if picked in available_models() else shipped_name()


def pick_model() -> str:
    """A choice between the BraTS models present (when there are several); returns the chosen name."""
    names = available_models()
    if len(names) < 2:
        return chosen_model()
    cards = registry.models_by("brats")
    return st.radio("Model", names, horizontal=True, key=kept("bx_model", shipped_name(), names),
                    format_func=lambda n: f"{n} ({card_dims(cards[n])}D, {cards[n].get('role', 'comparison')})",
                    help="The shipped model is the one validation picked; the others are offered for comparison.")


def model_section(stored: dict) -> dict | None:
    """Run the chosen model on demand; the prediction of this case (session state) or ``None``."""
    case: Case = stored["case"]
    st.subheader("Model segmentation")
    name = pick_model()
    problem = model_problem(name)
    if problem:
        st.warning(f"{problem} Everything else on this page works without it.", icon=":material/hourglass:")
        return None
    card = registry.model_card(name)
    rules = card.get("postprocessing_rules", {})
    min_et = rules.get("min_et_mm3", 0)
    et_rule = f"; ET totals under {min_et:g} mm³ relabelled NCR" if min_et > 0 else ""
    st.caption(f"**{name}**: {card.get('description', '')} Post-processing: tumour components under "
               f"{rules.get('min_component_mm3', 0):g} mm³ dropped{et_rule}.")
    arrived = st.session_state.pop("bx_autosegment", None) == stored["case"].case_id and stored["kind"] == "public"
    if st.button("Segment with the model", type="primary", key="bx_segment") or arrived:
        run_model(stored, name, card)
    pred = st.session_state.get("bx_pred")
    if not pred or pred["key"] != stored["key"] or pred["model"] != name:
        return None
    st.success(f"Segmented {'×'.join(map(str, case.shape))} voxels in {pred['seconds']:.1f} s on the CPU "
               f"({pred['model']}, sha256 {pred['sha256'][:12]}…).", icon=":material/check_circle:")
    st.download_button("Prediction (NIfTI label map, input grid and affine)", pred["nifti"],
                       f"{case.case_id}_pred_seg.nii.gz", "application/gzip", key="bx_dl_pred", on_click="ignore")
    return pred


def run_model(stored: dict, name: str, card: dict) -> None:
    case: Case = stored["case"]
    try:
        segmenter = load_segmenter(str(config.WEIGHTS_DIR), name, card["sha256"])
    except ModelUnavailable as err:
        st.error(f"The BraTS model cannot be loaded: {err}")
        return
    sweep = "window by window" if segmenter.dims == 3 else "slice by slice"
    bar = st.progress(0.0, text=f"Segmenting the case {sweep}…")
    started = time.perf_counter()
    labels = segmenter.segment(case.images, case.spacing_mm,
                               progress=lambda f: bar.progress(f, text=f"Segmenting the case… {f:.0%}"))
    seconds = time.perf_counter() - started
    bar.empty()
    comparison = compare_to_truth(labels, case.labels, case.spacing_mm) if case.labels is not None else None
    st.session_state["bx_pred"] = {"key": stored["key"], "labels": labels, "seconds": seconds,
                                   "comparison": comparison, "nifti": prediction_nifti(labels, case),
                                   "rows": vv.volume_rows(case.labels, labels, case.spacing_mm, comparison),
                                   "model": segmenter.name, "sha256": segmenter.sha256}
    st.session_state.pop("bx_surfaces", None)


# ----------------------------------------------------------------------------- display settings
def label_maps(case: Case, pred: dict | None) -> dict[str, Any]:
    maps = {}
    if case.labels is not None:
        maps["Expert"] = case.labels
    if pred is not None:
        maps["Model"] = pred["labels"]
    return maps


def display_settings(stored: dict, maps: dict[str, Any]) -> dict[str, Any]:
    """Sidebar widgets: modality, window, overlay (source, colours, opacity, contours), cursor."""
    case: Case = stored["case"]
    with st.sidebar:
        st.subheader("Display")
        modality = st.selectbox("Modality", MODALITIES, format_func=MODALITY_NAMES.get,
                                key=kept("bx_modality", MODALITIES[0], list(MODALITIES)))
        window = choose_window(stored, modality)
        shown = None
        if maps:
            overlay = st.toggle("Label overlay", key=kept("bx_overlay", True))
            source = st.radio("Labels shown", list(maps), horizontal=True,
                              key=kept("bx_label_source", next(iter(maps)), list(maps)))
            shown = maps[source] if overlay else None
        else:
            st.caption("This case has no label map: run the model to get one.")
        contour = st.toggle("Contours only", key=kept("bx_contour", False))
        with st.expander("Label colours and opacity"):
            colours, opacity = {}, {}
            for name in vv.LABELS:
                left, right = st.columns([1, 2])
                colours[name] = left.color_picker(name, key=kept(f"bx_colour_{name}", vv.DEFAULT_COLOURS[name]))
                opacity[name] = right.slider(f"{name} opacity", 0.0, 1.0, step=0.05,
                                             key=kept(f"bx_opacity_{name}", vv.DEFAULT_OPACITY[name]),
                                             help=vv.PART_DESCRIPTIONS[name])
        show_cursor = st.toggle("Cursor crosshair", key=kept("bx_cursor", True))
    style = vv.OverlayStyle(colours=colours, opacity=opacity, contour=contour, visible=shown is not None)
    return {"volume": case.images[modality], "modality": modality, "window": window, "labels": shown,
            "source": source if shown is not None else None, "style": style, "cursor": show_cursor}


def choose_window(stored: dict, modality: str) -> tuple[float, float]:
    presets = stored["windows"].get(modality)
    if presets is None:
        presets = stored["windows"][modality] = window_presets(stored["case"].images[modality])
    name = st.radio("Window / level", list(WINDOWS), format_func=WINDOWS.get, horizontal=True,
                    key=kept("bx_window", "default", list(WINDOWS)),
                    help="Percentiles of the brain (non-zero) voxels, or a manual range.")
    if name != "manual":
        return presets[name]
    lo, hi = presets["full"]
    step = 1.0 if stored["case"].images[modality].dtype.kind in "ui" else (hi - lo) / 200
    key = kept(f"bx_window_manual_{modality}", (float(presets["default"][0]), float(presets["default"][1])))
    low, high = st.session_state[key]
    if not (lo <= low <= hi and lo <= high <= hi):        # kept from another case with another range
        remember(key, (float(presets["default"][0]), float(presets["default"][1])))
    picked = st.slider("Manual window", float(lo), float(hi), step=float(step), key=key)
    lo, hi = float(picked[0]), float(picked[1])
    return lo, (hi if hi > lo else lo + 1.0)


# ----------------------------------------------------------------------------- views
def show_legend(style: vv.OverlayStyle, which: str) -> None:
    """The label colours as they are drawn now (the sidebar may change them), and which labels are shown."""
    swatches = " ".join(
        f'<span style="white-space:nowrap"><span style="display:inline-block;width:0.9em;height:0.9em;'
        f'background:{style.colours.get(name, vv.DEFAULT_COLOURS[name])};border:1px solid #888;border-radius:2px;'
        f'vertical-align:-0.1em"></span> <b>{name}</b> {vv.LEGEND_NAMES[name]}</span>'
        for name in vv.LABELS)
    mode = "outlines" if style.contour else "filled"
    st.markdown(f'<div data-testid="bx-legend">{swatches} <span style="opacity:0.75">· {which} · {mode}</span></div>',
                unsafe_allow_html=True)


def jump_to_tumour(labels: Any, shape: tuple[int, int, int]) -> None:
    set_cursor(vv.tumour_cursor(labels, shape))


def slice_views(case: Case, settings: dict[str, Any], maps: dict[str, Any]) -> tuple[int, int, int]:
    """Three planes side by side, each with its slider; returns the shared cursor (x, y, z)."""
    st.subheader("Slices")
    target = settings["labels"] if settings["labels"] is not None else next(iter(maps.values()), None)
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button("Jump to the largest tumour slice", key="bx_jump", disabled=target is None,
                  on_click=jump_to_tumour, args=(target, case.shape), icon=":material/my_location:")
        st.button("Centre", key="bx_centre", on_click=set_cursor, args=(vv.default_cursor(case.shape),))
        show_legend(settings["style"], settings["source"] or "No labels shown")
    columns = st.columns(3)
    for col, (plane, key, title) in zip(columns, VIEWS):  # all sliders first: they set the shared cursor
        depth = case.shape[PLANES[plane]]
        col.slider(f"{title} slice", 0, depth - 1, key=kept(key, st.session_state.get(key, depth // 2), range(depth)))
    cursor = (st.session_state["bx_x"], st.session_state["bx_y"], st.session_state["bx_z"])
    for col, (plane, _, title) in zip(columns, VIEWS):
        image = vv.render_view(settings["volume"], settings["labels"], plane, cursor, settings["window"],
                               settings["style"], case.spacing_mm, show_cursor=settings["cursor"])
        col.image(image, width="stretch", caption=f"{title} · {MODALITY_NAMES[settings['modality']]} · "
                                                   f"{VIEW_NOTES[plane]}")
    return cursor


def side_by_side(case: Case, settings: dict[str, Any], maps: dict[str, Any], cursor: tuple[int, int, int]) -> None:
    """The expert and the model label maps on the same slice."""
    if len(maps) < 2:
        return
    st.subheader("Expert vs model")
    planes = list(PLANES)[::-1]
    plane = st.segmented_control("Plane", planes, key=kept("bx_compare_plane", "axial", planes)) or "axial"
    style = vv.OverlayStyle(settings["style"].colours, settings["style"].opacity, settings["style"].contour, True)
    show_legend(style, "Expert (left) and model (right)")
    for col, (name, labels) in zip(st.columns(2), maps.items()):
        image = vv.render_view(settings["volume"], labels, plane, cursor, settings["window"], style,
                               case.spacing_mm, show_cursor=settings["cursor"])
        col.image(image, width="stretch", caption=f"{name} · {plane} {cursor[PLANES[plane]]}")


# ----------------------------------------------------------------------------- measurements, 3D
def measurements(stored: dict, pred: dict | None) -> None:
    """Volumes of the labels and regions (expert, model), Dice and HD95 when both exist; CSV."""
    case: Case = stored["case"]
    st.subheader("Volumes")
    if case.labels is None and pred is None:
        st.info("No label map yet: upload one with the case, or run the model, to measure the sub-regions.")
        return
    comparison = pred["comparison"] if pred else None
    if not pred and "rows" not in stored:  # computed once per case, not on every slider move
        stored["rows"] = vv.volume_rows(case.labels, None, case.spacing_mm)
    rows = pred["rows"] if pred else stored["rows"]
    table = pd.DataFrame(rows).dropna(axis=1, how="all")
    notes = vv.empty_cell_notes(rows, comparison, has_truth=case.labels is not None)
    if any(notes):
        table["note"] = notes
    fmt = {c: st.column_config.NumberColumn(label, format="%.3f" if c == "dice" else "%.2f")
           for c, label in COLUMN_LABELS.items() if c in table.columns}
    fmt.update(part=st.column_config.TextColumn("Part"), meaning=st.column_config.TextColumn("Meaning"),
               note=st.column_config.TextColumn("Why a cell shows —", width="medium"))
    st.dataframe(table, hide_index=True, width="stretch", column_config=fmt, placeholder="—",
                 height=35 * (len(table) + 1) + 3)
    st.caption(f"Volume = voxel count × {case.voxel_volume_mm3:.3g} mm³ (voxel size from the file). "
               "WT = NCR + ED + ET, TC = NCR + ET." + (" Dice and HD95 (mm) compare the model with the expert for "
                                                       "the regions WT, TC and ET; a region absent from both counts as "
                                                       "Dice 1 and has no HD95." if comparison else "")
               + (" — marks a cell with nothing to show; the last column says why." if any(notes) else ""))
    st.plotly_chart(vv.volumes_figure(rows), width="stretch", key="bx_volumes_chart")
    st.download_button("Volumes (CSV)", vv.rows_csv(rows), f"{case.case_id}_volumes.csv", "text/csv",
                       key="bx_dl_volumes", on_click="ignore")


def view_3d(stored: dict, maps: dict[str, Any], colours: dict[str, str]) -> None:
    case: Case = stored["case"]
    st.subheader("3D view")
    if not st.toggle("Show the 3D view", key=kept("bx_3d", False),
                     help="Surfaces from marching cubes, decimated to draw quickly."):
        return
    if not maps:
        st.info("No label map to draw: run the model or upload a label map.")
    cols = st.columns(3)
    source = cols[0].radio("Labels", list(maps), horizontal=True,
                           key=kept("bx_3d_source", next(iter(maps)), list(maps))) if maps else None
    parts = cols[1].multiselect("Sub-regions", list(vv.LABELS), key=kept("bx_3d_parts", ["ED", "NCR", "ET"]))
    brain = cols[2].checkbox("Translucent brain surface", key=kept("bx_3d_brain", True))
    key = (stored["key"], source, tuple(parts), brain, tuple(sorted(colours.items())))
    cached = st.session_state.get("bx_surfaces")
    if cached is None or cached["key"] != key:
        with st.spinner("Building the surfaces…"):
            surfaces = vv.case_surfaces(maps.get(source), case.spacing_mm, parts, colours,
                                        brain=case.images["t1"] if brain else None)
            cached = {"key": key, "figure": vv.surfaces_figure(surfaces), "faces": sum(len(s.faces) for s in surfaces)}
        st.session_state["bx_surfaces"] = cached
    st.plotly_chart(cached["figure"], width="stretch", key="bx_3d_chart")
    st.caption(f"{cached['faces']:,} triangles in all (marching cubes on a coarsened grid, at most 20,000 per surface); "
               "axes in mm along the patient's right, anterior and superior directions.")


# ----------------------------------------------------------------------------- page
chosen = choose_source()
if chosen is None:
    st.stop()
stored = load_case(*chosen)
if stored is None:
    st.stop()
case: Case = stored["case"]
describe_case(stored)
pred = model_section(stored)
maps = label_maps(case, pred)
settings = display_settings(stored, maps)
cursor = slice_views(case, settings, maps)
side_by_side(case, settings, maps, cursor)
measurements(stored, pred)
view_3d(stored, maps, dict(settings["style"].colours))
