"""Synthetic demo inputs (core.data.samples): deterministic, readable by core.readers.slice, sensible masks and labels."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from core import config

from core.data import samples
from core.readers.slice import read_slice


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("samples")
    return out, samples.generate(out, seed=7)


def arrays(folder: Path) -> dict[str, np.ndarray]:
    """Decoded pixel/voxel arrays of every image file under ``folder``."""
    out: dict[str, np.ndarray] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.suffix == ".png":
            out[rel] = np.asarray(Image.open(path))
        elif path.name.endswith(".nii.gz"):
            out[rel] = np.asanyarray(nib.load(path).dataobj)
        elif path.suffix == ".dcm":
            out[rel] = read_slice(path.read_bytes(), path.name).image
    return out


def test_generation_is_deterministic(generated, tmp_path):
    out, entries = generated
    again = samples.generate(tmp_path, seed=7)
    assert again == entries
    first, second = arrays(out), arrays(tmp_path)
    assert first.keys() == second.keys() and len(first) == 13
    for name in first:
        assert first[name].dtype == second[name].dtype and np.array_equal(first[name], second[name]), name
    assert not np.array_equal(samples.synthetic_brain_slice("glioma", seed=8).image,
                              samples.synthetic_brain_slice("glioma", seed=7).image)


def test_manifest_shape_and_order(generated):
    out, entries = generated
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generated_by"] == "python -m core.samples"
    assert manifest["files"] == entries
    kinds = [e["kind"] for e in entries]
    assert kinds == sorted(kinds, key=["slice", "volume", "brats_case"].index)
    first_tumour = next(e for e in entries if e["kind"] == "slice" and e["class"] != "notumor")
    assert first_tumour["name"] == "synthetic_glioma_axial.png"
    slice_classes = {e["class"] for e in entries if e["kind"] == "slice"}
    assert slice_classes == set(config.CLASS_NAMES)
    for entry in entries:
        assert entry["synthetic"] is True
        assert (out / entry["name"]).exists(), entry["name"]
        assert entry["mask"] is None or (out / entry["mask"]).is_file()
        assert entry["class"] in (*config.CLASS_NAMES, None)


def test_slices_read_back_with_spacing(generated):
    out, entries = generated
    for entry in (e for e in entries if e["kind"] == "slice"):
        path = out / entry["name"]
        sl = read_slice(path.read_bytes(), path.name)
        assert sl.shape == (256, 256)
        assert 0.0 <= sl.image.min() and sl.image.max() <= 1.0 and sl.image.std() > 0.1
        expected = tuple(entry["spacing_mm"]) if entry["spacing_mm"] else None
        assert sl.spacing_mm == expected
    dicom = read_slice((out / "synthetic_meningioma_coronal.dcm").read_bytes(), "m.dcm")
    assert dicom.spacing_mm == (0.5, 0.5) and dicom.source_format == "dicom"
    assert dicom.identifiers["PatientName"] == "SYNTHETIC^PATIENT"
    assert dicom.identifiers["PatientID"] == "SYNTH-0001"
    assert dicom.metadata["Modality"] == "MR" and "slope 0.25" in dicom.metadata["rescale"]


def test_volume_reads_back_with_pixdim(generated):
    out, _ = generated
    data = (out / "synthetic_volume_axial.nii.gz").read_bytes()
    axial = read_slice(data, "v.nii.gz", axis=2, index=12)
    assert axial.spacing_mm == (1.0, 1.0) and axial.shape == (128, 128)
    assert read_slice(data, "v.nii.gz", axis=0, index=64).spacing_mm == (5.0, 1.0)
    img = nib.load(out / "synthetic_volume_axial.nii.gz")
    assert img.shape == samples.VOLUME_SHAPE
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert tuple(float(z) for z in img.header.get_zooms()) == (1.0, 1.0, 5.0)


def test_volume_tumour_sits_in_the_middle_slices():
    _, labels = samples.synthetic_volume(seed=7)
    per_slice = (labels > 0).sum(axis=(0, 1))
    present = np.flatnonzero(per_slice)
    assert 0 < present.min() and present.max() < labels.shape[2] - 1
    assert abs(int(np.argmax(per_slice)) - labels.shape[2] // 2) <= 4


def test_masks_binary_non_empty_and_inside_the_head(generated):
    out, entries = generated
    for entry in (e for e in entries if e["kind"] == "slice"):
        if entry["class"] == "notumor":
            assert entry["mask"] is None
            assert not list(out.glob("synthetic_no_tumour*mask*"))
            continue
        mask = np.asarray(Image.open(out / entry["mask"]))
        assert mask.shape == (256, 256) and set(np.unique(mask)) == {0, 255}
        image = read_slice((out / entry["name"]).read_bytes(), entry["name"]).image
        head = ndimage.binary_fill_holes(ndimage.binary_opening(image > 0.15, iterations=2))
        assert np.all(head[mask > 0]), entry["name"]
    for cls in ("glioma", "meningioma", "pituitary"):
        sample = samples.synthetic_brain_slice(cls, seed=7)
        assert sample.mask.any() and np.all(sample.intracranial[sample.mask]), cls
    assert not samples.synthetic_brain_slice("notumor", seed=7).mask.any()


def test_class_typical_appearance():
    glioma = samples.synthetic_brain_slice("glioma", seed=7)
    rim, core = glioma.labels == 4, glioma.labels == 1
    assert core.any() and glioma.image[rim].mean() > glioma.image[core].mean() + 0.3
    meningioma = samples.synthetic_brain_slice("meningioma", seed=7)
    skull = ndimage.binary_dilation(~meningioma.intracranial, iterations=2)
    assert (meningioma.mask & skull).any(), "a meningioma is extra-axial: it touches the skull"
    pituitary = samples.synthetic_brain_slice("pituitary", seed=7)
    rows, cols = np.nonzero(pituitary.mask)
    assert pituitary.view == "sagittal" and rows.mean() > 160 and abs(cols.mean() - 128) < 40
    assert pituitary.mask.sum() < glioma.mask.sum()


def test_brats_case_labels_and_modalities(generated):
    out, entries = generated
    case = samples.synthetic_brats_case(seed=7)
    assert set(case) == {"flair", "t1", "t1ce", "t2", "seg"}
    seg = case["seg"]
    assert set(np.unique(seg)) == {0, 1, 2, 4}
    ncr, et, ed = seg == 1, seg == 4, seg == 2
    ring = ndimage.binary_dilation(ncr) & ~ncr
    assert np.all(et[ring]), "the enhancing rim must surround the necrotic core"
    brain = case["t1"] != 0
    assert np.all(brain[seg > 0])
    for name in ("flair", "t1", "t1ce", "t2"):
        assert case[name].shape == seg.shape and np.array_equal(case[name] != 0, brain)
    mean = {m: {lab: case[m][seg == lab].mean() for lab in (1, 2, 4)} for m in ("flair", "t1ce")}
    assert mean["t1ce"][4] > mean["t1ce"][1] + 200
    assert mean["flair"][2] > case["flair"][brain & (seg == 0)].mean() + 150
    folder = out / next(e["name"] for e in entries if e["kind"] == "brats_case")
    affines = {p.name: nib.load(p).affine for p in folder.glob("*.nii.gz")}
    assert len(affines) == 5
    assert all(np.allclose(a, samples.ras_affine(seg.shape, (1, 1, 1))) for a in affines.values())
    assert np.array_equal(np.asanyarray(nib.load(folder / "SYNTH_0001_seg.nii.gz").dataobj), seg)


def test_committed_manifest_matches_generate(generated):
    _, entries = generated
    committed = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    assert [e["name"] for e in committed["files"]] == [e["name"] for e in entries]
    assert [e.get("mask") for e in committed["files"]] == [e["mask"] for e in entries]
    for entry in committed["files"]:
        assert (config.SAMPLE_DIR / entry["name"]).exists(), entry["name"]
    total = sum(p.stat().st_size for p in config.SAMPLE_DIR.rglob("*") if p.is_file())
    assert total < 3 * 2**20
