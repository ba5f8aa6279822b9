"""core.volumes (case, views, regions, nifti_export, mesh): reading BraTS cases in three conventions, orientation, volumes,
comparison with the ground truth, label export and meshes. Synthetic files are written with
nibabel into tmp_path; one real-data test reads a case of ``data_dir()/brats`` when present."""
from __future__ import annotations

import gzip
import io
import math
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core import config

from core.volumes import case as volume
from core.errors import CaseError, CorruptFile, EmptyFile, ImageTooLarge, UnsupportedFile
from core.volumes.mesh import brain_surface, region_mesh
from core.volumes.case import identify_file, read_case, read_case_folder, read_case_zip
from core.volumes.nifti_export import labels_in_input_orientation, prediction_nifti, save_labels_nifti
from core.volumes.regions import compare_to_truth, label_volumes_cm3, region_dice, region_masks
from core.volumes.views import apply_window, largest_tumour_slice, plane_size, slice_view, view_shape, window_presets

SHAPE = (20, 24, 16)
AFFINE = np.array(
    [[1.0, 0, 0, -10.0], [0, 1.0, 0, -12.0], [0, 0, 2.0, -16.0], [0, 0, 0, 1.0]]
)  # RAS, 1 x 1 x 2 mm
SUFFIX_2021 = {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"}
SUFFIX_2023 = {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"}


# --------------------------------------------------------------------------- helpers


def synthetic_case(shape=SHAPE, seed=0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four distinct uint8 modalities (0 outside an ellipsoid 'brain') and 0/1/2/4 labels."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    brain = ((x - shape[0] / 2) / (shape[0] / 2.2)) ** 2 + ((y - shape[1] / 2) / (shape[1] / 2.2)) ** 2 + (
        (z - shape[2] / 2) / (shape[2] / 2.2)
    ) ** 2 <= 1
    images = {}
    for i, key in enumerate(volume.MODALITIES):
        arr = rng.integers(1, 200, size=shape).astype(np.uint8) + np.uint8(10 * i)
        images[key] = np.where(brain, arr, 0).astype(np.uint8)
    # asymmetric tumour so flips/orientation errors are visible
    c = (shape[0] * 0.35, shape[1] * 0.6, shape[2] * 0.5)
    r2 = (x - c[0]) ** 2 + (y - c[1]) ** 2 + ((z - c[2]) * 2) ** 2
    labels = np.zeros(shape, np.uint8)
    labels[r2 <= 25] = 2
    labels[r2 <= 9] = 1
    labels[r2 <= 4] = 4
    return images, labels


def nii_bytes(arr: np.ndarray, affine: np.ndarray = AFFINE, gz: bool = True) -> bytes:
    raw = nib.Nifti1Image(arr, affine).to_bytes()
    return gzip.compress(raw) if gz else raw


def write(path: Path, arr: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def brats2021_files(images, labels, case="BraTS2021_00007", affine=AFFINE, gz=True) -> dict[str, bytes]:
    ext = ".nii.gz" if gz else ".nii"
    files = {f"{case}{SUFFIX_2021[k]}{ext}": nii_bytes(v, affine, gz) for k, v in images.items()}
    if labels is not None:
        files[f"{case}_seg{ext}"] = nii_bytes(labels, affine, gz)
    return files


def to_2023(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[labels == 4] = 3
    return out


def to_decathlon(labels: np.ndarray) -> np.ndarray:
    out = np.zeros_like(labels)
    out[labels == 2] = 1  # oedema
    out[labels == 1] = 2  # non-enhancing
    out[labels == 4] = 3  # enhancing
    return out


def sphere(shape, spacing, radius_mm, centre_mm=None) -> np.ndarray:
    grids = np.meshgrid(*((np.arange(n) + 0.0) * s for n, s in zip(shape, spacing)), indexing="ij")
    centre = centre_mm or [n * s / 2 for n, s in zip(shape, spacing)]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return r2 <= radius_mm**2


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name, expected",
    [
        ("BraTS2021_00000_flair.nii.gz", ("BraTS2021_00000", "flair")),
        ("BraTS2021_00000_t1.nii.gz", ("BraTS2021_00000", "t1")),
        ("BraTS2021_00000_t1ce.nii", ("BraTS2021_00000", "t1ce")),
        ("some/dir/BraTS20_Training_001_seg.nii", ("BraTS20_Training_001", "seg")),
        ("BraTS-GLI-00000-000-t2f.nii.gz", ("BraTS-GLI-00000-000", "flair")),
        ("BraTS-GLI-00000-000-t1n.nii.gz", ("BraTS-GLI-00000-000", "t1")),
        ("BraTS-GLI-00000-000-t1c.nii", ("BraTS-GLI-00000-000", "t1ce")),
        ("BraTS-GLI-00000-000-t2w.nii.gz", ("BraTS-GLI-00000-000", "t2")),
        ("BraTS-GLI-00000-000-seg.nii.gz", ("BraTS-GLI-00000-000", "seg")),
        ("Task01_BrainTumour/imagesTr/BRATS_001.nii.gz", ("BRATS_001", "image4d")),
        ("Task01_BrainTumour/labelsTr/BRATS_001.nii.gz", ("BRATS_001", "seg")),
        ("BRATS_001.nii.gz", ("BRATS_001", "decathlon")),
        ("BRATS_001_0002.nii.gz", ("BRATS_001", "t1ce")),
        ("__MACOSX/case/._BraTS2021_00000_flair.nii.gz", None),
        (".BraTS2021_00000_flair.nii.gz", None),
        ("notes.txt", None),
        ("scan.nii.gz", None),
    ],
)
def test_identify_file(name, expected):
    assert identify_file(name) == expected


# --------------------------------------------------------------------------- conventions


def test_three_conventions_give_the_same_case(tmp_path):
    images, labels = synthetic_case()
    # BraTS 2021
    d21 = tmp_path / "c21" / "BraTS2021_00007"
    for k, v in images.items():
        write(d21 / f"BraTS2021_00007{SUFFIX_2021[k]}.nii.gz", v)
    write(d21 / "BraTS2021_00007_seg.nii.gz", labels)
    # BraTS 2023 (ET = 3)
    d23 = tmp_path / "c23"
    for k, v in images.items():
        write(d23 / f"BraTS-GLI-00007-000{SUFFIX_2023[k]}.nii", v)
    write(d23 / "BraTS-GLI-00007-000-seg.nii", to_2023(labels))
    # Decathlon: one 4D image (FLAIR, T1w, T1gd, T2w) + relabelled map
    ddec = tmp_path / "dec" / "Task01_BrainTumour"
    stack = np.stack([images[k] for k in volume.MODALITIES], axis=-1)
    write(ddec / "imagesTr" / "BRATS_007.nii.gz", stack)
    write(ddec / "labelsTr" / "BRATS_007.nii.gz", to_decathlon(labels))

    cases = {
        "brats2021": read_case_folder(tmp_path / "c21"),
        "brats2023": read_case_folder(d23),
        "decathlon": read_case_folder(tmp_path / "dec"),
    }
    for convention, case in cases.items():
        assert case.source_convention == convention
        assert case.labels is not None and case.labels.dtype == np.uint8
        np.testing.assert_array_equal(case.labels, labels)
        assert set(case.images) == set(volume.MODALITIES)
        for key in volume.MODALITIES:
            np.testing.assert_array_equal(case.images[key], images[key])
            assert case.images[key].dtype == np.uint8  # small dtype kept
        np.testing.assert_allclose(case.affine, AFFINE)
        assert case.spacing_mm == pytest.approx((1.0, 1.0, 2.0))
        assert case.shape == SHAPE
    assert cases["brats2021"].case_id == "BraTS2021_00007"
    assert cases["brats2023"].case_id == "BraTS-GLI-00007-000"
    assert cases["decathlon"].case_id == "BRATS_007"


def test_decathlon_bare_names_resolved_by_dimensions():
    images, labels = synthetic_case()
    stack = np.stack([images[k] for k in volume.MODALITIES], axis=-1)
    case = read_case({
        "BRATS_003.nii.gz": nii_bytes(stack),
        "labels/BRATS_003.nii.gz": nii_bytes(to_decathlon(labels)),
    })
    assert case.source_convention == "decathlon"
    np.testing.assert_array_equal(case.labels, labels)
    np.testing.assert_array_equal(case.images["t1ce"], images["t1ce"])


def test_decathlon_3d_image_is_one_modality():
    images, _ = synthetic_case()
    with pytest.raises(CaseError, match="only one modality"):
        read_case({"imagesTr/BRATS_003.nii.gz": nii_bytes(images["flair"])})


def test_labels_optional_and_dtypes_bounded():
    images, _ = synthetic_case()
    images = dict(images)
    images["t1"] = images["t1"].astype(np.float64)  # float64 on disk -> float32 in memory
    files = brats2021_files(images, None)
    img = nib.Nifti1Image(images["t2"].astype(np.int16), AFFINE)
    img.header.set_slope_inter(0.5, 1.0)  # scaled ints -> float32
    files["BraTS2021_00007_t2.nii.gz"] = gzip.compress(img.to_bytes())
    case = read_case(files)
    assert case.labels is None and not case.has_labels
    assert case.images["t1"].dtype == np.float32
    assert case.images["t2"].dtype == np.float32
    np.testing.assert_allclose(case.images["t2"], images["t2"] * 0.5 + 1.0)
    assert all(a.dtype != np.float64 for a in case.images.values())


# --------------------------------------------------------------------------- orientation


def _lps(arr: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same physical image stored LPS: x and y axes flipped, affine adjusted."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3] = arr.shape[0] - 1
    flip[1, 3] = arr.shape[1] - 1
    return arr[::-1, ::-1, :].copy(), affine @ flip


def test_flipped_affine_gives_the_same_canonical_arrays():
    images, labels = synthetic_case()
    ref = read_case(brats2021_files(images, labels))
    lps_images = {}
    for k, v in images.items():
        lps_images[k], lps_aff = _lps(v, AFFINE)
    lps_labels, _ = _lps(labels, AFFINE)
    assert "".join(nib.aff2axcodes(lps_aff)) == "LPS"
    case = read_case(brats2021_files(lps_images, lps_labels, affine=lps_aff))
    assert case.original_axcodes == "LPS"
    np.testing.assert_allclose(case.affine, ref.affine, atol=1e-6)
    np.testing.assert_array_equal(case.labels, ref.labels)
    for k in volume.MODALITIES:
        np.testing.assert_array_equal(case.images[k], ref.images[k])


def test_permuted_axes_give_the_same_canonical_arrays():
    images, labels = synthetic_case()
    ref = read_case(brats2021_files(images, labels))
    perm = np.array([[0, 0, 2.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # stored (y, z, x)
    perm[:3, 3] = AFFINE[:3, 3]
    perm_aff = perm.copy()
    perm_aff[:3, :3] = AFFINE[:3, :3][:, [1, 2, 0]]
    files = brats2021_files({k: np.transpose(v, (1, 2, 0)) for k, v in images.items()},
                            np.transpose(labels, (1, 2, 0)), affine=perm_aff)
    case = read_case(files)
    assert case.shape == SHAPE
    np.testing.assert_allclose(case.affine, ref.affine, atol=1e-6)
    np.testing.assert_array_equal(case.labels, ref.labels)
    np.testing.assert_array_equal(case.images["flair"], ref.images["flair"])


@pytest.mark.parametrize("layout", ["lps", "permuted", "ras"])
def test_prediction_export_uses_the_input_grid_and_affine(layout):
    images, labels = synthetic_case()
    if layout == "lps":
        stored = {k: _lps(v, AFFINE)[0] for k, v in images.items()}
        stored_labels, affine = _lps(labels, AFFINE)
    elif layout == "permuted":
        stored = {k: np.transpose(v, (1, 2, 0)) for k, v in images.items()}
        stored_labels = np.transpose(labels, (1, 2, 0))
        affine = AFFINE.copy()
        affine[:3, :3] = AFFINE[:3, :3][:, [1, 2, 0]]
    else:
        stored, stored_labels, affine = images, labels, AFFINE
    case = read_case(brats2021_files(stored, stored_labels, affine=affine))
    np.testing.assert_allclose(case.original_affine, affine)
    back, back_affine = labels_in_input_orientation(case.labels, case)
    np.testing.assert_array_equal(back, stored_labels)       # voxel for voxel with the uploaded files
    np.testing.assert_allclose(back_affine, affine, atol=1e-6)
    img = nib.Nifti1Image.from_bytes(gzip.decompress(prediction_nifti(case.labels, case)))
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), stored_labels)
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        labels_in_input_orientation(case.labels[:-1], case)


def test_600_mb_case_refused_before_reading(tmp_path):
    folder = tmp_path / "BraTS2021_00007"
    folder.mkdir()
    for suffix in ("_flair", "_t1", "_t1ce", "_t2"):
        with open(folder / f"BraTS2021_00007{suffix}.nii.gz", "wb") as fh:
            fh.truncate(150 * 10**6)  # sparse: 4 x 150 MB = 600 MB declared, nothing written
    with pytest.raises(ImageTooLarge, match="limit is 500 MB"):
        read_case_folder(folder)


def test_slice_view_orientation_and_consistency():
    vol = np.zeros((10, 12, 8), np.float32)
    lab = np.zeros((10, 12, 8), np.uint8)
    # marker: patient right (high x), anterior (high y), superior (high z)
    vol[8, 10, 6] = 1.0
    lab[8, 10, 6] = 4
    for plane, index in (("axial", 6), ("coronal", 10), ("sagittal", 8)):
        img2d, lab2d = slice_view(vol, plane, index), slice_view(lab, plane, index)
        assert img2d.shape == lab2d.shape == view_shape(vol.shape, plane)
        np.testing.assert_array_equal(img2d > 0, lab2d > 0)
        r, c = np.argwhere(img2d > 0)[0]
        rows, cols = img2d.shape
        if plane == "axial":  # top = anterior, left = patient right
            assert r < rows / 2 and c < cols / 2
        elif plane == "coronal":  # top = superior, left = patient right
            assert r < rows / 2 and c < cols / 2
        else:  # top = superior, right = anterior
            assert r < rows / 2 and c > cols / 2
    assert plane_size(vol.shape, "axial") == 8
    assert plane_size(vol.shape, "sagittal") == 10
    with pytest.raises(IndexError):
        slice_view(vol, "axial", 8)
    with pytest.raises(ValueError):
        slice_view(vol, "oblique", 0)


def test_largest_tumour_slice():
    lab = np.zeros((10, 12, 8), np.uint8)
    lab[2:5, 3:6, 5] = 2
    lab[3, 4, 1] = 4
    assert largest_tumour_slice(lab, "axial") == 5
    assert largest_tumour_slice(lab, "axial", region="ET") == 1
    assert largest_tumour_slice(np.zeros((10, 12, 8), np.uint8), "coronal") == 6


def test_window_presets_and_apply_window():
    rng = np.random.default_rng(1)
    vol = np.zeros((20, 20, 20), np.int16)
    vol[5:15, 5:15, 5:15] = rng.integers(100, 1100, size=(10, 10, 10))
    presets = window_presets(vol)
    assert set(presets) == {"default", "narrow", "full"}
    lo, hi = presets["default"]
    assert 100 <= lo < 130 and 1070 < hi <= 1100  # zeros (background) excluded
    assert presets["narrow"][0] > lo and presets["narrow"][1] < hi
    assert presets["full"] == (float(vol[vol > 0].min()), float(vol.max()))
    out = apply_window(vol[:, :, 10], lo, hi)
    assert out.dtype == np.uint8 and out.shape == (20, 20)
    assert out.min() == 0 and out.max() > 200
    np.testing.assert_array_equal(apply_window(np.array([lo - 5, lo, (lo + hi) / 2, hi, hi + 5]), lo, hi),
                                  [0, 0, 128, 255, 255])
    assert window_presets(np.zeros((4, 4, 4)))["default"] == (0.0, 1.0)


# --------------------------------------------------------------------------- volumes and metrics


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.0, 2.0)])
def test_sphere_volume(spacing):
    radius = 12.0
    shape = tuple(int(40 / s) for s in spacing)
    labels = sphere(shape, spacing, radius).astype(np.uint8) * 2
    labels[sphere(shape, spacing, radius / 2)] = 4
    vols = label_volumes_cm3(labels, spacing)
    expected_wt = 4 / 3 * math.pi * radius**3 / 1000
    expected_et = 4 / 3 * math.pi * (radius / 2) ** 3 / 1000
    assert vols["WT"] == pytest.approx(expected_wt, rel=0.03)
    assert vols["ET"] == pytest.approx(expected_et, rel=0.06)
    assert vols["TC"] == pytest.approx(vols["ET"])
    assert vols["NCR"] == 0.0
    assert vols["ED"] + vols["ET"] == pytest.approx(vols["WT"])
    masks = region_masks(labels)
    assert masks["WT"].sum() == (labels > 0).sum() and masks["ET"].sum() == (labels == 4).sum()


def test_compare_to_truth_offset_cubes_and_empty_et():
    pred = np.zeros((30, 30, 30), np.uint8)
    truth = pred.copy()
    pred[5:15, 5:15, 5:15] = 1
    truth[7:17, 5:15, 5:15] = 1
    res = compare_to_truth(pred, truth, (1.0, 1.0, 1.0))
    assert res["WT"]["dice"] == pytest.approx(0.8)  # overlap 8x10x10 of two 1000-voxel cubes
    assert res["WT"]["hd95_mm"] == pytest.approx(2.0)
    assert res["TC"]["dice"] == pytest.approx(0.8)
    assert res["WT"]["volume_pred_cm3"] == pytest.approx(1.0)
    # ET empty in both: defined as Dice 1.0, HD95 0.0
    assert res["ET"]["dice"] == 1.0 and res["ET"]["hd95_mm"] == 0.0 and res["ET"]["both_empty"]
    # anisotropic spacing scales HD95 along the shift axis
    assert compare_to_truth(pred, truth, (2.0, 1.0, 1.0))["WT"]["hd95_mm"] == pytest.approx(4.0)
    # ET only in the prediction: Dice 0, HD95 nan
    pred[9, 9, 9] = 4
    res = compare_to_truth(pred, truth, (1.0, 1.0, 1.0))
    assert res["ET"]["dice"] == 0.0 and math.isnan(res["ET"]["hd95_mm"]) and not res["ET"]["both_empty"]
    with pytest.raises(ValueError):
        compare_to_truth(pred, truth[:-1], (1.0, 1.0, 1.0))


def test_region_dice_is_numbers_per_region_and_the_comparisons_dice():
    pred = np.zeros((30, 30, 30), np.uint8)
    truth = pred.copy()
    pred[5:15, 5:15, 5:15] = 1
    truth[7:17, 5:15, 5:15] = 1
    pred[9, 9, 9] = 4
    scores = region_dice(pred, truth)
    assert list(scores) == ["WT", "TC", "ET"] and all(type(v) is float for v in scores.values())
    assert scores["WT"] == pytest.approx(0.8) and scores["ET"] == 0.0
    assert region_dice(truth, truth) == {"WT": 1.0, "TC": 1.0, "ET": 1.0}  # ET empty in both: 1.0
    compared = compare_to_truth(pred, truth, (1.0, 1.0, 1.0))
    assert scores == {region: compared[region]["dice"] for region in scores}


def test_save_labels_nifti_round_trip():
    _, labels = synthetic_case()
    data = save_labels_nifti(labels, AFFINE)
    assert data[:2] == b"\x1f\x8b"
    img = nib.Nifti1Image.from_bytes(gzip.decompress(data))
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), labels)
    np.testing.assert_allclose(img.affine, AFFINE)
    # and it reads back as the label map of a case
    images, _ = synthetic_case()
    files = brats2021_files(images, None)
    files["BraTS2021_00007_seg.nii.gz"] = data
    np.testing.assert_array_equal(read_case(files).labels, labels)


# --------------------------------------------------------------------------- refusals


def test_mismatched_grids_refused():
    images, labels = synthetic_case()
    files = brats2021_files(images, labels)
    files["BraTS2021_00007_t2.nii.gz"] = nii_bytes(images["t2"][:-2])
    with pytest.raises(CaseError, match="t2.*different grid"):
        read_case(files)
    shifted = AFFINE.copy()
    shifted[0, 3] += 2.0
    files = brats2021_files(images, labels)
    files["BraTS2021_00007_seg.nii.gz"] = nii_bytes(labels, shifted)
    with pytest.raises(CaseError, match="seg.*not on the same grid"):
        read_case(files)
    # tiny float noise in the affine is tolerated
    noisy = AFFINE + 1e-5
    noisy[3] = [0, 0, 0, 1]
    files["BraTS2021_00007_seg.nii.gz"] = nii_bytes(labels, noisy)
    read_case(files)


def test_single_or_missing_modalities_refused():
    images, labels = synthetic_case()
    with pytest.raises(CaseError, match=r"Only one modality \(FLAIR\).*Missing: T1, T1ce, T2"):
        read_case({"BraTS2021_00007_flair.nii.gz": nii_bytes(images["flair"])})
    files = brats2021_files(images, labels)
    del files["BraTS2021_00007_t1ce.nii.gz"], files["BraTS2021_00007_t2.nii.gz"]
    with pytest.raises(CaseError, match="Missing modalities: T1ce, T2"):
        read_case(files)
    files = {k: v for k, v in brats2023_like(images, labels).items() if "-t1c" not in k}
    with pytest.raises(CaseError, match="Missing modality: T1ce.*-t1c"):
        read_case(files)
    with pytest.raises(CaseError, match="Only a label map"):
        read_case({"BraTS2021_00007_seg.nii.gz": nii_bytes(labels)})


def brats2023_like(images, labels) -> dict[str, bytes]:
    files = {f"BraTS-GLI-00001-000{SUFFIX_2023[k]}.nii.gz": nii_bytes(v) for k, v in images.items()}
    files["BraTS-GLI-00001-000-seg.nii.gz"] = nii_bytes(to_2023(labels))
    return files


def test_2d_image_refused():
    images, labels = synthetic_case()
    files = brats2021_files(images, labels)
    files["BraTS2021_00007_t1.nii.gz"] = nii_bytes(images["t1"][:, :, 5])
    with pytest.raises(CaseError, match="2D image"):
        read_case(files)
    files["BraTS2021_00007_t1.nii.gz"] = nii_bytes(images["t1"][:, :, 5:6])  # 3D with one slice
    with pytest.raises(CaseError, match="2D image"):
        read_case(files)


def test_corrupt_and_empty_files_refused():
    images, labels = synthetic_case()
    files = brats2021_files(images, labels)
    good = files["BraTS2021_00007_flair.nii.gz"]
    files["BraTS2021_00007_flair.nii.gz"] = good[: len(good) // 2]  # truncated gzip
    with pytest.raises(CorruptFile, match="flair"):
        read_case(files)
    damaged = bytearray(good)
    damaged[10:200] = b"\x00" * 190
    files["BraTS2021_00007_flair.nii.gz"] = bytes(damaged)
    with pytest.raises(CorruptFile):
        read_case(files)
    files["BraTS2021_00007_flair.nii.gz"] = gzip.compress(b"not a nifti header" * 40)
    with pytest.raises(CorruptFile, match="NIfTI header"):
        read_case(files)
    files["BraTS2021_00007_flair.nii.gz"] = b""
    with pytest.raises(EmptyFile):
        read_case(files)
    with pytest.raises(EmptyFile):
        read_case({})


def test_unknown_labels_refused():
    images, labels = synthetic_case()
    bad = labels.copy()
    bad[0, 0, 0], bad[1, 0, 0] = 5, 7
    with pytest.raises(CaseError, match="unknown label values 5, 7"):
        read_case(brats2021_files(images, bad))
    with pytest.raises(CaseError, match="BraTS 2023"):  # ET numbered 3 in 2021-named files
        read_case(brats2021_files(images, to_2023(labels)))
    with pytest.raises(CaseError, match="unknown label value 4"):  # 2023 files use 3 for ET
        read_case({**{k: v for k, v in brats2023_like(images, labels).items() if "-seg" not in k},
                   "BraTS-GLI-00001-000-seg.nii.gz": nii_bytes(labels)})
    with pytest.raises(CaseError, match="non-integer"):
        read_case(brats2021_files(images, labels.astype(np.float32) + 0.5))


def test_oversize_refused(monkeypatch):
    images, labels = synthetic_case()
    files = brats2021_files(images, labels)
    monkeypatch.setattr(volume, "MAX_CASE_BYTES", 1000)
    with pytest.raises(ImageTooLarge, match="limit"):
        read_case(files)
    monkeypatch.setattr(volume, "MAX_CASE_BYTES", 600 * 2**20)
    monkeypatch.setattr(volume, "MAX_VOLUME_VOXELS", 1000)
    with pytest.raises(ImageTooLarge, match="voxels"):
        read_case(files)


def test_other_refusals():
    images, labels = synthetic_case()
    files = brats2021_files(images, labels)
    with pytest.raises(UnsupportedFile):
        read_case({**files, "notes.txt": b"hello"})
    with pytest.raises(CaseError, match="not recognised"):
        read_case({**files, "scan.nii.gz": files["BraTS2021_00007_t1.nii.gz"]})
    with pytest.raises(CaseError, match="2 different cases"):
        read_case({**files, "BraTS2021_00008_t1.nii.gz": files["BraTS2021_00007_t1.nii.gz"]})
    with pytest.raises(CaseError, match="mix naming conventions"):
        read_case({**files, "BraTS2021_00007-t2f.nii.gz": files["BraTS2021_00007_t1.nii.gz"]})


# --------------------------------------------------------------------------- zip


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_with_nested_folder_and_junk():
    images, labels = synthetic_case()
    files = brats2021_files(images, labels, gz=False)
    members = {f"upload/BraTS2021_00007/{k}": v for k, v in files.items()}
    members["__MACOSX/upload/BraTS2021_00007/._BraTS2021_00007_t1.nii"] = b"junk"
    members["upload/.DS_Store"] = b"junk"
    members["upload/README.txt"] = b"a case"
    case = read_case_zip(make_zip(members))
    assert case.case_id == "BraTS2021_00007"
    np.testing.assert_array_equal(case.labels, labels)
    np.testing.assert_array_equal(case.images["t2"], images["t2"])
    # a single uploaded .zip goes through read_case too
    assert read_case({"case.zip": make_zip(members)}).case_id == "BraTS2021_00007"


def test_zip_refusals(monkeypatch, tmp_path):
    images, labels = synthetic_case()
    files = brats2021_files(images, labels)
    with pytest.raises(UnsupportedFile, match="unsafe path"):
        read_case_zip(make_zip({"../" + k: v for k, v in files.items()}))
    with pytest.raises(CorruptFile):
        read_case_zip(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(CaseError, match="no NIfTI"):
        read_case_zip(make_zip({"readme.txt": b"x"}))
    # zip bomb: small archive, members unpack beyond the limit -> refused before NIfTI decoding
    bomb = {k: v for k, v in brats2021_files(images, labels, gz=False).items()}
    bomb["BraTS2021_00007_flair.nii"] = bomb["BraTS2021_00007_flair.nii"] + b"\x00" * 3_000_000
    data = make_zip(bomb)
    monkeypatch.setattr(volume, "MAX_CASE_BYTES", 1_000_000)
    assert len(data) < 1_000_000
    with pytest.raises(ImageTooLarge):
        read_case_zip(data)
    # and the folder reader accepts a .zip path
    monkeypatch.setattr(volume, "MAX_CASE_BYTES", 600 * 2**20)
    path = tmp_path / "case.zip"
    path.write_bytes(make_zip(files))
    assert read_case_folder(path).case_id == "BraTS2021_00007"


# --------------------------------------------------------------------------- meshes


def test_region_mesh_sphere_and_empty():
    spacing = (1.0, 1.0, 2.0)
    shape = (40, 40, 20)
    mask = sphere(shape, spacing, 10.0)
    verts, faces = region_mesh(mask, spacing)
    assert verts.dtype == np.float32 and faces.dtype == np.int32
    assert verts.shape[1] == 3 and faces.shape[1] == 3 and len(faces) > 100
    assert faces.max() < len(verts)
    radii = np.linalg.norm(verts - np.array([20.0, 20.0, 20.0]), axis=1)
    assert abs(np.median(radii) - 10.0) < 1.0  # surface in mm, centred on the sphere
    assert region_mesh(np.zeros(shape, bool), spacing) is None
    small = region_mesh(mask, spacing, max_faces=500)
    assert small is not None and 0 < len(small[1]) <= 500


def test_meshes_are_quick_and_bounded():
    mask = sphere((128, 128, 128), (1.0, 1.0, 1.0), 40.0)
    start = time.perf_counter()
    verts, faces = region_mesh(mask, (1.0, 1.0, 1.0))
    assert time.perf_counter() - start < 3.0  # < 1 s on an idle core; slack for busy CI
    assert len(faces) <= 60_000
    big = np.zeros((240, 240, 155), np.int16)
    big[sphere(big.shape, (1.0, 1.0, 1.0), 70.0)] = 300
    start = time.perf_counter()
    verts, faces = brain_surface(big, (1.0, 1.0, 1.0))
    assert time.perf_counter() - start < 5.0
    assert 0 < len(faces) <= 40_000
    assert brain_surface(np.zeros((10, 10, 10)), (1.0, 1.0, 1.0)) is None


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_brats_case():
    root = config.data_dir()
    brats = root / "brats" if root is not None else None
    if brats is None or not brats.is_dir():
        pytest.skip("real BraTS data not available: set BTD_DATA_DIR to the folder holding brats/")
    folders = sorted(p for p in brats.iterdir() if p.is_dir())
    if not folders:
        pytest.skip(f"no case folders in {brats}")
    case = read_case_folder(folders[0])
    assert case.case_id == folders[0].name
    assert case.source_convention == "brats2021"
    assert case.shape == (128, 128, 128)
    assert all(v.shape == (128, 128, 128) for v in case.images.values())
    assert case.labels is not None
    assert set(np.unique(case.labels).tolist()) <= {0, 1, 2, 4}
    vols = label_volumes_cm3(case.labels, case.spacing_mm)
    assert vols["WT"] > 0
    assert case.spacing_mm == pytest.approx((1.0, 1.0, 1.0), abs=1e-3)
    mesh = region_mesh(region_masks(case.labels)["WT"], case.spacing_mm)
    assert mesh is not None and len(mesh[1]) > 0


# --------------------------------------------------------------------------- hostile and odd inputs (issue 16)


def patched_header(data: bytes, offset: int, fmt: str, *values) -> bytes:
    """An uncompressed NIfTI-1 file with header bytes at ``offset`` rewritten (struct ``fmt``)."""
    import struct

    raw = bytearray(data)
    raw[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    return bytes(raw)


def test_nan_sform_is_a_case_error():
    images, labels = synthetic_case()
    files = brats2021_files(images, labels, gz=False)
    name = "BraTS2021_00007_flair.nii"
    nan_sform = patched_header(files[name], 280, "<12f", *([float("nan")] * 12))
    files[name] = patched_header(nan_sform, 252, "<hh", 0, 1)  # qform_code 0, sform_code 1
    with pytest.raises(CaseError, match="degenerate affine"):
        read_case(files)  # LinAlgError ("SVD did not converge") before


def test_int64_label_map_is_read_from_files_and_zip():
    images, labels = synthetic_case()
    files = brats2021_files(images, None)
    files["BraTS2021_00007_seg.nii.gz"] = gzip.compress(
        nib.Nifti1Image(labels.astype(np.int64), AFFINE, dtype=np.int64).to_bytes())
    case = read_case(files)
    assert case.labels.dtype == np.uint8
    np.testing.assert_array_equal(case.labels, labels)
    np.testing.assert_array_equal(read_case_zip(make_zip(files)).labels, labels)


def test_nan_voxel_does_not_spoil_window_presets():
    images, labels = synthetic_case()
    flair = images["flair"].astype(np.float32)
    flair[3, 3, 3], flair[4, 4, 4] = np.nan, np.inf
    presets = window_presets(flair)
    assert all(np.isfinite(v).all() and v[1] > v[0] for v in presets.values())
    assert presets["full"] == (1.0, float(np.nanmax(np.where(np.isinf(flair), np.nan, flair))))
    case = read_case(brats2021_files({**images, "flair": flair}, labels))
    assert np.isfinite(case.images["flair"]).all()
    assert all(np.isfinite(v).all() for v in window_presets(case.images["flair"]).values())


def test_zero_sized_dimension_is_refused():
    from core.errors import EmptyImage

    images, labels = synthetic_case()
    files = brats2021_files(images, labels, gz=False)
    files["BraTS2021_00007_t1.nii"] = patched_header(files["BraTS2021_00007_t1.nii"], 40, "<4h", 3, 0, 24, 16)
    with pytest.raises(EmptyImage, match="0x24x16"):
        read_case(files)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_absurd_voxel_size_is_refused(scale):
    images, labels = synthetic_case()
    affine = np.diag([scale, scale, scale, 1.0])
    with pytest.raises(CaseError, match="voxel size"):
        read_case(brats2021_files(images, labels, affine=affine))


def test_zip_member_with_an_unsupported_compression_method_is_refused():
    import struct

    images, labels = synthetic_case()
    data = bytearray(make_zip(brats2021_files(images, labels)))
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(signature)
        data[at + offset:at + offset + 2] = struct.pack("<H", 99)
    with pytest.raises(UnsupportedFile, match="method 99"):
        read_case_zip(bytes(data))


def test_window_presets_of_a_constant_huge_volume_are_a_real_window():
    presets = window_presets(np.full((4, 4, 4), 1e30, np.float32))
    assert all(hi > lo for lo, hi in presets.values())
    assert apply_window(np.full((2, 2), 1e30, np.float32), 1e30, 1e30).dtype == np.uint8


def test_zip_needing_a_newer_zip_version_is_a_typed_error():
    import struct

    images, labels = synthetic_case()
    data = bytearray(make_zip(brats2021_files(images, labels)))
    at = data.find(b"PK\x01\x02")
    data[at + 6:at + 8] = struct.pack("<H", 209)  # "version needed to extract" 20.9
    with pytest.raises(CorruptFile):
        read_case_zip(bytes(data))  # NotImplementedError ("zip file version 20.9") before


def test_case_files_go_through_the_slice_readers_nifti_parser():
    """One parser: a .hdr/.img pair, an Analyze header, a damaged magic and a damaged gzip checksum
    are refused by a case exactly as by a slice upload."""
    from core.readers.slice import read_slice

    images, labels = synthetic_case()
    name = "BraTS2021_00007_flair.nii"
    plain = brats2021_files(images, labels, gz=False)
    for magic, error in ((b"ni1\x00", UnsupportedFile), (bytes(4), UnsupportedFile), (b"xxxx", CorruptFile)):
        files = {**plain, name: patched_header(plain[name], 344, "4s", magic)}
        with pytest.raises(error) as by_case:
            read_case(files)
        with pytest.raises(error) as by_slice:
            read_slice(files[name], name, axis=2, index=0)
        assert str(by_case.value) == str(by_slice.value)
    packed = brats2021_files(images, labels)
    gz_name = name + ".gz"
    damaged = bytearray(packed[gz_name])
    damaged[-8] ^= 0xFF  # the gzip trailer's CRC-32: the voxels decompress, the checksum fails
    with pytest.raises(CorruptFile, match="cannot be decompressed"):
        read_case({**packed, gz_name: bytes(damaged)})
    with pytest.raises(CorruptFile, match="cannot be decompressed"):
        read_slice(bytes(damaged), gz_name, axis=2, index=0)
