"""Compare models: tables and plots read from the evaluation artifacts (never trains or evaluates)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import comparison, config
from core import comparison_figures as figs
from core.comparison import ARTIFACTS_COMMAND, SPLITS, ArtifactMissing
from core.reported import SOURCES, reported_table
from ui.handoff import BRATS_REQUEST, hand_over
from ui.heldout import no_data_help, offer_analysis
from ui.navigation import ensure_app_navigation

ensure_app_navigation()

LABELS = config.CLASS_LABELS
CLASSES = list(config.CLASS_NAMES)
SCATTER_X = {"CPU ms/image": "CPU latency per image (ms)", "params": "parameters", "size MB": "file size (MB)"}

st.title("Compare models")
st.write("Why this ensemble, why ResUNet, and how sure are these numbers? Every model below was trained "
         "**from scratch** by this project's own training commands with one recipe — the keras.applications "
         "backbones (Xception, InceptionV3, ResNet50, VGG19, DenseNet121, EfficientNetB0) with `weights=None`, "
         "no ImageNet pretraining — and scored on the same test data, with bootstrap 95 % confidence intervals.")
st.caption(f"This page only reads evaluation artifacts written by `{ARTIFACTS_COMMAND}`; "
           "nothing is trained or evaluated when it loads.")


# ----------------------------------------------------------------------------- artifacts (cached)
def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_data(show_spinner=False)
def read_summary(folder: str, mtime: float) -> dict:
    return comparison.load_summary(Path(folder))


@st.cache_data(show_spinner=False)
def read_detail(folder: str, entry: dict, mtime: float) -> dict:
    return comparison.load_detail(entry, Path(folder))


@st.cache_data(show_spinner=False)
def read_predictions(folder: str, entry: dict, mtime: float) -> pd.DataFrame:
    return comparison.load_predictions(entry, Path(folder))


@st.cache_data(show_spinner=False)
def read_log(folder: str, entry: dict, mtime: float) -> pd.DataFrame | None:
    return comparison.load_log(entry, Path(folder))


def detail_of(folder: Path, entry: dict) -> dict | None:
    try:
        return read_detail(str(folder), entry, _mtime(folder / (entry.get("detail") or "")))
    except ArtifactMissing as err:
        st.warning(str(err))
        return None


def predictions_of(folder: Path, entry: dict) -> pd.DataFrame | None:
    try:
        return read_predictions(str(folder), entry, _mtime(folder / entry["predictions"]["file"]))
    except (ArtifactMissing, KeyError, TypeError) as err:
        st.warning(f"No per-image predictions for {entry['name']}: {err}")
        return None


def log_of(entry: dict) -> pd.DataFrame | None:
    return read_log(str(FOLDER), entry, _mtime(FOLDER / (entry.get("log") or "")))


FOLDER = comparison.eval_dir()
if not (FOLDER / "comparison.json").is_file():
    st.warning(f"No model-comparison artifacts in `{FOLDER}`. Write them with `{ARTIFACTS_COMMAND}` "
               "(needs the public datasets: set `BTD_DATA_DIR`), or point `BTD_EVAL_DIR` at a folder that has them.")
    st.stop()
summary = read_summary(str(FOLDER), _mtime(FOLDER / "comparison.json"))
MODELS = summary["models"]


def evaluated(task: str) -> list[str]:
    return [n for n, m in MODELS.items() if m["task"] == task and m["status"] == "evaluated"]


# ----------------------------------------------------------------------------- split toggle
dedup = summary.get("dedup") or {}
n_official = next((m["metrics"]["official"]["n"] for m in MODELS.values()
                   if m["task"] == "classification" and m.get("metrics")), None)
split_names = {"official": f"Official Testing split (n={n_official or '—'})",
               "dedup": f"De-duplicated (n={dedup.get('n_clean', '—')})"}
split = st.radio("Classification test split", list(SPLITS), format_func=split_names.get, horizontal=True, key="mc_split",
                 help="The official Testing split holds exact and near-duplicate copies of Training images. The "
                      "de-duplicated split keeps only test images with no near-duplicate in Training or elsewhere in "
                      "Testing (`python -m core.dedup split`).")
if split == "dedup" and dedup:
    st.caption(f"De-duplicated: {dedup['n_clean']} of {dedup['n_test']} test images kept; {dedup['n_dup_of_train']} "
               f"duplicate a training image, {dedup['n_dup_within_test']} another test image.")

NUM4 = st.column_config.NumberColumn(format="%.4f")
COLUMNS = {c: NUM4 for c in ("accuracy", "acc CI low", "acc CI high", "macro F1", "macro AUC", "ECE", "mean Dice",
                             "Dice CI low", "Dice CI high", "global Dice", "mean IoU", "val accuracy (training)",
                             "val Dice (training)", "reported", "ours, same metric (validation)", "ours, test",
                             "ours CI low", "ours CI high")}
COLUMNS.update({"params": st.column_config.NumberColumn(format="%d"), "n": st.column_config.NumberColumn(format="%d"),
                "patients": st.column_config.NumberColumn(format="%d"),
                "HD95 mm": st.column_config.NumberColumn(format="%.2f"),
                "size MB": st.column_config.NumberColumn(format="%.3f"),
                **{f"{runtime} ms/{unit}": st.column_config.NumberColumn(format="%.1f")
                   for runtime in ("CPU", "LiteRT") for unit in ("image", "slice")}})


def show_pending(task: str) -> None:
    """Models of ``task`` without numbers yet, each with the exact command that produces them."""
    runs = [r for r in comparison.pending_runs(summary) if r["task"] == task]
    if not runs:
        return
    st.markdown("**Runs waiting** — these models have no evaluation artifacts yet:")
    if any(MODELS[r["name"]]["status"] == "awaiting_gpu" for r in runs):
        st.caption("Training these keras.applications backbones from scratch needs a GPU (`scripts/gpu_train.sh` "
                   "queues them on one); their weights are too large to ship, so the runs write to "
                   f"`{comparison.GPU_RUNS}/` and only their artifacts, logs and cards are committed. Their parameters "
                   "and CPU latency above are measured on the untrained architecture (same compute). No smaller "
                   "stand-in and no run stopped after its first epoch is shown under their names.")
    for run in runs:
        st.markdown(f"- **{run['label']}** (`{run['name']}`): {run['status']}")
        st.code("\n".join(run["commands"]), language="bash")


def show_curves(name: str) -> None:
    entry = MODELS[name]
    log = log_of(entry)
    if log is not None:
        st.plotly_chart(figs.curves_figure(log, f"Training curves of {name} (per-epoch log of the evaluated weights)"),
                        key=f"mc_curves_{name}")
        return
    members = entry.get("members") or []
    logs = {m: log_of(MODELS[m]) for m in members if m in MODELS}
    logs = {m: lg for m, lg in logs.items() if lg is not None}
    column = "val_accuracy" if entry["task"] == "classification" else "val_dice"
    if logs:
        st.caption(f"{name} is fitted in one step on its members' validation predictions; its members' curves:")
        st.plotly_chart(figs.overlay_curves_figure(logs, column, f"Members of {name}: {column} per epoch"),
                        key=f"mc_curves_{name}")
    else:
        st.info(f"No per-epoch training log for {name} among the artifacts: it is copied from the training run's "
                f"CSV when `{ARTIFACTS_COMMAND}` evaluates the model.")


def show_tradeoff(table: pd.DataFrame, score: str, key: str) -> None:
    x = st.radio("Horizontal axis", list(SCATTER_X), format_func=SCATTER_X.get, horizontal=True, key=key)
    if table.dropna(subset=[x, score]).empty:
        st.info("No evaluated model has both numbers yet.")
        return
    st.plotly_chart(figs.tradeoff_figure(table, x, score, f"{score} against {SCATTER_X[x]}"), key=f"{key}_chart")
    st.caption(f"CPU latency: median of warm runs, batch 1, one preprocessed image, every model run by Keras, measured "
               f"by `python -m core.bench --models all` on {(summary.get('latency_machine') or {}).get('cpu_count', '?')} "
               "CPU cores while other jobs may run; untrained architectures are timed for models not trained yet. "
               "LiteRT ms: the same call on the LiteRT exports the app runs (shipped models only; int8 "
               "weights where they were measured faster, with the same held-out accuracy and Dice; "
               "see `python -m core.export_runtime`).")


tabs = st.tabs(["Classification", "Segmentation", "BraTS", "Reported vs ours", "Calibration", "Error browser"])

# ----------------------------------------------------------------------------- classification
with tabs[0]:
    st.subheader(f"Classifiers — {SPLITS[split]}")
    table = comparison.classification_table(summary, split)
    st.dataframe(table, hide_index=True, column_config=COLUMNS, key="mc_cls_table")
    st.caption("accuracy CI: bootstrap 95 % percentile interval (1000 resamples of the test images). "
               "ECE: expected calibration error, 15 equal-width confidence bins. val accuracy: the training "
               "run's own validation split (ensemble: out-of-fold).")
    show_pending("classification")
    names = evaluated("classification")
    if names:
        default = names.index("stacking_ensemble") if "stacking_ensemble" in names else 0
        chosen = st.selectbox("Model to inspect", names, index=default, key="mc_cls_model",
                              format_func=lambda n: f"{n} — {MODELS[n]['label']}")
        detail = detail_of(FOLDER, MODELS[chosen])
        if detail is not None and split in detail["splits"]:
            part = detail["splits"][split]
            left, right = st.columns(2)
            with left:
                st.plotly_chart(figs.confusion_figure(part["confusion_matrix"], CLASSES, LABELS,
                                                      f"Confusion matrix, {chosen} (n={part['n']})"),
                                key="mc_cm_chart")
            with right:
                st.plotly_chart(figs.roc_figure(part["roc"], LABELS, f"One-vs-rest ROC, {chosen}"), key="mc_roc_chart")
            per_class = pd.DataFrame([{"class": c, **v} for c, v in part["per_class"].items()])
            st.dataframe(per_class, hide_index=True, key="mc_cls_per_class",
                         column_config={k: NUM4 for k in ("precision", "recall", "f1")})
        show_curves(chosen)
    show_tradeoff(table, "accuracy", "mc_cls_scatter_x")

# ----------------------------------------------------------------------------- segmentation
with tabs[1]:
    st.subheader("Tumour segmenters — held-out patients (figshare fold 4)")
    seg = comparison.segmentation_table(summary)
    st.dataframe(seg, hide_index=True, column_config=COLUMNS, key="mc_seg_table")
    st.caption(f"Patient-wise split: fold 4 is never trained on or used for model selection. HD95 in mm at "
               f"{summary.get('segmentation_spacing_mm', 0.98)} mm per pixel (mean over images where both masks "
               "are non-empty). Dice CI: bootstrap over patients, so slices of one patient move together. "
               "The de-duplication toggle concerns the classification test only. Epochs marked * were cut by "
               "the wall-time budget (on the 2-core CPU or the GPU lease; the learning rate annealed within it); models trained "
               "for fewer epochs than their rivals are not beaten on merit alone, so compare the training curves too.")
    per_class = comparison.segmentation_class_table(summary)
    if not per_class.empty:
        st.markdown("**Per tumour class**")
        st.dataframe(per_class, hide_index=True, column_config=COLUMNS, key="mc_seg_class_table")
    show_pending("segmentation")
    seg_names = [n for n, m in MODELS.items() if m["task"] == "segmentation" and (m["status"] == "evaluated" or m.get("log"))]
    if seg_names:
        chosen_seg = st.selectbox("Training curves of", seg_names, key="mc_seg_model")
        show_curves(chosen_seg)
    show_tradeoff(seg, "mean Dice", "mc_seg_scatter_x")

# ----------------------------------------------------------------------------- BraTS
def show_brats_cases() -> None:
    """Per-case scores of an evaluated BraTS model, and a way to open a case in the explorer."""
    names = evaluated("brats")
    if not names:
        return
    name = st.selectbox("Per case", names, key="mc_brats_model") if len(names) > 1 else names[0]
    detail = detail_of(FOLDER, MODELS[name]) or {}
    cases = comparison.brats_case_table(detail)
    if cases.empty:
        return
    st.markdown(f"**{name}, case by case**")
    st.dataframe(cases, hide_index=True, key="mc_brats_cases",
                 column_config={c: NUM4 for c in cases.columns if "Dice" in c})
    root = config.data_dir()
    present = [c for c in cases["case"] if root is not None and (root / "brats" / c).is_dir()]
    if not present:
        st.caption("With the public BraTS cases on this machine (`BTD_DATA_DIR`), any of them opens in the explorer.")
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    case = left.selectbox("Open a case in *Explore BraTS volumes*, segmented by the shipped model", present,
                          key="mc_brats_open_case")
    if right.button("Open it", key="mc_brats_open", icon=":material/view_in_ar:"):
        hand_over("pages/brats_explorer.py", BRATS_REQUEST, {"case": case, "segment": True})


with tabs[2]:
    st.subheader("BraTS sub-regions — unseen cases")
    brats = comparison.brats_table(summary)
    st.dataframe(brats, hide_index=True, column_config={c: NUM4 for c in brats.columns if "Dice" in c}, key="mc_brats_table")
    st.caption("Regions: WT = labels {1, 2, 4}, TC = {1, 4}, ET = {4}; a region empty in both truth and prediction "
               "counts as Dice 1.0. Cases used for training or validation are skipped. CPU ms/pass: one pass of "
               "the network on its *network input* — a whole axial slice for a 2D model, one sliding window for a "
               "3D one; a full 240×240×155 case is timed by `python -m core.bench_volume --model NAME`.")
    show_brats_cases()
    show_pending("brats")

# ----------------------------------------------------------------------------- reported vs ours
with tabs[3]:
    st.subheader("Reported in the source documents — not reproduced")
    st.warning("The **reported** column is copied from the source documents (as quoted in issue 4). Those figures come "
               "from other splits, other preprocessing and mostly ImageNet-pretrained backbones, and were not re-run "
               "here. Our columns are this project's artifacts: validation figures from the training run (the same "
               "kind of metric) and test figures on the split chosen above.", icon=":material/menu_book:")
    st.dataframe(reported_table(summary, split), hide_index=True, column_config=COLUMNS, key="mc_reported_table")
    st.caption("Sources: " + "; ".join(f"**{s.title}** ({s.data})" for s in SOURCES.values()) + ".")

# ----------------------------------------------------------------------------- calibration
with tabs[4]:
    st.subheader("Calibration of the shipped ensemble")
    ens = MODELS.get("stacking_ensemble")
    if not ens or ens["status"] != "evaluated":
        st.info(f"The shipped ensemble has no evaluation artifact yet: run `{ARTIFACTS_COMMAND}`.")
    else:
        detail = detail_of(FOLDER, ens)
        cal = (detail or {}).get("calibration", {}).get(split)
        if cal:
            temperature = detail["calibration"]["temperature"]
            c1, c2, c3 = st.columns(3)
            c1.metric("ECE before temperature scaling", f"{cal['before']['ece']:.4f}")
            c2.metric("ECE after temperature scaling", f"{cal['after']['ece']:.4f}")
            c3.metric("Temperature", f"{temperature:.4f}")
            st.plotly_chart(figs.reliability_figure(cal["before"]["reliability"], cal["after"]["reliability"],
                                                    cal["before"]["ece"], cal["after"]["ece"],
                                                    f"Reliability diagram, stacking_ensemble, {SPLITS[split]}"),
                            key="mc_reliability_chart")
            st.caption("The temperature was fitted on out-of-fold validation predictions (never on a test split). "
                       "Points below the diagonal are over-confident bins; 15 equal-width bins of the top probability.")

# ----------------------------------------------------------------------------- error browser
def show_image_grid(items: list[tuple[Path, str]], columns: int = 4) -> None:
    from PIL import Image

    cols = st.columns(columns)
    for k, (path, caption) in enumerate(items):
        with Image.open(path) as im:
            cols[k % columns].image(np.asarray(im.convert("L")), caption=caption)


def no_data_message() -> None:
    no_data_help("The test images are not on this machine, so only the listing is shown. To see them, point the "
                 "app at the public datasets: set")


def classification_errors() -> None:
    names = evaluated("classification")
    if not names:
        st.info(f"No evaluated classifier: run `{ARTIFACTS_COMMAND}`.")
        return
    default = names.index("stacking_ensemble") if "stacking_ensemble" in names else 0
    name = st.selectbox("Model", names, index=default, key="mc_err_model")
    entry = MODELS[name]
    preds = predictions_of(FOLDER, entry)
    if preds is None:
        return
    counts = comparison.cell_counts(preds, CLASSES, split)
    st.dataframe(pd.DataFrame(counts, index=[f"truth: {c}" for c in CLASSES], columns=[f"pred: {c}" for c in CLASSES]),
                 key="mc_err_counts")
    c1, c2 = st.columns(2)
    true_class = c1.selectbox("True class", CLASSES, format_func=LABELS.get, key="mc_err_true")
    wrong = [c for c in CLASSES if c != true_class]
    default_pred = max(wrong, key=lambda c: counts[CLASSES.index(true_class), CLASSES.index(c)])
    pred_class = c2.selectbox("Predicted class", CLASSES, index=CLASSES.index(default_pred), format_func=LABELS.get,
                              key="mc_err_pred")
    cell = comparison.confusion_cell(preds, true_class, pred_class, split)
    st.markdown(f"**{len(cell)} test images** ({SPLITS[split]}) of true class *{LABELS[true_class]}* predicted as "
                f"*{LABELS[pred_class]}* by {name}.")
    if cell.empty:
        return
    shown = cell[["path"] + [f"p_{c}" for c in CLASSES]]
    st.dataframe(shown, hide_index=True, key="mc_err_cell_table", column_config={f"p_{c}": NUM4 for c in CLASSES})
    dataset = (detail_of(FOLDER, entry) or {}).get("data", "")
    files = [(comparison.data_file(dataset, row.path), row) for row in cell.itertuples()]
    if not any(f for f, _ in files):
        no_data_message()
        return
    limit = st.slider("Images to show", 1, min(24, len(files)), min(8, len(files)), key="mc_err_limit") \
        if len(files) > 1 else 1
    show_image_grid([(f, f"{row.path} · p({pred_class})={getattr(row, f'p_{pred_class}'):.3f}, "
                         f"p({true_class})={getattr(row, f'p_{true_class}'):.3f}")
                     for f, row in files[:limit] if f is not None])
    offer_analysis(dataset, [row.path for f, row in files if f is not None], "mc_err_open")


def segmentation_errors() -> None:
    from core.datasets import read_mask
    from core.viz import overlay_mask

    names = evaluated("segmentation")
    if not names:
        st.info(f"No evaluated segmenter: run `{ARTIFACTS_COMMAND}`.")
        return
    name = st.selectbox("Segmenter", names, key="mc_err_seg_model")
    entry = MODELS[name]
    cases = predictions_of(FOLDER, entry)
    if cases is None:
        return
    c1, c2 = st.columns(2)
    classes = ["all"] + sorted(c for c in cases["label"].dropna().unique() if c)
    tumour = c1.selectbox("Tumour class", classes, key="mc_err_seg_class")
    band = c2.selectbox("Dice band", list(comparison.DICE_BANDS), key="mc_err_band")
    rows = comparison.dice_band(cases, None if tumour == "all" else tumour, band)
    st.markdown(f"**{len(rows)} held-out slices** in this band (worst first).")
    if rows.empty:
        return
    st.dataframe(rows[["image", "label", "patient", "dice", "iou", "hd95_mm"]], hide_index=True, key="mc_err_seg_table",
                 column_config={"dice": NUM4, "iou": NUM4})
    dataset = (detail_of(FOLDER, entry) or {}).get("data", "")
    if comparison.data_file(dataset, rows["image"].iloc[0]) is None:
        no_data_message()
        return
    limit = st.slider("Slices to show", 1, min(12, len(rows)), min(4, len(rows)), key="mc_err_seg_limit") \
        if len(rows) > 1 else 1
    from PIL import Image

    for row in rows.head(limit).itertuples():
        image_path = comparison.data_file(dataset, row.image)
        mask_path = comparison.data_file(dataset, row.mask)
        if image_path is None or mask_path is None:
            continue
        with Image.open(image_path) as im:
            image = np.asarray(im.convert("L"))
        truth = read_mask(mask_path)
        pred = comparison.polygon_mask(row.outline, image.shape)
        left, right = st.columns(2)
        left.image(overlay_mask(image, truth, "fill", 0.45), caption=f"truth · {row.image} ({row.label})")
        right.image(overlay_mask(image, pred, "fill", 0.45, colour=(230, 30, 30)),
                    caption=f"{name} prediction · Dice {row.dice:.3f}")
    offer_analysis(dataset, list(rows["image"]), "mc_err_seg_open")


with tabs[5]:
    st.subheader("Error browser")
    st.caption("Pick a confusion-matrix cell (classifiers) or a Dice band (segmenters) to see those test images. "
               "Predictions come from the artifacts; images are read from the public data folder when present.")
    mode = st.radio("Task", ["Classification", "Segmentation"], horizontal=True, key="mc_err_task")
    if mode == "Classification":
        classification_errors()
    else:
        segmentation_errors()
