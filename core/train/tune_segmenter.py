"""Re-tune a trained 2D segmenter's post-processing on its own validation patients.

    python -m core.train.tune_segmenter --model unet

For a model trained before the component rule was part of the search: rebuilds the card's
patient-wise split (``test_fold``, ``val_patients``, ``seed`` and ``size`` of its config),
predicts the validation slices (with the card's test-time augmentation, ``tta``), searches threshold x component rule exactly as
``core.train.segmenter`` does at the end of training, and rewrites the card's
``postprocessing`` and ``metrics.val``. The weights are not changed; the held-out test fold is
never read.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from core import config
from core.data.datasets import list_segmentation, load_segmentation
from core.serving.registry import editing_manifest, load_keras_model, model_card
from core.slices.segment import rules_for_card
from core.train.segmenter import FIGSHARE_SPACING_MM, mirrored_probabilities, split_indices, tune_postprocessing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="segmenter name in the manifest")
    p.add_argument("--data", type=Path, default=None, help="figshare folder (default: $BTD_DATA_DIR/figshare_3064)")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: weights/)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    card = model_card(args.model, args.weights)
    if card.get("task") != "segmentation":
        raise SystemExit(f"{args.model} is not a 2D segmenter (task {card.get('task')!r})")
    cfg = card["config"]
    base = config.data_dir()
    root = args.data or (base / "figshare_3064" if base else None)
    if root is None:
        raise SystemExit("no data: set BTD_DATA_DIR or pass --data")
    listing = list_segmentation(root)
    images, masks = load_segmentation(listing, int(cfg["size"]))
    _, val, _ = split_indices(listing, int(cfg["test_fold"]), float(cfg["val_patients"]), int(cfg["seed"]))
    model = load_keras_model(args.model, args.weights)
    x = (images[val].astype(np.float32) / 255.0)[..., None]
    probs = (mirrored_probabilities(model, x) if card.get("tta") == "hflip"
             else model.predict(x, batch_size=16, verbose=0)[..., 0])
    rules, val_dice = tune_postprocessing(probs, masks[val], FIGSHARE_SPACING_MM)
    with editing_manifest(args.weights) as manifest:
        stored = manifest["models"][args.model]
        before = stored.get("metrics", {}).get("val", {}).get("mean_dice")
        stored["postprocessing"] = {**rules_for_card(rules),
                                    "tuned_by": f"python -m core.train.tune_segmenter --model {args.model}"}
        stored.setdefault("metrics", {})["val"] = {"mean_dice": round(val_dice, 4), "threshold": rules.threshold,
                                                   "n": int(len(val))}
    print(f"RESULT model={args.model} val_dice={val_dice:.4f} (was {before}) threshold={rules.threshold} "
          f"keep={rules.keep}")


if __name__ == "__main__":
    main()
