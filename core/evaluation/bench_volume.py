"""Time the BraTS segmentation of one full-size case on this machine's CPU.

    python -m core.bench_volume [--case DIR] [--shape 240 240 155] [--zoom F] [--repeat N]
                                [--model NAME] [--weights DIR]
                                [--stand-in] [--arch unet2d|unet3d] [--base B] [--depth D] [--window W]

The case is, by default, the synthetic sample (``sample_data/synthetic_brats/SYNTH_0001``)
resampled onto the BraTS grid (240x240x155 voxels of 1 mm), so the brain spans a realistic part
of the field of view; ``--case`` times a case folder as it is instead, or, with ``--shape`` and
``--zoom``, resampled by ``--zoom`` and centred (zero-padded or cut) in that grid. The model is
the one the manifest ships (:func:`core.volumes.brats_model.shipped_name`; ``--model`` names another,
``--weights`` another weights folder), 2D or 3D as its card says; when it is missing (or with
``--stand-in``) an untrained network of the same architecture, which times the work faithfully
but whose labels mean nothing. ``--arch``/``--base``/``--depth``/``--window``/``--overlap`` set
the stand-in's architecture (and imply ``--stand-in``), e.g. to time a 3D U-Net not trained yet.

Timed (``case_s``): what the page does after a click, i.e. normalisation, the network (the axial
sweep of a 2D model, the sliding window of a 3D one) and post-processing
(:meth:`core.volumes.brats_model.VolumeSegmenter.segment`), first call, so graph tracing is included.
The time of each progress step (a batch of slices or a 3D window) is reported too: the first
includes tracing. Reading the case and loading the model are reported on their own lines.
The last line is ``RESULT case_s=... voxels=...``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from core import config

SAMPLE_CASE = Path("synthetic_brats") / "SYNTH_0001"
BRATS_GRID = (240, 240, 155)
STAND_IN = {"base": 12, "depth": 4}
#: Window side of a 3D stand-in whose card gives none.
STAND_IN_WINDOW = 128


def full_size_case(shape: tuple[int, int, int]) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[float, float, float]]:
    """The synthetic sample resampled to ``shape`` (linear for images, nearest for labels)."""
    from core.volumes.case import read_case_folder

    case = read_case_folder(config.SAMPLE_DIR / SAMPLE_CASE)
    factors = [t / s for t, s in zip(shape, case.shape)]
    images = {k: ndimage.zoom(v, factors, order=1) for k, v in case.images.items()}
    labels = ndimage.zoom(case.labels, factors, order=0)
    return images, labels, (1.0, 1.0, 1.0)


def folder_case(path: Path, shape: tuple[int, int, int] | None = None, zoom: float = 1.0,
                ) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple[float, float, float]]:
    """A case folder as it is, or resampled by ``zoom`` and centred in a ``shape`` grid."""
    from core.volumes.case import read_case_folder

    case = read_case_folder(path)
    if shape is None:
        return case.images, case.labels, case.spacing_mm
    def fit(volume: np.ndarray, order: int) -> np.ndarray:
        return _centred(ndimage.zoom(volume, zoom, order=order) if zoom != 1 else volume, shape)

    images = {k: fit(v, 1) for k, v in case.images.items()}
    labels = None if case.labels is None else fit(case.labels, 0)
    return images, labels, tuple(s / zoom for s in case.spacing_mm)


def _centred(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``volume`` zero-padded or cut, centred, to ``shape``."""
    out = np.zeros(shape, dtype=volume.dtype)
    src, dst = [], []
    for n, m in zip(volume.shape, shape):
        k = min(n, m)
        src.append(slice((n - k) // 2, (n - k) // 2 + k))
        dst.append(slice((m - k) // 2, (m - k) // 2 + k))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def stand_in_shape(args: argparse.Namespace, card: dict) -> dict:
    """Architecture of the untrained stand-in: ``dims``, ``base``, ``depth`` (3D: ``window``,
    ``overlap``), from the options, else the model's card, else :data:`STAND_IN` (2D)."""
    from core.serving.registry import card_dims
    from core.volumes.brats_model import WINDOW_OVERLAP

    dims = {"unet2d": 2, "unet3d": 3}.get(args.arch, card_dims(card))
    same = card_dims(card) == dims
    config_ = card.get("config", {}) if same else {}
    shape = {"dims": dims, **{k: getattr(args, k) or config_.get(k, STAND_IN[k]) for k in STAND_IN}}
    if dims == 3:
        given = card.get("input", {}) if same else {}
        shape["window"] = args.window or given.get("window", STAND_IN_WINDOW)
        shape["overlap"] = args.overlap if args.overlap is not None else given.get("overlap", WINDOW_OVERLAP)
    return shape


def stand_in_segmenter(reason: str, shape: dict):
    """An untrained network of the given architecture (:func:`stand_in_shape`; timing only)."""
    from core.volumes.brats_model import MODALITIES, VolumeSegmenter
    from core.models.segmenters import build_segmenter

    card: dict = {"postprocessing_rules": {}, "sha256": "untrained"}
    kind = "unet"
    if shape["dims"] == 3:
        kind = "unet3d"
        card.update(dims=3, input={"window": shape["window"], "multiple": 2 ** shape["depth"],
                                   "overlap": shape["overlap"]})
    model = build_segmenter(kind, input_size=None, channels=len(MODALITIES), num_classes=4,
                            base=shape["base"], depth=shape["depth"])
    extra = f" window={shape['window']} overlap={shape['overlap']:g}" if shape["dims"] == 3 else ""
    print(f"model: untrained stand-in, {kind} base={shape['base']} depth={shape['depth']}{extra} "
          f"({model.count_params():,} parameters) — {reason}")
    return VolumeSegmenter("stand-in (untrained)", model, card)


def shipped_or_stand_in(args: argparse.Namespace):
    """``(segmenter, trained)``: the model named by ``args`` (default the shipped one), or a stand-in."""
    from core.volumes.brats_model import VolumeSegmenter, model_problem, shipped_name
    from core.errors import ModelUnavailable
    from core.serving.registry import model_card

    name = args.model or shipped_name(args.weights)
    try:
        card = model_card(name, args.weights)
    except ModelUnavailable:  # no card yet: the stand-in is STAND_IN (2D, base 12, depth 4)
        card = {}
    overridden = any(v is not None for v in (args.arch, args.base, args.depth, args.window, args.overlap))
    problem = ("requested with --stand-in" if args.stand_in else
               "architecture set on the command line" if overridden else model_problem(name, args.weights))
    if problem:
        return stand_in_segmenter(problem, stand_in_shape(args, card)), False
    segmenter = VolumeSegmenter.load(name, args.weights)
    print(f"model: {segmenter.name} ({segmenter.dims}D, sha256 {segmenter.sha256[:12]}…, "
          f"{segmenter.model.count_params():,} parameters)")
    return segmenter, True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m core.bench_volume", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", type=Path, default=None, help="a BraTS case folder to time (as it is unless --shape)")
    p.add_argument("--shape", type=int, nargs=3, default=None,
                   help="grid of the resampled case (default 240 240 155 for the synthetic sample)")
    p.add_argument("--zoom", type=float, default=1.0, help="with --case and --shape: resample the case by this factor")
    p.add_argument("--model", default=None, help="model name in the manifest (default: the shipped BraTS model)")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default weights/)")
    p.add_argument("--stand-in", action="store_true", help="time an untrained twin even if the model exists")
    p.add_argument("--arch", choices=("unet2d", "unet3d"), default=None, help="stand-in architecture")
    p.add_argument("--base", type=int, default=None, help="stand-in first level's filters")
    p.add_argument("--depth", type=int, default=None, help="stand-in down-sampling steps")
    p.add_argument("--window", type=int, default=None, help="3D stand-in window side")
    p.add_argument("--overlap", type=float, default=None, help="3D stand-in window overlap")
    p.add_argument("--repeat", type=int, default=1, help="segment the case this many times (first is reported)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.case:
        images, truth, spacing = folder_case(args.case, tuple(args.shape) if args.shape else None, args.zoom)
    else:
        images, truth, spacing = full_size_case(tuple(args.shape or BRATS_GRID))
    shape = next(iter(images.values())).shape
    grid = "x".join(map(str, shape))
    if args.case:
        source = args.case.name + (f" resampled x{args.zoom:g} into {grid}" if args.shape else "")
    else:
        source = f"synthetic sample resampled to {grid}"
    print(f"case: {source}, {np.prod(shape):,} voxels of {'x'.join(f'{s:g}' for s in spacing)} mm, "
          f"{next(iter(images.values())).dtype} (prepared in {time.perf_counter() - started:.1f} s)")
    print(f"cpu: {os.cpu_count()} logical cores")
    loaded = time.perf_counter()
    segmenter, shipped = shipped_or_stand_in(args)
    print(f"model load: {time.perf_counter() - loaded:.1f} s")
    times = []
    for _ in range(max(1, args.repeat)):
        steps = [time.perf_counter()]
        pred = segmenter.segment(images, spacing, progress=lambda _: steps.append(time.perf_counter()))
        times.append(time.perf_counter() - steps[0])
        step_s = np.diff(steps)
        if len(step_s) > 1:
            print(f"  {len(step_s)} {'windows' if segmenter.dims == 3 else 'slice batches'}: first "
                  f"{step_s[0]:.2f} s (with tracing), then median {np.median(step_s[1:]):.2f} s each")
    print("segment: " + ", ".join(f"{t:.1f} s" for t in times))
    if shipped and truth is not None:
        from core.volumes.regions import region_dice

        scores = region_dice(pred, truth)
        print("dice vs truth: " + " ".join(f"{region}={score:.3f}" for region, score in scores.items()))
    line = f"RESULT case_s={times[0]:.1f} voxels={int(np.prod(shape))}"
    print(line)
    return line


if __name__ == "__main__":
    main()
