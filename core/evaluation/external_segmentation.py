"""How the tumour outlines hold up on other sequences and sources.

    python -m core.evaluate external-segmentation [--split test] [--json OUT]

On the tumour slices of the benchmark's patients (:mod:`core.evaluation.external`: tcga_lgg fold 4, the
held-out BraTS cases' axial slices, the held-out figshare fold) it scores, per source x sequence:

* the shipped ResUNet on the whole slice against the expert mask on the slice's grid: tcga_lgg's
  FLAIR abnormality (drawn on FLAIR, shown on all three co-registered sequences), BraTS whole
  tumour on FLAIR, T2 and T1 and tumour core on T1-CE (what each sequence shows), figshare's
  tumour outline;
* the multi-source lesion detector (:mod:`core.slices.lesion`) on the classifier's crop against the
  same expert mask cropped alike (BraTS: whole tumour on every sequence, as it was trained).

Mean per-slice Dice (a slice where a model finds nothing scores 0) and the share of slices
where it finds anything at all, with patient-bootstrap CIs of the mean Dice. On the same patients'
tumour-free slices it counts how often the ResUNet leaves the slice clean (no outline at all): an
outline there is what a user would take for a lesion.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from core.data.whole_slices import REGION_BY_SEQUENCE, region_of
from core.evaluation.external import benchmark_slices, cells_of, json_table
from core.imaging.metrics import bootstrap_ci, dice


def _summary(scores: list[float], found: list[bool], patients: list[str], n_boot: int) -> dict[str, Any]:
    values = np.asarray(scores)
    out: dict[str, Any] = {"n": len(values), "mean_dice": float(values.mean()) if len(values) else float("nan"),
                           "found": float(np.mean(found)) if found else float("nan")}
    if n_boot and len(values):
        out["mean_dice_ci95"] = list(bootstrap_ci(lambda b: float(values[b].mean()), len(values), n_boot=n_boot,
                                                  groups=[p or f"s{k}" for k, p in enumerate(patients)]))
    return out


def evaluate_external_segmentation(split: str = "test", weights_dir: Any = None, data_dir: Any = None,
                                   n_boot: int = 1000, sources: list[str] | None = None) -> dict[str, Any]:
    """Per source x sequence Dice of the ResUNet and of the lesion detector on tumour slices, and the
    ResUNet's clean share on tumour-free slices (``sources``: the benchmark's unless named)."""
    from core.errors import ModelUnavailable
    from core.slices.lesion import LesionDetector, strongest_region
    from core.slices.segment import Segmenter
    from core.data.sources import SliceReader

    segmenter = Segmenter.load("resunet", weights_dir)
    try:
        detector = LesionDetector.load_shipped(weights_dir)
    except ModelUnavailable:
        detector = None
    every = benchmark_slices(split, detector.input_size if detector else 128, data_dir, sources)
    slices = every.take(np.array([r.tumour and r.has_mask for r in every.refs], dtype=bool))
    reader = SliceReader(data_dir)
    clean: dict[str, list[bool]] = {}
    for ref in (r for r in every.refs if not r.tumour and r.has_mask):
        mask, _ = segmenter.segment(reader(ref), None)
        clean.setdefault(f"{ref.source}/{ref.sequence}", []).append(not mask.any())
    detector_maps = (detector.probabilities_of_crops(slices.x.astype(np.float32) / 255.0)
                     if detector is not None else None)
    crop_masks = slices.masks()
    rows: dict[str, dict[str, list]] = {}
    for k, ref in enumerate(slices.refs):
        region = region_of(ref)
        truth = reader.mask(ref, region)
        mask, _ = segmenter.segment(reader(ref), None)
        row = rows.setdefault(f"{ref.source}/{ref.sequence}", {"resunet": [], "resunet_found": [], "detector": [],
                                                               "detector_found": [], "patients": []})
        row["resunet"].append(dice(mask, truth) if truth.any() else float("nan"))
        row["resunet_found"].append(bool(mask.any()))
        row["patients"].append(ref.patient)
        if detector_maps is not None:
            region_mask = strongest_region(detector_maps[k])
            row["detector"].append(dice(region_mask, crop_masks[k]))
            row["detector_found"].append(bool(region_mask.any()))
    table = {}
    for cell in cells_of(slices.column("source"), slices.column("sequence")):
        row = rows[cell.key]
        keep = [i for i, v in enumerate(row["resunet"]) if np.isfinite(v)]
        pick = lambda values: [values[i] for i in keep]  # noqa: E731
        entry = {"source": cell.source, "sequence": cell.sequence,
                 "target": REGION_BY_SEQUENCE[cell.sequence] if cell.source == "brats" else "expert mask",
                 "resunet": _summary(pick(row["resunet"]), pick(row["resunet_found"]), pick(row["patients"]), n_boot)}
        left_clean = clean.get(cell.key, [])
        entry["resunet"].update(n_tumour_free=len(left_clean),
                                clean=float(np.mean(left_clean)) if left_clean else float("nan"))
        if detector_maps is not None:
            entry["lesion_detector"] = _summary(row["detector"], row["detector_found"], row["patients"], n_boot)
        table[cell.key] = entry
    versions = {segmenter.name: segmenter.sha256, **({detector.name: detector.sha256} if detector else {})}
    return {"task": "external_segmentation", "split": split, "protocol": __doc__.split("\n\n", 2)[2].strip(),
            "n": int(len(slices)), "cells": json_table(table), "model_versions": versions}
