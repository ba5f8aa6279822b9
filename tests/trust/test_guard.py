"""Input guard: rules, the fitted OOD score (shipped weights/guard_stats.json), the non-MRI set, real data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core import config
from core.trust.guard import STATS_PATH, GuardStats, check_slice, describe, feature_vector, load_stats
from core.readers.decoded import Slice
from core.readers.slice import read_slice_file
from core.trust.nonmri import GROUPS, non_mri_set, to_slice


def grey_slice(image: np.ndarray, name: str = "x.png") -> Slice:
    return Slice(image=image.astype(np.float32), spacing_mm=None, source_format="png", name=name)


@pytest.fixture(scope="module")
def stats() -> GuardStats:
    loaded = load_stats()
    assert loaded is not None, "weights/guard_stats.json is missing: run python -m core.guard fit"
    return loaded


@pytest.fixture(scope="module")
def non_mri_verdicts(stats):
    return [(item, check_slice(to_slice(item), stats)) for item in non_mri_set()]


def test_rules_refuse_small_colour_and_blank():
    assert check_slice(grey_slice(np.random.default_rng(0).random((20, 64)))).kind == "small"
    colour = grey_slice(np.random.default_rng(0).random((64, 64)))
    colour.colourfulness = 0.3
    assert check_slice(colour).kind == "colour"
    blank = check_slice(grey_slice(np.full((64, 64), 0.4)))
    assert not blank.accepted and blank.kind == "blank" and "blank" in blank.reason


def test_shipped_stats_are_small_numbers_only_and_carry_their_measurements(stats):
    assert STATS_PATH.stat().st_size < 200_000
    payload = json.loads(STATS_PATH.read_text())
    assert payload["info"]["command"] == "python -m core.guard fit"
    assert payload["info"]["n_train"] > 1000
    assert payload["info"]["test_false_refusal_rate"] <= 0.01
    assert payload["info"]["non_mri"]["refusal_rate"] >= 0.95
    assert len(stats.pca_components) == 12 and len(stats.mix_weights) >= 1


def test_synthetic_samples_are_accepted(stats):
    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["kind"] == "slice":
            verdict = check_slice(read_slice_file(config.SAMPLE_DIR / entry["name"]), stats)
            assert verdict.accepted, (entry["name"], verdict.reason)
            assert verdict.score is not None and verdict.score <= verdict.limit


def test_non_mri_set_is_refused_at_least_95_percent(non_mri_verdicts):
    refused = [not v.accepted for _, v in non_mri_verdicts]
    assert {item.group for item, _ in non_mri_verdicts} == set(GROUPS)
    assert len(refused) >= 150
    assert np.mean(refused) >= 0.95, [i.name for i, v in non_mri_verdicts if v.accepted]


@pytest.mark.parametrize("group,kinds,share", [("document", {"document"}, 0.8), ("noise", {"noise"}, 0.6),
                                               ("xray", {"xray_or_photo"}, 0.9), ("blank", {"blank"}, 1.0),
                                               ("photo", {"colour", "xray_or_photo"}, 0.9)])
def test_refusals_name_what_the_image_looks_like(non_mri_verdicts, group, kinds, share):
    verdicts = [v for item, v in non_mri_verdicts if item.group == group]
    named = [v.kind in kinds for v in verdicts]
    assert np.mean(named) >= share, [(v.kind, v.reason) for v in verdicts]
    assert all(v.reason for v in verdicts if not v.accepted)


def test_fit_and_score_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    raw = np.column_stack([rng.uniform(0, 0.1, 300)] + [rng.uniform(0.3, 0.7, 300) for _ in range(12)])
    thumbs = rng.random((300, 256))
    fitted = GuardStats.fit(raw, thumbs, quantile=0.99)
    fitted.save(tmp_path / "g.json")
    again = GuardStats.load(tmp_path / "g.json")
    scores = again.score(raw, thumbs)
    assert np.mean(scores > again.limit) == pytest.approx(0.01, abs=0.01)
    assert np.allclose(scores, fitted.score(raw, thumbs), rtol=1e-4, atol=1e-3)


def test_real_testing_images_are_accepted(stats, data_root):
    """A stratified sample of the official Testing images (the fit command measures all 1311)."""
    from core.data.datasets import list_classification

    listing = list_classification(data_root / "brain_mri_4class" / "Testing")
    rng = np.random.default_rng(1)
    picks = np.concatenate([rng.choice(np.flatnonzero(listing.labels == k), 40, replace=False) for k in range(4)])
    refused = []
    for i in picks:
        f, thumb = describe(read_slice_file(listing.paths[i]).image)
        if stats.score(feature_vector(f), thumb)[0] > stats.limit:
            refused.append(listing.paths[i].name)
    assert len(refused) <= 3, refused


def test_shipped_statistics_are_checked_against_the_manifest(tmp_path, monkeypatch):
    """The shipped guard_stats.json passes the registry's sha256 check; an altered copy is refused."""
    import shutil

    from core import config
    from core.errors import ModelUnavailable
    from core.serving import registry

    assert registry.verified_file("guard_stats").name == "guard_stats.json"
    for name in ("manifest.json", "guard_stats.json"):
        shutil.copy(config.WEIGHTS_DIR / name, tmp_path / name)
    monkeypatch.setattr(config, "WEIGHTS_DIR", tmp_path)
    assert load_stats().limit == load_stats(STATS_PATH).limit
    payload = json.loads((tmp_path / "guard_stats.json").read_text())
    payload["limit"] = payload["limit"] * 10           # a guard that would let anything through
    (tmp_path / "guard_stats.json").write_text(json.dumps(payload))
    with pytest.raises(ModelUnavailable, match="checksum"):
        load_stats()
