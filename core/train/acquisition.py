"""Train the sequence and plane recogniser on BraTS (4 sequences, 3 planes by re-slicing), tcga_lgg
and figshare (T1-CE in three planes annotated by eye, skull included; ``--sources``).

    python -m core.train.acquisition --epochs 12 --max-minutes 12
    python -m core.train.acquisition --rescore      # re-measure the shipped card on the current catalogue

Splits are the catalogue's (:mod:`core.data.sources`): BraTS cases by the shipped BraTS model's split,
tcga_lgg folds 1-2 train, 3 validation, 4 held out, figshare folds 1-2 / 3 / 4. Without figshare
slices the model learnt "skull visible -> axial" (only BraTS, skull-stripped, had other planes). Each epoch draws ``--samples-per-epoch``
slices balanced over sequence x plane x source and augments them against acquisition shortcuts
except the contrast ones that would change what a sequence looks like. The best epoch has the
best worse-of-the-two validation accuracy (sequence, plane). The card records the accuracy on the
held-out BraTS cases and tcga_lgg and figshare patients, measured with the test-time augmentation the
app applies (``--tta``, recorded in the card: by default each crop and its mirror averaged).
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from core import config
from core.train.augment import AcquisitionConfig, augment_acquisition, thick_slices
from core.slices.classify import TTA_MODES, normalise_batch, predict_tta
from core.models.acquisition import acquisition_compact, two_head_loss
from core.serving.registry import record_model
from core.data.sources import PLANES, SEQUENCES, SliceSet, load_sources
from core.train.common import (BestWeights, CosineWithinBudget, add_sampled_training_args, run_facts,
                               save_inference_model, set_batchnorm_momentum, set_seed, training_command, warm_start)
from core.train.multisource import WeightedDraws

NAME = "sequence_plane"
#: Contrast changes a sequence can survive: mild gamma and windowing, no skull stripping of the
#: skull-bearing sources beyond what the classifier sees.
AUGMENT = replace(AcquisitionConfig(), gamma=(0.8, 1.25), window_low=0.06, window_high=0.1)


def augmentation(gamma: tuple[float, float] = AUGMENT.gamma) -> AcquisitionConfig:
    """:data:`AUGMENT` with the contrast curve's gamma drawn log-uniformly from ``gamma``."""
    return replace(AUGMENT, gamma=(float(gamma[0]), float(gamma[1])))


def targets(slices: SliceSet) -> np.ndarray:
    """One-hot sequence then plane, laid out like the model's output."""
    seq = np.array([SEQUENCES.index(s) for s in slices.column("sequence")])
    plane = np.array([PLANES.index(p) for p in slices.column("plane")])
    return np.concatenate([np.eye(len(SEQUENCES))[seq], np.eye(len(PLANES))[plane]], axis=1).astype(np.float32)


def known(slices: SliceSet) -> SliceSet:
    return slices.take((np.isin(slices.column("sequence"), SEQUENCES)) & (np.isin(slices.column("plane"), PLANES)))


def training_split(slices: SliceSet, fit_validation: list[str] | tuple[str, ...] = ()
                   ) -> tuple[SliceSet, SliceSet, SliceSet]:
    """Train, validation and held-out slices; the validation patients of the ``fit_validation`` sources
    join the training slices (the recipe having been fixed on them first), so validation keeps the
    other sources only. The held-out patients are never moved."""
    split, source = slices.column("split"), slices.column("source")
    moved = (split == "val") & np.isin(source, list(fit_validation))
    if fit_validation and not np.any((split == "val") & ~moved):
        raise ValueError("--fit-validation leaves no validation slices to choose the epoch on")
    return slices.take((split == "train") | moved), slices.take((split == "val") & ~moved), slices.take(split == "test")


def split_text(fit_validation: list[str] | tuple[str, ...] = ()) -> str:
    """The card's description of the split."""
    text = ("BraTS: the shipped BraTS model's case split (train/val/held out); tcga_lgg: folds 1-2 train, 3 val, "
            "4 held out")
    if fit_validation:
        text += ("; the validation patients of " + ", ".join(fit_validation) + " trained on as well (recipe fixed "
                 "on them first; the epoch chosen on the other sources' validation patients)")
    return text


def sampling_weights(slices: SliceSet) -> np.ndarray:
    keys = list(zip(slices.column("sequence"), slices.column("plane"), slices.column("source")))
    counts = Counter(keys)
    w = np.array([1.0 / counts[k] for k in keys])
    return w / w.sum()


#: Through-plane resolution of a thick-slice axial acquisition seen in its re-sliced views, in rows per
#: slice (the BraTS volumes are resampled to 1 mm; clinical axial series are often 3-6 mm thick).
THICK_SLICE_FACTORS = (2.0, 6.0)


def resliced(slices: SliceSet) -> np.ndarray:
    """Which slices are coronal or sagittal views re-sliced from a volume (BraTS), whose rows run
    along the axis the volume was acquired in."""
    return (slices.column("source") == "brats") & np.isin(slices.column("plane"), ["coronal", "sagittal"])


class Batches(WeightedDraws):
    """Slices drawn anew each epoch by :func:`sampling_weights`, augmented anew.

    (Earlier runs drew one fixed set of ``samples`` slices for every epoch: with 8000 draws from
    11 371 weighted slices, half the training slices were never seen.) With ``thick_p``, that share of
    the re-sliced views (:func:`resliced`) of every sequence first looks as if the volume had been
    acquired in thick axial slices (:func:`core.train.augment.thick_slices`), so that sharpness along
    the superior-inferior axis says nothing about the sequence.
    """

    def __init__(self, slices: SliceSet, batch: int, samples: int, seed: int, normalisation: str = "head",
                 augment: AcquisitionConfig = AUGMENT, thick_p: float = 0.0, **kwargs):
        self.slices, self.y, self.normalisation, self.augment = slices, targets(slices), normalisation, augment
        self.thick_p, self.resliced = float(thick_p), resliced(slices)
        super().__init__(sampling_weights(slices), batch, samples, seed, **kwargs)

    def _thickened(self, i: int, rng: np.random.Generator) -> np.ndarray:
        if self.resliced[i] and rng.random() < self.thick_p:
            return thick_slices(self.slices.x[i], rng.uniform(*THICK_SLICE_FACTORS))
        return self.slices.x[i]

    def make_batch(self, take: np.ndarray, rng: np.random.Generator):
        x = np.stack([augment_acquisition(self._thickened(i, rng), rng, self.augment) for i in take])
        return normalise_batch(x, self.normalisation)[..., None], self.y[take]


def thick_views(slices: SliceSet, factor: float = 4.0) -> SliceSet | None:
    """The re-sliced views of ``slices`` as if acquired in ``factor``-row thick axial slices, every
    sequence alike (None without such views)."""
    keep = resliced(slices)
    if not keep.any():
        return None
    views = slices.take(keep)
    return replace(views, x=np.stack([np.round(thick_slices(x, factor) * 255.0).astype(np.uint8) for x in views.x]))


def thick_slice_probe(model: keras.Model, slices: SliceSet, tta: str = "none", normalisation: str = "head",
                      factor: float = 4.0) -> dict[str, float] | None:
    """Sequence accuracy on :func:`thick_views` of ``slices`` (None without re-sliced views): what a
    recogniser that reads the sequence from sharpness loses."""
    thick = thick_views(slices, factor)
    if thick is None:
        return None
    return {"sequence": sequence_accuracy(model, thick, tta, normalisation), "n": len(thick), "factor": factor}


def sequence_accuracy(model: keras.Model, slices: SliceSet, tta: str = "none", normalisation: str = "head") -> float:
    """The model's sequence accuracy on ``slices``, to four decimals."""
    return round(accuracies(predict(model, slices, tta, normalisation), slices)["sequence"], 4)


def predict(model: keras.Model, slices: SliceSet, tta: str = "none", normalisation: str = "head") -> np.ndarray:
    """The model's concatenated output for catalogued slices, with test-time augmentation ``tta``."""
    return predict_tta(model, normalise_batch(slices.x.astype(np.float32) / 255.0, normalisation), tta)


def accuracies(probs: np.ndarray, slices: SliceSet) -> dict[str, float]:
    y = targets(slices)
    n = len(SEQUENCES)
    return {"sequence": float(np.mean(probs[:, :n].argmax(1) == y[:, :n].argmax(1))),
            "plane": float(np.mean(probs[:, n:].argmax(1) == y[:, n:].argmax(1)))}


def report(model: keras.Model, slices: SliceSet, tta: str = "none",
           normalisation: str = "head") -> dict[str, dict[str, float]]:
    """Sequence and plane accuracy per source."""
    out: dict[str, dict] = {}
    probs = predict(model, slices, tta, normalisation)
    for source in sorted(set(slices.column("source"))):
        keep = slices.column("source") == source
        out[source] = {**{k: round(v, 4) for k, v in accuracies(probs[keep], slices.take(keep)).items()},
                       "n": int(keep.sum())}
    return out


def measured(model: keras.Model, val: SliceSet, test: SliceSet, tta: str, normalisation: str) -> dict:
    """The card's metrics: sequence and plane accuracy per source on the validation and held-out
    patients, and the thick-slice probe of each (:func:`thick_slice_probe`) where it has re-sliced views."""
    metrics: dict = {"val": report(model, val, tta, normalisation), "test": report(model, test, tta, normalisation)}
    probe = {split: figures for split, part in (("val", val), ("test", test))
             if (figures := thick_slice_probe(model, part, tta, normalisation)) is not None}
    if probe:
        metrics["thick_slice_probe"] = probe
    return metrics


class Validation(keras.callbacks.Callback):
    def __init__(self, val: SliceSet, tta: str = "none", normalisation: str = "head"):
        super().__init__()
        self.val, self.tta, self.normalisation = val, tta, normalisation
        self.thick = thick_views(val)   # blurred once; the probe scores them after every epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probs = predict(self.model, self.val, self.tta, self.normalisation)
        acc = {}
        for source in sorted(set(self.val.column("source"))):
            keep = self.val.column("source") == source
            acc.update({f"{source}_{k}": v for k, v in accuracies(probs[keep], self.val.take(keep)).items()})
        worst = min(acc.values())
        if self.thick is not None:  # reported beside the selection figure, not part of it
            acc["brats_thick_sequence"] = sequence_accuracy(self.model, self.thick, self.tta, self.normalisation)
        if logs is not None:
            logs["val_worst"] = worst
            logs.update({f"val_{k}": v for k, v in acc.items()})
        print(f"epoch {epoch + 1}: val_worst {worst:.4f} " + " ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)


#: The card's words for each ``--normalisation``.
NORMALISATION_TEXT = {"head": "head percentiles to [0, 1]", "rank": "each pixel's rank among the head's pixels, in [0, 1]"}

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sampled_training_args(p, sources=["brats", "tcga_lgg"], epochs=12, samples=8000, batch=64, lr=2e-3, name=NAME)
    p.add_argument("--tta", choices=TTA_MODES, default="hflip",
                   help="test-time augmentation for validation, the card's figures and the app (hflip: the crop and "
                        "its mirror averaged)")
    p.add_argument("--normalisation", choices=sorted(NORMALISATION_TEXT), default="head",
                   help="intensity normalisation of the crop (core.imaging.preprocess.NORMALISATIONS): head "
                        "percentiles, or each pixel's rank among the head's pixels (blind to the contrast curve)")
    p.add_argument("--gamma", type=float, nargs=2, default=list(AUGMENT.gamma), metavar=("LOW", "HIGH"),
                   help="range of the augmentation's contrast curve x**g (g log-uniform): wider ranges show the "
                        "recogniser scanners whose tissue brightness differs more")
    p.add_argument("--thick-slices", type=float, default=0.0, metavar="P",
                   help="share of the re-sliced BraTS views (coronal, sagittal) made to look acquired in 2-6 mm "
                        "thick axial slices, every sequence alike (most T1 series are thick, most T1-CE series 3D: "
                        "without this, sharpness along the head's axis reads as T1-CE)")
    p.add_argument("--fit-validation", nargs="+", default=[], choices=["brats", "tcga_lgg", "figshare"],
                   metavar="SOURCE",
                   help="train on these sources' validation patients too, once a recipe has been chosen on them "
                        "(few BraTS cases: each one is a scanner's contrast); the best epoch is then chosen on the "
                        "other sources' validation patients and the held-out patients stay untouched")
    p.add_argument("--rescore", action="store_true",
                   help="train nothing: re-measure the card of the model NAME in --out on the current catalogue "
                        "with --tta, and record that TTA in the card")
    return p.parse_args(argv)


#: What each source contributes, for the card's description.
SOURCE_TEXT = {"brats": "BraTS (4 sequences; planes by re-slicing)", "tcga_lgg": "tcga_lgg (3 sequences, axial)",
               "figshare": "figshare (T1-CE in three annotated planes, skull included)"}


def _sources_text(sources: list[str]) -> str:
    """``"A, B and C"`` of the sources' descriptions."""
    parts = [SOURCE_TEXT.get(s, s) for s in sources]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def rescore(args: argparse.Namespace) -> dict:
    """Re-measure a recorded recogniser's validation and held-out figures (same weights, same card
    otherwise) on its sources' current catalogue, with ``args.tta``; returns the new metrics."""
    from core.serving.registry import load_keras_model, model_card

    card = model_card(args.name, args.out)
    slices = known(load_sources(card["sources"], int(card["input"]["size"])))
    model = load_keras_model(args.name, args.out)
    how = card["input"].get("normalisation", "head")
    # validation patients it was trained on (--fit-validation) are not validation figures
    _, val, test = training_split(slices, card.get("config", {}).get("fit_validation", []))
    metrics = measured(model, val, test, args.tta, how)
    record_model(args.name, {**card, "metrics": metrics, "tta": args.tta,
                             "metrics_command": f"python -m core.train.acquisition --rescore --tta {args.tta}"}, args.out)
    return metrics


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rescore:
        brats = rescore(args)["test"].get("brats", {})
        print(f"RESULT model={args.name} heldout_brats_sequence={brats.get('sequence')} "
              f"heldout_brats_plane={brats.get('plane')} tta={args.tta}")
        return
    started = time.monotonic()
    set_seed(args.seed)
    slices = known(load_sources(args.sources, args.size))
    train, val, test = training_split(slices, args.fit_validation)
    print(f"train {len(train)}  val {len(val)}  held out {len(test)}", flush=True)
    model = acquisition_compact(args.size)
    origin = warm_start(model, args.init_from) if args.init_from else None
    set_batchnorm_momentum(model, 0.9)
    model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=0.01, clipnorm=2.0),
                  loss=two_head_loss(len(SEQUENCES)))
    log_path = args.out / "logs" / f"{args.name}.csv"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    best = BestWeights("val_worst", mode="max")
    budget = CosineWithinBudget(args.lr, args.epochs, args.max_minutes, warmup_epochs=1)
    batches = Batches(train, args.batch, args.samples_per_epoch, args.seed, args.normalisation,
                      augmentation(args.gamma), args.thick_slices, workers=args.workers,
                      use_multiprocessing=False, max_queue_size=8)
    history = model.fit(batches, epochs=args.epochs, verbose=2,
                        callbacks=[budget, Validation(val, args.tta, args.normalisation), best,
                                   keras.callbacks.CSVLogger(str(log_path))])
    # no "precise BN" pass: augmented and clean statistics differ (see core.train.classifier)
    metrics = measured(model, val, test, args.tta, args.normalisation)
    path = args.out / f"{args.name}.keras"
    save_inference_model(model, lambda: acquisition_compact(args.size), path)
    card = {
        "task": "acquisition",
        "role": "shipped",
        "description": "Names the MRI sequence (T1, T1-CE, T2, FLAIR) and plane (axial, coronal, sagittal) of a slice; "
                       "trained from scratch on " + _sources_text(args.sources) + ".",
        "architecture": "acquisition_compact",
        "builder": "core.models.acquisition.acquisition_compact",
        "file": path.name,
        "params": int(model.count_params()),
        "input": {"size": args.size, "channels": 1, "range": "[0, 1]", "normalisation": args.normalisation,
                  "preprocess": "the classifier's crop: brain crop, pad to square, resize; " + NORMALISATION_TEXT[args.normalisation]},
        "classes": [*SEQUENCES, *PLANES],
        "outputs": {"sequences": list(SEQUENCES), "planes": list(PLANES),
                    "layout": "sequence softmax then plane softmax, concatenated"},
        "sources": args.sources,
        "data": "$BTD_DATA_DIR (" + ", ".join(args.sources) + "; see core/data/sources.py)",
        "split": split_text(args.fit_validation),
        "training_counts": {f"{s}/{q}/{p}": int(n) for (s, q, p), n in sorted(Counter(zip(
            train.column("source"), train.column("sequence"), train.column("plane"))).items())},
        "epochs": len(history.epoch),
        "best_epoch": best.best_epoch + 1,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in {"out", "workers", "rescore"}},
        "augmentation": f"balanced over sequence x plane x source; window/level, gamma {args.gamma[0]:g}-{args.gamma[1]:g}, "
                        "bias field, noise, "
                        "blur/sharpen, JPEG, low resolution, simulated skull stripping, rotation ±15°, scale, "
                        "shift, horizontal flip" + (f"; {args.thick_slices:g} of the re-sliced BraTS views made to look "
                                                    f"acquired in thick axial slices" if args.thick_slices else ""),
        "stopped_by_time_budget": budget.stopped_early,
        "tta": args.tta,
        "metrics": metrics,
        "log": f"logs/{log_path.name}",
        "training_command": training_command("core.train.acquisition"),
        **({"initialised_from": origin} if origin else {}),
        **run_facts(started),
    }
    record_model(args.name, card, args.out)
    brats = metrics["test"].get("brats", {})
    print(f"RESULT model={args.name} heldout_brats_sequence={brats.get('sequence')} "
          f"heldout_brats_plane={brats.get('plane')} epochs={card['epochs']}")


if __name__ == "__main__":
    main()
