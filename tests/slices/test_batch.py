"""Batch: zips and bad files reported per row, a 200-slice run with progress, exports, the Batch page."""
from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import config
from core.slices.batch import BatchItem, expand_uploads, results_csv, results_table, results_zip, run_batch, truth_summary
from core.slices.pipeline import AnalysisOptions, Analyzer

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")
CLASSES = list(config.CLASS_NAMES)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def samples() -> list[tuple[str, bytes]]:
    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    return [(f["name"], (config.SAMPLE_DIR / f["name"]).read_bytes()) for f in manifest["files"]
            if f["kind"] in {"slice", "volume"}]


def bad_files() -> list[tuple[str, bytes]]:
    good = samples()[0][1]
    return [("truncated.png", good[: len(good) // 3]), ("empty.png", b""), ("notes.txt", b"hello"),
            ("document.png", png(np.full((200, 160), 250, np.uint8)))]


class StandIn:
    """A fast stand-in classifier (the batch machinery is under test here, not the models)."""

    def predict(self, images):
        p = np.array([[0.9, 0.05, 0.03, 0.02]])
        return {"m1": p, "m2": p}, p

    def versions(self):
        return {"stand_in": "0" * 64}


class EmptySegmenter:
    name, card = "empty", {"sha256": "1" * 64}

    def segment(self, image, spacing_mm, rules=None):
        return np.zeros(image.shape, bool), np.zeros(image.shape, np.float32)


def zipped(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            archive.writestr(f"scans/{name}", data)
        archive.writestr("__MACOSX/._junk.png", b"junk")
        archive.writestr("inner.zip", b"PK")
    return buffer.getvalue()


def test_zip_is_expanded_and_bad_archives_are_reported():
    items, problems = expand_uploads([("batch.zip", zipped(samples())), ("broken.zip", b"not a zip"),
                                      ("loose.png", samples()[0][1])])
    names = [i.name for i in items]
    assert len(items) == len(samples()) + 1 and all(n.startswith("batch.zip/scans/") for n in names[:-1])
    assert not any("__MACOSX" in n for n in names)
    assert {p.name for p in problems} == {"batch.zip/inner.zip", "broken.zip"}
    assert all(p.status == "error" and p.message for p in problems)


def test_200_slice_batch_reports_progress_and_every_row():
    base = [data for name, data in samples() if name.endswith(".png")]
    items = [BatchItem(f"slice_{i:03d}.png", base[i % len(base)]) for i in range(200)]
    seen = []
    start = time.perf_counter()
    rows = run_batch(items, Analyzer(StandIn(), EmptySegmenter()), AnalysisOptions(gradcam=False, lookup_training=False),
                     progress=lambda done, total, name: seen.append((done, total, name)))
    elapsed = time.perf_counter() - start
    assert [s[0] for s in seen] == list(range(1, 201)) and all(s[1] == 200 for s in seen)
    assert len(rows) == 200 and all(r.status == "ok" for r in rows), [r.message for r in rows if r.status != "ok"]
    assert elapsed < 120, elapsed


def test_bad_files_are_reported_in_their_rows_and_do_not_stop_the_batch():
    files = samples()[:2] + bad_files() + samples()[2:3]
    items = [BatchItem(n, d) for n, d in files]
    rows = run_batch(items, Analyzer(StandIn(), EmptySegmenter()), AnalysisOptions(gradcam=False))
    status = {r.name: r.status for r in rows}
    assert status["truncated.png"] == "error" and "truncated" in next(r for r in rows if r.name == "truncated.png").message
    assert status["empty.png"] == "error" and status["notes.txt"] == "error"
    assert status["document.png"] == "refused"
    assert [r.status for r in rows][-1] == "ok", "the batch goes on after bad files"
    table = results_table(rows)
    assert all(row["warnings / errors"] for row in table if row["status"] != "ok")


class SquareSegmenter(EmptySegmenter):
    """'Segments' a fixed 40x40 square (a known Dice against any expert mask)."""

    def segment(self, image, spacing_mm, rules=None):
        mask = np.zeros(image.shape, bool)
        mask[10:50, 10:50] = True
        return mask, mask.astype(np.float32)


def test_ground_truth_columns_accuracy_and_dice():
    image = samples()[0][1]
    shape = np.asarray(Image.open(io.BytesIO(image))).shape[:2]
    expert = np.zeros(shape, bool)
    expert[30:70, 10:50] = True                              # overlaps the square by half: Dice 0.5
    items = [BatchItem("a.png", image, "glioma", expert), BatchItem("b.png", image, "meningioma", expert),
             BatchItem("c.png", image, "pituitary"), BatchItem("bad.png", b"", "glioma", expert)]
    rows = run_batch(items, Analyzer(StandIn(), SquareSegmenter()),
                     AnalysisOptions(gradcam=False, lookup_training=False, segment_anyway=True))
    assert [r.correct for r in rows] == [True, False, False, None]   # the stand-in always says glioma
    assert [r.dice for r in rows] == [pytest.approx(0.5), pytest.approx(0.5), None, None]
    assert truth_summary(rows) == {"n": 3, "correct": 1, "accuracy": pytest.approx(1 / 3),
                                   "confusion": [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]],
                                   "n_dice": 2, "mean_dice": pytest.approx(0.5)}
    problem = expand_uploads([("broken.zip", b"PK\x03\x04 not a zip")])[1]
    table = list(csv.DictReader(io.StringIO(results_csv(problem + rows).decode())))
    assert [t["true class"] for t in table] == ["", "Glioma", "Meningioma", "Pituitary", "Glioma"]
    assert [t["correct"] for t in table] == ["", "True", "False", "False", ""]
    assert table[1]["Dice vs expert"] == "0.5"
    plain = run_batch([BatchItem("a.png", image)], Analyzer(StandIn(), EmptySegmenter()))
    assert "true class" not in results_table(plain)[0]                # no truth, no truth columns


class NoTumourStandIn(StandIn):
    def predict(self, images):
        p = np.array([[0.02, 0.03, 0.9, 0.05]])
        return {"m1": p, "m2": p}, p


def test_a_slice_left_unsegmented_counts_as_an_empty_mask():
    image = samples()[0][1]
    expert = np.zeros(np.asarray(Image.open(io.BytesIO(image))).shape[:2], bool)
    expert[10:50, 10:50] = True                              # where SquareSegmenter would draw
    item = BatchItem("a.png", image, "glioma", expert)
    plain = AnalysisOptions(gradcam=False, lookup_training=False)
    (row,) = run_batch([item], Analyzer(NoTumourStandIn(), SquareSegmenter()), plain)
    assert row.status == "ok" and not row.result.segmented and row.dice == 0.0 and row.correct is False
    (row,) = run_batch([item], Analyzer(NoTumourStandIn(), SquareSegmenter()),
                       AnalysisOptions(gradcam=False, lookup_training=False, segment_anyway=True))
    assert row.dice == 1.0


def test_real_models_batch_and_exports(analyzer):
    files = samples() + bad_files()[:1]
    rows = run_batch([BatchItem(n, d) for n, d in files], analyzer, AnalysisOptions(gradcam=False, segment_anyway=True))
    ok = [r for r in rows if r.status == "ok"]
    assert len(ok) == len(samples())
    volume = next(r for r in ok if r.name.endswith(".nii.gz"))
    assert "middle axial slice" in volume.note
    table = list(csv.DictReader(io.StringIO(results_csv(rows).decode())))
    assert len(table) == len(rows)
    assert {"file", "status", "class", "probability", "warnings / errors", "area", "maximum diameter", "unit",
            "sequence/plane", "possible lesion"} <= set(table[0])
    for row, shown in zip(rows, table):
        if row.result is not None and row.result.acquisition:
            assert shown["sequence/plane"].startswith(row.result.acquisition["label"])
    measured = [t for t in table if t["area"]]
    assert measured and all(t["unit"] in {"mm", "px"} for t in measured)
    with zipfile.ZipFile(io.BytesIO(results_zip(rows))) as archive:
        names = archive.namelist()
        assert "results.csv" in names and "summary.json" in names
        reports = [n for n in names if n.endswith("/report.json")]
        assert len(reports) == len(ok)
        assert any(n.endswith("/mask.png") for n in names) and any(n.endswith("/overlay.png") for n in names)
        for name in reports:
            assert "SYNTH-0001" not in archive.read(name).decode(), "identifiers must stay out of batch reports"


# ----------------------------------------------------------------------------- the page

def batch_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/batch.py").run()
    assert not at.exception, at.exception
    return at


def test_batch_page_runs_the_samples_with_a_progress_bar():
    at = batch_page()
    assert at.title[0].value == "Analyse a batch"
    at.radio(key="bt_source").set_value("The synthetic phantoms").run()
    at.button(key="bt_go").click().run()
    assert not at.exception, at.exception
    assert at.get("progress"), "a progress bar must be shown"
    table = at.dataframe[0].value
    assert len(table) == len(samples()) and set(table["status"]) == {"ok"}
    assert {b.key for b in at.get("download_button")} >= {"bt_csv", "bt_zip"}
    assert next(m.value for m in at.metric if m.label == "Analysed") == str(len(samples()))


def test_batch_page_reports_corrupt_uploads_per_row():
    at = batch_page()
    uploads = [(n, d, "application/octet-stream") for n, d in samples()[:1] + bad_files()[:2]]
    uploads.append(("more.zip", zipped(samples()[1:2]), "application/zip"))
    at.file_uploader(key="bt_upload").set_value(uploads).run()
    at.button(key="bt_go").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    by_file = dict(zip(table["file"], table["status"]))
    at.switch_page("pages/analyze.py").run()                        # the uploads and results stay
    at.switch_page("pages/batch.py").run()
    assert not at.exception, at.exception
    assert any("Your last 4 uploaded file(s)" in c.value for c in at.caption)
    assert dict(zip(at.dataframe[0].value["file"], at.dataframe[0].value["status"])) == by_file
    assert by_file["truncated.png"] == "error" and by_file["empty.png"] == "error"
    assert by_file["more.zip/inner.zip"] == "error"
    assert sum(s == "ok" for s in by_file.values()) == 2
    assert next(m.value for m in at.metric if m.label == "Errors") == "3"


def test_sequence_plane_and_possible_lesion_columns():
    from stand_ins import STRICT, acquisition, flagging_analyzer

    image = samples()[0][1]
    plain = AnalysisOptions(gradcam=False, lookup_training=False)
    items = [BatchItem("a.png", image), BatchItem("bad.png", b"")]
    flagged = run_batch(items, flagging_analyzer(), plain)
    row = results_table(flagged)[0]
    assert row["sequence/plane"] == "axial FLAIR 0.97/0.99" and row["possible lesion"] is True
    assert row["area"] == 1600.0 and row["unit"] == "px"          # measurements of the flagged region
    assert row["caution"] is True and "Possible lesion" in row["warnings / errors"]
    assert results_table(flagged)[1]["sequence/plane"] == "" and results_table(flagged)[1]["possible lesion"] is None

    (quiet,) = run_batch(items[:1], flagging_analyzer(STRICT, recognised=acquisition(0.41, 0.93)), plain)
    row = quiet.table_row()
    assert row["possible lesion"] is False and row["area"] is None
    assert row["sequence/plane"] == "axial FLAIR 0.41/0.93 (unsure)"
    (tumour,) = run_batch(items[:1], flagging_analyzer(classifier=StandIn()), plain)
    assert tumour.table_row()["possible lesion"] is None               # the check runs only on "no tumour"
    (by_segmenter,) = run_batch(items[:1], flagging_analyzer(model="resunet"), plain)
    assert by_segmenter.table_row()["possible lesion"] is True
    (bare,) = run_batch(items[:1], Analyzer(StandIn(), EmptySegmenter()), plain)
    assert bare.table_row()["sequence/plane"] == "" and bare.table_row()["possible lesion"] is None

    table = list(csv.DictReader(io.StringIO(results_csv(flagged + [quiet, bare]).decode())))
    assert [t["sequence/plane"] for t in table] == ["axial FLAIR 0.97/0.99", "", "axial FLAIR 0.41/0.93 (unsure)", ""]
    assert [t["possible lesion"] for t in table] == ["True", "", "False", ""]


# --------------------------------------------------------------------------- hostile zips (issue 16)


def patched_members(data: bytes, name: str, offset_local: int, offset_central: int, fmt: str, *values) -> bytes:
    """A zip with the local and central headers of member ``name`` rewritten (struct ``fmt``)."""
    import struct

    raw = bytearray(data)
    encoded = name.encode()
    for signature, offset, name_at in ((b"PK\x03\x04", offset_local, 30), (b"PK\x01\x02", offset_central, 46)):
        at = raw.find(signature)
        while raw[at + name_at:at + name_at + len(encoded)] != encoded:
            at = raw.find(signature, at + 4)
        raw[at + offset:at + offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    return bytes(raw)


def two_member_zip() -> bytes:
    good = samples()[0][1]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("locked.png", good)
        archive.writestr("fine.png", good)
    return buffer.getvalue()


def test_encrypted_member_is_reported_in_its_row():
    data = patched_members(two_member_zip(), "locked.png", 6, 8, "<H", 0x1)
    items, problems = expand_uploads([("e.zip", data)])  # RuntimeError escaped before
    assert [i.name for i in items] == ["e.zip/fine.png"]
    assert [p.name for p in problems] == ["e.zip/locked.png"] and "encrypted" in problems[0].message


def test_member_with_compression_method_99_is_reported_in_its_row():
    data = patched_members(two_member_zip(), "locked.png", 8, 10, "<H", 99)
    items, problems = expand_uploads([("m.zip", data)])  # NotImplementedError escaped before
    assert [i.name for i in items] == ["m.zip/fine.png"]
    assert [p.name for p in problems] == ["m.zip/locked.png"] and "method 99" in problems[0].message


def test_zip_budgets_are_checked_before_extraction(monkeypatch):
    monkeypatch.setattr(config, "MAX_ZIP_MEMBERS", 3)
    many = zipped([(f"{i}.png", b"x") for i in range(5)])
    items, problems = expand_uploads([("many.zip", many)])
    assert items == [] and "entries" in problems[0].message
    monkeypatch.setattr(config, "MAX_ZIP_MEMBERS", 2000)
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.png", bytes(5_000_000))
    monkeypatch.setattr(config, "MAX_ZIP_BYTES", 1_000_000)
    items, problems = expand_uploads([("bomb.zip", big.getvalue())])
    assert items == [] and "unpacks to 5 MB" in problems[0].message
    monkeypatch.setattr(config, "MAX_ZIP_BYTES", 512 * 2**20)
    monkeypatch.setattr(config, "MAX_SLICE_BYTES", 1_000_000)
    items, problems = expand_uploads([("bomb.zip", big.getvalue())])
    assert items == [] and problems[0].name == "bomb.zip/zeros.png" and "per file" in problems[0].message


def test_member_that_lies_about_its_size_is_not_read_past_the_limit(monkeypatch):
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.png", bytes(5_000_000))
    liar = patched_members(big.getvalue(), "zeros.png", 22, 24, "<I", 100)  # declares 100 bytes
    items, problems = expand_uploads([("liar.zip", liar)])
    assert items == [] and problems[0].name == "liar.zip/zeros.png" and problems[0].message


def test_zip_needing_a_newer_zip_version_is_reported_in_its_row():
    data = bytearray(two_member_zip())
    at = data.find(b"PK\x01\x02")
    data[at + 6:at + 8] = (209).to_bytes(2, "little")  # "version needed to extract" 20.9
    items, problems = expand_uploads([("new.zip", bytes(data))])
    assert items == [] and [p.name for p in problems] == ["new.zip"] and "not a readable" in problems[0].message


def test_batch_page_scores_the_bundled_real_examples_against_their_expert_labels():
    from core.data.examples import bundled

    at = batch_page()
    at.radio(key="bt_source").set_value("The bundled real examples").run()
    at.button(key="bt_go").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) == len(bundled()) and set(table["status"]) == {"ok"}
    assert any(m.label == "Accuracy against the true class" for m in at.metric)
    assert any(m.label == "Mean Dice against the expert masks" for m in at.metric)
