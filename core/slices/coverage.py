"""What the classifier has seen: training slices per class x sequence x plane, and the caution
shown when a slice's recognised sequence and plane were rare or absent for the decided class.

Counts come from the classifier's card (``coverage``, written by ``python -m core.train.ensemble``):
``known`` rows are labelled by their source (tcga_lgg, BraTS); the 4-class images carry no
sequence or plane, so their rows are ``estimated`` by the sequence/plane model and say so.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core import config
from core.slices.acquisition import Acquisition
from core.data.sources import SEQUENCE_LABELS

#: Fewer training slices than this (of the decided class, in the slice's sequence and plane) is "rare".
RARE_COUNT = 50
#: ... or a smaller share than this of the decided class's training slices.
RARE_SHARE = 0.02


@dataclass
class Coverage:
    """Training counts ``{(class, sequence, plane): n}``, known and estimated."""

    known: Counter = field(default_factory=Counter)
    estimated: Counter = field(default_factory=Counter)

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "Coverage | None":
        block = card.get("coverage")
        if not block:
            return None
        def counter(rows: list[dict]) -> Counter:
            return Counter({(r["class"], r["sequence"], r["plane"]): int(r["n"]) for r in rows})
        return cls(counter(block.get("known", [])), counter(block.get("estimated", [])))

    def seen(self, label: str, sequence: str, plane: str) -> tuple[int, int]:
        """``(known, estimated)`` training slices of ``label`` in ``sequence`` and ``plane``."""
        key = (label, sequence, plane)
        return self.known[key], self.estimated[key]

    def total(self, label: str) -> int:
        return sum(n for (c, _, _), n in (self.known + self.estimated).items() if c == label)


def coverage_note(coverage: Coverage | None, decision: str, acquisition: Acquisition | None) -> str | None:
    """A plain-language caution when the decided class was rarely or never seen in this sequence
    and plane, or when the sequence/plane could not be recognised; ``None`` when well covered."""
    if coverage is None or acquisition is None:
        return None
    name = config.CLASS_LABELS.get(decision, decision)
    if not acquisition.confident:
        return (f"The sequence and plane of this slice could not be recognised with confidence "
                f"(best guess {acquisition.text()}); slices unlike the training data are where the "
                f"classifier errs most. Treat \"{name}\" with caution.")
    known, estimated = coverage.seen(decision, acquisition.sequence, acquisition.plane)
    total = coverage.total(decision)
    seen = known + estimated
    what = f"{acquisition.plane} {SEQUENCE_LABELS[acquisition.sequence]}"
    estimate = f" ({estimated} of them estimated)" if estimated else ""
    if seen == 0:
        return (f"The classifier was never trained on a {what} slice labelled {name}: this decision "
                f"comes from outside what it has seen. Treat it with caution.")
    if seen < RARE_COUNT or (total and seen / total < RARE_SHARE):
        return (f"The classifier saw few {what} slices labelled {name} in training: {seen} of {total}{estimate}. "
                f"Treat this decision with caution.")
    return None


def counts_rows(counts: Counter) -> list[dict[str, Any]]:
    return [{"class": c, "sequence": q, "plane": p, "n": int(n)} for (c, q, p), n in sorted(counts.items())]


def build_coverage(train: Any, recogniser: Any | None) -> dict[str, Any]:
    """The ``coverage`` block of a classifier card from its training slices (a
    :class:`core.data.sources.SliceSet`): labelled sequence/plane counted as known; the rest
    estimated by ``recogniser`` (an :class:`core.slices.acquisition.AcquisitionModel`) when given."""
    from core.data.sources import UNKNOWN

    known, estimated = Counter(), Counter()
    unknown_idx = []
    for i, ref in enumerate(train.refs):
        if UNKNOWN in (ref.sequence, ref.plane):
            unknown_idx.append(i)
        else:
            known[(ref.label, ref.sequence, ref.plane)] += 1
    if recogniser is not None and unknown_idx:
        crops = train.x[unknown_idx].astype("float32") / 255.0
        for k, acq in zip(unknown_idx, recogniser.recognise_crops(crops)):
            estimated[(train.refs[k].label, acq.sequence, acq.plane)] += 1
    return {"known": counts_rows(known), "estimated": counts_rows(estimated),
            "estimated_by": getattr(recogniser, "sha256", None), "unlabelled": len(unknown_idx),
            "rule": f"rare below {RARE_COUNT} slices or {RARE_SHARE:.0%} of the class"}
