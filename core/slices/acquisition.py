"""Sequence and plane recognition of a slice with the shipped ``sequence_plane`` model.

The model (:mod:`core.models.acquisition`, trained by ``python -m core.train.acquisition``) sees
the classifier's crop and names the sequence (T1, T1-CE, T2, FLAIR) and plane (axial, coronal,
sagittal). It knows only these four sequences: a DWI, SWI or PD slice still gets one of
them, with a lower confidence, which is why results below :data:`CONFIDENT` are called unsure.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.slices.classify import normalise_batch, predict_tta
from core.imaging.preprocess import classifier_crop
from core.serving.registry import LoadedModel
from core.data.sources import PLANES, SEQUENCE_LABELS, SEQUENCES

MODEL_NAME = "sequence_plane"
#: Below this probability a recognised sequence or plane is reported as unsure.
CONFIDENT = 0.6


@dataclass(frozen=True)
class Acquisition:
    """What the recogniser says of one slice."""

    sequence: str
    sequence_confidence: float
    plane: str
    plane_confidence: float
    sequence_probabilities: dict[str, float]
    plane_probabilities: dict[str, float]

    @property
    def confident(self) -> bool:
        return min(self.sequence_confidence, self.plane_confidence) >= CONFIDENT

    def label(self) -> str:
        """E.g. ``"axial FLAIR"``."""
        return f"{self.plane} {SEQUENCE_LABELS[self.sequence]}"

    def text(self) -> str:
        """E.g. ``"axial FLAIR (sequence 0.97, plane 0.99)"``, with "unsure" below :data:`CONFIDENT`."""
        unsure = "" if self.confident else ", unsure"
        return f"{self.label()} (sequence {self.sequence_confidence:.2f}, plane {self.plane_confidence:.2f}{unsure})"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label(), "confident": self.confident}


def from_probabilities(probs: np.ndarray) -> list[Acquisition]:
    """:class:`Acquisition` of each row of the model's concatenated output ``(N, 7)``."""
    n = len(SEQUENCES)
    out = []
    for row in np.asarray(probs, dtype=np.float64):
        seq, plane = row[:n], row[n:]
        out.append(Acquisition(SEQUENCES[int(seq.argmax())], round(float(seq.max()), 4),
                               PLANES[int(plane.argmax())], round(float(plane.max()), 4),
                               {s: round(float(p), 4) for s, p in zip(SEQUENCES, seq)},
                               {p: round(float(v), 4) for p, v in zip(PLANES, plane)}))
    return out


class AcquisitionModel(LoadedModel):
    """The loaded recogniser (:class:`~core.serving.registry.LoadedModel`)."""

    @classmethod
    def load_shipped(cls, weights_dir: Path | None = None) -> "AcquisitionModel":
        return cls.load(MODEL_NAME, weights_dir)

    def recognise_crops(self, crops: np.ndarray) -> list[Acquisition]:
        """Recognition of classifier crops ``(N, S, S)`` in [0, 1] (:func:`core.imaging.preprocess.classifier_crop`),
        with the test-time augmentation its card names (``tta``: the crop and its mirror averaged)."""
        x = normalise_batch(np.asarray(crops, dtype=np.float32), self.normalisation)
        return from_probabilities(predict_tta(self.runner, x, self.tta))

    @property
    def tta(self) -> str:
        return str(self.card.get("tta", "none"))

    def recognise(self, image: np.ndarray) -> Acquisition:
        """Recognition of one greyscale slice of any size and dtype."""
        return self.recognise_crops(classifier_crop(image, self.input_size)[None])[0]
