"""The shipped classifier: member inference (fused into one Keras call, or each member's LiteRT
export) equals running each member on its own, mirror averaging included."""
from __future__ import annotations

import numpy as np
import pytest

from core.serving import runtime
from core.slices.classify import Classifier, member_inputs, normalise_batch, predict_batches, predict_members


@pytest.mark.parametrize("served_by", ["litert", "keras"])
def test_members_match_separate_members_with_mirror_averaging(served_by, monkeypatch):
    monkeypatch.setenv(runtime.RUNTIME_ENV, served_by)
    classifier = Classifier.load()
    assert classifier.ensemble.member_tta == "hflip"
    if served_by == "keras":
        assert classifier._fused is not None and all(m.on_keras for m in classifier.members)
    rng = np.random.default_rng(0)
    slices = [rng.random((200, 180)).astype(np.float32) for _ in range(3)]
    fused = classifier.member_probabilities(slices)
    assert list(fused) == [m.name for m in classifier.members]
    for member in classifier.members:
        x = normalise_batch(member_inputs(slices, member.input_size), member.normalisation)
        expected = (predict_batches(member.runner, x) + predict_batches(member.runner, x[:, :, ::-1].copy())) / 2
        np.testing.assert_allclose(fused[member.name], expected, atol=1e-5)
        np.testing.assert_allclose(fused[member.name].sum(axis=1), 1.0, atol=1e-5)


def test_without_test_time_augmentation_members_see_the_image_only():
    classifier = Classifier.load()
    x = member_inputs([np.random.default_rng(1).random((128, 128)).astype(np.float32)], 128)
    plain = predict_members(classifier.members, {128: x}, "none")
    for member in classifier.members:
        own = normalise_batch(x, member.normalisation)
        np.testing.assert_allclose(plain[member.name], predict_batches(member.runner, own), atol=1e-6)
