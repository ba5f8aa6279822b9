"""Figures *reported* by the source documents (not reproduced here), beside the project's own.

These numbers are copied from the documents the project was asked to reproduce; they were obtained on other splits, other preprocessing and (for
the backbones) usually ImageNet-pretrained weights, so they are context, not a benchmark we ran.
Each entry names the model of this project that answers it (``ours``), and which of our metrics
is the closest counterpart. Our values are read from the evaluation artifacts at display time.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.evaluation.comparison import SEG_SPLIT, status_text


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    data: str


@dataclass(frozen=True)
class Reported:
    source: str          # Source.key
    model: str           # as named in the source
    metric: str          # as reported
    value: float         # fraction (0-1)
    ours: str | None     # our model answering it (None: not reproduced)
    note: str = ""


SOURCES: dict[str, Source] = {
    "ensemble_thesis": Source("ensemble_thesis", "Ensemble thesis (2025): CNN stacking ensemble + ResUNet",
                              "brain tumour MRI classification (4 classes) and tumour segmentation"),
    "resnet50_unet_paper": Source("resnet50_unet_paper", "ResNet50 / U-Net paper: backbone comparison",
                                  "brain tumour MRI classification (4 classes)"),
    "unet3d_thesis": Source("unet3d_thesis", "3D U-Net thesis (BraTS 2020)", "BraTS 2020 multi-modal volumes"),
}

REPORTED: tuple[Reported, ...] = (
    Reported("ensemble_thesis", "Xception", "validation accuracy", 0.990, "xception"),
    Reported("ensemble_thesis", "Stacking ensemble", "accuracy", 0.996, "stacking_backbones",
             "same four backbones (Xception, InceptionV3, ResNet50, VGG19)"),
    Reported("ensemble_thesis", "Stacking ensemble", "accuracy", 0.996, "stacking_ensemble",
             "our shipped ensemble of four compact CNNs"),
    Reported("ensemble_thesis", "ResUNet", "validation Dice", 0.760, "resunet"),
    Reported("ensemble_thesis", "Attention U-Net", "validation Dice", 0.732, "attention_unet"),
    Reported("ensemble_thesis", "U-Net", "validation Dice", 0.672, "unet"),
    Reported("resnet50_unet_paper", "EfficientNetB0", "accuracy", 0.913, "efficientnetb0"),
    Reported("resnet50_unet_paper", "ResNet50V2", "accuracy", 0.935, None,
             "not reproduced: this project trained ResNet50 (v1) instead"),
    Reported("resnet50_unet_paper", "InceptionV3", "accuracy", 0.921, "inceptionv3"),
    Reported("resnet50_unet_paper", "DenseNet121", "accuracy", 0.938, "densenet121"),
    Reported("unet3d_thesis", "3D U-Net", "Dice ET", 0.80, "unet2d_brats", "ours: 2D U-Net, 18 BraTS 2021 crops"),
    Reported("unet3d_thesis", "3D U-Net", "Dice ED", 0.75, "unet2d_brats", "ours: 2D U-Net, 18 BraTS 2021 crops"),
    Reported("unet3d_thesis", "3D U-Net", "Dice NCR", 0.70, "unet2d_brats", "ours: 2D U-Net, 18 BraTS 2021 crops"),
)


def _ours(entry: dict | None, item: Reported, split: str) -> tuple[float | None, float | None, str, list | None]:
    """(same-metric value from training, test value, what the test value is, its 95 % CI)."""
    if entry is None:
        return None, None, "", None
    metrics = entry.get("metrics") or {}
    if entry["task"] == "classification":
        s = metrics.get(split) or {}
        return entry.get("val_accuracy"), s.get("accuracy"), f"accuracy, {split} test (n={s.get('n', '—')})", s.get("accuracy_ci95")
    if entry["task"] == "segmentation":
        s = metrics.get(SEG_SPLIT) or {}
        return entry.get("val_dice"), s.get("mean_dice"), "mean Dice, held-out patients (fold 4)", s.get("mean_dice_ci95")
    region = item.metric.split()[-1]
    test = metrics.get("test") or {}
    if test and region not in test:
        return None, None, f"Dice {region}: not computed (the BraTS evaluation reports regions {', '.join(k for k in test if k != 'n')})", None
    return None, (test.get(region) or {}).get("dice"), f"mean Dice {region}, unseen BraTS cases (n={test.get('n', '—')})", None


def reported_table(summary: dict, split: str) -> pd.DataFrame:
    """The reported figures side by side with ours (``split`` picks our classification test split)."""
    rows = []
    for item in REPORTED:
        entry = summary["models"].get(item.ours) if item.ours else None
        val, test, what, ci = _ours(entry, item, split)
        status = status_text(entry) if entry else "not reproduced"
        rows.append({
            "source": SOURCES[item.source].title, "model (source)": item.model, "reported metric": item.metric,
            "reported": item.value, "our model": item.ours or "—", "ours, same metric (validation)": val,
            "ours, test": test, "our test metric": what, "ours CI low": ci[0] if ci else None,
            "ours CI high": ci[1] if ci else None, "our status": status, "note": item.note,
        })
    return pd.DataFrame(rows)
