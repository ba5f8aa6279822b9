"""Report: the PDF opens and has every item; the JSON too; DICOM patient identifiers stay out unless asked."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from core import config
from core.io import read_slice
from core.pipeline import AnalysisOptions
from core.report import WITHHELD, build_report, identifier_secrets, report_json, report_pdf, scrub
from core.version import APP_VERSION

NAME, PATIENT_ID, BIRTH = "Doe^Jane", "PID-424242", "19700101"


def dicom_with_identity() -> bytes:
    """A synthetic head slice stored as a DICOM that names a (fictitious) patient."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    from core.samples import synthetic_brain_slice

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


def test_scrub_matches_whole_words_only():
    secrets = identifier_secrets({"PatientName": "Li^Anna", "PatientID": "X12"})
    assert scrub("anna_li_X12.dcm", secrets) == f"{WITHHELD}_li_{WITHHELD}.dcm"   # "Li" is too short to match
    assert scrub("Annalise.png", secrets) == "Annalise.png"
    assert scrub({"k": ["Anna"]}, secrets) == {"k": [WITHHELD]}


def test_report_of_a_synthetic_png_without_segmentation(analyzer):
    from core.io import read_slice_file

    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    name = next(f["name"] for f in manifest["files"] if f["name"].endswith(".png") and f["kind"] == "slice")
    slice_ = read_slice_file(config.SAMPLE_DIR / name)
    result = analyzer.analyze(slice_, AnalysisOptions(gradcam=False))
    report = build_report(slice_, result, synthetic=True)
    text, _ = pdf_text(report_pdf(report))
    assert "synthetic sample" in text and "none in the file" in text
