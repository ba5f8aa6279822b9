"""Export shipped Keras models to LiteRT flatbuffers for fast CPU inference.

    python -m core.export_runtime                      # every shipped model and ensemble member
    python -m core.export_runtime --models resunet     # just these
    python -m core.export_runtime --quantization float32   # Keras's exact numbers, slower

Each flatbuffer is written beside its Keras file (``weights/<name>.tflite``), checked against the
Keras model on random inputs, and recorded in the model's card under ``runtime`` with its sha256
and the sha256 of the Keras file it came from (a retrained model's old export is then ignored).
Run it again after retraining; ``python -m core.registry`` re-renders the model cards. The
converter is TensorFlow's: models trained on a GPU machine with JAX are exported here, on the
TensorFlow install, once their ``.keras`` files are back. 3D models (a card with ``"dims": 3``, the
3D BraTS U-Net) are skipped: they run on Keras (:meth:`core.volumes.brats_model.VolumeSegmenter.load`).

Quantization (``--quantization``, default ``auto``): ``dynamic_int8`` stores the weights as int8
(outputs within ~1e-2 of Keras); whether it is faster depends on the network. ``auto`` converts
both ways, times each on the batch the app runs the model at (:data:`APP_BATCH`) on this CPU and
keeps int8 only when it is at least :data:`INT8_MIN_SPEEDUP` times faster; the card's ``runtime``
records the mode and both timings. Measured on the 2-core CPU: the ResNet-style member 8.4 -> 2.0
ms and the ResUNet 34 -> 19 ms with int8, while the MobileNetV2 and EfficientNet members (depthwise
convolutions) and the BraTS model on its 8-slice batches were faster in float32.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.serving import registry, runtime
from core.serving.timing import interleaved_median_ms

#: Cards of these roles are exported by default: what the app runs, not comparison-only models.
DEFAULT_ROLES = ("ensemble_member", "shipped")
#: Exports whose outputs differ from Keras by more than this (per quantization) are refused. int8 weights
#: move the shipped networks' outputs by at most 1.2e-2 on random probes.
MAX_ABS_DIFF: dict[str, float] = {"float32": 1e-4, "dynamic_int8": 5e-2}
#: Batch the app runs each task's network at: a slice and its mirror, a slice, 8 axial slices.
APP_BATCH: dict[str, int] = {"classification": 2, "segmentation": 1, "brats": 8}
#: ``auto`` keeps an int8 export only when it runs at least this many times faster than float32.
INT8_MIN_SPEEDUP = 1.2
COMMAND = "python -m core.export_runtime"


def default_models(weights_dir: Path | None = None) -> list[str]:
    """Keras models of the default roles, in manifest order (3D models left out: :func:`is_3d`)."""
    return [name for name, card in registry.load_manifest(weights_dir)["models"].items()
            if card.get("role") in DEFAULT_ROLES and str(card.get("file", "")).endswith(".keras")
            and not is_3d(card)]


def is_3d(card: dict[str, Any]) -> bool:
    """A 3D model: not exported (it runs on Keras by a sliding window)."""
    return registry.card_dims(card) == 3


def probe_input(model: Any, free_side: int = 64, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Random inputs in [0, 1] of the model's input shape (free spatial sides set to ``free_side``)."""
    shape = [batch] + [free_side if d is None else int(d) for d in model.input_shape[1:]]
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def largest_difference(a: Any, b: Any) -> float:
    """Largest absolute difference between two models' outputs (one array or a list of arrays)."""
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True))


def faster_mode(timed_ms: dict[str, float]) -> str:
    """``dynamic_int8`` when it ran at least :data:`INT8_MIN_SPEEDUP` times faster than float32."""
    return "dynamic_int8" if timed_ms["float32"] >= INT8_MIN_SPEEDUP * timed_ms["dynamic_int8"] else "float32"


def choose_quantization(model: Any, batch: int, repeats: int = 30) -> tuple[str, dict[str, bytes], dict[str, float]]:
    """``(mode, flatbuffers by mode, median ms by mode)``: both exports timed on a ``batch`` of
    probes in alternating blocks (:func:`core.serving.timing.interleaved_median_ms`, so host drift hits
    both alike), the mode picked by :func:`faster_mode`."""
    x = probe_input(model, free_side=128, batch=batch)
    contents = {mode: runtime.export_flatbuffer(model, mode) for mode in runtime.QUANTIZATIONS}
    runners = {mode: runtime.LiteModel(content) for mode, content in contents.items()}
    medians = interleaved_median_ms({mode: (lambda r=r: r.predict_on_batch(x)) for mode, r in runners.items()},
                                    repeats)
    timed = {mode: round(ms, 2) for mode, ms in medians.items()}
    return faster_mode(timed), contents, timed


def export_model(name: str, weights_dir: Path | None = None, quantization: str = "auto") -> dict[str, Any]:
    """Convert, check and record one model (``quantization``: a mode of
    :data:`core.serving.runtime.QUANTIZATIONS`, or ``auto``: :func:`choose_quantization`); returns the
    card's new ``runtime`` entry."""
    weights_dir = weights_dir or config.WEIGHTS_DIR
    card = registry.model_card(name, weights_dir)
    if is_3d(card):
        raise ValueError(f"{name} is a 3D model: it runs on Keras, not exported to LiteRT")
    model = registry.load_keras_model(name, weights_dir)
    timing: dict[str, Any] = {}
    if quantization == "auto":
        batch = APP_BATCH.get(card.get("task") or "", 1)
        quantization, contents, timed = choose_quantization(model, batch)
        content = contents[quantization]
        timing = {"timed_ms": timed, "timed_batch": batch,
                  "chosen_by": f"auto: int8 only when at least {INT8_MIN_SPEEDUP:g}x faster than float32 here"}
    else:
        content = runtime.export_flatbuffer(model, quantization)
    x = probe_input(model)
    diff = largest_difference(runtime.LiteModel(content).predict_on_batch(x), model.predict_on_batch(x))
    limit = MAX_ABS_DIFF[quantization]
    if diff > limit:
        raise RuntimeError(f"{name}: the {quantization} LiteRT export differs from Keras by {diff:.2e} "
                           f"(> {limit:g}); not written")
    path = weights_dir / Path(card["file"]).with_suffix(".tflite").name
    path.write_bytes(content)
    entry = {"file": path.name, "format": runtime.QUANTIZATIONS[quantization], "quantization": quantization,
             "sha256": registry.file_sha256(path),
             "size_bytes": path.stat().st_size, "source_sha256": card["sha256"],
             "max_abs_diff_vs_keras": float(f"{diff:.3g}"), **timing, "command": COMMAND}
    with registry.editing_manifest(weights_dir) as manifest:
        manifest["models"][name]["runtime"] = entry
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="model names (default: shipped models and members)")
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default weights/)")
    parser.add_argument("--quantization", choices=["auto", *runtime.QUANTIZATIONS], default="auto",
                        help="auto: time both on this CPU, int8 only where clearly faster")
    args = parser.parse_args(argv)
    names = args.models or default_models(args.weights)
    skipped = [n for n in names if is_3d(registry.model_card(n, args.weights))]
    for name in skipped:
        print(f"{name}: skipped (a 3D model runs on Keras, not LiteRT)")
    names = [n for n in names if n not in skipped]
    for name in names:
        entry = export_model(name, args.weights, args.quantization)
        print(f"{name}: {entry['file']} ({entry['quantization']}) {entry['size_bytes'] / 2**20:.1f} MiB, "
              f"max |LiteRT - Keras| = {entry['max_abs_diff_vs_keras']:.1e}")
    print(f"RESULT exported={len(names)}")


if __name__ == "__main__":
    main()
