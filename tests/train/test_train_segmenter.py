"""The segmenter training CLI end to end on a tiny synthetic set: a fresh run, a continued run, a refused one."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from core import config
from core.slices.segment import KEEP_RULES
from core.train import segmenter
from synthetic_images import phantom, write_png


@pytest.fixture()
def tiny_figshare(tmp_path: Path, monkeypatch) -> Path:
    """30 phantom slices of 15 patients in 5 folds, in figshare's index.csv layout."""
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    root = tmp_path / "figshare"
    rows = []
    for i in range(30):
        image, lesion = phantom(i, size=64)
        write_png(root / "images" / f"{i}.png", image)
        write_png(root / "masks" / f"{i}.png", lesion.astype("uint8") * 255)
        rows.append({"image": f"images/{i}.png", "mask": f"masks/{i}.png", "label": "glioma",
                     "patient_id": f"p{i // 2}", "fold": str((i // 2) % 5)})
    with (root / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def train(root: Path, out: Path, *extra: str) -> dict:
    segmenter.main(["--data", str(root), "--out", str(out), "--size", "64", "--crop", "32", "--base", "4",
                    "--depth", "2", "--epochs", "1", "--batch", "4", "--workers", "1", *extra])
    return json.loads((out / "manifest.json").read_text())["models"]["resunet"]


@pytest.mark.slow
def test_a_continued_run_carries_the_history_and_refuses_another_split(tiny_figshare, tmp_path):
    out = tmp_path / "weights"
    first = train(tiny_figshare, out)
    assert first["epochs"] == 1 and first["postprocessing"]["keep"] in KEEP_RULES
    assert "initialised_from" not in first

    second = train(tiny_figshare, out, "--init-from", str(out / "resunet.keras"))
    assert second["epochs"] == 2 and second["epochs_this_run"] == 1
    origin = second["initialised_from"]
    assert origin["sha256"] == first["sha256"] != second["sha256"]
    assert origin["training_command"] == first["training_command"] and "config" not in origin
    with (out / "logs" / "resunet.csv").open() as fh:
        assert [row["epoch"] for row in csv.DictReader(fh)] == ["0", "1"]
    assert not list((out / "logs").glob("*.prior.csv"))

    with pytest.raises(SystemExit, match="another split"):
        train(tiny_figshare, out, "--init-from", str(out / "resunet.keras"), "--test-fold", "3")


@pytest.mark.slow
def test_extra_sources_join_training_and_selection_by_cell(tiny_figshare, tmp_path, monkeypatch):
    import synthetic_sources as syn

    tree = syn.build_tree(tmp_path / "data")
    syn.isolate(monkeypatch, tree, tmp_path / "cache", tmp_path / "empty_weights")
    out = tmp_path / "weights"
    card = train(tiny_figshare, out, "--extra-sources", "tcga_lgg", "brats", "--samples-per-epoch", "12",
                 "--freeze-batchnorm", "--figshare-floor", "0.5")
    cells = card["metrics"]["val"]["cells"]
    # validation: figshare's patients plus tcga fold 3 and the BraTS validation case, axial, every sequence
    assert set(cells) == {"figshare/t1ce", "tcga_lgg/t1", "tcga_lgg/t1ce", "tcga_lgg/flair",
                          "brats/t1", "brats/t1ce", "brats/t2", "brats/flair"}
    assert card["metrics"]["val"]["worst_cell"] == pytest.approx(min(c["score"] for c in cells.values()), abs=1e-4)
    assert cells["tcga_lgg/flair"]["n"] == 3 and all(0.0 <= c["score"] <= 1.0 for c in cells.values())
    counts = card["training_counts"]
    assert counts["tcga_lgg/flair/tumour"] == 2 and counts["tcga_lgg/flair/no tumour"] == 2
    assert counts["brats/t1ce/tumour"] > 0 and "worst validation cell" in card["selected_on"]
    assert "below 0.5 rank last" in card["selected_on"] and card["config"]["freeze_batchnorm"] is True
    assert "tcga_lgg" in card["description"] and card["data"].endswith("$BTD_DATA_DIR/tcga_lgg, $BTD_DATA_DIR/brats")
    with (out / "logs" / "resunet.csv").open() as fh:
        assert "val_worst" in next(csv.DictReader(fh))


@pytest.mark.slow
def test_full_resolution_recipe_options_train_and_leave_one_inference_output(tiny_figshare, tmp_path):
    """--deep-supervision, --optimizer sgd, --schedule poly, --augment acquisition: the training runs,
    the saved model is the plain network (one output, no auxiliary heads) and the card says what ran."""
    import keras
    import numpy as np

    from core.models.segmenters import build_segmenter

    out = tmp_path / "weights"
    card = train(tiny_figshare, out, "--deep-supervision", "1", "--optimizer", "sgd", "--lr", "1e-2",
                 "--schedule", "poly", "--augment", "acquisition")
    assert "deep supervision of 1 coarser decoder levels (output weights [0.667, 0.333])" in card["loss"]
    assert card["optimizer"] == "SGD, Nesterov momentum 0.99, weight decay 0.0001, poly decay from 0.01"
    assert card["augmentation"].startswith("rotation ±15°") and "skull stripping" in card["augmentation"]
    val = card["metrics"]["val"]
    assert card["tta"] in ("none", "hflip")
    assert val["mean_dice"] == (val["mean_dice_hflip_tta"] if card["tta"] == "hflip" else val["mean_dice_without_tta"])
    assert (card["tta"] == "hflip") == (val["mean_dice_hflip_tta"] > val["mean_dice_without_tta"] + segmenter.TTA_MARGIN)
    model = keras.saving.load_model(out / card["file"], compile=False)
    plain = build_segmenter("resunet", input_size=64, channels=1, num_classes=1, base=4, depth=2)
    assert len(model.outputs) == 1 and len(model.get_weights()) == len(plain.get_weights())
    assert not any(layer.name.startswith("aux") for layer in model.layers)
    assert np.asarray(model.predict_on_batch(np.zeros((1, 64, 64, 1), np.float32))).shape == (1, 64, 64, 1)


@pytest.mark.slow
def test_tune_segmenter_predicts_with_the_cards_tta(tiny_figshare, tmp_path):
    """python -m core.train.tune_segmenter re-searches the post-processing on the probabilities the
    app computes: with the card's tta "hflip", each slice averaged with its mirror."""
    import numpy as np

    from core.data.datasets import list_segmentation, load_segmentation
    from core.serving.registry import editing_manifest, load_keras_model
    from core.train import tune_segmenter

    out = tmp_path / "weights"
    train(tiny_figshare, out)
    with editing_manifest(out) as manifest:
        manifest["models"]["resunet"]["tta"] = "hflip"
    tune_segmenter.main(["--model", "resunet", "--data", str(tiny_figshare), "--weights", str(out)])
    card = json.loads((out / "manifest.json").read_text())["models"]["resunet"]

    listing = list_segmentation(tiny_figshare)
    images, masks = load_segmentation(listing, 64)
    _, val, _ = segmenter.split_indices(listing, 4, 0.15, 42)
    x = (images[val].astype(np.float32) / 255.0)[..., None]
    probs = segmenter.mirrored_probabilities(load_keras_model("resunet", out), x)
    rules, want = segmenter.tune_postprocessing(probs, masks[val], segmenter.FIGSHARE_SPACING_MM)
    assert card["metrics"]["val"]["mean_dice"] == round(want, 4)
    assert card["postprocessing"]["threshold"] == rules.threshold and card["postprocessing"]["keep"] == rules.keep
