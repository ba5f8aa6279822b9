"""The shared inference path: the micro-batching queue, the result cache and the shared analyzer.

No test here asserts a duration: batching is forced by holding the worker on a gate while requests
queue up, and timeouts by a gate that is never opened in time.
"""
from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core import config
from core.readers.decoded import Slice
from core.readers.slice import read_slice_file
from core.slices.pipeline import AnalysisOptions
from core.slices.inference_queue import (ResultCache, ServingClosed, ServingQueue, ServingTimeout, SharedAnalyzer,
                                pixel_digest, result_key)


class Gated:
    """A batch function that records its batches and holds its first call until :attr:`gate` opens."""

    def __init__(self, fail_on: set[int] | None = None):
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[int]] = []
        self.fail_on = fail_on or set()

    def __call__(self, items: list[int]) -> list[int]:
        self.started.set()
        self.gate.wait(30)
        self.batches.append(list(items))
        if self.fail_on & set(items):
            raise ValueError(f"refused {sorted(self.fail_on & set(items))}")
        return [item * 10 for item in items]


def wait_until_queued(serving: ServingQueue, count: int) -> None:
    """Until ``count`` requests wait in the queue (a condition, not a duration)."""
    for _ in range(100_000):
        if serving._queue.qsize() >= count:
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"{count} requests never queued")


def submit_all(serving: ServingQueue, items: list[int], kind: str = "times_ten") -> list[object]:
    """Submit ``items`` from one thread each while the worker is held on its first request; each
    thread's result (or the exception it got)."""
    def ask(item: int) -> object:
        try:
            return serving.submit(kind, item, timeout=60)
        except Exception as err:  # noqa: BLE001 -- compared by the test
            return err

    with ThreadPoolExecutor(len(items)) as pool:
        futures = [pool.submit(ask, items[0])]
        handler = serving.handlers[kind]
        handler.started.wait(30)                         # the worker holds the first request
        futures += [pool.submit(ask, item) for item in items[1:]]
        wait_until_queued(serving, len(items) - 1)
        handler.gate.set()
        return [f.result() for f in futures]


# --------------------------------------------------------------------------- the queue

def test_concurrent_callers_each_get_their_own_result_in_batches():
    handler = Gated()
    serving = ServingQueue({"times_ten": handler}, max_batch=8, max_wait_s=0.002)
    items = list(range(1, 18))
    results = submit_all(serving, items)
    assert results == [i * 10 for i in items]
    assert sorted(i for batch in handler.batches for i in batch) == items           # each served once
    assert max(len(b) for b in handler.batches) == 8 and serving.stats["largest_batch"] == 8
    serving.close()


def test_an_error_reaches_only_the_caller_whose_input_caused_it():
    handler = Gated(fail_on={7})
    serving = ServingQueue({"times_ten": handler}, max_batch=16)
    items = [1, 5, 7, 9, 11]
    results = submit_all(serving, items)
    assert isinstance(results[2], ValueError) and "refused [7]" in str(results[2])
    assert [r for i, r in enumerate(results) if i != 2] == [10, 50, 90, 110]
    serving.close()


def test_a_batch_function_returning_the_wrong_number_of_results_is_an_error_for_its_callers():
    serving = ServingQueue({"short": lambda items: items[:-1]})
    with pytest.raises(RuntimeError, match="0 results for a batch of 1"):
        serving.submit("short", 3)
    serving.close()


def test_kinds_are_batched_apart_and_unknown_kinds_are_refused():
    seen: list[tuple[str, list[int]]] = []
    serving = ServingQueue({"a": lambda xs: seen.append(("a", xs)) or [x + 1 for x in xs],
                            "b": lambda xs: seen.append(("b", xs)) or [-x for x in xs]})
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda x: serving.submit("a" if x % 2 else "b", x), range(6)))
    assert got == [0, 2, -2, 4, -4, 6]
    assert all(all((x % 2 == 1) == (kind == "a") for x in xs) for kind, xs in seen)
    with pytest.raises(ValueError, match="unknown request kind"):
        serving.submit("c", 1)
    serving.close()


def test_a_caller_that_waits_too_long_gets_a_timeout_and_the_queue_goes_on():
    handler = Gated()
    serving = ServingQueue({"times_ten": handler})
    with pytest.raises(ServingTimeout, match="busy"):
        serving.submit("times_ten", 1, timeout=0.05)
    handler.gate.set()
    assert serving.submit("times_ten", 2, timeout=30) == 20
    serving.close()


def test_a_closed_queue_serves_what_it_holds_and_refuses_new_requests():
    serving = ServingQueue({"times_ten": lambda xs: [x * 10 for x in xs]})
    assert serving.submit("times_ten", 4) == 40
    serving.close()
    with pytest.raises(ServingClosed):
        serving.submit("times_ten", 5)


def test_queue_settings_are_checked():
    with pytest.raises(ValueError):
        ServingQueue({}, max_batch=0)


# --------------------------------------------------------------------------- the cache

def test_cache_returns_equal_but_independent_copies_and_forgets_the_oldest():
    cache = ResultCache(max_entries=2)
    value = {"mask": np.ones((4, 4), bool), "warnings": ["a"]}
    cache.put("k1", value)
    value["warnings"].append("changed after put")
    first, second = cache.get("k1"), cache.get("k1")
    assert first["warnings"] == ["a"] and first is not second and first["mask"] is not second["mask"]
    first["mask"][:] = False
    assert cache.get("k1")["mask"].all()
    cache.put("k2", 2)
    cache.get("k1")                                          # k1 is now the most recent: k2 goes first
    cache.put("k3", 3)
    assert cache.get("k2") is None and cache.get("k1") is not None and cache.get("k3") == 3
    assert len(cache) == 2 and cache.hits >= 4 and cache.misses == 1


def test_cache_is_bounded_by_the_bytes_of_its_arrays():
    cache = ResultCache(max_entries=10, max_bytes=1000)
    cache.put("big", np.zeros(2000, np.uint8))               # larger than the whole cache: not kept
    assert cache.get("big") is None
    cache.put("a", np.zeros(600, np.uint8))
    cache.put("b", np.zeros(600, np.uint8))                  # together over the bound: "a" goes
    assert cache.get("a") is None and cache.get("b") is not None


def test_result_key_depends_on_pixels_spacing_options_and_models():
    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    slice_ = Slice(image=image, spacing_mm=None, source_format="png", name="a.png")
    options, versions = AnalysisOptions(), {"m": "0" * 64}
    key = result_key(slice_, options, versions)
    assert key == result_key(dataclasses.replace(slice_, name="other name.png"), options, versions)
    assert key == result_key(slice_, dataclasses.replace(options, gradcam=False), versions)
    changed = image.copy()
    changed[0, 0] += 1
    assert key != result_key(dataclasses.replace(slice_, image=changed), options, versions)
    assert key != result_key(dataclasses.replace(slice_, spacing_mm=(0.5, 0.5)), options, versions)
    assert key != result_key(slice_, AnalysisOptions(segment_anyway=True), versions)
    assert key != result_key(slice_, options, {"m": "1" * 64})
    assert pixel_digest(image) != pixel_digest(image.astype(np.float64))
    # what the file states of its acquisition decides the caution: same pixels, other header, other key
    t1 = dataclasses.replace(slice_, source_format="dicom", name="a.dcm", metadata={"SeriesDescription": "AX T1"})
    flair = dataclasses.replace(t1, metadata={"SeriesDescription": "AX FLAIR"})
    assert len({key, result_key(t1, options, versions), result_key(flair, options, versions)}) == 3
    assert result_key(t1, options, versions) == result_key(dataclasses.replace(t1, name="b.dcm"), options, versions)


# --------------------------------------------------------------------------- the shared analyzer (shipped models)

def real_slices() -> list[Slice]:
    """The bundled real examples and their mirror images: 16 distinct inputs of three shapes."""
    from core.data.examples import bundled

    slices = [read_slice_file(config.SAMPLE_DIR / e.file) for e in bundled()]
    mirrored = [dataclasses.replace(s, image=np.ascontiguousarray(s.image[:, ::-1]), name=f"mirror_{s.name}")
                for s in slices]
    return slices + mirrored


@pytest.fixture(scope="module")
def shared(analyzer):
    serving = SharedAnalyzer(analyzer)
    yield serving
    serving.close()


def assert_same_result(got, expected) -> None:
    assert got.name == expected.name and got.decision == expected.decision
    assert got.probabilities == pytest.approx(expected.probabilities, abs=1e-5)
    for member, probs in expected.member_probabilities.items():
        assert got.member_probabilities[member] == pytest.approx(probs, abs=1e-5)
    assert got.acquisition == expected.acquisition and got.lesion_check == expected.lesion_check
    assert got.segmented == expected.segmented
    if expected.mask is not None:
        assert np.array_equal(got.mask, expected.mask)
        np.testing.assert_allclose(got.probability_map, expected.probability_map, atol=1e-4)


def test_concurrent_sessions_with_distinct_inputs_get_their_own_results(analyzer, shared):
    inputs = real_slices()
    options = AnalysisOptions(gradcam=False)
    expected = [analyzer.analyze(s, options) for s in inputs]
    with ThreadPoolExecutor(len(inputs)) as pool:
        got = list(pool.map(lambda s: shared.analyze(s, options), inputs))
    for result, reference in zip(got, expected):
        assert_same_result(result, reference)
    assert shared.serving.stats["requests"] >= 2 * len(inputs)        # classifier and more went through the queue


def test_identical_input_is_served_from_the_cache_as_an_independent_copy(shared):
    slice_ = real_slices()[0]
    options = AnalysisOptions(gradcam=False, segment_anyway=True)
    first = shared.analyze(slice_, options)
    hits = shared.results.hits
    again = shared.analyze(dataclasses.replace(slice_, name="renamed.jpg"), options)
    assert shared.results.hits == hits + 1 and "cache_hit_ms" in again.timings_ms
    assert again is not first and again.name == "renamed.jpg" and first.name == slice_.name
    assert all(entry.name == "" for entry, _ in shared.results._entries.values()), "the cache keeps no file name"
    assert again.probabilities == first.probabilities and np.array_equal(again.mask, first.mask)
    again.warnings.insert(0, "only this session's")
    again.mask[:] = False
    third = shared.analyze(slice_, options)
    assert third.warnings == first.warnings and np.array_equal(third.mask, first.mask)
    misses = shared.results.misses
    shared.analyze(slice_, AnalysisOptions(gradcam=False, spacing_override_mm=(0.5, 0.5)))
    assert shared.results.misses == misses + 1, "other options are another analysis"


def test_sessions_asking_for_the_same_input_at_once_share_one_computation(analyzer, monkeypatch):
    serving = SharedAnalyzer(analyzer)
    computed = []
    analyze = serving.routed.analyze
    monkeypatch.setattr(serving.routed, "analyze", lambda s, o: computed.append(s.name) or analyze(s, o))
    slice_ = real_slices()[5]
    names = [f"session_{i}.jpg" for i in range(8)]
    with ThreadPoolExecutor(len(names)) as pool:
        got = list(pool.map(lambda n: serving.analyze(dataclasses.replace(slice_, name=n),
                                                      AnalysisOptions(gradcam=False)), names))
    serving.close()
    assert len(computed) == 1, "one session computes, the others wait for it (or find it cached)"
    assert [r.name for r in got] == names and len({id(r) for r in got}) == len(names)
    assert all(r.probabilities == got[0].probabilities for r in got)


def test_gradcam_only_on_request_through_the_shared_worker(analyzer, shared):
    slice_ = real_slices()[2]
    result = shared.analyze(slice_, AnalysisOptions(gradcam=False))
    assert result.gradcam is None
    explained = shared.explain(slice_, result)
    assert explained is result and result.gradcam_class == result.decision
    assert set(result.gradcam) == {"average", *result.member_votes}
    reference = analyzer.explain(slice_, analyzer.analyze(slice_, AnalysisOptions(gradcam=False)))
    for name, heat in reference.gradcam.items():
        np.testing.assert_allclose(result.gradcam[name], heat, atol=1e-4)
    other = shared.analyze(slice_, AnalysisOptions(gradcam=False))             # cached result, no maps
    assert other.gradcam is None
    shared.explain(slice_, other)                                               # cached maps, a copy
    assert other.gradcam["average"] is not result.gradcam["average"]
    np.testing.assert_array_equal(other.gradcam["average"], result.gradcam["average"])
    with_maps = shared.analyze(slice_, AnalysisOptions(gradcam=True))
    assert set(with_maps.gradcam) == set(result.gradcam)


def test_shared_analyzer_passes_the_rest_through(analyzer, shared):
    assert shared.classifier is analyzer.classifier and shared.model_versions() == analyzer.model_versions()
    assert shared.routed.model_runtimes() == analyzer.model_runtimes()
