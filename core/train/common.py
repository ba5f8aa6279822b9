"""Pieces shared by the training CLIs: seeding, schedules, best-weight tracking, saving, cards."""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend."""
    keras.utils.set_random_seed(seed)


class ShuffledBatches(keras.utils.PyDataset):
    """Batches of ``n`` training items in a seeded order, reshuffled at each epoch's end.

    Batch ``idx`` of an epoch takes ``order[idx * batch:(idx + 1) * batch]`` (the last may be short)
    and gets its own generator seeded by ``(seed, epoch, idx)``, so batches are reproducible whatever
    the loader's worker order; a subclass turns the indices into arrays in :meth:`make_batch`, and
    may choose the indices otherwise by overriding :meth:`first_order` and :meth:`next_order`.
    """

    def __init__(self, n: int, batch: int, seed: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n, self.batch, self.seed, self.epoch = n, batch, seed, 0
        self.order = self.first_order()

    def first_order(self) -> np.ndarray:
        """Item indices of the first epoch."""
        return np.random.default_rng(self.seed).permutation(self.n)

    def next_order(self) -> np.ndarray:
        """Item indices of epoch ``self.epoch`` (called once it has been incremented)."""
        return np.random.default_rng((self.seed, self.epoch)).permutation(self.n)

    def __len__(self) -> int:
        return int(np.ceil(self.n / self.batch))

    def __getitem__(self, idx: int):
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        return self.make_batch(self.order[idx * self.batch:(idx + 1) * self.batch], rng)

    def make_batch(self, take: np.ndarray, rng: np.random.Generator):
        raise NotImplementedError

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self.next_order()


def draw_by_weights(weights: np.ndarray, samples: int, key: tuple[int, ...]) -> np.ndarray:
    """``samples`` item indices drawn with replacement by ``weights``, from a generator seeded by ``key``."""
    return np.random.default_rng(key).choice(len(weights), size=samples, p=weights)


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the best epoch in memory (by ``monitor``) and restore them at the end."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min"):
        super().__init__()
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch = -1
        self._weights: list[np.ndarray] | None = None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and self._better(float(value)):
            self.best, self.best_epoch = float(value), epoch
            self._weights = self.model.get_weights()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._weights is not None:
            self.model.set_weights(self._weights)


class CosineWithinBudget(keras.callbacks.Callback):
    """Per-epoch cosine learning rate that anneals by the last epoch or the time budget, whichever is first.

    A step schedule cut short by a wall-time limit stops at a high learning rate. Here the
    cosine's progress is ``max(epoch / epochs, elapsed / budget)``, and training stops before
    an epoch that would overrun the budget, so the final epochs always run near the floor
    (``floor`` x ``peak_lr``). The first ``warmup_epochs`` ramp up linearly. The rate of each
    epoch is logged as ``lr`` (place this callback before a CSVLogger).
    """

    def __init__(self, peak_lr: float, epochs: int, minutes: float | None = None, warmup_epochs: int = 2,
                 floor: float = 0.01):
        super().__init__()
        self.peak, self.epochs, self.warmup, self.floor = peak_lr, epochs, warmup_epochs, floor
        self.limit = None if minutes is None else minutes * 60.0
        self.start = time.monotonic()
        self.durations: list[float] = []
        self.stopped_early = False
        self._epoch_start = self.start
        self._rate = peak_lr

    def rate(self, epoch: int, elapsed: float) -> float:
        """Learning rate for ``epoch`` begun ``elapsed`` seconds into training."""
        if epoch < self.warmup:
            return self.peak * (epoch + 1) / (self.warmup + 1)
        progress = (epoch - self.warmup) / max(1, self.epochs - self.warmup)
        if self.limit is not None:
            progress = max(progress, elapsed / self.limit)
        progress = min(1.0, progress)
        return self.peak * (self.floor + (1 - self.floor) * self.decay(progress))

    def decay(self, progress: float) -> float:
        """Share of the peak (above the floor) at ``progress`` in [0, 1]: half a cosine."""
        return 0.5 * (1 + math.cos(math.pi * progress))

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.monotonic()
        self._rate = self.rate(epoch, self._epoch_start - self.start)
        self.model.optimizer.learning_rate = self._rate

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        self.durations.append(now - self._epoch_start)
        if logs is not None:
            logs["lr"] = self._rate
        if self.limit is not None:
            expected = float(np.mean(self.durations[-3:]))
            if now - self.start + expected > self.limit:
                self.stopped_early = epoch + 1 < self.epochs
                self.model.stop_training = True


class PolyWithinBudget(CosineWithinBudget):
    """:class:`CosineWithinBudget` with nnU-Net's polynomial decay, ``(1 - progress) ** 0.9``, instead
    of the cosine (the same warm-up, floor and time budget)."""

    power = 0.9

    def decay(self, progress: float) -> float:
        return (1.0 - progress) ** self.power


#: Learning-rate schedules a training CLI can name (``--schedule``).
SCHEDULES: dict[str, type[CosineWithinBudget]] = {"cosine": CosineWithinBudget, "poly": PolyWithinBudget}


def save_inference_model(model: keras.Model, rebuild: Callable[[], keras.Model], path: Path) -> keras.Model:
    """Save weights in a freshly built, uncompiled twin so no optimizer state is stored."""
    twin = rebuild()
    twin.set_weights(model.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    twin.save(path)
    return twin


def training_command(module: str) -> str:
    """The command line that reproduces this run (relative paths only)."""
    return f"python -m {module} {shlex.join(sys.argv[1:])}".rstrip()


def run_facts(started: float) -> dict[str, Any]:
    """Backend, date and duration of a finished run, for the model card."""
    return {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "trained_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "train_seconds": round(time.monotonic() - started, 1),
        "cpu_count": os.cpu_count(),
    }


def relative_to_repo(path: Path) -> str:
    """A path as shown in cards: relative to the repo, or the data folder's conventional name."""
    from core import config

    path = Path(path).resolve()
    # the data folder first: on a GPU machine it is unpacked inside the repo (scripts/gpu_data.py)
    for base, label in ((config.data_dir(), "$BTD_DATA_DIR/"), (config.REPO_ROOT, "")):
        if base is not None:
            try:
                return label + str(path.relative_to(Path(base).resolve()))
            except ValueError:
                continue
    return path.name


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer, nested models included."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def freeze_batchnorm(model: keras.Model) -> int:
    """Keep every batch-normalisation layer's moving statistics and scale as they are (Keras 3: a
    non-trainable BatchNormalization runs in inference mode), so fine-tuning on other data moves the
    convolutions only. Returns the number of layers frozen."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.trainable = False
    return len(layers)


def set_batchnorm_momentum(model: keras.Model, momentum: float = 0.9) -> None:
    """Make moving statistics track faster than Keras' default 0.99 (0.999 in MobileNetV2).

    With inputs in [0, 1] the early layers' activations have variances around 1e-3, far from
    the moving variance's initial 1.0; at 0.99 it takes thousands of steps to get there, and
    until then the model in inference mode collapses to one class (measured here: 24 % val
    accuracy in inference mode against 74 % with batch statistics after one epoch).
    """
    for layer in batchnorm_layers(model):
        layer.momentum = momentum


def recalibrate_batchnorm(model: keras.Model, images: np.ndarray, batch: int = 32, max_batches: int = 64,
                          seed: int = 0) -> None:
    """"Precise BN": replace moving statistics by their exact average over training batches.

    ``images`` are un-augmented training inputs ``(N, ...)`` float32. The k-th batch is
    weighted by setting each layer's momentum to k/(k+1), which makes the moving value the
    running mean of the batch statistics. Momentum is restored afterwards.
    """
    layers_ = batchnorm_layers(model)
    saved = [layer.momentum for layer in layers_]
    order = np.random.default_rng(seed).permutation(len(images))
    n_batches = min(max_batches, len(images) // batch)
    for k in range(n_batches):
        for layer in layers_:
            layer.momentum = k / (k + 1.0)
        model(images[order[k * batch:(k + 1) * batch]], training=True)
    for layer, momentum in zip(layers_, saved):
        layer.momentum = momentum


def copy_matching_layers(model: keras.Model, source: keras.Model) -> list[str]:
    """Copy into ``model`` the weights of every layer of ``source`` with the same name and weight
    shapes; returns the names of ``model``'s weighted layers left as they were (a new head)."""
    by_name = {layer.name: layer for layer in source.layers}
    kept = []
    for layer in model.layers:
        if not layer.weights:
            continue
        twin = by_name.get(layer.name)
        if twin is None or [w.shape for w in twin.get_weights()] != [w.shape for w in layer.get_weights()]:
            kept.append(layer.name)
            continue
        layer.set_weights(twin.get_weights())
    return kept


def warm_start(model: keras.Model, path: Path, partial: bool = False) -> dict[str, Any]:
    """Copy the weights of the saved model at ``path`` into ``model`` (same architecture; with
    ``partial``, every layer whose name and shapes match, e.g. all but a new output layer).

    Returns its provenance for the new card: file, sha256 and, when the manifest beside it has
    the card of that exact file, the epochs, training command, log and config that produced it
    (with ``partial``, also ``new_layers``: the layers that were not copied).
    """
    from core.serving.registry import file_sha256, load_manifest

    source = keras.saving.load_model(path, compile=False)
    if partial:
        fresh = copy_matching_layers(model, source)
        if len(fresh) == len([layer for layer in model.layers if layer.weights]):
            raise SystemExit(f"--init-from {path}: no layer of it matches this network")
    else:
        model.set_weights(source.get_weights())
    sha = file_sha256(path)
    origin: dict[str, Any] = {"file": relative_to_repo(path), "sha256": sha, **({"new_layers": fresh} if partial else {})}
    cards = load_manifest(path.parent).get("models", {}) if (path.parent / "manifest.json").is_file() else {}
    card = next((c for c in cards.values() if c.get("sha256") == sha), None)
    if card is not None:
        origin.update(epochs=card.get("epochs"), training_command=card.get("training_command"),
                      log=card.get("log"), val_mean_dice=(card.get("metrics", {}).get("val") or {}).get("mean_dice"),
                      config=card.get("config"))
    return origin


def concatenate_logs(first: Path, second: Path, out: Path) -> int:
    """Write the per-epoch CSV ``first`` followed by ``second`` (epochs renumbered) to ``out``.

    Columns are the union of both (blank where a log lacks one). Returns the number of rows.
    """
    rows: list[dict[str, str]] = []
    for part in (first, second):
        with part.open(newline="") as fh:
            rows.extend(csv.DictReader(fh))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for epoch, row in enumerate(rows):
        row["epoch"] = str(epoch)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def add_sampled_training_args(p: argparse.ArgumentParser, *, sources: list[str], epochs: int, samples: int, batch: int,
                              lr: float, name: str) -> None:
    """The options every CLI that trains on catalogued sources (:mod:`core.data.sources`) with epochs of
    ``--samples-per-epoch`` drawn slices shares, with that CLI's defaults."""
    from core import config

    p.add_argument("--sources", nargs="+", default=sources)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--samples-per-epoch", type=int, default=samples)
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time (keeps the best epoch)")
    p.add_argument("--init-from", type=Path, default=None, help="start from this saved model's weights")
    p.add_argument("--name", default=name)
    p.add_argument("--out", type=Path, default=config.WEIGHTS_DIR)
    p.add_argument("--workers", type=int, default=2)
