"""Batch analysis: many slices (or a .zip of them) → one row per file, CSV and ZIP exports.

Every file goes through the same steps as the Analyse page -- read, input guard, classify,
segment, measure, training-set look-up -- and each failure stays in its own row: a corrupt file,
an unsupported type or a refused non-MRI image is reported there and the batch goes on.
3D NIfTI volumes and multi-frame files are analysed at their middle slice (axial for NIfTI),
which the row says. Grad-CAM is off by default here (it roughly doubles the time per slice).
When an item carries its ground truth (held-out public images), the table adds the true class,
whether the decision matches it and, with an expert mask, the Dice of the model's mask. With the
shipped sequence/plane model and lesion rule, each row also names the recognised sequence and
plane with their confidences, and whether a "no tumour" slice was flagged as a possible lesion.
"""
from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable, Iterable

import numpy as np

from core.errors import InputError, NeedsSliceSelection
from core.slices.findings import acquisition_cell, stated_cell
from core.trust.guard import check_slice
from core.readers.decoded import Slice
from core.readers.detect import SUPPORTED_EXTENSIONS
from core.readers.slice import inspect_slice_source, read_slice
from core.imaging.metrics import dice
from core.slices.pipeline import AnalysisOptions, Analyzer, SliceResult

#: Most files taken from one upload (a .zip included); the zip budgets live in core.config.
MAX_FILES = 1000
#: Measurements shown in the table (feature-table names) -- the main ones.
MAIN_MEASUREMENTS = ("Area", "Maximum diameter (Feret)", "Perpendicular diameter")

Progress = Callable[[int, int, str], None]


@dataclass
class BatchItem:
    """One file of a batch: its name (path inside a .zip when it came from one) and bytes, and its
    ground truth when known: the true class and the expert's tumour mask."""

    name: str
    data: bytes
    truth: str | None = None
    truth_mask: np.ndarray | None = field(default=None, repr=False)


@dataclass
class BatchRow:
    """The outcome for one file: ``status`` is ``ok``, ``refused`` (input guard) or ``error``."""

    name: str
    status: str
    message: str = ""
    result: SliceResult | None = field(default=None, repr=False)
    slice_: Slice | None = field(default=None, repr=False)
    note: str = ""
    truth: str | None = None
    dice: float | None = None

    @property
    def correct(self) -> bool | None:
        """Whether the decision is the true class (``None`` without a result or a truth)."""
        return None if self.result is None or self.truth is None else self.result.decision == self.truth

    def table_row(self, with_truth: bool = False) -> dict[str, Any]:
        """A flat dict for the results table and the CSV (``with_truth``: add the ground-truth columns)."""
        r = self.result
        row: dict[str, Any] = {"file": self.name, "status": self.status,
                               "class": r.decision_label if r else "", "probability": round(r.confidence, 4) if r else None,
                               "entropy": round(r.entropy, 3) if r else None,
                               "members agreeing": f"{round(r.agreement * len(r.member_votes))}/{len(r.member_votes)}" if r else "",
                               "caution": bool(r.caution) if r else None,
                               "sequence/plane": acquisition_cell(r),
                               "stated by the file": stated_cell(r),
                               "possible lesion": _possible_lesion(r),
                               "training-set match": (r.training_match or {}).get("name", "") if r else ""}
        measures = {m["feature"]: m for m in _feature_rows(r)}
        for name in MAIN_MEASUREMENTS:
            m = measures.get(name)
            row[f"{name.split(' (')[0].lower()}"] = round(m["value"], 2) if m else None
        row["unit"] = measures["Area"]["unit"].rstrip("²") if "Area" in measures else ""
        if with_truth:
            from core import config

            row["true class"] = config.CLASS_LABELS.get(self.truth, "") if self.truth else ""
            row["correct"] = self.correct
            row["Dice vs expert"] = None if self.dice is None else round(self.dice, 4)
        notes = [self.note] if self.note else []
        row["warnings / errors"] = " | ".join(notes + ([self.message] if self.message else [])
                                              + (list(r.warnings) if r else []))
        return row


def _possible_lesion(result: SliceResult | None) -> bool | None:
    """The lesion cross-check's flag; ``None`` when it did not run (a tumour decision, or no rule shipped)."""
    return None if result is None or result.lesion_check is None else result.possible_lesion


def _feature_rows(result: SliceResult | None) -> list[dict]:
    from core.imaging.morphology import feature_table

    if result is None or result.features is None:
        return []
    rows = feature_table(result.features)
    seen, out = set(), []
    for row in rows:                      # keep the first "Area" (mm² or px²), not the cm² duplicate
        if row["feature"] not in seen:
            seen.add(row["feature"])
            out.append(row)
    return out


# --------------------------------------------------------------------------- inputs

def _is_hidden(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _zip_errors() -> tuple[type[BaseException], ...]:
    """What Python's zipfile and its decompressors raise on a damaged or unusual archive."""
    import lzma
    import struct
    import zlib

    return (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, zlib.error, lzma.LZMAError, struct.error, OverflowError, UnicodeDecodeError)


#: Compression methods zipfile can extract: stored, deflate, bzip2, LZMA.
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _member_refusal(info: zipfile.ZipInfo) -> str:
    """Why a zip member is not extracted (from its header alone), or ``""``."""
    from core import config

    if info.filename.lower().endswith(".zip"):
        return "a .zip inside a .zip is not opened; upload it separately"
    if info.flag_bits & 0x1:
        return "is encrypted (password-protected) and cannot be read; add it to the archive without a password"
    if info.compress_type not in _ZIP_METHODS:
        kind = " (AES encryption)" if info.compress_type == 99 else ""
        return (f"uses compression method {info.compress_type}{kind}, which cannot be read; "
                "re-create the archive with standard (deflate) compression")
    if info.file_size > config.MAX_SLICE_BYTES:
        return (f"unpacks to {info.file_size / 2**20:.0f} MB; the limit is "
                f"{config.MAX_SLICE_BYTES / 2**20:.0f} MB per file")
    return ""


def _expand_zip(name: str, data: bytes, budget: int) -> tuple[list[BatchItem], list[BatchRow], int]:
    """The members of one batch zip, rows for what is refused, and the byte budget left.

    Header checks come first (entry count, declared total, each member's method, encryption and
    size); each member is then read with a bound, so a header that lies cannot cost more.
    """
    from core import config

    items: list[BatchItem] = []
    problems: list[BatchRow] = []
    errors = _zip_errors()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except errors as err:
        return [], [BatchRow(name, "error", f"not a readable .zip archive ({err})")], budget
    with archive:
        if len(infos) > config.MAX_ZIP_MEMBERS:
            return [], [BatchRow(name, "error", f"the archive holds {len(infos)} entries; the limit is "
                                 f"{config.MAX_ZIP_MEMBERS}")], budget
        members = [i for i in infos if not i.is_dir() and not _is_hidden(i.filename)]
        total = sum(i.file_size for i in members if not _member_refusal(i))
        if total > budget:
            return [], [BatchRow(name, "error", f"the archive unpacks to {total / 2**20:.0f} MB; the limit is "
                                 f"{config.MAX_ZIP_BYTES / 2**20:.0f} MB per batch")], budget
        for info in members:
            member = f"{name}/{info.filename}"
            refusal = _member_refusal(info)
            if refusal:
                problems.append(BatchRow(member, "error", refusal))
                continue
            try:
                with archive.open(info) as fh:
                    content = fh.read(min(budget, config.MAX_SLICE_BYTES) + 1)
            except errors as err:
                problems.append(BatchRow(member, "error", f"cannot be extracted from the archive ({err})"))
                continue
            if len(content) > min(budget, config.MAX_SLICE_BYTES):
                problems.append(BatchRow(member, "error", "unpacks to more than its header declares and over the "
                                         "size limit; the archive is damaged or built to exhaust memory"))
                continue
            budget -= len(content)
            items.append(BatchItem(member, content))
    return items, problems, budget


def expand_uploads(files: Iterable[tuple[str, bytes]]) -> tuple[list[BatchItem], list[BatchRow]]:
    """Files to analyse, with every ``.zip`` opened; and rows for archives and members that cannot be read.

    Folders, hidden files and macOS resource forks inside a zip are skipped; nested zips, encrypted
    members, unsupported compression methods and oversized members are reported in their own rows,
    not opened. The budgets of :mod:`core.config` hold (``MAX_ZIP_MEMBERS`` entries per archive,
    ``MAX_ZIP_BYTES`` unpacked from the archives of one call). At most :data:`MAX_FILES` files are taken.
    """
    from core import config

    items: list[BatchItem] = []
    problems: list[BatchRow] = []
    budget = config.MAX_ZIP_BYTES
    for name, data in files:
        if not name.lower().endswith(".zip"):
            items.append(BatchItem(name, data))
            continue
        found, refused, budget = _expand_zip(name, data, budget)
        items.extend(found)
        problems.extend(refused)
    if len(items) > MAX_FILES:
        problems.append(BatchRow(f"{len(items) - MAX_FILES} more files", "error",
                                 f"only the first {MAX_FILES} files of a batch are analysed"))
        items = items[:MAX_FILES]
    return items, problems


def _supported(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(".nii.gz") or lower.rsplit(".", 1)[-1] in SUPPORTED_EXTENSIONS


def read_batch_slice(item: BatchItem) -> tuple[Slice, str]:
    """The slice of one file and a note when a middle slice or frame was chosen for it."""
    base = PurePosixPath(item.name).name
    try:
        return read_slice(item.data, base), ""
    except NeedsSliceSelection:
        pass
    source = inspect_slice_source(item.data, base)
    if source.kind == "volume":
        index = source.shape[2] // 2
        return (read_slice(item.data, base, axis=2, index=index),
                f"3D volume: analysed its middle axial slice ({index} of {source.shape[2]})")
    frame = source.n_frames // 2
    return read_slice(item.data, base, frame=frame), f"multi-frame file: analysed frame {frame} of {source.n_frames}"


# --------------------------------------------------------------------------- running

def analyze_item(item: BatchItem, analyzer: Analyzer, options: AnalysisOptions, use_guard: bool = True) -> BatchRow:
    """One file → one row; every error is caught and reported in the row."""
    if not _supported(item.name):
        return BatchRow(item.name, "error", "not a file type this app reads (PNG, JPEG, TIFF, BMP, DICOM, NIfTI)")
    try:
        slice_, note = read_batch_slice(item)
    except InputError as err:
        return BatchRow(item.name, "error", str(err))
    verdict = check_slice(slice_) if use_guard else None
    if verdict is not None and not verdict.accepted:
        return BatchRow(item.name, "refused", f"input guard: {verdict.reason}", slice_=slice_, note=note)
    try:
        result = analyzer.analyze(slice_, options)
    except InputError as err:
        return BatchRow(item.name, "error", str(err), slice_=slice_, note=note)
    except Exception as err:  # one broken file must not stop the batch; the row says what happened
        return BatchRow(item.name, "error", f"analysis failed ({type(err).__name__}: {err})", slice_=slice_, note=note)
    if verdict is not None:
        result.guard = {**verdict.to_dict(), "overridden": False}
    return BatchRow(item.name, "ok", result=result, slice_=slice_, note=note)


def run_batch(items: list[BatchItem], analyzer: Analyzer, options: AnalysisOptions | None = None,
              progress: Progress | None = None, use_guard: bool = True) -> list[BatchRow]:
    """Analyse every item in order, calling ``progress(done, total, name)`` after each."""
    options = options or AnalysisOptions(gradcam=False)
    rows = []
    for i, item in enumerate(items):
        rows.append(with_truth(analyze_item(item, analyzer, options, use_guard), item))
        if progress:
            progress(i + 1, len(items), item.name)
    return rows


def with_truth(row: BatchRow, item: BatchItem) -> BatchRow:
    """``row`` with the item's true class and, with an expert mask on the slice's grid, the Dice of
    the model's mask (an analysed slice that was not segmented counts as an empty mask)."""
    row.truth = item.truth
    truth = item.truth_mask
    if row.result is not None and truth is not None and tuple(truth.shape) == tuple(row.result.shape):
        mask = row.result.mask if row.result.mask is not None else np.zeros(truth.shape, bool)
        row.dice = dice(mask, truth)
    return row


def truth_summary(rows: list[BatchRow]) -> dict[str, Any]:
    """Accuracy and the confusion matrix (rows truth, columns decision, classes in
    :data:`core.config.CLASS_NAMES` order) over the analysed rows that have a truth, and the mean
    Dice over those with an expert mask."""
    from sklearn.metrics import confusion_matrix

    from core import config

    judged = [r for r in rows if r.correct is not None]
    dices = [r.dice for r in rows if r.dice is not None]
    matrix = confusion_matrix([r.truth for r in judged], [r.result.decision for r in judged],
                              labels=list(config.CLASS_NAMES)).tolist() if judged else None
    return {"n": len(judged), "correct": sum(bool(r.correct) for r in judged),
            "accuracy": float(np.mean([bool(r.correct) for r in judged])) if judged else None,
            "confusion": matrix, "n_dice": len(dices), "mean_dice": float(np.mean(dices)) if dices else None}


# --------------------------------------------------------------------------- exports

def results_table(rows: list[BatchRow]) -> list[dict[str, Any]]:
    """Table rows; the ground-truth columns appear (for every row) when any row has a truth."""
    truth = any(row.truth is not None for row in rows)
    return [row.table_row(truth) for row in rows]


def results_csv(rows: list[BatchRow]) -> bytes:
    """The results table as UTF-8 CSV."""
    table = results_table(rows)
    buffer = io.StringIO()
    if table:
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return buffer.getvalue().encode("utf-8")


def _member_stem(name: str, used: set[str]) -> str:
    from core.slices.report import download_stem

    stem = download_stem(name.replace("/", "__"))
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


def results_zip(rows: list[BatchRow], overlay_style: str = "fill", overlay_opacity: float = 0.4) -> bytes:
    """``results.csv`` plus, per analysed file, its report JSON, mask and overlay PNG and features CSV.

    Per-file JSON uses :func:`core.slices.report.build_report` with patient identifiers withheld.
    """
    from core.slices.report import build_report, features_csv, png_bytes, report_json
    from core.imaging.viz import overlay_mask

    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("results.csv", results_csv(rows))
        summary = []
        for row in rows:
            entry = {"file": row.name, "status": row.status, "message": row.message, "note": row.note}
            if row.result is not None and row.slice_ is not None:
                stem = _member_stem(row.name, used)
                entry["folder"] = stem
                report = build_report(row.slice_, row.result, overlay_style=overlay_style,
                                      overlay_opacity=overlay_opacity)
                archive.writestr(f"{stem}/report.json", report_json(report))
                if row.result.mask is not None:
                    archive.writestr(f"{stem}/mask.png", png_bytes((row.result.mask * 255).astype("uint8")))
                    archive.writestr(f"{stem}/overlay.png", png_bytes(
                        overlay_mask(row.slice_.image, row.result.mask, overlay_style, overlay_opacity)))
                if row.result.features is not None:
                    archive.writestr(f"{stem}/features.csv", features_csv(row.result))
            summary.append(entry)
        archive.writestr("summary.json", json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                     "files": summary}, indent=1))
    return buffer.getvalue()
