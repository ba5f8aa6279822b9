"""The external benchmark (:mod:`core.evaluation.external`) shaped for the Compare models page.

Reads ``external.json`` (held-out patients) and ``external_val.json`` (validation patients) from
the evaluation folder and turns them into display tables and chart rows. Every missing metric
is shown as "—". No Streamlit, no deep-learning backend.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from core.data.sources import SEQUENCE_LABELS, SOURCE_LABELS

#: Benchmark files by split, in the order the page offers them.
FILES: dict[str, str] = {"test": "external.json", "val": "external_val.json"}
SPLIT_LABELS: dict[str, str] = {"test": "held-out patients", "val": "validation patients"}
#: Sensitivity and specificity the project aims for in every cell.
TARGET = 0.90
#: Calibration error the project aims for in every source (its sequences pooled).
ECE_TARGET = 0.08
DASH = "—"


def available(folder: Path) -> list[str]:
    """Splits whose benchmark file is in ``folder`` (held-out first)."""
    return [split for split, name in FILES.items() if (folder / name).is_file()]


def load(folder: Path, split: str = "test") -> dict[str, Any] | None:
    """The benchmark of ``split`` from ``folder``, or ``None`` when it has not been written."""
    path = folder / FILES[split]
    return json.loads(path.read_text()) if path.is_file() else None


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None``."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt(value: Any, digits: int = 3) -> str:
    """A metric with ``digits`` decimals, "—" when missing."""
    number = _number(value)
    return DASH if number is None else f"{number:.{digits}f}"


def fmt_ci(value: Any, ci: Any, digits: int = 3) -> str:
    """E.g. ``"0.912 (0.850–0.960)"``; the interval is left out when unknown."""
    if _number(value) is None:
        return DASH
    if not ci or len(ci) != 2 or _number(ci[0]) is None or _number(ci[1]) is None:
        return fmt(value, digits)
    return f"{fmt(value, digits)} ({fmt(ci[0], digits)}–{fmt(ci[1], digits)})"


def fmt_count(value: Any) -> str:
    number = _number(value)
    return DASH if number is None else str(int(number))


def cell_label(key: str) -> str:
    """``"tcga_lgg/flair"`` → ``"TCGA-LGG · FLAIR"``."""
    source, _, sequence = key.partition("/")
    return f"{SOURCE_LABELS.get(source, source)} · {SEQUENCE_LABELS.get(sequence, sequence)}"


def _source_sequence(key: str, cell: dict[str, Any]) -> tuple[str, str]:
    source, _, sequence = key.partition("/")
    source, sequence = cell.get("source") or source, cell.get("sequence") or sequence
    return SOURCE_LABELS.get(source, source), SEQUENCE_LABELS.get(sequence, sequence)


def cells_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per source × sequence: counts and every metric as display text ("—" when missing)."""
    rows = []
    for key, c in (report.get("cells") or {}).items():
        source, sequence = _source_sequence(key, c)
        rows.append({
            "source": source, "sequence": sequence,
            "sensitivity (95 % CI)": fmt_ci(c.get("sensitivity"), c.get("sensitivity_ci95")),
            "specificity (95 % CI)": fmt_ci(c.get("specificity"), c.get("specificity_ci95")),
            "glioma accuracy": fmt(c.get("glioma_accuracy")),
            "ECE": fmt(c.get("ece")),
            "weakest": "◀ weakest" if key == report.get("worst_cell") else "",
            "AUC": fmt_ci(c.get("auc"), c.get("auc_ci95")),
            "accuracy": fmt_ci(c.get("accuracy"), c.get("accuracy_ci95")),
            "tumour / tumour-free": f"{fmt_count(c.get('n_tumour'))} / {fmt_count(c.get('n_no_tumour'))}",
            "patients": fmt_count(c.get("patients")), "slices": fmt_count(c.get("n")),
        })
    return pd.DataFrame(rows)


def sources_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per source with its sequences pooled (the report's ``by_source``; empty for a report
    written before it), with the same columns as :func:`cells_table` less sequence and weakest."""
    table = cells_table({"cells": report.get("by_source") or {}})
    return table.drop(columns=["sequence", "weakest"]) if not table.empty else table


def _weaker_metric(cell: dict[str, Any]) -> str:
    """"sensitivity" or "specificity", whichever is lower (the one that makes the cell's worst)."""
    sens, spec = _number(cell.get("sensitivity")), _number(cell.get("specificity"))
    if sens is None:
        return "specificity"
    if spec is None:
        return "sensitivity"
    return "sensitivity" if sens <= spec else "specificity"


def below_target(report: dict[str, Any]) -> bool:
    """Whether the weakest cell's sensitivity or specificity is under :data:`TARGET`."""
    worst = _number(report.get("worst"))
    return worst is not None and worst < TARGET


def worst_sentence(report: dict[str, Any]) -> str:
    """The weakest cell in words, e.g. "The weakest result is TCGA-LGG · FLAIR: sensitivity 0.712 (…)"."""
    key = report.get("worst_cell")
    cell = (report.get("cells") or {}).get(key or "")
    if not cell:
        return "No cell has both tumour and tumour-free slices scored, so there is no weakest result to name."
    metric = _weaker_metric(cell)
    value = fmt_ci(cell.get(metric), cell.get(f"{metric}_ci95"))
    meaning = ("tumour slices the app called tumour-free" if metric == "sensitivity"
               else "tumour-free slices the app called tumour")
    below = (_number(cell.get(metric)) or 0.0) < TARGET
    target = f", below the {TARGET:.2f} aim" if below else f", at or above the {TARGET:.2f} aim"
    return (f"The weakest result is **{cell_label(key)}**: {metric} {value}{target}. "
            f"A model is judged by its weakest source and sequence, not by the average; a low {metric} "
            f"here means {meaning}.")


def hardest_patient_sentence(report: dict[str, Any]) -> str:
    """How much of the weakest cell's shortfall one patient holds (``by_patient`` of the benchmark), e.g.
    "17 of its 41 missed tumour slices are one patient's (BraTS2021_01480: 3 of 20 found)"; "" when the
    artifact has no per-patient figures or the cell has no such errors."""
    key = report.get("worst_cell") or ""
    cell = (report.get("cells") or {}).get(key)
    patients = (report.get("by_patient") or {}).get(key) or []
    if not cell or not patients:
        return ""
    if _weaker_metric(cell) == "sensitivity":
        errors = [(r["n_tumour"] - r["found"], r) for r in patients]
        noun = "missed tumour slices"
        detail = lambda r: f"{r['found']} of {r['n_tumour']} tumour slices found"  # noqa: E731
    else:
        errors = [(r["false_alarms"], r) for r in patients]
        noun = "false alarms"
        detail = lambda r: f"{r['false_alarms']} of {r['n_no_tumour']} tumour-free slices called tumour"  # noqa: E731
    total = sum(n for n, _ in errors)
    if total == 0:
        return ""
    most, row = max(errors, key=lambda e: e[0])
    return (f"{most} of its {total} {noun} are one patient's ({row['patient']}: {detail(row)}), "
            f"among {len(patients)} patients in the cell.")


def chart_rows(report: dict[str, Any]) -> pd.DataFrame:
    """Sensitivity and specificity per cell with their CI bounds (missing values left out)."""
    rows = []
    for key, c in (report.get("cells") or {}).items():
        for metric in ("sensitivity", "specificity"):
            value = _number(c.get(metric))
            if value is None:
                continue
            ci = c.get(f"{metric}_ci95") or [None, None]
            low, high = (_number(ci[0]), _number(ci[1])) if len(ci) == 2 else (None, None)
            rows.append({"cell": cell_label(key), "metric": metric, "value": value,
                         "low": value if low is None else low, "high": value if high is None else high})
    return pd.DataFrame(rows, columns=["cell", "metric", "value", "low", "high"])


def crosscheck_table(report: dict[str, Any]) -> pd.DataFrame:
    """Per cell, what the lesion cross-check does: misses rescued, false alarms, sensitivity before → after."""
    rows = []
    for key, c in (report.get("cells") or {}).items():
        x = c.get("crosscheck")
        if not x:
            continue
        rows.append({
            "cell": cell_label(key),
            "tumours missed by the classifier": fmt_count(x.get("missed")),
            "of them flagged as possible lesions": fmt_count(x.get("rescued")),
            "false alarms": f"{fmt_count(x.get('false_alarms'))} of {fmt_count(x.get('tumour_free'))} tumour-free",
            "false-alarm rate": fmt(x.get("false_alarm_rate")),
            "sensitivity before → after": f"{fmt(x.get('sensitivity_before'))} → {fmt(x.get('sensitivity_after'))}",
        })
    return pd.DataFrame(rows)


def crosscheck_totals(report: dict[str, Any]) -> dict[str, int]:
    """Missed, rescued, false alarms and tumour-free slices summed over the cells."""
    totals = {"missed": 0, "rescued": 0, "false_alarms": 0, "tumour_free": 0}
    for c in (report.get("cells") or {}).values():
        for name in totals:
            totals[name] += int(_number((c.get("crosscheck") or {}).get(name)) or 0)
    return totals


def false_alarm_table(report: dict[str, Any]) -> pd.DataFrame:
    """Tumour-free slices called tumour, per source and sequence (rows) and distance to the volume's
    lesion in slices (columns), as "rate (k of n)" ("no slices" where a band holds none); empty
    when the report has no such rows."""
    rows: dict[str, dict[str, str]] = {}
    for r in report.get("false_alarms_by_distance") or []:
        label = cell_label(f"{r.get('source')}/{r.get('sequence')}")
        n = _number(r.get("n"))
        if n is None:
            text = DASH
        elif n == 0:
            text = "no slices"
        else:
            text = f"{fmt(r.get('rate'), 2)} ({fmt_count(r.get('false_alarms'))} of {fmt_count(n)})"
        rows.setdefault(label, {"cell": label})[f"{r.get('distance')} slices away"] = text
    return pd.DataFrame(list(rows.values()))


def rule_text(rule: dict[str, Any] | None) -> str:
    """The cross-check rule in words."""
    if not rule:
        return ""
    area = _number(rule.get("min_area_fraction"))
    return (f"a region is flagged when its mean tumour probability is at least "
            f"{fmt(rule.get('min_confidence'), 2)} and it covers at least "
            f"{DASH if area is None else f'{100 * area:.2g} %'} of the image")


def members_table(report: dict[str, Any]) -> pd.DataFrame:
    """Each ensemble member's weakest cell, with its sensitivity and specificity there."""
    rows = []
    for name, m in (report.get("members") or {}).items():
        key = m.get("worst_cell") or ""
        cell = (m.get("cells") or {}).get(key, {})
        rows.append({"member": name, "weakest cell": cell_label(key) if key else DASH,
                     "lower of sensitivity and specificity": fmt(m.get("worst")),
                     "sensitivity there": fmt(cell.get("sensitivity")),
                     "specificity there": fmt(cell.get("specificity"))})
    return pd.DataFrame(rows)


def stale_models(report: dict[str, Any], shipped: dict[str, str]) -> list[str]:
    """Models scored in ``report`` whose weights differ from ``shipped`` ``{name: sha256}`` now."""
    return sorted(name for name, sha in (report.get("model_versions") or {}).items()
                  if name in shipped and shipped[name] and sha != shipped[name])


# --------------------------------------------------------------------------- outlines on other sources

#: What ``python -m core.evaluate external-segmentation --json`` writes (held-out patients).
SEGMENTATION_FILE = "external_segmentation.json"
#: The expert region a cell's outlines are scored against, in words.
TARGET_LABELS: dict[str, str] = {"WT": "whole tumour", "TC": "tumour core", "expert mask": "expert outline"}


def load_segmentation(folder: Path) -> dict[str, Any] | None:
    """The segmenter's external benchmark from ``folder``, or ``None`` when it has not been written."""
    path = folder / SEGMENTATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _share_of(share: Any, n: Any) -> str:
    """E.g. ``"0.71 of 345"``; "—" when there are no slices."""
    return DASH if _number(share) is None or not _number(n) else f"{fmt(share, 2)} of {fmt_count(n)}"


def segmentation_table(report: dict[str, Any], model: str = "resunet") -> pd.DataFrame:
    """One row per source × sequence: the outline's Dice on tumour slices against the region the sequence
    shows, how often it outlines anything there, and how often it leaves a tumour-free slice clean."""
    rows = []
    for key, c in (report.get("cells") or {}).items():
        m = c.get(model) or {}
        rows.append({"cell": cell_label(key),
                     "region": TARGET_LABELS.get(c.get("target"), c.get("target") or DASH),
                     "mean Dice (95 % CI)": fmt_ci(m.get("mean_dice"), m.get("mean_dice_ci95")),
                     "left clean (tumour-free)": _share_of(m.get("clean"), m.get("n_tumour_free")),
                     "outlined (tumour)": _share_of(m.get("found"), m.get("n"))})
    return pd.DataFrame(rows)
