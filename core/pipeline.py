"""Slice analysis end to end: classify → (segment → measure) → one JSON-able result.

As in the original design, a "no tumour" decision stops the pipeline unless the caller asks
to segment anyway. The result carries every member's probabilities, the ensemble decision,
the mask, the measurements, the model versions (weight sha256) and plain-language warnings.
"""
from __future__ import annotations

import base64
import io as _io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.classify import Classifier
from core.io import Slice
from core.morphology import ShapeFeatures, measure_mask
from core.segment import PostProcessing, Segmenter

#: Below this ensemble probability the decision is flagged as uncertain.
LOW_CONFIDENCE = 0.6
#: A "no tumour" decision with a mask larger than this (mm², or px when spacing is unknown) is flagged.
LARGE_MASK_MM2 = 100.0
LARGE_MASK_PX = 400


@dataclass
class AnalysisOptions:
    """What the user chose: segment even without a tumour, spacing typed in, post-processing."""

    segment_anyway: bool = False
    spacing_override_mm: tuple[float, float] | None = None
    postprocessing: PostProcessing | None = None


@dataclass
class SliceResult:
    """Everything the page shows and exports about one analysed slice."""

    name: str
    shape: tuple[int, int]
    classes: list[str]
    probabilities: list[float]
    decision: str
    confidence: float
    member_probabilities: dict[str, list[float]]
    member_votes: dict[str, str]
    agreement: float
    segmented: bool
    spacing_mm: tuple[float, float] | None
    spacing_source: str
    features: ShapeFeatures | None
    warnings: list[str]
    model_versions: dict[str, str]
    timings_ms: dict[str, float]
    mask: np.ndarray | None = field(default=None, repr=False)
    probability_map: np.ndarray | None = field(default=None, repr=False)

    @property
    def decision_label(self) -> str:
        return config.CLASS_LABELS[self.decision]

    @property
    def is_tumour(self) -> bool:
        return self.decision != config.NO_TUMOUR_CLASS

    def to_dict(self, include_mask: bool = True) -> dict[str, Any]:
        """JSON-able dict; the mask travels as a base64 PNG so the JSON stays small."""
        out = {k: v for k, v in asdict(self).items() if k not in {"mask", "probability_map", "features"}}
        out["decision_label"] = self.decision_label
        out["features"] = self.features.to_dict() if self.features else None
        out["spacing_mm"] = list(self.spacing_mm) if self.spacing_mm else None
        out["shape"] = list(self.shape)
        if include_mask and self.mask is not None:
            out["mask_png_base64"] = base64.b64encode(mask_png(self.mask)).decode("ascii")
        return out


def mask_png(mask: np.ndarray) -> bytes:
    """A binary mask as an 8-bit PNG (tumour 255, background 0)."""
    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _resolve_spacing(slice_: Slice, options: AnalysisOptions) -> tuple[tuple[float, float] | None, str]:
    if options.spacing_override_mm:
        return tuple(float(v) for v in options.spacing_override_mm), "user"
    if slice_.spacing_mm:
        return slice_.spacing_mm, "file"
    return None, "unknown"


def _warnings(result: SliceResult, mask_area: float | None) -> list[str]:
    out = []
    if result.confidence < LOW_CONFIDENCE:
        out.append(f"Low confidence: the ensemble gives {result.decision_label} only "
                   f"{result.confidence:.0%}. Treat the label as uncertain.")
    if result.agreement < 1.0:
        dissent = sorted({v for v in result.member_votes.values() if v != result.decision})
        out.append("The ensemble members disagree: "
                   f"{sum(v == result.decision for v in result.member_votes.values())} of "
                   f"{len(result.member_votes)} vote {result.decision_label}; others vote "
                   + ", ".join(config.CLASS_LABELS[d] for d in dissent) + ".")
    if result.is_tumour and result.segmented and not mask_area:
        out.append(f"The classifier reports {result.decision_label}, but the segmenter found no tumour region. "
                   "Review the image; the measurements are unavailable.")
    if not result.is_tumour and result.segmented and mask_area:
        limit = LARGE_MASK_MM2 if result.spacing_mm else LARGE_MASK_PX
        if mask_area >= limit:
            unit = "mm²" if result.spacing_mm else "px"
            out.append(f"The classifier reports no tumour, yet the segmenter outlines {mask_area:.0f} {unit}. "
                       "The two models disagree; review the image.")
    if result.segmented and result.spacing_mm is None:
        out.append("Pixel spacing unknown: measurements are in pixels. Enter the spacing in the sidebar for mm.")
    return out


class Analyzer:
    """Loaded models and the slice pipeline; build once per process (the app caches it)."""

    def __init__(self, classifier: Classifier, segmenter: Segmenter):
        self.classifier = classifier
        self.segmenter = segmenter

    @classmethod
    def load(cls, weights_dir: Path | None = None, warm_up: bool = True) -> "Analyzer":
        """Load the shipped models; ``warm_up`` runs one dummy slice so the first real one is fast."""
        analyzer = cls(Classifier.load(weights_dir), Segmenter.load("resunet", weights_dir))
        if warm_up:
            dummy = np.zeros((64, 64), np.float32)
            dummy[16:48, 16:48] = 0.5
            analyzer.classifier.predict([dummy])
            analyzer.segmenter.probabilities(dummy)
        return analyzer

    def model_versions(self) -> dict[str, str]:
        return {**self.classifier.versions(), self.segmenter.name: self.segmenter.card["sha256"]}

    def analyze(self, slice_: Slice, options: AnalysisOptions | None = None) -> SliceResult:
        """Classify ``slice_``; segment and measure when a tumour is found (or when asked)."""
        options = options or AnalysisOptions()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        member_probs, ensemble = self.classifier.predict([slice_.image])
        timings["classify_ms"] = (time.perf_counter() - t0) * 1000
        classes = list(config.CLASS_NAMES)
        probs = ensemble[0]
        decision = classes[int(np.argmax(probs))]
        votes = {name: classes[int(np.argmax(p[0]))] for name, p in member_probs.items()}
        spacing, spacing_source = _resolve_spacing(slice_, options)

        result = SliceResult(
            name=slice_.name, shape=tuple(slice_.image.shape), classes=classes,
            probabilities=[round(float(p), 6) for p in probs], decision=decision,
            confidence=float(np.max(probs)),
            member_probabilities={n: [round(float(v), 6) for v in p[0]] for n, p in member_probs.items()},
            member_votes=votes, agreement=sum(v == decision for v in votes.values()) / len(votes),
            segmented=False, spacing_mm=spacing, spacing_source=spacing_source, features=None, warnings=[],
            model_versions=self.model_versions(), timings_ms=timings)

        mask_area = None
        if result.is_tumour or options.segment_anyway:
            t1 = time.perf_counter()
            mask, prob = self.segmenter.segment(slice_.image, spacing, options.postprocessing)
            timings["segment_ms"] = (time.perf_counter() - t1) * 1000
            t2 = time.perf_counter()
            result.features = measure_mask(mask, spacing)
            timings["measure_ms"] = (time.perf_counter() - t2) * 1000
            result.mask, result.probability_map, result.segmented = mask, prob, True
            if result.features:
                mask_area = result.features.area_mm2 if spacing else result.features.area_px
        result.warnings = _warnings(result, mask_area)
        timings["total_ms"] = (time.perf_counter() - t0) * 1000
        result.timings_ms = {k: round(v, 2) for k, v in timings.items()}
        return result
