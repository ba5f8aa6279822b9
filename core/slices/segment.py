"""2D tumour segmentation: model input geometry, probability maps and post-processing.

The segmenter sees the whole slice padded to a square and resized to its input size; the
probability map is mapped back to the upload's own pixel grid so the mask, overlay and
measurements line up with the original image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.imaging.morphology import (fill_holes, foreground_box, keep_largest_component, keep_most_confident_component,
                             remove_small_components)
from core.imaging.preprocess import segmenter_input
from core.slices.classify import with_mirrors
from core.serving.registry import LoadedModel


@dataclass(frozen=True)
class PostProcessing:
    """Threshold the probability map, fill holes, drop small components, optionally keep one.

    ``min_area_mm2`` applies when the pixel spacing is known; otherwise ``min_area_px``.
    ``keep``: which components survive: ``"all"``, the ``"largest"``, or the ``"most_confident"``
    (the one holding the highest probability).
    """

    threshold: float = 0.5
    min_area_mm2: float = 20.0
    min_area_px: int = 20
    keep: str = "largest"

    def __post_init__(self) -> None:
        if self.keep not in KEEP_RULES:
            raise ValueError(f"unknown component rule {self.keep!r}; known: {KEEP_RULES}")


#: Component rules of :class:`PostProcessing`, searched on validation data at training time.
KEEP_RULES = ("all", "largest", "most_confident")


def rules_from_card(card: dict) -> PostProcessing:
    """The post-processing a model card prescribes (defaults for fields it does not state)."""
    stored = card.get("postprocessing", {})
    return PostProcessing(**{k: stored[k] for k in PostProcessing.__dataclass_fields__ if k in stored})


def rules_for_card(rules: PostProcessing) -> dict:
    """``rules`` as a card stores them, with the order the steps run in."""
    return {**rules.__dict__, "order": f"threshold, fill holes, drop small components, keep {rules.keep}"}


@dataclass(frozen=True)
class SquareGeometry:
    """How an ``(H, W)`` slice was padded into a square of side ``side``."""

    height: int
    width: int
    side: int
    top: int
    left: int


def square_geometry(shape: tuple[int, int]) -> SquareGeometry:
    h, w = shape
    side = max(h, w)
    return SquareGeometry(h, w, side, (side - h) // 2, (side - w) // 2)


def to_model_input(image: np.ndarray, size: int) -> tuple[np.ndarray, SquareGeometry]:
    """Slice → ``(size, size)`` float32 in [0, 1] (square-padded) and the geometry to undo it."""
    return segmenter_input(image, size), square_geometry(image.shape)


def to_original_grid(prob: np.ndarray, geometry: SquareGeometry) -> np.ndarray:
    """Model-size probability map → the slice's own ``(H, W)`` grid (bilinear, then un-pad)."""
    import cv2

    square = cv2.resize(prob.astype(np.float32), (geometry.side, geometry.side), interpolation=cv2.INTER_LINEAR)
    return square[geometry.top:geometry.top + geometry.height, geometry.left:geometry.left + geometry.width]


def postprocess(prob: np.ndarray, spacing_mm: tuple[float, float] | None, rules: PostProcessing) -> np.ndarray:
    """Binary mask from a probability map following ``rules``.

    The clean-up runs on the thresholded mask's box grown by one pixel: nothing outside it is
    foreground, and the one-pixel rim keeps every hole that touches the box open to the outside.
    """
    raw = np.asarray(prob) >= rules.threshold
    out = np.zeros(raw.shape, dtype=bool)
    box = foreground_box(raw, pad=1)
    if box is None:
        return out
    mask = fill_holes(raw[box])
    mask = remove_small_components(mask, rules.min_area_mm2, spacing_mm, min_area_px_fallback=rules.min_area_px)
    if rules.keep == "largest":
        mask = keep_largest_component(mask)
    elif rules.keep == "most_confident":
        mask = keep_most_confident_component(mask, np.asarray(prob)[box])
    out[box] = mask
    return out


def mean_over_mirrored_maps(maps: np.ndarray) -> np.ndarray:
    """The mean of the two halves of the probability maps of :func:`core.slices.classify.with_mirrors`'
    inputs, the second half mirrored back first."""
    n = len(maps) // 2
    return (maps[:n] + maps[n:, :, ::-1]) / 2.0


class Segmenter(LoadedModel):
    """A loaded 2D segmenter (:class:`~core.serving.registry.LoadedModel`) with its card's input size and
    post-processing rules."""

    @classmethod
    def load(cls, name: str = "resunet", weights_dir=None) -> "Segmenter":
        return super().load(name, weights_dir)


    @property
    def rules(self) -> PostProcessing:
        return rules_from_card(self.card)

    @property
    def tta(self) -> str:
        """The card's test-time augmentation: ``"hflip"`` (the slice and its mirror averaged) or ``"none"``."""
        return str(self.card.get("tta", "none"))

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Tumour probability for every pixel of ``image`` ``(H, W)`` float32 in [0, 1] (with the card's
        test-time augmentation, :attr:`tta`)."""
        x, geometry = to_model_input(image, self.input_size)
        return to_original_grid(self.predict_inputs(x[None])[0], geometry)

    def predict_inputs(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, S, S)`` of model inputs ``(N, S, S)`` (:func:`to_model_input`), in one call
        of the runner; with ``tta="hflip"`` each input and its mirror go in the same batch and are averaged."""
        if self.tta != "hflip":
            return np.asarray(self.runner.predict_on_batch(x[..., None]))[..., 0]
        return mean_over_mirrored_maps(np.asarray(self.runner.predict_on_batch(with_mirrors(x)[..., None]))[..., 0])

    def segment(self, image: np.ndarray, spacing_mm: tuple[float, float] | None,
                rules: PostProcessing | None = None, prob: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, probabilities)`` on the slice's own grid; ``prob``: this model's probabilities of
        ``image`` when already computed (only the post-processing runs then)."""
        prob = self.probabilities(image) if prob is None else prob
        return postprocess(prob, spacing_mm, rules or self.rules), prob
