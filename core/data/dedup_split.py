"""The de-duplicated test split of a class-folder dataset, the training-set hash index built from
its folder, and their command (:mod:`core.trust.fingerprints` decides what is a duplicate).

CLI::

    python -m core.dedup split --train DIR --test DIR --out weights/eval/dedup_testing.json
    python -m core.dedup index --train DIR --out weights/train_hash_index.npz

``index`` also records the file's sha256 in the manifest beside it (``files``), which the app
checks before loading it (:func:`core.trust.hash_index.load_shipped`).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from core import config
from core.data.datasets import list_classification
from core.serving import registry
from core.trust import fingerprints
from core.trust.fingerprints import DuplicateRule, Fingerprint, find_duplicates, fingerprint
from core.trust.hash_index import INDEX_COMMAND, INDEX_NAME, HashIndex


#: What the hash index's manifest entry says it is.
INDEX_DESCRIPTION = ("Perceptual and difference hashes (no pixels) of every training image, with its class "
                     "and relative name: flags an upload that copies a training image.")


# --------------------------------------------------------------------------- folders

def _read(path: Path) -> np.ndarray:
    from core.readers.slice import read_slice_file  # local import: io pulls in pydicom/nibabel

    return read_slice_file(path).image


def _fingerprint_folder(root: Path, progress: Callable[[int, int], None] | None = None
                        ) -> tuple[list[Path], list[str], list[Fingerprint]]:
    """Paths, class names and fingerprints of a class-folder dataset (``root/<class>/*``)."""
    listing = list_classification(root)
    fps = []
    for i, path in enumerate(listing.paths):
        fps.append(fingerprint(_read(path)))
        if progress:
            progress(i + 1, len(listing.paths))
    labels = [config.CLASS_NAMES[int(k)] for k in listing.labels]
    return listing.paths, labels, fps


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, with forward slashes (never an absolute machine path)."""
    return path.relative_to(root).as_posix()


def build_dedup_split(train_dir: Path, test_dir: Path, rule: DuplicateRule | None = None,
                      progress: Callable[[str, int, int], None] | None = None) -> dict:
    """De-duplicated test split of a class-folder dataset, as a JSON-able dict.

    A test image is removed with reason ``"train"`` when it duplicates a training image.
    Within the test set, duplicates form groups (connected components). In a group with no
    training duplicate the first member (sorted path order) is kept and the others are removed
    with reason ``"test"``; in a group that contains a training duplicate every member goes
    (a copy of a copy of a training image is leakage too).

    ``clean`` and ``removed[*].path`` are relative to ``test_dir`` (``glioma/Te-gl_0001.jpg``),
    as :func:`core.evaluation.scoring.clean_subset_mask` expects for ``--data <test_dir>``; ``match`` is
    prefixed with the matched folder's name (``Training/glioma/Tr-gl_0001.jpg``); ``ncc`` is
    the aligned correlation of the match, ``label``/``match_label`` the two class names.
    """
    rule = rule or DuplicateRule()
    train_dir, test_dir = Path(train_dir), Path(test_dir)
    tr_paths, tr_labels, tr_fps = _fingerprint_folder(
        train_dir, (lambda i, n: progress("train", i, n)) if progress else None)
    te_paths, te_labels, te_fps = _fingerprint_folder(
        test_dir, (lambda i, n: progress("test", i, n)) if progress else None)
    res = find_duplicates(te_fps, tr_fps, rule)

    removed: dict[int, dict] = {}
    for i in map(int, np.flatnonzero(res["dup_of_train"])):
        j = int(res["nearest"][i])
        removed[i] = {
            "path": _rel(te_paths[i], test_dir), "reason": "train",
            "match": f"{train_dir.name}/{_rel(tr_paths[j], train_dir)}",
            "label": te_labels[i], "match_label": tr_labels[j],
            "phash": int(res["phash"][i]), "dhash": int(res["dhash"][i]),
            "ncc": round(float(res["aligned_ncc"][i]), 4), "mirrored": bool(res["mirrored"][i]),
        }
    n_within = 0
    for group in res["groups"]:
        tainted = any(i in removed for i in group)
        for i in (group if tainted else group[1:]):
            if i in removed:
                continue
            j, ph, dh, nc, mirrored = res["links"][i]
            removed[i] = {
                "path": _rel(te_paths[i], test_dir), "reason": "test",
                "match": f"{test_dir.name}/{_rel(te_paths[j], test_dir)}",
                "label": te_labels[i], "match_label": te_labels[j],
                "phash": ph, "dhash": dh, "ncc": round(nc, 4), "mirrored": mirrored,
            }
            n_within += 1
    clean_idx = [i for i in range(len(te_paths)) if i not in removed]
    per_class = {c: 0 for c in config.CLASS_NAMES}
    for i in clean_idx:
        per_class[te_labels[i]] += 1
    return {
        "rule": asdict(rule),
        "method": ("brain-cropped thumbnails; candidates by coarse NCC (top_k, min_coarse_ncc) "
                   "or phash/dhash; duplicate if the affine-aligned NCC of histogram-equalised "
                   "128 px thumbnails >= min_ncc; left-right mirror images count as duplicates"),
        "train_dir": train_dir.name, "test_dir": test_dir.name,
        "paths_relative_to": "test_dir",
        "n_groups_within_test": len(res["groups"]),
        "candidates_verified": res["candidates"],
        "n_train": len(tr_paths),
        "n_test": len(te_paths),
        "n_dup_of_train": int(res["dup_of_train"].sum()),
        "n_dup_within_test": n_within,
        "n_clean": len(clean_idx),
        "clean": [_rel(te_paths[i], test_dir) for i in clean_idx],
        "removed": [removed[i] for i in sorted(removed)],
        "per_class_clean": per_class,
    }


def build_hash_index(train_dir: Path, progress: Callable[[int, int], None] | None = None) -> HashIndex:
    """Index every image of a class-folder dataset (names relative to ``train_dir``)."""
    train_dir = Path(train_dir)
    paths, labels, fps = _fingerprint_folder(train_dir, progress)
    return HashIndex.from_fingerprints(fps, labels, [_rel(p, train_dir) for p in paths])


# --------------------------------------------------------------------------- CLI

def _default(sub: str) -> Path | None:
    """``<data_dir>/brain_mri_4class/<sub>``, or None without a data folder."""
    root = config.data_dir()
    return root / "brain_mri_4class" / sub if root else None


def _progress(prefix: str) -> Callable[[int, int], None]:
    """Progress printer to stderr (every 500 images and at the end)."""
    def report(i: int, n: int) -> None:
        if i == n or i % 500 == 0:
            print(f"  {prefix}: {i}/{n}", file=sys.stderr, flush=True)
    return report


def _need_dir(path: Path | None, what: str) -> Path:
    """``path`` if it is a folder, else exit with a message."""
    if path is None or not Path(path).is_dir():
        raise SystemExit(f"error: {what} folder not found ({path or 'no data folder'}); "
                         f"pass it explicitly or set BTD_DATA_DIR")
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m core.dedup split|index`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m core.dedup", description=fingerprints.__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("split", help="write the de-duplicated test split as JSON")
    sp.add_argument("--train", type=Path, default=None)
    sp.add_argument("--test", type=Path, default=None)
    sp.add_argument("--out", type=Path, default=config.WEIGHTS_DIR / "eval" / "dedup_testing.json")
    ip = sub.add_parser("index", help="write the training-set hash index (.npz)")
    ip.add_argument("--train", type=Path, default=None)
    ip.add_argument("--out", type=Path, default=config.WEIGHTS_DIR / "train_hash_index.npz")
    args = parser.parse_args(argv)

    train = _need_dir(args.train or _default("Training"), "training")
    if args.cmd == "split":
        test = _need_dir(args.test or _default("Testing"), "testing")
        result = build_dedup_split(train, test, progress=lambda s, i, n: _progress(s)(i, n))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        reasons = {"train": 0, "test": 0}
        for r in result["removed"]:
            reasons[r["reason"]] += 1
        print(f"rule: {result['rule']}")
        print(f"test images: {result['n_test']}  duplicates of training: {result['n_dup_of_train']}"
              f"  duplicates within test: {result['n_dup_within_test']}  clean: {result['n_clean']}")
        print(f"clean per class: {result['per_class_clean']}")
        print(f"wrote {args.out}")
        print(f"RESULT n_test={result['n_test']} n_clean={result['n_clean']} "
              f"dup_train={result['n_dup_of_train']} dup_within={result['n_dup_within_test']}")
    else:
        index = build_hash_index(train, progress=_progress("train"))
        index.save(args.out)
        registry.record_file(INDEX_NAME, {"file": args.out.name, "description": INDEX_DESCRIPTION,
                                          "data": f"{train.parent.name}/{train.name}", "command": INDEX_COMMAND},
                             args.out.parent)
        size = args.out.stat().st_size
        print(f"wrote {args.out}")
        print(f"RESULT n={len(index)} bytes={size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
