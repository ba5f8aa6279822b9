"""Exports of a slice analysis: mask/overlay PNG, features CSV, and the full report as PDF and JSON.

:func:`build_report` gathers everything a reader needs into one :class:`Report` -- the input
thumbnail, the calibrated decision with its entropy and the calibration facts, the recognised
sequence and plane, the training-coverage note and the lesion cross-check, each member's vote,
Grad-CAM maps, the segmentation overlay and mask, the measurements with their units, the
warnings, the model names with their weight sha256, the app version and the time -- and
:func:`report_pdf` (fpdf2) and :func:`report_json` render it.

Privacy: DICOM patient identifiers (:data:`core.readers.dicom.IDENTIFYING_DICOM_FIELDS`) are left out unless
``include_identifiers`` is set; when they are left out, any of their values (and the parts of a
person's name) that appear in what came from the upload -- its file name (a file named after the
patient, say) and its header metadata -- are replaced by ``[withheld]``. Everything else in the
report is the app's own text and numbers.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from PIL import Image

from core import config
from core.slices.findings import acquisition_block, lesion_block, outline_caption
from core.readers.decoded import Slice
from core.imaging.morphology import feature_table
from core.slices.pipeline import SliceResult, mask_png
from core.version import APP_NAME, APP_VERSION
from core.imaging.viz import grey_to_rgb, overlay_heatmap, overlay_mask

WITHHELD = "[withheld]"
DISCLAIMER = ("Research and teaching software, not a medical device. The models were trained from scratch "
              "on public datasets; their outputs must not guide diagnosis or treatment.")
#: Longest side of the images embedded in a report (pixels).
REPORT_IMAGE_SIDE = 384


# --------------------------------------------------------------------------- small exports

def png_bytes(rgb_or_grey: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb_or_grey, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def result_json(result: SliceResult, extra: dict | None = None) -> bytes:
    """The bare analysis as pretty-printed UTF-8 JSON (mask embedded as base64 PNG)."""
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


# --------------------------------------------------------------------------- privacy

def identifier_secrets(identifiers: dict[str, str]) -> list[str]:
    """Strings to withhold: every identifier value and each part (3+ characters) of a person's name."""
    secrets: set[str] = set()
    for value in identifiers.values():
        value = str(value).strip()
        if len(value) >= 3:
            secrets.add(value)
        for part in re.split(r"[\^\s,]+", value):
            if len(part) >= 3:
                secrets.add(part)
    return sorted(secrets, key=len, reverse=True)


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` (str, or lists/dict values of them) with every secret replaced by ``[withheld]``.

    Matching ignores case and needs the secret to stand alone (not inside a longer word), so
    ``DOE_JANE.dcm`` loses both parts of the name ``Doe^Jane``. Dict keys are left alone.
    """
    if not secrets:
        return value
    if isinstance(value, str):
        alternatives = "|".join(re.escape(s) for s in secrets)
        pattern = re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", flags=re.IGNORECASE)
        return pattern.sub(WITHHELD, value)
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value


# --------------------------------------------------------------------------- the report

@dataclass
class Report:
    """A rendered-ready report: JSON-able ``data`` and named uint8 ``images``."""

    data: dict[str, Any]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)


def _small(image: np.ndarray, side: int = REPORT_IMAGE_SIDE) -> np.ndarray:
    """Shrink an image (uint8 grey or RGB) so its longest side is at most ``side``."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    scale = side / max(h, w)
    pil = Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    return np.asarray(pil)


def _by_class(classes: list[str], values: list[float] | None) -> dict[str, float] | None:
    return None if values is None else {c: round(float(v), 6) for c, v in zip(classes, values)}


def build_report(slice_: Slice, result: SliceResult, *, synthetic: bool = False, include_identifiers: bool = False,
                 overlay_style: str = "fill", overlay_opacity: float = 0.4, cam_opacity: float = 0.5,
                 created: datetime | None = None) -> Report:
    """Everything the PDF and JSON show about one analysed slice (see the module docstring)."""
    created = created or datetime.now(timezone.utc)
    classes = result.classes
    identifiers = dict(slice_.identifiers)
    secrets = [] if include_identifiers else identifier_secrets(identifiers)
    images: dict[str, np.ndarray] = {"input": _small(grey_to_rgb(slice_.image))}
    captions = {"input": "Input slice"}
    if result.gradcam:
        for name, heat in result.gradcam.items():
            key = f"gradcam_{name}"
            images[key] = _small(overlay_heatmap(slice_.image, heat, cam_opacity))
            captions[key] = f"Grad-CAM: {name}"
    if result.segmented and result.mask is not None:
        images["overlay"] = _small(overlay_mask(slice_.image, result.mask, overlay_style, overlay_opacity))
        images["mask"] = _small(np.where(result.mask, 255, 0).astype(np.uint8))
        captions.update({"overlay": outline_caption(result), "mask": "Binary mask"})
    units = {"file": "mm (pixel spacing from the file)", "user": "mm (pixel spacing entered by the user)",
             "unknown": "pixels (pixel spacing unknown)"}[result.spacing_source]
    data: dict[str, Any] = {
        "report": {"title": "Brain-tumour MRI slice analysis", "app": APP_NAME, "app_version": APP_VERSION,
                   "created_utc": created.isoformat(timespec="seconds"), "disclaimer": DISCLAIMER},
        "input": {
            "file": scrub(slice_.name, secrets), "format": slice_.source_format.upper(), "shape_hw": list(result.shape),
            "pixel_spacing_mm": list(result.spacing_mm) if result.spacing_mm else None,
            "spacing_source": result.spacing_source, "synthetic": bool(synthetic),
            "metadata": scrub(dict(slice_.metadata), secrets),
            "patient_identifiers": identifiers if include_identifiers else (
                f"withheld ({len(identifiers)} DICOM identifying fields in the file)" if identifiers else "none in the file"),
        },
        "input_guard": result.guard,
        "training_set_match": result.training_match,
        "decision": {
            "class": result.decision, "label": result.decision_label, "probability": round(result.confidence, 6),
            "normalised_entropy": round(result.entropy, 4), "members_agreeing": result.agreement,
            "caution": result.caution, "probabilities": _by_class(classes, result.probabilities),
            "uncalibrated_probabilities": _by_class(classes, result.uncalibrated_probabilities),
            "calibration": result.calibration,
        },
        "acquisition": acquisition_block(result),
        "coverage_note": result.coverage_note,
        "lesion_check": lesion_block(result),
        "members": [{"name": n, "vote": v, "vote_label": config.CLASS_LABELS[v],
                     "probabilities": _by_class(classes, result.member_probabilities[n])}
                    for n, v in result.member_votes.items()],
        "gradcam": {"class": result.gradcam_class, "feature_layers": result.gradcam_layers,
                    "maps": sorted(result.gradcam or {})} if result.gradcam else None,
        "segmentation": {"segmented": result.segmented,
                         "mask_pixels": int(result.mask.sum()) if result.mask is not None else None},
        "measurements": {"units": units, "rows": feature_table(result.features)} if result.features else None,
        "warnings": list(result.warnings),
        "models": [{"name": n, "sha256": h, "runtime": result.model_runtimes.get(n, "")}
                   for n, h in result.model_versions.items()],
        "timings_ms": dict(result.timings_ms),
    }
    return Report(data, images, captions)


def report_json(report: Report) -> bytes:
    """The report as UTF-8 JSON, images embedded as base64 PNG under ``images``."""
    payload = dict(report.data)
    payload["images"] = {name: {"caption": report.captions.get(name, name),
                                "png_base64": base64.b64encode(png_bytes(img)).decode("ascii")}
                         for name, img in report.images.items()}
    return json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- PDF

_LATIN1 = str.maketrans({"—": "-", "–": "-", "…": "...", "’": "'", "‘": "'", "“": '"', "”": '"',
                         "≥": ">=", "≤": "<=", "→": "->", "·": "-", "•": "-"})


def _t(text: Any) -> str:
    """Text the PDF core fonts can encode (Latin-1)."""
    return str(text).translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "-" if value is None else str(value)


class _Pdf:
    """Thin layout helpers over ``fpdf.FPDF`` (A4 portrait, mm)."""

    def __init__(self, title: str):
        from fpdf import FPDF

        self.pdf = FPDF(orientation="P", unit="mm", format="A4")
        self.pdf.set_auto_page_break(auto=True, margin=14)
        self.pdf.set_title(_t(title))
        self.pdf.set_creator(_t(f"{APP_NAME} {APP_VERSION}"))
        self.pdf.add_page()

    def heading(self, text: str, size: int = 12) -> None:
        self.pdf.ln(2)
        self.pdf.set_font("Helvetica", "B", size)
        self.pdf.cell(0, 7, _t(text), new_x="LMARGIN", new_y="NEXT")

    def text(self, text: str, size: int = 9, style: str = "", colour: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.pdf.set_font("Helvetica", style, size)
        self.pdf.set_text_color(*colour)
        self.pdf.multi_cell(0, 4.6, _t(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_text_color(0, 0, 0)

    def table(self, rows: list[list[Any]], widths: tuple[float, ...] | None = None, size: int = 8,
              font: str = "Helvetica") -> None:
        self.pdf.set_font(font, "", size)
        with self.pdf.table(col_widths=widths, text_align="LEFT", line_height=4.4, padding=0.8) as table:
            for values in rows:
                row = table.row()
                for value in values:
                    row.cell(_t(_fmt(value)))
        self.pdf.set_font("Helvetica", "", 9)

    def images(self, items: list[tuple[np.ndarray, str]], width: float = 44.0, title: str = "") -> None:
        """A row of images with captions (and an optional line above), kept together on one page."""
        if not items:
            return
        gap = 2.0
        heights = [width * img.shape[0] / img.shape[1] for img, _ in items]
        needed = max(heights) + 9 + (6 if title else 0)
        if self.pdf.get_y() + needed > self.pdf.h - self.pdf.b_margin:
            self.pdf.add_page()
        if title:
            self.text(title, 8)
        x0, y0 = self.pdf.l_margin, self.pdf.get_y()
        for i, ((img, caption), h) in enumerate(zip(items, heights)):
            x = x0 + i * (width + gap)
            self.pdf.image(Image.fromarray(img), x=x, y=y0, w=width, h=h)
            self.pdf.set_xy(x, y0 + h + 0.5)
            self.pdf.set_font("Helvetica", "", 7)
            self.pdf.multi_cell(width, 3.2, _t(caption), align="C")
        self.pdf.set_xy(x0, y0 + needed)

    def bytes(self) -> bytes:
        return bytes(self.pdf.output())


def _acquisition_text(acq: dict[str, Any] | None) -> str:
    """The PDF line on the recognised sequence and plane."""
    stated = (acq or {}).get("stated")
    told = ""
    if stated:
        told = f"File states {stated['label']} ({stated['evidence']})" + (
            f"; {stated['disagreement']}" if stated.get("disagreement") else "") + ". "
    if not acq or "label" not in acq:
        return told + "Not recognised (no sequence/plane model with these weights)."
    unsure = "" if acq["confident"] else " - UNSURE"
    return (told + f"{acq['label']} (sequence {acq['sequence_confidence']:.2f}, plane {acq['plane_confidence']:.2f})"
            f"{unsure}; recognised by {acq['model']}")


def _lesion_text(check: dict[str, Any] | None) -> str:
    """The PDF line on the lesion cross-check of a "no tumour" decision."""
    if not check:
        return "Not run (a tumour was reported, or no cross-check rule ships with these weights)."
    rule = check.get("rule") or {}
    figures = (f"strongest region of {check['evidence_model']}: {check['figures']}; rule: confidence >= "
               f"{_fmt(rule.get('min_confidence'))} and area >= {100 * (rule.get('min_area_fraction') or 0):.2g} %")
    verdict = "POSSIBLE LESION - review the outlined region" if check.get("possible_lesion") else "no lesion flagged"
    return f"{verdict} ({figures})"


def _pdf_findings(pdf: _Pdf, d: dict[str, Any]) -> None:
    """Sequence and plane, training coverage and lesion cross-check, just under the decision."""
    pdf.table([["Sequence and plane", _acquisition_text(d.get("acquisition"))],
               ["Lesion cross-check", _lesion_text(d.get("lesion_check"))]], (40, 150))
    if d.get("coverage_note"):
        pdf.text(f"Training coverage: {d['coverage_note']}", 9, "B", (180, 0, 0))
    check = d.get("lesion_check") or {}
    if check.get("possible_lesion"):
        pdf.text(f"Possible lesion: the classifier reports no tumour, but {check['evidence_by']} outlines a confident "
                 "region; the overlay, mask and measurements below show that region.", 9, "B", (180, 0, 0))
    pdf.pdf.ln(1.5)


def report_pdf(report: Report) -> bytes:
    """The report as a PDF (fpdf2 core fonts; every section of :func:`build_report`)."""
    d = report.data
    meta, inp, dec = d["report"], d["input"], d["decision"]
    pdf = _Pdf(meta["title"])
    pdf.heading(meta["title"], 15)
    pdf.text(f"{meta['app']} version {meta['app_version']} - created {meta['created_utc']} (UTC)")
    pdf.text(meta["disclaimer"], 8, "I", (90, 90, 90))

    pdf.heading("Input")
    spacing = ("x".join(f"{v:.3g}" for v in inp["pixel_spacing_mm"]) + f" mm ({inp['spacing_source']})"
               if inp["pixel_spacing_mm"] else "unknown")
    rows = [["File", inp["file"] + (" (synthetic sample)" if inp["synthetic"] else "")],
            ["Format / size", f"{inp['format']}, {inp['shape_hw'][1]} x {inp['shape_hw'][0]} px"],
            ["Pixel spacing", spacing]]
    ids = inp["patient_identifiers"]
    rows.append(["Patient identifiers", "; ".join(f"{k}: {v}" for k, v in ids.items()) if isinstance(ids, dict) else ids])
    guard = d.get("input_guard")
    if guard:
        state = "accepted" if guard.get("accepted") else (
            "refused, overridden by the user" if guard.get("overridden") else "refused")
        score = f" (OOD score {guard['score']:.1f}, limit {guard['limit']:.1f})" if guard.get("score") is not None else ""
        rows.append(["Input guard", state + score])
    match = d.get("training_set_match")
    rows.append(["Training-set look-up", (f"MATCH: {match['name']} (phash distance {match['phash_distance']}, "
                                          f"dhash distance {match['dhash_distance']})") if match else "no match"])
    pdf.table(rows, (40, 150))

    pdf.heading("Decision")
    colour = (180, 0, 0) if dec["caution"] else (0, 0, 0)
    pdf.text(f"{dec['label']}: calibrated probability {dec['probability']:.1%}; normalised entropy "
             f"{dec['normalised_entropy']:.2f}; members agreeing {dec['members_agreeing']:.0%}"
             + ("  -  CAUTION: treat as uncertain (see the warnings)" if dec["caution"] else ""), 11, "B", colour)
    _pdf_findings(pdf, d)
    prob_rows = [["Class", "Calibrated probability", "Before calibration"]]
    for cls, p in dec["probabilities"].items():
        raw = (dec["uncalibrated_probabilities"] or {}).get(cls)
        prob_rows.append([config.CLASS_LABELS[cls], f"{p:.4f}", "-" if raw is None else f"{raw:.4f}"])
    pdf.table(prob_rows, (50, 50, 50))
    cal = dec.get("calibration") or {}
    if cal:
        pdf.text(f"Calibration: {cal['method']}, fitted on the {cal['fitted_on']}; temperature "
                 f"{_fmt(cal['temperature'])}; expected calibration error on validation (n={cal['n_validation']}) "
                 f"{_fmt(cal['ece_before'])} before and {_fmt(cal['ece_after'])} after.", 8)

    pdf.heading("Member votes")
    labels = [config.CLASS_LABELS[c] for c in dec["probabilities"]]
    member_rows = [["Member", "Vote", *labels]]
    for m in d["members"]:
        member_rows.append([m["name"], m["vote_label"], *[f"{p:.3f}" for p in m["probabilities"].values()]])
    pdf.table(member_rows)

    pdf.heading("Warnings")
    pdf.text("\n".join(f"- {w}" for w in d["warnings"]) if d["warnings"] else "None.")

    pdf.heading("Images")
    main = [(report.images[k], report.captions[k]) for k in ("input", "gradcam_average", "overlay", "mask")
            if k in report.images]
    pdf.images(main)
    members = [(img, report.captions[k]) for k, img in report.images.items()
               if k.startswith("gradcam_") and k != "gradcam_average"]
    if members:
        cam = d.get("gradcam") or {}
        pdf.images(members, title=f"Grad-CAM of each member for the class "
                   f"{config.CLASS_LABELS.get(cam.get('class'), cam.get('class'))} (red = most evidence), "
                   "on the slice's own pixel grid:")

    pdf.heading("Measurements")
    meas = d.get("measurements")
    if meas:
        pdf.text(f"Units: {meas['units']}.", 8)
        pdf.table([["Feature", "Value", "Unit"]] + [[r["feature"], _fmt(r["value"]), r["unit"]] for r in meas["rows"]],
                  (80, 40, 30))
    else:
        pdf.text("Not measured (the slice was not segmented, or the mask is empty).")

    pdf.heading("Models")
    pdf.table([["Model", "Weights sha256", "Runs on"]] + [[m["name"], m["sha256"], m.get("runtime", "")]
                                                          for m in d["models"]], (42, 128, 20), 7)
    if d.get("timings_ms"):
        pdf.text("Timings: " + ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in d["timings_ms"].items()), 8)
    return pdf.bytes()
