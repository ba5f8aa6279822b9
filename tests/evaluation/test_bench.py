"""core.evaluation.bench runs end to end on the shipped models and prints its RESULT line (figures, not targets)."""
from __future__ import annotations

import re

import pytest


@pytest.mark.slow
def test_bench_prints_every_stage_and_a_consistent_result_line(capsys):
    from core.evaluation import bench

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


@pytest.mark.slow
def test_cold_start_reports_server_start_to_first_result(capsys):
    """``--cold``: a real `streamlit run` on a loopback port until healthy, then a fresh process's model load and
    first analysis of the default real example; the figures add up and the server is gone afterwards."""
    from core.evaluation import bench

    bench.main(["--cold", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "cold start, server to result" in out
    values = {k: float(v) for k, v in (pair.split("=") for pair in out.strip().splitlines()[-1].split()[1:])}
    assert {"cold_start_s", "server_ready_s", "first_result_s", "load_s", "first_analysis_s", "warm_ms"} <= set(values)
    assert 0 < values["server_ready_s"] < 120 and values["load_s"] > 0 and values["warm_ms"] > 0
    assert values["cold_start_s"] == pytest.approx(values["server_ready_s"] + values["first_result_s"], abs=2e-3)
    assert values["first_result_s"] == pytest.approx(values["imports_s"] + values["load_s"]
                                                     + values["first_analysis_s"], abs=2e-3)
