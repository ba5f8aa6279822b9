"""The slice pipeline with the shipped weights, and its branching with stand-in models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core import config
from core.readers.decoded import Slice
from core.readers.slice import read_slice_file
from core.slices.pipeline import AnalysisOptions, Analyzer

CLASSES = list(config.CLASS_NAMES)


def synthetic(name: str) -> Slice:
    return read_slice_file(config.SAMPLE_DIR / name)


def sample_of(kind: str) -> str:
    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    return next(f["name"] for f in manifest["files"] if f["kind"] == "slice" and f.get("class") == kind)


class FixedClassifier:
    """Stands in for the ensemble: always the same decision (tests the pipeline's branching)."""

    def __init__(self, decision: str):
        self.probs = np.full((1, 4), 0.02)
        self.probs[0, CLASSES.index(decision)] = 0.94

    def predict(self, images):
        return {"m1": self.probs, "m2": self.probs}, self.probs

    def versions(self):
        return {"fixed": "0" * 64}


def test_shipped_pipeline_result_is_complete_and_json_able(analyzer):
    result = analyzer.analyze(synthetic(sample_of("glioma")), AnalysisOptions(segment_anyway=True))
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["decision"] in CLASSES
    assert abs(sum(result.probabilities) - 1) < 1e-5
    assert len(result.member_probabilities) == 4
    for probs in result.member_probabilities.values():
        assert abs(sum(probs) - 1) < 1e-4
    assert result.segmented and result.mask.shape == result.shape
    assert set(result.model_versions) >= {"stacking_ensemble", "resunet"}
    assert all(len(v) == 64 for v in result.model_versions.values())
    # every network runs on its current LiteRT export (the stacking meta-learner is plain numpy)
    rules = {"stacking_ensemble", "lesion_crosscheck"}         # fitted rules, not networks
    assert result.model_runtimes == {n: "LiteRT" for n in result.model_versions if n not in rules}
    assert "mask_png_base64" in payload


def test_no_tumour_stops_before_segmentation_unless_asked(analyzer):
    stand_in = Analyzer(FixedClassifier("notumor"), analyzer.segmenter)
    image = synthetic(sample_of("notumor"))
    stopped = stand_in.analyze(image)
    assert not stopped.segmented and stopped.mask is None and stopped.features is None
    forced = stand_in.analyze(image, AnalysisOptions(segment_anyway=True))
    assert forced.segmented and forced.mask is not None


def test_tumour_with_empty_mask_is_warned(analyzer):
    stand_in = Analyzer(FixedClassifier("glioma"), analyzer.segmenter)
    blank = Slice(image=np.zeros((128, 128), np.float32), spacing_mm=None, source_format="png", name="blank.png",
                  metadata={}, identifiers={}, colourfulness=0.0)
    result = stand_in.analyze(blank)
    assert result.segmented and result.features is None
    assert any("found no tumour region" in w for w in result.warnings)


def test_spacing_from_file_and_from_user(analyzer):
    dicom = next(f for f in json.loads((config.SAMPLE_DIR / "manifest.json").read_text())["files"]
                 if f["name"].endswith(".dcm"))
    slice_ = synthetic(dicom["name"])
    assert slice_.spacing_mm is not None
    stand_in = Analyzer(FixedClassifier("meningioma"), analyzer.segmenter)
    from_file = stand_in.analyze(slice_)
    assert from_file.spacing_source == "file"
    if from_file.features:
        assert from_file.features.area_mm2 == pytest.approx(
            from_file.features.area_px * slice_.spacing_mm[0] * slice_.spacing_mm[1], rel=1e-6)
    png = synthetic(sample_of("glioma"))
    typed = stand_in.analyze(png, AnalysisOptions(spacing_override_mm=(0.5, 0.5)))
    assert typed.spacing_source == "user"
    unknown = stand_in.analyze(png)
    assert unknown.spacing_source == "unknown"
    if unknown.features:
        assert unknown.features.area_mm2 is None
        assert any("Pixel spacing unknown" in w for w in unknown.warnings)


def test_real_testing_images_are_classified_correctly(analyzer, data_root):
    """A fixed, stratified handful of official Testing images (skips without the data)."""
    from core.data.datasets import list_classification

    listing = list_classification(data_root / "brain_mri_4class" / "Testing")
    rng = np.random.default_rng(0)
    picks = np.concatenate([rng.choice(np.flatnonzero(listing.labels == k), 10, replace=False) for k in range(4)])
    images = [read_slice_file(listing.paths[i]).image for i in picks]
    _, probs = analyzer.classifier.predict(images)
    accuracy = float(np.mean(probs.argmax(1) == listing.labels[picks]))
    assert accuracy >= 0.9, accuracy


def test_real_figshare_slice_is_segmented(analyzer, data_root):
    from core.data.datasets import list_segmentation, read_mask
    from core.imaging.metrics import dice

    listing = list_segmentation(data_root / "figshare_3064")
    held_out = [i for i, f in enumerate(listing.folds) if f == 4][:12]
    scores = []
    for i in held_out:
        mask, _ = analyzer.segmenter.segment(read_slice_file(listing.images[i]).image, (0.98, 0.98))
        scores.append(dice(mask, read_mask(listing.masks[i])))
    assert np.mean(scores) > 0.6, scores


# --------------------------------------------------------------------------- trust signals

def test_calibration_entropy_and_gradcam_on_the_shipped_ensemble(analyzer):
    result = analyzer.analyze(synthetic(sample_of("glioma")))
    cal = result.calibration
    assert cal["temperature"] > 0 and cal["n_validation"] > 100
    assert cal["ece_before"] is not None and cal["ece_after"] is not None
    # the shipped meta-learner was calibrated on every source's validation patients (its card's sources)
    assert cal["fitted_on"].startswith("validation patients of every source")
    assert len(result.uncalibrated_probabilities) == 4 and abs(sum(result.uncalibrated_probabilities) - 1) < 1e-4
    assert 0.0 <= result.entropy <= 1.0
    assert result.gradcam_class == result.decision
    assert set(result.gradcam) == {"average", *result.member_votes}
    assert all(m.shape == result.shape for m in result.gradcam.values())
    payload = json.loads(json.dumps(result.to_dict()))
    assert "gradcam" not in payload and payload["gradcam_layers"]


def test_split_votes_and_flat_probabilities_raise_caution(analyzer):
    class Split(FixedClassifier):
        def predict(self, images):
            a, b = np.array([[0.6, 0.3, 0.05, 0.05]]), np.array([[0.3, 0.6, 0.05, 0.05]])
            return {"m1": a, "m2": b}, np.array([[0.45, 0.45, 0.05, 0.05]])

    result = Analyzer(Split("glioma"), analyzer.segmenter).analyze(synthetic(sample_of("glioma")))
    assert result.caution and result.entropy > 0.5
    assert any(w.startswith("Low confidence") for w in result.warnings)
    assert any("disagree" in w for w in result.warnings)
    confident = Analyzer(FixedClassifier("glioma"), analyzer.segmenter).analyze(synthetic(sample_of("glioma")))
    assert not confident.caution


def test_a_copy_of_a_training_image_is_flagged(analyzer):
    from core.trust.fingerprints import fingerprint
    from core.trust.hash_index import HashIndex

    image = synthetic(sample_of("meningioma")).image
    fp = fingerprint(image)
    index = HashIndex(phash=np.array([fp.phash], np.uint64), dhash=np.array([fp.dhash], np.uint64),
                      labels=["meningioma"], names=["meningioma/Tr-me_0001.jpg"])
    stand_in = Analyzer(FixedClassifier("meningioma"), analyzer.segmenter, index)
    mirrored = Slice(image=np.ascontiguousarray(image[:, ::-1]), spacing_mm=None, source_format="png",
                     name="copy.png")
    result = stand_in.analyze(mirrored)
    assert result.training_match["name"] == "meningioma/Tr-me_0001.jpg" and result.training_match["mirrored"]
    assert result.warnings[0].startswith("This image is") and "used to train the model" in result.warnings[0]
    other = stand_in.analyze(synthetic(sample_of("glioma")))
    assert other.training_match is None


def test_shipped_hash_index_is_loaded(analyzer):
    assert analyzer.hash_index is not None and len(analyzer.hash_index) > 1000


def test_gradcam_can_be_left_out_and_added_on_request(analyzer):
    slice_ = synthetic(sample_of("glioma"))
    result = analyzer.analyze(slice_, AnalysisOptions(gradcam=False))
    assert result.gradcam is None and result.gradcam_class is None and "gradcam_ms" not in result.timings_ms
    assert analyzer.explain(slice_, result) is result
    assert result.gradcam_class == result.decision and "gradcam_ms" in result.timings_ms
    assert set(result.gradcam) == {"average", *result.member_votes}
    assert all(m.shape == result.shape for m in result.gradcam.values())
    maps = result.gradcam
    analyzer.explain(slice_, result)
    assert result.gradcam is maps, "maps for the decided class are not computed twice"
    stand_in = Analyzer(FixedClassifier("glioma"), analyzer.segmenter)
    plain = stand_in.analyze(slice_, AnalysisOptions(gradcam=False))
    assert stand_in.explain(slice_, plain).gradcam is None, "no members, no Grad-CAM"


def test_segmenting_anyway_after_the_cross_check_runs_the_segmenter_once():
    """On a "no tumour" decision the cross-check's ResUNet probabilities are reused when the user also
    asks to segment: one network call, and the mask is the segmenter's."""
    from stand_ins import LENIENT, NoTumour, SquareSegmenter, StandInAcquisition, cross_check

    segmenter = SquareSegmenter()
    analyzer = Analyzer(NoTumour(), segmenter, acquisition=StandInAcquisition(),
                        cross_check=cross_check(LENIENT, "resunet", segmenter))
    image = np.zeros((96, 96), np.float32)
    image[8:88, 8:88] = 0.6
    result = analyzer.analyze(Slice(image, None, "png", "stand-in"), AnalysisOptions(segment_anyway=True))
    assert result.decision == "notumor" and result.possible_lesion and result.segmented
    assert segmenter.network_calls == 1
    assert result.mask[10:50, 10:50].all() and result.mask.sum() == 40 * 40
