"""AppTest of the Explore BraTS volumes page: the synthetic sample, display controls, the 3D view,
uploads in three conventions, bad uploads with specific messages, the model missing or present
(a tiny untrained stand-in in a temporary weights folder), and a real case when the data exist."""
from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from app_steps import open_from_comparison
from streamlit.testing.v1 import AppTest

from core import config

from core.volumes import case as volume
from core.volumes.regions import label_volumes_cm3
from core.volumes import figures as vv
from core.volumes.brats_model import model_problem

TIMEOUT = 180
APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")
PAGE = "pages/brats_explorer.py"
SHAPE = (24, 28, 20)
SUFFIXES = {
    "brats2021": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "brats2023": {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"},
}


@pytest.fixture
def no_model(monkeypatch, tmp_path):
    """An empty weights folder: the page must work without the BraTS model."""
    monkeypatch.setattr(config, "WEIGHTS_DIR", tmp_path / "empty_weights")


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def images(at: AppTest) -> list:
    return list(at.get("image"))


def cursor(at: AppTest) -> tuple[int, int, int]:
    return at.slider(key="bx_x").value, at.slider(key="bx_y").value, at.slider(key="bx_z").value


def table(at: AppTest):
    return at.dataframe[0].value


# --------------------------------------------------------------------------- synthetic files


def tiny_case(shape=SHAPE) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(3)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    brain = x**2 + y**2 + z**2 <= 0.8
    imgs = {k: np.where(brain, rng.integers(50, 250, shape), 0).astype(np.int16) for k in volume.MODALITIES}
    labels = np.zeros(shape, np.uint8)
    labels[(x - 0.2) ** 2 + y**2 + z**2 <= 0.15] = 2
    labels[(x - 0.2) ** 2 + y**2 + z**2 <= 0.05] = 1
    labels[(x - 0.2) ** 2 + y**2 + z**2 <= 0.02] = 4
    return imgs, labels


def nii(arr: np.ndarray, affine=None) -> bytes:
    return gzip.compress(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine).to_bytes())


def case_files(convention="brats2021", case="CASE_0001", folder="") -> list[tuple[str, bytes, str]]:
    imgs, labels = tiny_case()
    if convention == "brats2023":
        labels = np.where(labels == 4, 3, labels).astype(np.uint8)
    arrays = {**imgs, "seg": labels}
    return [(f"{folder}{case}{SUFFIXES[convention][k]}.nii.gz", nii(v), "application/gzip") for k, v in arrays.items()]


def zipped(files: list[tuple[str, bytes, str]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data, _ in files:
            zf.writestr(f"case/{name}", data)
    return buffer.getvalue()


def upload(at: AppTest, files: list[tuple[str, bytes, str]], key: str = "bx_upload") -> AppTest:
    at.radio(key="bx_source").set_value("upload").run()
    if key == "bx_upload_dir":
        at.radio(key="bx_upload_mode").set_value("A folder").run()
    at.file_uploader(key=key).set_value(files).run()
    assert not at.exception, at.exception
    return at


def replace(files, suffix: str, data: bytes) -> list[tuple[str, bytes, str]]:
    return [(n, data if n.endswith(suffix) else d, m) for n, d, m in files]


# --------------------------------------------------------------------------- the sample


def test_sample_renders_labelled_synthetic_without_model(no_model):
    at = page()
    assert at.title[0].value == "Explore BraTS volumes"
    assert any("Synthetic case" in i.value for i in at.info)
    assert any("not available yet" in w.value and "python -m core.train.brats" in w.value for w in at.warning)
    assert len(images(at)) == 3
    sample = volume.read_case_folder(config.SAMPLE_DIR / "synthetic_brats" / "SYNTH_0001")
    assert cursor(at) == vv.tumour_cursor(sample.labels)            # opens on the tumour
    vols = table(at).set_index("part")
    expected = label_volumes_cm3(sample.labels, sample.spacing_mm)
    assert vols.loc["WT", "expert_cm3"] == pytest.approx(expected["WT"]) and expected["WT"] > 0
    assert "model_cm3" not in vols.columns
    assert at.get("download_button") and not at.button(key="bx_jump").disabled


def test_display_controls(no_model):
    at = page()
    at.button(key="bx_centre").click().run()
    assert cursor(at) == vv.default_cursor((96, 96, 72))
    at.button(key="bx_jump").click().run()
    jumped = cursor(at)
    assert jumped != vv.default_cursor((96, 96, 72))
    at.slider(key="bx_z").set_value(10).run()
    assert cursor(at) == (jumped[0], jumped[1], 10)
    at.selectbox(key="bx_modality").set_value("t1ce").run()
    at.radio(key="bx_window").set_value("manual").run()
    at.slider(key="bx_window_manual_t1ce").set_value((100.0, 600.0)).run()
    at.toggle(key="bx_contour").set_value(True).run()
    at.color_picker(key="bx_colour_ET").pick("#0000ff").run()
    at.slider(key="bx_opacity_ED").set_value(0.9).run()
    at.toggle(key="bx_cursor").set_value(False).run()
    at.toggle(key="bx_overlay").set_value(False).run()
    assert not at.exception, at.exception
    assert len(images(at)) == 3
    assert "T1ce" in at.get("image")[0].proto.imgs[0].caption


def test_3d_view_on_request(no_model):
    at = page()
    charts = len(at.get("plotly_chart"))
    at.toggle(key="bx_3d").set_value(True).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == charts + 1
    assert any("triangles" in c.value for c in at.caption)
    at.multiselect(key="bx_3d_parts").set_value(["ET"]).run()
    at.checkbox(key="bx_3d_brain").uncheck().run()
    assert not at.exception, at.exception


# --------------------------------------------------------------------------- uploads


def decathlon_files() -> list[tuple[str, bytes, str]]:
    imgs, labels = tiny_case()
    stacked = np.stack([imgs[k] for k in volume.MODALITIES], axis=-1)        # FLAIR, T1w, T1gd, T2w
    msd = np.select([labels == 2, labels == 1, labels == 4], [1, 2, 3], 0).astype(np.uint8)
    return [("Task01_BrainTumour/imagesTr/BRATS_001.nii.gz", nii(stacked), "application/gzip"),
            ("Task01_BrainTumour/labelsTr/BRATS_001.nii.gz", nii(msd), "application/gzip")]


@pytest.mark.parametrize("how", ["brats2021 files", "brats2023 zip", "folder", "decathlon folder"])
def test_uploads_in_each_convention(no_model, how):
    at = page()
    if how == "brats2021 files":
        upload(at, case_files("brats2021"))
    elif how == "brats2023 zip":
        upload(at, [("case.zip", zipped(case_files("brats2023", "BraTS-GLI-00001-000")), "application/zip")])
    elif how == "folder":
        upload(at, case_files("brats2021", folder="CASE_0001/"), key="bx_upload_dir")
    else:
        upload(at, decathlon_files(), key="bx_upload_dir")
    assert not at.error, [e.value for e in at.error]
    assert len(images(at)) == 3
    assert not any("Synthetic case" in i.value for i in at.info)
    imgs, labels = tiny_case()
    vols = table(at).set_index("part")
    assert vols.loc["ET", "expert_cm3"] == pytest.approx((labels == 4).sum() / 1000)  # ET = 3 in 2023 files
    summary = at.caption[0].value
    naming = "BraTS 2023" if "2023" in how else "Decathlon" if "decathlon" in how else "BraTS 2020/2021"
    assert naming in summary
    other = page()                                                   # another user's session is untouched
    assert any("Synthetic case" in i.value for i in other.info)


def test_upload_without_label_map(no_model):
    at = upload(page(), [f for f in case_files() if "_seg" not in f[0]])
    assert not at.error and len(images(at)) == 3
    assert at.button(key="bx_jump").disabled
    assert any("No label map yet" in i.value for i in at.info)
    at.toggle(key="bx_3d").set_value(True).run()                     # brain surface only
    assert not at.exception, at.exception
    at.switch_page("pages/analyze.py").run()                          # the uploaded case stays
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.radio(key="bx_source").value == "upload" and len(images(at)) == 3
    assert any("Your last uploaded case" in c.value for c in at.caption)


def bad_cases():
    files = case_files()
    imgs, labels = tiny_case()
    flair = next(d for n, d, _ in files if n.endswith("_flair.nii.gz"))
    return {
        "single modality": ([files[0]], "Only one modality"),
        "mismatched grids": (replace(files, "_t2.nii.gz", nii(imgs["t2"][:-2])), "different grid"),
        "2D image": ([(n, nii(np.zeros((24, 28), np.int16)), m) for n, _, m in files], "2D image"),
        "corrupt gzip": (replace(files, "_flair.nii.gz", flair[: len(flair) // 2]), "damaged or truncated gzip"),
        "unknown labels": (replace(files, "_seg.nii.gz", nii(np.where(labels == 4, 7, labels).astype(np.uint8))),
                           "unknown label value 7"),
        "corrupt zip": ([("case.zip", b"PK\x03\x04 not a zip", "application/zip")], "zip file is damaged"),
    }


@pytest.mark.parametrize("name", list(bad_cases()))
def test_bad_uploads_get_specific_messages(no_model, name):
    files, message = bad_cases()[name]
    at = upload(page(), files)
    assert at.error, f"no error shown for {name}"
    assert message in at.error[0].value, at.error[0].value
    assert not images(at)


def test_oversize_upload_refused(no_model, monkeypatch):
    monkeypatch.setattr(volume, "MAX_CASE_BYTES", 10_000)
    at = upload(page(), case_files())
    assert at.error and "limit is" in at.error[0].value and "MB" in at.error[0].value


# --------------------------------------------------------------------------- with a model


@pytest.fixture
def stand_in_weights(monkeypatch, tmp_path):
    """A tiny untrained U-Net registered as unet2d_brats in a temporary weights folder."""
    from core.serving import registry
    from core.models.segmenters import build_segmenter

    weights = tmp_path / "weights"
    weights.mkdir()
    model = build_segmenter("unet", input_size=None, channels=4, num_classes=4, base=4, depth=2)
    model.save(weights / "unet2d_brats.keras")
    registry.record_model("unet2d_brats", {
        "task": "brats", "role": "shipped", "file": "unet2d_brats.keras",
        "description": "untrained stand-in for tests", "postprocessing_rules": {"min_component_mm3": 0.0, "min_et_mm3": 0.0},
        "split_cases": {"train": ["SYNTH_0001"], "val": [], "test": []}}, weights)
    monkeypatch.setattr(config, "WEIGHTS_DIR", weights)
    return weights


def test_segment_with_model_compare_and_download(stand_in_weights):
    at = page()
    assert not any("not available" in w.value for w in at.warning)
    assert not any("trained on this case" in w.value for w in at.warning)  # only said for public cases
    at.button(key="bx_segment").click().run()
    assert not at.exception, at.exception
    assert any("Segmented 96×96×72 voxels" in s.value for s in at.success)
    assert at.download_button(key="bx_dl_pred")
    assert "Model" in at.radio(key="bx_label_source").options
    assert any(h.value == "Expert vs model" for h in at.subheader)
    assert len(images(at)) == 5                                         # 3 planes + expert and model
    vols = table(at)
    assert {"expert_cm3", "model_cm3", "dice", "hd95_mm"} <= set(vols.columns)
    notes = dict(zip(vols["part"], vols["note"]))           # every empty cell says why (never "None")
    assert notes["NCR"] == notes["ED"] == vv.EMPTY_CELLS["label"]
    for region in ("WT", "TC", "ET"):
        if vols.set_index("part").loc[region, "hd95_mm"] != vols.set_index("part").loc[region, "hd95_mm"]:   # NaN
            assert notes[region] in (vv.EMPTY_CELLS["both_empty"], vv.EMPTY_CELLS["one_empty"])
    legends = [m.value for m in at.markdown if 'data-testid="bx-legend"' in m.value]
    assert len(legends) == 2 and "Expert (left) and model (right)" in legends[1]      # beside both views
    at.radio(key="bx_label_source").set_value("Model").run()
    at.toggle(key="bx_3d").set_value(True).run()
    at.radio(key="bx_3d_source").set_value("Model").run()
    assert not at.exception, at.exception


def test_a_second_brats_model_is_offered_and_segments_window_by_window(stand_in_weights):
    """With a 3D model beside the shipped 2D one, the page offers both (shipped first); the chosen
    model segments and names itself; switching model asks for a new run."""
    from core.serving import registry
    from core.models.segmenters import build_segmenter

    build_segmenter("unet3d", input_size=None, channels=4, num_classes=4, base=2, depth=2).save(
        stand_in_weights / "unet3d_brats.keras")
    registry.record_model("unet3d_brats", {
        "task": "brats", "role": "comparison", "dims": 3, "file": "unet3d_brats.keras",
        "input": {"window": 32, "multiple": 4, "overlap": 0.25},
        "description": "untrained 3D stand-in for tests", "postprocessing_rules": {"min_component_mm3": 0.0, "min_et_mm3": 0.0},
        "split_cases": {"train": [], "val": [], "test": []}}, stand_in_weights)
    at = page()
    assert at.radio(key="bx_model").options == ["unet2d_brats (2D, shipped)", "unet3d_brats (3D, comparison)"]
    assert at.radio(key="bx_model").value == "unet2d_brats"
    at.radio(key="bx_model").set_value("unet3d_brats").run()
    at.button(key="bx_segment").click().run()
    assert not at.exception, at.exception
    assert any("Segmented 96×96×72 voxels" in s.value and "unet3d_brats" in s.value for s in at.success)
    assert "dice" in table(at).columns
    at.radio(key="bx_model").set_value("unet2d_brats").run()
    assert not any("Segmented" in s.value for s in at.success)             # that prediction was the other model's


# --------------------------------------------------------------------------- real data


def test_real_brats_case_on_the_page(data_root):
    brats = data_root / "brats"
    cases = sorted(p.name for p in brats.iterdir() if p.is_dir()) if brats.is_dir() else []
    if not cases:
        pytest.skip(f"no BraTS case folders in {brats}")
    at = page()
    at.radio(key="bx_source").set_value("public").run()
    at.selectbox(key="bx_public").set_value(cases[0]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("BraTS 2021 training case" in c.value for c in at.caption)
    assert "128×128×128" in at.caption[0].value
    assert len(images(at)) == 3
    case = volume.read_case_folder(brats / cases[0])
    assert cursor(at) == vv.tumour_cursor(case.labels)
    assert table(at).set_index("part").loc["WT", "expert_cm3"] > 0
    if model_problem() is None:                                          # the shipped model, once trained
        at.button(key="bx_segment").click().run()
        assert not at.exception, at.exception
        assert "dice" in table(at).columns


def brats_cases_table(at: AppTest):
    return next(d.value for d in at.dataframe if "case" in d.value.columns)


def test_comparison_page_lists_the_brats_cases_the_artifact_scored():
    import json

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/model_comparison.py").run()
    assert not at.exception, at.exception
    detail = json.loads((config.REPO_ROOT / "weights" / "eval" / "models" / "unet2d_brats.json").read_text())
    cases = detail["result"]["cases"]
    table = brats_cases_table(at)
    assert list(table["case"]) == sorted(cases)
    for region in ("WT", "TC", "ET"):
        assert list(table[f"{region} Dice"]) == [cases[c][region]["dice"] for c in table["case"]]


def test_a_case_handed_over_that_is_not_in_the_data_folder_is_explained(no_model):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["bx_request"] = {"case": "BraTS_NOT_HERE", "segment": True}
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert any("BraTS_NOT_HERE" in w.value for w in at.warning)
    assert at.radio(key="bx_source").value == "sample"


def test_comparison_page_opens_a_scored_case_segmented_in_the_explorer(data_root):
    at, case = open_from_comparison("mc_brats_open_case", "mc_brats_open", timeout=TIMEOUT)
    assert at.title[0].value == "Explore BraTS volumes"
    assert at.radio(key="bx_source").value == "public" and at.selectbox(key="bx_public").value == case
    assert any("Segmented" in s.value for s in at.success)                  # segmented on arrival
    assert at.session_state["bx_pred"]["comparison"] is not None             # against the expert labels


def test_colour_legend_follows_the_colours_and_settings_survive_a_page_switch(no_model):
    at = page()
    legend = next(m.value for m in at.markdown if 'data-testid="bx-legend"' in m.value)
    for name, colour in vv.DEFAULT_COLOURS.items():
        assert f"background:{colour}" in legend and f"<b>{name}</b>" in legend
    assert "Expert" in legend and "filled" in legend
    at.color_picker(key="bx_colour_ET").pick("#0000ff").run()
    at.toggle(key="bx_contour").set_value(True).run()
    at.slider(key="bx_z").set_value(5).run()
    legend = next(m.value for m in at.markdown if 'data-testid="bx-legend"' in m.value)
    assert "background:#0000ff" in legend and "outlines" in legend
    assert "note" not in table(at).columns                       # nothing empty, nothing to explain
    at.switch_page("pages/analyze.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.color_picker(key="bx_colour_ET").value == "#0000ff" and at.toggle(key="bx_contour").value is True
    assert cursor(at)[2] == 5
