"""Near-duplicate detection (core.trust.dedup) on synthetic known pairs, plus the committed real split."""
from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.draw import ellipse

from core import config

from core.trust import dedup
from core.trust.dedup import DuplicateRule, HashIndex, build_dedup_split, compare, fingerprint

SPLIT_JSON = config.REPO_ROOT / "weights" / "eval" / "dedup_testing.json"
INDEX_NPZ = config.REPO_ROOT / "weights" / "train_hash_index.npz"


# --------------------------------------------------------------------------- synthetic slices

def brain(seed: int, size: int = 256) -> np.ndarray:
    """A procedural axial 'slice': scalp ring, textured brain, two ventricles, an off-centre tumour.

    The tumour is always on the right, so the image is clearly not left-right symmetric.
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    cy, cx = size / 2 + rng.uniform(-8, 8), size / 2 + rng.uniform(-8, 8)
    ry, rx = size * rng.uniform(0.36, 0.44), size * rng.uniform(0.28, 0.36)
    rot = rng.uniform(-0.3, 0.3)
    img[ellipse(cy, cx, ry, rx, (size, size), rotation=rot)] = 0.85
    inner = ellipse(cy, cx, ry - 8, rx - 8, (size, size), rotation=rot)
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    img[inner] = 0.45 + 0.9 * texture[inner]
    for side in (-1, 1):
        img[ellipse(cy + rng.uniform(-15, 15), cx + side * rng.uniform(6, 16), rng.uniform(10, 22),
                    rng.uniform(4, 8), (size, size), rotation=rng.uniform(-0.5, 0.5))] = 0.1
    img[ellipse(cy + rng.uniform(-30, 30), cx + rng.uniform(20, 40), rng.uniform(8, 18),
                rng.uniform(8, 18), (size, size))] = 1.0
    return np.clip(ndimage.gaussian_filter(img, 1.0) * 255, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int = 70) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def reencoded(img: np.ndarray) -> np.ndarray:
    """Resized to 0.8x, 12 grey levels brighter, JPEG quality 70."""
    h, w = img.shape
    small = cv2.resize(img, (int(w * 0.8), int(h * 0.8)), interpolation=cv2.INTER_AREA)
    return jpeg(np.clip(small.astype(np.int16) + 12, 0, 255).astype(np.uint8), 70)


def shifted(img: np.ndarray, dy: int = 10, dx: int = -6) -> np.ndarray:
    out = np.zeros_like(img)
    out[max(dy, 0):img.shape[0] + min(dy, 0), max(dx, 0):img.shape[1] + min(dx, 0)] = \
        img[max(-dy, 0):img.shape[0] - max(dy, 0), max(-dx, 0):img.shape[1] - max(dx, 0)]
    return out


def gamma(img: np.ndarray, g: float = 0.6) -> np.ndarray:
    return np.round(255 * (img / 255.0) ** g).astype(np.uint8)


@pytest.fixture(scope="module")
def original() -> np.ndarray:
    return brain(1)


# --------------------------------------------------------------------------- pairs

def test_popcount_and_hamming_agree_with_python():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, size=5, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=3, dtype=np.uint64)
    expected = [[bin(int(x) ^ int(y)).count("1") for y in b] for x in a]
    assert dedup.hamming(a, b).tolist() == expected
    assert dedup.popcount(np.array([0, 2**64 - 1], np.uint64)).tolist() == [0, 64]


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
    res = dedup.find_duplicates(test, train)
    assert res["dup_of_train"].tolist() == [True, False, False, False]
    assert res["nearest"][0] == 0
    assert res["groups"] == [[1, 2]]
    assert res["links"][2][0] == 1 and res["links"][1][0] == 2


# --------------------------------------------------------------------------- folder split

def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, "JPEG", quality=90)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Training/ and Testing/ class folders with known duplicates.

    Testing/glioma:  te_01 = re-encoded Tr glioma/tr_a (train), te_02 new (kept),
                     te_03 = JPEG copy of te_02 (test), te_04 = re-encoded te_01 (test: copy of
                     a copy of a training image).
    Testing/notumor: te_05 = mirrored Tr notumor/tr_c (train), te_06 new (kept).
    """
    root = tmp_path_factory.mktemp("mri")
    a, b, c = brain(1), brain(2), brain(5)
    _write(root / "Training/glioma/tr_a.jpg", a)
    _write(root / "Training/glioma/tr_b.jpg", b)
    _write(root / "Training/notumor/tr_c.jpg", c)
    _write(root / "Training/pituitary/tr_d.jpg", brain(6))
    _write(root / "Testing/glioma/te_01.jpg", reencoded(a))
    _write(root / "Testing/glioma/te_02.jpg", brain(7))
    _write(root / "Testing/glioma/te_03.jpg", jpeg(brain(7), 70))
    _write(root / "Testing/glioma/te_04.jpg", jpeg(np.pad(reencoded(a), 10), 80))
    _write(root / "Testing/notumor/te_05.jpg", np.ascontiguousarray(c[:, ::-1]))
    _write(root / "Testing/notumor/te_06.jpg", brain(8))
    return root


@pytest.fixture(scope="module")
def split(tree) -> dict:
    return build_dedup_split(tree / "Training", tree / "Testing")


def test_split_removed_and_kept(split):
    removed = {r["path"]: r for r in split["removed"]}
    assert split["clean"] == ["glioma/te_02.jpg", "notumor/te_06.jpg"]
    assert set(removed) == {"glioma/te_01.jpg", "glioma/te_03.jpg", "glioma/te_04.jpg", "notumor/te_05.jpg"}
    assert removed["glioma/te_01.jpg"]["reason"] == "train"
    assert removed["glioma/te_01.jpg"]["match"] == "Training/glioma/tr_a.jpg"
    assert removed["notumor/te_05.jpg"]["reason"] == "train"
    assert removed["notumor/te_05.jpg"]["match"] == "Training/notumor/tr_c.jpg"
    assert removed["notumor/te_05.jpg"]["mirrored"] is True
    assert removed["glioma/te_03.jpg"]["reason"] == "test"
    assert removed["glioma/te_03.jpg"]["match"] == "Testing/glioma/te_02.jpg"
    # te_04 copies te_01; it may itself match tr_a (train) or only te_01 (test): removed either way
    assert removed["glioma/te_04.jpg"]["match"] in ("Training/glioma/tr_a.jpg", "Testing/glioma/te_01.jpg")


def test_split_counts(split):
    n_test_dups = sum(r["reason"] == "test" for r in split["removed"])
    assert split["n_test"] == 6 and split["n_train"] == 4
    assert split["n_clean"] == 2 and split["n_clean"] + len(split["removed"]) == split["n_test"]
    assert split["n_dup_of_train"] + split["n_dup_within_test"] == 4
    assert split["n_dup_within_test"] == n_test_dups
    assert split["per_class_clean"] == {"glioma": 1, "meningioma": 0, "notumor": 1, "pituitary": 0}
    assert split["rule"] == {k: v for k, v in vars(DuplicateRule()).items()}


def test_split_cli_writes_json_read_by_evaluate(tree, tmp_path, split):
    from core.data.datasets import list_classification
    from core.evaluation.cli import _clean_mask

    out = tmp_path / "split.json"
    assert dedup.main(["split", "--train", str(tree / "Training"), "--test", str(tree / "Testing"),
                       "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["clean"] == split["clean"]
    assert str(tree) not in out.read_text()             # no absolute machine paths
    paths = list_classification(tree / "Testing").paths
    keep = _clean_mask(paths, tree / "Testing", out)
    assert [p.relative_to(tree / "Testing").as_posix() for p, k in zip(paths, keep) if k] == split["clean"]


# --------------------------------------------------------------------------- hash index

def test_hash_index_round_trip_and_query(tree, tmp_path):
    index = HashIndex.build(tree / "Training")
    assert len(index) == 4 and index.names[0] == "glioma/tr_a.jpg" and index.labels[0] == "glioma"
    path = tmp_path / "index.npz"
    index.save(path)
    loaded = HashIndex.load(path)
    assert loaded.names == index.names and loaded.labels == index.labels
    assert np.array_equal(loaded.phash, index.phash) and loaded.phash.dtype == np.uint64
    assert np.array_equal(loaded.dhash, index.dhash)

    hit = loaded.query(reencoded(brain(1)))
    assert hit is not None and hit["name"] == "glioma/tr_a.jpg" and hit["label"] == "glioma"
    assert not hit["mirrored"]
    exact = loaded.query(brain(5))
    assert exact is not None and exact["name"] == "notumor/tr_c.jpg"
    mirrored = loaded.query(np.ascontiguousarray(brain(5)[:, ::-1]))
    assert mirrored is not None and mirrored["name"] == "notumor/tr_c.jpg" and mirrored["mirrored"]
    for seed in (3, 7, 8, 9):
        assert loaded.query(brain(seed)) is None


def test_empty_index_query_is_none():
    empty = HashIndex(np.zeros(0, np.uint64), np.zeros(0, np.uint64), [], [])
    assert empty.query(brain(1)) is None


# --------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def mri_4class() -> Path:
    root = config.data_dir()
    if root is None or not (root / "brain_mri_4class" / "Testing").is_dir():
        pytest.skip("real data not available: brain_mri_4class not found (set BTD_DATA_DIR)")
    return root / "brain_mri_4class"


def test_committed_split_matches_real_testing_folder(mri_4class):
    assert SPLIT_JSON.is_file(), "run `python -m core.dedup split` to write weights/eval/dedup_testing.json"
    data = json.loads(SPLIT_JSON.read_text())
    removed = [r["path"] for r in data["removed"]]
    assert data["n_test"] == 1311
    assert data["n_clean"] == len(data["clean"])
    assert data["n_clean"] + len(removed) == 1311
    assert data["n_dup_of_train"] + data["n_dup_within_test"] == len(removed)
    assert not set(removed) & set(data["clean"]) and len(set(removed)) == len(removed)
    assert sum(data["per_class_clean"].values()) == data["n_clean"]
    for rel in data["clean"] + removed:
        assert not Path(rel).is_absolute() and (mri_4class / "Testing" / rel).is_file(), rel
    for r in data["removed"]:
        assert r["reason"] in ("train", "test")
        assert (mri_4class / r["match"]).is_file(), r["match"]


def test_committed_split_removes_every_exact_copy(mri_4class):
    """Testing files whose original's MD5 is also a Training original's must all be removed."""
    import csv

    with (mri_4class / "index.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    train_md5 = {r["orig_md5"] for r in rows if r["split"] == "Training"}
    exact = {r["path"].split("/", 1)[1] for r in rows if r["split"] == "Testing" and r["orig_md5"] in train_md5}
    data = json.loads(SPLIT_JSON.read_text())
    removed_train = {r["path"] for r in data["removed"] if r["reason"] == "train"}
    assert exact and exact <= removed_train


def test_committed_hash_index_is_small(mri_4class):
    assert INDEX_NPZ.is_file(), "run `python -m core.dedup index` to write weights/train_hash_index.npz"
    assert INDEX_NPZ.stat().st_size < 2 * 1024 * 1024
    index = HashIndex.load(INDEX_NPZ)
    assert len(index) == 5712
    assert all(not Path(n).is_absolute() for n in index.names)


# --------------------------------------------------------------------------- real known pairs

@pytest.fixture(scope="module")
def figshare() -> Path:
    root = config.data_dir()
    if root is None or not (root / "figshare_3064" / "index.csv").is_file():
        pytest.skip("real data not available: figshare_3064 not found (set BTD_DATA_DIR)")
    return root / "figshare_3064"


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
    res = dedup.find_duplicates(fps[:12], fps[12:])
    assert not res["dup_of_train"].any(), [patients[i] for i in np.flatnonzero(res["dup_of_train"])]
    assert res["groups"] == []
    # and the same slices do match their own re-encoded copies (the rule is not simply refusing)
    copies = [fingerprint(reencoded(_grey(figshare / r["image"]))) for r in slices[:12]]
    assert dedup.find_duplicates(copies, fps[:12])["dup_of_train"].all()
