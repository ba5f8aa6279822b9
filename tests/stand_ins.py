"""Fast stand-ins for the sequence/plane model, the training coverage and the lesion cross-check.

They let the batch, report and page tests drive :class:`core.slices.pipeline.Analyzer` to a recognised
acquisition, a coverage note and a possible lesion without loading any network.
"""
from __future__ import annotations

import numpy as np

from core.slices.acquisition import MODEL_NAME, Acquisition
from core.slices.crosscheck import LesionRule
from core.slices.pipeline import Analyzer

#: Flags any region of mean confidence >= 0.5 covering >= 0.1 % of the head.
LENIENT = LesionRule(0.5, 0.001)
#: Flags nothing (no mean probability reaches 1.01).
STRICT = LesionRule(1.01, 1.0)


def acquisition(sequence_confidence: float = 0.97, plane_confidence: float = 0.99) -> Acquisition:
    """An axial FLAIR recognition with the given confidences."""
    return Acquisition("flair", sequence_confidence, "axial", plane_confidence,
                       {"t1": 0.01, "t1ce": 0.01, "t2": 0.01, "flair": sequence_confidence},
                       {"axial": plane_confidence, "coronal": 0.005, "sagittal": 0.005})


class StandInAcquisition:
    """Recognises every slice as the same :class:`Acquisition`."""

    name, sha256, runner = MODEL_NAME, "a" * 64, None

    def __init__(self, result: Acquisition | None = None):
        self.result = result or acquisition()

    def recognise(self, image: np.ndarray) -> Acquisition:
        return self.result


class NoTumour:
    """A classifier that always says "no tumour", with a card whose coverage of that class in axial
    FLAIR is rare (3 slices), so a coverage note is raised."""

    ensemble_card = {"coverage": {"known": [{"class": "notumor", "sequence": "flair", "plane": "axial", "n": 3},
                                            {"class": "notumor", "sequence": "t1", "plane": "axial", "n": 997}],
                                  "estimated": []}}

    def predict(self, images):
        p = np.array([[0.02, 0.03, 0.9, 0.05]])
        return {"m1": p, "m2": p}, p

    def versions(self):
        return {"stand_in": "0" * 64}


class SquareSegmenter:
    """'Segments' a fixed confident 40x40 square (also usable as the cross-check's evidence model)."""

    name, card, sha256, runner = "resunet", {"sha256": "1" * 64}, "1" * 64, None

    def __init__(self):
        self.network_calls = 0      # how often the "network" ran (not when given its probabilities)

    def segment(self, image, spacing_mm, rules=None, prob=None):
        self.network_calls += prob is None
        mask = np.zeros(image.shape, bool)
        mask[10:50, 10:50] = True
        return mask, mask.astype(np.float32)


class StandInDetector:
    """Finds a confident 40x40 square (probability 0.95) covering 3.9 % of the head."""

    name, sha256, runner = "lesion_detector", "c" * 64, None

    def detect(self, image: np.ndarray):
        from core.slices.crosscheck import LesionEvidence
        from core.slices.lesion import Detection

        region = np.zeros(np.asarray(image).shape[:2], bool)
        region[10:50, 10:50] = True
        return Detection(np.where(region, 0.95, 0.0).astype(np.float32), region, LesionEvidence(0.95, 0.039))


def cross_check(rule: LesionRule = LENIENT, model: str = "lesion_detector", segmenter: SquareSegmenter | None = None):
    """The app's cross-check (:mod:`core.slices.lesion_check`) weighing the stand-in detector's region, or the
    stand-in segmenter's (``model="resunet"``; ``segmenter``, else a new one); its rule card is faked
    (no weights are read)."""
    from core.slices.lesion_check import CrossCheck

    class StandInCrossCheck(CrossCheck):
        def versions(self, weights_dir=None) -> dict[str, str]:
            return {self.evidence_model.name: self.evidence_model.sha256, "lesion_crosscheck": "b" * 64}

    if model == "resunet":
        return StandInCrossCheck(rule, model, segmenter=segmenter or SquareSegmenter())
    return StandInCrossCheck(rule, model, detector=StandInDetector())


def flagging_analyzer(rule: LesionRule = LENIENT, classifier=None, recognised: Acquisition | None = None,
                      model: str = "lesion_detector") -> Analyzer:
    """An analyzer with every new stand-in (no network loaded)."""
    return Analyzer(classifier or NoTumour(), SquareSegmenter(), acquisition=StandInAcquisition(recognised),
                    cross_check=cross_check(rule, model))


def external_report(split: str = "test") -> dict:
    """A small external-benchmark artifact (the schema of ``core.evaluation.external.evaluate_external``): TCGA-LGG FLAIR is
    the weakest cell (sensitivity 0.712), BraTS T2 has no tumour-free slices (specificity and AUC null)."""
    def cell(source, sequence, sens, spec, sens_ci, spec_ci, crosscheck=None, **extra):
        return {"source": source, "sequence": sequence, "n": 400, "n_tumour": 150, "n_no_tumour": 250,
                "accuracy": 0.861, "sensitivity": sens, "specificity": spec, "glioma_accuracy": 0.802,
                "auc": 0.9312 if spec is not None else None, "ece": 0.0417, "patients": 12,
                "worst": min(v for v in (sens, spec) if v is not None),
                "accuracy_ci95": [0.81, 0.9], "sensitivity_ci95": sens_ci, "specificity_ci95": spec_ci,
                "auc_ci95": [0.9, 0.96] if spec is not None else None, "ece_ci95": [0.03, 0.06],
                **({"crosscheck": crosscheck} if crosscheck else {}), **extra}

    flair_check = {"missed": 43, "rescued": 17, "false_alarms": 6, "tumour_free": 250, "false_alarm_rate": 0.024,
                   "sensitivity_before": 0.712, "sensitivity_after": 0.825}
    t1_check = {"missed": 5, "rescued": 2, "false_alarms": 1, "tumour_free": 250, "false_alarm_rate": 0.004,
                "sensitivity_before": 0.967, "sensitivity_after": 0.98}
    cells = {"tcga_lgg/t1": cell("tcga_lgg", "t1", 0.967, 0.904, [0.93, 0.99], [0.87, 0.94], t1_check),
             "tcga_lgg/flair": cell("tcga_lgg", "flair", 0.712, 0.958, [0.634, 0.781], [0.93, 0.98], flair_check),
             "brats/t2": cell("brats", "t2", 0.931, None, [0.9, 0.96], None, n_no_tumour=0)}
    if split == "val":                          # FLAIR does well here: T1's specificity is the weakest
        cells["tcga_lgg/flair"].update(sensitivity=0.95, sensitivity_ci95=[0.92, 0.97], worst=0.95)
    worst = min(cells, key=lambda k: cells[k]["worst"])
    return {"task": "external", "split": split,
            "split_description": "held-out patients" if split == "test" else "validation patients",
            "protocol": "…", "n": 1200, "patients": 36, "worst_cell": worst, "worst": cells[worst]["worst"],
            "crosscheck_rule": {"min_confidence": 0.8, "min_area_fraction": 0.005}, "cells": cells,
            "members": {"resnet_compact": {"worst_cell": "tcga_lgg/flair", "worst": 0.654,
                                           "cells": {"tcga_lgg/flair": {"sensitivity": 0.654, "specificity": 0.97,
                                                                        "accuracy": 0.85, "auc": 0.91}}},
                        "mobilenet_compact": {"worst_cell": "brats/t2", "worst": 0.701,
                                              "cells": {"brats/t2": {"sensitivity": 0.701, "specificity": None,
                                                                     "accuracy": 0.7, "auc": None}}}},
            "by_source": {"tcga_lgg/all": cell("tcga_lgg", "all", 0.84, 0.931, [0.8, 0.88], [0.91, 0.95], n=800,
                                               n_tumour=300, n_no_tumour=500, ece=0.0612, patients=12),
                          "brats/all": cell("brats", "all", 0.931, None, [0.9, 0.96], None, n_no_tumour=0)},
            "by_patient": {"tcga_lgg/flair": [
                {"patient": "TCGA_A", "n_tumour": 30, "found": 9, "n_no_tumour": 20, "false_alarms": 1,
                 "sensitivity": 0.3, "specificity": 0.95, "worst": 0.3},
                {"patient": "TCGA_B", "n_tumour": 120, "found": 99, "n_no_tumour": 230, "false_alarms": 9,
                 "sensitivity": 0.825, "specificity": 0.961, "worst": 0.825}]},
            "model_versions": {"stacking_ensemble": "0" * 64},
            "false_alarms_by_distance": [
                {"source": "tcga_lgg", "sequence": "t1ce", "distance": "1-2", "n": 40, "false_alarms": 22, "rate": 0.55},
                {"source": "tcga_lgg", "sequence": "t1ce", "distance": "11+", "n": 60, "false_alarms": 6, "rate": 0.1},
                {"source": "brats", "sequence": "flair", "distance": "1-2", "n": 0, "false_alarms": 0, "rate": None}]}
