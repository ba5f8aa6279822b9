"""Fitting the input guard (core.train.guard_stats, ``python -m core.guard fit``) on a small synthetic set."""
from __future__ import annotations

import json

from synthetic_brains import brain
from synthetic_images import write_png

from core.train.guard_stats import main
from core.trust.guard import GuardStats, check_slice
from core.readers.slice import read_slice_file


def test_fit_writes_stats_that_accept_its_slices_and_record_the_command(tmp_path, capsys):
    for i in range(48):
        write_png(tmp_path / "Training" / ("glioma", "notumor")[i % 2] / f"tr_{i:02d}.png", brain(100 + i))
    for i in range(6):
        write_png(tmp_path / "Testing" / "glioma" / f"te_{i}.png", brain(200 + i))
    out = tmp_path / "w" / "guard_stats.json"
    assert main(["fit", "--train", str(tmp_path / "Training"), "--test", str(tmp_path / "Testing"),
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("wrote guard_stats.json: limit ")
    assert lines[-1].startswith("RESULT n_train=48 test_false_refusal_rate=") and "n_non_mri=" in lines[-1]
    info = json.loads(out.read_text())["info"]
    assert info["command"] == "python -m core.guard fit" and info["fitted_on"] == "brain_mri_4class/Training"
    assert info["n_test"] == 6 and info["non_mri"]["n"] >= 150
    stats = GuardStats.load(out)
    assert check_slice(read_slice_file(tmp_path / "Training" / "glioma" / "tr_00.png"), stats).score is not None
