"""The de-duplicated test split of a class-folder dataset and ``python -m core.dedup`` (core.data.dedup_split)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_brains import brain, jpeg, reencoded

from core import config
from core.data.datasets import list_classification
from core.data.dedup_split import build_dedup_split, build_hash_index, main
from core.serving import registry
from core.trust.fingerprints import DuplicateRule
from core.trust.hash_index import INDEX_FILE, INDEX_NAME, load_shipped

SPLIT_JSON = config.REPO_ROOT / "weights" / "eval" / "dedup_testing.json"


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
    from core.evaluation.scoring import clean_subset_mask

    out = tmp_path / "split.json"
    assert main(["split", "--train", str(tree / "Training"), "--test", str(tree / "Testing"),
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["clean"] == split["clean"]
    assert str(tree) not in out.read_text()             # no absolute machine paths
    paths = list_classification(tree / "Testing").paths
    keep = clean_subset_mask(paths, tree / "Testing", out)
    assert [p.relative_to(tree / "Testing").as_posix() for p, k in zip(paths, keep) if k] == split["clean"]


# --------------------------------------------------------------------------- hash index of a folder

def test_hash_index_of_a_folder_names_images_relative_to_it(tree):
    index = build_hash_index(tree / "Training")
    assert len(index) == 4 and index.names[0] == "glioma/tr_a.jpg" and index.labels[0] == "glioma"
    hit = index.query(reencoded(brain(1)))
    assert hit is not None and hit["name"] == "glioma/tr_a.jpg"


def test_index_cli_records_the_file_in_the_manifest(tree, tmp_path, capsys):
    """``python -m core.dedup index`` stamps the file's sha256 in the manifest beside it, so the app accepts it."""
    out = tmp_path / "w" / INDEX_FILE
    assert main(["index", "--train", str(tree / "Training"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"RESULT n=4 bytes={out.stat().st_size}"
    entry = registry.file_entry(INDEX_NAME, out.parent)
    assert entry["sha256"] == registry.file_sha256(out) and entry["data"] == f"{tree.name}/Training"
    assert registry.verified_file(INDEX_NAME, out.parent) == out
    assert load_shipped(out.parent).names == build_hash_index(tree / "Training").names


# --------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def mri_4class(data_root) -> Path:
    if not (data_root / "brain_mri_4class" / "Testing").is_dir():
        pytest.skip("real data not available: brain_mri_4class not found (set BTD_DATA_DIR)")
    return data_root / "brain_mri_4class"


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
