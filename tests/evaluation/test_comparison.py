"""Model-comparison artifacts: the writer on a synthetic data tree, the summary, the readers, the committed set."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import config

from core.evaluation import comparison, cli as evaluate
from core.evaluation.artifacts import Options, artifact_files, build_summary, outline, write_artifacts
from core.imaging.metrics import dice
from core.evaluation.reported import REPORTED, reported_table
from synthetic_images import phantom, write_png

COMMITTED = config.WEIGHTS_DIR / "eval"
MODELS = ["resnet_compact", "stacking_ensemble", "resunet"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    """A public-data-like folder (Testing classes + figshare index with fold 4) and an artifacts run on it."""
    data = tmp_path_factory.mktemp("data")
    testing = data / "brain_mri_4class" / "Testing"
    for k, cls in enumerate(config.CLASS_NAMES):
        for j in range(2):
            write_png(testing / cls / f"{cls[:2]}{j}.png", phantom(10 * k + j)[0])
    rows = ["id,image,mask,label,patient_id,fold"]
    for k in range(5):
        image, mask = phantom(100 + k, 128)
        write_png(data / "figshare_3064" / "images" / f"{k}.jpg", image)
        write_png(data / "figshare_3064" / "masks" / f"{k}.png", (mask * 255).astype(np.uint8))
        rows.append(f"{k},images/{k}.jpg,masks/{k}.png,{['glioma', 'meningioma'][k % 2]},p{k // 2},{4 if k < 4 else 1}")
    (data / "figshare_3064" / "index.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path_factory.mktemp("eval")
    clean = ["glioma/gl0.png", "meningioma/me1.png", "notumor/no0.png", "notumor/no1.png", "pituitary/pi0.png"]
    (out / "dedup_testing.json").write_text(json.dumps({"clean": clean, "n_test": 8, "n_clean": 5, "n_dup_of_train": 3,
                                                        "n_dup_within_test": 0}))
    opts = Options(out=out, data=data, models=MODELS, latency=False, n_boot=50)
    summary = write_artifacts(opts)
    first = {f: f.read_bytes() for f in artifact_files(out)}
    return {"data": data, "out": out, "summary": summary, "first": first, "clean": clean, "opts": opts}


def test_every_planned_model_is_listed_with_a_status_and_command(tree):
    models = tree["summary"]["models"]
    assert set(comparison.all_model_names()) == set(models)
    for name in MODELS:
        assert models[name]["status"] == "evaluated", name
    for name in ("xception", "inceptionv3", "resnet50", "vgg19", "densenet121", "efficientnetb0", "stacking_backbones"):
        entry = models[name]
        if entry["status"] == "awaiting_gpu":
            assert comparison.STATUS_TEXT["awaiting_gpu"] == "awaiting a GPU training run"
            assert entry["training_command"].startswith("python -m core.train.")
    if models["xception"]["status"] == "awaiting_gpu":
        assert models["xception"]["training_command"] == \
            f"python -m core.train.classifier --model xception --size 128 --epochs 30 --out {comparison.GPU_RUNS}"
        run = next(r for r in comparison.pending_runs(tree["summary"]) if r["name"] == "xception")
        assert run["commands"][-1] == f"{comparison.ARTIFACTS_COMMAND} --weights {comparison.GPU_RUNS}"
    assert "--members xception inceptionv3 resnet50 vgg19" in models["stacking_backbones"]["training_command"]
    assert "--model unet " in models["unet"]["training_command"]
    pending = {r["name"]: r for r in comparison.pending_runs(tree["summary"])}
    assert "xception" in pending or models["xception"]["status"] == "evaluated"
    assert all(r["commands"][-1].startswith(comparison.ARTIFACTS_COMMAND) for r in pending.values())


def test_classification_artifact_numbers(tree):
    out, summary = tree["out"], tree["summary"]
    entry = summary["models"]["stacking_ensemble"]
    detail = comparison.load_detail(entry, out)
    official, dedup = detail["splits"]["official"], detail["splits"]["dedup"]
    assert official["n"] == 8 and dedup["n"] == len(tree["clean"])
    for split in ("official", "dedup"):
        part, head = detail["splits"][split], entry["metrics"][split]
        assert head["accuracy"] == part["accuracy"] and head["accuracy_ci95"] == part["accuracy_ci95"]
        lo, hi = part["accuracy_ci95"]
        assert lo <= part["accuracy"] <= hi
        assert sum(map(sum, part["confusion_matrix"])) == part["n"]
        assert set(part["per_class"]) <= set(config.CLASS_NAMES)
        for curve in part["roc"].values():
            assert len(curve["fpr"]) == len(curve["tpr"]) <= 60
    cal = detail["calibration"]
    assert cal["temperature"] > 0 and {"before", "after"} <= set(cal["official"])
    assert entry["calibration"]["official"]["ece_after"] == cal["official"]["after"]["ece"]


def test_ensemble_artifact_equals_the_apps_own_evaluation(tree):
    """The artifact scores the ensemble exactly as ``python -m core.evaluate classification`` (the app's inference:
    fused members, their test-time augmentation, calibrated meta-learner) does."""
    testing = tree["data"] / "brain_mri_4class" / "Testing"
    app = evaluate.evaluate_classification(testing)["ensemble"]
    detail = comparison.load_detail(tree["summary"]["models"]["stacking_ensemble"], tree["out"])
    ours = detail["splits"]["official"]
    assert ours["confusion_matrix"] == app["confusion_matrix"]
    assert ours["accuracy"] == pytest.approx(app["accuracy"], abs=1e-4)
    assert ours["ece"] == pytest.approx(app["ece"], abs=1e-4)
    assert detail["inputs"]["tta"] == json.loads((config.WEIGHTS_DIR / "stacking_ensemble.json").read_text()).get(
        "member_tta", "none")
    member = comparison.load_detail(tree["summary"]["models"]["resnet_compact"], tree["out"])
    assert member["inputs"]["tta"] == comparison.protocol_tta()


def test_predictions_rebuild_the_confusion_matrices(tree):
    out, summary = tree["out"], tree["summary"]
    for name in ("resnet_compact", "stacking_ensemble"):
        entry = summary["models"][name]
        preds = comparison.load_predictions(entry, out)
        detail = comparison.load_detail(entry, out)
        assert len(preds) == 8 and set(preds["clean"]) <= {0, 1}
        assert sorted(preds.loc[preds["clean"] == 1, "path"]) == sorted(tree["clean"])
        for split in ("official", "dedup"):
            cm = comparison.cell_counts(preds, list(config.CLASS_NAMES), split)
            assert cm.tolist() == detail["splits"][split]["confusion_matrix"]
        cell = comparison.confusion_cell(preds, "glioma", preds.loc[0, "pred"], "official")
        assert len(cell) >= 1 and (cell["label"] == "glioma").all()
        probs = preds[[f"p_{c}" for c in config.CLASS_NAMES]].to_numpy()
        assert np.allclose(probs.sum(1), 1, atol=0.01)


def test_segmentation_artifact(tree):
    out, entry = tree["out"], tree["summary"]["models"]["resunet"]
    detail = comparison.load_detail(entry, out)
    fold = detail["splits"]["fold4"]
    assert fold["n"] == 4 and fold["n_patients"] == 2 and detail["hd95_unit"] == "mm"
    assert set(fold["per_class"]) == {"glioma", "meningioma"}
    assert entry["metrics"]["fold4"]["mean_dice"] == fold["mean_dice"]
    cases = comparison.load_predictions(entry, out)
    assert list(cases["image"]) == [f"images/{k}.jpg" for k in range(4)]
    assert cases["dice"].mean() == pytest.approx(fold["mean_dice"], abs=1e-3)
    for band in comparison.DICE_BANDS:
        comparison.dice_band(cases, "glioma", band)
    assert sum(len(comparison.dice_band(cases, None, b)) for b in comparison.DICE_BANDS) == 4


def test_no_absolute_paths_and_small_files(tree):
    for path in artifact_files(tree["out"]):
        text = path.read_text()
        assert str(tree["data"]) not in text and str(tree["out"]) not in text and str(config.REPO_ROOT) not in text, path


def test_rerun_is_idempotent(tree, capsys):
    out = tree["out"]
    code = evaluate.main(["artifacts", "--data", str(tree["data"]), "--out", str(out), "--models", *MODELS,
                          "--skip-latency", "--n-boot", "50"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.count("up to date") == len(MODELS)
    last = printed.strip().splitlines()[-1]
    assert last.startswith("RESULT models=") and " evaluated=" in last and " pending=" in last
    assert {f: f.read_bytes() for f in artifact_files(out)} == tree["first"]


def test_without_data_the_summary_is_rebuilt_from_existing_artifacts(tree):
    out = tree["out"]
    summary = write_artifacts(Options(out=out, data=None, models=MODELS, latency=False, n_boot=50))
    assert summary == tree["summary"] == build_summary(out)


def test_unknown_model_exits_2(tree, capsys):
    code = evaluate.main(["artifacts", "--data", str(tree["data"]), "--out", str(tree["out"]), "--models", "nope",
                          "--skip-latency"])
    assert code == evaluate.EXIT_BAD_INPUT and "nope" in capsys.readouterr().err


def _runs_folder(tmp_path: Path, cards: dict[str, dict]) -> Path:
    """A weights folder of runs that do not ship (``--weights DIR``): a manifest with ``cards``."""
    weights = tmp_path / "runs"
    (weights / "logs").mkdir(parents=True)
    (weights / "manifest.json").write_text(json.dumps({"schema": 1, "models": cards}))
    return weights


def test_a_gpu_run_that_does_not_ship_keeps_its_card_log_and_artifacts(tree, tmp_path):
    """Large backbones do not ship: evaluated from a runs folder (``--weights DIR``), their card and log are
    copied beside the artifacts, and a checkout without that folder still shows them as evaluated."""
    import shutil

    shipped = json.loads((config.WEIGHTS_DIR / "manifest.json").read_text())["models"]["resnet_compact"]
    card = {**shipped, "role": "comparison", "file": "xception.keras", "log": "logs/xception.csv",
            "metrics": {"val": {"accuracy": 0.9813, "n": 857}},      # a 4-class backbone's card
            "training_command": "python -m core.train.classifier --model xception --size 128 --epochs 30"}
    runs = _runs_folder(tmp_path, {"xception": card})
    shutil.copy(config.WEIGHTS_DIR / "resnet_compact.keras", runs / "xception.keras")
    log = "epoch,accuracy,loss,val_accuracy,val_loss\n" + "".join(
        f"{e},0.{5 + e // 4},1.0,0.{6 + e // 4},0.9\n" for e in range(card["epochs"]))
    (runs / "logs" / "xception.csv").write_text(log)
    out = tmp_path / "eval"
    shutil.copytree(tree["out"], out)

    first = write_artifacts(Options(out=out, data=tree["data"], models=["xception"], latency=False, n_boot=50,
                                    weights_dir=runs))["models"]["xception"]
    assert first["status"] == "evaluated" and not first["stale"] and first["log"] == "logs/xception.csv"
    assert json.loads((out / "cards" / "xception.json").read_text())["sha256"] == card["sha256"]
    assert (out / "logs" / "xception.csv").read_text() == log
    assert not (out / "cards" / "resnet_compact.json").exists()       # shipped cards stay in the manifest

    shutil.rmtree(runs)                                                 # a fresh checkout: no GPU weights
    again = write_artifacts(Options(out=out, data=tree["data"], latency=False, n_boot=50))["models"]["xception"]
    assert again == first
    assert comparison.load_log(again, out)["epoch"].tolist() == list(range(1, card["epochs"] + 1))
    assert again["val_accuracy"] == card["metrics"]["val"]["accuracy"] and again["size_bytes"] == card["size_bytes"]

    # retrained (new sha) but not re-evaluated: flagged, not silently shown as current
    stale = build_summary(out, _runs_folder(tmp_path / "again", {"xception": {**card, "sha256": "e" * 64}}))
    entry = stale["models"]["xception"]
    assert entry["stale"] and "earlier weights" in comparison.status_text(entry)
    assert "xception" in {r["name"] for r in comparison.pending_runs(stale)}


def test_a_log_still_being_written_is_not_copied(tmp_path):
    from core.evaluation.artifacts import Cards, keep_card_and_log

    runs = _runs_folder(tmp_path, {})
    (runs / "logs" / "m.csv").write_text("epoch,loss\n0,1.0\n1,0.8\n")
    cards = Cards({"m": {"epochs": 24, "log": "logs/m.csv"}}, {"m": runs})
    keep_card_and_log("m", cards, tmp_path / "eval", fresh=True)
    assert not (tmp_path / "eval" / "logs" / "m.csv").exists()
    cards.cards["m"]["epochs"] = 2
    keep_card_and_log("m", cards, tmp_path / "eval", fresh=True)
    assert (tmp_path / "eval" / "logs" / "m.csv").is_file() and (tmp_path / "eval" / "cards" / "m.json").is_file()


def test_brats_artifact_comes_from_evaluate_brats(tmp_path, monkeypatch):
    from core.serving import registry

    weights = _runs_folder(tmp_path, {})
    (weights / "unet2d_brats.keras").write_bytes(b"stand-in weights")
    card = {"task": "brats", "role": "shipped", "architecture": "unet2d_brats", "file": "unet2d_brats.keras",
            "sha256": registry.file_sha256(weights / "unet2d_brats.keras"), "params": 10, "log": "logs/unet2d_brats.csv"}
    (weights / "manifest.json").write_text(json.dumps({"schema": 1, "models": {"unet2d_brats": card}}))
    data = tmp_path / "data"
    for case in ("case_a", "case_b"):
        (data / "brats" / case).mkdir(parents=True)
    fake = {"task": "brats", "n": 2, "mean": {"WT": {"dice": 0.81234, "hd95_mm": 7.5}, "TC": {"dice": 0.7, "hd95_mm": 9.0},
                                             "ET": {"dice": 0.65, "hd95_mm": None}}, "cases": {}}
    calls = []
    monkeypatch.setattr("core.evaluation.scoring.evaluate_brats", lambda root, *a, **k: calls.append(k) or fake)
    out = tmp_path / "eval"
    summary = write_artifacts(Options(out=out, data=data, models=["unet2d_brats"], latency=False, weights_dir=weights))
    entry = summary["models"]["unet2d_brats"]
    assert calls == [{"weights_dir": weights, "name": "unet2d_brats"}]
    assert entry["status"] == "evaluated" and entry["task"] == "brats"
    assert entry["metrics"]["test"]["WT"] == {"dice": 0.8123, "hd95_mm": 7.5} and entry["metrics"]["test"]["n"] == 2
    table = comparison.brats_table(summary)
    assert table.loc[0, "ET Dice"] == 0.65
    reported = reported_table(summary, "official").set_index("reported metric")
    assert reported.loc["Dice ET", "ours, test"] == 0.65
    assert "not computed" in reported.loc["Dice ED", "our test metric"]


# --------------------------------------------------------------------------- pieces

def test_outline_round_trip():
    yy, xx = np.mgrid[:128, :128]
    mask = ((yy - 60) ** 2 + (xx - 70) ** 2 <= 20 ** 2) | ((yy - 110) ** 2 + (xx - 20) ** 2 <= 6 ** 2)
    text = outline(mask)
    assert text.count("|") == 1
    assert dice(comparison.polygon_mask(text, mask.shape), mask) > 0.95
    assert not comparison.polygon_mask("", (8, 8)).any()
    assert not comparison.polygon_mask(float("nan"), (8, 8)).any()
    assert len(text) < 400


def test_reported_figures_cite_sources_and_map_to_planned_models():
    names = {p.name for p in comparison.planned_models()}
    for item in REPORTED:
        assert 0 < item.value <= 1
        assert item.ours is None or item.ours in names
    values = {(r.model, r.metric): r.value for r in REPORTED}
    assert values[("Xception", "validation accuracy")] == 0.990
    assert values[("Stacking ensemble", "accuracy")] == 0.996
    assert values[("ResUNet", "validation Dice")] == 0.760
    assert values[("Attention U-Net", "validation Dice")] == 0.732
    assert values[("U-Net", "validation Dice")] == 0.672
    assert values[("EfficientNetB0", "accuracy")] == 0.913
    assert values[("ResNet50V2", "accuracy")] == 0.935
    assert values[("InceptionV3", "accuracy")] == 0.921
    assert values[("DenseNet121", "accuracy")] == 0.938
    assert [values[("3D U-Net", f"Dice {r}")] for r in ("ET", "ED", "NCR")] == [0.80, 0.75, 0.70]


def test_reported_table_uses_our_artifact_numbers(tree):
    table = reported_table(tree["summary"], "dedup")
    row = table[table["our model"] == "stacking_ensemble"].iloc[0]
    assert row["ours, test"] == tree["summary"]["models"]["stacking_ensemble"]["metrics"]["dedup"]["accuracy"]
    assert row["reported"] == 0.996


def test_missing_artifacts_say_which_command_writes_them(tmp_path):
    with pytest.raises(comparison.ArtifactMissing, match="core.evaluate artifacts"):
        comparison.load_summary(tmp_path)


# --------------------------------------------------------------------------- committed artifacts

@pytest.fixture(scope="module")
def committed() -> dict:
    if not (COMMITTED / "comparison.json").is_file():
        pytest.fail(f"weights/eval/comparison.json is missing: run `{comparison.ARTIFACTS_COMMAND}`")
    return comparison.load_summary(COMMITTED)


def test_committed_summary_matches_its_detail_artifacts(committed):
    assert set(comparison.all_model_names()) <= set(committed["models"])
    for name, entry in committed["models"].items():
        if entry["status"] != "evaluated":
            assert entry["metrics"] is None and entry["training_command"], name
            continue
        detail = comparison.load_detail(entry, COMMITTED)
        if entry["task"] in ("classification", "segmentation"):
            for split, head in entry["metrics"].items():
                for key, value in head.items():
                    if key != "per_class":
                        assert detail["splits"][split][key] == value, (name, split, key)


def test_committed_artifacts_cover_every_model_in_the_manifest(committed):
    """Retraining or adding a model without re-running the artifacts command leaves the page stale."""
    from core.serving.registry import load_manifest

    for name, card in load_manifest()["models"].items():
        if card["task"] not in comparison.TASKS:
            # the sequence/plane model holds its held-out figures in its card; the cross-check rule's are
            # in weights/eval/external.json (reproduced by tests/test_external_realdata.py)
            assert card["metrics"].get("test") or card["task"] == "crosscheck", name
            continue
        entry = committed["models"].get(name)
        assert entry is not None, f"{name} missing: run `{comparison.ARTIFACTS_COMMAND}`"
        assert entry["status"] == "evaluated" and not entry.get("stale"), (name, entry["status"])
        assert entry["task"] == card["task"]


def test_committed_tables_show_how_long_each_model_trained(committed):
    from core.serving.registry import load_manifest

    cards = load_manifest()["models"]
    seg = comparison.segmentation_table(committed).set_index("model")
    for name in ("resunet", "unet", "attention_unet"):
        card = cards[name]
        assert seg.loc[name, "epochs"] == f"{card['epochs']}{'*' if card['stopped_by_time_budget'] else ''}"
    assert comparison.classification_table(committed, "official").set_index("model").loc["densenet121", "epochs"] is None


def test_committed_artifacts_are_small_and_relative(committed):
    files = artifact_files(COMMITTED)
    assert sum(f.stat().st_size for f in files) < 3 * 1024 * 1024
    machine_roots = ["/" + "work/", "/" + "home/", "/" + "tmp/", "/" + "root/"]  # in pieces: see test_project
    for f in files:
        text = f.read_text()
        assert not any(root in text for root in machine_roots), f


def test_committed_official_ensemble_accuracy_matches_the_evaluate_cli_headline(committed):
    entry = committed["models"]["stacking_ensemble"]
    if entry["status"] != "evaluated":
        pytest.skip("the shipped ensemble has no artifact")
    assert entry["metrics"]["official"]["n"] == 1311
    assert entry["metrics"]["dedup"]["n"] == json.loads((COMMITTED / "dedup_testing.json").read_text())["n_clean"]
    assert entry["metrics"]["official"]["accuracy"] >= 0.95


def test_latency_of_trained_weights_and_of_an_untrained_architecture(tmp_path):
    """core.evaluation.bench times shipped weights; a model not trained yet is timed as its architecture (same compute)."""
    from core.evaluation.bench import write_latencies

    path = tmp_path / "latency.json"
    data = write_latencies(["resnet_compact", "attention_unet"], path, repeats=2)
    assert json.loads(path.read_text()) == data
    shipped = data["models"]["resnet_compact"]
    assert shipped["source"] == "trained weights" and shipped["latency_ms"] > 0 and shipped["input"] == "1x128x128x1"
    card = json.loads((config.WEIGHTS_DIR / "manifest.json").read_text())["models"]["resnet_compact"]
    assert shipped["litert_ms"] > 0 and shipped["runtime_sha256"] == {"resnet_compact": card["runtime"]["sha256"]}
    assert shipped["params"] == json.loads((config.WEIGHTS_DIR / "manifest.json").read_text())["models"]["resnet_compact"]["params"]
    planned = data["models"]["attention_unet"]
    assert planned["source"] in ("untrained architecture", "trained weights") and planned["params"] > 0
    assert planned["input"].startswith("1x256x256") and planned["machine"]["cpu_count"] >= 1
    write_latencies(["resnet_compact"], path, repeats=2)                 # merging keeps other entries
    assert set(json.loads(path.read_text())["models"]) == {"resnet_compact", "attention_unet"}


def test_brats_case_table_lists_every_unseen_case_with_its_scores():
    detail = {"result": {"cases": {
        "B": {"WT": {"dice": 0.8, "hd95_mm": 5.0}, "ET": {"dice": 1.0, "hd95_mm": 0.0}},
        "A": {"WT": {"dice": 0.6, "hd95_mm": None}, "ET": {"dice": 0.0, "hd95_mm": None}}}}}
    table = comparison.brats_case_table(detail)
    assert list(table["case"]) == ["A", "B"]
    assert list(table.columns) == ["case", "WT Dice", "WT HD95 mm", "ET Dice", "ET HD95 mm"]
    assert table.loc[1, "WT Dice"] == 0.8 and table.loc[1, "ET HD95 mm"] == 0.0
    assert comparison.brats_case_table({}).empty


def test_an_ensemble_fitted_on_other_member_runs_says_which():
    """A GPU ensemble whose members' rows are other (better-validated) runs is evaluated, not stale,
    and its status names the runs it was fitted on with their validation accuracy."""
    entry = {"status": "evaluated", "stale": False, "member_runs_differ": {"inceptionv3": 0.8098, "resnet50": None}}
    text = comparison.status_text(entry)
    assert text.startswith("evaluated; fitted on other runs of")
    assert "inceptionv3 (val accuracy 0.8098)" in text and "resnet50 than their rows show" in text
    assert comparison.status_text({"status": "evaluated", "stale": True}).startswith("evaluated on earlier weights")
