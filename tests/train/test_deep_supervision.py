"""core.models.deep_supervision: auxiliary outputs that share the network's layers, and their loss weights."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core.models.deep_supervision import decoder_output, output_weights, with_deep_supervision  # noqa: E402
from core.models.segmenters import build_segmenter  # noqa: E402


@pytest.mark.parametrize("kind", ["resunet", "unet", "attention_unet"])
def test_auxiliary_outputs_share_the_network_and_come_at_full_size(kind):
    net = build_segmenter(kind, input_size=32, channels=1, num_classes=1, base=4, depth=3)
    before = [w.copy() for w in net.get_weights()]
    trainer = with_deep_supervision(net, 2)
    outs = trainer.predict_on_batch(np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 32, 1)] * 3
    assert all(0.0 <= float(np.min(o)) and float(np.max(o)) <= 1.0 for o in outs)
    # the network keeps its own weights list; the trainer adds one 1x1 convolution (kernel, bias) per level
    assert len(net.get_weights()) == len(before) and len(trainer.get_weights()) == len(before) + 4
    # training the wrapper trains the network itself (shared layers, not copies)
    y = np.ones((2, 32, 32, 1), np.float32)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=["binary_crossentropy"] * 3,
                    loss_weights=output_weights(2))
    trainer.fit(np.ones((2, 32, 32, 1), np.float32), (y, y, y), epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, net.get_weights()))


def test_no_levels_is_the_network_itself_and_a_missing_level_is_refused():
    net = build_segmenter("unet", input_size=32, channels=1, num_classes=1, base=4, depth=2)
    assert with_deep_supervision(net, 0) is net
    assert tuple(decoder_output(net, 1).shape) == (None, 16, 16, 8)
    with pytest.raises(ValueError, match="no decoder level 2"):
        with_deep_supervision(net, 2)


def test_output_weights_halve_and_sum_to_one():
    assert output_weights(0) == [1.0]
    assert output_weights(2) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
