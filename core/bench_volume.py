"""Time the BraTS segmentation of one full-size case on this machine's CPU.

    python -m core.bench_volume [--case DIR] [--shape 240 240 155] [--stand-in] [--repeat N]

The case is, by default, the synthetic sample (``sample_data/synthetic_brats/SYNTH_0001``)
resampled onto the BraTS grid (240x240x155 voxels of 1 mm), so the brain spans a realistic part
of the field of view; ``--case`` times a case folder as it is instead. The model is the shipped
``unet2d_brats`` when it is present; otherwise (or with ``--stand-in``) an untrained network of
the same architecture, which times the work faithfully but whose labels mean nothing.

Timed (``case_s``): what the page does after a click, i.e. normalisation, the axial sweep and
post-processing (:meth:`core.brats_model.VolumeSegmenter.segment`), first call, so graph
tracing is included. Reading the case and loading the model are reported on their own lines.
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


def full_size_case(shape: tuple[int, int, int]) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[float, float, float]]:
    """The synthetic sample resampled to ``shape`` (linear for images, nearest for labels)."""
    from core.volume import read_case_folder

    case = read_case_folder(config.SAMPLE_DIR / SAMPLE_CASE)
    factors = [t / s for t, s in zip(shape, case.shape)]
    images = {k: ndimage.zoom(v, factors, order=1) for k, v in case.images.items()}
    labels = ndimage.zoom(case.labels, factors, order=0)
    return images, labels, (1.0, 1.0, 1.0)


def folder_case(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None, tuple[float, float, float]]:
    from core.volume import read_case_folder

    case = read_case_folder(path)
    return case.images, case.labels, case.spacing_mm


def stand_in_segmenter(reason: str):
    """An untrained network of the shipped architecture (timing only)."""
    from core.brats_model import MODALITIES, VolumeSegmenter
    from core.models.segmenters import build_segmenter

    try:
        from core.registry import model_card

        shape = {k: model_card("unet2d_brats")["config"][k] for k in STAND_IN}
    except Exception:  # no card yet: the architecture the lead trains (base 12, depth 4)
        shape = dict(STAND_IN)
    model = build_segmenter("unet", input_size=None, channels=len(MODALITIES), num_classes=4, **shape)
    print(f"model: untrained stand-in, unet base={shape['base']} depth={shape['depth']} "
          f"({model.count_params():,} parameters) — {reason}")
    return VolumeSegmenter(model, {"postprocessing_rules": {}}, "stand-in (untrained)", "-")


def shipped_or_stand_in(force_stand_in: bool):
    from core.brats_model import VolumeSegmenter, model_problem

    problem = "requested with --stand-in" if force_stand_in else model_problem()
    if problem:
        return stand_in_segmenter(problem), False
    segmenter = VolumeSegmenter.load()
    print(f"model: {segmenter.name} (sha256 {segmenter.sha256[:12]}…, {segmenter.model.count_params():,} parameters)")
    return segmenter, True


def region_dice(pred: np.ndarray, truth: np.ndarray) -> str:
    from core.metrics import dice

    return " ".join(f"{r}={dice(np.isin(pred, v), np.isin(truth, v)):.3f}" for r, v in config.BRATS_REGIONS.items())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m core.bench_volume", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", type=Path, default=None, help="a BraTS case folder to time as it is")
    p.add_argument("--shape", type=int, nargs=3, default=BRATS_GRID, help="grid of the resampled synthetic case")
    p.add_argument("--stand-in", action="store_true", help="time an untrained twin even if the model exists")
    p.add_argument("--repeat", type=int, default=1, help="segment the case this many times (first is reported)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    started = time.perf_counter()
    images, truth, spacing = folder_case(args.case) if args.case else full_size_case(tuple(args.shape))
    shape = next(iter(images.values())).shape
    source = args.case.name if args.case else f"synthetic sample resampled to {'x'.join(map(str, shape))}"
    print(f"case: {source}, {np.prod(shape):,} voxels of {'x'.join(f'{s:g}' for s in spacing)} mm, "
          f"{next(iter(images.values())).dtype} (prepared in {time.perf_counter() - started:.1f} s)")
    print(f"cpu: {os.cpu_count()} logical cores")
    loaded = time.perf_counter()
    segmenter, shipped = shipped_or_stand_in(args.stand_in)
    print(f"model load: {time.perf_counter() - loaded:.1f} s")
    times = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        pred = segmenter.segment(images, spacing)
        times.append(time.perf_counter() - t0)
    print("segment: " + ", ".join(f"{t:.1f} s" for t in times))
    if shipped and truth is not None:
        print(f"dice vs truth: {region_dice(pred, truth)}")
    line = f"RESULT case_s={times[0]:.1f} voxels={int(np.prod(shape))}"
    print(line)
    return line


if __name__ == "__main__":
    main()
