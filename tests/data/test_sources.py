"""core.data.sources: the multi-source slice catalogue on a tiny synthetic data folder.

Checks labels, splits and exclusion rules of each source (4-class stratified split, tcga_lgg
folds and the 300 px tumour rule, BraTS whole-tumour area and brain-fraction rules in all three
planes and four sequences), the cropped arrays, the reader and the SliceSet helpers.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import synthetic_sources as syn
from core import config
from core.data import sources
from core.data.datasets import DatasetError
from core.data.sources import SliceRef, SliceSet

SIZE = 32


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return syn.build_tree(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def env(tree, tmp_path_factory):
    """The synthetic tree as the only data folder, with a private cache and empty weights."""
    base = tmp_path_factory.mktemp("env")
    with pytest.MonkeyPatch.context() as mp:
        syn.isolate(mp, tree, base / "cache", base / "weights")
        yield base


@pytest.fixture(scope="module")
def catalogue(env, tree):
    return sources.load_sources(["fourclass", "tcga_lgg", "brats"], SIZE, data_dir=tree,
                                brats_cases=syn.brats_split_of(), test_fold=1)


# --------------------------------------------------------------------------- 4-class


def test_fourclass_stratified_split_and_labels(catalogue, tree):
    four = catalogue.where(source="fourclass")
    n_total = 4 * syn.FOURCLASS_PER_CLASS
    assert len(four) == n_total
    split = Counter(four.column("split"))
    assert split == {"train": 34, "val": 6}                      # ceil(15 % of 40) validation images
    per_class = Counter(zip(four.column("label"), four.column("split")))
    for name in config.CLASS_NAMES:                             # stratified: every class on both sides
        assert per_class[(name, "val")] >= 1 and per_class[(name, "train")] >= 8
        assert per_class[(name, "val")] + per_class[(name, "train")] == syn.FOURCLASS_PER_CLASS
    for ref in four.refs:
        folder = ref.ref.split("/")[2]
        assert config.canonical_class(folder) == ref.label      # "no_tumor" folder -> "notumor"
        assert (ref.sequence, ref.plane, ref.patient) == ("unknown", "unknown", "")
        assert (tree / ref.ref).is_file()
    # fixed seed: the same split every time, and exclusion by name works
    again = sources.fourclass_refs(tree, set())
    assert [(r.ref, r.split) for r in again] == [(r.ref, r.split) for r in four.refs]
    dropped = {four.refs[0].ref.split("Training/", 1)[1]}
    assert len(sources.fourclass_refs(tree, dropped)) == n_total - 1


# --------------------------------------------------------------------------- tcga_lgg


def test_tcga_folds_labels_and_glancing_slices(catalogue):
    tcga = catalogue.where(source="tcga_lgg")
    assert Counter(zip(tcga.column("split"), tcga.column("label"))) == syn.tcga_expected()
    # explicit numbers, so the expectation helper cannot drift with the code
    assert syn.tcga_expected() == {("train", "glioma"): 6, ("train", "notumor"): 6, ("val", "glioma"): 3,
                                   ("val", "notumor"): 6, ("test", "glioma"): 9, ("test", "notumor"): 6}
    patients = {s: set(tcga.where(split=s).column("patient")) for s in ("train", "val", "test")}
    assert patients == {"train": {"P01", "P02"}, "val": {"P03"}, "test": {"P04", "P05"}}
    ids = {r.ref.rsplit("/", 1)[1].split(".")[0] for r in tcga.refs}
    assert {"P01_s3", "P02_s3", "P04_s3", "P06_s1"}.isdisjoint(ids)   # glancing (120, 299, 1 px), fold 5
    assert "P02_s1" in ids                                             # exactly 300 px counts as tumour
    assert {r.label for r in tcga.refs if "P02_s1" in r.ref} == {"glioma"}
    assert Counter(tcga.column("sequence")) == {"t1": 12, "flair": 12, "t1ce": 12}
    assert set(tcga.column("plane")) == {"axial"}
    column_of = {"t1": "/pre/", "flair": "/flair/", "t1ce": "/post/"}
    assert all(column_of[r.sequence] in r.ref for r in tcga.refs)


def test_tcga_sequences_filled_with_a_flair_copy_are_left_out(tmp_path):
    """The dataset filled missing sequences with the volume's FLAIR: those copies are not T1 or T1-CE."""
    import shutil

    syn.write_tcga(tmp_path)
    base = tmp_path / "tcga_lgg"
    for slice_id, patient, *_ in syn.TCGA_ROWS:
        if patient == "P05":                                   # post-contrast missing: filled with FLAIR
            shutil.copy(base / f"images/flair/{slice_id}.jpg", base / f"images/post/{slice_id}.jpg")
        if patient == "P03":                                   # both T1 sequences missing
            for column in ("pre", "post"):
                shutil.copy(base / f"images/flair/{slice_id}.jpg", base / f"images/{column}/{slice_id}.jpg")
        if patient == "P01":                                   # blank frames everywhere: nothing to compare
            for column in syn.TCGA_COLUMNS:
                syn.write_png(base / f"images/{column}/{slice_id}.jpg", np.zeros((syn.IMAGE_SIDE,) * 2, np.uint8))
    refs = sources.tcga_refs(tmp_path)
    kept = Counter((r.patient, r.sequence) for r in refs)
    assert kept[("P05", "t1ce")] == 0 and kept[("P05", "t1")] == kept[("P05", "flair")] == 3
    assert kept[("P03", "t1")] == kept[("P03", "t1ce")] == 0 and kept[("P03", "flair")] == 3
    assert kept[("P01", "t1")] == kept[("P01", "t1ce")] == kept[("P01", "flair")] == 2
    assert kept[("P04", "t1ce")] == kept[("P04", "t1")] == 2  # untouched patients keep every sequence
    rows = [{"volume": "v", "slice": str(i), "flair": f"images/flair/P05_s{i + 1}.jpg",
             "pre": f"images/pre/P05_s{i + 1}.jpg", "post": f"images/post/P05_s{i + 1}.jpg"} for i in range(3)]
    assert sources.tcga_substitutes(tmp_path, rows) == {("v", "post")}


def test_tcga_missing_index_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="index.csv"):
        sources.tcga_refs(tmp_path)


# --------------------------------------------------------------------------- BraTS


def test_brats_case_split_planes_sequences_and_counts(catalogue):
    brats = catalogue.where(source="brats")
    expected = syn.brats_expected(stride=2)        # load_sources reads every 2nd slice by default
    assert expected == {"glioma": [12, 14, 16, 18, 20, 22], "notumor": [8, 10, 24, 30]}
    assert {r.patient: r.split for r in brats.refs} == syn.brats_split_of()   # the unlisted case is skipped
    per_case = 3 * 4 * (len(expected["glioma"]) + len(expected["notumor"]))
    assert len(brats) == 3 * per_case == 360
    counts = Counter(zip(brats.column("patient"), brats.column("plane"), brats.column("sequence"),
                         brats.column("label")))
    for case in syn.brats_split_of():
        for plane in sources.PLANES:
            for sequence in sources.SEQUENCES:
                assert counts[(case, plane, sequence, "glioma")] == 6
                assert counts[(case, plane, sequence, "notumor")] == 4
    for ref in brats.refs:
        case, sequence, plane, index = ref.ref.split("/")
        assert (case, sequence, plane) == (ref.patient, ref.sequence, ref.plane)
        assert int(index) in expected[ref.label]


def test_brats_slices_small_lesion_and_thin_brain_are_excluded():
    from core.volumes.case import Case

    images, labels = syn.brats_volumes()
    case = Case(images=images, labels=labels, affine=np.eye(4), spacing_mm=(1.0, 1.0, 1.0),
                case_id="x", source_convention="brats2021")
    picks = sources.brats_slices(case, stride=1)
    by_plane = {p: {(i, lab) for s, q, i, lab in picks if q == p and s == "flair"} for p in sources.PLANES}
    expected = syn.brats_expected(stride=1)
    for plane, found in by_plane.items():
        assert {i for i, lab in found if lab == "glioma"} == set(expected["glioma"]) == set(range(12, 24))
        assert {i for i, lab in found if lab == "notumor"} == set(expected["notumor"])
        assert not {26, 27, 28} & {i for i, _ in found}           # 9 mm² lesion: neither class
    assert not {4, 5, 6, 7} & {i for i, _ in by_plane["axial"]}   # tail: 25 mm² < 25 % of 576 mm²
    assert Counter(s for s, _, _, _ in picks) == {s: len(picks) // 4 for s in sources.SEQUENCES}


def test_brats_thresholds_are_in_mm2_and_inclusive():
    """100 mm² of tumour is a glioma slice, 95 mm² is not; 25 % of the largest brain is enough, 24 % not."""
    from core.volumes.case import Case

    shape = (40, 40, 6)
    flair = np.zeros(shape, np.uint8)
    flair[:, :, :3] = 50                      # full 40x40 brain
    flair[:16, :24, 3] = 50                   # 384 px = 24 % of 1600
    flair[:20, :20, 4] = 50                   # 400 px = 25 %
    labels = np.zeros(shape, np.uint8)
    labels[:20, :20, 0] = 2                   # 400 px x 0.25 mm² = 100 mm²
    labels[:20, :19, 1] = 4                   # 380 px = 95 mm²
    case = Case(images={"flair": flair}, labels=labels, affine=np.diag([0.5, 0.5, 1.0, 1.0]),
                spacing_mm=(0.5, 0.5, 1.0), case_id="x", source_convention="brats2021")
    axial = {i: lab for s, p, i, lab in sources.brats_slices(case) if p == "axial"}
    assert axial == {0: "glioma", 2: "notumor", 4: "notumor"}
    assert {s for s, *_ in sources.brats_slices(case)} == {"flair"}   # only the sequences the case has


def test_brats_labels_agree_with_the_seg_file(catalogue, tree):
    """Independent check from the stored label map: glioma >= 100 mm², no tumour = no label voxel."""
    import nibabel as nib

    from core.volumes.views import slice_view

    brats = catalogue.where(source="brats", sequence="flair")
    seen_small = 0
    for case in syn.brats_split_of():
        seg = np.asarray(nib.load(str(tree / "brats" / case / f"{case}_seg.nii.gz")).dataobj)
        listed = {(r.plane, int(r.ref.rsplit("/", 1)[1])): r.label for r in brats.refs if r.patient == case}
        for plane in sources.PLANES:
            for index in range(0, 40, 2):
                area = int((slice_view(seg, plane, index) > 0).sum())
                label = listed.get((plane, index))
                if label == "glioma":
                    assert area >= sources.MIN_TUMOUR_MM2
                elif label == "notumor":
                    assert area == 0
                if 0 < area < sources.MIN_TUMOUR_MM2:
                    seen_small += 1
                    assert label is None
    assert seen_small == 3 * 3 * 2            # slices 26 and 28 of each plane of each case


# --------------------------------------------------------------------------- arrays, reader, SliceSet


def test_arrays_are_uint8_crops_cached_in_the_given_folder(catalogue, env, tree):
    x = catalogue.x
    assert x.dtype == np.uint8 and x.shape == (len(catalogue), SIZE, SIZE)
    assert len(catalogue) == 40 + 36 + 360
    assert (x.reshape(len(x), -1).max(1) > 50).all()           # every crop holds an image
    assert list(dict.fromkeys(catalogue.column("source"))) == ["fourclass", "tcga_lgg", "brats"]
    cached = sorted(p.name for p in (env / "cache").iterdir())
    assert any(n.startswith("src-fourclass-") for n in cached) and any(n.startswith("src-tcga_lgg-") for n in cached)
    assert sum(n.startswith("brats-cls-") for n in cached) == 3
    again = sources.load_sources(["tcga_lgg", "brats"], SIZE, data_dir=tree, brats_cases=syn.brats_split_of(),
                                 test_fold=1)
    np.testing.assert_array_equal(again.x, catalogue.where(source=("tcga_lgg", "brats")).x)
    assert sorted(p.name for p in (env / "cache").iterdir()) == cached     # read back, nothing rebuilt


def test_reader_gives_the_whole_slice_the_crop_was_made_from(catalogue, tree):
    import nibabel as nib

    from core.volumes.views import slice_view

    reader = sources.SliceReader(tree)
    tcga = catalogue.where(source="tcga_lgg")
    image = reader(tcga.refs[0])
    # files are read as uploads are (core.readers.slice: an 8-bit file as [0, 1] floats)
    np.testing.assert_allclose(image, syn.read_image(tree / tcga.refs[0].ref) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(sources._crop(image, None, SIZE)[0], tcga.x[0])
    brats = catalogue.where(source="brats")
    picks = [0, 11, len(brats) // 2, len(brats) - 1]
    for k in picks:
        ref = brats.refs[k]
        image = reader(ref)
        case, sequence, plane, index = ref.ref.split("/")
        assert image.shape == (40, 40) and image.dtype == np.uint8
        volume = np.asarray(nib.load(str(tree / "brats" / case / f"{case}_{sequence}.nii.gz")).dataobj)
        np.testing.assert_array_equal(image, slice_view(volume, plane, int(index)))
        np.testing.assert_array_equal(sources._crop(image, None, SIZE, sources.BRATS_FRAME_MARGIN)[0], brats.x[k])


def _ref(i: int, source: str = "tcga_lgg", split: str = "train", label: str = "glioma") -> SliceRef:
    return SliceRef(source, split, label, f"P{i}", "t1", "axial", f"r{i}")


def test_sliceset_where_take_concat():
    refs = [_ref(0), _ref(1, split="val"), _ref(2, source="brats", label="notumor"), _ref(3, split="test")]
    s = SliceSet(refs, np.arange(4 * 4, dtype=np.uint8).reshape(4, 2, 2))
    val_test = s.where(split=("val", "test"))
    assert [r.ref for r in val_test.refs] == ["r1", "r3"]
    np.testing.assert_array_equal(val_test.x[:, 0, 0], [4, 12])
    both = s.where(source="tcga_lgg", split="train")
    assert [r.ref for r in both.refs] == ["r0"]
    assert len(s.where(source="figshare")) == 0 and s.where(source="figshare").x.shape == (0, 2, 2)
    assert [r.ref for r in s.take([3, 0]).refs] == ["r3", "r0"]
    assert [r.ref for r in s.take(np.array([False, True, True, False])).refs] == ["r1", "r2"]
    np.testing.assert_array_equal(s.labels(), [0, 0, 2, 0])
    assert [r.tumour for r in refs] == [True, True, False, True]
    joined = SliceSet.concat([s.take([2]), s.where(source="figshare"), s.take([0, 1])])
    assert [r.ref for r in joined.refs] == ["r2", "r0", "r1"] and joined.x.shape == (3, 2, 2)
    with pytest.raises(DatasetError):
        SliceSet.concat([s.where(source="figshare")])


def test_unknown_source_and_missing_data_folder(env, tree, monkeypatch):
    with pytest.raises(DatasetError, match="unknown source"):
        sources.load_sources(["kaggle"], SIZE, data_dir=tree, test_fold=1)
    monkeypatch.setattr(config, "data_dir", lambda: None)
    with pytest.raises(DatasetError, match="BTD_DATA_DIR"):
        sources.require_data_dir(None)


def test_brats_refs_round_trip_and_derived_refs_are_not_plain_slices():
    ref = sources.brats_ref("BraTS2021_00001", "t1ce", "coronal", 40)
    assert ref == "BraTS2021_00001/t1ce/coronal/40"
    assert sources.parse_brats_ref(ref) == ("BraTS2021_00001", "t1ce", "coronal", 40)
    mirrored = sources.brats_ref("BraTS2021_00001", "t1ce", "coronal", 40, "mirrored")
    assert mirrored == ref + "/mirrored" and sources.parse_brats_ref(mirrored) is None
    assert sources.parse_brats_ref("BraTS2021_00001/t1ce/coronal") is None
    assert sources.parse_brats_ref("a/b/c/x") is None
    assert sorted([("brats", "flair"), ("tcga_lgg", "t1ce"), ("brats", "t1"), ("x", "t1")],
                  key=lambda p: sources.catalogue_order(*p)) == [("tcga_lgg", "t1ce"), ("brats", "t1"),
                                                                  ("brats", "flair"), ("x", "t1")]


def test_real_tcga_flair_copies_are_found_and_are_whole_volume_copies(data_root):
    """On the public tcga_lgg data: 10 volumes hold FLAIR copies in place of a sequence (16 columns),
    every slice of each flagged column equals its FLAIR, and no other column does on its middle slice."""
    import csv

    from core.data.datasets import read_grey

    index = data_root / "tcga_lgg" / "index.csv"
    with index.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["fold"]) in (1, 2, 3, 4)]
    copies = sources.tcga_substitutes(data_root, rows)
    assert len(copies) == 16 and len({v for v, _ in copies}) == 10
    base = data_root / "tcga_lgg"
    by_volume: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_volume.setdefault(row["volume"], []).append(row)
    for volume, column in copies:
        assert all(np.array_equal(read_grey(base / r[column]), read_grey(base / r["flair"])) for r in by_volume[volume])
    for volume, members in by_volume.items():
        middle = sorted(members, key=lambda r: int(r["slice"]))[len(members) // 2]
        for column in ("pre", "post"):
            if (volume, column) not in copies:
                diff = np.abs(read_grey(base / middle[column]) - read_grey(base / middle["flair"])).mean()
                assert diff * 255 > 1.0, (volume, column)
