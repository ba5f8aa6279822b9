"""Stacking meta-learner, soft voting and temperature scaling."""
from __future__ import annotations

import numpy as np

from core.slices.ensemble import StackingEnsemble, fit_temperature, out_of_fold_proba, soft_vote, softmax

CLASSES = ["a", "b", "c", "d"]


def noisy_members(n: int = 600, seed: int = 0):
    """Three members: one good, one mediocre, one that swaps classes 0 and 1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    onehot = np.eye(4)[labels]

    def member(signal: float, perm=None):
        target = onehot if perm is None else onehot[:, perm]
        return softmax(signal * target + rng.normal(0, 1.0, (n, 4)))

    return [member(4.0), member(1.0), member(4.0, [1, 0, 2, 3])], labels


def test_stacking_learns_to_trust_and_to_undo_a_systematic_swap():
    probs, labels = noisy_members()
    model = StackingEnsemble.fit(probs, labels, ["good", "weak", "swapped"], CLASSES)
    test_probs, test_labels = noisy_members(seed=1)
    acc = np.mean(model.predict_proba(test_probs).argmax(1) == test_labels)
    vote = np.mean(soft_vote(test_probs).argmax(1) == test_labels)
    assert acc > 0.97
    assert acc > vote + 0.05  # soft voting is hurt by the swapped member, stacking is not


def test_save_and_load_round_trip(tmp_path):
    probs, labels = noisy_members(200)
    model = StackingEnsemble.fit(probs, labels, ["x", "y", "z"], CLASSES)
    model.temperature = 1.7
    model.save(tmp_path / "m.json")
    loaded = StackingEnsemble.load(tmp_path / "m.json")
    np.testing.assert_allclose(loaded.predict_proba(probs), model.predict_proba(probs))
    assert loaded.temperature == 1.7


def test_absent_class_in_fitting_data_stays_impossible():
    probs, labels = noisy_members(300)
    keep = labels != 3
    model = StackingEnsemble.fit([p[keep] for p in probs], labels[keep], ["x", "y", "z"], CLASSES)
    assert model.predict_proba(probs)[:, 3].max() < 1e-6


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 4))
    true_t = 2.5
    labels = np.array([rng.choice(4, p=p) for p in softmax(logits, true_t)])
    assert abs(fit_temperature(logits, labels) - true_t) < 0.25


def test_out_of_fold_probabilities_cover_every_row():
    probs, labels = noisy_members(300)
    oof = out_of_fold_proba(probs, labels, ["x", "y", "z"], CLASSES)
    assert oof.shape == (300, 4)
    np.testing.assert_allclose(oof.sum(1), 1.0, atol=1e-9)
    assert np.mean(oof.argmax(1) == labels) > 0.9


def test_equal_weight_pool_is_the_normalised_geometric_mean_and_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    probs = [rng.dirichlet(np.ones(4), size=20) for _ in range(3)]
    pool = StackingEnsemble.equal_weights(["a", "b", "c"], ["w", "x", "y", "z"])
    geo = np.exp(np.mean([np.log(np.clip(p, 1e-6, 1.0)) for p in probs], axis=0))
    np.testing.assert_allclose(pool.predict_proba(probs), geo / geo.sum(1, keepdims=True), rtol=1e-9)
    pool.temperature = 2.0
    pool.save(tmp_path / "pool.json")
    loaded = StackingEnsemble.load(tmp_path / "pool.json")
    np.testing.assert_allclose(loaded.predict_proba(probs), pool.predict_proba(probs))
    flat = loaded.predict_proba(probs)
    assert (flat.max(1) <= geo.max(1) / geo.sum(1) + 1e-12).all()          # a temperature above 1 softens
