"""core.train.multisource: balanced sampling weights, the selection score, the balanced batch
sequence and training counts; plus one small end-to-end run of the multi-source classifier CLI
on a synthetic data folder (``test_cli_end_to_end_*``: imports TensorFlow, 15-30 s)."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

import synthetic_sources as syn
from core import config
from core.data.sources import SliceRef, SliceSet

multisource = pytest.importorskip("core.train.multisource")


def _slices(spec: list[tuple[str, str, str, str, int]]) -> SliceSet:
    """``(label, source, sequence, plane, count)`` rows -> a SliceSet of distinct tiny phantoms."""
    refs, images = [], []
    for label, source, sequence, plane, count in spec:
        for _ in range(count):
            k = len(refs)
            refs.append(SliceRef(source, "train", label, f"p{k % 3}", sequence, plane, f"r{k}"))
            rr, cc = np.mgrid[:24, :24]
            disc = (rr - 12) ** 2 + (cc - 12) ** 2 <= 81
            images.append(np.where(disc, 60 + 7 * (k % 20), 0).astype(np.uint8))
    return SliceSet(refs, np.stack(images))


SPEC = [("glioma", "tcga_lgg", "flair", "axial", 6), ("glioma", "brats", "t2", "coronal", 2),
        ("glioma", "fourclass", "unknown", "unknown", 1), ("notumor", "tcga_lgg", "t1", "axial", 3),
        ("notumor", "brats", "t1", "sagittal", 10), ("meningioma", "fourclass", "unknown", "unknown", 5)]


def test_balanced_weights_equal_classes_then_sources_then_slices():
    s = _slices(SPEC)
    w = multisource.balanced_weights(s)
    assert w.shape == (len(s),) and (w > 0).all() and w.sum() == pytest.approx(1.0)
    by_class, by_cell = defaultdict(float), defaultdict(list)
    for ref, weight in zip(s.refs, w):
        by_class[ref.label] += weight
        by_cell[(ref.label, ref.source)].append(weight)
    assert by_class == pytest.approx({"glioma": 1 / 3, "notumor": 1 / 3, "meningioma": 1 / 3})
    assert sum(by_cell[("glioma", "tcga_lgg")]) == pytest.approx(1 / 9)      # three sources share glioma
    assert sum(by_cell[("glioma", "fourclass")]) == pytest.approx(1 / 9)     # one slice weighs as six
    assert sum(by_cell[("notumor", "brats")]) == pytest.approx(1 / 6)
    assert sum(by_cell[("meningioma", "fourclass")]) == pytest.approx(1 / 3)
    for weights in by_cell.values():                                        # equal within a cell
        assert np.ptp(weights) < 1e-15


def test_tumour_balanced_within_sequence_equalises_each_sequence_and_keeps_its_share():
    tumour = np.array([1, 1, 1, 0, 1, 0, 0, 0, 1, 1], bool)
    sequences = np.array(["t1ce"] * 4 + ["flair"] * 4 + ["t2"] * 2)    # t2: tumour only
    w0 = np.array([4, 2, 2, 1, 1, 2, 1, 1, 3, 1], float)
    w = multisource.tumour_balanced_within_sequence(w0, tumour, sequences)
    assert w.sum() == pytest.approx(1.0)
    for q in ("t1ce", "flair", "t2"):                                   # each sequence keeps its share
        assert w[sequences == q].sum() == pytest.approx(w0[sequences == q].sum() / w0.sum())
    for q in ("t1ce", "flair"):                                         # tumour and tumour-free halves
        here = sequences == q
        assert w[here & tumour].sum() == pytest.approx(w[here & ~tumour].sum())
    np.testing.assert_allclose(w[[8, 9]] / w[8], [1.0, 1 / 3])         # a one-sided sequence is left alone
    np.testing.assert_allclose(w[:3] / w[0], [1.0, 0.5, 0.5])          # ratios kept within a group
    w75 = multisource.tumour_balanced_within_sequence(w0, tumour, sequences, share=0.75)
    here = sequences == "flair"
    assert w75[here & tumour].sum() == pytest.approx(3 * w75[here & ~tumour].sum())


def test_hard_example_weights_move_mass_to_hard_slices_within_each_cell():
    cells = np.array(["tcga/glioma"] * 4 + ["tcga/notumor"] * 3 + ["fourclass/pituitary"] * 2)
    w0 = np.array([1, 1, 2, 0, 3, 3, 3, 5, 5], float)
    difficulty = np.array([0.0, 0.0, 0.0, 0.8, 0.1, 0.1, 0.8, 0.0, 0.0])
    w = multisource.hard_example_weights(w0, cells, difficulty, share=0.5)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    for cell in set(cells):                                   # the class x source balance is kept
        assert w[cells == cell].sum() == pytest.approx(w0[cells == cell].sum() / w0.sum())
    # half of the glioma cell's mass goes to its one hard slice, which had no weight before
    assert w[3] == pytest.approx(0.5 * 4 / 23)
    np.testing.assert_allclose(w[:3] / w[0], [1.0, 1.0, 2.0])  # the easy ones keep their ratios
    assert w[6] > w[4] == pytest.approx(w[5])                # harder draws more within a cell
    np.testing.assert_allclose(w[7:], w0[7:] / w0.sum())     # a fitted cell keeps its weights
    np.testing.assert_allclose(multisource.hard_example_weights(w0, cells, difficulty, 0.0), w0 / w0.sum())
    with pytest.raises(ValueError, match="share"):
        multisource.hard_example_weights(w0, cells, difficulty, 1.0)


def test_difficulty_of_is_one_minus_the_ensembles_probability_of_the_true_class():
    s = _slices([("glioma", "tcga_lgg", "flair", "axial", 2), ("notumor", "brats", "t1", "axial", 1)])
    calls = []

    class Ensemble:
        def sizes(self):
            return {24}

        def probabilities_from_inputs(self, x_by_size):
            calls.append({k: v.shape for k, v in x_by_size.items()})
            assert x_by_size[24].max() <= 1.0
            return {"m": np.zeros((3, 4))}

        def ensemble_probabilities(self, member_probs):
            p = np.full((3, 4), 0.1)
            p[0, config.CLASS_NAMES.index("glioma")] = 0.7
            p[1, config.CLASS_NAMES.index("notumor")] = 0.7
            p[2, config.CLASS_NAMES.index("notumor")] = 0.7
            return p

    np.testing.assert_allclose(multisource.difficulty_of(s, Ensemble()), [0.3, 0.9, 0.3])
    assert calls == [{24: (3, 24, 24)}]


def test_sequences_with_estimates_asks_the_recogniser_only_for_unlabelled_slices():
    s = _slices(SPEC)
    seen = []

    class Recogniser:
        def recognise_crops(self, crops):
            seen.append(crops.shape)
            assert crops.dtype == np.float32 and crops.max() <= 1.0
            return [type("A", (), {"sequence": "t1ce"})() for _ in crops]

    sequences = multisource.sequences_with_estimates(s, Recogniser())
    assert seen == [(6, 24, 24)]                                        # the 4-class slices only
    assert list(sequences[:6]) == ["flair"] * 6 and list(sequences[8:9]) == ["t1ce"]
    assert Counter(sequences) == {"flair": 6, "t2": 2, "t1ce": 6, "t1": 13}


def test_selection_score_is_the_worst_relevant_figure():
    nan = float("nan")
    table = {
        "fourclass/unknown": {"source": "fourclass", "accuracy": 0.9, "sensitivity": 0.1, "specificity": 0.1,
                              "glioma_accuracy": 0.05},
        "tcga_lgg/flair": {"source": "tcga_lgg", "accuracy": 0.2, "sensitivity": 0.8, "specificity": 0.7,
                           "glioma_accuracy": 0.95},
        "brats/t2": {"source": "brats", "accuracy": 0.3, "sensitivity": 0.85, "specificity": nan,
                     "glioma_accuracy": 0.6},
    }
    # fourclass counts by accuracy only, the others by sensitivity/specificity/glioma accuracy; NaN skipped
    assert multisource.selection_score(table) == pytest.approx(0.6)
    table["brats/t2"]["glioma_accuracy"] = 0.99
    assert multisource.selection_score(table) == pytest.approx(0.7)
    table["fourclass/unknown"]["accuracy"] = 0.5
    assert multisource.selection_score(table) == pytest.approx(0.5)
    assert np.isnan(multisource.selection_score({}))
    assert np.isnan(multisource.selection_score({"brats/t1": {"source": "brats", "sensitivity": nan}}))


def test_balanced_batches_shapes_values_labels_and_determinism():
    s = _slices(SPEC)
    labels, weights = s.labels(), multisource.balanced_weights(s)

    def make(seed):
        return multisource.BalancedBatches(s.x, labels, weights, batch=8, samples_per_epoch=36, seed=seed,
                                           normalisation="head")

    batches = make(4)
    assert len(batches) == 4                                       # 36 // 8 full batches
    x, y = batches[1]
    assert x.shape == (8, 24, 24, 1) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert (x.reshape(8, -1).max(1) > 0.99).all()                  # head normalisation saturates each slice
    assert y.shape == (8, len(config.CLASS_NAMES)) and set(np.unique(y)) <= {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(1), 1)
    np.testing.assert_array_equal(y.argmax(1), labels[batches.order[8:16]])
    again = make(4)
    for k in range(len(batches)):
        np.testing.assert_array_equal(batches[k][0], again[k][0])
        np.testing.assert_array_equal(batches[k][1], again[k][1])
    assert not np.array_equal(make(5)[0][0], batches[0][0])
    first = batches.order.copy()
    batches.on_epoch_end()
    assert batches.epoch == 1 and not np.array_equal(first, batches.order)


def test_balanced_batches_draw_by_the_weights():
    s = _slices(SPEC)
    only_meningioma = np.array([r.label == "meningioma" for r in s.refs], float)
    batches = multisource.BalancedBatches(s.x, s.labels(), only_meningioma / only_meningioma.sum(), batch=16,
                                          samples_per_epoch=32, seed=0, normalisation="unit")
    _, y = batches[0]
    assert (y.argmax(1) == config.CLASS_NAMES.index("meningioma")).all()
    # with the balanced weights the three classes come out in about equal thirds
    many = multisource.BalancedBatches(s.x, s.labels(), multisource.balanced_weights(s), batch=300,
                                       samples_per_epoch=3000, seed=1, normalisation="unit")
    shares = Counter(s.labels()[many.order])
    for label in ("glioma", "notumor", "meningioma"):
        assert abs(shares[config.CLASS_NAMES.index(label)] / 3000 - 1 / 3) < 0.04


def test_training_counts_rows():
    s = _slices(SPEC + [("glioma", "tcga_lgg", "flair", "axial", 2)])
    rows = multisource.training_counts(s)
    assert sum(r["n"] for r in rows) == len(s)
    assert {"class": "glioma", "source": "tcga_lgg", "sequence": "flair", "plane": "axial", "n": 8} in rows
    keys = [(r["class"], r["source"], r["sequence"], r["plane"]) for r in rows]
    assert keys == sorted(keys) and len(keys) == len(set(keys)) == 6


# --------------------------------------------------------------------------- end-to-end CLI (slow)


@pytest.mark.slow
def test_cli_end_to_end_multisource_classifier(tmp_path, monkeypatch):
    """SLOW (end-to-end, ~30 s on 2 cores): ``python -m core.train.classifier --sources ...`` for one
    tiny epoch on the synthetic folder; checks the card and that the saved model loads."""
    import keras

    from core.train import classifier

    tree = syn.build_tree(tmp_path / "data")
    syn.isolate(monkeypatch, tree, tmp_path / "cache", tmp_path / "weights")
    out = tmp_path / "out"
    classifier.main(["--model", "resnet_compact", "--sources", "fourclass", "tcga_lgg", "brats", "--size", "32",
                     "--epochs", "1", "--samples-per-epoch", "64", "--batch", "16", "--workers", "1",
                     "--out", str(out)])
    card = json.loads((out / "manifest.json").read_text())["models"]["resnet_compact"]
    assert card["sources"] == ["fourclass", "tcga_lgg", "brats"]
    assert card["input"]["normalisation"] == "head" and card["input"]["size"] == 32
    rows = card["training_counts"]
    assert sum(r["n"] for r in rows) == 34 + 12 + 120              # train splits of the three sources
    assert {(r["source"], r["class"]) for r in rows} >= {("brats", "glioma"), ("brats", "notumor"),
                                                        ("tcga_lgg", "glioma"), ("fourclass", "pituitary")}
    assert {r["plane"] for r in rows if r["source"] == "brats"} == {"axial", "coronal", "sagittal"}
    val = card["metrics"]["val"]
    assert 0.0 <= val["worst"] <= 1.0 and val["n"] == 6 + 9 + 120
    assert set(val["cells"]) == {"fourclass/unknown", "tcga_lgg/t1", "tcga_lgg/t1ce", "tcga_lgg/flair",
                                 "brats/t1", "brats/t1ce", "brats/t2", "brats/flair"}
    assert card["epochs"] == 1 and (out / "logs" / "resnet_compact.csv").is_file()
    model = keras.saving.load_model(out / card["file"], compile=False)
    probs = np.asarray(model(np.zeros((2, 32, 32, 1), np.float32), training=False))
    assert probs.shape == (2, 4) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    from core.serving.registry import file_sha256

    assert file_sha256(out / card["file"]) == card["sha256"]
    assert not any((tmp_path / "weights").iterdir())              # nothing written to the weights folder


def test_cli_balance_sequence_without_a_recogniser_stops_with_a_clear_message(tmp_path, monkeypatch):
    """The sampling options are checked before any data is loaded: ``--balance-sequence`` needs the shipped
    sequence/plane model and a share in (0, 1), ``--mirror-healthy`` needs BraTS among the sources."""
    from core.train import classifier

    tree = syn.build_tree(tmp_path / "data")
    syn.isolate(monkeypatch, tree, tmp_path / "cache", tmp_path / "weights")
    base = ["--model", "resnet_compact", "--sources", "fourclass", "tcga_lgg", "brats", "--size", "32", "--epochs", "1",
            "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="needs the shipped sequence/plane model"):
        classifier.main([*base, "--balance-sequence"])
    with pytest.raises(SystemExit, match="tumour share between 0 and 1"):
        classifier.main([*base, "--balance-sequence", "1.5"])
    with pytest.raises(SystemExit, match="--mirror-healthy needs brats"):
        classifier.main(["--model", "resnet_compact", "--sources", "fourclass", "--mirror-healthy", "--out",
                         str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="needs the shipped ensemble"):
        classifier.main([*base, "--hard-examples", "0.5"])
    with pytest.raises(SystemExit, match="--hard-examples takes a share between 0 and 1"):
        classifier.main([*base, "--hard-examples", "1"])
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz"))   # nothing loaded


@pytest.mark.slow
def test_cli_hard_examples_score_the_training_slices_and_reach_the_draws_and_the_card(tmp_path, monkeypatch):
    """SLOW (~25 s): ``--hard-examples`` scores every training slice once with the shipped ensemble (a
    stand-in here, whose "no tumour" probability grows with the crop's brightness), moves part of each
    cell's draws to the slices it gets wrong, keeps every cell's mass, and the card records it."""
    from core.slices import classify
    from core.train import classifier, multisource as ms

    tree = syn.build_tree(tmp_path / "data")
    syn.isolate(monkeypatch, tree, tmp_path / "cache", tmp_path / "weights")
    no_tumour = config.CLASS_NAMES.index(config.NO_TUMOUR_CLASS)

    class BrightMeansNoTumour:
        def __init__(self):
            self.scored, self.probs = 0, None

        def sizes(self):
            return {32}

        def probabilities_from_inputs(self, x_by_size):
            x = x_by_size[32]
            p_none = np.clip(x.mean(axis=(1, 2)) / max(float(x.mean(axis=(1, 2)).max()), 1e-6), 0.05, 0.95)
            self.probs = np.repeat(((1.0 - p_none) / 3.0)[:, None], 4, axis=1)
            self.probs[:, no_tumour] = p_none
            return {"m": self.probs}

        def ensemble_probabilities(self, member_probs):
            self.scored += len(member_probs["m"])
            return member_probs["m"]

        def versions(self):
            return {"stand_in": "f" * 64}

    scorer = BrightMeansNoTumour()
    monkeypatch.setattr(classify.Classifier, "load", classmethod(lambda cls, weights_dir=None: scorer))
    seen = {}
    real = ms.hard_example_weights

    def spy(weights, cells, difficulty, share):
        seen.update(cells=cells, difficulty=difficulty, share=share, before=weights / weights.sum())
        seen["after"] = real(weights, cells, difficulty, share)
        return seen["after"]

    monkeypatch.setattr(ms, "hard_example_weights", spy)
    out = tmp_path / "out"
    classifier.main(["--model", "mobilenet_compact", "--sources", "fourclass", "tcga_lgg", "brats", "--size", "32",
                     "--epochs", "1", "--samples-per-epoch", "32", "--batch", "16", "--workers", "1",
                     "--hard-examples", "0.4", "--out", str(out)])
    card = json.loads((out / "manifest.json").read_text())["models"]["mobilenet_compact"]
    cells, difficulty = seen["cells"], seen["difficulty"]
    assert scorer.scored == len(cells) == 34 + 12 + 120                      # every training slice, once
    labels = np.array([config.CLASS_NAMES.index(c.split("/")[1]) for c in cells])
    np.testing.assert_allclose(difficulty, 1.0 - scorer.probs[np.arange(len(cells)), labels])
    assert seen["share"] == 0.4
    for cell in set(cells):
        here = cells == cell
        assert seen["after"][here].sum() == pytest.approx(seen["before"][here].sum())
    here = np.flatnonzero(cells == "brats/notumor")
    assert np.ptp(difficulty[here]) > 0.1
    hardest, easiest = here[difficulty[here].argmax()], here[difficulty[here].argmin()]
    assert seen["after"][hardest] > seen["before"][hardest] and seen["after"][easiest] < seen["before"][easiest]
    record = card["hard_examples"]
    assert record["share"] == 0.4 and record["scored_by"] == {"stand_in": "f" * 64}
    assert set(record["mean_difficulty"]) == set(cells)
    assert record["mean_difficulty"]["brats/notumor"] == pytest.approx(difficulty[here].mean(), abs=1e-4)
    assert "moved to the slices the shipped ensemble gets wrong" in card["augmentation"]
    assert card["config"]["hard_examples"] == 0.4
