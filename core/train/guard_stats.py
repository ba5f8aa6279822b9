"""Fitting the input guard's statistics on the training slices: ``python -m core.guard fit``.

Reads every slice of ``brain_mri_4class/Training``, fits :class:`core.trust.guard.GuardStats` and
writes ``weights/guard_stats.json``; measures the false-refusal rate on ``Testing`` and the refusal
rate on the non-MRI set of :mod:`core.trust.nonmri`, and stores both in the file's ``info``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from core import config
from core.data.datasets import list_classification
from core.readers.slice import read_slice_file
from core.trust import guard
from core.serving import registry
from core.trust.guard import LIMIT_QUANTILE, STATS_COMMAND, STATS_NAME, STATS_PATH, GuardStats, check_slice, describe, feature_vector
from core.trust.nonmri import non_mri_set, to_slice


def _folder_features(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw feature vectors, thumbnails and relative names of a class-folder dataset."""
    listing = list_classification(root)
    rows, thumbs = [], []
    for i, path in enumerate(listing.paths):
        f, thumb = describe(read_slice_file(path).image)
        rows.append(feature_vector(f))
        thumbs.append(thumb)
        if (i + 1) % 1000 == 0:
            print(f"  {root.name}: {i + 1}/{len(listing.paths)}", file=sys.stderr, flush=True)
    return np.array(rows), np.array(thumbs), [path.relative_to(root).as_posix() for path in listing.paths]


def evaluate_non_mri(stats: GuardStats) -> dict:
    """Refusal rate of :func:`check_slice` on :func:`core.trust.nonmri.non_mri_set`, overall and per group."""
    items = non_mri_set()
    refused = {}
    for item in items:
        refused[item.name] = (item.group, not check_slice(to_slice(item), stats).accepted)
    groups = sorted({g for g, _ in refused.values()})
    return {
        "n": len(items),
        "refusal_rate": round(float(np.mean([r for _, r in refused.values()])), 4),
        "per_group": {g: round(float(np.mean([r for gg, r in refused.values() if gg == g])), 4) for g in groups},
        "accepted": sorted(n for n, (_, r) in refused.items() if not r),
    }


def fit_command(train: Path, test: Path | None, out: Path) -> dict:
    """Fit on ``train``, measure on ``test`` and on the non-MRI set, write ``out``; returns the numbers."""
    t0 = time.perf_counter()
    x, thumbs, _ = _folder_features(train)
    stats = GuardStats.fit(x, thumbs)
    info: dict = {"fitted_on": f"brain_mri_4class/{train.name}", "n_train": len(x),
                  "limit_quantile": LIMIT_QUANTILE, "command": "python -m core.guard fit"}
    if test is not None:
        xt, tt, names = _folder_features(test)
        scores = stats.score(xt, tt)
        # the rules (size, colour, blank) never refuse these 8-bit grey slices; the score decides
        refused = scores > stats.limit
        info.update({"test_set": f"brain_mri_4class/{test.name}", "n_test": len(xt),
                     "test_false_refusal_rate": round(float(refused.mean()), 4),
                     "test_false_refusals": [n for n, r in zip(names, refused) if r]})
    info["non_mri"] = evaluate_non_mri(stats)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    stats.info = info
    out.parent.mkdir(parents=True, exist_ok=True)
    stats.save(out)
    if out.resolve() == STATS_PATH.resolve():
        registry.record_file(STATS_NAME, {"file": out.name, "command": STATS_COMMAND,
                                          "description": "Input-guard statistics (numbers only) fitted on the training slices",
                                          "data": info["fitted_on"]}, out.parent)
    return info


def main(argv: list[str] | None = None) -> int:
    """``python -m core.guard fit`` (see :mod:`core.trust.guard`)."""
    parser = argparse.ArgumentParser(prog="python -m core.guard", description=guard.__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    fp = sub.add_parser("fit", help="fit the OOD statistics on the training slices and measure them")
    fp.add_argument("--train", type=Path, default=None, help="class-folder Training set")
    fp.add_argument("--test", type=Path, default=None, help="class-folder Testing set (false-refusal rate)")
    fp.add_argument("--out", type=Path, default=STATS_PATH)
    args = parser.parse_args(argv)
    root = config.data_dir()
    train = args.train or (root / "brain_mri_4class" / "Training" if root else None)
    test = args.test or (root / "brain_mri_4class" / "Testing" if root else None)
    if train is None or not Path(train).is_dir():
        raise SystemExit("error: training folder not found; pass --train or set BTD_DATA_DIR")
    info = fit_command(Path(train), Path(test) if test and Path(test).is_dir() else None, args.out)
    print(f"wrote {args.out.name}: limit {GuardStats.load(args.out).limit:.2f}")
    print(f"non-MRI refusal per group: {info['non_mri']['per_group']}")
    print(f"non-MRI accepted: {info['non_mri']['accepted']}")
    print(f"RESULT n_train={info['n_train']} test_false_refusal_rate={info.get('test_false_refusal_rate')} "
          f"non_mri_refusal_rate={info['non_mri']['refusal_rate']} n_non_mri={info['non_mri']['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
