"""Exports of a slice analysis: mask/overlay PNG, result JSON, features CSV."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
from PIL import Image

from core.morphology import feature_table
from core.pipeline import SliceResult, mask_png


def png_bytes(rgb_or_grey: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb_or_grey, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def result_json(result: SliceResult, extra: dict | None = None) -> bytes:
    """The analysis as pretty-printed UTF-8 JSON (mask embedded as base64 PNG)."""
    payload = result.to_dict(include_mask=True)
    if extra:
        payload.update(extra)
    return json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8")


def features_csv(result: SliceResult) -> bytes:
    """Measurements as CSV rows ``feature,value,unit`` (empty file body when nothing was measured)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["feature", "value", "unit"])
    writer.writeheader()
    if result.features is not None:
        for row in feature_table(result.features):
            value = row["value"]
            writer.writerow({"feature": row["feature"], "unit": row["unit"],
                             "value": round(value, 4) if isinstance(value, float) else value})
    return buffer.getvalue().encode("utf-8")


def mask_png_bytes(result: SliceResult) -> bytes:
    if result.mask is None:
        raise ValueError("no mask: the slice was not segmented")
    return mask_png(result.mask)


def download_stem(name: str) -> str:
    """A safe file-name stem from an upload name (``scan.nii.gz`` → ``scan``)."""
    stem = name.rsplit("/", 1)[-1]
    for suffix in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tiff", ".tif", ".bmp", ".gz"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)
    return safe[:80] or "slice"
