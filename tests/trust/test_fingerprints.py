"""Near-duplicate detection (core.trust.fingerprints) on synthetic known pairs and on real known pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_brains import brain, gamma, jpeg, reencoded, shifted

from core.trust.fingerprints import DuplicateRule, compare, find_duplicates, fingerprint, hamming, popcount


@pytest.fixture(scope="module")
def original() -> np.ndarray:
    return brain(1)


# --------------------------------------------------------------------------- pairs

def test_popcount_and_hamming_agree_with_python():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, size=5, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=3, dtype=np.uint64)
    expected = [[bin(int(x) ^ int(y)).count("1") for y in b] for x in a]
    assert hamming(a, b).tolist() == expected
    assert popcount(np.array([0, 2**64 - 1], np.uint64)).tolist() == [0, 64]


@pytest.mark.parametrize("transform", [
    reencoded,
    lambda im: jpeg(im, 70),
    lambda im: shifted(im),
    lambda im: np.pad(im, ((0, 0), (30, 0))),                 # black border on one side
    lambda im: np.pad(im, ((20, 20), (24, 24))),              # black border all round
    lambda im: reencoded(gamma(im)),                          # non-linear contrast change
], ids=["jpeg70-0.8x-brighter", "jpeg70", "shift", "pad-left", "pad-all", "gamma+reencoded"])
def test_modified_copies_match(original, transform):
    result = compare(fingerprint(transform(original)), fingerprint(original))
    assert result["duplicate"], result
    assert not result["mirrored"]
    assert result["aligned_ncc"] > 0.98


def test_compare_is_symmetric_for_a_copy(original):
    a, b = fingerprint(reencoded(original)), fingerprint(original)
    assert compare(a, b)["duplicate"] and compare(b, a)["duplicate"]


@pytest.mark.parametrize("seed", range(2, 14))
def test_different_patients_do_not_match(original, seed):
    result = compare(fingerprint(brain(seed)), fingerprint(original))
    assert not result["duplicate"], result
    assert np.isnan(result["aligned_ncc"]) or result["aligned_ncc"] < DuplicateRule().min_ncc - 0.03


def test_mirror_policy(original):
    """Documented policy: a left-right mirrored copy IS a duplicate (flagged ``mirrored``).

    Flipping is the commonest augmentation, so a mirrored training image in the test set is
    leakage. With ``DuplicateRule(mirror=False)`` the (asymmetric) mirror image is not a match.
    """
    flipped = np.ascontiguousarray(jpeg(original, 80)[:, ::-1])
    result = compare(fingerprint(flipped), fingerprint(original))
    assert result["duplicate"] and result["mirrored"]
    assert not compare(fingerprint(flipped), fingerprint(original), DuplicateRule(mirror=False))["duplicate"]


def test_find_duplicates_on_fingerprints(original):
    train = [fingerprint(original), fingerprint(brain(2))]
    test = [fingerprint(reencoded(original)), fingerprint(brain(3)), fingerprint(jpeg(brain(3), 75)),
            fingerprint(brain(4))]
    res = find_duplicates(test, train)
    assert res["dup_of_train"].tolist() == [True, False, False, False]
    assert res["nearest"][0] == 0
    assert res["groups"] == [[1, 2]]
    assert res["links"][2][0] == 1 and res["links"][1][0] == 2


# --------------------------------------------------------------------------- real known pairs

@pytest.fixture(scope="module")
def mri_4class(data_root) -> Path:
    if not (data_root / "brain_mri_4class" / "Testing").is_dir():
        pytest.skip("real data not available: brain_mri_4class not found (set BTD_DATA_DIR)")
    return data_root / "brain_mri_4class"


@pytest.fixture(scope="module")
def figshare(data_root) -> Path:
    if not (data_root / "figshare_3064" / "index.csv").is_file():
        pytest.skip("real data not available: figshare_3064 not found (set BTD_DATA_DIR)")
    return data_root / "figshare_3064"


def _grey(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def test_real_slice_and_its_reencoded_resized_copy_match(mri_4class):
    """Known positive pairs on real scans: each test image against its own resized, brightened JPEG copy."""
    paths = sorted((mri_4class / "Testing").rglob("*.jpg"))[::131][:10]
    for path in paths:
        original = _grey(path)
        result = compare(fingerprint(reencoded(original)), fingerprint(original))
        assert result["duplicate"] and not result["mirrored"], (path.name, result)


def test_real_slices_of_different_patients_do_not_match(figshare):
    """Known negative pairs on real scans: one mid-series slice per patient, 12 patients against 12 others.

    Patients come from figshare's own patient IDs, so no pair can be the same image; within one tumour
    class and one view the slices still look alike, which is what the rule must tell apart.
    """
    import csv

    with (figshare / "index.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_patient: dict[str, list[dict]] = {}
    for row in rows:
        by_patient.setdefault(row["patient_id"], []).append(row)
    patients = sorted(by_patient)[:24]
    slices = [by_patient[p][len(by_patient[p]) // 2] for p in patients]
    fps = [fingerprint(_grey(figshare / r["image"])) for r in slices]
    res = find_duplicates(fps[:12], fps[12:])
    assert not res["dup_of_train"].any(), [patients[i] for i in np.flatnonzero(res["dup_of_train"])]
    assert res["groups"] == []
    # and the same slices do match their own re-encoded copies (the rule is not simply refusing)
    copies = [fingerprint(reencoded(_grey(figshare / r["image"]))) for r in slices[:12]]
    assert find_duplicates(copies, fps[:12])["dup_of_train"].all()
