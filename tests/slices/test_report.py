"""Report: the PDF opens and has every item; the JSON too; DICOM patient identifiers stay out unless asked."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from core import config
from core.readers.slice import read_slice
from core.slices.pipeline import AnalysisOptions
from core.slices.report import WITHHELD, build_report, identifier_secrets, report_json, report_pdf, scrub
from core.version import APP_VERSION

NAME, PATIENT_ID, BIRTH = "Doe^Jane", "PID-424242", "19700101"


def dicom_with_identity() -> bytes:
    """A synthetic head slice stored as a DICOM that names a (fictitious) patient."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    from core.data.samples import synthetic_brain_slice

    image = np.round(synthetic_brain_slice("meningioma").image * 1000).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    ds.InstitutionName = "Springfield General"
    ds.Modality, ds.SeriesDescription = "MR", "T1 post-contrast"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = image.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def analysed(analyzer):
    slice_ = read_slice(dicom_with_identity(), "Doe_Jane_PID-424242.dcm")
    assert slice_.identifiers["PatientName"] == NAME
    result = analyzer.analyze(slice_, AnalysisOptions(segment_anyway=True))
    result.guard = {"accepted": True, "reason": "", "kind": "mri", "score": 10.0, "limit": 34.0, "overridden": False}
    return slice_, result


def pdf_text(data: bytes) -> tuple[str, int]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages), sum(len(p.images) for p in reader.pages)


def test_pdf_opens_and_has_every_item_without_identifiers(analysed):
    slice_, result = analysed
    data = report_pdf(build_report(slice_, result))
    assert data.startswith(b"%PDF")
    text, n_images = pdf_text(data)
    flat = " ".join(text.split())
    for needed in ("Input slice", "Decision", "Calibrated probability", "Before calibration", "normalised entropy",
                   "Member votes", "Grad-CAM: average", "Segmentation overlay", "Binary mask", "Measurements",
                   "Warnings", "Models", "Weights sha256", "Runs on", "LiteRT", "created", f"version {APP_VERSION}",
                   "expected calibration error", "Input guard", "Training-set look-up", "mm"):
        assert needed.lower() in flat.lower(), needed
    assert result.decision_label in flat
    for name, sha in result.model_versions.items():
        assert name in flat and sha in flat.replace(" ", "")
    for member in result.member_votes:
        assert f"Grad-CAM: {member}" in flat
    assert n_images >= 8                        # input, average CAM, overlay, mask, four member CAMs
    for secret in ("Doe", "Jane", PATIENT_ID, BIRTH, "Springfield"):
        assert secret.lower() not in flat.lower(), secret
    assert "withheld" in flat


def test_identifiers_appear_only_when_ticked(analysed):
    slice_, result = analysed
    text, _ = pdf_text(report_pdf(build_report(slice_, result, include_identifiers=True)))
    assert PATIENT_ID in text and "Doe" in text


def test_json_report_has_images_and_no_identifiers(analysed):
    slice_, result = analysed
    raw = report_json(build_report(slice_, result))
    payload = json.loads(raw)
    assert {"input", "gradcam_average", "overlay", "mask"} <= set(payload["images"])
    assert payload["decision"]["calibration"]["ece_before"] is not None
    assert payload["measurements"]["units"].startswith("mm")
    assert all({"feature", "value", "unit"} <= set(r) for r in payload["measurements"]["rows"])
    assert payload["report"]["app_version"] == APP_VERSION and payload["report"]["created_utc"]
    assert len(payload["members"]) == 4 and all(len(m["sha256"]) == 64 for m in payload["models"])
    text = json.dumps({k: v for k, v in payload.items() if k != "images"})   # base64 can spell anything
    for secret in ("Doe", "Jane", PATIENT_ID, BIRTH, "Springfield"):
        assert secret not in text, secret
    assert payload["input"]["file"] == f"{WITHHELD}_{WITHHELD}_{WITHHELD}.dcm"
    recognised = payload["acquisition"]
    if result.acquisition is None:
        assert recognised is None
    else:
        assert recognised["label"] == result.acquisition["label"] and recognised["model"] == "sequence_plane"
        assert recognised["model_sha256"] == result.model_versions["sequence_plane"]
    assert payload["coverage_note"] == result.coverage_note
    assert (payload["lesion_check"] is None) == (result.lesion_check is None)


def test_scrub_matches_whole_words_only():
    secrets = identifier_secrets({"PatientName": "Li^Anna", "PatientID": "X12"})
    assert scrub("anna_li_X12.dcm", secrets) == f"{WITHHELD}_li_{WITHHELD}.dcm"   # "Li" is too short to match
    assert scrub("Annalise.png", secrets) == "Annalise.png"
    assert scrub({"k": ["Anna"]}, secrets) == {"k": [WITHHELD]}


def test_report_of_a_synthetic_png_without_segmentation(analyzer):
    from core.readers.slice import read_slice_file

    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    name = next(f["name"] for f in manifest["files"] if f["name"].endswith(".png") and f["kind"] == "slice")
    slice_ = read_slice_file(config.SAMPLE_DIR / name)
    result = analyzer.analyze(slice_, AnalysisOptions(gradcam=False))
    report = build_report(slice_, result, synthetic=True)
    text, _ = pdf_text(report_pdf(report))
    assert "synthetic sample" in text and "none in the file" in text


# ----------------------------------------------------------------------------- sequence/plane, coverage, lesion check

def constructed(acquisition: dict | None = None, coverage: str | None = None,
                lesion: dict | None = None) -> tuple:
    """A slice and a hand-built "no tumour" result (no models run), with the given new fields."""
    from core.readers.decoded import Slice
    from core.imaging.morphology import measure_mask
    from core.slices.pipeline import SliceResult

    image = np.zeros((96, 96), np.float32)
    image[20:76, 20:76] = 0.5
    mask = np.zeros(image.shape, bool)
    mask[40:52, 44:58] = True
    flagged = bool(lesion and lesion["flagged"])
    versions = {"stand_in": "0" * 64, "sequence_plane": "a" * 64, "lesion_crosscheck": "b" * 64,
                "lesion_detector": "c" * 64}
    result = SliceResult(
        name="phantom.png", shape=image.shape, classes=list(config.CLASS_NAMES),
        probabilities=[0.02, 0.03, 0.9, 0.05], decision="notumor", confidence=0.9,
        member_probabilities={"m1": [0.02, 0.03, 0.9, 0.05]}, member_votes={"m1": "notumor"}, agreement=1.0,
        segmented=flagged, spacing_mm=None, spacing_source="unknown",
        features=measure_mask(mask, None) if flagged else None, warnings=[], model_versions=versions,
        timings_ms={}, mask=mask if flagged else None, acquisition=acquisition, coverage_note=coverage,
        lesion_check=lesion)
    result.warnings = ([coverage] if coverage else []) + (["Possible lesion: the classifier ..."] if flagged else [])
    result.caution = bool(coverage) or flagged
    return Slice(image, None, "png", "phantom.png"), result


def acquisition_dict(sequence_confidence: float = 0.97, plane_confidence: float = 0.99) -> dict:
    from core.slices.acquisition import Acquisition

    return Acquisition("flair", sequence_confidence, "axial", plane_confidence,
                       {"t1": 0.01, "t1ce": 0.01, "t2": 0.01, "flair": sequence_confidence},
                       {"axial": plane_confidence, "coronal": 0.005, "sagittal": 0.005}).to_json()


COVERAGE = ("The classifier saw few axial FLAIR slices labelled No tumour in training: 12 of 4000. "
            "Treat this decision with caution.")
LESION = {"flagged": True, "confidence": 0.91, "area_fraction": 0.0182,
          "rule": {"min_confidence": 0.8, "min_area_fraction": 0.005}, "model": "lesion_detector"}


def test_report_json_has_acquisition_coverage_and_lesion_check():
    slice_, result = constructed(acquisition_dict(), COVERAGE, LESION)
    payload = json.loads(report_json(build_report(slice_, result)))
    acq = payload["acquisition"]
    assert acq["label"] == "axial FLAIR" and acq["sequence"] == "flair" and acq["plane"] == "axial"
    assert acq["sequence_confidence"] == 0.97 and acq["plane_confidence"] == 0.99 and acq["confident"] is True
    assert acq["text"] == "axial FLAIR (sequence 0.97, plane 0.99)"
    assert acq["model"] == "sequence_plane" and acq["model_sha256"] == "a" * 64
    assert payload["coverage_note"] == COVERAGE
    check = payload["lesion_check"]
    assert check["possible_lesion"] is True and check["confidence"] == 0.91 and check["area_fraction"] == 0.0182
    assert check["rule"] == LESION["rule"] and check["rule_sha256"] == "b" * 64
    assert check["evidence_model"] == "lesion_detector" and check["evidence_model_sha256"] == "c" * 64
    assert check["evidence_by"] == "the lesion detector"
    assert check["figures"] == "mean confidence 0.91, 1.8 % of the head"
    assert payload["decision"]["label"] == "No tumour" and payload["decision"]["caution"] is True
    assert payload["images"]["overlay"]["caption"] == "Possible lesion outline (lesion detector)"
    result.timings_ms["segment_ms"] = 5.0            # asked to segment anyway: the outline is the ResUNet's
    assert build_report(slice_, result).captions["overlay"] == "Segmentation overlay"


def test_report_pdf_shows_them_beside_the_decision():
    slice_, result = constructed(acquisition_dict(), COVERAGE, LESION)
    text, _ = pdf_text(report_pdf(build_report(slice_, result)))
    flat = " ".join(text.split())
    assert "Sequence and plane axial FLAIR (sequence 0.97, plane 0.99); recognised by sequence_plane" in flat
    assert "Training coverage: The classifier saw few axial FLAIR slices labelled No tumour" in flat
    assert "POSSIBLE LESION" in flat
    assert "strongest region of lesion_detector: mean confidence 0.91, 1.8 % of the head" in flat
    assert "confidence >= 0.8 and area >= 0.5 %" in flat
    assert "Possible lesion outline (lesion detector)" in flat
    decision, members = flat.index("Decision"), flat.index("Member votes")
    assert decision < flat.index("Sequence and plane") < members           # near the decision
    assert decision < flat.index("Training coverage") < members


def test_report_pdf_says_what_the_file_states_before_the_recognition():
    from core.slices.stated import StatedAcquisition

    slice_, result = constructed(acquisition_dict(), COVERAGE, LESION)
    result.stated_acquisition = StatedAcquisition("t1ce", "coronal", "SeriesDescription 'COR T1 GAD'",
                                                  "ImageOrientationPatient").to_json()
    report = build_report(slice_, result)
    assert report.data["acquisition"]["stated"]["disagreement"] == "the image model recognised axial FLAIR"
    flat = " ".join(pdf_text(report_pdf(report))[0].split())
    assert ("Sequence and plane File states coronal T1-CE (SeriesDescription 'COR T1 GAD'; ImageOrientationPatient); "
            "the image model recognised axial FLAIR. axial FLAIR (sequence 0.97, plane 0.99); recognised by "
            "sequence_plane") in flat
    result.acquisition = None                                  # no recogniser: the file's word alone
    flat = " ".join(pdf_text(report_pdf(build_report(slice_, result)))[0].split())
    assert "File states coronal T1-CE (SeriesDescription 'COR T1 GAD'; ImageOrientationPatient). Not recognised" in flat


def test_report_says_unsure_and_not_flagged():
    lesion = {**LESION, "flagged": False, "confidence": 0.42, "area_fraction": 0.003}
    slice_, result = constructed(acquisition_dict(0.41, 0.93), None, lesion)
    report = build_report(slice_, result)
    assert report.data["acquisition"]["confident"] is False and report.data["coverage_note"] is None
    assert report.data["lesion_check"]["possible_lesion"] is False
    flat = " ".join(pdf_text(report_pdf(report))[0].split())
    assert "axial FLAIR (sequence 0.41, plane 0.93) - UNSURE" in flat
    assert "no lesion flagged (strongest region of lesion_detector: mean confidence 0.42, 0.3 % of the head" in flat
    assert "POSSIBLE LESION" not in flat and "Training coverage" not in flat


def test_report_without_recogniser_or_rule():
    slice_, result = constructed()
    report = build_report(slice_, result)
    assert report.data["acquisition"] is None and report.data["coverage_note"] is None
    assert report.data["lesion_check"] is None
    flat = " ".join(pdf_text(report_pdf(report))[0].split())
    assert "Sequence and plane Not recognised" in flat and "Lesion cross-check Not run" in flat


def test_report_names_the_segmenter_when_its_region_was_weighed():
    slice_, result = constructed(None, None, {**LESION, "model": "resunet"})
    report = build_report(slice_, result)
    check = report.data["lesion_check"]
    assert check["evidence_by"] == "the segmenter" and check["figures"] == "mean confidence 0.91, 1.8 % of the slice"
    assert report.captions["overlay"] == "Possible lesion outline (segmenter)"
    flat = " ".join(pdf_text(report_pdf(report))[0].split())
    assert "strongest region of resunet: mean confidence 0.91, 1.8 % of the slice" in flat
    assert "but the segmenter outlines a confident region" in flat
