"""Post-processing of probability maps (core.slices.segment.postprocess), no model needed."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from core.imaging.morphology import fill_holes, keep_largest_component, remove_small_components
from core.slices.segment import KEEP_RULES, PostProcessing, postprocess
from core.train.segmenter import tune_postprocessing


def whole_slice_postprocess(prob: np.ndarray, spacing, rules: PostProcessing) -> np.ndarray:
    """The rules applied to the whole slice, step by step (the reference the box crop must match)."""
    mask = remove_small_components(fill_holes(prob >= rules.threshold), rules.min_area_mm2, spacing,
                                   min_area_px_fallback=rules.min_area_px)
    return keep_largest_component(mask) if rules.keep == "largest" else mask


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("keep_largest", [True, False])
def test_box_cropped_postprocess_equals_whole_slice(seed, keep_largest):
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((96, 128)), 3.0)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    rules = PostProcessing(threshold=0.6, min_area_mm2=6.0, keep="largest" if keep_largest else "all")
    for spacing in (None, (0.5, 0.8)):
        expected = whole_slice_postprocess(prob, spacing, rules)
        assert expected.any()
        np.testing.assert_array_equal(postprocess(prob, spacing, rules), expected)


def test_postprocess_fills_holes_and_drops_specks():
    prob = np.zeros((64, 64), np.float32)
    prob[10:40, 10:40] = 0.9
    prob[20:30, 20:30] = 0.1  # a hole inside the lesion
    prob[55:57, 55:57] = 0.95  # a 4-pixel speck
    mask = postprocess(prob, (1.0, 1.0), PostProcessing(threshold=0.5, min_area_mm2=10.0, keep="all"))
    assert mask.sum() == 30 * 30 and mask[25, 25] and not mask[56, 56]


def test_postprocess_of_an_empty_map_is_empty():
    mask = postprocess(np.full((32, 40), 0.2), None, PostProcessing(threshold=0.5))
    assert mask.shape == (32, 40) and mask.dtype == bool and not mask.any()


def lesion_beside_a_lukewarm_blob() -> tuple[np.ndarray, np.ndarray]:
    """A small confident lesion (p 0.95) and a bigger, less sure false positive (p 0.8), plus the truth."""
    prob = np.zeros((80, 80), np.float32)
    prob[10:20, 10:20] = 0.95
    prob[40:70, 40:70] = 0.8
    truth = np.zeros((80, 80), bool)
    truth[10:20, 10:20] = True
    return prob, truth


def test_component_rules_choose_what_survives():
    prob, truth = lesion_beside_a_lukewarm_blob()
    keep = {rule: postprocess(prob, None, PostProcessing(threshold=0.5, keep=rule)) for rule in KEEP_RULES}
    np.testing.assert_array_equal(keep["most_confident"], truth)
    assert keep["largest"].sum() == 900 and not keep["largest"][15, 15]
    assert keep["all"].sum() == 1000


def test_unknown_component_rule_is_refused():
    with pytest.raises(ValueError, match="component rule"):
        PostProcessing(keep="biggest")


def test_tuning_on_validation_picks_rule_and_threshold():
    prob, truth = lesion_beside_a_lukewarm_blob()
    rules, score = tune_postprocessing(np.stack([prob, prob]), np.stack([truth, truth]), (1.0, 1.0))
    # no searched threshold (0.3-0.7) removes the 0.8 blob: only the component rule can
    assert rules.keep == "most_confident" and score == pytest.approx(1.0)
    assert rules.threshold == pytest.approx(0.3)  # ties keep the first (lowest) threshold

