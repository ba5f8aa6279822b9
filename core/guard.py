"""Input guard: refuse images that cannot be a greyscale MRI slice before any model sees them.

Rules here are cheap and explainable; each refusal names what was wrong. The user can override
a refusal in the app (a real MRI the guard misjudges), which is recorded in the result.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import NotAnMRISlice
from core.io import Slice

#: Mean chroma above which an image is a colour photograph rather than an MRI rendering.
MAX_COLOURFULNESS = 0.08
#: Smallest side (pixels) at which a slice carries enough anatomy to classify.
MIN_SIDE = 32
#: Standard deviation (of [0, 1] intensities) under which an image is blank.
MIN_CONTRAST = 0.02


@dataclass(frozen=True)
class GuardVerdict:
    accepted: bool
    reason: str


def check_slice(slice_: Slice) -> GuardVerdict:
    """Whether ``slice_`` can be a brain MRI slice, with the reason when it cannot."""
    h, w = slice_.image.shape
    if min(h, w) < MIN_SIDE:
        return GuardVerdict(False, f"The image is only {w}×{h} pixels; an MRI slice needs at least {MIN_SIDE} px a side.")
    if slice_.colourfulness > MAX_COLOURFULNESS:
        return GuardVerdict(False, "This is a colour image (mean colourfulness "
                            f"{slice_.colourfulness:.2f}); MRI slices are greyscale. It looks like a photograph "
                            "or a screenshot, not a scan.")
    if float(np.std(slice_.image)) < MIN_CONTRAST:
        return GuardVerdict(False, "The image is blank or nearly uniform; there is no anatomy to analyse.")
    return GuardVerdict(True, "")


def require_mri_slice(slice_: Slice) -> None:
    """Raise :class:`NotAnMRISlice` when :func:`check_slice` refuses the slice."""
    verdict = check_slice(slice_)
    if not verdict.accepted:
        raise NotAnMRISlice(verdict.reason)
