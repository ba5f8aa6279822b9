"""AppTest of the Compare-models page: it renders the committed artifacts, and its numbers equal theirs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import config

from core.evaluation import comparison

TIMEOUT = 120
APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")
PAGE = "pages/model_comparison.py"
EVAL = config.WEIGHTS_DIR / "eval"


def page(**state) -> AppTest:
    """The comparison page (switched to before the first run, so the Analyse page's models never load)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def frame(at: AppTest, first_column: str, contains: str | None = None):
    """The first dataframe on the page whose columns start with ``first_column`` (and include ``contains``)."""
    for df in at.dataframe:
        value = df.value
        if len(value.columns) and value.columns[0] == first_column and (contains is None or contains in value.columns):
            return value
    raise AssertionError(f"no table starting with {first_column!r} on the page")


def same(shown, stored) -> bool:
    if stored is None:
        return shown is None or (isinstance(shown, float) and math.isnan(shown))
    return shown == pytest.approx(stored, abs=1e-9)


@pytest.fixture(scope="module")
def summary() -> dict:
    if not (EVAL / "comparison.json").is_file():
        pytest.fail(f"weights/eval/comparison.json is missing: run `{comparison.ARTIFACTS_COMMAND}`")
    return json.loads((EVAL / "comparison.json").read_text())


def test_page_renders_every_model_of_the_comparison(summary):
    """Every trained model has a row under its display name; the models not trained are named in one
    sentence that says why; commands live in the Reproduce expanders; no issue, waiting run or raw
    model id is mentioned in the page's text."""
    at = page()
    assert at.title[0].value == "Compare models"
    assert any("from scratch" in m.value for m in at.markdown)
    tables = [frame(at, "model", "accuracy"), frame(at, "model", "mean Dice"), frame(at, "model", "cases")]
    shown = set().union(*(set(t["model"]) for t in tables))
    untrained = {n for n, e in summary["models"].items() if e["status"] in ("awaiting_gpu", "awaiting_training")}
    assert set(comparison.all_model_names()) - untrained <= shown and not (untrained & shown)
    for table in tables:
        assert list(table["Model"]) == [comparison.display_name(n) for n in table["model"]]
    codes = "\n".join(c.value for c in at.code)
    assert comparison.ARTIFACTS_COMMAND in codes
    for name in untrained:
        assert summary["models"][name]["training_command"] in codes, name
    if untrained:
        sentence = next(m.value for m in at.markdown if m.value.startswith("**Not trained:**"))
        assert all(comparison.display_name(n) in sentence for n in untrained) and "GPU" in sentence
    text = "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [w.value for w in at.warning]
                     + [i.value for i in at.info])
    assert "issue" not in text.lower() and "awaiting" not in text.lower() and "waiting" not in text.lower()
    assert "python -m" not in text, "commands belong in the Reproduce expanders"
    assert len(at.get("plotly_chart")) >= 4


def test_trade_off_plot_names_models_in_a_legend_not_beside_the_points(summary):
    at = page()
    chart = at.get("plotly_chart")
    spec = next(json.loads(c.proto.spec) for c in chart if "against" in json.loads(c.proto.spec)["layout"]
                .get("title", {}).get("text", ""))
    assert all(t["mode"] == "markers" for t in spec["data"])             # no text labels to overlap or clip
    names = [t["name"] for t in spec["data"]]
    assert len(names) == len(set(names)) and "Xception" in names and "xception" not in names
    assert spec["layout"]["legend"]["orientation"] == "h"


@pytest.mark.parametrize("split", ["official", "dedup"])
def test_classification_numbers_equal_the_artifact(summary, split):
    at = page()
    at.radio(key="mc_split").set_value(split).run()
    assert not at.exception, at.exception
    table = frame(at, "model", "accuracy").set_index("model")
    checked = 0
    for name, entry in summary["models"].items():
        if entry["task"] != "classification":
            continue
        if entry["status"] in ("awaiting_gpu", "awaiting_training"):
            assert name not in table.index                    # named in the "Not trained" sentence instead
            continue
        row = table.loc[name]
        metrics = (entry["metrics"] or {}).get(split)
        if metrics is None:
            assert same(row["accuracy"], None)
            continue
        assert same(row["accuracy"], metrics["accuracy"]), name
        assert same(row["acc CI low"], metrics["accuracy_ci95"][0]) and same(row["acc CI high"], metrics["accuracy_ci95"][1])
        assert same(row["macro F1"], metrics["macro_f1"]) and same(row["ECE"], metrics["ece"])
        assert same(row["macro AUC"], metrics["macro_auc"]) and row["n"] == metrics["n"]
        assert same(row["CPU ms/image"], entry["latency_ms"]) and same(row["params"], entry["params"])
        assert same(row["LiteRT ms/image"], entry.get("latency_litert_ms"))
        checked += 1
    assert checked >= 1, "no evaluated classifier in the artifacts"


def test_segmentation_numbers_equal_the_artifact(summary):
    at = page()
    table = frame(at, "model", "mean Dice").set_index("model")
    for name, entry in summary["models"].items():
        if entry["task"] != "segmentation" or not entry["metrics"]:
            continue
        fold = entry["metrics"][comparison.SEG_SPLIT]
        row = table.loc[name]
        assert same(row["mean Dice"], fold["mean_dice"]) and same(row["global Dice"], fold["global_dice"])
        assert same(row["mean IoU"], fold["mean_iou"]) and same(row["HD95 mm"], fold["mean_hd95_mm"])
        assert same(row["Dice CI low"], fold["mean_dice_ci95"][0]) and row["n"] == fold["n"]
    per_class = frame(at, "model", "tumour class")
    for _, row in per_class.iterrows():
        stored = summary["models"][row["model"]]["metrics"][comparison.SEG_SPLIT]["per_class"][row["tumour class"]]
        assert same(row["mean Dice"], stored["mean_dice"]) and same(row["HD95 mm"], stored["mean_hd95_mm"])


def test_outlines_on_other_sources_equal_the_artifact():
    from core.data.sources import SEQUENCE_LABELS, SOURCE_LABELS

    stored = json.loads((EVAL / "external_segmentation.json").read_text())
    at = page()
    table = frame(at, "cell", "region").set_index("cell")
    assert len(table) == len(stored["cells"])
    for cell in stored["cells"].values():
        label = f"{SOURCE_LABELS[cell['source']]} · {SEQUENCE_LABELS[cell['sequence']]}"
        row, scores = table.loc[label], cell["resunet"]
        low, high = scores["mean_dice_ci95"]
        assert row["mean Dice (95 % CI)"] == f"{scores['mean_dice']:.3f} ({low:.3f}–{high:.3f})"
        assert row["outlined (tumour)"] == f"{scores['found']:.2f} of {scores['n']}"
        clean = scores["clean"]
        assert row["left clean (tumour-free)"] == ("—" if clean is None else
                                                        f"{clean:.2f} of {scores['n_tumour_free']}")
    assert any(m.value == "**Other sources and sequences — held-out patients**" for m in at.markdown)
    assert not any("earlier version of resunet" in c.value for c in at.caption)


def test_reported_table_is_separate_and_shows_our_numbers(summary):
    at = page()
    at.radio(key="mc_split").set_value("dedup").run()
    table = frame(at, "source")
    assert {"reported", "ours, test", "our status"} <= set(table.columns)
    assert 0.996 in set(table["reported"]) and 0.76 in set(table["reported"])
    ens = summary["models"]["stacking_ensemble"]
    if ens["metrics"]:
        row = table[table["our model"] == "stacking_ensemble"].iloc[0]
        assert same(row["ours, test"], ens["metrics"]["dedup"]["accuracy"])
    assert any("not reproduced" in s.value.lower() for s in at.subheader)


def test_calibration_metrics_equal_the_artifact(summary):
    ens = summary["models"]["stacking_ensemble"]
    if not ens.get("calibration"):
        pytest.skip("the shipped ensemble has no calibration artifact")
    at = page()
    metrics = {m.label: m.value for m in at.metric}
    cal = ens["calibration"]["official"]
    assert metrics["ECE before temperature scaling"] == f"{cal['ece_before']:.4f}"
    assert metrics["ECE after temperature scaling"] == f"{cal['ece_after']:.4f}"
    assert metrics["Temperature"] == f"{ens['calibration']['temperature']:.4f}"


def test_error_browser_lists_a_confusion_cell_without_data(summary, monkeypatch, tmp_path):
    monkeypatch.setenv("BTD_DATA_DIR", str(tmp_path / "no_data_here"))
    at = page()
    at.selectbox(key="mc_err_true").set_value("glioma").run()
    at.selectbox(key="mc_err_pred").set_value("meningioma").run()
    assert not at.exception, at.exception
    cell = frame(at, "path")
    preds = comparison.load_predictions(summary["models"][at.selectbox(key="mc_err_model").value], EVAL)
    expected = comparison.confusion_cell(preds, "glioma", "meningioma", at.radio(key="mc_split").value)
    assert list(cell["path"]) == list(expected["path"])
    if len(cell):
        assert any("BTD_DATA_DIR" in i.value for i in at.info)
    at.radio(key="mc_err_task").set_value("Segmentation").run()
    assert not at.exception, at.exception


def test_error_browser_shows_images_with_data(summary, data_root):
    at = page()
    at.selectbox(key="mc_err_true").set_value("glioma").run()
    at.selectbox(key="mc_err_pred").set_value("glioma").run()  # the diagonal cell is never empty
    assert not at.exception, at.exception
    assert len(at.get("image")) >= 1
    at.radio(key="mc_err_task").set_value("Segmentation").run()
    at.selectbox(key="mc_err_seg_class").set_value("all").run()
    at.selectbox(key="mc_err_band").set_value(list(comparison.DICE_BANDS)[-1]).run()
    assert not at.exception, at.exception
    assert len(at.get("image")) >= 2  # truth and prediction side by side


def test_missing_artifacts_give_a_specific_message(monkeypatch, tmp_path):
    monkeypatch.setenv("BTD_EVAL_DIR", str(tmp_path))
    at = page()
    # the warning names the command that writes the artifacts (the documented ``python -m core.evaluate artifacts``)
    assert any(comparison.ARTIFACTS_COMMAND in w.value and " artifacts" in w.value for w in at.warning)
    assert not at.dataframe


# ----------------------------------------------------------------------------- other sources (external benchmark)

def eval_copy(tmp_path: Path, monkeypatch, *splits: str) -> Path:
    """A copy of the committed artifacts (without any external benchmark) plus the stand-in benchmark of
    ``splits``, made the page's evaluation folder through BTD_EVAL_DIR."""
    import shutil

    from stand_ins import external_report

    folder = tmp_path / "eval"
    shutil.copytree(EVAL, folder, ignore=shutil.ignore_patterns("external*.json"))
    for split in splits:
        name = "external.json" if split == "test" else "external_val.json"
        (folder / name).write_text(json.dumps(external_report(split)))
    monkeypatch.setenv("BTD_EVAL_DIR", str(folder))
    return folder


def test_external_benchmark_shows_cells_weakest_cell_crosscheck_and_members(monkeypatch, tmp_path):
    eval_copy(tmp_path, monkeypatch, "test", "val")
    at = page()
    assert any(s.value == "Other sources — external benchmark" for s in at.subheader)
    table = frame(at, "source", "sensitivity (95 % CI)").set_index(["source", "sequence"])
    flair = table.loc[("TCGA-LGG", "FLAIR")]
    assert flair["sensitivity (95 % CI)"] == "0.712 (0.634–0.781)" and flair["weakest"] == "◀ weakest"
    assert table.loc[("BraTS 2021", "T2"), "specificity (95 % CI)"] == "—"
    assert "None" not in table.to_string()
    pooled = next(d.value for d in at.dataframe
                  if list(d.value.columns[:2]) == ["source", "sensitivity (95 % CI)"])
    assert pooled.set_index("source").loc["TCGA-LGG", "ECE"] == "0.061"
    assert any(m.value == "**Per source, every sequence pooled**" for m in at.markdown)
    assert any("ECE ≤ 0.08 in every source" in c.value for c in at.caption)
    weakest = next(w.value for w in at.warning if w.value.startswith("The weakest result"))
    assert "TCGA-LGG · FLAIR" in weakest and "sensitivity 0.712" in weakest and "below the 0.90 aim" in weakest
    assert any(c.value.startswith("21 of its 42 missed tumour slices are one patient's (TCGA_A") for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tumour slices missed by the classifier"] == "48"
    assert metrics["Of them flagged as possible lesions"] == "19"
    assert metrics["False alarms on tumour-free slices"] == "7 of 500"
    cross = frame(at, "cell", "false alarms").set_index("cell")
    assert cross.loc["TCGA-LGG · FLAIR", "sensitivity before → after"] == "0.712 → 0.825"
    members = frame(at, "member", "weakest cell").set_index("member")
    assert members.loc["resnet_compact", "weakest cell"] == "TCGA-LGG · FLAIR"
    assert members.loc["resnet_compact", "lower of sensitivity and specificity"] == "0.654"
    alarms = frame(at, "cell", "1-2 slices away").set_index("cell")
    assert alarms.loc["TCGA-LGG · T1-CE", "11+ slices away"] == "0.10 (6 of 60)"
    assert any(m.value.startswith("**Where the false alarms are**") for m in at.markdown)
    chart = next(c for c in at.get("plotly_chart") if "Sensitivity and specificity by source" in c.proto.spec)
    spec = json.loads(chart.proto.spec)
    assert {t["name"] for t in spec["data"]} == {"sensitivity", "specificity"}
    assert any(s.get("y0") == 0.9 for s in spec["layout"]["shapes"])     # the 0.90 aim
    assert not any("python -m" in c.value for c in at.caption if "slices of" in c.value)

    at.radio(key="mc_ext_split").set_value("val").run()
    assert not at.exception, at.exception
    weakest = next(i.value for i in at.info if i.value.startswith("The weakest result"))   # above the aim: info
    assert "TCGA-LGG · T1" in weakest and "specificity 0.904" in weakest
    assert any("validation patients" in c.value for c in at.caption)


def test_external_benchmark_missing_gives_a_neutral_note(monkeypatch, tmp_path):
    eval_copy(tmp_path, monkeypatch)
    at = page()
    assert any("not available for these models yet" in i.value for i in at.info)
    with pytest.raises(KeyError):
        at.radio(key="mc_ext_split")
    assert not any(d.value.columns[0] == "source" and "sensitivity (95 % CI)" in d.value.columns for d in at.dataframe)
    assert not any("region" in d.value.columns for d in at.dataframe)   # its file is left out too
