"""Fast CPU inference of shipped Keras models through LiteRT (TensorFlow Lite) with XNNPACK.

At batch size 1, Keras's ``predict_on_batch`` spends several milliseconds per call on dispatch, more
than the arithmetic of a compact CNN; the same network exported to a LiteRT flatbuffer and run by
the XNNPACK CPU delegate returns the same probabilities (differences ~1e-7) in a fraction of the
time. A ``dynamic_int8`` export also stores the weights as int8 and quantises activations on the
fly (XNNPACK's dynamically quantised kernels): outputs within ~1e-2 of Keras with the same held-out
accuracy and Dice (checked by the real-data tests), up to four times faster for plain
convolutions, slower for depthwise ones; :mod:`core.serving.export` picks per network by timing.
``python -m core.export_runtime`` writes the flatbuffers and records each one in its model's card;
:func:`core.serving.registry.load_inference_model` picks the flatbuffer when it is current and falls back
to the Keras file otherwise. Grad-CAM and training keep using the Keras models.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

#: Export modes and what a card's ``runtime.format`` says for each.
QUANTIZATIONS: dict[str, str] = {
    "float32": "LiteRT flatbuffer (float32), XNNPACK CPU delegate",
    "dynamic_int8": "LiteRT flatbuffer, dynamic-range int8 weights (float32 inputs and outputs), XNNPACK CPU delegate",
}
#: ``BTD_RUNTIME=keras`` forces the Keras models everywhere (for comparisons and debugging).
RUNTIME_ENV = "BTD_RUNTIME"


def litert_wanted() -> bool:
    """False when ``BTD_RUNTIME=keras`` asks for the Keras models."""
    return os.environ.get(RUNTIME_ENV, "litert").strip().lower() != "keras"


def litert_interpreter_class() -> type | None:
    """LiteRT's ``Interpreter`` class, or None when the ``ai-edge-litert`` package is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    return Interpreter


def cpu_threads() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def export_flatbuffer(model: Any, quantization: str = "float32") -> bytes:
    """A Keras model as a LiteRT flatbuffer (TensorFlow's converter; batch size stays free).

    ``quantization``: ``"float32"`` (Keras's numbers) or ``"dynamic_int8"`` (int8 weights,
    activations quantised per call; inputs and outputs stay float32).
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; known: {sorted(QUANTIZATIONS)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _output_order(name: str) -> tuple[int, str]:
    """Signature outputs are named ``output_0``, ``output_1``…: order them by number, not text."""
    stem, _, number = name.rpartition("_")
    return (int(number), stem) if number.isdigit() else (0, name)


def runtime_name(runner: Any) -> str:
    """What runs a model's inference, for people: ``"LiteRT"`` or ``"Keras"``."""
    return "LiteRT" if isinstance(runner, LiteModel) else "Keras"


class LiteModel:
    """A LiteRT flatbuffer behind the one method the project calls on Keras models.

    ``predict_on_batch(x)`` takes a batch of any size and returns the output array (a list when
    the model has several outputs), like Keras. One interpreter is not thread-safe, and Streamlit
    serves sessions from threads sharing cached models, so calls are serialised by a lock.
    """

    def __init__(self, content: bytes, threads: int | None = None):
        interpreter_class = litert_interpreter_class()
        if interpreter_class is None:
            raise RuntimeError("the ai-edge-litert package is not installed")
        self._interpreter = interpreter_class(model_content=content, num_threads=threads or cpu_threads())
        signatures = self._interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(f"expected one signature in the flatbuffer, found {sorted(signatures)}")
        (key, signature), = signatures.items()
        if len(signature["inputs"]) != 1:
            raise ValueError(f"expected one input, found {signature['inputs']}")
        self._input = signature["inputs"][0]
        self._outputs = sorted(signature["outputs"], key=_output_order)
        self._runner = self._interpreter.get_signature_runner(key)
        self._lock = threading.Lock()

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray | list[np.ndarray]:
        batch = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            result = self._runner(**{self._input: batch})
            outputs = [np.array(result[name]) for name in self._outputs]
        return outputs[0] if len(outputs) == 1 else outputs
