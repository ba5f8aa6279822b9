"""Strict JSON of evaluation outputs: one rounding rule for every writer."""
from __future__ import annotations

import json

import numpy as np

from core.evaluation.jsonsafe import json_ready, json_text


def test_non_finite_numbers_become_null_and_numpy_scalars_plain_numbers():
    data = {"nan": float("nan"), "inf": np.float32("inf"), "x": np.float64(0.123456), "n": np.int64(3),
            "pair": (1.0000049, -np.inf), "nested": [{"v": np.float32(2.5)}], "text": "a", "none": None, "flag": True}
    assert json_ready(data) == {"nan": None, "inf": None, "x": 0.1235, "n": 3, "pair": [1.0, None],
                                "nested": [{"v": 2.5}], "text": "a", "none": None, "flag": True}
    assert type(json_ready(np.int64(3))) is int and type(json_ready(np.float32(1.5))) is float


def test_unrounded_keeps_every_digit_and_the_text_is_strict_json():
    assert json_ready([0.123456789, float("nan")], digits=None) == [0.123456789, None]
    text = json_text({"a": [float("nan"), 1.23456]})
    assert text.endswith("\n") and json.loads(text) == {"a": [None, 1.2346]}
    assert "NaN" not in json_text({"a": float("nan")}, digits=None)
