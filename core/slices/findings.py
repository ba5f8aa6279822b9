"""Plain-language text of a slice result's recognised acquisition, training coverage and lesion cross-check.

The Analyse page, the batch table and the report all describe these three additions of
:class:`core.slices.pipeline.SliceResult` the same way, so the wording lives here (no Streamlit).
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from core.slices.acquisition import MODEL_NAME as ACQUISITION_MODEL
from core.slices.acquisition import Acquisition
from core.slices.crosscheck import RULE_NAME
from core.slices.pipeline import SliceResult
from core.slices.stated import StatedAcquisition, disagreement

#: The constructor arguments of :class:`~core.slices.acquisition.Acquisition` (``to_json`` adds derived keys).
_FIELDS = tuple(f.name for f in fields(Acquisition))


def acquisition_of(result: SliceResult) -> Acquisition | None:
    """The recognised :class:`~core.slices.acquisition.Acquisition` of ``result`` (``None`` when not recognised)."""
    if not result.acquisition:
        return None
    return Acquisition(**{k: result.acquisition[k] for k in _FIELDS})


def stated_of(result: SliceResult) -> StatedAcquisition | None:
    """What ``result``'s file stated about its sequence and plane (:mod:`core.slices.stated`)."""
    d = result.stated_acquisition
    if not d:
        return None
    return StatedAcquisition(d.get("sequence"), d.get("plane"), d.get("sequence_evidence", ""),
                             d.get("plane_evidence", ""))


def stated_line(result: SliceResult) -> str | None:
    """E.g. ``"coronal T1-CE — SeriesDescription 'COR T1 GAD'; ImageOrientationPatient (…)"``, with the
    image model's other reading when it confidently disagrees; None when the file states nothing."""
    stated = stated_of(result)
    if stated is None:
        return None
    other = disagreement(acquisition_of(result), stated)
    note = f" — {other}; the training-coverage caution follows the file" if other else ""
    return f"{stated.label()} ({stated.evidence()}){note}"


def acquisition_line(result: SliceResult) -> str | None:
    """E.g. ``"axial FLAIR — sequence 0.97, plane 0.99"``; "unsure" leads when not confident."""
    acq = acquisition_of(result)
    if acq is None:
        return None
    scores = f"sequence {acq.sequence_confidence:.2f}, plane {acq.plane_confidence:.2f}"
    if acq.confident:
        return f"{acq.label()} — {scores}"
    return f"unsure — best guess {acq.label()} ({scores})"


def acquisition_cell(result: SliceResult | None) -> str:
    """Table text, e.g. ``"axial FLAIR 0.97/0.99"`` (``"… (unsure)"`` below the threshold; empty when unknown)."""
    acq = acquisition_of(result) if result is not None else None
    if acq is None:
        return ""
    text = f"{acq.label()} {acq.sequence_confidence:.2f}/{acq.plane_confidence:.2f}"
    return text if acq.confident else f"{text} (unsure)"


def stated_cell(result: SliceResult | None) -> str:
    """Table text of what the file states, e.g. ``"coronal T1-CE"`` (empty when it states nothing)."""
    stated = stated_of(result) if result is not None else None
    return stated.label() if stated is not None else ""


def acquisition_block(result: SliceResult) -> dict[str, Any] | None:
    """The report's ``acquisition`` section: what was recognised, how surely, and by which model, and
    (``stated``) what the file itself states."""
    acq = acquisition_of(result)
    stated = stated_of(result)
    if acq is None and stated is None:
        return None
    block = {} if acq is None else {**acq.to_json(), "text": acq.text(), "model": ACQUISITION_MODEL,
                                    "model_sha256": result.model_versions.get(ACQUISITION_MODEL)}
    if stated is not None:
        block["stated"] = {**stated.to_json(), "disagreement": disagreement(acq, stated)}
    return block


#: The model whose evidence the cross-check weighs when a result does not name it.
DEFAULT_EVIDENCE_MODEL = "lesion_detector"


def evidence_model(result: SliceResult) -> str:
    """``"lesion_detector"`` or ``"resunet"``: whose region the lesion cross-check weighed."""
    check = result.lesion_check or {}
    return str(check.get("model") or check.get("detector") or DEFAULT_EVIDENCE_MODEL)


def evidence_who(result: SliceResult) -> str:
    """The evidence model for people: "the segmenter" (ResUNet) or "the lesion detector"."""
    return "the segmenter" if evidence_model(result) == "resunet" else "the lesion detector"


def _area_of(result: SliceResult) -> str:
    """What the area fraction is a share of: the ResUNet sees the whole slice, the detector the head's crop."""
    return "slice" if evidence_model(result) == "resunet" else "head"


def lesion_figures(result: SliceResult) -> str:
    """E.g. ``"mean confidence 0.91, 1.2 % of the head"`` from the cross-check (empty when it did not run)."""
    check = result.lesion_check or {}
    if not check:
        return ""
    confidence, area = check.get("confidence", 0.0), check.get("area_fraction", 0.0)
    return f"mean confidence {confidence:.2f}, {100 * area:.1f} % of the {_area_of(result)}"


def possible_lesion_text(result: SliceResult) -> str:
    """The sentence shown beside the outline of a possible lesion."""
    return (f"Possible lesion — the classifier reports no tumour; {evidence_who(result)} outlines this region "
            f"({lesion_figures(result)}).")


def shows_lesion_outline(result: SliceResult) -> bool:
    """Whether ``result.mask`` is the cross-check's region: a possible lesion on which the tumour segmenter
    did not run as such (it runs on a tumour decision or when asked to, and its timing is then recorded)."""
    return result.possible_lesion and "segment_ms" not in result.timings_ms


def outline_caption(result: SliceResult) -> str:
    """Caption of the overlay: whose outline it is."""
    if shows_lesion_outline(result):
        return f"Possible lesion outline ({evidence_who(result).removeprefix('the ')})"
    return "Segmentation overlay"


def lesion_block(result: SliceResult) -> dict[str, Any] | None:
    """The report's ``lesion_check`` section (``None`` when the cross-check did not run)."""
    if result.lesion_check is None:
        return None
    model = evidence_model(result)
    return {**result.lesion_check, "possible_lesion": result.possible_lesion, "evidence_model": model,
            "evidence_model_sha256": result.model_versions.get(model), "evidence_by": evidence_who(result),
            "figures": lesion_figures(result), "rule_sha256": result.model_versions.get(RULE_NAME)}


def is_shown_apart(warning: str, result: SliceResult) -> bool:
    """Whether ``warning`` is one the Analyse page shows in its own place (training match, coverage, lesion)."""
    return (warning.startswith("This image is ") or warning == result.coverage_note
            or (result.possible_lesion and warning.startswith("Possible lesion:")))
