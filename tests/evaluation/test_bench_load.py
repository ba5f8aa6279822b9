"""The load benchmark's arguments, inputs and report (no server, no browser)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.evaluation.bench_load import MAX_SESSIONS, Round, distinct_inputs, format_table, parse_args, result_line


def test_arguments_default_to_the_issue_counts_and_are_bounded():
    args = parse_args([])
    assert args.sessions == [1, 5, 10, 20] and args.timeout == 120 and not args.same_input
    assert parse_args(["--sessions", "2", "3", "--timeout", "30"]).sessions == [2, 3]
    for bad in (["--sessions", "0"], ["--sessions", str(MAX_SESSIONS + 1)], ["--timeout", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_inputs_are_distinct_pngs_of_the_examples():
    examples = [("a", np.full((8, 8), 50, np.uint8)), ("b", np.full((6, 9), 90, np.uint8))]
    uploads = distinct_inputs(examples, 5, start=300)
    names = [n for n, _ in uploads]
    assert len(set(names)) == 5 and names[0] == "load_300_a.png" and names[1] == "load_301_b.png"
    pixels = [np.asarray(Image.open(io.BytesIO(data))) for _, data in uploads]
    assert pixels[1].shape == (6, 9) and (pixels[0][1:] == 50).all()
    assert len({p.tobytes() for p in pixels}) == 5
    assert (pixels[0][0, 0], pixels[0][0, 1]) == (300 % 256, 300 // 256)


def test_report_table_and_result_line():
    rounds = [Round("cold", 1, [9.0], [9.5], 900.0), Round("warm", 1, [0.4], [1.0], 910.0),
              Round("warm", 1, [0.6], [1.2], 910.0), Round("n5", 5, [1.0, 2.0, 3.0, None, 5.0], [2.0] * 5, 1000.4,
                                                         ["TimeoutError: late"])]
    assert rounds[3].ok == 4 and rounds[3].median_s == 2.5 and rounds[3].max_s == 5.0
    table = format_table(rounds)
    assert "| n5 | 5 | 4/5 | 2.50 | 5.00 | 2.00 | 1000 | 0.0 / 0.0 |" in table
    line = result_line(rounds)
    assert line == "RESULT warm_median_s=0.50 warm_max_s=0.60 n5_median_s=2.50 n5_max_s=5.00 n5_ok=4/5 n5_peak_mb=1000"
    assert result_line([Round("n1", 1, [None])]).endswith("n1_median_s=- n1_max_s=- n1_ok=0/1 n1_peak_mb=0")
