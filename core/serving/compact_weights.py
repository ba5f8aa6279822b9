"""Half-precision weight files for models too large for ``weights/`` as float32 ``.keras`` files.

A model whose ``.keras`` file exceeds the per-file limit of ``weights/`` (16 MiB) can ship as its
weights rounded to float16 in one compressed ``.npz`` (half the size) plus, in its card, how to
rebuild the architecture (``builder``: a function of ``core.models`` and its keyword arguments).
Loading rebuilds the network, widens the weights back to float32 and runs it exactly like the
``.keras`` original except for the rounding, whose effect :func:`convert` measures and records.

    python -m core.registry promote unet3d_brats --from runs/gpu/brats --role comparison --fp16
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelUnavailable

FORMAT = "keras-weights-fp16"
SUFFIX = ".fp16.npz"
_BUILDER_MODULES = ("core.models.segmenters", "core.models.classifiers")


def segmenter_builder(card: dict[str, Any], channels: int, num_classes: int) -> dict[str, Any]:
    """The ``builder`` entry of a segmenter card (architecture and its filters from the card's config)."""
    cfg = card.get("config", {})
    return {"module": "core.models.segmenters", "function": "build_segmenter",
            "kwargs": {"name": card["architecture"], "input_size": None, "channels": channels,
                       "num_classes": num_classes, "base": int(cfg["base"]), "depth": int(cfg["depth"])}}


def build(builder: dict[str, Any]):
    """The untrained network a card's ``builder`` describes (only builders of ``core.models``)."""
    if builder.get("module") not in _BUILDER_MODULES:
        raise ModelUnavailable(f"unknown model builder module {builder.get('module')!r}")
    function = getattr(importlib.import_module(builder["module"]), builder["function"])
    return function(**builder["kwargs"])


def save_fp16(model, path: Path) -> None:
    """Write ``model``'s weights, in order, as float16 arrays ``w0, w1, ...`` of a compressed npz."""
    arrays = {f"w{i}": np.asarray(w).astype(np.float16) for i, w in enumerate(model.get_weights())}
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_fp16(path: Path, builder: dict[str, Any]):
    """Rebuild the network and load float16 weights from ``path`` (widened to float32)."""
    model = build(builder)
    with np.load(path) as stored:
        weights = [stored[f"w{i}"].astype(np.float32) for i in range(len(stored.files))]
    if len(weights) != len(model.weights):
        raise ModelUnavailable(f"{path.name} holds {len(weights)} arrays; the architecture has {len(model.weights)}")
    model.set_weights(weights)
    return model


def convert(source: Path, target: Path, builder: dict[str, Any], probe_shape: tuple[int, ...]) -> dict[str, Any]:
    """Write the float16 twin of the ``.keras`` model at ``source`` to ``target``; returns facts for
    the card: the format, the builder and the largest output difference on a random input of
    ``probe_shape`` (batch 1, outputs are probabilities)."""
    import keras

    original = keras.saving.load_model(source, compile=False)
    save_fp16(original, target)
    twin = load_fp16(target, builder)
    probe = np.random.default_rng(0).normal(size=(1, *probe_shape)).astype(np.float32)
    diff = float(np.max(np.abs(np.asarray(original(probe)) - np.asarray(twin(probe)))))
    return {"format": FORMAT, "builder": builder, "converted_from": {"file": source.name},
            "fp16_max_output_difference": round(diff, 6), "fp16_probe": "x".join(map(str, (1, *probe_shape)))}
