"""The real example slices bundled in sample_data/ (core.data.examples): listed with their sources and
licences, chosen by the stated rule (never by a model's results), readable, and shown by the app."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from core import config

from core.data import examples
from core.readers.slice import read_slice


def test_every_bundled_example_is_listed_with_its_source_licence_and_plane():
    found = examples.bundled()
    assert 0 < len(found) <= examples.MAX_EXAMPLES
    with (config.SAMPLE_DIR / examples.SOURCES_FILE).open(newline="") as handle:
        header = next(csv.reader(handle))
    for column in ("file", "dataset", "licence", "citation", "patient_or_original_name", "fold", "expert_label",
                   "plane"):
        assert column in header, column
    on_disk = {p.relative_to(config.SAMPLE_DIR).as_posix()
               for p in (config.SAMPLE_DIR / examples.EXAMPLE_FOLDER).iterdir()}
    listed = {e.file for e in found} | {e.mask for e in found if e.mask}
    assert on_disk == listed, "every file in sample_data/real/ is listed, and every listed file is there"
    for example in found:
        assert example.expert_label in config.CLASS_NAMES and example.plane in {"axial", "coronal", "sagittal"}
        assert example.licence and example.citation and example.patient_or_original_name
        if example.dataset == "figshare_3064":
            assert example.fold == str(examples.FIGSHARE_FOLD) and example.licence == "CC BY 4.0"
            assert example.mask, "a figshare example carries its expert mask"
        else:
            assert example.dataset == "brain_mri_4class" and example.expert_label == config.NO_TUMOUR_CLASS
            assert example.source_path.startswith("Testing/")


def test_the_examples_cover_every_class_and_each_tumour_class_two_planes():
    found = examples.bundled()
    by_class = {c: [e.plane for e in found if e.expert_label == c] for c in config.CLASS_NAMES}
    assert all(len(planes) == examples.PER_CLASS for planes in by_class.values()), by_class
    for cls in examples.TUMOUR_CLASSES:
        assert len(set(by_class[cls])) == examples.PER_CLASS, (cls, by_class[cls])
    assert len({e.plane for e in found}) > 1


def test_examples_read_as_slices_with_masks_on_their_grid():
    for example in examples.bundled():
        slice_ = read_slice((config.SAMPLE_DIR / example.file).read_bytes(), example.file)
        assert min(slice_.shape) >= 128
        if example.mask:
            from core.data.datasets import read_mask

            mask = read_mask(config.SAMPLE_DIR / example.mask)
            assert mask.shape == slice_.shape and mask.any()


def test_the_rule_picks_exactly_the_bundled_files(data_root):
    """Re-applied to the public data, the rule names the same slices, byte for byte (the fold, the patient
    order, the planes recorded by eye and the copies in the 4-class Training split decide; no model is loaded)."""
    assert examples.check(data_root) == []
    chosen = examples.choose(data_root)
    figshare = [e for e in chosen if e.dataset == "figshare_3064"]
    import pandas as pd

    index = pd.read_csv(data_root / "figshare_3064" / "index.csv")
    ids = {int(e.source_path.split("/")[-1].split(".")[0]) for e in figshare}
    assert set(index[index["id"].isin(ids)]["fold"]) == {examples.FIGSHARE_FOLD}


def test_no_tumour_examples_are_not_copies_of_training_images():
    import json

    clean = set(json.loads((config.WEIGHTS_DIR / "eval" / "dedup_testing.json").read_text())["clean"])
    for example in examples.bundled():
        if example.dataset == "brain_mri_4class":
            assert example.source_path.removeprefix("Testing/") in clean


def test_no_bundled_example_has_a_copy_in_the_fourclass_training_split(data_root):
    """The classifier members' 4-class training saw brain_mri_4class/Training, which holds near-copies of some
    fold-4 figshare slices: the rule skips those, so no bundled example is one (nor a no-tumour image)."""
    if not (data_root / "brain_mri_4class" / "Training").is_dir():
        pytest.skip("brain_mri_4class/Training is not in the data folder")
    from core.data.datasets import read_grey
    from core.data.sources import fourclass_hash_index

    index = fourclass_hash_index(data_root)
    found = examples.bundled()
    assert any(e.dataset == "figshare_3064" for e in found)
    for example in found:
        for path in (config.SAMPLE_DIR / example.file, examples.source_file(example, data_root)):
            hit = index.query(read_grey(path))
            assert hit is None, (example.file, hit)


def _fake_figshare(tmp_path, rows):
    root = tmp_path / "figshare_3064"
    root.mkdir()
    (root / "index.csv").write_text("id,image,mask,label,patient_id,fold\n" + "".join(
        f"{i},images/{i}.jpg,masks/{i}.png,{label},{patient},4\n" for i, label, patient in rows))
    return tmp_path


def test_the_rule_takes_the_uncopied_slice_nearest_the_middle_then_the_next_series(tmp_path):
    """No data or model needed: copies are skipped, nearest the middle first (lower id on a tie); a series with
    no uncopied slice gives way to the patient's next series, a patient with none to the next patient; at
    most one slice per patient, two planes per class."""
    assert examples.middle_out([10, 11, 12, 13, 14, 15, 16]) == [13, 12, 14, 11, 15, 10, 16]
    assert examples.middle_out([10, 11, 12, 13]) == [12, 11, 13, 10]
    rows, planes = [], {}
    for cls, base in (("glioma", 100), ("meningioma", 200), ("pituitary", 300)):
        # patient "<cls>-a": an axial series, then a coronal one; patient "<cls>-b": a sagittal, then a coronal one.
        for patient, first, count, plane in (("a", 0, 7, "axial"), ("a", 20, 3, "coronal"),
                                             ("b", 40, 3, "sagittal"), ("b", 60, 5, "coronal")):
            for i in range(base + first, base + first + count):
                rows.append((i, cls, f"{cls}-{patient}"))
                planes[i] = plane
    copies = {103, 102, 140, 141, 142}        # glioma: middle 103 and 102 copied -> 104; b's sagittal all copied
    copies |= set(range(200, 207))             # meningioma: a's axial series all copied -> a's coronal
    copies |= {340, 341, 342, 362}             # pituitary: b's sagittal all copied; coronal middle 362 -> 361 (tie)
    root = _fake_figshare(tmp_path, rows)
    chosen = examples._figshare_choice(root, is_copy=lambda path: int(path.stem) in copies, planes=planes)
    got = {(e.expert_label, e.plane): int(e.source_path.split("/")[1].split(".")[0]) for e in chosen}
    assert got == {("glioma", "axial"): 104, ("glioma", "coronal"): 162,
                   ("meningioma", "coronal"): 221, ("meningioma", "sagittal"): 241,
                   ("pituitary", "axial"): 303, ("pituitary", "coronal"): 361}, got
    assert all(e.file == f"real/figshare_{e.expert_label}_{e.plane}_{got[(e.expert_label, e.plane)]}.jpg"
               for e in chosen)


def test_a_series_without_a_recorded_plane_stops_the_rule(tmp_path):
    root = _fake_figshare(tmp_path, [(9000, "glioma", "000")])
    with pytest.raises(examples.ExampleError, match="not recorded"):
        examples._figshare_choice(root)
    with pytest.raises(examples.ExampleError, match="not recorded"):
        examples._figshare_choice(root, is_copy=lambda path: False, planes={})


def test_the_rule_is_stated_without_any_model_result():
    text = examples.RULE.lower()
    assert "fold-4" in text and "patient id" in text and "no model output" in text
    assert np.all([word not in text for word in ("accuracy", "correct", "confidence", "dice")])
