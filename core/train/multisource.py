"""Multi-source classifier training: a sampler balanced over source x class, validation by source.

* :func:`balanced_weights` gives every class the same share of each epoch and, within a class,
  every source that has it the same share, so no source's look (skull or none, plane,
  sequence, scanner) predicts the class; :func:`tumour_balanced_within_sequence` (optional) also
  draws tumour and tumour-free slices equally often within each sequence (the sequence recognised
  where unlabelled); :func:`hard_example_weights` (optional) moves part of each source x class
  cell's draws to the slices a trained ensemble still gets wrong.
* :class:`BalancedBatches` draws an epoch by those weights and augments each slice against
  acquisition shortcuts (:func:`core.train.augment.augment_acquisition`) before the model's
  normalisation.
* :class:`SourceValidation` scores every validation cell (source x sequence) after each epoch and
  logs ``val_rank`` (:func:`ranking_score`: the lowest of the 4-class accuracy on the 4-class
  validation images and every other cell's tumour AUC; the best epoch has the best) and
  ``val_worst`` (:func:`selection_score`: the same with sensitivity, specificity and glioma
  accuracy at the member's own threshold, which the stacking meta-learner resets).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import keras
import numpy as np

from core import config
from core.train.augment import AcquisitionConfig, augment_acquisition
from core.train.common import ShuffledBatches, draw_by_weights
from core.slices.classify import normalise_batch
from core.evaluation.external import cell_table
from core.data.sources import SliceSet

#: Metrics of a validation cell that the selection score takes the minimum over.
SELECTION_METRICS: tuple[str, ...] = ("sensitivity", "specificity", "glioma_accuracy")


def balanced_weights(slices: SliceSet) -> np.ndarray:
    """Sampling probabilities ``(N,)``: classes equal, sources equal within a class, slices equal within a cell."""
    labels = slices.column("label")
    sources = slices.column("source")
    cells = Counter(zip(labels, sources))
    sources_per_class = Counter(label for label, _ in cells)
    n_classes = len(sources_per_class)
    w = np.array([1.0 / (n_classes * sources_per_class[lab] * cells[(lab, src)]) for lab, src in zip(labels, sources)])
    return w / w.sum()


def tumour_balanced_within_sequence(weights: np.ndarray, tumour: np.ndarray, sequences: np.ndarray,
                                    share: float = 0.5) -> np.ndarray:
    """``weights`` rescaled so that within every sequence tumour slices make ``share`` of the draws:
    the sequence then says nothing about the tumour. Each sequence keeps its share of the epoch and
    slices keep their ratios within their (sequence, tumour or not) group; a sequence that lacks one
    side is left as it is.

    Why: with classes and sources balanced, the 4-class set's tumours (nearly all post-contrast T1)
    still make about nine in ten post-contrast draws a tumour against four in ten elsewhere, so
    "looks post-contrast" itself predicts "tumour" (measured: the weakest external cells are T1-CE
    specificity). With ``share`` 0.5 the other sequences barely move (0.36-0.46 before) and the
    tumour-free class takes half of each epoch.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    w /= w.sum()
    tumour, sequences = np.asarray(tumour, dtype=bool), np.asarray(sequences)
    for sequence in np.unique(sequences):
        here = sequences == sequence
        with_t, without = w[here & tumour].sum(), w[here & ~tumour].sum()
        if with_t > 0 and without > 0:
            w[here & tumour] *= share * (with_t + without) / with_t
            w[here & ~tumour] *= (1.0 - share) * (with_t + without) / without
    return w / w.sum()


def hard_example_weights(weights: np.ndarray, cells: np.ndarray, difficulty: np.ndarray, share: float) -> np.ndarray:
    """``weights`` with ``share`` of each cell's mass moved to its hard slices, in proportion to
    ``difficulty`` (1 - the probability a trained ensemble gives the slice's class); the rest stays
    spread as before. Cells keep their total mass, so the class x source balance is unchanged; a
    cell whose slices are all fitted (difficulty 0) keeps its weights.

    Why: the shipped members do not fit their own training slices of other sources (the pool's AUC
    on the TCGA post-contrast training slices is 0.92, specificity 0.70): slices near the lesion,
    at the vertex and at the skull base stay wrong while easy ones fill the draws.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"hard-example share must be in [0, 1), got {share}")
    w = np.asarray(weights, dtype=np.float64).copy()
    w /= w.sum()
    hard = np.clip(np.asarray(difficulty, dtype=np.float64), 0.0, 1.0)
    cells = np.asarray(cells)
    out = w.copy()
    for cell in np.unique(cells):
        here = cells == cell
        mass, d = w[here].sum(), hard[here]
        if mass > 0 and d.sum() > 0:
            out[here] = (1.0 - share) * w[here] + share * mass * d / d.sum()
    return out / out.sum()


def difficulty_of(slices: SliceSet, classifier: Any) -> np.ndarray:
    """1 - the calibrated probability ``classifier`` (a :class:`core.slices.classify.Classifier`)
    gives each slice's class, with the app's own call (its member TTA)."""
    from core.evaluation.external import ensemble_probabilities

    _, probs = ensemble_probabilities(classifier, {size: slices for size in classifier.sizes()})
    return 1.0 - probs[np.arange(len(slices)), slices.labels()]


def sequences_with_estimates(slices: SliceSet, recogniser: Any) -> np.ndarray:
    """Each slice's sequence: the catalogued one, or the recogniser's for slices without one
    (the 4-class images)."""
    from core.data.sources import UNKNOWN

    sequences = slices.column("sequence").astype(object)
    unknown = np.flatnonzero(sequences == UNKNOWN)
    if len(unknown):
        found = recogniser.recognise_crops(slices.x[unknown].astype(np.float32) / 255.0)
        sequences[unknown] = [a.sequence for a in found]
    return sequences.astype(str)


class WeightedDraws(ShuffledBatches):
    """``samples`` slice indices drawn anew each epoch by ``weights``; a subclass turns one batch of
    indices into arrays in :meth:`make_batch`."""

    def __init__(self, weights: np.ndarray, batch: int, samples: int, seed: int, **kwargs: Any):
        self.weights, self.samples = weights, samples
        super().__init__(samples, batch, seed, **kwargs)

    def draw_key(self) -> tuple[int, ...]:
        """Seed of this epoch's draw."""
        return (self.seed, self.epoch, 7)

    def _draw(self) -> np.ndarray:
        return draw_by_weights(self.weights, self.samples, self.draw_key())

    def first_order(self) -> np.ndarray:
        return self._draw()

    def next_order(self) -> np.ndarray:
        return self._draw()

    def __len__(self) -> int:
        return self.samples // self.batch


class BalancedBatches(WeightedDraws):
    """``samples_per_epoch`` slices per epoch drawn by ``weights``, augmented, normalised."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, weights: np.ndarray, batch: int,
                 samples_per_epoch: int, seed: int, normalisation: str,
                 augment: AcquisitionConfig = AcquisitionConfig(), num_classes: int = len(config.CLASS_NAMES),
                 **kwargs: Any):
        self.images, self.labels, self.num_classes = images, labels, num_classes
        self.normalisation, self.augment = normalisation, augment
        super().__init__(weights, batch, samples_per_epoch, seed, **kwargs)

    def make_batch(self, take: np.ndarray, rng: np.random.Generator):
        x = np.stack([augment_acquisition(self.images[i], rng, self.augment) for i in take])
        x = normalise_batch(x, self.normalisation)[..., None]
        return x, keras.utils.to_categorical(self.labels[take], self.num_classes)


def selection_score(table: dict[str, dict[str, Any]]) -> float:
    """The worst of the 4-class validation accuracy and every other cell's :data:`SELECTION_METRICS`."""
    values = []
    for row in table.values():
        keys = ("accuracy",) if row["source"] == "fourclass" else SELECTION_METRICS
        values += [row[k] for k in keys if np.isfinite(row.get(k, np.nan))]
    return float(min(values)) if values else float("nan")


def ranking_score(table: dict[str, dict[str, Any]]) -> float:
    """The worst of the 4-class validation accuracy and every other cell's tumour AUC.

    Threshold-free, so it picks a member's epoch by how well it *ranks* tumour against tumour-free
    slices on its worst source; the stacking meta-learner then sets the ensemble's thresholds.
    """
    values = [row["accuracy"] if row["source"] == "fourclass" else row["auc"] for row in table.values()]
    values = [v for v in values if np.isfinite(v)]
    return float(min(values)) if values else float("nan")


def validation_table(probs: np.ndarray, val: SliceSet, n_boot: int = 0) -> dict[str, dict[str, Any]]:
    return cell_table(val.column("source"), val.column("sequence"), val.column("patient"), val.labels(), probs,
                      n_boot=n_boot)


class SourceValidation(keras.callbacks.Callback):
    """Score every validation cell after each epoch; logs ``val_worst`` and per-cell figures.

    Place it before :class:`core.train.common.BestWeights` and the CSV logger.
    """

    def __init__(self, val: SliceSet, normalisation: str, batch: int = 64):
        super().__init__()
        self.val = val
        self.x = normalise_batch(val.x.astype(np.float32) / 255.0, normalisation)[..., None]
        self.batch = batch
        self.table: dict[str, dict[str, Any]] = {}

    def predict(self) -> np.ndarray:
        return np.concatenate([np.asarray(self.model(self.x[i:i + self.batch], training=False))
                               for i in range(0, len(self.x), self.batch)])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.table = validation_table(self.predict(), self.val)
        score = selection_score(self.table)
        rank = ranking_score(self.table)
        if logs is not None:
            logs["val_worst"] = score
            logs["val_rank"] = rank
            for key, row in self.table.items():
                tag = key.replace("/", "_")
                for name in ("accuracy",) if row["source"] == "fourclass" else (*SELECTION_METRICS, "auc"):
                    logs[f"val_{tag}_{name}"] = row[name]
        summary = "  ".join(f"{k} {min(v[m] for m in (('accuracy',) if v['source'] == 'fourclass' else SELECTION_METRICS)):.3f}"
                            for k, v in self.table.items())
        print(f"epoch {epoch + 1}: val_rank {rank:.4f} val_worst {score:.4f} | {summary}", flush=True)


def training_counts(train: SliceSet) -> list[dict[str, Any]]:
    """Training slices per class x source x sequence x plane (what the model has seen)."""
    counts = Counter(zip(train.column("label"), train.column("source"), train.column("sequence"),
                         train.column("plane")))
    return [{"class": c, "source": s, "sequence": q, "plane": p, "n": int(n)}
            for (c, s, q, p), n in sorted(counts.items())]
