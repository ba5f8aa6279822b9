"""Input guard: decide whether an image looks like a brain MRI slice before any model sees it.

Two stages, each refusal naming what was wrong:

1. **Rules** (cheap, explainable): too small, colour, blank.
2. **Out-of-distribution score**: thirteen statistics of the frame and of the brain crop
   (:func:`describe`: a dark background and dark corners around one compact head, the intensity
   spread inside it, edge density, left-right symmetry, histogram entropy...) plus how far the
   16 px head-crop thumbnail lies outside the training appearance subspace (PCA residual) are
   robust z-scored and scored by the negative log-likelihood of a Gaussian mixture fitted on
   the real training slices; the limit is the 99.9th percentile of the training scores. All of it
   is fitted by :mod:`core.train.guard_stats`,

       python -m core.guard fit

   on ``brain_mri_4class/Training`` and written to ``weights/guard_stats.json`` (numbers only:
   medians and scales, 12 principal components, mixture parameters, quantiles; no image). The
   same command measures the false-refusal rate on ``Testing`` and the refusal rate on the
   non-MRI set of :mod:`core.trust.nonmri` and stores both in the file's ``info``.

A refusal also says what the image looks like (a document, noise, an image filling the whole
frame such as a chest X-ray or a photograph...) from the feature that deviates most. The user
can override a refusal in the app (a real MRI the guard misjudges); the result records it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from core import config
from core.errors import NotAnMRISlice
from core.readers.decoded import Slice
from core.imaging.preprocess import to_unit_range
from core.serving import registry

#: Mean chroma above which an image is a colour photograph rather than an MRI rendering.
MAX_COLOURFULNESS = 0.08
#: Smallest side (pixels) at which a slice carries enough anatomy to classify.
MIN_SIDE = 32
#: Standard deviation (of [0, 1] intensities) under which an image is blank.
MIN_CONTRAST = 0.02
#: Longest side the statistics are computed at (the upload is shrunk first; keeps it fast).
WORK_SIDE = 128
#: Foreground threshold, a fraction of the 99th intensity percentile (as :func:`core.imaging.preprocess.brain_bbox`).
FG_THRESHOLD = 0.12
#: Side of the head-crop thumbnail whose residual from the training appearance subspace is scored.
THUMB = 16
#: Quantile of the training scores used as the refusal limit.
LIMIT_QUANTILE = 0.999
STATS_PATH = config.WEIGHTS_DIR / "guard_stats.json"

#: The statistics, in order, with the plain-language phrase used when one is out of range.
FEATURES: dict[str, tuple[str, str]] = {
    # name: (phrase when too low, phrase when too high)
    "border_level": ("", "the frame's edges are bright, not the dark background that surrounds a head on MRI"),
    "corner_level": ("", "a corner of the frame is bright, whereas a round head leaves the corners dark"),
    "foreground_fraction": ("almost nothing stands out from the background",
                            "bright content fills nearly the whole frame"),
    "head_fraction": ("there is no head-sized bright region", "the bright region fills nearly the whole frame"),
    "head_share": ("the bright content is scattered in many pieces instead of one head",
                   ""),
    "head_fill": ("the bright region is not a compact, rounded head", "the bright region is a full rectangle"),
    "head_solidity": ("the bright region has a ragged or concave outline, unlike a head", ""),
    "border_touch": ("", "the bright region runs off the edges of the frame"),
    "head_mean": ("the head region is unusually dark", "the head region is unusually bright and flat"),
    "head_std": ("the head region has almost no contrast", "the head region's contrast is extreme"),
    "edge_density": ("the image is unusually smooth", "the image is full of fine edges (text, noise or texture)"),
    "symmetry": ("the image is far from left-right symmetric", ""),
    "entropy": ("the intensities take only a few values (a drawing, text or a mask)", ""),
}


@dataclass(frozen=True)
class GuardVerdict:
    """Whether the image may go to the models, why not, and the numbers behind it."""

    accepted: bool
    reason: str
    kind: str = "mri"              # mri | small | colour | blank | document | noise | xray_or_photo | unusual
    score: float | None = None
    limit: float | None = None
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason, "kind": self.kind,
                "score": None if self.score is None else round(self.score, 3),
                "limit": None if self.limit is None else round(self.limit, 3)}


# --------------------------------------------------------------------------- statistics

def _shrink(unit: np.ndarray) -> np.ndarray:
    h, w = unit.shape
    scale = WORK_SIDE / max(h, w)
    if scale >= 1:
        return unit
    return cv2.resize(unit, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _ring(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    r = max(2, int(round(0.03 * min(h, w))))
    ring = np.zeros(shape, bool)
    ring[:r], ring[-r:], ring[:, :r], ring[:, -r:] = True, True, True, True
    return ring


def _corner_level(unit: np.ndarray, p99: float) -> float:
    """Median brightness (relative to the 99th percentile) of the brightest of the four corner patches."""
    if p99 <= 1e-6:
        return 0.0
    h, w = unit.shape
    ch, cw = max(2, h // 10), max(2, w // 10)
    corners = (unit[:ch, :cw], unit[:ch, -cw:], unit[-ch:, :cw], unit[-ch:, -cw:])
    return float(max(np.median(c) for c in corners) / p99)


def _solidity(region: np.ndarray) -> float:
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    hull = cv2.convexHull(np.concatenate(contours))
    area = float(cv2.contourArea(hull))
    return float(min(1.0, region.sum() / area)) if area > 0 else 0.0


def _symmetry(crop: np.ndarray) -> float:
    side = max(crop.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    t = cv2.resize(square, (32, 32), interpolation=cv2.INTER_AREA)
    a, b = t - t.mean(), t[:, ::-1] - t.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


def _normalise(unit: np.ndarray) -> np.ndarray:
    """Background level → 0 and 99th percentile → 1 (a grey background then looks like a black one)."""
    ring = _ring(unit.shape)
    bg = min(float(np.median(unit[ring])), float(np.percentile(unit, 5)))
    hi = float(np.percentile(unit, 99))
    if hi - bg < 0.05:
        return np.clip(unit / hi, 0.0, 1.0) if hi > 1e-6 else np.zeros_like(unit)
    return np.clip((unit - bg) / (hi - bg), 0.0, 1.0)


def describe(image: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """The guard's statistics of one greyscale image (see :data:`FEATURES`) and its crop thumbnail.

    The thumbnail is the head crop padded square and shrunk to ``THUMB`` px (flattened), for the
    appearance residual; it is never stored.
    """
    unit = _shrink(to_unit_range(np.asarray(image)))
    p99 = float(np.percentile(unit, 99))
    ring = _ring(unit.shape)
    norm = _normalise(unit)
    smooth = cv2.GaussianBlur(norm, (5, 5), 0)
    fg = ndimage.binary_opening(smooth > FG_THRESHOLD * max(float(np.percentile(smooth, 99)), 1e-6),
                                iterations=2)
    labels, count = ndimage.label(fg)
    if count:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        head = labels == int(np.argmax(sizes)) + 1
    else:
        head = np.zeros_like(fg)
    n_head = float(head.sum())
    if n_head:
        rows, cols = np.flatnonzero(head.any(1)), np.flatnonzero(head.any(0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        values = norm[head]
    else:
        box, values = (slice(None), slice(None)), norm.ravel()
    crop = norm[box]
    gy, gx = cv2.Sobel(norm, cv2.CV_32F, 0, 1), cv2.Sobel(norm, cv2.CV_32F, 1, 0)
    grad = np.sqrt(gx * gx + gy * gy)[box]
    hist = np.histogram(values, bins=32, range=(0, 1))[0].astype(np.float64)
    hist = hist[hist > 0] / max(hist.sum(), 1.0)
    features = {
        "border_level": float(np.median(unit[ring]) / p99) if p99 > 1e-6 else 0.0,
        "corner_level": _corner_level(unit, p99),
        "foreground_fraction": float(fg.mean()),
        "head_fraction": n_head / norm.size,
        "head_share": n_head / max(float(fg.sum()), 1.0),
        "head_fill": n_head / max(float(crop.size), 1.0),
        "head_solidity": _solidity(head) if n_head else 0.0,
        "border_touch": float(head[ring].mean()),
        "head_mean": float(values.mean()),
        "head_std": float(values.std()),
        "edge_density": float(grad.mean() / (values.std() + 0.05)),
        "symmetry": _symmetry(crop),
        "entropy": float(-(hist * np.log(hist)).sum() / np.log(32)),
    }
    return features, _thumb(crop)


def _thumb(crop: np.ndarray) -> np.ndarray:
    side = max(crop.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    return cv2.resize(square, (THUMB, THUMB), interpolation=cv2.INTER_AREA).reshape(-1).astype(np.float64)


def image_features(image: np.ndarray) -> dict[str, float]:
    """The guard's statistics of one greyscale image (see :data:`FEATURES`)."""
    return describe(image)[0]


def feature_vector(features: dict[str, float]) -> np.ndarray:
    return np.array([features[k] for k in FEATURES], np.float64)


# --------------------------------------------------------------------------- the fitted score

#: Features that are fractions in [0, 1] (scored on a logit scale) and the logit's offset.
_FRACTIONS = ("border_level", "corner_level", "foreground_fraction", "head_fraction", "head_share", "head_fill",
              "head_solidity", "border_touch")
_LOGIT_EPS = 0.02
#: Robust z-scores are clipped here, so one extreme statistic cannot dominate the score.
Z_CLIP = 8.0
#: Appearance subspace: principal components of the training head-crop thumbnails kept.
N_COMPONENTS = 12
#: Gaussian mixture components of the density model.
N_MIXTURE = 8


def _transform(x: np.ndarray) -> np.ndarray:
    """Feature vectors ``(N, F)`` (order of :data:`FEATURES`) on scales closer to Gaussian."""
    x = np.array(x, np.float64, copy=True, ndmin=2)
    for i, name in enumerate(FEATURES):
        if name in _FRACTIONS:
            c = np.clip(x[:, i], 0.0, 1.0)
            x[:, i] = np.log((c + _LOGIT_EPS) / (1.0 - c + _LOGIT_EPS))
        elif name == "edge_density":
            x[:, i] = np.log(x[:, i] + 0.05)
    return x


@dataclass
class GuardStats:
    """Training-set statistics and the score limit, stored as ``weights/guard_stats.json``.

    The score of an image is the negative log-likelihood, under a Gaussian mixture fitted on the
    training slices, of its robust z-scored statistics (:data:`FEATURES`, transformed) plus the
    log residual of its head-crop thumbnail outside the training appearance subspace (PCA).
    """

    features: list[str]
    centre: list[float]
    scale: list[float]
    pca_mean: list[float]
    pca_components: list[list[float]]
    mix_weights: list[float]
    mix_means: list[list[float]]
    mix_precision_chol: list[list[list[float]]]
    low: list[float]                 # per raw feature: 0.5th percentile of training (explanations)
    high: list[float]                # per raw feature: 99.5th percentile
    limit: float
    info: dict = field(default_factory=dict)

    def residual(self, thumbs: np.ndarray) -> np.ndarray:
        """Log RMS residual of thumbnails ``(N, THUMB²)`` outside the appearance subspace (contrast-relative)."""
        t = np.atleast_2d(thumbs)
        centred = t - np.asarray(self.pca_mean)
        basis = np.asarray(self.pca_components)
        rest = centred - (centred @ basis.T) @ basis
        return np.log(np.sqrt((rest ** 2).mean(axis=1)) / (t.std(axis=1) + 0.05))

    def z(self, raw: np.ndarray, thumbs: np.ndarray) -> np.ndarray:
        """Clipped robust z-scores ``(N, F+1)`` of raw feature vectors and thumbnails."""
        x = np.column_stack([_transform(raw), self.residual(thumbs)])
        return np.clip((x - np.asarray(self.centre)) / np.asarray(self.scale), -Z_CLIP, Z_CLIP)

    def score_z(self, z: np.ndarray) -> np.ndarray:
        """Negative log-likelihood of z-score vectors under the mixture."""
        z = np.atleast_2d(z)
        logs = []
        for w, mu, chol in zip(self.mix_weights, self.mix_means, self.mix_precision_chol):
            chol = np.asarray(chol)
            y = (z - np.asarray(mu)) @ chol
            log_det = float(np.log(np.diag(chol)).sum())
            logs.append(np.log(w) - 0.5 * (z.shape[1] * np.log(2 * np.pi) + (y ** 2).sum(axis=1)) + log_det)
        stacked = np.stack(logs, axis=1)
        top = stacked.max(axis=1, keepdims=True)
        return -(top[:, 0] + np.log(np.exp(stacked - top).sum(axis=1)))

    def score(self, raw: np.ndarray, thumbs: np.ndarray) -> np.ndarray:
        """Out-of-distribution score(s): higher is less like a training brain MRI slice."""
        return self.score_z(self.z(raw, thumbs))

    def save(self, path: Path) -> None:
        def rounded(v):
            if isinstance(v, float):
                return float(f"{v:.6g}")
            if isinstance(v, list):
                return [rounded(i) for i in v]
            return v

        payload = {k: (rounded(v) if k != "info" else v) for k, v in asdict(self).items()}
        Path(path).write_text(json.dumps(payload, separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path) -> "GuardStats":
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def fit(cls, raw: np.ndarray, thumbs: np.ndarray, quantile: float = LIMIT_QUANTILE, seed: int = 0) -> "GuardStats":
        """Fit on training feature vectors ``(N, F)`` and head-crop thumbnails ``(N, THUMB²)``."""
        from sklearn.mixture import GaussianMixture

        mean = thumbs.mean(axis=0)
        components = np.linalg.svd(thumbs - mean, full_matrices=False)[2][:N_COMPONENTS]
        stats = cls(features=list(FEATURES) + ["appearance_residual"], centre=[], scale=[],
                    pca_mean=mean.tolist(), pca_components=components.tolist(), mix_weights=[], mix_means=[],
                    mix_precision_chol=[], low=np.percentile(raw, 0.5, axis=0).tolist(),
                    high=np.percentile(raw, 99.5, axis=0).tolist(), limit=0.0)
        x = np.column_stack([_transform(raw), stats.residual(thumbs)])
        centre = np.median(x, axis=0)
        iqr_sd = np.subtract(*np.percentile(x, [75, 25], axis=0)) / 1.349
        stats.centre, stats.scale = centre.tolist(), np.maximum(iqr_sd, 0.5 * x.std(axis=0) + 1e-6).tolist()
        z = np.clip((x - centre) / np.asarray(stats.scale), -Z_CLIP, Z_CLIP)
        mixture = GaussianMixture(N_MIXTURE, covariance_type="full", reg_covar=1e-2, random_state=seed).fit(z)
        stats.mix_weights = mixture.weights_.tolist()
        stats.mix_means = mixture.means_.tolist()
        stats.mix_precision_chol = mixture.precisions_cholesky_.tolist()
        stats.limit = float(np.quantile(stats.score_z(z), quantile))
        return stats


#: The statistics' entry in the manifest's ``files`` (checked like every shipped file).
STATS_NAME = "guard_stats"
STATS_COMMAND = "python -m core.guard fit"


@lru_cache(maxsize=4)
def _cached_stats(path: str, mtime: float, verify_in: str | None) -> GuardStats | None:
    if verify_in is not None:
        registry.verified_file(STATS_NAME, Path(verify_in))
    return GuardStats.load(Path(path))


def load_stats(path: Path | None = None) -> GuardStats | None:
    """The fitted statistics, or ``None`` when the file is missing (the guard then uses its rules only).

    The shipped file (no ``path``) is read after the registry's sha256 check: an altered or unlisted
    ``weights/guard_stats.json`` raises :class:`core.errors.ModelUnavailable`, as an altered model does.
    """
    shipped = path is None
    path = Path(path or config.WEIGHTS_DIR / STATS_PATH.name)
    if not path.is_file():
        return None
    verify_in = str(path.parent) if shipped else None
    return _cached_stats(str(path), path.stat().st_mtime, verify_in)


# --------------------------------------------------------------------------- the verdict

def _deviation(stats: GuardStats, f: dict[str, float]) -> tuple[str, str] | None:
    """The feature furthest outside its training range, and the phrase for it."""
    worst, worst_excess = None, 0.0
    for name, lo, hi in zip(stats.features, stats.low, stats.high):
        span = max(hi - lo, 1e-6)
        value = f[name]
        excess = (lo - value) / span if value < lo else (value - hi) / span if value > hi else 0.0
        side = 0 if value < lo else 1
        if excess > worst_excess and FEATURES[name][side]:
            worst, worst_excess = (name, FEATURES[name][side]), excess
    return worst


def _kind(f: dict[str, float]) -> tuple[str, str]:
    """A guess of what the image is, from the raw statistics."""
    light = f["border_level"] > 0.6 or f["corner_level"] > 0.9
    if (light and f["entropy"] < 0.6) or (f["border_level"] > 0.8 and f["edge_density"] > 2.5):
        return "document", "It looks like a document, a page or a screenshot"
    if (f["edge_density"] > 3.3 and f["symmetry"] < 0.2) or (f["symmetry"] < 0.15 and f["border_touch"] > 0.5):
        return "noise", "It looks like noise, a texture or a pattern rather than anatomy"
    if f["edge_density"] > 3.3 and f["border_touch"] < 0.2 and f["symmetry"] < 0.8:
        return "document", "It looks like text or line art on a plain background (a dark-mode page, say)"
    if f["border_touch"] > 0.3 or f["corner_level"] > 0.5:
        return "xray_or_photo", ("It fills the whole frame with no dark background around a head, "
                                 "as a chest X-ray or a photograph does")
    return "unusual", "Its statistics are unlike the brain MRI slices the models were trained on"


def check_slice(slice_: Slice, stats: GuardStats | None = None) -> GuardVerdict:
    """Whether ``slice_`` can be a brain MRI slice, with the reason when it cannot.

    ``stats`` defaults to the shipped ``weights/guard_stats.json``; without it only the rules apply.
    """
    h, w = slice_.image.shape
    if min(h, w) < MIN_SIDE:
        return GuardVerdict(False, f"The image is only {w}×{h} pixels; an MRI slice needs at least {MIN_SIDE} px a side.",
                            "small")
    if slice_.colourfulness > MAX_COLOURFULNESS:
        return GuardVerdict(False, "This is a colour image (mean colourfulness "
                            f"{slice_.colourfulness:.2f}); MRI slices are greyscale. It looks like a photograph "
                            "or a screenshot, not a scan.", "colour")
    if float(np.std(slice_.image)) < MIN_CONTRAST:
        return GuardVerdict(False, "The image is blank or nearly uniform; there is no anatomy to analyse.", "blank")
    stats = stats if stats is not None else load_stats()
    if stats is None:
        return GuardVerdict(True, "")
    f, thumb = describe(slice_.image)
    score = float(stats.score(feature_vector(f), thumb)[0])
    if score <= stats.limit:
        return GuardVerdict(True, "", "mri", score, stats.limit, f)
    kind, what = _kind(f)
    detail = _deviation(stats, f)
    because = f": {detail[1]}" if detail else ""
    reason = (f"{what}{because}. Out-of-distribution score {score:.1f}; brain MRI training slices score "
              f"below {stats.limit:.1f}.")
    return GuardVerdict(False, reason, kind, score, stats.limit, f)


def require_mri_slice(slice_: Slice) -> None:
    """Raise :class:`NotAnMRISlice` when :func:`check_slice` refuses the slice."""
    verdict = check_slice(slice_)
    if not verdict.accepted:
        raise NotAnMRISlice(verdict.reason)
