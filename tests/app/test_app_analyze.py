"""AppTest of the Analyse page: a bundled real example (the default) or a synthetic phantom → results (votes,
calibration, entropy, Grad-CAM, expert label and outline) → downloads; settings and results that survive a
new file and a page switch; bad uploads and non-MRI images → specific messages, caution and training-set flags."""
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
APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")


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


def synthetic(at: AppTest, name: str | None = None) -> AppTest:
    """Switch the input to the synthetic phantoms (and pick ``name``)."""
    at.radio(key="an_source").set_value("Synthetic phantom").run()
    if name is not None:
        at.selectbox(key="an_sample").set_value(name).run()
    assert not at.exception, at.exception
    return at


def sample_names() -> list[str]:
    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    return [f["name"] for f in manifest["files"] if f["kind"] in {"slice", "volume"}]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_page_opens_on_a_real_example_and_phantoms_are_labelled_synthetic():
    from core.data.examples import bundled

    at = page()
    assert at.title[0].value == "Analyse a slice"
    assert at.radio(key="an_source").value == "Real example"
    first = bundled()[0]
    assert at.selectbox(key="an_example").value == first.file
    assert any(i.value.startswith("**Real scan**") and "CC BY 4.0" in i.value for i in at.info)
    assert at.button(key="an_go").disabled is False
    synthetic(at)
    assert any("Synthetic phantom" in i.value for i in at.info)
    assert at.button(key="an_go").disabled is False


def test_sample_to_results_and_downloads():
    at = page()
    glioma = next(o for o in sample_names() if "glioma" in o)
    synthetic(at, glioma)
    at.checkbox(key="an_anyway").check().run()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    labels = {m.label for m in at.metric}
    assert {"Decision", "Ensemble probability", "Members agreeing", "Entropy"} <= labels
    decision = next(m.value for m in at.metric if m.label == "Decision")
    assert decision in {"Glioma", "Meningioma", "Pituitary", "No tumour"}
    # member table: four members, the ensemble before calibration, the calibrated ensemble
    table = at.dataframe[0].value
    assert len(table) == 6 and table["member"].iloc[-1] == "ensemble"
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
    synthetic(at, volume)
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


def test_gradcam_beside_segmentation_with_its_own_opacity_once_asked_for():
    at = analysed(page())
    result = at.session_state["analysis"]["result"]
    assert result.gradcam is None, "Grad-CAM is computed only when someone asks for it"
    assert at.toggle(key="an_show_cam").value is False
    assert json.loads(at.session_state["an_files"]["json"])["gradcam"] is None
    at.toggle(key="an_show_cam").set_value(True).run()
    assert not at.exception, at.exception
    assert at.session_state["analysis"]["result"] is result
    assert set(result.gradcam) == {"average", *result.member_votes}
    maps = at.selectbox(key="an_cam_map")
    assert maps.value == "average" and set(maps.options) >= {"average of the members", "resnet_compact"}
    assert at.slider(key="an_cam_opacity").value == 0.5
    assert json.loads(at.session_state["an_files"]["json"])["gradcam"]["class"] == result.decision
    cams = result.gradcam
    at.slider(key="an_opacity").set_value(0.9).run()
    at.selectbox(key="an_cam_map").set_value("densenet_compact").run()
    assert not at.exception, at.exception
    assert at.session_state["analysis"]["result"] is result, "changing the heat-map must not rerun the models"
    assert result.gradcam is cams, "the maps are kept with the result, not recomputed"


def test_gradcam_is_not_computed_until_the_toggle_is_on_and_then_only_once(monkeypatch):
    """Stand-in models; ``explain`` counts its calls and fills flat maps."""
    import ui.resources
    from stand_ins import flagging_analyzer

    analyzer = flagging_analyzer()
    calls = []

    def explain(slice_, result):
        calls.append(result.name)
        result.gradcam = {"average": np.zeros(result.shape, np.float32), "m1": np.zeros(result.shape, np.float32)}
        result.gradcam_class = result.decision
        return result

    monkeypatch.setattr(analyzer, "explain", explain)
    monkeypatch.setattr(ui.resources, "analyzer_or_error", lambda: analyzer)
    at = page()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    assert calls == [] and at.session_state["analysis"]["result"].gradcam is None
    assert not any(e.label == "Grad-CAM of every member" for e in at.expander)
    at.toggle(key="an_show_cam").set_value(True).run()
    assert not at.exception, at.exception
    assert len(calls) == 1 and at.selectbox(key="an_cam_map").value == "average"
    at.slider(key="an_cam_opacity").set_value(0.7).run()
    at.button(key="an_go").click().run()                       # the same input again: a new result, explained anew
    assert not at.exception, at.exception
    assert len(calls) == 2, "a result's maps are computed once; the toggle stays on for the next result"


def test_document_is_refused_with_a_specific_message_and_can_be_overridden():
    from core.trust.nonmri import document

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
    from core.trust import nonmri

    at = upload(page(), f"{builder}.png", png(getattr(nonmri, builder)(0)))
    assert at.error and kind in at.error[0].value.lower(), at.error[0].value
    assert at.button(key="an_go").disabled


def test_split_votes_give_a_visible_caution(monkeypatch):
    """A stand-in ensemble whose members split 2-2 (no real model needed for the caution path)."""
    import numpy as np

    import ui.resources
    from core.slices.pipeline import Analyzer

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
    synthetic(at, dicom)
    assert any("patient-identifying DICOM fields" in c.value for c in at.caption)
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    assert at.checkbox(key="an_ids").value is False


def test_training_image_is_flagged(data_root):
    from core.data.datasets import list_classification

    path = list_classification(data_root / "brain_mri_4class" / "Training").paths[0]
    at = upload(page(), path.name, path.read_bytes())
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    assert any("This image was used to train the model" in w.value for w in at.warning)


def image_captions(at: AppTest) -> list[str]:
    return [img.caption for element in at.get("image") for img in element.proto.imgs]


def stand_in_page(monkeypatch, **kwargs) -> tuple[AppTest, object]:
    """The page analysing the default sample with the stand-ins of ``tests/stand_ins.py`` (no model loaded)."""
    import ui.resources
    from stand_ins import flagging_analyzer

    analyzer = flagging_analyzer(**kwargs)
    monkeypatch.setattr(ui.resources, "analyzer_or_error", lambda: analyzer)
    at = page()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    return at, at.session_state["analysis"]["result"]


def test_possible_lesion_recognised_sequence_and_coverage_are_shown(monkeypatch):
    at, result = stand_in_page(monkeypatch)
    assert result.possible_lesion and result.coverage_note
    assert next(m.value for m in at.metric if m.label == "Decision") == "No tumour"
    assert any(m.value == "**Sequence and plane (recognised):** axial FLAIR — sequence 0.97, plane 0.99"
               for m in at.markdown)
    warnings = [w.value for w in at.warning]
    assert sum(result.coverage_note in w for w in warnings) == 1, "the coverage note is shown once, by the decision"
    assert any(w.startswith("**Outside familiar training data.**") for w in warnings)
    area = 100 * result.lesion_check["area_fraction"]
    assert (f"**Possible lesion — the classifier reports no tumour; the lesion detector outlines this region "
            f"(mean confidence 0.95, {area:.1f} % of the head).**") in warnings
    assert sum(w.startswith("**Possible lesion") for w in warnings) == 2      # by the decision, and by the outline
    assert not any(w.startswith("Possible lesion:") for w in warnings)         # not repeated in the generic list
    assert not any("so the slice was not segmented" in i.value for i in at.info)
    assert "Possible lesion outline (lesion detector)" in image_captions(at) and "Binary mask" in image_captions(at)
    assert any("Measurements of the possible lesion's outline" in c.value for c in at.caption)
    caution = next(w for w in warnings if w.startswith("**Caution"))
    assert "possible lesion" in caution and "training data" in caution
    at.checkbox(key="an_anyway").check().run()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    assert any(w.value.endswith("The outline shown is the tumour segmenter's, as asked.") for w in at.warning)
    assert "Segmentation overlay" in image_captions(at)


def test_unsure_sequence_and_unflagged_crosscheck(monkeypatch):
    from stand_ins import STRICT, acquisition

    at, result = stand_in_page(monkeypatch, rule=STRICT, recognised=acquisition(0.41, 0.93))
    assert not result.possible_lesion and not result.segmented
    assert any(m.value == "**Sequence and plane (recognised):** unsure — best guess axial FLAIR "
                          "(sequence 0.41, plane 0.93)" for m in at.markdown)
    assert any("could not be recognised with confidence" in w.value for w in at.warning)
    assert not any(w.value.startswith("**Possible lesion") for w in at.warning)
    assert any(i.value.startswith("No tumour found, and the lesion detector found no region large and "
                                  "confident enough to flag (its strongest: mean confidence 0.95, 3.9 % of the head)")
               for i in at.info)
    assert not any(c.startswith("Possible lesion outline") for c in image_captions(at))


def test_real_models_show_the_recognised_sequence_and_plane():
    from core.errors import ModelUnavailable
    from core.serving.registry import model_card

    try:
        model_card("sequence_plane")
    except ModelUnavailable:
        pytest.skip("these weights ship no sequence/plane model")
    at = page()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    recognised = at.session_state["analysis"]["result"].acquisition
    assert recognised is not None
    line = next(m.value for m in at.markdown if m.value.startswith("**Sequence and plane (recognised):**"))
    assert recognised["label"] in line
    assert f"sequence {recognised['sequence_confidence']:.2f}, plane {recognised['plane_confidence']:.2f}" in line
    assert ("unsure" in line) != recognised["confident"]


def test_possible_lesion_from_the_segmenters_region(monkeypatch):
    at, result = stand_in_page(monkeypatch, model="resunet")
    assert result.possible_lesion
    area = 100 * result.lesion_check["area_fraction"]
    assert any(w.value == f"**Possible lesion — the classifier reports no tumour; the segmenter outlines this region "
                          f"(mean confidence 1.00, {area:.1f} % of the slice).**" for w in at.warning)
    assert "Possible lesion outline (segmenter)" in image_captions(at)


# ----------------------------------------------------------------------------- real examples, state, downloads

def test_real_example_shows_the_expert_label_beside_the_decision_and_the_expert_outline(monkeypatch):
    """With stand-in models (no network loaded): the decision, the expert label beside it (and whether they
    agree), and the expert's outline drawn over the overlay when its box is ticked."""
    at, result = stand_in_page(monkeypatch)
    metrics = {m.label: m for m in at.metric}
    assert metrics["Decision"].value == "No tumour" and metrics["Expert label"].value == "Glioma"
    labels = [m.label for m in at.metric]
    assert labels.index("Expert label") == labels.index("Decision") + 1          # beside the decision
    assert at.checkbox(key="an_expert").value is False
    at.checkbox(key="an_expert").check().run()
    assert not at.exception, at.exception
    assert any(c.endswith("yellow line: expert outline") for c in image_captions(at))


def test_settings_and_result_survive_a_page_switch_and_a_new_file_clears_only_the_result(monkeypatch):
    import ui.resources
    from stand_ins import flagging_analyzer

    analyzer = flagging_analyzer()
    monkeypatch.setattr(ui.resources, "analyzer_or_error", lambda: analyzer)
    first_file, second_file = (config.SAMPLE_DIR / n for n in ("synthetic_glioma_axial.png",
                                                               "synthetic_pituitary_sagittal.png"))
    at = upload(page(), "first.png", first_file.read_bytes())
    at.checkbox(key="an_anyway").check().run()
    at.number_input(key="an_spacing").set_value(0.5).run()
    at.radio(key="an_style").set_value("Red contour").run()
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    first = at.session_state["analysis"]["result"]
    at.switch_page("pages/batch.py").run()
    at.switch_page("pages/analyze.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="an_source").value == "Upload a file"
    assert at.checkbox(key="an_anyway").value is True and at.number_input(key="an_spacing").value == 0.5
    assert at.radio(key="an_style").value == "Red contour"
    assert any("Your last upload, **first.png**" in c.value for c in at.caption), "the upload is kept"
    assert at.session_state["analysis"]["result"] is first and any(m.label == "Decision" for m in at.metric)
    at.file_uploader(key="an_upload").upload("second.png", second_file.read_bytes()).run()
    assert not at.exception, at.exception
    assert "analysis" not in at.session_state and not any(m.label == "Decision" for m in at.metric)
    assert not any("press **Analyse**" in c.value for c in at.caption), "no stale caption on a fresh upload"
    assert at.checkbox(key="an_anyway").value is True and at.number_input(key="an_spacing").value == 0.5
    at.button(key="an_go").click().run()
    at.checkbox(key="an_anyway").uncheck().run()
    assert any("settings in the sidebar changed" in c.value for c in at.caption)


def test_downloads_are_prepared_bytes_kept_per_result(monkeypatch):
    at, result = stand_in_page(monkeypatch)
    files = at.session_state["an_files"]
    assert files["pdf"].startswith(b"%PDF") and json.loads(files["json"])["decision"]["class"] == result.decision
    assert files["mask"].startswith(b"\x89PNG") and files["overlay"].startswith(b"\x89PNG")
    assert b"Centroid" in files["csv"]
    at.slider(key="an_opacity").set_value(0.9).run()                      # a display change rebuilds them once
    assert at.session_state["an_files"] is not files and at.session_state["analysis"]["result"] is result
    again = at.session_state["an_files"]
    at.slider(key="an_opacity").set_value(0.9).run()
    assert at.session_state["an_files"] is again


def test_colour_refusal_says_it_once():
    photo = np.zeros((96, 96, 3), np.uint8)
    photo[..., 0] = 200
    at = upload(page(), "red.png", png(photo))
    message = next(e.value for e in at.error if "colour" in e.value)
    assert message.lower().count("colour image") == 1, message


def test_what_the_dicom_states_is_shown_above_the_recognition_and_drives_the_caution(monkeypatch):
    """The bundled DICOM says coronal T1-CE (series description and orientation); the stand-in recogniser
    says axial FLAIR. The page shows both, names the disagreement, and the coverage caution follows the file."""
    import ui.resources
    from stand_ins import flagging_analyzer

    analyzer = flagging_analyzer()
    monkeypatch.setattr(ui.resources, "analyzer_or_error", lambda: analyzer)
    at = page()
    synthetic(at, next(o for o in sample_names() if o.endswith(".dcm")))
    at.button(key="an_go").click().run()
    assert not at.exception, at.exception
    result = at.session_state["analysis"]["result"]
    assert result.stated_acquisition["label"] == "coronal T1-CE"
    lines = [m.value for m in at.markdown if m.value.startswith("**Sequence and plane")]
    assert lines[0].startswith("**Sequence and plane (stated by the file):** coronal T1-CE (SeriesDescription "
                               "'SYNTHETIC T1 post-contrast coronal'; ImageOrientationPatient")
    assert lines[0].endswith("the image model recognised axial FLAIR; the training-coverage caution follows the file")
    assert lines[1] == "**Sequence and plane (recognised):** axial FLAIR — sequence 0.97, plane 0.99"
    # the stand-in classifier saw no coronal T1-CE "no tumour" slice: the caution names the file's acquisition
    assert result.coverage_note.startswith("The classifier was never trained on a coronal T1-CE slice")
    assert any(result.coverage_note in w.value for w in at.warning)
