"""AppTest of the Analyse page: sample → results → downloads, and bad uploads → clear messages."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import config

TIMEOUT = 180
APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, name: str, content: bytes) -> AppTest:
    at.radio(key="an_source").set_value("Upload a file").run()
    at.file_uploader(key="an_upload").upload(name, content).run()
    assert not at.exception, at.exception
    return at


def sample_names() -> list[str]:
    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    return [f["name"] for f in manifest["files"] if f["kind"] in {"slice", "volume"}]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_page_renders_with_synthetic_sample_labelled():
    at = page()
    assert at.title[0].value == "Analyse a slice"
    assert any("Synthetic phantom" in i.value for i in at.info)
    assert at.button(key="an_go").disabled is False


def test_sample_to_results_and_downloads():
    at = page()
    glioma = next(o for o in sample_names() if "glioma" in o)
    at.selectbox(key="an_sample").set_value(glioma).run()
    at.checkbox(key="an_anyway").check().run()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    labels = {m.label for m in at.metric}
    assert {"Decision", "Ensemble probability", "Members agreeing"} <= labels
    decision = next(m.value for m in at.metric if m.label == "Decision")
    assert decision in {"Glioma", "Meningioma", "Pituitary", "No tumour"}
    # member table: four members plus the ensemble row
    table = at.dataframe[0].value
    assert len(table) == 5 and table["member"].iloc[-1] == "stacking ensemble"
    keys = {b.key for b in at.get("download_button")}
    assert {"dl_json", "dl_csv", "dl_mask", "dl_overlay"} <= keys


def test_result_survives_an_opacity_change_without_rerunning_models():
    at = page()
    at.checkbox(key="an_anyway").check().run()
    at.button(key="an_go").click().run()
    first = at.session_state["analysis"]["result"]
    at.slider(key="an_opacity").set_value(0.8).run()
    assert at.session_state["analysis"]["result"] is first
    assert any(m.label == "Decision" for m in at.metric)


@pytest.mark.parametrize("name,content,expected", [
    ("empty.png", b"", "empty"),
    ("notes.png", b"this is a text file, not an image" * 10, "PNG"),
    ("scan.nii.gz", b"\x1f\x8b\x08\x00garbage", "gzip"),
])
def test_bad_uploads_get_specific_messages(name, content, expected):
    at = upload(page(), name, content)
    assert at.error, "a bad upload must show an error"
    assert name in at.error[0].value
    assert expected.lower() in at.error[0].value.lower()


def test_truncated_png_is_reported_not_crashing():
    data = png((np.random.default_rng(0).random((128, 128)) * 255).astype(np.uint8))
    at = upload(page(), "cut.png", data[: len(data) // 2])
    assert at.error and "cut.png" in at.error[0].value


def test_colour_photo_is_refused_with_override():
    rng = np.random.default_rng(1)
    photo = np.zeros((96, 96, 3), np.uint8)
    photo[..., 0] = 200
    photo[..., 1] = rng.integers(0, 120, (96, 96))
    photo[..., 2] = 40
    at = upload(page(), "cat.png", png(photo))
    assert any("colour" in e.value for e in at.error)
    assert at.button(key="an_go").disabled
    at.checkbox(key="an_override").check().run()
    assert not at.button(key="an_go").disabled


def test_volume_asks_for_a_plane_and_slice():
    at = page()
    volume = next((o for o in sample_names() if ".nii" in o), None)
    if volume is None:
        pytest.skip("no NIfTI volume among the samples")
    at.selectbox(key="an_sample").set_value(volume).run()
    assert at.radio(key="an_plane").value == "Axial"
    assert at.slider(key="an_index_2") is not None
    assert not at.error


def test_result_json_download_is_valid_json():
    at = page()
    at.checkbox(key="an_anyway").check().run()
    at.button(key="an_go").click().run()
    result = at.session_state["analysis"]["result"]
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["decision"] in payload["classes"]
    assert abs(sum(payload["probabilities"]) - 1.0) < 1e-4
    assert set(payload["model_versions"]) >= {"stacking_ensemble", "resunet"}
