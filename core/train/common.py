"""Pieces shared by the training CLIs: seeding, schedules, best-weight tracking, saving, cards."""
from __future__ import annotations

import datetime as _dt
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


def cosine_schedule(peak_lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float = 2.0):
    """Linear warm-up to ``peak_lr`` then cosine decay to 1 % of it."""
    total = max(1, steps_per_epoch * epochs)
    warmup = int(min(total // 4, steps_per_epoch * warmup_epochs))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak_lr * 0.01, decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=peak_lr, warmup_steps=warmup)


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


class TimeBudget(keras.callbacks.Callback):
    """Stop training cleanly once ``minutes`` of wall time have passed (CPU budgets)."""

    def __init__(self, minutes: float | None):
        super().__init__()
        self.limit = None if minutes is None else minutes * 60.0
        self.start = time.monotonic()
        self.stopped_early = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.limit is not None and time.monotonic() - self.start > self.limit:
            self.stopped_early = True
            self.model.stop_training = True


def save_inference_model(model: keras.Model, rebuild: Callable[[], keras.Model], path: Path) -> keras.Model:
    """Save weights in a freshly built, uncompiled twin so no optimizer state is stored."""
    twin = rebuild()
    twin.set_weights(model.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    twin.save(path)
    return twin


def training_command(module: str) -> str:
    """The command line that reproduces this run (relative paths only)."""
    return f"python -m {module} " + shlex.join(sys.argv[1:])


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
    for base, label in ((config.REPO_ROOT, ""), (config.data_dir(), "$BTD_DATA_DIR/")):
        if base is not None:
            try:
                return label + str(path.relative_to(Path(base).resolve()))
            except ValueError:
                continue
    return path.name


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer, nested models included."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


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
