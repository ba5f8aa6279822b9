"""The lesion cross-check as the app runs it: the shipped rule and the model whose evidence it weighs.

The rule (:mod:`core.slices.crosscheck`) was chosen on validation patients together with its evidence
model: the multi-source lesion detector on the classifier's crop (:mod:`core.slices.lesion`), or the
shipped ResUNet on the whole slice, whichever rescued more missed tumours within the
false-alarm budget (``python -m core.train.tune_crosscheck``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.slices.crosscheck import RULE_NAME, LesionEvidence, LesionRule, lesion_evidence, load_rule, rule_card

#: Models whose output the cross-check can weigh.
EVIDENCE_MODELS: tuple[str, ...] = ("lesion_detector", "resunet")


@dataclass
class CrossCheck:
    """Rule + evidence model; :meth:`run` gives the check, the region and the probability map."""

    rule: LesionRule
    model: str
    detector: Any = None       # a core.slices.lesion.LesionDetector when model == "lesion_detector"
    segmenter: Any = None      # a core.slices.segment.Segmenter when model == "resunet"

    @classmethod
    def load(cls, weights_dir: Path | None = None, segmenter: Any = None) -> "CrossCheck | None":
        """The shipped check, or ``None`` when no rule (or its evidence model) is shipped."""
        from core.errors import ModelUnavailable
        from core.slices.lesion import LesionDetector

        shipped = load_rule(weights_dir)
        if shipped is None:
            return None
        rule, model = shipped
        if model == "resunet":
            return cls(rule, model, segmenter=segmenter) if segmenter is not None else None
        try:
            return cls(rule, model, detector=LesionDetector.load_shipped(weights_dir))
        except ModelUnavailable:
            return None

    @property
    def evidence_model(self) -> Any:
        return self.detector if self.detector is not None else self.segmenter

    def evidence(self, image: np.ndarray) -> tuple[LesionEvidence, np.ndarray, np.ndarray]:
        """Evidence, region (bool) and probability map on the image's grid."""
        if self.detector is not None:
            found = self.detector.detect(image)
            return found.evidence, found.region, found.probability
        mask, prob = self.segmenter.segment(image, None)
        return lesion_evidence(mask, prob), mask, prob

    def run(self, image: np.ndarray) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """The JSON-able check (``flagged``, ``confidence``, ``area_fraction``, ``rule``, ``model``),
        and the region and probability map on the image's grid."""
        e, region, prob = self.evidence(image)
        return ({"flagged": e.flagged(self.rule), "confidence": e.confidence, "area_fraction": e.area_fraction,
                 "rule": self.rule.to_json(), "model": self.model}, region, prob)

    def versions(self, weights_dir: Path | None = None) -> dict[str, str]:
        model = self.evidence_model
        return {model.name: model.sha256, RULE_NAME: str(rule_card(weights_dir).get("sha256", ""))}
