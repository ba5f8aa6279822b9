"""core.slices.stated: what a DICOM or NIfTI file states about its sequence and plane, and how the
pipeline, the report and the batch table use it beside the image model's recognition."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.readers.slice import read_slice
from core.slices.acquisition import Acquisition
from core.slices.stated import (StatedAcquisition, disagreement, plane_from_orientation, sequence_from_text,
                                sequence_from_timing, stated_acquisition, with_stated)
from upload_files import make_dicom, make_nifti
from stand_ins import NoTumour, StandInAcquisition, acquisition

AXIAL, CORONAL, SAGITTAL = [1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1]


def head(side: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    return np.where((yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side / 2.5) ** 2, 800 + 3 * xx, 0).astype(np.uint16)


@pytest.mark.parametrize("text, sequence", [
    ("AX T2 FLAIR", "flair"), ("t2_tirm_tra_dark-fluid", "flair"), ("T1 FLAIR SAG", "t1"),
    ("T2W_TSE", "t2"), ("t2_tse_tra", "t2"), ("Ax T2", "t2"),
    ("Ax T1 +C", "t1ce"), ("SAG T1 MPRAGE POST", "t1ce"), ("COR T1 GAD", "t1ce"), ("T1ce", "t1ce"),
    ("SYNTHETIC T1 post-contrast coronal", "t1ce"), ("ax t1 c+", "t1ce"),
    ("T1W_SE", "t1"), ("t1_mprage_sag_p2_iso", "t1"), ("T1 PRE", "t1"), ("T1 post pre-scan", "t1"),
    ("DWI", "other"), ("ep2d_diff_3scan_trace", "other"), ("AX SWI", "other"), ("T2*", "other"),
    ("localizer", "other"), ("BRAIN ROUTINE", None), ("", None),
])
def test_sequence_from_the_series_name(text, sequence):
    assert sequence_from_text(text) == sequence


def test_a_recorded_contrast_agent_makes_a_t1_post_contrast_and_nothing_else():
    assert sequence_from_text("SAG T1 MPRAGE", contrast_agent=True) == "t1ce"
    assert sequence_from_text("AX T2", contrast_agent=True) == "t2"
    assert sequence_from_text("AX FLAIR", contrast_agent=True) == "flair"


@pytest.mark.parametrize("tr, te, ti, agent, sequence", [
    (9000, 120, 2500, False, "flair"), (4000, 100, None, False, "t2"), (500, 12, None, False, "t1"),
    (500, 12, None, True, "t1ce"), (2300, 3, 900, False, "t1"), (2300, 3, None, False, None),
    (None, None, None, False, None), (4000, 100, 150, False, "t2"),
])
def test_sequence_from_timing(tr, te, ti, agent, sequence):
    assert sequence_from_timing(tr, te, ti, agent) == sequence


def test_plane_from_image_orientation_patient():
    assert plane_from_orientation(AXIAL) == ("axial", 1.0)
    assert plane_from_orientation(CORONAL) == ("coronal", 1.0)
    assert plane_from_orientation(SAGITTAL) == ("sagittal", 1.0)
    tilted = [1, 0, 0, 0, np.cos(0.3), np.sin(0.3)]                      # axial tilted 17 degrees
    plane, cosine = plane_from_orientation(tilted)
    assert plane == "axial" and cosine == pytest.approx(np.cos(0.3))
    assert plane_from_orientation([1, 0, 0, 0, 0.7071, 0.7071])[0] is None  # oblique at 45 degrees
    for bad in ([1, 0, 0], ["a"] * 6, [0] * 6, [np.nan] * 6, None):
        assert plane_from_orientation(bad)[0] is None


def test_a_dicom_states_its_sequence_and_plane_with_the_evidence():
    data = make_dicom(head(), SeriesDescription="COR T1 GAD", ImageOrientationPatient=CORONAL)
    slice_ = read_slice(data, "scan.dcm")
    assert slice_.metadata["ImageOrientationPatient"] == "1,0,0,0,0,-1"
    stated = stated_acquisition(slice_)
    assert stated.sequence == "t1ce" and stated.plane == "coronal" and stated.label() == "coronal T1-CE"
    assert stated.sequence_evidence == "SeriesDescription 'COR T1 GAD'"
    assert stated.plane_evidence == "ImageOrientationPatient"
    tilted = make_dicom(head(), SeriesDescription="AX T2", ImageOrientationPatient=[1, 0, 0, 0, np.cos(0.3), np.sin(0.3)])
    assert stated_acquisition(read_slice(tilted, "t.dcm")).plane_evidence == "ImageOrientationPatient, 17° off axial"


def test_a_dicom_without_words_is_read_by_its_timing_and_an_oblique_one_has_no_plane():
    data = make_dicom(head(), SeriesDescription="BRAIN", RepetitionTime=9000, EchoTime=120, InversionTime=2500,
                      ImageOrientationPatient=[1, 0, 0, 0, 0.7071, 0.7071])
    stated = stated_acquisition(read_slice(data, "scan.dcm"))
    assert stated.sequence == "flair" and stated.plane is None
    assert stated.sequence_evidence == "timing (TR 9000 ms, TE 120 ms, TI 2500 ms)"
    assert stated.plane_evidence == "ImageOrientationPatient: oblique, 45° off the nearest plane"
    assert stated.label() == "FLAIR"
    agent = make_dicom(head(), SeriesDescription="SAG T1 MPRAGE", ContrastBolusAgent="Gadovist")
    stated = stated_acquisition(read_slice(agent, "scan.dcm"))
    assert stated.sequence == "t1ce" and stated.sequence_evidence.endswith("and ContrastBolusAgent")


def test_files_that_state_nothing():
    from io import BytesIO

    from PIL import Image

    assert stated_acquisition(read_slice(make_dicom(head(), SeriesDescription="BRAIN"), "x.dcm")) is None
    png = BytesIO()
    Image.fromarray((head() // 8).astype(np.uint8)).save(png, format="PNG")
    assert stated_acquisition(read_slice(png.getvalue(), "glioma_axial_flair.png")) is None   # names of images: no


def test_a_nifti_states_its_plane_by_its_affine_and_a_brats_name_its_sequence():
    volume = np.random.default_rng(0).random((20, 24, 16)).astype(np.float32)
    data = make_nifti(volume, np.diag([1.0, 1.0, 1.0, 1.0]), gz=True)
    stated = stated_acquisition(read_slice(data, "BraTS2021_00000_flair.nii.gz", axis=1, index=10))
    assert stated.sequence == "flair" and stated.plane == "coronal"
    assert "BraTS convention" in stated.sequence_evidence and "axis 1" in stated.plane_evidence
    t1ce = stated_acquisition(read_slice(data, "case_t1ce.nii.gz", axis=2, index=5))
    assert (t1ce.sequence, t1ce.plane) == ("t1ce", "axial")
    plain = stated_acquisition(read_slice(data, "volume.nii.gz", axis=0, index=3))
    assert (plain.sequence, plain.plane) == (None, "sagittal") and plain.label() == "sagittal"


def test_a_nifti_description_names_the_sequence():
    import gzip

    import nibabel as nib

    image = nib.Nifti1Image(np.ones((8, 9, 5), np.float32), np.eye(4))
    image.header["descrip"] = b"AX T2 FLAIR"
    data = gzip.compress(image.to_bytes())
    slice_ = read_slice(data, "volume.nii.gz", axis=2, index=2)
    assert slice_.metadata["description"] == "AX T2 FLAIR"
    assert stated_acquisition(slice_).sequence == "flair"


def test_with_stated_keeps_what_the_file_says_and_fills_in_from_the_model():
    recognised = acquisition(0.9, 0.95)                                   # axial FLAIR
    both = with_stated(recognised, StatedAcquisition("t1ce", "coronal", "d", "o"))
    assert (both.sequence, both.plane, both.sequence_confidence, both.plane_confidence) == ("t1ce", "coronal", 1.0, 1.0)
    assert both.sequence_probabilities == {"t1": 0.0, "t1ce": 1.0, "t2": 0.0, "flair": 0.0} and both.confident
    plane_only = with_stated(recognised, StatedAcquisition(None, "sagittal"))
    assert (plane_only.sequence, plane_only.sequence_confidence, plane_only.plane) == ("flair", 0.9, "sagittal")
    other = with_stated(recognised, StatedAcquisition("other", None, "SeriesDescription 'DWI'"))
    assert other == recognised                                            # nothing the models know
    assert with_stated(None, StatedAcquisition("t2", None)) is None       # no plane from anyone
    assert with_stated(None, StatedAcquisition("t2", "axial")).label() == "axial T2"
    assert with_stated(recognised, None) is recognised


def test_disagreement_only_when_the_model_is_sure_of_something_else():
    stated = StatedAcquisition("t1ce", "coronal")
    assert disagreement(acquisition(0.97, 0.99), stated) == "the image model recognised axial FLAIR"
    assert disagreement(acquisition(0.4, 0.99), stated) is None           # unsure: no claim
    agreeing = Acquisition("t1ce", 0.9, "coronal", 0.9, {}, {})
    assert disagreement(agreeing, stated) is None
    assert disagreement(agreeing, StatedAcquisition(None, "coronal")) is None


def _analyzer():
    from core.slices.pipeline import Analyzer
    from stand_ins import SquareSegmenter

    return Analyzer(NoTumour(), SquareSegmenter(), acquisition=StandInAcquisition())   # recognises axial FLAIR


def test_the_coverage_caution_follows_the_file_and_the_report_and_table_show_both():
    from core.slices.batch import BatchRow
    from core.slices.findings import stated_line
    from core.slices.report import build_report, report_json

    # the stand-in classifier saw 997 axial T1 "no tumour" slices and 3 axial FLAIR ones
    axial_t1 = read_slice(make_dicom(head(), SeriesDescription="AX T1", ImageOrientationPatient=AXIAL), "t1.dcm")
    result = _analyzer().analyze(axial_t1)
    assert result.acquisition["label"] == "axial FLAIR" and result.stated_acquisition["label"] == "axial T1"
    assert result.coverage_note is None                                   # the file's axial T1 is well covered
    line = stated_line(result)
    assert line.startswith("axial T1 (SeriesDescription 'AX T1'; ImageOrientationPatient")
    assert line.endswith("the image model recognised axial FLAIR; the training-coverage caution follows the file")
    report = json.loads(report_json(build_report(axial_t1, result)))
    assert report["acquisition"]["label"] == "axial FLAIR"
    assert report["acquisition"]["stated"]["label"] == "axial T1"
    assert report["acquisition"]["stated"]["disagreement"] == "the image model recognised axial FLAIR"
    assert report["acquisition"]["stated"]["evidence"].startswith("SeriesDescription 'AX T1'; ImageOrientationPatient")

    row = BatchRow("t1.dcm", "ok", result=result).table_row()
    assert row["stated by the file"] == "axial T1" and row["sequence/plane"].startswith("axial FLAIR")

    coronal = read_slice(make_dicom(head(), SeriesDescription="COR T2", ImageOrientationPatient=CORONAL), "c.dcm")
    note = _analyzer().analyze(coronal).coverage_note
    assert note.startswith("The classifier was never trained on a coronal T2 slice labelled No tumour")

    dwi = read_slice(make_dicom(head(), SeriesDescription="AX DWI b1000", ImageOrientationPatient=AXIAL), "d.dcm")
    note = _analyzer().analyze(dwi).coverage_note
    assert note.startswith("The file states a sequence the classifier was never trained on (SeriesDescription "
                           "'AX DWI b1000'); it knows T1, T1-CE, T2 and FLAIR only.")


def test_without_a_statement_the_model_decides_the_caution_as_before():
    from core.slices.findings import stated_line

    result = _analyzer().analyze(read_slice(make_dicom(head(), SeriesDescription="BRAIN"), "b.dcm"))
    assert result.stated_acquisition is None and stated_line(result) is None
    assert result.coverage_note.startswith("The classifier saw few axial FLAIR slices labelled No tumour")
