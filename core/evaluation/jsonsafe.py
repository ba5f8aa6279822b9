"""Strict JSON for every evaluation output: floats rounded, NaN and infinity written as ``null``."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

#: Decimals kept in evaluation JSON (scores, CIs, curves).
DIGITS = 4


def json_ready(obj: Any, digits: int | None = DIGITS) -> Any:
    """``obj`` with floats rounded to ``digits`` (``None``: kept as they are), non-finite floats as
    ``None``, numpy scalars as Python numbers and tuples as lists, recursively."""
    if isinstance(obj, (float, np.floating)):
        if not math.isfinite(obj):
            return None
        return round(float(obj), digits) if digits is not None else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {k: json_ready(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v, digits) for v in obj]
    return obj


def json_text(data: Any, digits: int | None = DIGITS) -> str:
    """``data`` as indented strict JSON (:func:`json_ready`), ending in a newline."""
    return json.dumps(json_ready(data, digits), indent=1, allow_nan=False) + "\n"
