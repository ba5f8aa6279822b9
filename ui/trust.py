"""Streamlit views of the trust signals shared by the Analyse and Batch pages.

The input-guard verdict, the caution banner for uncertain or split decisions, the calibration
note, the training-set match, the recognised sequence and plane, the training-coverage note and
the possible-lesion flag all read plain objects from ``core``; nothing here computes.
"""
from __future__ import annotations

import streamlit as st

from core import config
from core.slices.acquisition import CONFIDENT
from core.slices.findings import acquisition_line, evidence_who, stated_line
from core.trust.guard import GuardVerdict
from core.slices.pipeline import SliceResult

GUARD_TITLES = {
    "small": "The image is too small to be an MRI slice.",
    "colour": "Not a greyscale MRI slice.",
    "blank": "The image is blank.",
    "document": "This looks like a document or a screenshot, not a brain MRI slice.",
    "noise": "This looks like noise or a texture, not a brain MRI slice.",
    "xray_or_photo": "This does not look like a brain MRI slice (more like a chest X-ray or a photograph).",
    "unusual": "This does not look like a brain MRI slice.",
}


def show_guard(verdict: GuardVerdict) -> None:
    """The guard's verdict: a specific error when it refuses, a quiet caption when it accepts."""
    if verdict.accepted:
        if verdict.score is not None:
            st.caption(f"Input guard: looks like a brain MRI slice (out-of-distribution score {verdict.score:.1f}, "
                       f"limit {verdict.limit:.1f}).")
        return
    title = GUARD_TITLES.get(verdict.kind, GUARD_TITLES["unusual"])
    st.error(f"**{title}** {verdict.reason}", icon=":material/block:")


def show_caution(result: SliceResult) -> None:
    """A visible caution when the decision is uncertain or the members split."""
    if not result.caution:
        return
    votes = sum(v == result.decision for v in result.member_votes.values())
    st.warning(f"**Caution — treat this result as uncertain.** Ensemble probability {result.confidence:.0%}, "
               f"normalised entropy {result.entropy:.2f} (0 = certain, 1 = uniform), "
               f"{votes} of {len(result.member_votes)} members vote {result.decision_label}."
               + "".join(f" {reason}" for reason in caution_reasons(result)),
               icon=":material/warning:")


def caution_reasons(result: SliceResult) -> list[str]:
    """Why the caution is raised beyond the probabilities: training coverage, a possible lesion."""
    reasons = []
    if result.coverage_note:
        reasons.append("Slices like this one were rare, absent or unrecognised in the training data (see below).")
    if result.possible_lesion:
        reasons.append(f"{evidence_who(result).capitalize()} outlines a possible lesion that the classifier did not "
                       "report (see below).")
    return reasons


def show_acquisition(result: SliceResult) -> None:
    """What the file states and what the model recognised of the sequence and plane, under the decision."""
    stated = stated_line(result)
    if stated:
        st.markdown(f"**Sequence and plane (stated by the file):** {stated}",
                    help="Read from the file itself: a DICOM's series description, timing and orientation, a "
                         "NIfTI's affine and description, or a BraTS-style file name. Where the file states it, "
                         "the training-coverage caution uses it instead of the image model's guess.")
    line = acquisition_line(result)
    if line:
        st.markdown(f"**Sequence and plane (recognised):** {line}",
                    help="Recognised from the image by a separate model that knows T1, T1-CE, T2 and FLAIR in "
                         f"axial, coronal and sagittal planes; below {CONFIDENT:.2f} on either it is called unsure.")


def show_coverage(result: SliceResult) -> None:
    """The training-coverage caution, beside the decision it qualifies."""
    if result.coverage_note:
        st.warning(f"**Outside familiar training data.** {result.coverage_note}", icon=":material/travel_explore:")


def show_possible_lesion(result: SliceResult) -> None:
    """The lesion cross-check's flag: the classifier said no tumour, its evidence model found a region."""
    if result.possible_lesion:
        st.warning(f"**Possible lesion.** The classifier reports no tumour, but {evidence_who(result)} outlines a "
                   "confident region: review the outline below before accepting \"No tumour\".",
                   icon=":material/radar:")


def show_training_match(result: SliceResult) -> None:
    match = result.training_match
    if match:
        st.warning(f"**This image was used to train the model**; its result says little about accuracy. "
                   f"It {'copies' if match['exact'] else 'nearly copies'} the training image `{match['name']}` "
                   f"(labelled {config.CLASS_LABELS.get(match['label'], match['label'])}; perceptual-hash distances "
                   f"{match['phash_distance']}/{match['dhash_distance']} of 64"
                   f"{', mirrored' if match.get('mirrored') else ''}).", icon=":material/content_copy:")


def calibration_note(result: SliceResult) -> str:
    cal = result.calibration
    if not cal:
        return "Probabilities come from the ensemble of the four members."
    return (f"Probabilities are calibrated: {cal['method']} (T = {cal['temperature']}), fitted on the "
            f"{cal['fitted_on']}. Expected calibration error on validation (n = {cal['n_validation']}): "
            f"{cal['ece_before']} before, {cal['ece_after']} after.")
