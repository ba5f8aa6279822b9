"""core.slices.crosscheck: the lesion rule, the evidence taken from a segmenter's output, the choice of
rule under a false-alarm cap (ties to the stricter rule) and the figures it reports."""
from __future__ import annotations

import numpy as np
import pytest

from core.slices.crosscheck import LesionEvidence, LesionRule, choose_rule, lesion_evidence, rule_figures


def test_flagged_needs_both_thresholds_inclusive():
    rule = LesionRule(min_confidence=0.8, min_area_fraction=0.005)
    assert LesionEvidence(0.8, 0.005).flagged(rule)
    assert LesionEvidence(0.95, 0.2).flagged(rule)
    assert not LesionEvidence(0.79, 0.2).flagged(rule)
    assert not LesionEvidence(0.99, 0.0049).flagged(rule)
    assert not LesionEvidence(0.0, 0.0).flagged(LesionRule(0.5, 0.001))
    assert rule.to_json() == {"min_confidence": 0.8, "min_area_fraction": 0.005}


def test_lesion_evidence_from_mask_and_probability():
    mask = np.zeros((10, 20), bool)
    mask[2:4, 5:8] = True                      # 6 pixels of 200
    prob = np.full((10, 20), 0.1)
    prob[2:4, 5:8] = [[0.9, 0.8, 0.7], [0.6, 0.95, 0.85]]
    ev = lesion_evidence(mask, prob)
    assert ev == LesionEvidence(round((0.9 + 0.8 + 0.7 + 0.6 + 0.95 + 0.85) / 6, 4), 0.03)
    assert lesion_evidence(np.zeros((8, 8), np.uint8), np.ones((8, 8))) == LesionEvidence(0.0, 0.0)
    assert lesion_evidence(mask.astype(np.uint8) * 255, prob).area_fraction == 0.03   # any non-zero is mask


def _scenario():
    """Classifier said "no tumour" on 4 tumour slices and 20 tumour-free ones (plus two it got right)."""
    evidence, tumour, said_no = [], [], []

    def add(conf, area, is_tumour, no):
        evidence.append(LesionEvidence(conf, area))
        tumour.append(is_tumour)
        said_no.append(no)

    for _ in range(3):
        add(0.9, 0.01, True, True)             # missed, strong region
    add(0.6, 0.002, True, True)                # missed, weak small region
    add(0.7, 0.02, False, True)                # tumour-free, a look-alike region
    for _ in range(19):
        add(0.0, 0.0, False, True)             # tumour-free, nothing found
    add(0.99, 0.5, False, False)               # tumour-free the classifier called tumour: not the rule's business
    add(0.99, 0.5, True, False)                # tumour found by the classifier
    return evidence, np.array(tumour), np.array(said_no)


def test_choose_rule_without_false_alarms_takes_the_strictest_rule_rescuing_most():
    evidence, tumour, said_no = _scenario()
    rule, figures = choose_rule(evidence, tumour, said_no, max_false_alarm=0.0)
    # flagging the look-alike (0.7, 0.02) is not allowed: confidence must exceed 0.7; the three
    # strong misses are rescued by any confidence <= 0.9 and area <= 0.01 -> the strictest of those
    assert rule == LesionRule(0.9, 0.01)
    assert figures == {"rescued": 3, "missed": 4, "false_alarms": 0, "tumour_free": 21, "false_alarm_rate": 0.0,
                       "sensitivity_before": 0.2, "sensitivity_after": 0.8}


def test_choose_rule_spends_the_false_alarm_budget_to_rescue_more():
    evidence, tumour, said_no = _scenario()
    rule, figures = choose_rule(evidence, tumour, said_no, max_false_alarm=0.05)
    # rescuing the weak miss (0.6, 0.002) necessarily flags the look-alike: 1 of the 21 tumour-free
    # slices = 4.8 %, allowed
    assert rule == LesionRule(0.6, 0.002)
    assert figures["rescued"] == 4 and figures["false_alarms"] == 1 and figures["false_alarm_rate"] == 0.0476
    # just under the budget it is not
    rule, figures = choose_rule(evidence, tumour, said_no, max_false_alarm=0.047)
    assert rule == LesionRule(0.9, 0.01) and figures["rescued"] == 3


def test_choose_rule_prefers_fewer_false_alarms_among_equal_rescues():
    # both misses at (0.95, 0.03): every rule rescues them; a look-alike at (0.5, 0.001) is flagged
    # only by the most permissive rule -> never chosen even though the cap would allow it
    evidence = [LesionEvidence(0.95, 0.03)] * 2 + [LesionEvidence(0.5, 0.001)] + [LesionEvidence(0.0, 0.0)] * 3
    tumour = np.array([True, True, False, False, False, False])
    rule, figures = choose_rule(evidence, tumour, np.ones(6, bool), max_false_alarm=0.5)
    assert rule == LesionRule(0.95, 0.03)           # the strictest rule on the grid
    assert figures["rescued"] == 2 and figures["false_alarms"] == 0


def test_choose_rule_when_no_rule_meets_the_cap_never_flags():
    evidence = [LesionEvidence(0.9, 0.05), LesionEvidence(0.99, 0.5), LesionEvidence(1.0, 1.0)]
    tumour = np.array([True, False, False])
    rule, figures = choose_rule(evidence, tumour, np.ones(3, bool), max_false_alarm=0.0)
    assert figures["rescued"] == 0 and figures["missed"] == 1 and figures["false_alarm_rate"] == 0.0
    assert not any(e.flagged(rule) for e in evidence + [LesionEvidence(1.0, 1.0)])


def test_rule_figures_counts_and_sensitivity_before_and_after():
    rule = LesionRule(0.8, 0.01)
    yes, no = LesionEvidence(0.9, 0.02), LesionEvidence(0.5, 0.02)
    evidence = [yes, no, yes, yes, yes, no, yes]
    tumour = np.array([True, True, True, True, False, False, False])
    said_no = np.array([True, True, False, False, True, True, False])
    # tumours: 0 missed + flagged (rescued), 1 missed, 2-3 found; tumour-free: 4 called no tumour +
    # flagged (false alarm), 5 called no tumour, 6 called tumour (flag irrelevant: the check never runs)
    figures = rule_figures(rule, evidence, tumour, said_no)
    assert figures == {"missed": 2, "rescued": 1, "false_alarms": 1, "tumour_free": 3,
                       "false_alarm_rate": round(1 / 3, 4), "sensitivity_before": 0.5, "sensitivity_after": 0.75}


def test_rule_figures_without_tumour_or_tumour_free_slices():
    rule = LesionRule(0.5, 0.001)
    only_free = rule_figures(rule, [LesionEvidence(0.9, 0.1)], np.array([False]), np.array([True]))
    assert only_free["sensitivity_before"] is None and only_free["sensitivity_after"] is None
    assert only_free["false_alarms"] == 1 and only_free["false_alarm_rate"] == 1.0
    only_tumour = rule_figures(rule, [LesionEvidence(0.9, 0.1)], np.array([True]), np.array([True]))
    assert only_tumour["false_alarm_rate"] is None
    assert (only_tumour["sensitivity_before"], only_tumour["sensitivity_after"]) == (0.0, 1.0)


@pytest.mark.parametrize("cap", [0.0, 0.05, 0.2])
def test_chosen_rule_respects_its_cap_on_random_evidence(cap):
    rng = np.random.default_rng(int(cap * 100))
    n = 200
    tumour = rng.random(n) < 0.4
    said_no = rng.random(n) < 0.6
    conf = np.where(tumour, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.9, n))
    area = rng.uniform(0.0, 0.03, n)
    evidence = [LesionEvidence(float(c), float(a)) for c, a in zip(conf, area)]
    rule, figures = choose_rule(evidence, tumour, said_no, cap)
    flagged = np.array([e.flagged(rule) for e in evidence])
    assert (flagged & said_no & ~tumour).sum() / (~tumour).sum() <= cap
    assert figures["rescued"] == int((flagged & said_no & tumour).sum())
    # no rule on the grid rescues more under the same cap
    for c in np.round(np.arange(0.5, 0.96, 0.05), 2):
        for a in (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03):
            f = (conf >= c) & (area >= a)
            if (f & said_no & ~tumour).sum() / (~tumour).sum() <= cap:
                assert (f & said_no & tumour).sum() <= figures["rescued"]
