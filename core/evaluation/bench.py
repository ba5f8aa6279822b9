"""CPU benchmark of the slice pipeline against one ResNet50 forward pass.

    python -m core.bench [--repeats 20] [--sample NAME] [--models all|NAME ...] [--latency-json OUT] [--batch N]
    python -m core.bench --cold [--repeats 5]

Times, warm (after two untimed runs), the median of ``--repeats`` runs of: reading the file,
the input guard, classification (four members + meta-learner), segmentation, measurement and
the whole pipeline; model loading; and, in the same process, one forward pass of
``keras.applications.ResNet50(weights=None)`` at 224×224 as a yardstick. The whole pipeline and
the yardstick are timed in alternation, so drift of a shared machine cancels in their ratio. Last line:
``RESULT pipeline_ms=... resnet50_ms=... ratio=... load_s=... peak_rss_mb=... with_explanations_ms=...
keras_pipeline_ms=...`` (``with_explanations``: the Analyse page's full call, adding Grad-CAM of every
member and the training-set look-up; ``keras_pipeline``: the pipeline with every network run by
Keras instead of its LiteRT export).

``--batch N`` also times the Batch page's run over N synthetic slices (guard on, segmentation
forced, no Grad-CAM), once, before the RESULT line.

``--models`` also times each named model (``all``: every model of the comparison,
:func:`core.evaluation.comparison.planned_models` plus the manifest) on one preprocessed image, batch 1, and
merges the results into ``--latency-json`` (default ``weights/eval/latency.json``). A model
whose weights are not here is timed as its untrained architecture, built by the same builder
at the same input size (weights do not change the compute); the entry says so.

``--cold`` measures the first run instead: it starts ``streamlit run streamlit_app.py`` headless on a
free loopback port (127.0.0.1 only) and times it until the server answers its health check; then, in
a fresh Python process (as a new server process would), it times the imports, the model load
(:meth:`Analyzer.load`, which the app starts in the background on the first page view) and the
first analysis of the Analyse page's default input (the first bundled real example, Grad-CAM and
the training-set look-up included), then the median of ``--repeats`` warm analyses. Every step is
bounded in time. Last line: ``RESULT cold_start_s=... server_ready_s=... imports_s=... load_s=...
first_analysis_s=... first_result_s=... warm_ms=...`` where ``cold_start_s`` (server start to first
result, *Analyse* pressed as the page opens) = ``server_ready_s`` + ``first_result_s``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import config
from core.data.examples import bundled
from core.errors import ModelUnavailable
from core.evaluation import comparison
from core.evaluation.bench_load import streamlit_server
from core.evaluation.jsonsafe import json_text
from core.imaging.morphology import measure_mask
from core.readers.slice import read_slice
from core.serving import registry
from core.serving.timing import interleaved_median_ms, median_ms
from core.slices.batch import BatchItem, run_batch
from core.slices.classify import Classifier, Member
from core.slices.pipeline import AnalysisOptions, Analyzer
from core.slices.segment import Segmenter
from core.trust.guard import check_slice


#: In-plane side of a BraTS volume: the size a fully convolutional BraTS model sees per axial slice.
BRATS_SLICE_SIDE = 240
#: Window side timed for a 3D BraTS model whose card names none.
STAND_IN_WINDOW_3D = 96


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resnet50_forward() -> Callable[[], object]:
    """One ResNet50 (random weights, Keras) forward pass on a 224×224×3 image: the yardstick."""
    import keras  # deferred: loads TensorFlow, which `python -m core.bench --help` does not need

    model = keras.applications.ResNet50(weights=None)
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    return lambda: model.predict_on_batch(x)


def _forward_ms(runner: Any, shape: tuple[int, ...], repeats: int, batch: int = 1) -> float:
    """One warm ``predict_on_batch`` of a Keras model or a :class:`core.serving.runtime.LiteModel`, in ms."""
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    return median_ms(lambda: runner.predict_on_batch(x), repeats)


def _shipped_ensemble_ms(weights_dir: Path | None, repeats: int) -> dict[str, Any]:
    """The app's own ensemble call on one preprocessed image (members with their test-time flips,
    then the meta-learner): on Keras (fused members) like every model of the comparison, and as
    the app runs it, on the members' LiteRT exports."""
    def timed(classifier: Classifier) -> float:
        x = {s: np.random.default_rng(0).random((1, s, s), dtype=np.float32) for s in classifier.sizes()}

        def run() -> None:
            probs = classifier.probabilities_from_inputs(x)
            classifier.ensemble_probabilities(probs)

        return median_ms(run, repeats)

    app = Classifier.load(weights_dir)
    size = min(m.input_size for m in app.members)
    return {"latency_ms": round(timed(keras_classifier(app)), 2),
            "litert_ms": round(timed(app), 2) if not any(m.on_keras for m in app.members) else None,
            "tta": app.ensemble.member_tta, "input": f"1x{size}x{size}x1"}


def _architecture(name: str, spec: Any) -> Any:
    """The untrained model a planned entry would train (same builder, input size and width)."""
    # deferred: the model builders load TensorFlow/Keras
    if spec.task == "classification":
        from core.models.classifiers import build_classifier

        return build_classifier(spec.architecture, spec.input_size)
    from core.models.segmenters import build_segmenter

    return build_segmenter(spec.architecture, **spec.builder_kwargs)


def model_latency(name: str, repeats: int = 10, weights_dir: Path | None = None,
                  known: dict[str, dict] | None = None) -> dict[str, Any]:
    """CPU latency (median ms, batch 1, warm) and parameters of one model of the comparison.

    Classifiers: one preprocessed image at the model's input size, with the comparison's
    test-time augmentation (:func:`core.evaluation.comparison.protocol_tta`; ``hflip`` = the image and its
    mirror in one batch of 2). 2D segmenters: one forward pass. The shipped stacking ensemble:
    the app's own call (fused members with their flips, then the meta-learner); other
    ensembles: the sum of their members. BraTS models: one pass of the network, i.e. one
    240×240 axial slice of four modalities (2D) or one sliding window of the card's side (3D). Trained weights are used when their file is here and verified; otherwise the
    untrained architecture of a planned model is timed. ``known`` memoises models already timed.
    """
    known = {} if known is None else known
    if name not in known:
        known[name] = _measure(name, repeats, weights_dir, known)
    return known[name]


def _sum_of_members(members: list[str], repeats: int, weights_dir: Path | None, known: dict, params: Any,
                    sha256: str | None) -> dict[str, Any]:
    parts = [model_latency(m, repeats, weights_dir, known) for m in members]
    if not parts or any(p.get("latency_ms") is None for p in parts):
        return {"latency_ms": None, "source": "members unavailable"}
    sources = ", ".join(sorted({p["source"] for p in parts}))
    ttas = {p.get("tta", "none") for p in parts}
    lite = [p.get("litert_ms") for p in parts]
    return {"latency_ms": round(sum(p["latency_ms"] for p in parts), 2),
            "litert_ms": round(sum(lite), 2) if None not in lite else None, "params": params,
            "input": parts[0]["input"], "tta": ttas.pop() if len(ttas) == 1 else "mixed",
            "source": f"sum of members ({sources})", "sha256": sha256,
            "runtime_sha256": {k: v for p in parts for k, v in (p.get("runtime_sha256") or {}).items()}}


def _measure(name: str, repeats: int, weights_dir: Path | None, known: dict) -> dict[str, Any]:
    """:func:`model_latency` of one model, not memoised."""
    cards = registry.load_manifest(weights_dir)["models"]
    card = cards.get(name)
    spec = comparison.planned(name)
    if name == "stacking_ensemble" and card is not None:
        try:
            return {**_shipped_ensemble_ms(weights_dir, repeats), "params": card.get("params"),
                    "source": "trained weights (the app's ensemble call)", "sha256": card.get("sha256"),
                    "runtime_sha256": registry.runtime_sha256s(card.get("members", []), cards)}
        except ModelUnavailable:
            pass
    if card is not None and card.get("members"):
        return _sum_of_members(card["members"], repeats, weights_dir, known, card.get("params"), card.get("sha256"))
    try:
        if card is None:
            raise ModelUnavailable(f"{name} is not in the manifest")
        model = registry.load_keras_model(name, weights_dir)
        source = "trained weights"
    except ModelUnavailable:
        if spec is not None and spec.members:
            return _sum_of_members(list(spec.members), repeats, weights_dir, known, None, None)
        if spec is None or spec.task not in ("classification", "segmentation"):
            return {"latency_ms": None, "source": "no weights and no architecture to time"}
        model, source = _architecture(name, spec), "untrained architecture"
    task = (card or {}).get("task") or (spec.task if spec else "")
    free_side = BRATS_SLICE_SIDE if task == "brats" else 128  # a 2D BraTS model runs on whole 240×240 axial slices
    if task == "brats" and len(model.inputs[0].shape) == 5:   # a 3D one on windows of its card's side
        free_side = int(((card or {}).get("input") or {}).get("window", STAND_IN_WINDOW_3D))
    shape = tuple(int(d) if d is not None else free_side for d in model.inputs[0].shape[1:])
    # classifiers: the comparison's protocol; a 2D segmenter: its card's own (the app applies it)
    tta = comparison.protocol_tta() if task == "classification" else str((card or {}).get("tta", "none"))
    batch = 2 if tta == "hflip" else 1
    ms = _forward_ms(model, shape, repeats, batch)
    runner = registry.load_inference_model(name, model, weights_dir) if source == "trained weights" else model
    litert_ms = None if runner is model else _forward_ms(runner, shape, repeats, batch)
    params = int(model.count_params())
    del model, runner
    import keras  # deferred: importing keras loads TensorFlow (already loaded here by the model above)

    keras.backend.clear_session()  # free the graph before timing the next (possibly large) model
    return {"latency_ms": round(ms, 2), "litert_ms": None if litert_ms is None else round(litert_ms, 2),
            "params": params, "input": "x".join(map(str, (1, *shape))), "tta": tta, "source": source,
            "sha256": card.get("sha256") if source == "trained weights" else None,
            "runtime_sha256": registry.runtime_sha256s([name], cards) if litert_ms is not None else {}}


def machine_facts() -> dict[str, Any]:
    """Where latencies were measured: CPU count, architecture and the load while measuring."""
    return {"cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor() or None,
            "load_average_1min": round(os.getloadavg()[0], 2), "batch": 1,
            "note": "median of warm runs, batch 1, on this machine's CPU while other jobs may run; "
                    "compare models measured together, not across machines"}


def write_latencies(names: list[str], out: Path, repeats: int = 10, weights_dir: Path | None = None) -> dict:
    """Time ``names`` and merge them into the JSON at ``out`` (other models' entries are kept)."""
    data = json.loads(out.read_text()) if out.is_file() else {"schema": 1, "models": {}}
    # entries not being re-timed stay valid: an ensemble's sum reuses its members' entries
    measured: dict[str, dict] = {n: {k: v for k, v in e.items() if k != "machine"}
                                 for n, e in data["models"].items() if n not in names}
    for name in names:
        entry = {**model_latency(name, repeats, weights_dir, measured), "machine": machine_facts()}
        data["models"][name] = entry
        lite = entry.get("litert_ms")
        print(f"  {name:24s} {entry['latency_ms'] if entry['latency_ms'] is not None else '-':>8} ms on Keras, "
              f"{lite if lite is not None else '-':>8} ms on LiteRT  ({entry['source']})", flush=True)
    data["models"] = dict(sorted(data["models"].items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json_text(data, digits=None))
    return data


def batch_seconds(analyzer: Any, n: int) -> float:
    """Wall time of the Batch page's run (:func:`core.slices.batch.run_batch`) over ``n`` synthetic sample slices."""
    samples = [p.read_bytes() for p in sorted(config.SAMPLE_DIR.glob("*.png"))]
    items = [BatchItem(f"slice_{i:04d}.png", samples[i % len(samples)]) for i in range(n)]
    start = time.perf_counter()
    run_batch(items, analyzer, AnalysisOptions(segment_anyway=True, gradcam=False))
    return time.perf_counter() - start


def keras_classifier(classifier: Any) -> Any:
    """The same loaded ensemble with every member run by its Keras model (fused into one call)."""
    return Classifier([Member(m.name, m.model, m.card) for m in classifier.members], classifier.ensemble,
                      classifier.ensemble_card)


def keras_twin(analyzer: Any) -> Any:
    """The same loaded models with every network run by Keras (for the bench's comparison line)."""
    s = analyzer.segmenter
    return Analyzer(keras_classifier(analyzer.classifier), Segmenter(s.name, s.model, s.card), analyzer.hash_index)


def default_sample() -> str:
    """A synthetic tumour slice from sample_data/ (so every stage, segmentation included, runs)."""
    files = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())["files"]
    slices = [f["name"] for f in files if f.get("kind") == "slice" and f.get("class") not in (None, "notumor")]
    return slices[0]


#: What the fresh process of ``--cold`` runs: imports, model load, first and warm analyses (JSON on stdout).
_FIRST_RESULT = r"""
import json, statistics, sys, time
start = time.perf_counter()
from core import config
from core.readers.slice import read_slice
from core.slices.pipeline import AnalysisOptions, Analyzer
imported = time.perf_counter()
analyzer = Analyzer.load()
loaded = time.perf_counter()
path, repeats = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
slice_ = read_slice(data, path)
analyzer.analyze(slice_, AnalysisOptions())
first = time.perf_counter()
warm = []
for _ in range(repeats):
    t = time.perf_counter()
    analyzer.analyze(read_slice(data, path), AnalysisOptions())
    warm.append((time.perf_counter() - t) * 1000)
print(json.dumps({"imports_s": imported - start, "load_s": loaded - imported, "first_analysis_s": first - loaded,
                  "warm_ms": statistics.median(warm) if warm else None}))
"""


def server_ready_seconds(timeout: float = 120.0) -> float:
    """Seconds from ``streamlit run streamlit_app.py`` (headless, loopback only, no model preload) to a
    healthy server; the server is stopped afterwards. Raises ``TimeoutError`` past ``timeout``."""
    start = time.perf_counter()
    with streamlit_server(Path(os.devnull), timeout, preload=False):
        return time.perf_counter() - start


def default_input() -> Path:
    """The Analyse page's default input: the first bundled real example (else a synthetic tumour slice)."""
    found = bundled()
    return config.SAMPLE_DIR / (found[0].file if found else default_sample())


def cold_start(repeats: int = 5, timeout: float = 600.0) -> dict[str, float]:
    """Server start to healthy, then a fresh process's imports, model load, first and warm analyses."""
    ready = server_ready_seconds(min(timeout, 120.0))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _FIRST_RESULT, str(default_input()), str(repeats)],
                          cwd=config.REPO_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                          capture_output=True, text=True, timeout=timeout, check=True)
    wall = time.perf_counter() - start
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    first = figures["imports_s"] + figures["load_s"] + figures["first_analysis_s"]
    return {"cold_start_s": ready + first, "server_ready_s": ready, "first_result_s": first,
            "process_wall_s": wall, **figures}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sample", default=None, help="file in sample_data/ (default: a synthetic tumour slice)")
    parser.add_argument("--models", nargs="*", default=None,
                        help="also time these models one by one ('all': every model of the comparison)")
    parser.add_argument("--batch", type=int, default=0, help="also time a batch of this many synthetic slices")
    parser.add_argument("--latency-json", type=Path, default=None,
                        help="where --models writes its latencies (default weights/eval/latency.json)")
    parser.add_argument("--cold", action="store_true",
                        help="time the first run instead: server start to healthy, model load, first result")
    args = parser.parse_args(argv)
    if args.cold:
        figures = cold_start(args.repeats)
        print(f"cold start on {os.cpu_count()} CPU cores, input {default_input().name}:")
        print(f"  server start to healthy        {figures['server_ready_s']:6.1f} s  (streamlit run, headless, loopback)")
        print(f"  imports in a fresh process     {figures['imports_s']:6.1f} s")
        print(f"  model load                     {figures['load_s']:6.1f} s  (the app starts it on the first page view)")
        print(f"  first analysis                 {figures['first_analysis_s']:6.1f} s  (Grad-CAM and training-set "
              "look-up included)")
        print(f"  cold start, server to result   {figures['cold_start_s']:6.1f} s  (Analyse pressed as the page opens)")
        if figures["warm_ms"] is not None:
            print(f"  warm analysis                  {figures['warm_ms']:6.0f} ms (median of {args.repeats})")
        print("RESULT " + " ".join(f"{k}={v:.3f}" if k != "warm_ms" else f"{k}={v:.1f}"
                                   for k, v in figures.items() if v is not None and k != "process_wall_s"))
        return
    if args.models is not None:
        names = comparison.all_model_names() if args.models in ([], ["all"]) else args.models
        print(f"per-model CPU latency, median of {args.repeats} warm runs, batch 1:")
        write_latencies(names, args.latency_json or comparison.eval_dir() / "latency.json", args.repeats)

    name = args.sample or default_sample()
    data = (config.SAMPLE_DIR / name).read_bytes()
    start = time.perf_counter()
    analyzer = Analyzer.load(warm_up=False)
    load_s = time.perf_counter() - start

    slice_ = read_slice(data, name)
    # The slice pipeline of the RESULT line: read, guard, classify, segment, measure. The Analyse page
    # also computes Grad-CAM of every member and the training-set look-up; timed separately below.
    core_options = AnalysisOptions(segment_anyway=True, gradcam=False, lookup_training=False)
    full_options = AnalysisOptions(segment_anyway=True)
    mask, _ = analyzer.segmenter.segment(slice_.image, slice_.spacing_mm)
    stages = {
        "read": median_ms(lambda: read_slice(data, name), args.repeats),
        "guard": median_ms(lambda: check_slice(slice_), args.repeats),
        "classify": median_ms(lambda: analyzer.classifier.predict([slice_.image]), args.repeats),
        "segment": median_ms(lambda: analyzer.segmenter.segment(slice_.image, slice_.spacing_mm), args.repeats),
        "measure": median_ms(lambda: measure_mask(mask, slice_.spacing_mm), args.repeats),
    }
    def whole_pipeline(options: AnalysisOptions, runs_on: Analyzer = analyzer) -> None:
        read = read_slice(data, name)
        check_slice(read)
        runs_on.analyze(read, options)

    twin = keras_twin(analyzer)
    timed = interleaved_median_ms({
        "pipeline": lambda: whole_pipeline(core_options),
        "resnet50": resnet50_forward(),
        "on Keras": lambda: whole_pipeline(core_options, twin),
        "+ trust": lambda: whole_pipeline(full_options),
    }, args.repeats)
    pipeline, yardstick, on_keras, with_explanations = (timed[k] for k in ("pipeline", "resnet50", "on Keras", "+ trust"))

    print(f"sample {name} ({slice_.shape[1]}x{slice_.shape[0]}), {os.cpu_count()} CPU cores, "
          f"median of {args.repeats} warm runs")
    for stage, ms in stages.items():
        print(f"  {stage:10s} {ms:8.1f} ms")
    runtimes = analyzer.model_runtimes()
    on_litert = sum(v == "LiteRT" for v in runtimes.values())
    print(f"  {'pipeline':10s} {pipeline:8.1f} ms  (read, guard, classify, segment, measure; "
          f"{on_litert} of {len(runtimes)} networks on their LiteRT export)")
    print(f"  {'on Keras':10s} {on_keras:8.1f} ms  (the same pipeline with every network run by Keras)")
    print(f"  {'+ trust':10s} {with_explanations:8.1f} ms  (the Analyse page's call: the pipeline plus Grad-CAM "
          "of every member and the training-set look-up)")
    print(f"  {'resnet50':10s} {yardstick:8.1f} ms  (keras.applications.ResNet50, weights=None, 1x224x224x3)")
    print(f"  model loading {load_s:.2f} s, peak RSS {peak_rss_mb():.0f} MB")
    if args.batch > 0:
        print(f"  batch of {args.batch} synthetic slices: {batch_seconds(analyzer, args.batch):.1f} s "
              "(guard on, segmentation forced, no Grad-CAM)")
    print(f"RESULT pipeline_ms={pipeline:.2f} resnet50_ms={yardstick:.2f} ratio={pipeline / yardstick:.3f} "
          f"load_s={load_s:.2f} peak_rss_mb={peak_rss_mb():.0f} with_explanations_ms={with_explanations:.1f} "
          f"keras_pipeline_ms={on_keras:.1f}")


if __name__ == "__main__":
    main()
