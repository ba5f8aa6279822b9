"""External benchmark: does the classifier find tumours in slices from other sources?

Protocol (``python -m core.evaluate external``; the catalogue is :mod:`core.data.sources`):

* **Slices** of patients no shipped classifier was trained or validated on: ``tcga_lgg`` fold 4
  (axial pre-contrast T1, FLAIR, post-contrast T1; tumour = mask of at least 300 px; the
  sequences the dataset filled with a FLAIR copy are left out), the BraTS
  cases the shipped BraTS model held out (axial slices of all four sequences; tumour = whole-tumour
  area of at least 100 mm², no tumour = no label voxel and at least a quarter of the case's largest
  brain area), and the figshare fold the segmenter held out, minus the slices that the 4-class
  Training split copies.
* **Cells**: one per source x sequence. Each reports the n of tumour and tumour-free slices,
  accuracy (the class where known: glioma/no tumour for TCGA and BraTS), tumour sensitivity and
  specificity of the app's decision (tumour = any class but "no tumour"), AUC of P(tumour) =
  1 - P(no tumour), the glioma accuracy of the glioma slices, and the ECE of the decided class's
  probability. 95 % CIs by bootstrap over patients (slices of one patient move together).
* A model is judged by its **worst** cell, not the mean: ``worst`` names the cell with the lowest
  of sensitivity and specificity.
* **Per source** (``by_source``): the same figures with every sequence of a source pooled, for
  targets stated per source (ECE).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core import config
from core.evaluation.jsonsafe import json_ready
from core.imaging.metrics import bootstrap_ci, expected_calibration_error

NO_TUMOUR = config.CLASS_NAMES.index(config.NO_TUMOUR_CLASS)
GLIOMA = config.CLASS_NAMES.index("glioma")
#: Metrics of a cell that get bootstrap CIs.
CI_METRICS: tuple[str, ...] = ("accuracy", "sensitivity", "specificity", "auc", "ece")
#: The sequence of a per-source row (``by_source``: every sequence of the source pooled).
ALL_SEQUENCES = "all"
#: Splits of the benchmark: what the classifier validated on, and what it never saw.
BENCHMARK_SPLITS = {"val": "validation patients", "test": "held-out patients"}
#: Which sources and planes each benchmark reads (BraTS: axial only, as a 2D upload would be).
BENCHMARK_SOURCES: dict[str, dict[str, Any]] = {
    "tcga_lgg": {}, "brats": {"plane": "axial"}, "figshare": {},
}


def tumour_probability(probs: np.ndarray) -> np.ndarray:
    """P(tumour) = 1 - P(no tumour) of ``(N, K)`` class probabilities."""
    return 1.0 - np.asarray(probs)[:, NO_TUMOUR]


def safe_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for boolean ``truth``; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, score)) if 0 < truth.sum() < len(truth) else float("nan")


def cell_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Metrics of one cell: labels ``(N,)`` class indices, probabilities ``(N, K)``."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    tumour = labels != NO_TUMOUR
    said_tumour = pred != NO_TUMOUR
    glioma = labels == GLIOMA
    nan = float("nan")
    return {
        "n": int(len(labels)), "n_tumour": int(tumour.sum()), "n_no_tumour": int((~tumour).sum()),
        "accuracy": float(np.mean(pred == labels)) if len(labels) else nan,
        "sensitivity": float(np.mean(said_tumour[tumour])) if tumour.any() else nan,
        "specificity": float(np.mean(~said_tumour[~tumour])) if (~tumour).any() else nan,
        "glioma_accuracy": float(np.mean(pred[glioma] == GLIOMA)) if glioma.any() else nan,
        "auc": safe_auc(tumour, tumour_probability(probs)),
        "ece": expected_calibration_error(labels, probs) if len(labels) else nan,
    }


def worst_value(metrics: dict[str, float]) -> float:
    """The lower of a cell's sensitivity and specificity (whichever are defined)."""
    values = [metrics[k] for k in ("sensitivity", "specificity") if np.isfinite(metrics.get(k, np.nan))]
    return float(min(values)) if values else float("nan")


@dataclass(frozen=True)
class Cell:
    source: str
    sequence: str

    @property
    def key(self) -> str:
        return f"{self.source}/{self.sequence}"


def cells_of(sources: Iterable[str], sequences: Iterable[str]) -> list[Cell]:
    """The distinct (source, sequence) cells, in source then sequence order."""
    from core.data.sources import catalogue_order

    return [Cell(s, q) for s, q in sorted(set(zip(sources, sequences)), key=lambda p: catalogue_order(*p))]


def cell_table(sources: np.ndarray, sequences: np.ndarray, patients: np.ndarray, labels: np.ndarray,
               probs: np.ndarray, n_boot: int = 0, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{"source/sequence": metrics}`` with ``<metric>_ci95`` by patient bootstrap when ``n_boot``."""
    sources, sequences, patients = (np.asarray(a, dtype=str) for a in (sources, sequences, patients))
    labels = np.asarray(labels)
    table: dict[str, dict[str, Any]] = {}
    for cell in cells_of(sources, sequences):
        idx = np.flatnonzero((sources == cell.source) & (sequences == cell.sequence))
        y, p = labels[idx], probs[idx]
        row: dict[str, Any] = {"source": cell.source, "sequence": cell.sequence, **cell_metrics(y, p)}
        row["patients"] = int(len(set(patients[idx]))) if any(patients[idx]) else None
        row["worst"] = worst_value(row)
        if n_boot:
            groups = [g or f"slice{k}" for k, g in enumerate(patients[idx])]
            for name in CI_METRICS:
                if np.isfinite(row[name]):
                    row[f"{name}_ci95"] = list(bootstrap_ci(lambda b, name=name: cell_metrics(y[b], p[b])[name],
                                                            len(idx), n_boot=n_boot, seed=seed, groups=groups))
        table[cell.key] = row
    return table


def patient_table(sources: np.ndarray, sequences: np.ndarray, patients: np.ndarray, labels: np.ndarray,
                  probs: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    """``{"source/sequence": [per patient]}``: each patient's tumour slices called tumour and tumour-free
    slices called tumour by the decision, hardest patient first (lowest of its sensitivity and
    specificity) — whether a cell's misses are spread over its patients or one scan's."""
    sources, sequences, patients = (np.asarray(a, dtype=str) for a in (sources, sequences, patients))
    tumour = np.asarray(labels) != NO_TUMOUR
    said_tumour = np.asarray(probs).argmax(1) != NO_TUMOUR
    out: dict[str, list[dict[str, Any]]] = {}
    for cell in cells_of(sources, sequences):
        in_cell = (sources == cell.source) & (sequences == cell.sequence)
        rows = []
        for patient in sorted(set(patients[in_cell])):
            here = in_cell & (patients == patient)
            n_tumour, n_no_tumour = int((here & tumour).sum()), int((here & ~tumour).sum())
            found, false_alarms = int((here & tumour & said_tumour).sum()), int((here & ~tumour & said_tumour).sum())
            rates = {"sensitivity": found / n_tumour if n_tumour else float("nan"),
                     "specificity": (n_no_tumour - false_alarms) / n_no_tumour if n_no_tumour else float("nan")}
            rows.append({"patient": patient, "n_tumour": n_tumour, "found": found, "n_no_tumour": n_no_tumour,
                         "false_alarms": false_alarms, **rates, "worst": worst_value(rates)})
        out[cell.key] = sorted(rows, key=lambda r: (r["worst"], r["patient"]))
    return out


def worst_cell(table: dict[str, dict[str, Any]]) -> tuple[str, float]:
    """The cell with the lowest :func:`worst_value`, and that value."""
    scored = [(row["worst"], key) for key, row in table.items() if np.isfinite(row["worst"])]
    if not scored:
        return "", float("nan")
    value, key = min(scored)
    return key, float(value)


def json_table(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A cell table with floats rounded to 4 places and NaN as null (for cards and artifacts)."""
    return json_ready(table)

def benchmark_slices(split: str = "test", size: int = 128, data_dir: Any = None,
                     sources: Iterable[str] | None = None):
    """The benchmark's slices of ``split`` (:data:`BENCHMARK_SPLITS`) at ``size``: tcga_lgg, BraTS
    axial, figshare (or the named ``sources``; BraTS stays axial, as a 2D upload would be)."""
    from core.data.sources import SliceSet, load_sources

    if split not in BENCHMARK_SPLITS:
        raise ValueError(f"unknown benchmark split {split!r}; known: {', '.join(BENCHMARK_SPLITS)}")
    names = list(sources or BENCHMARK_SOURCES)
    every = load_sources(names, size, data_dir).where(split=split)
    parts = [every.where(source=source, **BENCHMARK_SOURCES.get(source, {})) for source in names]
    return SliceSet.concat(parts)


def ensemble_probabilities(classifier: Any, slices_by_size: dict[int, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Members' and ensemble probabilities for catalogued crops ``{size: SliceSet}`` (as the app runs them)."""
    x_by_size = {s: v.x.astype(np.float32) / 255.0 for s, v in slices_by_size.items()}
    member_probs = classifier.probabilities_from_inputs(x_by_size)
    return member_probs, classifier.ensemble_probabilities(member_probs)


def crosscheck_inputs(split: str, sources: Iterable[str], weights_dir: Any = None, data_dir: Any = None,
                      classifier: Any = None, model: str = "lesion_detector"):
    """Slices, ensemble probabilities and the cross-check evidence of ``model`` on each slice the
    ensemble calls "no tumour" (elsewhere the check never runs): the lesion detector on the crop
    (:mod:`core.slices.lesion`) or the ResUNet on the whole slice."""
    from core.slices.classify import Classifier
    from core.slices.crosscheck import LesionEvidence, lesion_evidence
    from core.slices.lesion import LesionDetector, evidence_of
    from core.slices.segment import Segmenter
    from core.data.sources import SliceReader

    classifier = classifier or Classifier.load(weights_dir)
    by_size = {s: benchmark_slices(split, s, data_dir, sources) for s in classifier.sizes() | {128}}
    slices = by_size[128]
    _, probs = ensemble_probabilities(classifier, {s: by_size[s] for s in classifier.sizes()})
    said_no = probs.argmax(1) == NO_TUMOUR
    evidence = [LesionEvidence(0.0, 0.0)] * len(slices)
    if model == "lesion_detector":
        detector = LesionDetector.load_shipped(weights_dir)
        crops = (by_size[detector.input_size] if detector.input_size in by_size
                 else benchmark_slices(split, detector.input_size, data_dir, sources))
        maps = detector.probabilities_of_crops(crops.x[said_no].astype(np.float32) / 255.0)
        for k, p in zip(np.flatnonzero(said_no), maps):
            evidence[k] = evidence_of(p)
        version = {detector.name: detector.sha256}
    else:
        segmenter, reader = Segmenter.load(model, weights_dir), SliceReader(data_dir)
        for k in np.flatnonzero(said_no):
            evidence[k] = lesion_evidence(*segmenter.segment(reader(slices.refs[k]), None))
        version = {segmenter.name: segmenter.sha256}
    return slices, probs, evidence, {**classifier.versions(), **version}


def evaluate_external(split: str = "test", weights_dir: Any = None, n_boot: int = 1000,
                      data_dir: Any = None, crosscheck: bool = True) -> dict[str, Any]:
    """The shipped ensemble (and each member) on the external benchmark; see the module docstring.

    With ``crosscheck`` (and a shipped rule) each cell also reports what the lesion cross-check
    (:mod:`core.slices.crosscheck`) rescues and how many false alarms it raises.
    """
    from core.slices.classify import Classifier
    from core.evaluation.false_alarms import false_alarms_by_distance
    from core.slices.crosscheck import load_rule, rule_figures

    classifier = Classifier.load(weights_dir)
    by_size = {s: benchmark_slices(split, s, data_dir) for s in classifier.sizes()}
    slices = next(iter(by_size.values()))
    member_probs, ensemble = ensemble_probabilities(classifier, by_size)
    columns = (slices.column("source"), slices.column("sequence"), slices.column("patient"), slices.labels())
    table = cell_table(*columns, ensemble, n_boot=n_boot)
    key, value = worst_cell(table)
    pooled = cell_table(columns[0], np.full(len(slices), ALL_SEQUENCES), *columns[2:], ensemble, n_boot=n_boot)
    members = {}
    for name, probs in member_probs.items():
        member_table = cell_table(*columns, probs)
        members[name] = {"worst_cell": worst_cell(member_table)[0], "worst": worst_cell(member_table)[1],
                         "cells": {k: {m: row[m] for m in ("sensitivity", "specificity", "accuracy", "auc")}
                                   for k, row in member_table.items()}}
    versions = classifier.versions()
    shipped = load_rule(weights_dir) if crosscheck else None
    rule = shipped[0] if shipped else None
    if shipped is not None:
        _, _, evidence, versions = crosscheck_inputs(split, list(BENCHMARK_SOURCES), weights_dir, data_dir, classifier,
                                                     shipped[1])
        tumour = slices.labels() != NO_TUMOUR
        said_no = ensemble.argmax(1) == NO_TUMOUR
        for cell_key, row in table.items():
            keep = (columns[0] == row["source"]) & (columns[1] == row["sequence"])
            row["crosscheck"] = rule_figures(rule, [e for e, k in zip(evidence, keep) if k], tumour[keep], said_no[keep])
    return {
        "task": "external", "split": split, "split_description": BENCHMARK_SPLITS[split],
        "protocol": __doc__.split("Protocol", 1)[1].strip() if __doc__ else "",
        "n": int(len(slices)), "patients": int(len({(r.source, r.patient) for r in slices.refs})),
        "cells": json_table(table), "worst_cell": key, "worst": json_ready(value), "by_source": json_table(pooled),
        "crosscheck_rule": {**rule.to_json(), "model": shipped[1]} if shipped else None,
        "members": json_table(members), "model_versions": versions,
        "false_alarms_by_distance": json_ready(false_alarms_by_distance(slices.refs, slices.labels(), ensemble)),
        "by_patient": json_ready(patient_table(*columns, ensemble)),
    }
