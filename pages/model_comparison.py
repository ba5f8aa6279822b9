"""Compare models: tables and plots read from the evaluation artifacts (never trains or evaluates)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import config

from core.evaluation import comparison, external_view
from core.evaluation import comparison_figures as figs
from core.evaluation.comparison import ARTIFACTS_COMMAND, SPLITS, display_name
from core.evaluation.reported import SOURCES, reported_table
from ui.comparison_artifacts import (detail_of, external_of, external_segmentation_of, log_of, predictions_of,
                                     summary_of)
from ui.handoff import BRATS_REQUEST, hand_over
from ui.heldout import no_data_help, offer_analysis
from ui.navigation import ensure_app_navigation
from ui.state import kept

ensure_app_navigation()

LABELS = config.CLASS_LABELS
CLASSES = list(config.CLASS_NAMES)
SCATTER_X = {"CPU ms/image": "CPU latency per image (ms)", "params": "parameters", "size MB": "file size (MB)"}

st.title("Compare models")
st.write("Why this ensemble, why ResUNet, and how sure are these numbers? Every model below was trained "
         "**from scratch** by this project with one recipe — the well-known architectures (Xception, InceptionV3, "
         "ResNet50, VGG19) included, without ImageNet pretraining — and scored on the same test images, with 95 % "
         "confidence intervals.")
st.caption("The numbers come from the project's saved evaluation results; nothing is trained or evaluated when "
           "this page opens. Each tab's *Reproduce* section lists the commands that produce them.")

# ----------------------------------------------------------------------------- artifacts (cached in ui.comparison_artifacts)
FOLDER = comparison.eval_dir()
if not (FOLDER / "comparison.json").is_file():
    st.warning(f"No model-comparison artifacts in `{FOLDER}`. Write them with `{ARTIFACTS_COMMAND}` "
               "(needs the public datasets: set `BTD_DATA_DIR`), or point `BTD_EVAL_DIR` at a folder that has them.")
    st.stop()
summary = summary_of(FOLDER)
MODELS = summary["models"]


def evaluated(task: str) -> list[str]:
    return [n for n, m in MODELS.items() if m["task"] == task and m["status"] == "evaluated"]


# ----------------------------------------------------------------------------- split toggle
dedup = summary.get("dedup") or {}
n_official = next((m["metrics"]["official"]["n"] for m in MODELS.values()
                   if m["task"] == "classification" and m.get("metrics")), None)
split_names = {"official": f"Official Testing split (n={n_official or '—'})",
               "dedup": f"De-duplicated (n={dedup.get('n_clean', '—')})"}
split = st.radio("Classification test split", list(SPLITS), format_func=split_names.get, horizontal=True,
                 key=kept("mc_split", next(iter(SPLITS)), list(SPLITS)),
                 help="The official Testing split holds exact and near-duplicate copies of Training images. The "
                      "de-duplicated split keeps only test images with no near-duplicate in Training or elsewhere in "
                      "Testing.")
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


COLUMNS.update({"params (M)": st.column_config.NumberColumn("params (M)", format="%.2f"),
                "95 % CI": st.column_config.TextColumn("95 % CI"),
                "Model": st.column_config.TextColumn("Model", width="medium"),
                "Role": st.column_config.TextColumn("Role")})
for _unit in ("image", "slice", "pass"):
    COLUMNS[f"LiteRT ms/{_unit}"] = st.column_config.NumberColumn(
        "ms (app)", format="%.1f", help=f"CPU time per {_unit} as the app runs the model (LiteRT), for the models it ships.")
    COLUMNS[f"CPU ms/{_unit}"] = st.column_config.NumberColumn(
        "ms (Keras)", format="%.1f", help=f"CPU time per {_unit}, every model run the same way (Keras).")


def trained(names) -> list[str]:
    return [n for n in names if MODELS.get(n, {}).get("status") not in ("awaiting_gpu", "awaiting_training")]


def ci_text(low, high, digits: int = 3) -> str | None:
    if low is None or high is None or (isinstance(low, float) and np.isnan(low)):
        return None
    return f"{low:.{digits}f}–{high:.{digits}f}"


def for_people(table: pd.DataFrame, ci: tuple[str, str] | None = None) -> pd.DataFrame:
    """A comparison table of trained models with a display name, a plain role, the CI as one column
    and parameters in millions; the raw columns stay (the key columns are picked by ``column_order``)."""
    if table.empty:
        return table
    shown = table[table["model"].isin(trained(table["model"]))].copy()
    shown.insert(1, "Model", [display_name(n, MODELS.get(n)) for n in shown["model"]])
    if "group" in shown:
        shown.insert(2, "Role", ["in app" if g == "shipped" else "compared" for g in shown["group"]])
    if ci is not None and ci[0] in shown:
        shown["95 % CI"] = [ci_text(lo, hi) for lo, hi in zip(shown[ci[0]], shown[ci[1]])]
    if "params" in shown:
        shown["params (M)"] = shown["params"] / 1e6
    return shown


def show_table(table: pd.DataFrame, key: str, columns: list[str]) -> None:
    """The key ``columns`` of a table (they fit a 1280 px screen), and every column in an expander."""
    if table.empty:
        st.info("No model has results here yet.")
        return
    order = [c for c in ["Model", "Role", *columns] if c in table.columns]
    height = 35 * (len(table) + 1) + 3
    st.dataframe(table, hide_index=True, column_config=COLUMNS, column_order=order, placeholder="—", key=key,
                 height=height)
    with st.expander("Every column"):
        rest = [c for c in table.columns if c not in ("model", "description", "group", "status")]
        st.dataframe(table, hide_index=True, column_config=COLUMNS, column_order=rest, placeholder="—",
                     key=f"{key}_all", height=height)


def not_trained(task: str) -> None:
    """One sentence on the models of ``task`` that have no results, and why."""
    waiting = [n for n, m in MODELS.items() if m["task"] == task and m["status"] in ("awaiting_gpu", "awaiting_training")]
    if not waiting:
        return
    names = " and ".join(display_name(n, MODELS[n]) for n in waiting)
    gpu = all(MODELS[n]["status"] == "awaiting_gpu" for n in waiting)
    why = ("training them from scratch needs a GPU (5 to 17 hours each on this project's 2-core CPU) and the GPU "
           "time available went to the models above" if gpu else "they have not been trained yet")
    st.markdown(f"**Not trained:** {names} — {why}.")


def reproduce(task: str, extra: list[tuple[str, str]] = ()) -> None:
    """The commands behind a tab's numbers, for those who want to rerun them."""
    with st.expander("Reproduce", icon=":material/terminal:"):
        st.caption("Every number on this page is written by one command (it needs the public datasets, "
                   "`BTD_DATA_DIR`):")
        st.code(ARTIFACTS_COMMAND, language="bash")
        for text, command in extra:
            st.caption(text)
            st.code(command, language="bash")
        names = [n for n, m in MODELS.items() if m["task"] == task]
        lines = [f"# {display_name(n, MODELS[n])}\n{MODELS[n]['training_command']}" for n in names
                 if MODELS[n].get("training_command")]
        if lines:
            st.caption("Training commands (the models not trained yet included):")
            st.code("\n".join(lines), language="bash")


def show_curves(name: str) -> None:
    entry = MODELS[name]
    log = log_of(FOLDER, entry)
    if log is not None:
        st.plotly_chart(figs.curves_figure(log, f"Training curves of {display_name(name, entry)}"),
                        key=f"mc_curves_{name}")
        return
    members = entry.get("members") or []
    logs = {m: log_of(FOLDER, MODELS[m]) for m in members if m in MODELS}
    logs = {m: lg for m, lg in logs.items() if lg is not None}
    column = "val_accuracy" if entry["task"] == "classification" else "val_dice"
    if logs:
        st.caption(f"{display_name(name, entry)} is fitted in one step on its members' validation predictions; "
                   "its members' curves:")
        st.plotly_chart(figs.overlay_curves_figure({display_name(m, MODELS.get(m)): lg for m, lg in logs.items()},
                                                   column, f"Members: {column} per epoch"),
                        key=f"mc_curves_{name}")
    else:
        st.info(f"No per-epoch training log was saved for {display_name(name, entry)}.")


def show_tradeoff(table: pd.DataFrame, score: str, key: str) -> None:
    axes = list(SCATTER_X)
    x = st.radio("Horizontal axis", axes, format_func=SCATTER_X.get, horizontal=True, key=kept(key, axes[0], axes))
    if table.empty or table.dropna(subset=[x, score]).empty:
        st.info("No evaluated model has both numbers yet.")
        return
    st.plotly_chart(figs.tradeoff_figure(table, x, score, f"{score} against {SCATTER_X[x]}", names="Model",
                                         x_title=SCATTER_X[x]), key=f"{key}_chart")
    cores = (summary.get("latency_machine") or {}).get("cpu_count", "?")
    st.caption(f"Circles: models in the app; diamonds: comparison models. CPU latency: typical time for one image "
               f"on {cores} CPU cores, every model run the same way (Keras); LiteRT: the faster runtime the app "
               "itself uses, for the models it ships (smaller int8 weights where that was faster, with the same "
               "accuracy and Dice).")


tabs = st.tabs(["Classification", "Segmentation", "BraTS", "Reported vs ours", "Calibration", "Other sources",
                "Error browser"])

# ----------------------------------------------------------------------------- classification
with tabs[0]:
    st.subheader(f"Classifiers — {SPLITS[split]}")
    table = for_people(comparison.classification_table(summary, split), ("acc CI low", "acc CI high"))
    show_table(table, "mc_cls_table", ["accuracy", "95 % CI", "macro F1", "ECE", "params (M)", "LiteRT ms/image",
                                       "CPU ms/image"])
    st.caption("Role: *in app* — the models the app runs; *compared* — trained for this comparison only. Accuracy on "
               "the test images, with its 95 % confidence interval (bootstrap: 1000 resamples of the test images). "
               "ECE: calibration error — how far the stated probabilities are from the observed accuracy (0 = "
               "perfectly calibrated). ms: CPU time per image. File sizes and the other figures: *Every column*.")
    not_trained("classification")
    names = trained(evaluated("classification"))
    if names:
        default = "stacking_ensemble" if "stacking_ensemble" in names else names[0]
        chosen = st.selectbox("Model to inspect", names, key=kept("mc_cls_model", default, names),
                              format_func=lambda n: display_name(n, MODELS[n]))
        detail = detail_of(FOLDER, MODELS[chosen])
        if detail is not None and split in detail["splits"]:
            part = detail["splits"][split]
            left, right = st.columns(2)
            with left:
                st.plotly_chart(figs.confusion_figure(part["confusion_matrix"], CLASSES, LABELS,
                                                      f"Confusion matrix (n={part['n']})"),
                                key="mc_cm_chart")
            with right:
                st.plotly_chart(figs.roc_figure(part["roc"], LABELS, "One-vs-rest ROC"), key="mc_roc_chart")
            per_class = pd.DataFrame([{"class": LABELS.get(c, c), **v} for c, v in part["per_class"].items()])
            st.dataframe(per_class, hide_index=True, key="mc_cls_per_class",
                         column_config={k: NUM4 for k in ("precision", "recall", "f1")})
        show_curves(chosen)
    show_tradeoff(table, "accuracy", "mc_cls_scatter_x")
    reproduce("classification", [("CPU latency of every model:", "python -m core.bench --models all"),
                                 ("The de-duplicated test split:",
                                  "python -m core.dedup split --out weights/eval/dedup_testing.json")])

# ----------------------------------------------------------------------------- segmentation
def shipped_versions() -> dict[str, str]:
    """``{model: sha256}`` of the weights shipped now (empty when the manifest cannot be read)."""
    from core.serving.registry import load_manifest

    try:
        return {name: card.get("sha256", "") for name, card in load_manifest().get("models", {}).items()}
    except (OSError, ValueError):
        return {}


def show_outlines_elsewhere() -> None:
    """The shipped segmenter on other sources' held-out patients, by sequence."""
    report = external_segmentation_of(FOLDER)
    if report is None:
        return
    st.markdown("**Other sources and sequences — held-out patients**")
    st.dataframe(external_view.segmentation_table(report), hide_index=True, key="mc_seg_external")
    st.caption("The shipped segmenter on the external benchmark's patients (TCGA-LGG fold 4, the held-out BraTS "
               "cases, axial). Each sequence is scored against the region it shows: TCGA-LGG's expert outline of "
               "the FLAIR abnormality on all three sequences; BraTS whole tumour on FLAIR, T2 and T1 and tumour core "
               "on T1-CE. A tumour slice with no outline scores Dice 0. Left clean: share of tumour-free slices with no "
               "outline at all, since an outline there is what a user would take for a lesion. Outlined: share of "
               "tumour slices with any outline.")
    stale = external_view.stale_models(report, shipped_versions())
    if stale:
        st.caption(f"Measured on an earlier version of {', '.join(stale)}; the shipped weights have changed since.")


with tabs[1]:
    st.subheader("Tumour segmenters — held-out patients (figshare fold 4)")
    seg = for_people(comparison.segmentation_table(summary), ("Dice CI low", "Dice CI high"))
    show_table(seg, "mc_seg_table", ["mean Dice", "95 % CI", "HD95 mm", "mean IoU", "epochs", "params (M)",
                                     "LiteRT ms/image", "CPU ms/image"])
    st.caption(f"Patient-wise split: the fold-4 patients were never used for training or for choosing a model. "
               f"Dice: overlap with the expert's outline (1 = identical); its 95 % CI resamples whole patients. HD95: "
               f"the 95th-percentile distance between the outlines, in mm at {summary.get('segmentation_spacing_mm', 0.98)} "
               "mm per pixel. Epochs marked * ended at the training time limit; a model trained for fewer epochs "
               "than its rivals is not beaten on merit alone, so compare the training curves too.")
    per_class = comparison.segmentation_class_table(summary)
    if not per_class.empty:
        st.markdown("**Per tumour class**")
        per_class = for_people(per_class, ("Dice CI low", "Dice CI high"))
        show_table(per_class, "mc_seg_class_table", ["tumour class", "mean Dice", "95 % CI", "HD95 mm", "n"])
    not_trained("segmentation")
    seg_names = [n for n, m in MODELS.items() if m["task"] == "segmentation" and (m["status"] == "evaluated" or m.get("log"))]
    if seg_names:
        chosen_seg = st.selectbox("Training curves of", seg_names, key=kept("mc_seg_model", seg_names[0], seg_names),
                                  format_func=lambda n: display_name(n, MODELS[n]))
        show_curves(chosen_seg)
    show_tradeoff(seg, "mean Dice", "mc_seg_scatter_x")
    show_outlines_elsewhere()
    reproduce("segmentation", [("Outlines on other sources:", "python -m core.evaluate external-segmentation "
                                                               "--json weights/eval/external_segmentation.json")])

# ----------------------------------------------------------------------------- BraTS
def show_brats_cases() -> None:
    """Per-case scores of an evaluated BraTS model, and a way to open a case in the explorer."""
    names = evaluated("brats")
    if not names:
        return
    name = st.selectbox("Per case", names, key=kept("mc_brats_model", names[0], names),
                        format_func=lambda n: display_name(n, MODELS[n])) if len(names) > 1 else names[0]
    detail = detail_of(FOLDER, MODELS[name]) or {}
    cases = comparison.brats_case_table(detail)
    if cases.empty:
        return
    st.markdown(f"**{display_name(name, MODELS[name])}, case by case**")
    st.dataframe(cases, hide_index=True, key="mc_brats_cases", placeholder="—",
                 column_config={c: NUM4 for c in cases.columns if "Dice" in c})
    st.caption("— : HD95 is not defined where a region is absent from the expert's labels or the model's (a region "
               "absent from both counts as Dice 1).")
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
    brats = for_people(comparison.brats_table(summary))
    dice_columns = [c for c in brats.columns if c.endswith("Dice")]
    COLUMNS.update({c: st.column_config.NumberColumn(c, format="%.3f") for c in dice_columns})
    COLUMNS.update({c: st.column_config.NumberColumn(c, format="%.1f") for c in brats.columns if c.endswith("HD95 mm")})
    show_table(brats, "mc_brats_table", [*dice_columns, "ET HD95 mm", "cases", "params (M)", "CPU ms/pass"])
    st.caption("Regions: WT (whole tumour) = labels {1, 2, 4}, TC (tumour core) = {1, 4}, ET (enhancing tumour) = "
               "{4}; a region empty in both the expert's labels and the model's counts as Dice 1.0. Cases used for "
               "training or validation are left out. ms (Keras): one pass of the network — a whole axial slice "
               "for the 2D model, one 96³ window for the 3D one.")
    show_brats_cases()
    not_trained("brats")
    reproduce("brats", [("A full 240×240×155 case on the CPU:", "python -m core.bench_volume --model unet3d_brats")])

# ----------------------------------------------------------------------------- reported vs ours
with tabs[3]:
    st.subheader("Reported in the source documents — not reproduced")
    st.warning("The **reported** column is copied from the source documents this project set out to reproduce. "
               "Those figures come from other splits, other preprocessing and mostly ImageNet-pretrained networks, "
               "and were not re-run here. The **ours** columns are this project's results: the test figure on the "
               "split chosen above and, where the source reports a validation figure, ours of the same kind.",
               icon=":material/menu_book:")
    reported = reported_table(summary, split)
    reported["our model (name)"] = [display_name(n, MODELS.get(n)) if n != "—" else "—" for n in reported["our model"]]
    reported["ours, 95 % CI"] = [ci_text(lo, hi) for lo, hi in zip(reported["ours CI low"], reported["ours CI high"])]
    reported["note"] = [note or ("not trained here: it needs a GPU" if "GPU" in status else "")
                        for note, status in zip(reported["note"], reported["our status"])]
    order = ["model (source)", "reported metric", "reported", "ours, test", "ours, 95 % CI",
             "ours, same metric (validation)", "our model (name)", "our test metric", "note", "source"]
    st.dataframe(reported, hide_index=True, placeholder="—", key="mc_reported_table", column_order=order,
                 height=35 * (len(reported) + 1) + 3,
                 column_config={**COLUMNS, "model (source)": st.column_config.TextColumn("model (source)"),
                                "ours, same metric (validation)": st.column_config.NumberColumn(
                                    "ours, validation", format="%.4f",
                                    help="Our figure of the same kind as the reported one (from the training run's "
                                         "validation data)."),
                                "our test metric": st.column_config.TextColumn("our test metric", width="medium"),
                                "note": st.column_config.TextColumn("note", width="medium"),
                                "source": st.column_config.TextColumn("source", width="medium")})
    st.caption("Sources: " + "; ".join(f"**{s.title}** ({s.data})" for s in SOURCES.values()) + ".")

# ----------------------------------------------------------------------------- calibration
with tabs[4]:
    st.subheader("Calibration of the shipped ensemble")
    ens = MODELS.get("stacking_ensemble")
    if not ens or ens["status"] != "evaluated":
        st.info("The ensemble in the app has no calibration results yet.")
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
                                                    f"Reliability diagram, {display_name('stacking_ensemble')}, "
                                                    f"{SPLITS[split]}"),
                            key="mc_reliability_chart")
            st.caption("The temperature was fitted on out-of-fold validation predictions (never on a test split). "
                       "Points below the diagonal are over-confident bins; 15 equal-width bins of the top probability.")

# ----------------------------------------------------------------------------- other sources
def external_split() -> str | None:
    """Which benchmark to show: a choice when both the held-out and the validation patients were scored."""
    splits = external_view.available(FOLDER)
    if len(splits) < 2:
        return splits[0] if splits else None
    return st.radio("Patients", splits, format_func=external_view.SPLIT_LABELS.get, horizontal=True,
                    key="mc_ext_split", help="Held-out patients were never used to train or tune any model. "
                                             "Validation patients were used to choose models and the cross-check "
                                             "rule, so their figures are expected to look better.")


def show_external_crosscheck(report: dict) -> None:
    """What the lesion cross-check adds on these slices: misses it flags, and the false alarms it raises."""
    table = external_view.crosscheck_table(report)
    if table.empty:
        return
    totals = external_view.crosscheck_totals(report)
    st.markdown("**Lesion cross-check** — when the classifier says *No tumour*, the app looks again for a lesion: "
                f"{external_view.rule_text(report.get('crosscheck_rule'))}.")
    c1, c2, c3 = st.columns(3)
    c1.metric("Tumour slices missed by the classifier", totals["missed"])
    c2.metric("Of them flagged as possible lesions", totals["rescued"])
    c3.metric("False alarms on tumour-free slices", f"{totals['false_alarms']} of {totals['tumour_free']}")
    st.dataframe(table, hide_index=True, key="mc_ext_crosscheck")


def show_false_alarms(report: dict) -> None:
    """Where the tumour-free slices called tumour lie: next to the lesion, or far from it."""
    table = external_view.false_alarm_table(report)
    if table.empty:
        return
    st.markdown("**Where the false alarms are** — tumour-free slices called tumour, by how many slices they lie "
                "from the nearest tumour slice of the same scan")
    st.dataframe(table, hide_index=True, key="mc_ext_false_alarms")
    st.caption("Next to the lesion a slice may still show its edge or the swelling around it; far from it, a false "
               "alarm is the model mistaking normal anatomy for a tumour.")


def show_external() -> None:
    st.subheader("Other sources — external benchmark")
    st.write("How the shipped ensemble does on slices from other public collections — other scanners, sequences "
             "and, for some, planes — of patients no model was trained on. Each row is one source and sequence. "
             "Any tumour class counts as *tumour*: **sensitivity** is the share of tumour slices called tumour, "
             "**specificity** the share of tumour-free slices called tumour-free.")
    split = external_split()
    report = external_of(FOLDER, split)
    if report is None:
        st.info("Results on other sources are not available for these models yet.", icon=":material/info:")
        return
    st.caption(f"{report.get('n', '—')} slices of {report.get('patients', '—')} "
               f"{external_view.SPLIT_LABELS.get(split, split)}.")
    show = st.warning if external_view.below_target(report) else st.info
    show(external_view.worst_sentence(report), icon=":material/trending_down:")
    if hardest := external_view.hardest_patient_sentence(report):
        st.caption(hardest)
    st.dataframe(external_view.cells_table(report), hide_index=True, key="mc_ext_table")
    pooled = external_view.sources_table(report)
    if not pooled.empty:
        st.markdown("**Per source, every sequence pooled**")
        st.dataframe(pooled, hide_index=True, key="mc_ext_sources")
    st.caption("In brackets: 95 % confidence intervals, resampling whole patients. Glioma accuracy: share of glioma "
               "slices called glioma. AUC: how well the probability of a tumour separates tumour from tumour-free "
               "slices (1 = perfectly). ECE: calibration error of the decided class's probability (0 = calibrated). "
               "— : not measurable in that cell (for example, no tumour-free slices). Targets: sensitivity and "
               f"specificity ≥ {external_view.TARGET:.2f} in every cell, ECE ≤ {external_view.ECE_TARGET:.2f} in "
               "every source.")
    rows = external_view.chart_rows(report)
    if not rows.empty:
        st.plotly_chart(figs.external_figure(rows, external_view.TARGET,
                                             f"Sensitivity and specificity by source and sequence "
                                             f"({external_view.SPLIT_LABELS.get(split, split)})"),
                        key="mc_ext_chart")
    show_external_crosscheck(report)
    show_false_alarms(report)
    members = external_view.members_table(report)
    if not members.empty:
        st.markdown("**Each member of the ensemble, at its weakest**")
        st.dataframe(members, hide_index=True, key="mc_ext_members")
    stale = external_view.stale_models(report, shipped_versions())
    if stale:
        st.caption(f"Measured on an earlier version of {', '.join(stale)}; the shipped weights have changed since.")


with tabs[5]:
    show_external()


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
    name = st.selectbox("Model", names, index=default, key="mc_err_model",
                        format_func=lambda n: display_name(n, MODELS[n]))
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
                f"*{LABELS[pred_class]}* by {display_name(name, entry)}.")
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
    from core.data.datasets import read_mask
    from core.imaging.viz import overlay_mask

    names = evaluated("segmentation")
    if not names:
        st.info(f"No evaluated segmenter: run `{ARTIFACTS_COMMAND}`.")
        return
    name = st.selectbox("Segmenter", names, key="mc_err_seg_model", format_func=lambda n: display_name(n, MODELS[n]))
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
                    caption=f"{display_name(name, entry)} · Dice {row.dice:.3f}")
    offer_analysis(dataset, list(rows["image"]), "mc_err_seg_open")


with tabs[6]:
    st.subheader("Error browser")
    st.caption("Pick a confusion-matrix cell (classifiers) or a Dice band (segmenters) to see those test images. "
               "Predictions come from the artifacts; images are read from the public data folder when present.")
    mode = st.radio("Task", ["Classification", "Segmentation"], horizontal=True, key="mc_err_task")
    if mode == "Classification":
        classification_errors()
    else:
        segmentation_errors()
