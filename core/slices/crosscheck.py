"""Lesion cross-check: a "no tumour" decision set against what the segmenter finds.

The classifier decides from the whole slice; the multi-source lesion detector (:mod:`core.slices.lesion`)
looks for tumour pixel by pixel. When the classifier says "no tumour" but the detector outlines a
region that is both large enough and confident enough, the slice is flagged as a *possible lesion*
and the region is shown, so
that a tumour the classifier missed (an unfamiliar sequence, scanner or plane) is not silently
dismissed. The rule's two thresholds are chosen on validation patients
(``python -m core.train.tune_crosscheck``) to rescue as many missed tumour slices as possible
while raising at most a stated share of false alarms on tumour-free slices.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.serving.registry import model_card, verified_path

RULE_NAME = "lesion_crosscheck"


@dataclass(frozen=True)
class LesionRule:
    """Flag a region whose mean tumour probability is at least ``min_confidence`` and whose area
    is at least ``min_area_fraction`` of the brain crop (spacing is often unknown, so area is relative)."""

    min_confidence: float = 0.8
    min_area_fraction: float = 0.005

    def to_json(self) -> dict[str, float]:
        return asdict(self)


#: A rule that never flags (chosen when every candidate raises too many false alarms).
NEVER = LesionRule(1.01, 1.0)


@dataclass(frozen=True)
class LesionEvidence:
    """The detector's strongest region on a slice."""

    confidence: float       # mean probability inside the region (0 when there is none)
    area_fraction: float    # region area / area of the brain crop it was found in

    def flagged(self, rule: LesionRule) -> bool:
        return self.confidence >= rule.min_confidence and self.area_fraction >= rule.min_area_fraction


def lesion_evidence(mask: np.ndarray, prob: np.ndarray) -> LesionEvidence:
    """Evidence from the segmenter's post-processed ``mask`` and probability map (same grid)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return LesionEvidence(0.0, 0.0)
    return LesionEvidence(round(float(np.asarray(prob)[mask].mean()), 4), round(float(mask.mean()), 6))


def load_rule(weights_dir: Path | None = None) -> tuple[LesionRule, str] | None:
    """The shipped rule (checksum-verified) and the model whose evidence it weighs
    (``lesion_detector`` or ``resunet``), or ``None`` when none is shipped."""
    import json

    from core.errors import ModelUnavailable

    try:
        path = verified_path(RULE_NAME, weights_dir)
    except ModelUnavailable:       # no rule shipped: the cross-check is simply off
        return None
    data = json.loads(path.read_text())
    return LesionRule(**data["rule"]), str(data.get("model", "lesion_detector"))


def rule_card(weights_dir: Path | None = None) -> dict[str, Any]:
    return model_card(RULE_NAME, weights_dir)


def choose_rule(evidence: list[LesionEvidence], tumour: np.ndarray, said_no_tumour: np.ndarray,
                max_false_alarm: float = 0.05) -> tuple[LesionRule, dict[str, Any]]:
    """The rule that rescues the most tumour slices the classifier called "no tumour" while
    flagging at most ``max_false_alarm`` of the tumour-free slices (a flag can only fall on a
    slice called "no tumour").

    Ties go to the stricter rule. Returns the rule and :func:`rule_figures` on these slices.
    """
    tumour, said = np.asarray(tumour, bool), np.asarray(said_no_tumour, bool)
    conf = np.array([e.confidence for e in evidence])
    area = np.array([e.area_fraction for e in evidence])
    missed, clean = said & tumour, said & ~tumour
    n_free = max(1, int((~tumour).sum()))
    best: tuple | None = None
    for c in np.round(np.arange(0.5, 0.96, 0.05), 2):
        for a in (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03):
            flag = (conf >= c) & (area >= a)
            false_alarm = float((flag & clean).sum()) / n_free
            if false_alarm > max_false_alarm:
                continue
            key = (int((flag & missed).sum()), -false_alarm, c, a)
            if best is None or key > best[0]:
                best = (key, LesionRule(float(c), float(a)))
    rule = best[1] if best is not None else NEVER
    return rule, rule_figures(rule, evidence, tumour, said)


def rule_figures(rule: LesionRule, evidence: list[LesionEvidence], tumour: np.ndarray,
                 said_no_tumour: np.ndarray) -> dict[str, Any]:
    """What ``rule`` does on a set of slices: rescued misses, false alarms (and their rate over all
    tumour-free slices), and the tumour sensitivity before and after the rescue."""
    tumour, said = np.asarray(tumour, bool), np.asarray(said_no_tumour, bool)
    flag = np.array([e.flagged(rule) for e in evidence], dtype=bool)
    missed, clean = said & tumour, said & ~tumour
    n_tumour, n_free = int(tumour.sum()), int((~tumour).sum())
    return {
        "missed": int(missed.sum()), "rescued": int((flag & missed).sum()),
        "false_alarms": int((flag & clean).sum()), "tumour_free": n_free,
        "false_alarm_rate": round(float((flag & clean).sum()) / n_free, 4) if n_free else None,
        "sensitivity_before": round(float((tumour & ~said).sum()) / n_tumour, 4) if n_tumour else None,
        "sensitivity_after": round(float((tumour & (~said | flag)).sum()) / n_tumour, 4) if n_tumour else None,
    }
