"""Real-data checks of the generalisation work (skip without ../shared/data): the external benchmark
reproduces its committed artifact, the sequence/plane model its card, the lesion cross-check its
validation figures. Each recomputes from the shipped weights and the public data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core import config
from core.serving.registry import model_card

ARTIFACT = config.WEIGHTS_DIR / "eval" / "external.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def external(data_root):
    from core.evaluation.external import evaluate_external

    return evaluate_external("test", n_boot=0, data_dir=data_root)


def test_external_benchmark_reproduces_the_committed_artifact(external):
    """Every cell's figures as committed (the Compare page shows the artifact; this is its check)."""
    committed = json.loads(ARTIFACT.read_text())
    assert committed["model_versions"] == external["model_versions"], "artifact scored on other weights"
    assert set(committed["cells"]) == set(external["cells"])
    for key, row in external["cells"].items():
        for metric in ("n", "n_tumour", "accuracy", "sensitivity", "specificity", "glioma_accuracy", "auc", "ece"):
            want, got = committed["cells"][key][metric], row[metric]
            assert (want is None and got is None) or got == pytest.approx(want, abs=2e-4), (key, metric)
        if "crosscheck" in committed["cells"][key]:
            assert row["crosscheck"] == committed["cells"][key]["crosscheck"], key
    assert external["worst_cell"] == committed["worst_cell"]
    assert external["false_alarms_by_distance"] == committed["false_alarms_by_distance"]


def test_false_alarms_fall_with_distance_from_the_lesion(external):
    """The measured pattern the README states: TCGA's tumour-free slices next to the lesion are called
    tumour far more often than those 11 or more slices away."""
    rows = external["false_alarms_by_distance"]
    assert sum(r["n"] for r in rows) == sum(
        row["n_no_tumour"] for key, row in external["cells"].items() if not key.startswith("figshare"))

    def rate(distance: str) -> float:
        chosen = [r for r in rows if r["source"] == "tcga_lgg" and r["distance"] == distance]
        return sum(r["false_alarms"] for r in chosen) / sum(r["n"] for r in chosen)

    assert rate("1-2") > 2 * rate("11+")


def test_external_benchmark_covers_every_source_and_sequence(external):
    cells = external["cells"]
    assert {"tcga_lgg/t1", "tcga_lgg/t1ce", "tcga_lgg/flair", "brats/t1", "brats/t1ce", "brats/t2", "brats/flair",
            "figshare/t1ce"} == set(cells)
    assert all(row["patients"] and row["patients"] >= 5 for row in cells.values())
    # a tumour-only cell has no specificity; every other cell has both classes
    assert cells["figshare/t1ce"]["specificity"] is None
    assert all(row["n_no_tumour"] > 50 for key, row in cells.items() if not key.startswith("figshare"))


def test_sequence_plane_model_matches_its_card_on_held_out_brats(data_root):
    from core.slices.acquisition import MODEL_NAME, AcquisitionModel
    from core.data.sources import PLANES, SEQUENCES, load_sources

    card = model_card(MODEL_NAME)
    test = load_sources(["brats"], card["input"]["size"], data_dir=data_root).where(split="test")
    found = AcquisitionModel.load_shipped().recognise_crops(test.x.astype(np.float32) / 255.0)
    sequence = np.mean([a.sequence == r.sequence for a, r in zip(found, test.refs)])
    plane = np.mean([a.plane == r.plane for a, r in zip(found, test.refs)])
    assert sequence == pytest.approx(card["metrics"]["test"]["brats"]["sequence"], abs=0.005)
    assert plane == pytest.approx(card["metrics"]["test"]["brats"]["plane"], abs=0.005)
    assert set(SEQUENCES) == {r.sequence for r in test.refs} and set(PLANES) == {r.plane for r in test.refs}
    assert plane >= 0.98          # the plane target is met; the sequence target (0.95) is not yet (see README)


def test_lesion_crosscheck_reproduces_its_validation_figures(data_root):
    from core.slices.crosscheck import RULE_NAME, load_rule, rule_figures
    from core.evaluation.external import crosscheck_inputs

    rule, model = load_rule()
    card = model_card(RULE_NAME)
    slices, probs, evidence, _ = crosscheck_inputs("val", ["fourclass", "tcga_lgg", "brats"], data_dir=data_root,
                                                   model=model)
    tumour = np.array([r.tumour for r in slices.refs])
    said_no = probs.argmax(1) == config.CLASS_NAMES.index(config.NO_TUMOUR_CLASS)
    figures = rule_figures(rule, evidence, tumour, said_no)
    assert figures == card["metrics"]["val"]["chosen"]
    assert figures["false_alarm_rate"] <= card["max_false_alarm"]
