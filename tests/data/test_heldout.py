"""Held-out public images as the Analyse page's input: listing (core), the page (AppTest), and
agreement with the evaluation artifacts on the real figshare fold (skips without the data)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from app_steps import open_from_comparison
from streamlit.testing.v1 import AppTest

from core import config
from core.data.datasets import DatasetError, read_mask
from core.data.heldout import HELD_OUT_SETS, held_out_images, position_of, set_of_folder, shipped_test_fold
from core.readers.slice import read_slice
from core.imaging.metrics import dice
from core.slices.pipeline import AnalysisOptions

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")
GLIOMA = config.SAMPLE_DIR / "synthetic_glioma_axial.png"
GLIOMA_MASK = config.SAMPLE_DIR / "synthetic_glioma_axial_mask.png"


def fake_data(root: Path) -> Path:
    """A data folder laid out like the public one, filled with the project's own synthetic slices:
    Testing with two classes, figshare with patients in folds 3 (trained on) and 4 (held out)."""
    for cls, stem in (("glioma", "Te-gl_0001"), ("glioma", "Te-gl_0002"), ("notumor", "Te-no_0001")):
        folder = root / "brain_mri_4class" / "Testing" / cls
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(GLIOMA, folder / f"{stem}.png")
    fig = root / "figshare_3064"
    (fig / "images").mkdir(parents=True)
    (fig / "masks").mkdir()
    rows = [("1", "glioma", "P1", "3"), ("2", "glioma", "P2", "4"), ("3", "meningioma", "P2", "4")]
    for ident, *_ in rows:
        shutil.copy(GLIOMA, fig / "images" / f"{ident}.png")
        shutil.copy(GLIOMA_MASK, fig / "masks" / f"{ident}.png")
    with (fig / "index.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "image", "mask", "label", "patient_id", "fold"])
        for ident, label, patient, fold in rows:
            writer.writerow([ident, f"images/{ident}.png", f"masks/{ident}.png", label, patient, fold])
    return root


def test_testing_set_lists_every_image_with_its_class(tmp_path):
    images = held_out_images("testing", fake_data(tmp_path))
    assert [(im.relative, im.label) for im in images] == [
        ("glioma/Te-gl_0001.png", "glioma"), ("glioma/Te-gl_0002.png", "glioma"), ("notumor/Te-no_0001.png", "notumor")]
    assert all(im.mask is None and im.expert_mask() is None for im in images)


def test_figshare_set_keeps_only_the_held_out_fold_with_masks(tmp_path):
    images = held_out_images("figshare", fake_data(tmp_path), test_fold=4)
    assert [(im.relative, im.label, im.patient) for im in images] == [
        ("images/2.png", "glioma", "P2"), ("images/3.png", "meningioma", "P2")]
    mask = images[0].expert_mask()
    assert mask.dtype == bool and mask.sum() == (np.asarray(Image.open(GLIOMA_MASK)) > 0).sum()


def test_artifact_data_folders_map_to_held_out_sets(tmp_path):
    assert set_of_folder("brain_mri_4class/Testing") == "testing"
    assert set_of_folder("$BTD_DATA_DIR/figshare_3064") == "figshare"
    assert set_of_folder("brain_mri_4class/Training") is None and set_of_folder("brats") is None
    images = held_out_images("figshare", fake_data(tmp_path), test_fold=4)
    assert position_of(images, "images/3.png") == 1 and position_of(images, "images/1.png") is None


def test_the_held_out_fold_is_the_one_the_shipped_segmenter_never_saw():
    from core.serving.registry import model_card

    assert shipped_test_fold() == int(model_card("resunet")["config"]["test_fold"])


def test_missing_data_and_unknown_sets_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BTD_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match="BTD_DATA_DIR"):
        held_out_images("testing")
    with pytest.raises(DatasetError):
        held_out_images("figshare", tmp_path, test_fold=4)
    with pytest.raises(ValueError, match="unknown held-out set"):
        held_out_images("train", tmp_path)
    assert set(HELD_OUT_SETS) == {"testing", "figshare"}


def test_page_without_data_says_how_to_point_at_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BTD_DATA_DIR", str(tmp_path / "absent"))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.radio(key="an_source").set_value("Held-out public image").run()
    assert not at.exception, at.exception
    assert any("BTD_DATA_DIR" in i.value and "not on this machine" in i.value for i in at.info)
    assert not at.get("button") and not at.metric        # nothing to analyse yet


def test_page_compares_the_result_with_the_true_class_and_the_expert_mask(tmp_path, monkeypatch):
    monkeypatch.setenv("BTD_DATA_DIR", str(fake_data(tmp_path)))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.radio(key="an_source").set_value("Held-out public image").run()
    at.selectbox(key="an_ho_set").set_value("figshare").run()
    at.selectbox(key="an_ho_class").set_value("meningioma").run()
    assert at.number_input(key="an_ho_index").max == 1          # one meningioma slice in the held-out fold
    assert any("images/3.png" in i.value and "Meningioma" in i.value and "P2" in i.value for i in at.info)
    at.button(key="an_ho_spacing").click().run()
    assert at.number_input(key="an_spacing").value == pytest.approx(0.98)   # the dataset notes' spacing
    at.checkbox(key="an_anyway").check().run()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    assert "Against the ground truth" in [s.value for s in at.subheader]
    assert at.session_state["analysis"]["result"].spacing_source == "user"
    result = at.session_state["analysis"]["result"]
    verdicts = [m.value for m in at.success] + [m.value for m in at.error]
    expected = "matches the true class" if result.decision == "meningioma" else "the true class is **Meningioma**"
    assert any(expected in v for v in verdicts)
    shown = next(m.value for m in at.metric if m.label.startswith("Dice"))
    assert shown == f"{dice(result.mask, read_mask(GLIOMA_MASK)):.3f}"


def test_an_image_handed_over_by_another_page_is_selected(tmp_path, monkeypatch):
    monkeypatch.setenv("BTD_DATA_DIR", str(fake_data(tmp_path)))
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["an_ho_request"] = {"set": "testing", "relative": "glioma/Te-gl_0002.png"}
    at.run()
    assert not at.exception, at.exception
    assert at.radio(key="an_source").value == "Held-out public image"
    assert at.selectbox(key="an_ho_class").value == "glioma" and at.number_input(key="an_ho_index").value == 2
    assert any("glioma/Te-gl_0002.png" in i.value for i in at.info)
    assert "an_ho_request" not in at.session_state                 # used once
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["an_ho_request"] = {"set": "testing", "relative": "glioma/absent.png"}
    at.run()
    assert any("glioma/absent.png" in w.value and "not among" in w.value for w in at.warning)


def test_error_browser_opens_a_real_test_image_in_the_analyse_page(data_root):
    at, chosen = open_from_comparison("mc_err_open_pick", "mc_err_open_go", {"mc_err_task": "Classification"})
    assert at.title[0].value == "Analyse a slice"
    assert any(f"`{chosen}`" in i.value and "Real held-out scan" in i.value for i in at.info)


def test_batch_page_scores_a_random_held_out_sample_against_its_truth(tmp_path, monkeypatch):
    monkeypatch.setenv("BTD_DATA_DIR", str(fake_data(tmp_path)))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/batch.py").run()
    at.radio(key="bt_source").set_value("Held-out public images").run()
    at.selectbox(key="bt_ho_set").set_value("figshare").run()
    assert at.slider(key="bt_ho_count").max == 2                # two slices in the held-out fold
    at.button(key="bt_go").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert sorted(table["file"]) == ["images/2.png", "images/3.png"]
    assert sorted(table["true class"]) == ["Glioma", "Meningioma"]
    metrics = {m.label: m.value for m in at.metric}
    correct = int(table["correct"].sum())
    assert metrics["Accuracy against the true class"] == f"{correct / 2:.1%}"
    assert metrics["Mean Dice against the expert masks"] == f"{table['Dice vs expert'].mean():.3f}"
    (chart,) = [c for c in at.get("plotly_chart")]
    assert "Confusion matrix of these 2 images" in chart.proto.spec


def test_real_held_out_figshare_slices_match_the_evaluation_artifacts(analyzer, data_root):
    """The Dice the page shows for a held-out slice is the one the evaluation CLI recorded for it."""
    import pandas as pd

    predictions = config.REPO_ROOT / "weights" / "eval" / "predictions"
    scores = pd.concat([pd.read_csv(predictions / "resunet.csv"),
                        pd.read_csv(predictions / "figshare_fold4_index.csv")], axis=1).set_index("image")
    images = held_out_images("figshare", data_root)
    assert len(images) == len(scores)
    spacing = (0.98, 0.98)   # what the artifacts were evaluated with (--spacing-mm 0.98)
    for item in images[::len(images) // 6][:6]:
        slice_ = read_slice(item.path.read_bytes(), item.path.name)
        result = analyzer.analyze(slice_, AnalysisOptions(segment_anyway=True, gradcam=False,
                                                          lookup_training=False, spacing_override_mm=spacing))
        assert dice(result.mask, item.expert_mask()) == pytest.approx(scores.loc[item.relative, "dice"], abs=2e-3)
