"""The 3D BraTS path: sliding-window inference, the 3D U-Net builder and loss, the random-crop
training data, a tiny CPU training run of ``core.train.brats --model unet3d`` whose model the app's
``VolumeSegmenter`` loads and runs, LiteRT export skipping it, and the volume benchmark on a 3D
stand-in. Synthetic cases are written with nibabel into tmp_path (:func:`core.data.samples.synthetic_brats_case`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import nibabel as nib
import numpy as np
import pytest

from core.volumes import brats_model
from core.volumes.brats_model import (VolumeSegmenter, bounding_box, gaussian_weights, model_problem, predict_classes_3d,
                              shipped_name, sliding_window, window_starts)
from core.data.samples import ras_affine, synthetic_brats_case

ODD = (97, 131, 77)


class PointwiseModel:
    """A stand-in 3D network: class = thresholds of channel 0, voxel by voxel; records input shapes."""

    def __init__(self):
        self.shapes: list[tuple[int, ...]] = []

    @staticmethod
    def classes(x: np.ndarray) -> np.ndarray:
        return np.select([x > 1.0, x > 0.0, x > -1.0], [3, 2, 1], 0)

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.ndim == 5
        self.shapes.append(batch.shape)
        return np.eye(4, dtype=np.float32)[self.classes(batch[..., 0])]


class ConstantModel:
    """Predicts the same probabilities at every voxel."""

    probs = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.probs, (*batch.shape[:4], 4)).copy()


# --------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("length,window,overlap", [(77, 32, 0.25), (131, 32, 0.5), (32, 32, 0.25), (20, 32, 0.5),
                                                   (202, 128, 0.25), (172, 96, 0.5)])
def test_window_starts_cover_the_axis_with_the_overlap(length, window, overlap):
    starts = window_starts(length, window, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if length <= window:
        assert starts == [0]
        return
    assert starts[-1] == length - window                        # the last window ends at the edge
    assert all(b - a <= window * (1 - overlap) for a, b in zip(starts, starts[1:]))  # at least that overlap
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + window] = True
    assert covered.all()


def test_gaussian_weights_peak_in_the_centre_and_stay_positive():
    w = gaussian_weights((16, 16, 16))
    assert w.dtype == np.float32 and w.shape == (16, 16, 16)
    assert w.min() >= 1e-3 and w.max() == pytest.approx(1.0, abs=1e-6)
    assert w[8, 8, 8] > w[4, 8, 8] > w[0, 8, 8] and np.allclose(w, w[::-1, ::-1, ::-1])


def test_sliding_window_covers_every_voxel_of_an_odd_grid():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(*ODD, 4)).astype(np.float32)
    model, seen = PointwiseModel(), []
    probs = sliding_window(model, volume, window=40, multiple=8, overlap=0.25, progress=seen.append)
    assert probs.shape == (*ODD, 4) and probs.dtype == np.float32
    assert all(s == (1, 40, 40, 40, 4) for s in model.shapes)   # one input shape only (40 is a multiple of 8)
    expected = np.prod([len(window_starts(n, 40, 0.25)) for n in ODD])
    assert len(model.shapes) == expected and len(seen) == expected
    assert seen == sorted(seen) and seen[-1] == 1.0
    # a pointwise model: every voxel, wherever it sits in a window, gets its own class back
    np.testing.assert_array_equal(probs.argmax(-1), PointwiseModel.classes(volume[..., 0]))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_sliding_window_rounds_the_window_and_pads_short_axes():
    model = PointwiseModel()
    volume = np.ones((10, 50, 7, 4), np.float32)
    probs = sliding_window(model, volume, window=20, multiple=8)   # 20 -> 16
    assert probs.shape == (10, 50, 7, 4) and {s[1:4] for s in model.shapes} == {(16, 16, 16)}
    assert len(model.shapes) == len(window_starts(50, 16))


def test_blending_a_constant_prediction_is_exact():
    volume = np.ones((45, 38, 29, 4), np.float32)
    probs = sliding_window(ConstantModel(), volume, window=16, overlap=0.5)
    np.testing.assert_allclose(probs, np.broadcast_to(ConstantModel.probs, probs.shape), rtol=1e-6, atol=1e-7)


def test_predict_classes_3d_runs_only_the_brain_box():
    rng = np.random.default_rng(1)
    volume = np.zeros((*ODD, 4), np.float32)
    volume[20:61, 30:95, 10:50] = rng.normal(size=(41, 65, 40, 4))
    model, seen = PointwiseModel(), []
    classes = predict_classes_3d(model, volume, window=32, multiple=8, progress=seen.append)
    assert classes.shape == ODD and classes.dtype == np.uint8
    box = bounding_box(np.any(volume != 0, axis=3), 0)
    assert box == (slice(20, 61), slice(30, 95), slice(10, 50))
    assert len(model.shapes) == np.prod([len(window_starts(b.stop - b.start, 32)) for b in box])
    expected = np.zeros(ODD, np.uint8)
    expected[box] = PointwiseModel.classes(volume[box][..., 0])
    np.testing.assert_array_equal(classes, expected)
    whole = predict_classes_3d(PointwiseModel(), volume, window=32, multiple=8, crop=False)
    np.testing.assert_array_equal(whole[box], classes[box])
    empty = []
    assert not predict_classes_3d(PointwiseModel(), np.zeros((9, 9, 9, 4), np.float32), 16,
                                  progress=empty.append).any()
    assert empty == [1.0]


def test_segmenter_picks_2d_or_3d_from_the_card():
    images = {k: v for k, v in synthetic_brats_case((40, 36, 30), seed=3).items() if k != "seg"}
    model = PointwiseModel()
    card3d = {"dims": 3, "input": {"window": 16, "multiple": 8, "overlap": 0.25}, "postprocessing_rules": {}}
    labels = VolumeSegmenter("fake3d", model, card3d).segment(images, (1.0, 1.0, 1.0))
    assert labels.shape == (40, 36, 30) and set(np.unique(labels)) <= {0, 1, 2, 4}
    assert model.shapes and all(s[1:] == (16, 16, 16, 4) for s in model.shapes)
    assert VolumeSegmenter("fake2d", model, {}).dims == 2   # a card without dims is 2D


# --------------------------------------------------------------------------- network, loss, data


def test_unet3d_takes_any_multiple_of_its_factor():
    from core.models.segmenters import build_segmenter

    model = build_segmenter("unet3d", input_size=None, channels=4, num_classes=4, base=2, depth=2)
    out = np.asarray(model.predict_on_batch(np.zeros((1, 8, 12, 20, 4), np.float32)))
    assert out.shape == (1, 8, 12, 20, 4)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        build_segmenter("unet3d", input_size=20, base=2, depth=3)


def test_dice_focal_loss_on_volumes():
    from keras import ops

    from core.models.losses import dice_focal_loss

    rng = np.random.default_rng(0)
    classes = rng.integers(0, 4, size=(2, 8, 8, 8))
    target = np.eye(4, dtype=np.uint8)[classes]                       # the 3D data's uint8 one-hot targets
    perfect = float(ops.convert_to_numpy(dice_focal_loss(target, np.eye(4, dtype=np.float32)[classes])))
    uniform = float(ops.convert_to_numpy(dice_focal_loss(target, np.full((2, 8, 8, 8, 4), 0.25, np.float32))))
    assert perfect < 1e-3 and uniform > 0.5


def test_crop_batches_shapes_bias_and_determinism():
    from core.train.brats import CropBatches

    labels = np.zeros((40, 36, 30), np.uint8)
    labels[30:36, 28:34, 22:28] = 2
    labels[32:34, 30:32, 24:26] = 4
    volume = np.ones((40, 36, 30, 4), np.float32)
    volume[:2] = 0                                                    # some background
    data = CropBatches([("c", volume, labels, (1.0, 1.0, 1.0))], batch=4, crop=16, samples=30, seed=0)
    assert len(data) == 8
    x, y = data[0]
    assert x.shape == (4, 16, 16, 16, 4) and x.dtype == np.float32
    assert y.shape == (4, 16, 16, 16, 4) and y.dtype == np.uint8 and np.all(y.sum(-1) == 1)
    assert data[7][0].shape[0] == 2                                    # 30 samples: the last batch holds 2
    crops = np.concatenate([data[i][1] for i in range(len(data))])
    # the tumour fills under 1 % of the case, yet most crops hold some: two in three are centred on it
    assert np.mean(np.any(crops[..., 1:], axis=(1, 2, 3, 4))) > 0.5
    np.testing.assert_array_equal(data[3][0], data[3][0])              # seeded by (seed, epoch, index)
    flipped = [data[i][0] for i in range(len(data))]
    assert any(not np.array_equal(a[..., 0], a[::-1, ..., 0]) for a in flipped)
    assert np.all(x[np.all(x == 0, axis=-1)] == 0)
    small = CropBatches([("c", volume[:10, :12, :9], labels[:10, :12, :9], (1.0, 1.0, 1.0))], 1, 16, 1, 0)
    assert small[0][0].shape == (1, 16, 16, 16, 4)                     # smaller cases are padded


# --------------------------------------------------------------------------- region-based outputs


def test_region_targets_and_back_are_the_same_classes():
    from core.volumes.brats_model import region_targets, regions_to_classes, to_classes

    classes = np.random.default_rng(0).integers(0, 4, size=(6, 7, 5)).astype(np.uint8)
    regions = region_targets(classes)
    assert regions.shape == (6, 7, 5, 3) and regions.dtype == np.uint8
    wt, tc, et = (regions[..., i].astype(bool) for i in range(3))
    np.testing.assert_array_equal(wt, classes > 0)                          # WT = NCR, ED, ET
    np.testing.assert_array_equal(tc, np.isin(classes, (1, 3)))             # TC = NCR, ET
    np.testing.assert_array_equal(et, classes == 3)
    assert not (et & ~tc).any() and not (tc & ~wt).any()                    # nested
    np.testing.assert_array_equal(regions_to_classes(regions.astype(np.float32)), classes)
    np.testing.assert_array_equal(to_classes(regions.astype(np.float32), "regions"), classes)
    np.testing.assert_array_equal(to_classes(np.eye(4, dtype=np.float32)[classes], "classes"), classes)
    with pytest.raises(ValueError, match="unknown output kind"):
        to_classes(regions, "labels")


@pytest.mark.parametrize("probs,want", [((0.9, 0.1, 0.1), 2), ((0.9, 0.9, 0.1), 1), ((0.9, 0.9, 0.9), 3),
                                        ((0.1, 0.9, 0.9), 0),    # a core outside the whole tumour: nothing
                                        ((0.9, 0.2, 0.9), 2),    # enhancing outside the core: oedema only
                                        ((0.5, 0.49, 0.99), 2)])
def test_regions_to_classes_enforces_the_nesting(probs, want):
    from core.volumes.brats_model import regions_to_classes

    assert regions_to_classes(np.array([[probs]], np.float32))[0, 0] == want


class RegionModel:
    """A stand-in region-based 3D network: WT, TC, ET sigmoids from thresholds of channel 0."""

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        x = batch[..., 0]
        return np.stack([x > -1.0, x > 0.0, x > 1.0], axis=-1).astype(np.float32) * 0.98 + 0.01


def test_segmenter_reads_region_outputs_from_the_card():
    from core.volumes.brats_model import CLASS_TO_LABEL, normalise_case

    images = {k: v for k, v in synthetic_brats_case((40, 36, 30), seed=3).items() if k != "seg"}
    card = {"dims": 3, "input": {"window": 16, "multiple": 8}, "postprocessing_rules": {"min_component_mm3": 0.0},
            "output": {"kind": "regions"}}
    segmenter = VolumeSegmenter("regions3d", RegionModel(), card)
    assert segmenter.output == "regions" and VolumeSegmenter("x", RegionModel(), {}).output == "classes"
    labels = segmenter.segment(images, (1.0, 1.0, 1.0))
    # the same voxels PointwiseModel labels by thresholds of channel 0 (1 -> NCR ... here nested regions)
    x = normalise_case(images)[..., 0]
    brain = np.any(normalise_case(images) != 0, axis=-1)
    want = np.where(x > 1.0, 4, np.where(x > 0.0, 1, np.where(x > -1.0, 2, 0))).astype(np.uint8)
    want[~brain] = 0
    assert set(np.unique(labels)) <= set(CLASS_TO_LABEL.tolist())
    np.testing.assert_array_equal(labels[brain], want[brain])


def test_region_dice_bce_loss_on_volumes():
    from keras import ops

    from core.models.losses import region_dice_bce_loss
    from core.volumes.brats_model import region_targets

    classes = np.random.default_rng(0).integers(0, 4, size=(2, 8, 8, 8))
    target = region_targets(classes)
    loss = lambda pred: float(ops.convert_to_numpy(region_dice_bce_loss(target, pred.astype(np.float32))))
    perfect, uniform = loss(target), loss(np.full(target.shape, 0.5))
    inverted = loss(1.0 - target)
    assert perfect < 1e-3 and uniform > 0.5 and inverted > uniform


def test_unet3d_with_sigmoid_regions():
    from core.models.segmenters import build_segmenter

    model = build_segmenter("unet3d", input_size=None, channels=4, num_classes=3, base=2, depth=2, activation="sigmoid")
    out = np.asarray(model.predict_on_batch(np.random.default_rng(0).normal(size=(1, 8, 8, 12, 4)).astype(np.float32)))
    assert out.shape == (1, 8, 8, 12, 3) and out.min() > 0.0 and out.max() < 1.0
    assert not np.allclose(out.sum(-1), 1.0)                                # independent channels, not a softmax


def test_crop_batches_region_targets_and_scaling():
    from core.train.brats import SCALE_RANGE, CropBatches

    labels = np.zeros((40, 36, 30), np.uint8)
    labels[10:30, 8:28, 6:24] = 2
    labels[14:26, 12:24, 10:20] = 1
    labels[17:23, 15:21, 13:17] = 4
    volume = np.random.default_rng(0).normal(size=(40, 36, 30, 4)).astype(np.float32)
    case = [("c", volume, labels, (1.0, 1.0, 1.0))]
    plain = CropBatches(case, batch=8, crop=16, samples=8, seed=0, outputs="regions", tumour_fraction=1.0)
    scaled = CropBatches(case, batch=8, crop=16, samples=8, seed=0, outputs="regions", tumour_fraction=1.0,
                         scale_p=1.0)
    for data in (plain, scaled):
        x, y = data[0]
        assert x.shape == (8, 16, 16, 16, 4) and y.shape == (8, 16, 16, 16, 3) and y.dtype == np.uint8
        wt, tc, et = (y[..., i].astype(bool) for i in range(3))
        assert not (et & ~tc).any() and not (tc & ~wt).any()               # nesting survives flips and scaling
    # a cut of crop / scale voxels resampled to the crop: 19 (scale 0.85) down to 14 (scale 1.15)
    assert (scaled.cut_side(SCALE_RANGE[0]), scaled.cut_side(SCALE_RANGE[1])) == (19, 14)
    assert not np.array_equal(plain[0][1], scaled[0][1])
    # classes targets without scaling are the ones drawn before the option existed (same seeds, same crops)
    classes = CropBatches(case, batch=8, crop=16, samples=8, seed=0, tumour_fraction=1.0)
    np.testing.assert_array_equal(classes[0][0], plain[0][0])
    np.testing.assert_array_equal(classes[0][1][..., 1:].any(-1), plain[0][1][..., 0].astype(bool))


# --------------------------------------------------------------------------- training, loading, tools


def write_cases(root: Path, n: int = 3, shape=(32, 32, 24)) -> None:
    for i in range(n):
        name = f"SYN_{i:03d}"
        folder = root / name
        folder.mkdir(parents=True)
        for key, array in synthetic_brats_case(shape, seed=20 + i).items():
            nib.save(nib.Nifti1Image(array, ras_affine(array.shape, (1.0, 1.0, 1.0))),
                     str(folder / f"{name}_{key}.nii.gz"))


@pytest.fixture(scope="module")
def trained_3d(tmp_path_factory):
    """A tiny 3D U-Net trained for one epoch on three synthetic cases: ``(data folder, weights folder)``."""
    from core.train import brats

    root = tmp_path_factory.mktemp("brats3d")
    write_cases(root / "data")
    argv = ["--model", "unet3d", "--data", str(root / "data"), "--test-cases", "1", "--val-cases", "1",
            "--crop", "16", "--base", "4", "--depth", "2", "--epochs", "2", "--val-every", "2",
            "--samples-per-epoch", "4", "--batch", "2", "--workers", "1", "--out", str(root / "out")]
    with mock.patch.object(sys, "argv", ["brats.py", *argv]):    # the card's training_command reads it
        brats.main(argv)
    return root / "data", root / "out"


def test_training_writes_a_3d_card_and_an_any_size_model(trained_3d):
    import keras

    data, out = trained_3d
    card = json.loads((out / "manifest.json").read_text())["models"]["unet3d_brats"]
    assert card["dims"] == 3 and card["architecture"] == "unet3d" and card["task"] == "brats"
    assert card["input"]["window"] == 16 and card["input"]["multiple"] == 4
    assert card["config"]["crop"] == 16 and "size" not in card["config"]
    assert card["split_cases"]["val"] and card["split_cases"]["test"] and len(card["split_cases"]["train"]) == 1
    assert set(card["metrics"]["val"]) == {"dice_wt", "dice_tc", "dice_et", "n"}
    assert card["training_command"].startswith("python -m core.train.brats --model unet3d")
    log = (out / card["log"]).read_text().splitlines()
    assert log[0].split(",")[0] == "epoch" and "val_mean_dice" in log[0] and len(log) == 3
    model = keras.saving.load_model(out / card["file"], compile=False)
    assert model.input_shape == (None, None, None, None, 4) and getattr(model, "optimizer", None) is None


def test_volume_segmenter_loads_and_runs_the_trained_3d_model(trained_3d):
    from core.serving import export as export_runtime
    from core.volumes.case import read_case_folder

    data, out = trained_3d
    assert shipped_name(out) == "unet3d_brats" and model_problem(weights_dir=out) is None
    segmenter = VolumeSegmenter.load(weights_dir=out)
    assert segmenter.dims == 3 and segmenter.runner is segmenter.model     # Keras, never LiteRT
    case = read_case_folder(data / "SYN_000")
    seen = []
    labels = segmenter.segment(case.images, case.spacing_mm, progress=seen.append)
    assert labels.shape == case.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 4} and seen[-1] == 1.0
    assert export_runtime.default_models(out) == []                       # 3D models are not exported
    with pytest.raises(ValueError, match="3D"):
        export_runtime.export_model("unet3d_brats", out)


def test_region_based_training_end_to_end(tmp_path):
    """SLOW (~10 s): ``--outputs regions --scale-p`` trains sigmoid WT/TC/ET outputs, records them in
    the card, and the app's segmenter turns them into BraTS labels."""
    import keras

    from core.train import brats
    from core.volumes.case import read_case_folder

    write_cases(tmp_path / "data")
    argv = ["--model", "unet3d", "--data", str(tmp_path / "data"), "--test-cases", "1", "--val-cases", "1",
            "--crop", "16", "--base", "4", "--depth", "2", "--epochs", "1", "--samples-per-epoch", "4",
            "--batch", "2", "--workers", "1", "--outputs", "regions", "--scale-p", "0.5", "--name", "regions3d",
            "--out", str(tmp_path / "out")]
    with mock.patch.object(sys, "argv", ["brats.py", *argv]):
        brats.main(argv)
    card = json.loads((tmp_path / "out" / "manifest.json").read_text())["models"]["regions3d"]
    assert card["output"]["kind"] == "regions" and card["output"]["channels"] == ["WT", "TC", "ET"]
    assert card["loss"].startswith("soft Dice + binary cross-entropy") and "Region-based" in card["description"]
    assert card["config"]["outputs"] == "regions" and card["config"]["scale_p"] == 0.5
    assert "50% of them scaled by 0.85-1.15" in card["augmentation"]
    model = keras.saving.load_model(tmp_path / "out" / card["file"], compile=False)
    assert model.output_shape[-1] == 3
    # a class model continued as a region model: every layer but the output comes from it
    classes = ["--model", "unet3d", "--data", str(tmp_path / "data"), "--test-cases", "1", "--val-cases", "1",
               "--crop", "16", "--base", "4", "--depth", "2", "--epochs", "1", "--samples-per-epoch", "2",
               "--batch", "2", "--workers", "1", "--name", "classes3d", "--out", str(tmp_path / "out")]
    brats.main(classes)
    brats.main([*argv[:-4], "--name", "continued", "--init-from", str(tmp_path / "out" / "classes3d.keras"),
                "--out", str(tmp_path / "out")])
    cards = json.loads((tmp_path / "out" / "manifest.json").read_text())["models"]
    origin = cards["continued"]["initialised_from"]
    assert origin["new_layers"] == ["mask"] and origin["sha256"] == cards["classes3d"]["sha256"]
    assert origin["epochs"] == 1 and "config" not in origin
    assert cards["continued"]["config"]["init_from"].endswith("classes3d.keras")
    segmenter = VolumeSegmenter.load("regions3d", tmp_path / "out")
    assert segmenter.output == "regions"
    case = read_case_folder(tmp_path / "data" / "SYN_000")
    labels = segmenter.segment(case.images, case.spacing_mm)
    assert labels.shape == case.shape and set(np.unique(labels)) <= {0, 1, 2, 4}


def test_2d_card_options_are_unchanged():
    from core.serving import registry
    from core.train.brats import card_config, parse_args

    args = parse_args([])
    assert (args.model, args.name, args.batch, args.lr, args.base, args.depth) == ("unet2d", "unet2d_brats", 16,
                                                                                   2e-3, 16, 4)
    keys = list(card_config(args))
    assert keys == ["size", "base", "depth", "epochs", "batch", "lr", "weight_decay", "test_cases", "val_cases",
                    "seed", "max_minutes", "name"]
    try:
        shipped = registry.model_card("unet2d_brats")
    except Exception:
        return
    # the shipped card names every default option, and beyond them only options it set away from their default
    from core.train.brats import SILENT_DEFAULTS

    extra = set(shipped["config"]) - set(keys)
    assert set(keys) <= set(shipped["config"]) and extra <= set(SILENT_DEFAULTS) and "dims" not in shipped
    assert all(shipped["config"][k] != SILENT_DEFAULTS[k] for k in extra)


def test_bench_volume_times_a_3d_stand_in(capsys):
    from core.evaluation import bench_volume

    line = bench_volume.main(["--shape", "40", "40", "32", "--arch", "unet3d", "--base", "2", "--depth", "2",
                              "--window", "16"])
    out = capsys.readouterr().out
    assert "unet3d base=2 depth=2 window=16" in out and " windows: first " in out
    assert line == out.strip().splitlines()[-1] and line.endswith(f"voxels={40 * 40 * 32}")


def test_shipped_name_prefers_the_2d_default_among_several(tmp_path):
    cards = {"unet3d_brats": {"task": "brats", "role": "shipped"}, "x": {"task": "segmentation", "role": "shipped"}}
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": 1, "models": cards}))
    assert shipped_name(tmp_path) == "unet3d_brats"
    cards[brats_model.DEFAULT_MODEL] = {"task": "brats", "role": "shipped"}
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": 1, "models": cards}))
    assert shipped_name(tmp_path) == brats_model.DEFAULT_MODEL
    assert shipped_name(tmp_path / "none") == brats_model.DEFAULT_MODEL


def test_available_models_lists_present_brats_files_shipped_first(tmp_path):
    cards = {"unet3d_brats": {"task": "brats", "role": "comparison", "file": "b.keras"},
             brats_model.DEFAULT_MODEL: {"task": "brats", "role": "shipped", "file": "a.keras"},
             "gone": {"task": "brats", "role": "comparison", "file": "missing.keras"},
             "resunet": {"task": "segmentation", "role": "shipped", "file": "c.keras"}}
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": 1, "models": cards}))
    for name in ("a.keras", "b.keras", "c.keras"):
        (tmp_path / name).write_bytes(b"x")
    assert brats_model.available_models(tmp_path) == [brats_model.DEFAULT_MODEL, "unet3d_brats"]
    assert brats_model.available_models(tmp_path / "none") == []


def test_split_like_takes_the_cards_cases_without_the_test_ones(tmp_path, monkeypatch):
    from core import config
    from core.serving import registry
    from core.train.brats import case_split, parse_args

    data = tmp_path / "data"
    for name in ("A", "B", "C"):
        (data / name).mkdir(parents=True)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "m.keras").write_bytes(b"x")
    registry.record_model("m", {"file": "m.keras", "split": "by case, seed 1",
                                "split_cases": {"train": ["B", "C"], "val": ["A"], "test": ["T1", "T2"]}}, weights)
    monkeypatch.setattr(config, "WEIGHTS_DIR", weights)
    train, val, test, split = case_split(data, parse_args(["--model", "unet3d", "--split-like", "m"]))
    assert [p.name for p in train] == ["B", "C"] and [p.name for p in val] == ["A"] and test == ["T1", "T2"]
    assert "the split of m" in split
    plain = case_split(data, parse_args(["--test-cases", "1", "--val-cases", "1"]))
    assert len(plain[0]) == 1 and len(plain[2]) == 1                  # a fresh seeded split of the folders
    (data / "C").rmdir()
    with pytest.raises(SystemExit, match="not in"):
        case_split(data, parse_args(["--model", "unet3d", "--split-like", "m"]))
