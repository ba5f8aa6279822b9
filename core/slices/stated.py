"""What an uploaded file itself states about its sequence and plane.

A DICOM header names the series (``SeriesDescription``, ``ProtocolName``, ``SequenceName``), its
timing (``RepetitionTime``, ``EchoTime``, ``InversionTime``), whether contrast was given
(``ContrastBolusAgent``) and the slice's orientation (``ImageOrientationPatient``); a NIfTI volume's
affine gives the plane of the slice taken from it, and BraTS-style file names end in the sequence
(``..._flair.nii.gz``). Where the file says it, that is better evidence than the image model's
guess (:mod:`core.slices.acquisition`), so the training-coverage caution uses it and the page shows
both, with a note when they disagree. PNG and JPEG files state nothing.

The readers (:mod:`core.readers.dicom`, :mod:`core.readers.nifti`) put the raw fields in the slice's
``metadata``; this module only interprets them.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.data.sources import PLANES, SEQUENCE_LABELS, SEQUENCES
from core.readers.decoded import Slice
from core.readers.nifti import PLANE_OF_AXIS
from core.slices.acquisition import Acquisition

#: Header fields whose words name the sequence, in the order they are trusted.
TEXT_FIELDS: tuple[str, ...] = ("SeriesDescription", "ProtocolName", "SequenceName")
#: Below this |cosine| between the slice normal and the nearest patient axis the slice is oblique.
OBLIQUE_BELOW = 0.8

_FLAIR_WORDS = ("flair", "tirm", "darkfluid", "dark fluid")
#: Sequences the recogniser and the classifier do not know: a header naming one states "other".
_OTHER_WORDS = ("t2*", "t2star", "swi", "gre", "dwi", "adc", "trace", "perfusion", "pwi", "dti", "tof", "mra",
                "dsc", "asl", "localizer", "scout", "survey", "ep2d", "diff", "diffusion", "bold")
#: T1-weighted sequences named without "T1" (besides words starting with "t1").
_T1_WORDS = ("mprage", "spgr", "fspgr", "bravo", "tfl3d", "mp2rage", "vibe")
_CONTRAST_WORDS = ("ce", "c", "c+", "gd", "gad", "gado", "post", "postcontrast", "contrast", "postgad", "enhanced")


@dataclass(frozen=True)
class StatedAcquisition:
    """The sequence and plane a file states (each ``None`` when it does not), and where it says so.

    ``sequence`` is one of :data:`core.data.sources.SEQUENCES`, or ``"other"`` for a sequence the
    models do not know (diffusion, SWI, ...).
    """

    sequence: str | None
    plane: str | None
    sequence_evidence: str = ""
    plane_evidence: str = ""

    def label(self) -> str:
        """E.g. ``"coronal T1-CE"``, ``"T2"`` or ``"axial"`` (what is stated)."""
        sequence = {**SEQUENCE_LABELS, "other": "another sequence"}.get(self.sequence or "", "")
        return " ".join(part for part in (self.plane or "", sequence) if part)

    def evidence(self) -> str:
        """Where the file says it, e.g. ``"SeriesDescription 'COR T1 GAD'; ImageOrientationPatient"``."""
        return "; ".join(e for e in (self.sequence_evidence, self.plane_evidence) if e)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label(), "evidence": self.evidence()}


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s_\-/,;:()\[\].]+", text.lower()) if w]


def sequence_from_text(text: str, contrast_agent: bool = False) -> str | None:
    """The sequence a series name states: ``"flair"``, ``"t2"``, ``"t1ce"``, ``"t1"``, ``"other"``, or None.

    ``contrast_agent``: the header records a contrast agent (a T1 is then post-contrast).
    """
    low = text.lower()
    words = _words(text)
    t1_family = any(w.startswith("t1") for w in words)
    if any(w in low for w in _FLAIR_WORDS) and not t1_family:      # "T1 FLAIR" is T1-weighted
        return "flair"
    if any(w in _OTHER_WORDS or w.startswith(("t2*", "t2star", "swi", "dwi")) for w in words):
        return "other"
    if any(w == "t2" or re.fullmatch(r"t2w?(tse|fse|space|blade)?", w) for w in words):
        return "t2"
    t1 = [w for w in words if w.startswith(("t1", *_T1_WORDS))]
    if not t1:
        return None
    post = (contrast_agent or "+c" in low or "+gd" in low or any(w in _CONTRAST_WORDS for w in words)
            or any(re.fullmatch(r"t1w?(ce|c|gd|post|\+c|\+gd|\+)", w) for w in t1))
    pre = any(w in ("pre", "precontrast", "native", "nativ") for w in words)
    return "t1ce" if post and not pre else "t1"


def sequence_from_timing(tr: float | None, te: float | None, ti: float | None,
                         contrast_agent: bool = False) -> str | None:
    """The sequence its timing implies (ms), or None when it does not say: a long inversion time
    with a long echo is FLAIR, long TR and TE is T2, short TR and TE (or an inversion-prepared
    short echo) is T1."""
    if ti is not None and ti >= 1500 and (te is None or te >= 60):
        return "flair"
    if tr is not None and te is not None and tr >= 1800 and te >= 60 and (ti is None or ti < 300):
        return "t2"
    short_echo = te is not None and te <= 30
    if short_echo and ((tr is not None and tr <= 1200) or (ti is not None and 300 <= ti <= 1300)):
        return "t1ce" if contrast_agent else "t1"
    return None


def plane_from_orientation(orientation: Any) -> tuple[str | None, float]:
    """``(plane, cosine)`` of a DICOM ``ImageOrientationPatient`` (row then column direction
    cosines): the patient axis nearest the slice normal (x → sagittal, y → coronal, z → axial), and
    how close (1 = exactly); plane None when oblique (cosine under :data:`OBLIQUE_BELOW`) or unreadable."""
    try:
        v = np.asarray([float(x) for x in orientation], dtype=np.float64)
    except (TypeError, ValueError):
        return None, 0.0
    if v.shape != (6,) or not np.isfinite(v).all():
        return None, 0.0
    normal = np.cross(v[:3], v[3:])
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        return None, 0.0
    cosines = np.abs(normal) / length
    axis = int(np.argmax(cosines))
    cosine = float(cosines[axis])
    return (PLANE_OF_AXIS[axis] if cosine >= OBLIQUE_BELOW else None), cosine


def _number(value: str | None) -> float | None:
    try:
        out = float(str(value).strip().strip("[]").split(",")[0])
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _dicom_sequence(meta: dict[str, str]) -> tuple[str | None, str]:
    agent = bool(str(meta.get("ContrastBolusAgent", "")).strip())
    found, where = None, ""
    for key in TEXT_FIELDS:
        text = str(meta.get(key, "")).strip()
        found = sequence_from_text(text, agent) if text else None
        if found:
            where = f"{key} '{text[:60]}'"
            break
    else:
        timing = {k: _number(meta.get(k)) for k in ("RepetitionTime", "EchoTime", "InversionTime")}
        found = sequence_from_timing(timing["RepetitionTime"], timing["EchoTime"], timing["InversionTime"], agent)
        short = {"RepetitionTime": "TR", "EchoTime": "TE", "InversionTime": "TI"}
        where = "timing (" + ", ".join(f"{short[k]} {v:g} ms" for k, v in timing.items() if v is not None) + ")"
    if found is None:
        return None, ""
    return found, where + (" and ContrastBolusAgent" if agent and found == "t1ce" else "")


def _nifti_sequence(slice_: Slice) -> tuple[str | None, str]:
    description = str(slice_.metadata.get("description", "")).strip()
    if description:
        found = sequence_from_text(description)
        if found:
            return found, f"NIfTI description '{description[:60]}'"
    stem = re.sub(r"\.nii(\.gz)?$", "", slice_.name.lower())
    suffix = re.search(r"[_\-.](t1ce|t1c|t1gd|t1|t2|flair)$", stem)
    if suffix:
        found = {"t1c": "t1ce", "t1gd": "t1ce"}.get(suffix.group(1), suffix.group(1))
        return found, f"file name ending '_{suffix.group(1)}' (BraTS convention)"
    return None, ""


def stated_acquisition(slice_: Slice) -> StatedAcquisition | None:
    """What ``slice_``'s file states about its sequence and plane; None when it states neither."""
    meta = slice_.metadata
    sequence = plane = None
    sequence_evidence = plane_evidence = ""
    if slice_.source_format == "dicom":
        sequence, sequence_evidence = _dicom_sequence(meta)
        if meta.get("ImageOrientationPatient"):
            plane, cosine = plane_from_orientation(str(meta["ImageOrientationPatient"]).strip("[]").split(","))
            tilt = float(np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0))))
            plane_evidence = ("ImageOrientationPatient" + (f", {tilt:.0f}° off {plane}" if tilt >= 1 else "") if plane
                              else f"ImageOrientationPatient: oblique, {tilt:.0f}° off the nearest plane")
    elif slice_.source_format == "nifti":
        sequence, sequence_evidence = _nifti_sequence(slice_)
        if meta.get("plane") in PLANES and not str(meta.get("orientation", "")).startswith("unknown"):
            plane, plane_evidence = meta["plane"], f"NIfTI affine (slice along axis {meta.get('axis', '?')} of RAS+)"
    if sequence is None and plane is None:
        return None
    return StatedAcquisition(sequence, plane, sequence_evidence, plane_evidence)


def known_sequence(stated: StatedAcquisition | None) -> str | None:
    """The stated sequence when the models know it (one of :data:`SEQUENCES`)."""
    return stated.sequence if stated is not None and stated.sequence in SEQUENCES else None


def with_stated(recognised: Acquisition | None, stated: StatedAcquisition | None) -> Acquisition | None:
    """The acquisition the training-coverage caution should use: what the file states, certain, and
    the recognised sequence or plane where the file is silent; None when neither gives both."""
    sequence, plane = known_sequence(stated), stated.plane if stated is not None else None
    if sequence is None and plane is None:
        return recognised
    if recognised is None and (sequence is None or plane is None):
        return None

    def certain(options: tuple[str, ...], chosen: str) -> dict[str, float]:
        return {o: float(o == chosen) for o in options}

    return Acquisition(
        sequence or recognised.sequence, 1.0 if sequence else recognised.sequence_confidence,
        plane or recognised.plane, 1.0 if plane else recognised.plane_confidence,
        certain(SEQUENCES, sequence) if sequence else recognised.sequence_probabilities,
        certain(PLANES, plane) if plane else recognised.plane_probabilities)


def unknown_sequence_note(stated: StatedAcquisition | None, decision_label: str) -> str | None:
    """The caution for a file that states a sequence the models were never trained on (DWI, SWI...)."""
    if stated is None or stated.sequence != "other":
        return None
    return (f"The file states a sequence the classifier was never trained on ({stated.sequence_evidence}); it knows "
            f"T1, T1-CE, T2 and FLAIR only. Treat \"{decision_label}\" with caution.")


def disagreement(recognised: Acquisition | None, stated: StatedAcquisition | None) -> str | None:
    """E.g. ``"the image model recognised axial T2"`` when it confidently names another sequence or
    plane than the file states; None when they agree or one is silent."""
    if recognised is None or stated is None or not recognised.confident:
        return None
    differs = ((known_sequence(stated) and known_sequence(stated) != recognised.sequence)
               or (stated.plane and stated.plane != recognised.plane))
    return f"the image model recognised {recognised.label()}" if differs else None
