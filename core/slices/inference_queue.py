"""One inference path for every session of a server: a micro-batching queue and a result cache.

Streamlit runs each session's script in its own thread, and all of them share the cached models.
Left alone, twenty sessions pressing *Analyse* at once run twenty pipelines side by side, each
network with its own threads, all competing for the same cores. Here instead:

* :class:`ServingQueue`: callers in any thread :meth:`~ServingQueue.submit` one request and
  block; **one worker thread** takes the oldest request plus whatever else arrives within
  ``max_wait_s`` (up to ``max_batch``), runs each kind of request as **one stacked batch**, and
  hands every caller its own result (or its own error: a batch that fails is retried request by
  request, so one bad input never fails another session). Only this thread runs the networks.
* :class:`ResultCache`: a bounded LRU keyed by the sha256 of the slice's pixels, the analysis
  options and the model versions; it stores and returns deep copies, so sessions never share
  (or mutate) one result object. It keeps no file name: a hit takes the caller's own. Sessions asking for the
  same key at the same time wait for the first one's result instead of computing it again.
* :class:`SharedAnalyzer`: a drop-in for :class:`core.slices.pipeline.Analyzer` (``analyze``,
  ``explain``, and every other attribute passed through) whose models are routed through the
  queue. What is batched across sessions: the four classifier members with the stacking
  ensemble, the sequence/plane recogniser, the ResUNet segmenter (also the cross-check's
  evidence when it is the ResUNet) and the lesion detector. Grad-CAM goes through the same
  worker one request at a time (it is asked for one slice at a time, when someone opens it).
  The training-set look-up, post-processing and measurements stay in the caller's thread.

No Streamlit here: ``ui/resources.py`` builds one :class:`SharedAnalyzer` per server.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.slices.acquisition import AcquisitionModel
from core.slices.classify import Classifier
from core.readers.decoded import Slice
from core.slices.lesion import LesionDetector
from core.slices.lesion_check import CrossCheck
from core.slices.pipeline import AnalysisOptions, Analyzer, SliceResult
from core.slices.segment import Segmenter

#: Requests one round of the worker takes at most, and how long it waits for more after the first.
MAX_BATCH = 8
MAX_WAIT_S = 0.004
#: Longest a caller waits for its result before :class:`ServingTimeout`.
TIMEOUT_S = 120.0
#: Bounds of each result cache: entries, and bytes of the arrays they hold.
CACHE_ENTRIES = 64
CACHE_BYTES = 256 * 2**20

BatchFunction = Callable[[list[Any]], Sequence[Any]]


class ServingTimeout(TimeoutError):
    """A request waited longer than its timeout for the shared inference worker (the server is busy)."""


class ServingClosed(RuntimeError):
    """A request was submitted to a queue that has been closed."""


# --------------------------------------------------------------------------- the queue

@dataclass(eq=False)
class _Request:
    kind: str
    item: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    abandoned: bool = False

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


_STOP = object()


class ServingQueue:
    """Requests from many threads, served in batches by one worker thread.

    ``handlers`` maps a request kind to a function that takes a list of items and returns one
    result per item, in order. :meth:`submit` blocks until its own result is ready.
    """

    def __init__(self, handlers: Mapping[str, BatchFunction], max_batch: int = MAX_BATCH,
                 max_wait_s: float = MAX_WAIT_S, name: str = "btd-serving"):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self.handlers = dict(handlers)
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()

    def submit(self, kind: str, item: Any, timeout: float | None = TIMEOUT_S) -> Any:
        """``handlers[kind]`` applied to ``item`` (in a batch with others); raises what it raised for
        this item, :class:`ServingTimeout` after ``timeout`` seconds, :class:`ServingClosed` once closed."""
        if kind not in self.handlers:
            raise ValueError(f"unknown request kind {kind!r}; known: {sorted(self.handlers)}")
        request = _Request(kind, item)
        with self._lock:
            if self._closed:
                raise ServingClosed("the inference queue is closed")
            self._queue.put(request)
        if not request.done.wait(timeout):
            request.abandoned = True                  # the worker skips it if it has not started it
            if not request.done.is_set():
                raise ServingTimeout(f"no result within {timeout:g} s: the server is busy; try again in a moment")
        if request.error is not None:
            raise request.error
        return request.result

    def close(self, timeout: float | None = 10.0) -> None:
        """Serve what is queued, then stop the worker; later :meth:`submit` calls raise :class:`ServingClosed`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join(timeout)

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._collect()
            self._run(batch)

    def _collect(self) -> tuple[list[_Request], bool]:
        """The oldest request and those arriving within ``max_wait_s`` (at most ``max_batch``)."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.abandoned]
        for kind in dict.fromkeys(r.kind for r in live):
            group = [r for r in live if r.kind == kind]
            self.stats["batches"] += 1
            self.stats["requests"] += len(group)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(group))
            self._run_group(self.handlers[kind], group)

    def _run_group(self, handler: BatchFunction, group: list[_Request]) -> None:
        """One batch call; when it fails, each request alone, so that an error reaches only its own caller."""
        try:
            outputs = list(handler([r.item for r in group]))
            if len(outputs) != len(group):
                raise RuntimeError(f"{len(outputs)} results for a batch of {len(group)} requests")
        except Exception as err:  # noqa: BLE001 -- handed to the caller(s) it belongs to
            if len(group) == 1:
                group[0].finish(error=err)
            else:
                for request in group:
                    self._run_group(handler, [request])
            return
        for request, output in zip(group, outputs):
            request.finish(output)


# --------------------------------------------------------------------------- the cache

def _array_bytes(value: Any) -> int:
    """Bytes of the numpy arrays inside ``value`` (dataclasses, dicts, lists and tuples are searched)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_array_bytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(_array_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_array_bytes(v) for v in value)
    return 0


class ResultCache:
    """A thread-safe LRU of deep copies, bounded by entries and by the bytes of the arrays held."""

    def __init__(self, max_entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.hits = self.misses = 0
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Any | None:
        """A copy of the value stored under ``key`` (and it becomes the most recent), or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
        return copy.deepcopy(entry[0])

    def put(self, key: str, value: Any) -> None:
        """Store a copy of ``value``; the least recently used entries go when a bound is passed."""
        size = _array_bytes(value)
        if self.max_entries < 1 or size > self.max_bytes:
            return
        stored = copy.deepcopy(value)
        with self._lock:
            old = self._entries.pop(key, None)
            self._bytes -= old[1] if old else 0
            self._entries[key] = (stored, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped


def pixel_digest(image: np.ndarray) -> str:
    """sha256 of an image's pixels, dtype and shape."""
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def result_key(slice_: Slice, options: AnalysisOptions, versions: Mapping[str, str]) -> str:
    """What decides an analysis: the pixels, the file's spacing and what it states of its sequence and plane
    (:mod:`core.slices.stated`), the options (Grad-CAM aside) and the models."""
    from core.slices.stated import stated_acquisition

    decided = repr((slice_.spacing_mm, stated_acquisition(slice_), dataclasses.replace(options, gradcam=False),
                    sorted(versions.items())))
    return hashlib.sha256(f"{pixel_digest(slice_.image)}|{decided}".encode()).hexdigest()


# --------------------------------------------------------------------------- batch functions

def classify_rows(classifier: Any, images: list[np.ndarray]) -> list[tuple[dict[str, np.ndarray], np.ndarray,
                                                                             np.ndarray]]:
    """Per image: members' probabilities ``{name: (K,)}``, calibrated and uncalibrated ensemble ``(K,)``."""
    members, calibrated, raw = classifier.predict_detailed(images)
    return [({n: p[i] for n, p in members.items()}, calibrated[i], raw[i]) for i in range(len(images))]


def segment_probabilities(segmenter: Any, images: list[np.ndarray]) -> list[np.ndarray]:
    """Per image, the segmenter's tumour probability on the image's own grid (one stacked model call)."""
    from core.slices.segment import to_model_input, to_original_grid

    prepared = [to_model_input(image, segmenter.input_size) for image in images]
    probs = segmenter.predict_inputs(np.stack([p[0] for p in prepared]))
    return [to_original_grid(p, geometry) for p, (_, geometry) in zip(probs, prepared)]


def recognise_all(acquisition: Any, images: list[np.ndarray]) -> list[Any]:
    """Per image, the sequence/plane recognition (one stacked model call)."""
    from core.imaging.preprocess import classifier_crop

    return acquisition.recognise_crops(np.stack([classifier_crop(image, acquisition.input_size) for image in images]))


def detect_all(detector: Any, images: list[np.ndarray]) -> list[Any]:
    """Per image, the lesion detector's :class:`core.slices.lesion.Detection` (one stacked model call)."""
    from core.slices.lesion import Detection, evidence_of, strongest_region
    from core.imaging.preprocess import classifier_crop_and_box, to_image_grid

    crops = [classifier_crop_and_box(image, detector.input_size) for image in images]
    probs = detector.probabilities_of_crops(np.stack([crop for crop, _ in crops]))
    out = []
    for image, (_, box), prob in zip(images, crops, probs):
        shape = np.asarray(image).shape[:2]
        region = to_image_grid(strongest_region(prob).astype(np.float32), shape, box) >= 0.5
        out.append(Detection(to_image_grid(prob, shape, box), region, evidence_of(prob)))
    return out


# --------------------------------------------------------------------------- models routed through the queue

class _Routed:
    """A model whose inference goes through the queue; every other attribute is the model's own."""

    def __init__(self, model: Any, serving: ServingQueue, kind: str, timeout_s: float):
        self._model, self._serving, self._kind, self._timeout_s = model, serving, kind, timeout_s

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def _ask(self, item: Any) -> Any:
        return self._serving.submit(self._kind, item, self._timeout_s)


class RoutedClassifier(_Routed):
    """:class:`core.slices.classify.Classifier` whose prediction is batched with other sessions'."""

    def predict_detailed(self, images: list[np.ndarray] | np.ndarray
                         ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        rows = [self._ask(np.asarray(image)) for image in images]
        members = {name: np.stack([r[0][name] for r in rows]) for name in rows[0][0]}
        return members, np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])

    def predict(self, images: list[np.ndarray] | np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        members, calibrated, _ = self.predict_detailed(images)
        return members, calibrated


class RoutedSegmenter(_Routed):
    """:class:`core.slices.segment.Segmenter` whose model call is batched; post-processing runs in the caller's thread."""

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        return self._ask(np.asarray(image))

    def segment(self, image: np.ndarray, spacing_mm: tuple[float, float] | None,
                rules: Any = None, prob: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        from core.slices.segment import postprocess

        prob = self.probabilities(image) if prob is None else prob
        return postprocess(prob, spacing_mm, rules or self._model.rules), prob


class RoutedAcquisition(_Routed):
    """:class:`core.slices.acquisition.AcquisitionModel` whose recognition is batched."""

    def recognise(self, image: np.ndarray) -> Any:
        return self._ask(np.asarray(image))


class RoutedDetector(_Routed):
    """:class:`core.slices.lesion.LesionDetector` whose detection is batched."""

    def detect(self, image: np.ndarray) -> Any:
        return self._ask(np.asarray(image))


# --------------------------------------------------------------------------- the shared analyzer

class SharedAnalyzer:
    """An :class:`Analyzer` for every session of a process: batched models, cached results, Grad-CAM on request.

    ``analyze`` and ``explain`` behave as the analyzer's (results are the caller's own objects);
    any other attribute is the wrapped analyzer's.
    """

    def __init__(self, analyzer: Analyzer, max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S,
                 cache_entries: int = CACHE_ENTRIES, timeout_s: float = TIMEOUT_S):
        self.analyzer, self.timeout_s = analyzer, timeout_s
        self.versions = analyzer.model_versions()
        self.results = ResultCache(cache_entries)
        self.explanations = ResultCache(cache_entries)
        self._pending: dict[str, threading.Event] = {}          # keys being computed now, by another session
        self._pending_lock = threading.Lock()
        self.serving = ServingQueue(self._handlers(analyzer), max_batch, max_wait_s)
        self.routed = self._routed(analyzer)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "analyzer":
            raise AttributeError(name)
        return getattr(self.analyzer, name)

    @staticmethod
    def _handlers(analyzer: Analyzer) -> dict[str, BatchFunction]:
        handlers: dict[str, BatchFunction] = {
            "classify": lambda images: classify_rows(analyzer.classifier, images),
            "segment": lambda images: segment_probabilities(analyzer.segmenter, images),
            "explain": lambda items: [analyzer.explain(slice_, result) for slice_, result in items]}
        if analyzer.acquisition is not None:
            handlers["acquisition"] = lambda images: recognise_all(analyzer.acquisition, images)
        check = analyzer.cross_check
        if check is not None and check.detector is not None:
            handlers["detect"] = lambda images: detect_all(check.detector, images)
        return handlers

    def _routed(self, analyzer: Analyzer) -> Analyzer:
        """The same pipeline with the shipped models' inference routed through the queue."""
        def route(model: Any, cls: type[_Routed], kind: str, shipped: type) -> Any:
            """Only the shipped model classes are routed; stand-ins (tests) run as given."""
            return cls(model, self.serving, kind, self.timeout_s) if isinstance(model, shipped) else model

        segmenter = route(analyzer.segmenter, RoutedSegmenter, "segment", Segmenter)
        check = analyzer.cross_check
        if check is not None:
            evidence = segmenter if check.segmenter is analyzer.segmenter else check.segmenter
            detector = route(check.detector, RoutedDetector, "detect", LesionDetector)
            check = CrossCheck(check.rule, check.model, detector=detector, segmenter=evidence)
        return Analyzer(route(analyzer.classifier, RoutedClassifier, "classify", Classifier), segmenter,
                        analyzer.hash_index, route(analyzer.acquisition, RoutedAcquisition, "acquisition",
                                                   AcquisitionModel), check)

    def analyze(self, slice_: Slice, options: AnalysisOptions | None = None) -> SliceResult:
        """The analyzer's result for ``slice_``: from the cache when these pixels, spacing, options and
        models were analysed before, or are being analysed for another session right now (a copy, under the
        caller's file name); else computed with batched models."""
        options = options or AnalysisOptions()
        t0 = time.perf_counter()
        key = result_key(slice_, options, self.versions)
        result = self.results.get(key)
        cached = result is not None
        if not cached:
            result, cached = self._compute_once(key, slice_, options)
        if cached:
            result.name = slice_.name
            elapsed = round((time.perf_counter() - t0) * 1000, 2)
            result.timings_ms = {"cache_hit_ms": elapsed, "total_ms": elapsed}
        return self.explain(slice_, result) if options.gradcam else result

    def _compute_once(self, key: str, slice_: Slice, options: AnalysisOptions) -> tuple[SliceResult, bool]:
        """``(result, from the cache)``: computed here and cached, or, when another session is computing the
        same ``key`` right now, a copy of its result once it is cached (computed here after all when that
        computation left nothing in the cache: it failed, or its result was too large to keep)."""
        with self._pending_lock:
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = threading.Event()
        if not owner:
            pending.wait(self.timeout_s)
            copied = self.results.get(key)
            return (copied, True) if copied is not None else (self._compute(slice_, options), False)
        try:
            result = self._compute(slice_, options)
            self.results.put(key, dataclasses.replace(result, name=""))      # the cache keeps no file name
        finally:
            with self._pending_lock:
                self._pending.pop(key, None)
            pending.set()
        return result, False

    def _compute(self, slice_: Slice, options: AnalysisOptions) -> SliceResult:
        return self.routed.analyze(slice_, dataclasses.replace(options, gradcam=False))

    def explain(self, slice_: Slice, result: SliceResult) -> SliceResult:
        """:meth:`Analyzer.explain` through the shared worker, remembered per pixels and explained class."""
        if self.analyzer.explainer is None or (result.gradcam and result.gradcam_class == result.decision):
            return result
        key = hashlib.sha256(f"{pixel_digest(slice_.image)}|{result.decision}|{sorted(self.versions.items())}"
                             .encode()).hexdigest()
        cached = self.explanations.get(key)
        if cached is not None:
            result.gradcam, result.gradcam_layers = cached
            result.gradcam_class = result.decision
            return result
        self.serving.submit("explain", (slice_, result), self.timeout_s)
        self.explanations.put(key, (result.gradcam, result.gradcam_layers))
        return result

    def close(self) -> None:
        self.serving.close()
