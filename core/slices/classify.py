"""Running the classifier members and the stacking ensemble on preprocessed slices."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.slices.ensemble import StackingEnsemble
from core.imaging.preprocess import classifier_crop, normalise
from core.serving.registry import LoadedModel, model_card, models_by, verified_path

ENSEMBLE_NAME = "stacking_ensemble"
#: Test-time augmentations of the members: none, or averaging with the left-right mirror.
TTA_MODES = ("none", "hflip")


class Member(LoadedModel):
    """One loaded ensemble member (:class:`~core.serving.registry.LoadedModel`): the Keras model serves
    Grad-CAM, ``runner`` the probabilities."""


def predict_batches(model: Any, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Probabilities for ``(N, S, S)`` or ``(N, S, S, C)`` inputs, in batches (compiled, warm)."""
    if x.ndim == 3:
        x = x[..., None]
    out = [np.asarray(model.predict_on_batch(x[i:i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(out, axis=0).astype(np.float64)


def with_mirrors(x: np.ndarray) -> np.ndarray:
    """Inputs ``(N, S, S[, C])`` followed by their left-right mirrors (one batch for flip TTA)."""
    return np.concatenate([x, x[:, :, ::-1]])


def mean_over_mirrors(probs: np.ndarray) -> np.ndarray:
    """The mean of the two halves of :func:`with_mirrors`' predictions."""
    n = len(probs) // 2
    return (probs[:n] + probs[n:]) / 2.0


def predict_tta(model: Any, x: np.ndarray, tta: str = "none") -> np.ndarray:
    """:func:`predict_batches`, averaged over each image and its mirror when ``tta`` is ``"hflip"``."""
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; known: {TTA_MODES}")
    return mean_over_mirrors(predict_batches(model, with_mirrors(x))) if tta == "hflip" else predict_batches(model, x)


def fuse_members(members: list[Member]) -> Any | None:
    """One Keras model running every member on a shared input, or None when input sizes differ
    or some member runs on LiteRT (whose per-call overhead is already small).

    A single graph call replaces one ``predict_on_batch`` per member, which on a CPU saves the
    per-call dispatch overhead and lets the backend schedule the members' independent branches.
    """
    sizes = {m.input_size for m in members}
    norms = {m.normalisation for m in members}
    if len(members) < 2 or len(sizes) != 1 or len(norms) != 1 or not all(m.on_keras for m in members):
        return None
    import keras

    size = sizes.pop()
    inputs = keras.Input((size, size, 1), name="image")
    return keras.Model(inputs, [m.model(inputs) for m in members], name="fused_members")


def predict_fused(fused: Any, x: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """Each member's probabilities ``(N, K)`` from one fused model, in batches."""
    if x.ndim == 3:
        x = x[..., None]
    parts = [fused.predict_on_batch(x[i:i + batch]) for i in range(0, len(x), batch)]
    return [np.concatenate([np.asarray(p[k]) for p in parts]).astype(np.float64) for k in range(len(parts[0]))]


def normalise_batch(crops: np.ndarray, how: str) -> np.ndarray:
    """A member's normalisation (:func:`core.imaging.preprocess.normalise`) of cropped inputs ``(N, S, S)``."""
    if how == "unit":
        return crops
    return np.stack([normalise(c, how) for c in crops]) if len(crops) else crops


def predict_members(members: list[Member], x_by_size: dict[int, np.ndarray], tta: str = "none",
                    fused: Any | None = None) -> dict[str, np.ndarray]:
    """Each member's probabilities ``(N, K)`` for cropped inputs ``{size: (N, S, S)}`` in [0, 1]
    (:func:`core.imaging.preprocess.classifier_crop`); each member's card normalisation is applied here.

    ``tta="hflip"`` averages each member over the image and its left-right mirror (brains are
    roughly symmetric and training used flips), in the same batch. ``fused``: a model from
    :func:`fuse_members` that runs all members in one call.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; known: {TTA_MODES}")
    flip = tta == "hflip"
    prepared: dict[tuple[int, str], np.ndarray] = {}
    for m in members:
        key = (m.input_size, m.normalisation)
        if key not in prepared:
            x = normalise_batch(np.asarray(x_by_size[m.input_size], dtype=np.float32), m.normalisation)
            prepared[key] = with_mirrors(x) if flip else x
    if fused is not None:
        (x,) = prepared.values()
        raw = dict(zip([m.name for m in members], predict_fused(fused, x)))
    else:
        raw = {m.name: predict_batches(m.runner, prepared[(m.input_size, m.normalisation)]) for m in members}
    if not flip:
        return raw
    return {name: mean_over_mirrors(p) for name, p in raw.items()}


def load_member(name: str, weights_dir: Path | None = None) -> Member:
    return Member.load(name, weights_dir)


def member_inputs(images: list[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """Brain-cropped classifier inputs ``(N, size, size)`` in [0, 1] from greyscale slices (before
    each member's normalisation, which :func:`predict_members` applies)."""
    return np.stack([classifier_crop(image, size) for image in images])


@dataclass
class Classifier:
    """The shipped ensemble: members in the meta-learner's order plus the meta-learner."""

    members: list[Member]
    ensemble: StackingEnsemble
    ensemble_card: dict

    @classmethod
    def load(cls, weights_dir: Path | None = None) -> "Classifier":
        ensemble = StackingEnsemble.load(verified_path(ENSEMBLE_NAME, weights_dir))
        return cls([load_member(n, weights_dir) for n in ensemble.members], ensemble,
                   model_card(ENSEMBLE_NAME, weights_dir))

    def __post_init__(self) -> None:
        self._fused = fuse_members(self.members)

    def sizes(self) -> set[int]:
        """Crop sizes the members need."""
        return {m.input_size for m in self.members}

    def ensemble_probabilities(self, member_probs: dict[str, np.ndarray], calibrated: bool = True) -> np.ndarray:
        """The meta-learner's probabilities ``(N, K)`` from the members' ``{name: (N, K)}``."""
        return self.ensemble.predict_proba([member_probs[m.name] for m in self.members], calibrated)

    def member_probabilities(self, images: list[np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """``{member: (N, K)}`` for raw greyscale slices (each member preprocesses at its size)."""
        return self.probabilities_from_inputs({size: member_inputs(images, size) for size in self.sizes()})

    def probabilities_from_inputs(self, x_by_size: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
        """``{member: (N, K)}`` for cropped inputs ``{size: (N, size, size)}`` in [0, 1].

        Applies the test-time augmentation the meta-learner was fitted with (``member_tta``).
        """
        return predict_members(self.members, x_by_size, self.ensemble.member_tta, self._fused)

    def predict(self, images: list[np.ndarray] | np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Members' probabilities and the calibrated ensemble probabilities ``(N, K)``."""
        probs, calibrated, _ = self.predict_detailed(images)
        return probs, calibrated

    def predict_detailed(self, images: list[np.ndarray] | np.ndarray
                         ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Members' probabilities and the ensemble's, calibrated and before temperature scaling."""
        probs = self.member_probabilities(images)
        return probs, self.ensemble_probabilities(probs), self.ensemble_probabilities(probs, calibrated=False)

    def versions(self) -> dict[str, str]:
        """``{model name: sha256}`` of everything that contributed to a decision."""
        out = {m.name: m.card["sha256"] for m in self.members}
        out[ENSEMBLE_NAME] = self.ensemble_card["sha256"]
        return out


def shipped_member_names(weights_dir: Path | None = None) -> list[str]:
    return sorted(models_by("classification", "ensemble_member", weights_dir))


def class_names() -> list[str]:
    return list(config.CLASS_NAMES)
