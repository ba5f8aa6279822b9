"""CPU benchmark of the slice pipeline against one ResNet50 forward pass.

    python -m core.bench [--repeats 20] [--sample NAME]

Times, warm (after two untimed runs), the median of ``--repeats`` runs of: reading the file,
the input guard, classification (four members + meta-learner), segmentation, measurement and
the whole pipeline; model loading; and, in the same process, one forward pass of
``keras.applications.ResNet50(weights=None)`` at 224×224 as a yardstick. Last line:
``RESULT pipeline_ms=... resnet50_ms=... ratio=... load_s=... peak_rss_mb=...``.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from typing import Callable

import numpy as np

from core import config


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resnet50_ms(repeats: int) -> float:
    """One warm ResNet50 (random weights) forward pass on a 224×224×3 image, in ms."""
    import keras

    model = keras.applications.ResNet50(weights=None)
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    return median_ms(lambda: model.predict_on_batch(x), repeats)


def default_sample() -> str:
    """A synthetic tumour slice from sample_data/ (so every stage, segmentation included, runs)."""
    import json

    files = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())["files"]
    slices = [f["name"] for f in files if f.get("kind") == "slice" and f.get("class") not in (None, "notumor")]
    return slices[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sample", default=None, help="file in sample_data/ (default: a synthetic tumour slice)")
    args = parser.parse_args(argv)

    from core.guard import check_slice
    from core.io import read_slice
    from core.morphology import measure_mask
    from core.pipeline import AnalysisOptions, Analyzer

    name = args.sample or default_sample()
    data = (config.SAMPLE_DIR / name).read_bytes()
    start = time.perf_counter()
    analyzer = Analyzer.load(warm_up=False)
    load_s = time.perf_counter() - start

    slice_ = read_slice(data, name)
    options = AnalysisOptions(segment_anyway=True)
    mask, _ = analyzer.segmenter.segment(slice_.image, slice_.spacing_mm)
    stages = {
        "read": median_ms(lambda: read_slice(data, name), args.repeats),
        "guard": median_ms(lambda: check_slice(slice_), args.repeats),
        "classify": median_ms(lambda: analyzer.classifier.predict([slice_.image]), args.repeats),
        "segment": median_ms(lambda: analyzer.segmenter.segment(slice_.image, slice_.spacing_mm), args.repeats),
        "measure": median_ms(lambda: measure_mask(mask, slice_.spacing_mm), args.repeats),
    }
    def whole_pipeline() -> None:
        read = read_slice(data, name)
        check_slice(read)
        analyzer.analyze(read, options)

    pipeline = median_ms(whole_pipeline, args.repeats)
    yardstick = resnet50_ms(args.repeats)

    print(f"sample {name} ({slice_.shape[1]}x{slice_.shape[0]}), {os.cpu_count()} CPU cores, "
          f"median of {args.repeats} warm runs")
    for stage, ms in stages.items():
        print(f"  {stage:10s} {ms:8.1f} ms")
    print(f"  {'pipeline':10s} {pipeline:8.1f} ms  (read, guard, classify, segment, measure)")
    print(f"  {'resnet50':10s} {yardstick:8.1f} ms  (keras.applications.ResNet50, weights=None, 1x224x224x3)")
    print(f"  model loading {load_s:.2f} s, peak RSS {peak_rss_mb():.0f} MB")
    print(f"RESULT pipeline_ms={pipeline:.1f} resnet50_ms={yardstick:.1f} ratio={pipeline / yardstick:.3f} "
          f"load_s={load_s:.2f} peak_rss_mb={peak_rss_mb():.0f}")


if __name__ == "__main__":
    main()
