"""core.bench runs end to end on the shipped models and prints its RESULT line (figures, not targets)."""
from __future__ import annotations

import re

import pytest


def test_bench_prints_every_stage_and_a_consistent_result_line(capsys):
    from core import bench

    bench.main(["--repeats", "1", "--batch", "3"])
    out = capsys.readouterr().out
    assert re.search(r"^\s+batch of 3 synthetic slices: [\d.]+ s", out, re.M)
    for stage in ("read", "guard", "classify", "segment", "measure", "pipeline", "on Keras", "+ trust", "resnet50"):
        assert re.search(rf"^\s+{re.escape(stage)}\s+[\d.]+ ms", out, re.M), stage
    last = out.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    values = dict(pair.split("=") for pair in last.split()[1:])
    assert set(values) == {"pipeline_ms", "resnet50_ms", "ratio", "load_s", "peak_rss_mb", "with_explanations_ms",
                           "keras_pipeline_ms"}
    numbers = {k: float(v) for k, v in values.items()}
    assert all(v > 0 for v in numbers.values())
    assert numbers["ratio"] == pytest.approx(numbers["pipeline_ms"] / numbers["resnet50_ms"], abs=2e-3)
