"""Scoring of the shipped models on a dataset folder: classification, 2D segmentation, BraTS.

The library behind ``python -m core.evaluate`` (:mod:`core.evaluation.cli`) and the
model-comparison artifacts (:mod:`core.evaluation.artifacts`); it prints only BraTS progress.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.data.datasets import (DatasetError, SegmentationSet, list_segmentation, load_classification, read_grey,
                                read_mask)
from core.errors import InputError
from core.imaging.metrics import (bootstrap_ci, classification_report, reliability_curve, roc_curves,
                                  segmentation_summary)
from core.slices.classify import Classifier
from core.slices.segment import Segmenter
from core.volumes.brats_model import VolumeSegmenter
from core.volumes.case import read_case_folder
from core.volumes.regions import compare_to_truth


def accuracy_ci(labels: np.ndarray, probs: np.ndarray, n_boot: int = 1000) -> tuple[float, float]:
    """Bootstrap 95 % confidence interval of the accuracy."""
    correct = probs.argmax(1) == labels
    return bootstrap_ci(lambda idx: float(correct[idx].mean()), len(labels), n_boot=n_boot)


def clean_subset_mask(paths: list[Path], root: Path, clean_list: Path | None) -> np.ndarray:
    """Which of ``paths`` are in a de-duplicated split (all of them without a list)."""
    if clean_list is None:
        return np.ones(len(paths), dtype=bool)
    keep = set(json.loads(clean_list.read_text())["clean"])
    return np.array([p.relative_to(root).as_posix() in keep for p in paths])


def classification_probabilities(root: Path, weights_dir: Path | None = None):
    """Members' and ensemble probabilities for every image of a class-folder dataset."""
    classifier = Classifier.load(weights_dir)
    x_by_size: dict[int, np.ndarray] = {}
    labels = paths = None
    for size in sorted(classifier.sizes()):
        x, labels, paths = load_classification(root, size)
        x_by_size[size] = x.astype(np.float32) / 255.0
    # Same member inference as the app (fused call, the ensemble's test-time flips).
    member_probs = classifier.probabilities_from_inputs(x_by_size)
    ensemble = classifier.ensemble_probabilities(member_probs)
    return classifier, member_probs, ensemble, labels, paths


def evaluate_classification(root: Path, clean_list: Path | None = None, weights_dir: Path | None = None) -> dict:
    """Metrics of the shipped ensemble and of each member (optionally on a clean subset)."""
    classifier, member_probs, ensemble, labels, paths = classification_probabilities(root, weights_dir)
    keep = clean_subset_mask(paths, root, clean_list)
    names = list(config.CLASS_NAMES)
    y = labels[keep]

    def report(probs: np.ndarray) -> dict:
        out = classification_report(y, probs[keep], names)
        out["accuracy_ci95"] = list(accuracy_ci(y, probs[keep]))
        return out

    return {
        "task": "classification",
        "data": Path(root).name,
        "subset": "de-duplicated" if clean_list else "all",
        "n": int(keep.sum()),
        "ensemble": {**report(ensemble), "roc": roc_curves(y, ensemble[keep], names),
                     "reliability": reliability_curve(y, ensemble[keep])},
        "members": {name: report(p) for name, p in member_probs.items()},
        "model_versions": classifier.versions(),
    }


def segment_listed(segmenter: Segmenter, listing: SegmentationSet, take: list[int],
                   spacing: tuple[float, float] | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predicted and true masks of the image/mask pairs ``take`` of ``listing`` (each mask must
    have its image's shape)."""
    preds, truths = [], []
    for i in take:
        image = read_grey(listing.images[i])
        truth = read_mask(listing.masks[i])
        if truth.shape != image.shape:
            raise DatasetError(f"{listing.masks[i].name} is {truth.shape}, its image {image.shape}")
        mask, _ = segmenter.segment(image, spacing)
        preds.append(mask)
        truths.append(truth)
    return preds, truths


def evaluate_segmentation(root: Path, folds: list[int] | None = None, spacing_mm: float | None = None,
                          weights_dir: Path | None = None, name: str = "resunet") -> dict:
    """Mean per-image Dice/IoU, global Dice and HD95 of a 2D segmenter (per tumour class too)."""
    listing = list_segmentation(root)
    take = [i for i in range(len(listing)) if not folds or (listing.folds and listing.folds[i] in folds)]
    if not take:
        raise DatasetError(f"no image/mask pairs in {root} for folds {folds}")
    segmenter = Segmenter.load(name, weights_dir)
    spacing = (spacing_mm, spacing_mm) if spacing_mm else None
    preds, truths = segment_listed(segmenter, listing, take, spacing)
    classes = [listing.labels[i] if listing.labels else "" for i in take]
    result = {"task": "segmentation", "data": Path(root).name, "folds": folds,
              "hd95_unit": "mm" if spacing else "px",
              "overall": segmentation_summary(preds, truths, spacing),
              "per_class": {}, "model_versions": {segmenter.name: segmenter.card["sha256"]}}
    for cls in sorted(set(c for c in classes if c)):
        idx = [k for k, c in enumerate(classes) if c == cls]
        result["per_class"][cls] = segmentation_summary([preds[k] for k in idx], [truths[k] for k in idx], spacing)
    if spacing is None:
        px = segmentation_summary(preds, truths, None)
        result["overall"]["mean_hd95_px"] = px["mean_hd95"]
    return result


def brats_case_scores(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> dict[str, dict]:
    """Dice and HD95 (mm) per region WT/TC/ET; a region empty in both counts as Dice 1.0, HD95 0.

    Computed by :func:`core.volumes.regions.compare_to_truth` (the page's numbers), plus which side is empty.
    """
    scores = {}
    for region, s in compare_to_truth(pred, truth, tuple(spacing)).items():
        scores[region] = {"dice": s["dice"], "hd95_mm": s["hd95_mm"],
                          "empty_truth": s["volume_truth_cm3"] == 0, "empty_pred": s["volume_pred_cm3"] == 0}
    return scores


def _brats_means(cases: dict[str, dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """Mean Dice per region, and mean HD95 over the cases where it is defined (``None`` if none)."""
    mean = {}
    for region in config.BRATS_REGIONS:
        hd = [c[region]["hd95_mm"] for c in cases.values() if np.isfinite(c[region]["hd95_mm"])]
        mean[region] = {"dice": float(np.mean([c[region]["dice"] for c in cases.values()])),
                        "hd95_mm": float(np.mean(hd)) if hd else None}
    return mean


def evaluate_brats(root: Path, include_training: bool = False, weights_dir: Path | None = None,
                   name: str | None = None) -> dict:
    """Region Dice/HD95 of the BraTS model ``name`` (default: the shipped one) on every (unseen)
    case folder under ``root``; prints each case's Dice as it goes."""
    segmenter = VolumeSegmenter.load(name, weights_dir=weights_dir)
    seen = set() if include_training else {
        c for part in ("train", "val") for c in segmenter.card.get("split_cases", {}).get(part, [])}
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    cases, skipped = {}, []
    for folder in folders:
        if folder.name in seen:
            skipped.append(folder.name)
            continue
        case = read_case_folder(folder)
        if case.labels is None:
            raise InputError(f"{folder.name} has no label map to compare with")
        pred = segmenter.segment(case.images, tuple(case.spacing_mm))
        cases[case.case_id] = brats_case_scores(pred, case.labels, tuple(case.spacing_mm))
        print(f"{case.case_id:24s} " + "  ".join(f"{r} {s['dice']:.3f}" for r, s in cases[case.case_id].items()),
              flush=True)
    if not cases:
        raise InputError(f"no unseen BraTS case folders in {root}" + (f" ({len(skipped)} used in training)" if skipped else ""))
    return {"task": "brats", "data": Path(root).name, "n": len(cases), "skipped_training_cases": skipped,
            "empty_rule": "a region empty in both truth and prediction counts as Dice 1.0 and HD95 0 mm; "
                          "empty in exactly one: Dice 0 and HD95 undefined (left out of the HD95 mean)",
            "mean": _brats_means(cases), "cases": cases, "model_versions": {segmenter.name: segmenter.sha256}}
