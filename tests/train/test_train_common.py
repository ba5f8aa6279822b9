"""Training helpers: the learning-rate schedule that anneals within a wall-time budget, the shuffling feeder."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.train.common import (SCHEDULES, CosineWithinBudget, PolyWithinBudget, ShuffledBatches, concatenate_logs,
                               copy_matching_layers)


def test_cosine_warms_up_then_anneals_to_the_floor_by_the_last_epoch():
    schedule = CosineWithinBudget(1e-3, epochs=12, warmup_epochs=2, floor=0.01)
    rates = [schedule.rate(epoch, elapsed=0.0) for epoch in range(12)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[2:], rates[3:]))
    assert schedule.rate(12, 0.0) == pytest.approx(1e-5)


def test_time_budget_drives_the_cosine_when_it_runs_out_first():
    schedule = CosineWithinBudget(1e-3, epochs=100, minutes=10, warmup_epochs=0, floor=0.0)
    # Epoch 5 of 100 but half the budget spent: the cosine is at its half-way point.
    assert schedule.rate(5, elapsed=300.0) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert schedule.rate(6, elapsed=600.0) == pytest.approx(0.0)


def test_poly_decays_like_nnunet_within_the_same_budget():
    schedule = PolyWithinBudget(1e-2, epochs=12, warmup_epochs=2, floor=0.0)
    assert schedule.rate(2, 0.0) == pytest.approx(1e-2)                      # the peak after the warm-up
    assert schedule.rate(7, 0.0) == pytest.approx(1e-2 * 0.5 ** 0.9)         # half way: (1 - 0.5) ** 0.9
    assert schedule.rate(12, 0.0) == pytest.approx(0.0)
    # it stays above the cosine late and below it early (a polynomial of power 0.9 is nearly linear)
    cosine = CosineWithinBudget(1e-2, epochs=12, warmup_epochs=2, floor=0.0)
    assert schedule.rate(4, 0.0) < cosine.rate(4, 0.0) and schedule.rate(10, 0.0) > cosine.rate(10, 0.0)
    timed = PolyWithinBudget(1e-2, epochs=100, minutes=10, warmup_epochs=0, floor=0.1)
    assert timed.rate(5, elapsed=300.0) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5 ** 0.9))
    assert set(SCHEDULES) == {"cosine", "poly"} and SCHEDULES["poly"] is PolyWithinBudget


def test_concatenated_logs_renumber_epochs_and_keep_every_column(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("epoch,loss,val_dice\n0,0.9,0.4\n1,0.7,0.6\n")
    second.write_text("epoch,loss,lr,val_dice\n0,0.5,0.001,0.7\n")
    assert concatenate_logs(first, second, second) == 3
    assert second.read_text().splitlines() == ["epoch,loss,val_dice,lr", "0,0.9,0.4,", "1,0.7,0.6,",
                                               "2,0.5,0.7,0.001"]


class IndexBatches(ShuffledBatches):
    """The indices of each batch and one draw of its generator."""

    def make_batch(self, take, rng):
        return take.copy(), rng.random()


def test_shuffled_batches_visit_every_item_once_per_epoch_in_a_new_reproducible_order():
    feed = IndexBatches(10, batch=4, seed=3)
    assert len(feed) == 3
    epochs = []
    for _ in range(3):
        batches = [feed[i] for i in range(len(feed))]
        assert [len(take) for take, _ in batches] == [4, 4, 2]
        order = np.concatenate([take for take, _ in batches])
        assert sorted(order.tolist()) == list(range(10))
        epochs.append((order.tolist(), [draw for _, draw in batches]))
        feed.on_epoch_end()
    assert epochs[0][0] != epochs[1][0] and epochs[1][0] != epochs[2][0]
    assert epochs[0][0] == np.random.default_rng(3).permutation(10).tolist()
    again = IndexBatches(10, batch=4, seed=3)
    assert again[1][0].tolist() == epochs[0][0][4:8] and again[1][1] == epochs[0][1][1]


def test_frozen_batchnorm_keeps_its_statistics_while_the_convolutions_learn():
    import keras

    from core.train.common import freeze_batchnorm

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(x))
    bn = model.layers[2]
    before = [np.array(w) for w in bn.get_weights()]
    conv_before = np.array(model.layers[1].get_weights()[0])
    assert freeze_batchnorm(model) == 1
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(3.0, 2.0, (16, 8, 8, 1)), rng.normal(size=(16, 8, 8, 1)), epochs=2, batch_size=8, verbose=0)
    for old, new in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(old, np.array(new))      # moving mean/variance, gamma, beta untouched
    assert not np.allclose(conv_before, np.array(model.layers[1].get_weights()[0]))


def test_copy_matching_layers_leaves_only_a_new_head():
    """A 4-class softmax U-Net's weights go into a 3-region sigmoid twin, all but its output layer."""
    pytest.importorskip("keras")
    from core.models.segmenters import build_segmenter

    classes = build_segmenter("unet", input_size=32, channels=4, num_classes=4, base=4, depth=2)
    regions = build_segmenter("unet", input_size=32, channels=4, num_classes=3, base=4, depth=2, activation="sigmoid")
    head_before = [w.copy() for w in regions.get_layer("mask").get_weights()]
    assert copy_matching_layers(regions, classes) == ["mask"]
    for layer in regions.layers:
        if layer.weights and layer.name != "mask":
            for a, b in zip(layer.get_weights(), classes.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    for a, b in zip(regions.get_layer("mask").get_weights(), head_before):
        np.testing.assert_array_equal(a, b)
