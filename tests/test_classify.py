"""The shipped classifier: fused member inference equals running each member on its own."""
from __future__ import annotations

import numpy as np

from core.classify import Classifier, member_inputs, predict_batches


def test_fused_members_match_separate_members():
    classifier = Classifier.load()
    rng = np.random.default_rng(0)
    slices = [rng.random((200, 180)).astype(np.float32) for _ in range(3)]
    fused = classifier.member_probabilities(slices)
    assert list(fused) == [m.name for m in classifier.members]
    for member in classifier.members:
        alone = predict_batches(member.model, member_inputs(slices, member.input_size))
        np.testing.assert_allclose(fused[member.name], alone, atol=1e-5)
        np.testing.assert_allclose(fused[member.name].sum(axis=1), 1.0, atol=1e-5)
