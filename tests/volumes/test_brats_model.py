"""core.volumes.brats_model inference side, the BraTS evaluation CLI and the timing benchmark.

Most tests use a fake network (a pointwise rule with ``predict_on_batch``) so they need no deep-
learning backend; one builds a tiny untrained U-Net for the benchmark, and one runs the shipped
model on a real case when both are present (skipped otherwise)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core import config

from core.volumes import brats_model

from core.evaluation import cli as evaluate
from core.evaluation.scoring import brats_case_scores
from core.volumes.brats_model import (CLASS_TO_LABEL, VolumePostProcessing, VolumeSegmenter, inplane_box, model_problem,
                              normalise_case, postprocess_labels, predict_classes)
from core.volumes.regions import compare_to_truth

SHAPE = (40, 36, 20)


class RuleModel:
    """A stand-in network: class = channel 0 thresholds (pointwise), recording its input shapes."""

    def __init__(self):
        self.shapes: list[tuple[int, ...]] = []

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        x = batch[..., 0]
        classes = np.select([x > 1.5, x > 0.5, x > -0.5], [3, 2, 1], 0)
        classes[np.all(batch == 0, axis=-1)] = 0
        return np.eye(4, dtype=np.float32)[classes]


def phantom_images(shape=SHAPE, seed=0) -> dict[str, np.ndarray]:
    """Four int16 modalities: a noisy ellipsoid 'brain' (0 outside) with a bright blob."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    brain = (x / 0.7) ** 2 + (y / 0.8) ** 2 + (z / 0.8) ** 2 <= 1
    blob = (x - 0.2) ** 2 + y**2 + z**2 <= 0.15
    images = {}
    for i, key in enumerate(brats_model.MODALITIES):
        arr = 400 + 20 * i + rng.normal(0, 30, shape) + 300 * blob
        images[key] = np.where(brain, arr, 0).astype(np.int16)
    return images


# --------------------------------------------------------------------------- pieces


def test_normalise_case_is_scale_free_and_zero_outside():
    images = phantom_images()
    out = normalise_case(images)
    assert out.dtype == np.float32 and out.shape == (*SHAPE, 4)
    brain = images["t1"] != 0
    assert np.all(out[~brain] == 0)
    assert abs(float(out[..., 0][brain].mean())) < 0.05 and abs(float(out[..., 0][brain].std()) - 1) < 0.1
    scaled = {k: (v.astype(np.float32) / 4.0) for k, v in images.items()}  # other dtype and scale
    np.testing.assert_allclose(normalise_case(scaled), out, atol=1e-4)
    with pytest.raises(ValueError, match="missing modalities"):
        normalise_case({"t1": images["t1"]})


def test_inplane_box_covers_brain_with_margin():
    occupied = np.zeros((240, 240), bool)
    occupied[60:190, 40:210] = True
    bx, by = inplane_box(occupied, margin=16)
    assert bx.start <= 44 and bx.stop >= 206 and by.start <= 24 and by.stop >= 226
    assert (bx.stop - bx.start) % 16 == 0 and (by.stop - by.start) % 16 == 0
    assert 0 <= bx.start and bx.stop <= 240 and 0 <= by.start and by.stop <= 240
    assert inplane_box(np.zeros((30, 20), bool)) == (slice(0, 30), slice(0, 20))


def test_predict_classes_crops_pads_and_reports_progress():
    volume = normalise_case(phantom_images())
    volume = np.pad(volume, ((30, 30), (20, 20), (5, 5), (0, 0)))  # empty margin and empty slices
    model, seen = RuleModel(), []
    cropped = predict_classes(model, volume, batch=4, progress=seen.append)
    assert all(s[1] % 16 == 0 and s[2] % 16 == 0 and s[3] == 4 for s in model.shapes)
    assert max(s[1] for s in model.shapes) < volume.shape[0]  # ran on the brain's box, not the frame
    brain_slices = int(np.any(volume != 0, axis=(0, 1, 3)).sum())
    assert brain_slices < volume.shape[2] and sum(s[0] for s in model.shapes) == brain_slices  # only those
    assert seen[-1] == 1.0 and seen == sorted(seen)
    full = predict_classes(RuleModel(), volume, batch=4, crop=False)
    np.testing.assert_array_equal(cropped, full)  # a pointwise model: cropping changes nothing
    assert cropped.dtype == np.uint8 and set(np.unique(cropped)) <= {0, 1, 2, 3}
    empty = []
    assert not predict_classes(RuleModel(), np.zeros((16, 16, 4, 4), np.float32), progress=empty.append).any()
    assert empty == [1.0]


def test_postprocess_drops_small_components_in_mm3():
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[2:12, 2:12, 2:12] = 2          # 1000 voxels
    labels[5:8, 5:8, 5:8] = 4             # 27 voxels of ET inside
    labels[20:22, 20:22, 20:22] = 1       # 8-voxel speck
    rules = VolumePostProcessing(min_component_mm3=50.0, min_et_mm3=0.0)
    out = postprocess_labels(labels, (1.0, 1.0, 1.0), rules)
    assert not out[20:22, 20:22, 20:22].any() and (out == 4).sum() == 27
    # at 2 mm spacing the speck is 64 mm³ and stays
    assert postprocess_labels(labels, (2.0, 2.0, 2.0), rules)[20, 20, 20] == 1
    relabelled = postprocess_labels(labels, (1.0, 1.0, 1.0), VolumePostProcessing(0.0, 100.0))
    assert not (relabelled == 4).any() and (relabelled == 1).sum() == 27 + 8


def test_segmenter_with_a_fake_network():
    segmenter = VolumeSegmenter("fake", RuleModel(), {"postprocessing_rules": {"min_component_mm3": 10.0}})
    labels = segmenter.segment(phantom_images(), (1.0, 1.0, 1.0))
    assert labels.shape == SHAPE and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 4} and (labels == 4).any()
    assert segmenter.rules == VolumePostProcessing(10.0, 0.0)


def test_model_problem_messages(tmp_path):
    assert "not available yet" in model_problem(weights_dir=tmp_path)
    manifest = {"schema": 1, "models": {"unet2d_brats": {"task": "brats", "file": "unet2d_brats.keras",
                                                         "sha256": "0" * 64}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert "missing" in model_problem(weights_dir=tmp_path)
    (tmp_path / "unet2d_brats.keras").write_bytes(b"x")
    assert model_problem(weights_dir=tmp_path) is None


# --------------------------------------------------------------------------- evaluation CLI


def write_case(folder: Path, labels: np.ndarray, seed: int) -> None:
    folder.mkdir(parents=True)
    images = phantom_images(labels.shape, seed)
    for key, suffix in (("flair", "_flair"), ("t1", "_t1"), ("t1ce", "_t1ce"), ("t2", "_t2")):
        nib.save(nib.Nifti1Image(images[key], np.eye(4)), str(folder / f"{folder.name}{suffix}.nii.gz"))
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(folder / f"{folder.name}_seg.nii.gz"))


class OffsetSegmenter:
    """'Predicts' the truth shifted by one voxel along x, and drops ET (a known score)."""

    name, sha256 = "offset", "0" * 64
    card = {"split_cases": {"train": ["CASE_TRAIN"]}}

    def __init__(self):
        self.truths: list[np.ndarray] = []

    @staticmethod
    def shift(truth: np.ndarray) -> np.ndarray:
        pred = np.roll(truth, 1, axis=0)
        pred[pred == 4] = 1
        return pred

    def segment(self, images, spacing_mm, progress=None):
        return self.shift(self.truths.pop(0))


def test_evaluate_brats_cli(tmp_path, monkeypatch, capsys):
    with_et = np.zeros((24, 24, 16), np.uint8)
    with_et[4:14, 4:14, 4:12] = 2
    with_et[6:10, 6:10, 6:10] = 4
    no_et = np.zeros_like(with_et)
    no_et[8:18, 8:18, 2:10] = 1
    write_case(tmp_path / "CASE_A", with_et, 1)
    write_case(tmp_path / "CASE_B", no_et, 2)
    write_case(tmp_path / "CASE_TRAIN", no_et, 3)
    fake = OffsetSegmenter()
    fake.truths = [with_et, no_et]
    monkeypatch.setattr(brats_model.VolumeSegmenter, "load", classmethod(lambda cls, *a, **k: fake))
    out = tmp_path / "eval.json"
    assert evaluate.main(["brats", "--data", str(tmp_path), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    scores = [compare_to_truth(OffsetSegmenter.shift(t), t, (1, 1, 1)) for t in (with_et, no_et)]
    wt, tc = (np.mean([s[r]["dice"] for s in scores]) for r in ("WT", "TC"))
    assert lines[-1] == f"RESULT wt={wt:.4f} tc={tc:.4f} et=0.5000 n=2"  # ET: 0 (missed) and 1 (absent in both)
    assert any("ET absent in truth and prediction" in line and "CASE_B" in line for line in lines)
    result = json.loads(out.read_text())
    assert result["skipped_training_cases"] == ["CASE_TRAIN"] and result["n"] == 2
    assert result["cases"]["CASE_B"]["ET"]["dice"] == 1.0 and result["cases"]["CASE_A"]["ET"]["dice"] == 0.0


def test_brats_case_scores_known_shapes():
    truth = np.zeros((30, 30, 30), np.uint8)
    truth[5:15, 5:15, 5:15] = 1
    pred = np.roll(truth, 2, axis=0)
    scores = brats_case_scores(pred, truth, (1.0, 1.0, 1.0))
    assert scores["WT"]["dice"] == pytest.approx(0.8) and scores["WT"]["hd95_mm"] == pytest.approx(2.0)
    assert scores["ET"] == {"dice": 1.0, "hd95_mm": 0.0, "empty_truth": True, "empty_pred": True}


def test_evaluate_brats_without_model_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "WEIGHTS_DIR", tmp_path / "no_weights")
    (tmp_path / "data").mkdir()
    assert evaluate.main(["brats", "--data", str(tmp_path / "data")]) == evaluate.EXIT_BAD_INPUT
    assert "error:" in capsys.readouterr().err


# --------------------------------------------------------------------------- benchmark and real data


def test_bench_volume_result_line(monkeypatch, capsys):
    from core.evaluation import bench_volume

    fake = VolumeSegmenter("fake", RuleModel(), {})
    monkeypatch.setattr(bench_volume, "shipped_or_stand_in", lambda force: (fake, False))
    line = bench_volume.main(["--shape", "48", "48", "32", "--stand-in"])
    assert line == capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("RESULT case_s=") and line.endswith(f"voxels={48 * 48 * 32}")
    assert float(line.split("case_s=")[1].split()[0]) < 60


def test_bench_volume_prints_the_region_dice_of_a_trained_model(monkeypatch, capsys):
    from core.evaluation import bench_volume

    fake = VolumeSegmenter("fake", RuleModel(), {})
    monkeypatch.setattr(bench_volume, "shipped_or_stand_in", lambda force: (fake, True))
    bench_volume.main(["--shape", "48", "48", "32"])
    dice_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("dice vs truth: "))
    scores = dict(part.split("=") for part in dice_line.removeprefix("dice vs truth: ").split())
    assert list(scores) == ["WT", "TC", "ET"] and all(0.0 <= float(s) <= 1.0 for s in scores.values())


def test_shipped_model_on_a_real_case(data_root):
    if model_problem():
        pytest.skip(model_problem())
    brats = data_root / "brats"
    if not brats.is_dir():
        pytest.skip(f"no brats/ in {data_root}")
    segmenter = VolumeSegmenter.load()
    held_out = segmenter.card.get("split_cases", {}).get("test") or sorted(p.name for p in brats.iterdir())[:1]
    from core.volumes.case import read_case_folder

    case = read_case_folder(brats / held_out[0])
    pred = segmenter.segment(case.images, case.spacing_mm)
    assert pred.shape == case.shape and set(np.unique(pred)) <= {0, 1, 2, 4}
    assert compare_to_truth(pred, case.labels, case.spacing_mm)["WT"]["dice"] > 0.5
    assert CLASS_TO_LABEL.tolist() == [0, 1, 2, 4]
