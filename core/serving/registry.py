"""The shipped-model registry: ``weights/manifest.json`` holds one model card per model.

A card records how the model was made (architecture, input, classes, data and split, epochs,
configuration, the training command) and what it scored, plus the sha256 of its file, which is
checked before the file is loaded. Training CLIs write cards through :func:`record_model`;
:func:`render_model_cards` turns the manifest into ``weights/MODEL_CARDS.md`` for people.
Shipped files that are not models (the training-set hash index) are listed under ``files`` with
their sha256 too (:func:`record_file`) and checked the same way before use (:func:`verified_file`).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from core import config
from core.errors import ModelUnavailable

MANIFEST_NAME = "manifest.json"
log = logging.getLogger(__name__)


def manifest_path(weights_dir: Path | None = None) -> Path:
    return (weights_dir or config.WEIGHTS_DIR) / MANIFEST_NAME


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(weights_dir: Path | None = None) -> dict[str, Any]:
    """The manifest as a dict (``{"schema": 1, "models": {}}`` when there is none yet)."""
    path = manifest_path(weights_dir)
    if not path.is_file():
        return {"schema": 1, "models": {}}
    return json.loads(path.read_text())


def save_manifest(manifest: dict[str, Any], weights_dir: Path | None = None) -> None:
    path = manifest_path(weights_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def editing_manifest(weights_dir: Path | None = None) -> Iterator[dict[str, Any]]:
    """Read, let the caller change, and save the manifest under an exclusive lock, so two
    trainings that finish together cannot drop each other's card."""
    path = manifest_path(weights_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = load_manifest(weights_dir)
        yield manifest
        save_manifest(manifest, weights_dir)


def _listed(section: str, what: str, name: str, weights_dir: Path | None) -> dict[str, Any]:
    """Entry ``name`` of the manifest's ``section``; :class:`ModelUnavailable` when it is not listed."""
    entries = load_manifest(weights_dir).get(section, {})
    if name not in entries:
        raise ModelUnavailable(f"{what} {name!r} is not in {manifest_path(weights_dir)}; known: {sorted(entries)}")
    return entries[name]


def _record(section: str, name: str, entry: dict[str, Any], weights_dir: Path | None) -> dict[str, Any]:
    """Store ``entry`` as ``section[name]``, stamping its file's sha256 and size; returns the stored entry."""
    weights_dir = weights_dir or config.WEIGHTS_DIR
    path = weights_dir / entry["file"]
    entry = {**entry, "sha256": file_sha256(path), "size_bytes": path.stat().st_size}
    with editing_manifest(weights_dir) as manifest:
        manifest.setdefault(section, {})[name] = entry
    return entry


def model_card(name: str, weights_dir: Path | None = None) -> dict[str, Any]:
    """The card of one model; :class:`ModelUnavailable` when the manifest does not list it."""
    return _listed("models", "model", name, weights_dir)


def record_model(name: str, card: dict[str, Any], weights_dir: Path | None = None) -> dict[str, Any]:
    """Add or replace a card, stamping the file's sha256 and size; returns the stored card."""
    return _record("models", name, card, weights_dir)


def update_metrics(name: str, key: str, metrics: dict[str, Any], weights_dir: Path | None = None) -> None:
    """Store ``metrics`` under ``card["metrics"][key]`` (for example ``"test_official"``)."""
    with editing_manifest(weights_dir) as manifest:
        if name not in manifest["models"]:
            raise ModelUnavailable(f"model {name!r} is not in the manifest")
        manifest["models"][name].setdefault("metrics", {})[key] = metrics


def _checked(path: Path, expected: str, what: str, remedy: str) -> Path:
    """``path`` when it exists and its sha256 is ``expected``; :class:`ModelUnavailable` otherwise."""
    if not path.is_file():
        raise ModelUnavailable(f"{what} is missing from {path.parent}")
    actual = file_sha256(path)
    if actual != expected:
        raise ModelUnavailable(f"{path.name} does not match its manifest checksum "
                               f"(expected {expected[:12]}…, found {actual[:12]}…); {remedy}")
    return path


def verified_path(name: str, weights_dir: Path | None = None) -> Path:
    """Path of a model's file after checking that it exists and matches its sha256."""
    weights_dir = weights_dir or config.WEIGHTS_DIR
    card = model_card(name, weights_dir)
    return _checked(weights_dir / card["file"], card["sha256"], f"weights file {card['file']} for {name!r}",
                    "retrain or restore it")


def load_keras_model(name: str, weights_dir: Path | None = None):
    """Load a checked model for inference (no optimizer, not compiled): its ``.keras`` file, or its
    float16 weights rebuilt on the card's architecture (:mod:`core.serving.compact_weights`)."""
    import keras  # local: importing the backend is slow, and the manifest tools do not need it

    path = verified_path(name, weights_dir)
    card = model_card(name, weights_dir)
    if card.get("format") is not None:
        from core.serving import compact_weights

        if card["format"] != compact_weights.FORMAT:
            raise ModelUnavailable(f"{name}: unknown weights format {card['format']!r}")
        return compact_weights.load_fp16(path, card["builder"])
    return keras.saving.load_model(path, compile=False)


def runtime_problem(name: str, weights_dir: Path | None = None) -> str | None:
    """Why a model's LiteRT flatbuffer cannot serve it (none exported, exported from an older
    Keras file, file missing, LiteRT not installed or not wanted), or ``None`` when it can."""
    from core.serving import runtime

    weights_dir = weights_dir or config.WEIGHTS_DIR
    card = model_card(name, weights_dir)
    exported = card.get("runtime")
    if not exported:
        return f"{name}: no LiteRT export (run python -m core.export_runtime)"
    if exported.get("source_sha256") != card.get("sha256"):
        return f"{name}: its LiteRT export comes from an older {card['file']}; re-run python -m core.export_runtime"
    if not (weights_dir / exported["file"]).is_file():
        return f"{name}: {exported['file']} is missing"
    if not runtime.litert_wanted():
        return f"{name}: {runtime.RUNTIME_ENV}=keras"
    if runtime.litert_interpreter_class() is None:
        return f"{name}: the ai-edge-litert package is not installed"
    return None


def runtime_sha256s(names: list[str], cards: dict[str, dict]) -> dict[str, str]:
    """``{model: sha256 of its LiteRT export}`` for those of ``names`` whose card records one."""
    return {n: cards[n]["runtime"]["sha256"] for n in names if (cards.get(n) or {}).get("runtime")}


def load_inference_model(name: str, keras_model: Any, weights_dir: Path | None = None) -> Any:
    """What runs ``name`` for inference: its checked LiteRT flatbuffer when that is current and
    usable (see :func:`runtime_problem`), else ``keras_model``. Both answer ``predict_on_batch``.

    A flatbuffer that fails its checksum raises :class:`ModelUnavailable`, like a weight file.
    """
    from core.serving import runtime

    problem = runtime_problem(name, weights_dir)
    if problem is not None:
        log.info("using the Keras model: %s", problem)
        return keras_model
    return runtime.LiteModel(verified_runtime_path(name, weights_dir).read_bytes())


def load_model_and_runner(name: str, weights_dir: Path | None = None) -> tuple[Any, Any]:
    """``(Keras model, what runs its inference)``: the Keras model serves gradients (Grad-CAM) and
    parameter counts; the runner is its LiteRT export when usable (:func:`load_inference_model`)."""
    model = load_keras_model(name, weights_dir)
    return model, load_inference_model(name, model, weights_dir)


@dataclass
class LoadedModel:
    """A manifest model in memory: its Keras ``model`` (gradients, parameter counts), its ``card``
    and ``runner``, what runs its inference: the LiteRT export when current, else the Keras model."""

    name: str
    model: Any
    card: dict
    runner: Any = None

    def __post_init__(self) -> None:
        if self.runner is None:
            self.runner = self.model

    @classmethod
    def load(cls, name: str, weights_dir: Path | None = None) -> Self:
        """The checksum-verified model ``name`` of ``weights_dir`` with its card and runner."""
        model, runner = load_model_and_runner(name, weights_dir)
        return cls(name, model, model_card(name, weights_dir), runner)

    @property
    def on_keras(self) -> bool:
        return self.runner is self.model

    @property
    def input_size(self) -> int:
        """Side of the square input (2D slice models; a BraTS card states its own input)."""
        return int(self.card["input"]["size"])

    @property
    def normalisation(self) -> str:
        """Intensity normalisation of a slice classifier's input (:data:`core.imaging.preprocess.NORMALISATIONS`)."""
        return str(self.card.get("input", {}).get("normalisation", "unit"))

    @property
    def sha256(self) -> str:
        """The weight file's sha256 from the card (what results and reports are stamped with)."""
        return str(self.card.get("sha256", ""))


def verified_runtime_path(name: str, weights_dir: Path | None = None) -> Path:
    """Path of a model's LiteRT flatbuffer after checking it against its card's sha256."""
    weights_dir = weights_dir or config.WEIGHTS_DIR
    exported = model_card(name, weights_dir)["runtime"]
    path = weights_dir / exported["file"]
    if file_sha256(path) != exported["sha256"]:
        raise ModelUnavailable(f"{exported['file']} does not match its manifest checksum; "
                               "re-run python -m core.export_runtime")
    return path


def file_entry(name: str, weights_dir: Path | None = None) -> dict[str, Any]:
    """The entry of a shipped data file that is not a model (``manifest["files"]``, e.g. the
    training-set hash index); :class:`ModelUnavailable` when the manifest does not list it."""
    return _listed("files", "file", name, weights_dir)


def record_file(name: str, entry: dict[str, Any], weights_dir: Path | None = None) -> dict[str, Any]:
    """Add or replace a data file's entry (``file``, ``description``, ``command``), stamping its sha256 and size."""
    return _record("files", name, entry, weights_dir)


def verified_file(name: str, weights_dir: Path | None = None) -> Path:
    """Path of a shipped data file after checking that it exists and matches its sha256 (as :func:`verified_path`)."""
    weights_dir = weights_dir or config.WEIGHTS_DIR
    entry = file_entry(name, weights_dir)
    return _checked(weights_dir / entry["file"], entry["sha256"], f"file {entry['file']} for {name!r}",
                    f"rebuild it: {entry.get('command')}")


def models_by(task: str | None = None, role: str | None = None, weights_dir: Path | None = None) -> dict[str, dict]:
    """Cards filtered by ``task`` (classification, segmentation, brats) and ``role``."""
    return {n: c for n, c in load_manifest(weights_dir)["models"].items()
            if (task is None or c.get("task") == task) and (role is None or c.get("role") == role)}


def card_dims(card: dict[str, Any]) -> int:
    """2 or 3: the kind of BraTS model a card describes (a card without ``dims`` is 2D)."""
    return int(card.get("dims", 2))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str))


def render_model_cards(weights_dir: Path | None = None) -> str:
    """Markdown model cards for every model in the manifest (written to MODEL_CARDS.md)."""
    manifest = load_manifest(weights_dir)
    out = ["# Model cards", "", "Generated from `weights/manifest.json` by `python -m core.registry`.",
           "All models were trained from scratch by this project's code (no pretrained weights).", ""]
    for name, card in manifest["models"].items():
        out += [f"## {name}", "", card.get("description", ""), "", "| field | value |", "| --- | --- |"]
        for key in ("task", "role", "architecture", "file", "sha256", "size_bytes", "params", "input",
                    "classes", "data", "split", "epochs", "backend", "trained_at", "training_command",
                    "initialised_from", "postprocessing", "runtime", "format", "fp16_max_output_difference",
                    "tta", "metrics_command"):
            if key in card:
                value = card[key]
                if isinstance(value, (dict, list)):
                    value = json.dumps(value)
                out.append(f"| {key} | {str(value).replace('|', '/')} |")
        for split, metrics in card.get("metrics", {}).items():
            shown = {k: v for k, v in metrics.items()
                     if _scalar(v) or (isinstance(v, dict) and v and all(_scalar(x) for x in v.values()))}
            out.append(f"| metrics: {split} | {json.dumps(shown)} |")
        out.append("")
    return "\n".join(out)


def promote(name: str, source: Path, weights_dir: Path | None = None, role: str | None = None,
            fp16: bool = False) -> dict[str, Any]:
    """Copy a model trained into another folder (e.g. a GPU run's ``--out``) into ``weights_dir``:
    its file and training log, and its card with ``promoted_from`` naming the source folder
    (and ``role`` replacing the card's, e.g. ``comparison`` for a model offered beside the shipped one).
    ``fp16``: store a segmenter's weights in float16 instead (:mod:`core.serving.compact_weights`; half
    the size of a float32 ``.keras`` file too large for ``weights/``).

    The previous card's LiteRT export is dropped (re-export with ``python -m core.export_runtime``).
    """
    import shutil

    weights_dir = weights_dir or config.WEIGHTS_DIR
    card = model_card(name, source)
    verified_path(name, source)
    if fp16:
        from core.serving import compact_weights

        target = weights_dir / (Path(card["file"]).name.split(".")[0] + compact_weights.SUFFIX)
        channels, classes = card["input"]["channels"], card["classes"]
        builder = compact_weights.segmenter_builder(
            card, len(channels) if isinstance(channels, list) else int(channels), len(classes))
        window = int(card["input"].get("window", 0)) or int(card["input"].get("size", 64))
        probe = (window,) * (3 if card.get("dims") == 3 else 2) + (builder["kwargs"]["channels"],)
        card = {**card, **compact_weights.convert(source / card["file"], target, builder, probe), "file": target.name}
    else:
        shutil.copy2(source / card["file"], weights_dir / card["file"])
    if card.get("log") and (source / card["log"]).is_file():
        (weights_dir / card["log"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / card["log"], weights_dir / card["log"])
    card = {k: v for k, v in card.items() if k not in ("sha256", "size_bytes", "runtime")}
    if role is not None:
        card["role"] = role
    return record_model(name, {**card, "promoted_from": str(source)}, weights_dir)


def main(argv: list[str] | None = None) -> None:
    """``python -m core.registry``: verify every checksum and rewrite MODEL_CARDS.md;
    ``python -m core.registry promote NAME --from DIR``: copy a model trained elsewhere in first."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m core.registry", description=main.__doc__)
    sub = p.add_subparsers(dest="command")
    promote_args = sub.add_parser("promote", help="copy a model (file, log, card) from another weights folder")
    promote_args.add_argument("name")
    promote_args.add_argument("--from", dest="source", type=Path, required=True)
    promote_args.add_argument("--role", default=None, help="role in this manifest (default: the card's)")
    promote_args.add_argument("--fp16", action="store_true",
                              help="store a segmenter's weights in float16 (half the size; core.serving.compact_weights)")
    args = p.parse_args(argv)
    if args.command == "promote":
        card = promote(args.name, args.source, role=args.role, fp16=args.fp16)
        print(f"promoted {args.name} from {args.source} (sha256 {card['sha256'][:12]})")
    manifest = load_manifest()
    for name in manifest["models"]:
        verified_path(name)
        if "runtime" in manifest["models"][name]:
            verified_runtime_path(name)
        print(f"ok {name}")
    for name in manifest.get("files", {}):
        verified_file(name)
        print(f"ok {name}")
    (config.WEIGHTS_DIR / "MODEL_CARDS.md").write_text(render_model_cards())
    print(f"RESULT models={len(manifest['models'])}")


if __name__ == "__main__":
    main()
