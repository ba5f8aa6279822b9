"""core.slices.acquisition: reading the sequence/plane model's output (argmax, confidences, "unsure"
below CONFIDENT, labels); plus one small end-to-end run of ``core.train.acquisition`` on a
synthetic data folder (``test_cli_end_to_end_*``: imports TensorFlow, 15-30 s)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import synthetic_sources as syn
from core.slices.acquisition import CONFIDENT, Acquisition, from_probabilities
from core.data.sources import PLANES, SEQUENCES


def row(seq: list[float], plane: list[float]) -> np.ndarray:
    return np.array(seq + plane, dtype=np.float32)


def test_from_probabilities_argmax_and_confidences():
    probs = np.stack([row([0.1, 0.2, 0.6, 0.1], [0.7, 0.2, 0.1]),      # t2 axial
                      row([0.05, 0.05, 0.1, 0.8], [0.1, 0.1, 0.8]),    # flair sagittal
                      row([0.3, 0.4, 0.2, 0.1], [0.2, 0.5, 0.3])])     # t1ce coronal, both unsure
    a, b, c = from_probabilities(probs)
    assert (a.sequence, a.plane, a.sequence_confidence, a.plane_confidence) == ("t2", "axial", 0.6, 0.7)
    assert (b.sequence, b.plane) == ("flair", "sagittal") and b.label() == "sagittal FLAIR"
    assert (c.sequence, c.plane) == ("t1ce", "coronal") and c.label() == "coronal T1-CE"
    assert a.label() == "axial T2"
    assert a.sequence_probabilities == {"t1": 0.1, "t1ce": 0.2, "t2": 0.6, "flair": 0.1}
    assert a.plane_probabilities == {"axial": 0.7, "coronal": 0.2, "sagittal": 0.1}
    assert list(a.sequence_probabilities) == list(SEQUENCES) and list(a.plane_probabilities) == list(PLANES)
    assert from_probabilities(np.zeros((0, 7))) == []


def test_confidence_threshold_and_text():
    assert CONFIDENT == 0.6
    at, = from_probabilities(row([0.1, 0.2, 0.6, 0.1], [0.7, 0.2, 0.1])[None])
    assert at.confident                                               # exactly CONFIDENT counts
    assert at.text() == "axial T2 (sequence 0.60, plane 0.70)"
    below, = from_probabilities(row([0.1, 0.2, 0.59, 0.11], [0.9, 0.05, 0.05])[None])
    assert not below.confident and below.text().endswith(", unsure)") and "unsure" in below.text()
    plane_unsure, = from_probabilities(row([0.97, 0.01, 0.01, 0.01], [0.5, 0.45, 0.05])[None])
    assert not plane_unsure.confident
    assert plane_unsure.text() == "axial T1 (sequence 0.97, plane 0.50, unsure)"
    sure, = from_probabilities(row([0.01, 0.01, 0.01, 0.97], [0.02, 0.02, 0.96])[None])
    assert sure.confident and "unsure" not in sure.text()


def test_to_json_is_serialisable_and_complete():
    acq, = from_probabilities(row([0.1, 0.2, 0.6, 0.1], [0.3, 0.3, 0.4])[None])
    data = acq.to_json()
    assert data["label"] == "sagittal T2" and data["confident"] is False and data["plane_confidence"] == 0.4
    assert json.loads(json.dumps(data))["sequence_probabilities"]["t2"] == 0.6
    assert isinstance(acq, Acquisition)


def test_gamma_option_widens_only_the_contrast_curve_of_the_recogniser_augmentation():
    from dataclasses import asdict

    from core.train.acquisition import AUGMENT, Batches, augmentation

    wide = augmentation((0.45, 2.2))
    assert wide.gamma == (0.45, 2.2) and augmentation() == AUGMENT
    assert {k: v for k, v in asdict(wide).items() if k != "gamma"} == {
        k: v for k, v in asdict(AUGMENT).items() if k != "gamma"}
    # the configured curve reaches the drawn batch: same draws, gamma 3 gives a darker head than 1/3
    from core.data.slice_refs import SliceRef, SliceSet

    yy, xx = np.mgrid[:48, :48]
    head = np.where((yy - 24) ** 2 + (xx - 24) ** 2 < 20 ** 2, 40 + 4 * xx, 0).astype(np.uint8)
    refs = [SliceRef("brats", "train", "glioma", "case", "t1", "axial", f"case/t1/axial/{k}") for k in range(4)]
    slices = SliceSet(refs, np.stack([head] * 4))
    means = {}
    for g in (3.0, 1 / 3):
        batches = Batches(slices, 4, 4, 0, augment=augmentation((g, g)))
        assert batches.augment.gamma == (g, g)
        x, _ = batches.make_batch(np.arange(4), np.random.default_rng(0))
        means[g] = float(x[x > 0].mean())
    assert means[3.0] < means[1 / 3] - 0.1


def test_fit_validation_moves_only_the_named_sources_validation_patients_into_training():
    from core.data.slice_refs import SliceRef, SliceSet
    from core.train.acquisition import split_text, training_split

    rows = [("brats", "train"), ("brats", "val"), ("brats", "test"), ("tcga_lgg", "train"), ("tcga_lgg", "val"),
            ("tcga_lgg", "test")]
    refs = [SliceRef(src, split, "glioma", f"{src}-{split}", "t1", "axial", f"{src}/{split}") for src, split in rows]
    slices = SliceSet(refs, np.zeros((len(refs), 4, 4), np.uint8))
    ids = lambda part: [r.ref for r in part.refs]  # noqa: E731
    train, val, test = training_split(slices)
    assert (ids(train), ids(val), ids(test)) == (["brats/train", "tcga_lgg/train"], ["brats/val", "tcga_lgg/val"],
                                                 ["brats/test", "tcga_lgg/test"])
    train, val, test = training_split(slices, ["brats"])
    assert ids(train) == ["brats/train", "brats/val", "tcga_lgg/train"] and ids(val) == ["tcga_lgg/val"]
    assert ids(test) == ["brats/test", "tcga_lgg/test"]  # the held-out patients never move
    assert "validation patients of brats trained on" in split_text(["brats"]) and "trained on" not in split_text()
    with pytest.raises(ValueError, match="no validation slices"):
        training_split(slices, ["brats", "tcga_lgg"])


def test_thick_slices_blur_only_along_the_rows_and_only_resliced_brats_views_get_them():
    from core.data.slice_refs import SliceRef, SliceSet
    from core.train.acquisition import Batches, resliced
    from core.train.augment import thick_slices

    stripes = np.zeros((64, 64), np.uint8)
    stripes[::2] = 200                                    # detail along the rows (superior-inferior)
    columns = np.zeros((64, 64), np.uint8)
    columns[:, ::2] = 200                                 # detail across them (in-plane)
    thick = thick_slices(stripes, 4.0)
    assert thick.shape == (64, 64) and thick.dtype == np.float32
    assert np.ptp(thick[8:56, 32]) < 0.1 < np.ptp(stripes / 255.0)  # the slice profile averages the rows away
    np.testing.assert_allclose(thick_slices(columns, 4.0), columns / 255.0, atol=1e-6)  # in-plane detail stays

    rows = [("brats", "coronal"), ("brats", "sagittal"), ("brats", "axial"), ("figshare", "coronal")]
    refs = [SliceRef(src, "train", "glioma", "p", "t1", plane, f"{src}/{plane}") for src, plane in rows]
    slices = SliceSet(refs, np.stack([stripes] * 4))
    assert resliced(slices).tolist() == [True, True, False, False]
    always = Batches(slices, 4, 4, 0, thick_p=1.0)
    rng = np.random.default_rng(0)
    changed = [not np.array_equal(always._thickened(i, rng), stripes) for i in range(4)]
    assert changed == [True, True, False, False]          # figshare's coronal slices were acquired so
    never = Batches(slices, 4, 4, 0)
    assert not any(not np.array_equal(never._thickened(i, rng), stripes) for i in range(4))


# --------------------------------------------------------------------------- end-to-end CLI (slow)


def test_cli_end_to_end_acquisition_training(tmp_path, monkeypatch):
    """SLOW (end-to-end, ~20 s on 2 cores): ``python -m core.train.acquisition`` for one tiny epoch on
    the synthetic BraTS and tcga_lgg slices; checks the card's outputs layout and metrics."""
    keras = pytest.importorskip("keras")
    from core.train import acquisition as train_acquisition

    tree = syn.build_tree(tmp_path / "data")
    syn.isolate(monkeypatch, tree, tmp_path / "cache", tmp_path / "weights")
    out = tmp_path / "out"
    train_acquisition.main(["--sources", "brats", "tcga_lgg", "--size", "32", "--epochs", "1",
                            "--samples-per-epoch", "64", "--batch", "16", "--workers", "1", "--out", str(out)])
    card = json.loads((out / "manifest.json").read_text())["models"]["sequence_plane"]
    assert card["task"] == "acquisition" and card["input"]["normalisation"] == "head"
    assert card["outputs"]["sequences"] == list(SEQUENCES) and card["outputs"]["planes"] == list(PLANES)
    assert "sequence softmax then plane softmax" in card["outputs"]["layout"]
    # train split: one BraTS case (3 planes x 4 sequences x 10 slices) and tcga_lgg folds 1-2 (axial)
    counts = card["training_counts"]
    assert counts["brats/flair/coronal"] == 10 and counts["tcga_lgg/t1ce/axial"] == 4
    assert sum(counts.values()) == 120 + 12 and not any(k.startswith("fourclass") for k in counts)
    for split, n in (("val", {"brats": 120, "tcga_lgg": 9}), ("test", {"brats": 120, "tcga_lgg": 15})):
        report = card["metrics"][split]
        assert set(report) == {"brats", "tcga_lgg"}
        for source, figures in report.items():
            assert set(figures) == {"sequence", "plane", "n"} and figures["n"] == n[source]
            assert 0.0 <= figures["sequence"] <= 1.0 and 0.0 <= figures["plane"] <= 1.0
    assert card["epochs"] == 1 and card["best_epoch"] == 1
    model = keras.saving.load_model(out / card["file"], compile=False)
    probs = np.asarray(model(np.zeros((3, 32, 32, 1), np.float32), training=False))
    assert probs.shape == (3, len(SEQUENCES) + len(PLANES))
    np.testing.assert_allclose(probs[:, :4].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs[:, 4:].sum(1), 1.0, atol=1e-5)
    assert len(from_probabilities(probs)) == 3

    # the app applies the card's TTA: each crop and its mirror averaged
    from core.slices.acquisition import AcquisitionModel
    from core.slices.classify import normalise_batch

    assert card["tta"] == "hflip"
    crops = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    loaded = AcquisitionModel.load("sequence_plane", out)
    x = normalise_batch(crops, loaded.normalisation)[..., None]
    plain, mirrored = (np.asarray(loaded.runner.predict_on_batch(v)) for v in (x, x[:, :, ::-1]))
    got = loaded.recognise_crops(crops)
    want = from_probabilities((plain + mirrored) / 2.0)
    assert [a.sequence_probabilities for a in got] == [a.sequence_probabilities for a in want]
    assert [a.plane_probabilities for a in got] == [a.plane_probabilities for a in want]

    # --rescore re-measures the recorded card with another TTA and records it; the weights stay
    train_acquisition.main(["--rescore", "--tta", "none", "--out", str(out)])
    again = json.loads((out / "manifest.json").read_text())["models"]["sequence_plane"]
    assert again["tta"] == "none" and again["sha256"] == card["sha256"]
    assert again["metrics_command"] == "python -m core.train.acquisition --rescore --tta none"
    assert {s: f["n"] for s, f in again["metrics"]["test"].items()} == {"brats": 120, "tcga_lgg": 15}
    assert again["training_command"] == card["training_command"]


def test_cli_rank_normalisation_and_fit_validation_travel_to_the_card_the_app_and_the_rescore(tmp_path, monkeypatch):
    """SLOW (~15 s): ``--normalisation rank`` trains on ranked crops, the card names it, the app's
    recogniser ranks its crops alike, and ``--rescore`` with the same TTA reproduces the card's figures;
    ``--fit-validation brats`` trains on the BraTS validation case, which neither the card's validation
    figures nor the rescore count as validation."""
    pytest.importorskip("keras")
    from core.imaging.preprocess import rank_in_head
    from core.slices.acquisition import AcquisitionModel
    from core.train import acquisition as train_acquisition

    tree = syn.build_tree(tmp_path / "data")
    syn.isolate(monkeypatch, tree, tmp_path / "cache", tmp_path / "weights")
    out = tmp_path / "out"
    train_acquisition.main(["--sources", "brats", "tcga_lgg", "--size", "32", "--epochs", "1", "--normalisation",
                            "rank", "--gamma", "0.5", "2", "--samples-per-epoch", "32", "--batch", "16", "--workers",
                            "1", "--fit-validation", "brats", "--thick-slices", "0.5", "--out", str(out)])
    card = json.loads((out / "manifest.json").read_text())["models"]["sequence_plane"]
    assert card["input"]["normalisation"] == "rank" and "rank among the head's pixels" in card["input"]["preprocess"]
    assert card["config"]["normalisation"] == "rank"
    assert card["config"]["gamma"] == [0.5, 2.0] and "gamma 0.5-2," in card["augmentation"]
    assert card["config"]["thick_slices"] == 0.5 and "0.5 of the re-sliced BraTS views" in card["augmentation"]
    # one BraTS training case and the validation case (3 planes x 4 sequences x 10 slices each), tcga folds 1-2
    assert sum(card["training_counts"].values()) == 2 * 120 + 12 and card["config"]["fit_validation"] == ["brats"]
    assert set(card["metrics"]["val"]) == {"tcga_lgg"} and card["metrics"]["test"]["brats"]["n"] == 120
    assert "validation patients of brats trained on" in card["split"]

    loaded = AcquisitionModel.load("sequence_plane", out)
    assert loaded.normalisation == "rank"
    crops = np.random.default_rng(1).random((2, 32, 32)).astype(np.float32)
    ranked = np.stack([rank_in_head(c) for c in crops])[..., None]
    plain, mirrored = (np.asarray(loaded.runner.predict_on_batch(v)) for v in (ranked, ranked[:, :, ::-1]))
    got, want = loaded.recognise_crops(crops), from_probabilities((plain + mirrored) / 2.0)
    assert [a.sequence_probabilities for a in got] == [a.sequence_probabilities for a in want]
    assert [a.plane_probabilities for a in got] == [a.plane_probabilities for a in want]

    train_acquisition.main(["--rescore", "--tta", card["tta"], "--out", str(out)])
    again = json.loads((out / "manifest.json").read_text())["models"]["sequence_plane"]
    assert again["metrics"] == card["metrics"]
    # the thick-slice probe: re-sliced BraTS views only (4 sequences x 2 planes x 10 slices of the held-out case)
    probe = card["metrics"]["thick_slice_probe"]
    assert set(probe) == {"test"} and probe["test"]["n"] == 80 and 0.0 <= probe["test"]["sequence"] <= 1.0
