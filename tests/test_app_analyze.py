"""AppTest of the Analyse page: sample → results (votes, calibration, entropy, Grad-CAM) → downloads,
bad uploads and non-MRI images → specific messages, caution and training-set flags."""
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
    assert {"Decision", "Ensemble probability", "Members agreeing", "Entropy"} <= labels
    decision = next(m.value for m in at.metric if m.label == "Decision")
    assert decision in {"Glioma", "Meningioma", "Pituitary", "No tumour"}
    # member table: four members, the ensemble before calibration, the calibrated ensemble
    table = at.dataframe[0].value
    assert len(table) == 6 and table["member"].iloc[-1] == "stacking ensemble"
    assert table["member"].iloc[-2] == "ensemble before calibration"
    assert any("calibrated" in c.value and "Expected calibration error" in c.value for c in at.caption)
    keys = {b.key for b in at.get("download_button")}
    assert {"dl_pdf", "dl_json", "dl_csv", "dl_mask", "dl_overlay"} <= keys


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
    assert any("colour image" in e.value for e in at.error)
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


# ----------------------------------------------------------------------------- trust and reporting

def analysed(at: AppTest) -> AppTest:
    at.checkbox(key="an_anyway").check().run()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    return at


def test_gradcam_beside_segmentation_with_its_own_opacity():
    at = analysed(page())
    result = at.session_state["analysis"]["result"]
    assert set(result.gradcam) == {"average", *result.member_votes}
    maps = at.selectbox(key="an_cam_map")
    assert maps.value == "average" and set(maps.options) >= {"average of the members", "resnet_compact"}
    assert at.slider(key="an_cam_opacity").value == 0.5
    at.slider(key="an_cam_opacity").set_value(0.9).run()
    at.selectbox(key="an_cam_map").set_value("densenet_compact").run()
    assert not at.exception, at.exception
    assert at.session_state["analysis"]["result"] is result, "changing the heat-map must not rerun the models"


def test_document_is_refused_with_a_specific_message_and_can_be_overridden():
    from core.nonmri import document

    at = upload(page(), "letter.png", png(document(3)))
    assert at.error and "document" in at.error[0].value.lower()
    assert "Out-of-distribution score" in at.error[0].value
    assert at.button(key="an_go").disabled
    at.checkbox(key="an_override").check().run()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    result = at.session_state["analysis"]["result"]
    assert result.guard["overridden"] is True and not result.guard["accepted"]
    assert result.warnings[0].startswith("Input guard overridden by the user")


@pytest.mark.parametrize("builder,kind", [("noise", "noise"), ("chest_xray", "x-ray"), ("blank", "blank")])
def test_non_mri_images_get_specific_messages(builder, kind):
    from core import nonmri

    at = upload(page(), f"{builder}.png", png(getattr(nonmri, builder)(0)))
    assert at.error and kind in at.error[0].value.lower(), at.error[0].value
    assert at.button(key="an_go").disabled


def test_split_votes_give_a_visible_caution(monkeypatch):
    """A stand-in ensemble whose members split 2-2 (no real model needed for the caution path)."""
    import numpy as np

    import ui.resources
    from core.pipeline import Analyzer

    class Split:
        def predict(self, images):
            a = np.array([[0.55, 0.40, 0.03, 0.02]])
            b = np.array([[0.35, 0.60, 0.03, 0.02]])
            return {"m1": a, "m2": a, "m3": b, "m4": b}, np.array([[0.48, 0.46, 0.03, 0.03]])

        def versions(self):
            return {"split": "0" * 64}

    class EmptySegmenter:
        name, card = "empty", {"sha256": "1" * 64}

        def segment(self, image, spacing_mm, rules=None):
            return np.zeros(image.shape, bool), np.zeros(image.shape, np.float32)

    monkeypatch.setattr(ui.resources, "analyzer_or_error", lambda: Analyzer(Split(), EmptySegmenter()))
    at = page()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    assert any(w.value.startswith("**Caution") for w in at.warning)
    assert any("disagree" in w.value for w in at.warning)


def test_dicom_identifiers_are_opt_in_for_the_report():
    at = page()
    dicom = next(o for o in sample_names() if o.endswith(".dcm"))
    at.selectbox(key="an_sample").set_value(dicom).run()
    assert any("patient-identifying DICOM fields" in c.value for c in at.caption)
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    assert at.checkbox(key="an_ids").value is False


def test_training_image_is_flagged(data_root):
    from core.datasets import list_classification

    path = list_classification(data_root / "brain_mri_4class" / "Training").paths[0]
    at = upload(page(), path.name, path.read_bytes())
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    assert any("This image was used to train the model" in w.value for w in at.warning)
