"""The evaluation CLI: layouts, class subsets, RESULT lines, exit codes; real data when present."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.evaluation import cli as evaluate
from synthetic_images import phantom, write_png


def result_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_classification_on_a_subset_of_classes_with_other_spellings(tmp_path, capsys):
    for k in range(3):
        write_png(tmp_path / "glioma_tumor" / f"g{k}.png", phantom(k)[0])
        write_png(tmp_path / "no_tumor" / f"n{k}.png", phantom(10 + k)[0])
    (tmp_path / "unrelated").mkdir()
    out = tmp_path / "eval.json"
    assert evaluate.main(["classification", "--data", str(tmp_path), "--json", str(out)]) == 0
    line = result_line(capsys)
    assert line.startswith("RESULT accuracy=") and line.endswith("n=6")
    report = json.loads(out.read_text())["ensemble"]
    assert set(report["per_class"]) == {"glioma", "notumor"}
    assert len(report["confusion_matrix"]) == 4
    assert sum(map(sum, report["confusion_matrix"])) == 6


def test_segmentation_images_and_masks_layout(tmp_path, capsys):
    for k in range(3):
        image, mask = phantom(k)
        write_png(tmp_path / "images" / f"case{k}.png", image)
        write_png(tmp_path / "masks" / f"case{k}.png", (mask * 255).astype(np.uint8))
    assert evaluate.main(["segmentation", "--data", str(tmp_path)]) == 0
    line = result_line(capsys)
    assert line.startswith("RESULT dice=") and "hd95_px=" in line and line.endswith("n=3")


def test_segmentation_index_csv_layout_with_folds(tmp_path, capsys):
    rows = ["image,mask,label,patient_id,fold"]
    for k in range(4):
        image, mask = phantom(k)
        write_png(tmp_path / "img" / f"{k}.png", image)
        write_png(tmp_path / "msk" / f"{k}.png", (mask * 255).astype(np.uint8))
        rows.append(f"img/{k}.png,msk/{k}.png,glioma,p{k},{1 + k % 2}")
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    assert evaluate.main(["segmentation", "--data", str(tmp_path), "--folds", "2"]) == 0
    assert result_line(capsys).endswith("n=2")


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_unusable_folders_exit_2_with_a_message(tmp_path, capsys, task):
    (tmp_path / "nothing_here").mkdir()
    assert evaluate.main([task, "--data", str(tmp_path)]) == evaluate.EXIT_BAD_INPUT
    assert "error:" in capsys.readouterr().err
    assert evaluate.main([task, "--data", str(tmp_path / "missing")]) == evaluate.EXIT_BAD_INPUT


@pytest.mark.slow
def test_official_testing_split_accuracy(data_root, capsys):
    """The shipped ensemble on the official Testing split (1311 images) scores what the committed
    artifacts and the README say (0.9519 since the multi-source retraining; the 0.99 target is not met,
    see the README), and stays above the floor below which a change would be a regression."""
    import json

    from core import config

    testing = data_root / "brain_mri_4class" / "Testing"
    assert evaluate.main(["classification", "--data", str(testing)]) == 0
    line = result_line(capsys)
    fields = dict(kv.split("=") for kv in line.split()[1:])
    assert fields["n"] == "1311"
    committed = json.loads((config.WEIGHTS_DIR / "eval" / "comparison.json").read_text())
    official = committed["models"]["stacking_ensemble"]["metrics"]["official"]["accuracy"]
    assert abs(float(fields["accuracy"]) - official) <= 0.002
    assert float(fields["accuracy"]) >= 0.95


def strict_json(text: str):
    """Parse as standard JSON: ``NaN``/``Infinity`` (Python's extension) are an error."""
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


class _MissesEnhancingTumour:
    """A BraTS 'model' that returns the truth without its enhancing tumour: ET HD95 is undefined."""

    name, sha256, card = "stand_in", "0" * 64, {}

    def __init__(self, truth: np.ndarray):
        self.truth = truth

    def segment(self, images, spacing_mm, progress=None):
        return np.where(self.truth == 4, 1, self.truth).astype(np.uint8)


def test_brats_json_is_strict_when_an_hd95_is_undefined(tmp_path, monkeypatch, capsys):
    """A case whose HD95 is undefined (ET in the truth, none predicted) is written as null, not NaN."""
    import nibabel as nib

    from core.volumes import brats_model

    truth = np.zeros((16, 16, 8), np.uint8)
    truth[3:11, 3:11, 2:6] = 2
    truth[5:8, 5:8, 3:5] = 4
    case = tmp_path / "data" / "CASE_X"
    case.mkdir(parents=True)
    brain = np.random.default_rng(0).integers(100, 500, truth.shape).astype(np.int16)
    for suffix in ("flair", "t1", "t1ce", "t2"):
        nib.save(nib.Nifti1Image(brain, np.eye(4)), str(case / f"CASE_X_{suffix}.nii.gz"))
    nib.save(nib.Nifti1Image(truth, np.eye(4)), str(case / "CASE_X_seg.nii.gz"))
    monkeypatch.setattr(brats_model.VolumeSegmenter, "load",
                        classmethod(lambda cls, *a, **k: _MissesEnhancingTumour(truth)))
    out = tmp_path / "brats.json"
    assert evaluate.main(["brats", "--data", str(tmp_path / "data"), "--json", str(out)]) == 0
    assert result_line(capsys).endswith("n=1")
    result = strict_json(out.read_text())
    assert result["cases"]["CASE_X"]["ET"]["hd95_mm"] is None and result["cases"]["CASE_X"]["ET"]["dice"] == 0.0
    assert result["mean"]["ET"]["hd95_mm"] is None and result["cases"]["CASE_X"]["WT"]["hd95_mm"] == 0.0

    # --weights scores a model of another folder (a run's --out) by its name there
    asked = []

    def load(cls, name=None, weights_dir=None):
        asked.append((name, weights_dir))
        return _MissesEnhancingTumour(truth)

    monkeypatch.setattr(brats_model.VolumeSegmenter, "load", classmethod(load))
    assert evaluate.main(["brats", "--data", str(tmp_path / "data"), "--model", "candidate",
                          "--weights", str(tmp_path / "run")]) == 0
    assert asked == [("candidate", tmp_path / "run")]
