"""core.slices.segment.Segmenter test-time augmentation: the card's ``tta`` decides, one runner call."""
from __future__ import annotations

import numpy as np

from core.slices.inference_queue import segment_probabilities
from core.slices.segment import Segmenter


class RampRunner:
    """A stand-in network whose output ramps left to right whatever the input; counts its calls."""

    def __init__(self):
        self.calls: list[tuple[int, ...]] = []

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(x.shape)
        ramp = np.linspace(0.0, 1.0, x.shape[2], dtype=np.float32)
        return np.broadcast_to(ramp[None, None, :, None], x.shape).copy()


def segmenter(tta: str | None) -> Segmenter:
    card = {"input": {"size": 32}, **({"tta": tta} if tta else {})}
    return Segmenter("stand-in", None, card, RampRunner())


def test_without_tta_the_output_is_the_networks():
    seg = segmenter(None)
    assert seg.tta == "none"
    prob = seg.predict_inputs(np.zeros((3, 32, 32), np.float32))
    np.testing.assert_allclose(prob[0, 0], np.linspace(0, 1, 32), atol=1e-6)
    assert seg.runner.calls == [(3, 32, 32, 1)]


def test_hflip_averages_each_input_with_its_mirror_in_one_call():
    seg = segmenter("hflip")
    prob = seg.predict_inputs(np.zeros((3, 32, 32), np.float32))
    np.testing.assert_allclose(prob, 0.5, atol=1e-6)                 # a ramp and its mirror average to 0.5
    assert seg.runner.calls == [(6, 32, 32, 1)]
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    assert seg.probabilities(image).shape == (40, 50)
    # the batched path of the app's inference queue applies the same TTA
    batched = segment_probabilities(seg, [image, image[:30]])
    assert [p.shape for p in batched] == [(40, 50), (30, 50)]
    np.testing.assert_allclose(batched[0], seg.probabilities(image), atol=1e-6)
