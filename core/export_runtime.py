"""Export shipped Keras models to LiteRT flatbuffers for fast CPU inference.

    python -m core.export_runtime                      # every shipped model and ensemble member
    python -m core.export_runtime --models resunet     # just these

Each flatbuffer is written beside its Keras file (``weights/<name>.tflite``), checked against the
Keras model on random inputs, and recorded in the model's card under ``runtime`` with its sha256
and the sha256 of the Keras file it came from (a retrained model's old export is then ignored).
Run it again after retraining; ``python -m core.registry`` re-renders the model cards. The
converter is TensorFlow's: models trained on a GPU machine with JAX are exported here, on the
TensorFlow install, once their ``.keras`` files are back. 3D models (a card with ``"dims": 3``, the
3D BraTS U-Net) are skipped: they run on Keras (:meth:`core.brats_model.VolumeSegmenter.load`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from core import config, registry, runtime

#: Cards of these roles are exported by default: what the app runs, not comparison-only models.
DEFAULT_ROLES = ("ensemble_member", "shipped")
#: Exports whose outputs differ from Keras by more than this are refused.
MAX_ABS_DIFF = 1e-4
COMMAND = "python -m core.export_runtime"


def default_models(weights_dir: Path | None = None) -> list[str]:
    """Keras models of the default roles, in manifest order (3D models left out: :func:`is_3d`)."""
    return [name for name, card in registry.load_manifest(weights_dir)["models"].items()
            if card.get("role") in DEFAULT_ROLES and str(card.get("file", "")).endswith(".keras")
            and not is_3d(card)]


def is_3d(card: dict[str, Any]) -> bool:
    """A 3D model: not exported (it runs on Keras by a sliding window)."""
    from core.brats_model import card_dims

    return card_dims(card) == 3


def probe_input(model: Any, free_side: int = 64, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Random inputs in [0, 1] of the model's input shape (free spatial sides set to ``free_side``)."""
    shape = [batch] + [free_side if d is None else int(d) for d in model.input_shape[1:]]
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def largest_difference(a: Any, b: Any) -> float:
    """Largest absolute difference between two models' outputs (one array or a list of arrays)."""
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True))


def export_model(name: str, weights_dir: Path | None = None) -> dict[str, Any]:
    """Convert, check and record one model; returns the card's new ``runtime`` entry."""
    weights_dir = weights_dir or config.WEIGHTS_DIR
    card = registry.model_card(name, weights_dir)
    if is_3d(card):
        raise ValueError(f"{name} is a 3D model: it runs on Keras, not exported to LiteRT")
    model = registry.load_keras_model(name, weights_dir)
    content = runtime.export_flatbuffer(model)
    x = probe_input(model)
    diff = largest_difference(runtime.LiteModel(content).predict_on_batch(x), model.predict_on_batch(x))
    if diff > MAX_ABS_DIFF:
        raise RuntimeError(f"{name}: the LiteRT export differs from Keras by {diff:.2e} (> {MAX_ABS_DIFF:g}); not written")
    path = weights_dir / Path(card["file"]).with_suffix(".tflite").name
    path.write_bytes(content)
    entry = {"file": path.name, "format": runtime.RUNTIME_FORMAT, "sha256": registry.file_sha256(path),
             "size_bytes": path.stat().st_size, "source_sha256": card["sha256"],
             "max_abs_diff_vs_keras": float(f"{diff:.3g}"), "command": COMMAND}
    with registry.editing_manifest(weights_dir) as manifest:
        manifest["models"][name]["runtime"] = entry
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="model names (default: shipped models and members)")
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default weights/)")
    args = parser.parse_args(argv)
    names = args.models or default_models(args.weights)
    skipped = [n for n in names if is_3d(registry.model_card(n, args.weights))]
    for name in skipped:
        print(f"{name}: skipped (a 3D model runs on Keras, not LiteRT)")
    names = [n for n in names if n not in skipped]
    for name in names:
        entry = export_model(name, args.weights)
        print(f"{name}: {entry['file']} {entry['size_bytes'] / 2**20:.1f} MiB, "
              f"max |LiteRT - Keras| = {entry['max_abs_diff_vs_keras']:.1e}")
    print(f"RESULT exported={len(names)}")


if __name__ == "__main__":
    main()
