"""Slice analysis end to end: classify → explain → (segment → measure) → one JSON-able result.

As in the original design, a "no tumour" decision stops the pipeline unless the caller asks
to segment anyway. The result carries every member's probabilities and vote, the calibrated
ensemble decision with its entropy and the calibration facts (temperature, validation ECE
before/after), Grad-CAM maps of each member and their average (now, or later on request with
:meth:`Analyzer.explain`), a look-up in the training-set hash index, the mask, the measurements,
the model versions (weight sha256) and plain-language warnings; ``caution`` is set when the
decision is uncertain or the members split.
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
from core.slices.acquisition import AcquisitionModel
from core.slices.classify import Classifier
from core.slices.coverage import Coverage, coverage_note
from core.slices.stated import stated_acquisition, unknown_sequence_note, with_stated
from core.slices.lesion_check import CrossCheck
from core.trust.hash_index import HashIndex, load_shipped as load_hash_index
from core.slices.gradcam import EnsembleCam
from core.readers.decoded import Slice
from core.imaging.morphology import ShapeFeatures, measure_mask
from core.slices.segment import PostProcessing, Segmenter

#: Below this ensemble probability the decision is flagged as uncertain.
LOW_CONFIDENCE = 0.6
#: At or above this normalised entropy (0 certain, 1 uniform) the decision is flagged as uncertain.
HIGH_ENTROPY = 0.5
#: A "no tumour" decision with a mask larger than this (mm², or px when spacing is unknown) is flagged.
LARGE_MASK_MM2 = 100.0
LARGE_MASK_PX = 400


@dataclass
class AnalysisOptions:
    """What the user chose: segment even without a tumour, spacing typed in, post-processing.

    ``gradcam=False`` leaves the explanation out (the app's default: :meth:`Analyzer.explain` adds it
    when someone asks for it).
    """

    segment_anyway: bool = False
    spacing_override_mm: tuple[float, float] | None = None
    postprocessing: PostProcessing | None = None
    gradcam: bool = True
    lookup_training: bool = True


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
    uncalibrated_probabilities: list[float] | None = None
    entropy: float = 0.0
    calibration: dict[str, Any] = field(default_factory=dict)
    caution: bool = False
    training_match: dict[str, Any] | None = None
    guard: dict[str, Any] | None = None
    gradcam_class: str | None = None
    gradcam_layers: dict[str, str] = field(default_factory=dict)
    model_runtimes: dict[str, str] = field(default_factory=dict)
    gradcam: dict[str, np.ndarray] | None = field(default=None, repr=False)
    acquisition: dict[str, Any] | None = None
    stated_acquisition: dict[str, Any] | None = None
    coverage_note: str | None = None
    lesion_check: dict[str, Any] | None = None

    @property
    def possible_lesion(self) -> bool:
        """The classifier said no tumour but the segmenter found a confident region (:mod:`core.slices.crosscheck`)."""
        return bool(self.lesion_check and self.lesion_check.get("flagged"))

    @property
    def decision_label(self) -> str:
        return config.CLASS_LABELS[self.decision]

    @property
    def is_tumour(self) -> bool:
        return self.decision != config.NO_TUMOUR_CLASS

    def to_dict(self, include_mask: bool = True) -> dict[str, Any]:
        """JSON-able dict; the mask travels as a base64 PNG so the JSON stays small."""
        skip = {"mask", "probability_map", "features", "gradcam"}
        out = {k: v for k, v in asdict(self).items() if k not in skip}
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


def normalised_entropy(probs: np.ndarray | list[float]) -> float:
    """Shannon entropy of a distribution divided by log K: 0 = certain, 1 = uniform."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    p = p / p.sum()
    return float(-(p * np.log(p)).sum() / np.log(len(p))) if len(p) > 1 else 0.0


def _calibration(classifier: Any) -> dict[str, Any]:
    """How the ensemble's probabilities were calibrated, from its model card (empty if unknown)."""
    card = getattr(classifier, "ensemble_card", None) or {}
    val = card.get("metrics", {}).get("val", {})
    if "temperature" not in val:
        return {}
    validation = "validation patients of every source" if card.get("sources") else "validation split"
    if card.get("combiner") == "equal":
        method, fitted_on = ("temperature scaling of the equal-weight pool of the members (mean log-probability)",
                             validation)
    else:
        method, fitted_on = ("temperature scaling of the stacking meta-learner's logits",
                             f"{validation} (out-of-fold meta-learner predictions)")
    return {"method": method, "fitted_on": fitted_on,
            "temperature": val.get("temperature"), "n_validation": val.get("n"),
            "ece_before": val.get("ece_before_calibration"), "ece_after": val.get("ece_after_calibration")}


def _training_warning(match: dict[str, Any]) -> str:
    how = "an exact copy of" if match["exact"] else "a near-identical copy of"
    mirrored = " (mirrored)" if match.get("mirrored") else ""
    return (f"This image is {how} a training image{mirrored} ({match['name']}, labelled "
            f"{config.CLASS_LABELS.get(match['label'], match['label'])}): this image was used to train the "
            "model; its result says little about accuracy.")


def _warnings(result: SliceResult, mask_area: float | None) -> list[str]:
    out = []
    if result.training_match:
        out.append(_training_warning(result.training_match))
    if result.confidence < LOW_CONFIDENCE or result.entropy >= HIGH_ENTROPY:
        out.append(f"Low confidence: the ensemble gives {result.decision_label} only "
                   f"{result.confidence:.0%} (normalised entropy {result.entropy:.2f}). "
                   "Treat the label as uncertain.")
    if result.agreement < 1.0:
        dissent = sorted({v for v in result.member_votes.values() if v != result.decision})
        out.append("The ensemble members disagree: "
                   f"{sum(v == result.decision for v in result.member_votes.values())} of "
                   f"{len(result.member_votes)} vote {result.decision_label}; others vote "
                   + ", ".join(config.CLASS_LABELS[d] for d in dissent) + ".")
    if result.is_tumour and result.segmented and not mask_area:
        out.append(f"The classifier reports {result.decision_label}, but the segmenter found no tumour region. "
                   "Review the image; the measurements are unavailable.")
    if result.coverage_note:
        out.append(result.coverage_note)
    if result.possible_lesion:
        check = result.lesion_check or {}
        who = "the segmenter" if check.get("model") == "resunet" else "the lesion detector"
        out.append(f"Possible lesion: the classifier reports no tumour, but {who} outlines a region "
                   f"with mean confidence {check.get('confidence', 0):.2f} covering "
                   f"{100 * check.get('area_fraction', 0):.1f} % of the "
                   f"{'slice' if check.get('model') == 'resunet' else 'head'}. Review the outlined region.")
    elif not result.is_tumour and result.segmented and mask_area:
        limit = LARGE_MASK_MM2 if result.spacing_mm else LARGE_MASK_PX
        if mask_area >= limit:
            unit = "mm²" if result.spacing_mm else "px"
            out.append(f"The classifier reports no tumour, yet the segmenter outlines {mask_area:.0f} {unit}. "
                       "The two models disagree; review the image.")
    if result.segmented and result.spacing_mm is None:
        out.append("Pixel spacing unknown: measurements are in pixels. Enter the spacing in the sidebar for mm.")
    return out


def _optional_acquisition(weights_dir: Path | None) -> AcquisitionModel | None:
    """The sequence/plane recogniser when one is shipped (older weight folders have none)."""
    from core.errors import ModelUnavailable
    from core.serving.registry import models_by

    if not models_by("acquisition", "shipped", weights_dir):
        return None
    try:
        return AcquisitionModel.load_shipped(weights_dir)
    except ModelUnavailable:
        return None


class Analyzer:
    """Loaded models and the slice pipeline; build once per process (the app caches it)."""

    def __init__(self, classifier: Classifier, segmenter: Segmenter, hash_index: HashIndex | None = None,
                 acquisition: AcquisitionModel | None = None, cross_check: CrossCheck | None = None):
        self.classifier = classifier
        self.segmenter = segmenter
        self.hash_index = hash_index
        self.acquisition = acquisition
        self.cross_check = cross_check
        self.coverage = Coverage.from_card(getattr(classifier, "ensemble_card", None) or {})
        members = getattr(classifier, "members", None)
        self.explainer = EnsembleCam(members) if members else None

    @classmethod
    def load(cls, weights_dir: Path | None = None, warm_up: bool = True) -> "Analyzer":
        """Load the shipped models and the checksum-verified hash index; ``warm_up`` runs one dummy slice so
        the first real one is fast."""
        index = load_hash_index(weights_dir)
        segmenter = Segmenter.load("resunet", weights_dir)
        analyzer = cls(Classifier.load(weights_dir), segmenter, index, _optional_acquisition(weights_dir),
                       CrossCheck.load(weights_dir, segmenter))
        if warm_up:
            dummy = np.zeros((64, 64), np.float32)
            dummy[16:48, 16:48] = 0.5
            analyzer.classifier.predict([dummy])
            analyzer.segmenter.probabilities(dummy)
            if analyzer.acquisition is not None:
                analyzer.acquisition.recognise(dummy)
            if analyzer.cross_check is not None:
                analyzer.cross_check.run(dummy)
            if analyzer.explainer is not None:
                analyzer.explainer.explain(dummy, 0)
        return analyzer

    def model_versions(self) -> dict[str, str]:
        out = {**self.classifier.versions(), self.segmenter.name: self.segmenter.card["sha256"]}
        if self.acquisition is not None:
            out[self.acquisition.name] = self.acquisition.sha256
        if self.cross_check is not None:
            out.update(self.cross_check.versions())
        return out

    def model_runtimes(self) -> dict[str, str]:
        """``{model: "LiteRT" | "Keras"}``: what runs each network's inference (see core.serving.runtime)."""
        from core.serving.runtime import runtime_name

        runners = {m.name: m.runner for m in getattr(self.classifier, "members", [])}
        runners[self.segmenter.name] = getattr(self.segmenter, "runner", None)
        if self.acquisition is not None:
            runners[self.acquisition.name] = self.acquisition.runner
        if self.cross_check is not None:
            runners[self.cross_check.evidence_model.name] = self.cross_check.evidence_model.runner
        return {name: runtime_name(runner) for name, runner in runners.items()}

    def explain(self, slice_: Slice, result: SliceResult) -> SliceResult:
        """Fill ``result.gradcam`` (every member's map and their average) for its decision; returns ``result``.

        Grad-CAM costs more than the rest of the analysis together, so the app asks for it only when
        someone opens the explanation; a result that already has maps for its decision is left as it is.
        """
        if self.explainer is None or (result.gradcam and result.gradcam_class == result.decision):
            return result
        t0 = time.perf_counter()
        explanation = self.explainer.explain(slice_.image, result.classes.index(result.decision))
        result.gradcam, result.gradcam_layers = explanation.maps, explanation.layers
        result.gradcam_class = result.decision
        result.timings_ms["gradcam_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return result

    def analyze(self, slice_: Slice, options: AnalysisOptions | None = None) -> SliceResult:
        """Classify ``slice_``; segment and measure when a tumour is found (or when asked)."""
        options = options or AnalysisOptions()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if hasattr(self.classifier, "predict_detailed"):
            member_probs, ensemble, raw = self.classifier.predict_detailed([slice_.image])
            uncalibrated = [round(float(p), 6) for p in raw[0]]
        else:                                       # a stand-in classifier without the uncalibrated view
            (member_probs, ensemble), uncalibrated = self.classifier.predict([slice_.image]), None
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
            model_versions=self.model_versions(), timings_ms=timings, model_runtimes=self.model_runtimes(),
            uncalibrated_probabilities=uncalibrated,
            entropy=round(normalised_entropy(probs), 6), calibration=_calibration(self.classifier))

        stated = stated_acquisition(slice_)
        result.stated_acquisition = stated.to_json() if stated is not None else None
        recognised = None
        if self.acquisition is not None:
            t1 = time.perf_counter()
            recognised = self.acquisition.recognise(slice_.image)
            result.acquisition = recognised.to_json()
            timings["acquisition_ms"] = (time.perf_counter() - t1) * 1000
        result.coverage_note = (unknown_sequence_note(stated, result.decision_label)
                                or coverage_note(self.coverage, decision, with_stated(recognised, stated)))
        if options.gradcam:
            self.explain(slice_, result)
        if options.lookup_training and self.hash_index is not None:
            t1 = time.perf_counter()
            result.training_match = self.hash_index.query(slice_.image)
            timings["lookup_ms"] = (time.perf_counter() - t1) * 1000

        mask_area = None
        mask = prob = computed = None
        if not result.is_tumour and self.cross_check is not None:
            t1 = time.perf_counter()
            result.lesion_check, region, region_prob = self.cross_check.run(slice_.image)
            timings["lesion_check_ms"] = (time.perf_counter() - t1) * 1000
            if result.possible_lesion:
                mask, prob = region, region_prob
            if self.cross_check.evidence_model is self.segmenter:
                computed = region_prob          # the same network already ran on this image
        if result.is_tumour or options.segment_anyway:
            t1 = time.perf_counter()
            reuse = {} if computed is None else {"prob": computed}
            mask, prob = self.segmenter.segment(slice_.image, spacing, options.postprocessing, **reuse)
            timings["segment_ms"] = (time.perf_counter() - t1) * 1000
        if mask is not None:
            t2 = time.perf_counter()
            result.features = measure_mask(mask, spacing)
            timings["measure_ms"] = (time.perf_counter() - t2) * 1000
            result.mask, result.probability_map, result.segmented = mask, prob, True
            if result.features:
                mask_area = result.features.area_mm2 if spacing else result.features.area_px
        result.warnings = _warnings(result, mask_area)
        result.caution = (result.confidence < LOW_CONFIDENCE or result.entropy >= HIGH_ENTROPY or result.agreement < 1.0
                          or bool(result.coverage_note) or result.possible_lesion)
        timings["total_ms"] = (time.perf_counter() - t0) * 1000
        result.timings_ms = {k: round(v, 2) for k, v in timings.items()}
        return result
