"""The multi-source lesion detector: a U-Net on the classifier's crop that maps tumour probability.

Trained by ``python -m core.train.lesion`` on expert masks of every source that has them
(figshare T1-CE tumour outlines, tcga_lgg FLAIR abnormalities shown on all three sequences,
BraTS whole tumour on all four sequences and three planes) and on tumour-free slices (empty
masks, the 4-class "no tumour" images among them), so that it looks for a lesion whatever the
scanner, sequence or plane. Its strongest region is the evidence the lesion cross-check
(:mod:`core.slices.crosscheck`) weighs against a "no tumour" decision; the tumour outline that the
app measures stays the shipped ResUNet's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.slices.classify import normalise_batch
from core.slices.crosscheck import LesionEvidence, LesionRule
from core.imaging.preprocess import classifier_crop_and_box, to_image_grid
from core.serving.registry import LoadedModel

MODEL_NAME = "lesion_detector"
#: Probability above which a pixel belongs to a region.
REGION_THRESHOLD = 0.5


def strongest_region(prob: np.ndarray, threshold: float = REGION_THRESHOLD) -> np.ndarray:
    """The connected region above ``threshold`` with the highest summed probability (bool mask)."""
    from scipy import ndimage

    above = np.asarray(prob) >= threshold
    labels, count = ndimage.label(above)
    if count == 0:
        return np.zeros(above.shape, dtype=bool)
    mass = ndimage.sum(prob, labels, index=np.arange(1, count + 1))
    return labels == int(np.argmax(mass)) + 1


def evidence_of(prob: np.ndarray) -> LesionEvidence:
    """Mean probability inside the strongest region and its share of the crop."""
    region = strongest_region(prob)
    if not region.any():
        return LesionEvidence(0.0, 0.0)
    return LesionEvidence(round(float(np.asarray(prob)[region].mean()), 4), round(float(region.mean()), 6))


@dataclass
class Detection:
    """The detector's output for one slice: probability and region on the slice's own grid."""

    probability: np.ndarray
    region: np.ndarray
    evidence: LesionEvidence


class LesionDetector(LoadedModel):
    """The loaded detector (:class:`~core.serving.registry.LoadedModel`)."""

    @classmethod
    def load_shipped(cls, weights_dir=None) -> "LesionDetector":
        return cls.load(MODEL_NAME, weights_dir)

    def probabilities_of_crops(self, crops: np.ndarray, batch: int = 32) -> np.ndarray:
        """Tumour probability ``(N, S, S)`` of classifier crops ``(N, S, S)`` in [0, 1]."""
        x = normalise_batch(np.asarray(crops, dtype=np.float32), self.normalisation)[..., None]
        out = [np.asarray(self.runner.predict_on_batch(x[i:i + batch]))[..., 0] for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, *x.shape[1:3]), np.float32)

    def detect(self, image: np.ndarray) -> Detection:
        """Probability and strongest region on ``image``'s grid, with the evidence measured on the crop."""
        crop, box = classifier_crop_and_box(image, self.input_size)
        prob = self.probabilities_of_crops(crop[None])[0]
        region = strongest_region(prob)
        on_image = to_image_grid(prob, np.asarray(image).shape[:2], box)
        region_on_image = to_image_grid(region.astype(np.float32), np.asarray(image).shape[:2], box) >= 0.5
        return Detection(on_image, region_on_image, evidence_of(prob))
