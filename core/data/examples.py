"""Real example slices bundled with the app (``sample_data/real/``), and the rule that chose them.

The public datasets are never copied into the repository, with one exception (the data README's
"Bundled examples"): up to 12 real slices so that the app opens on real scans. They are listed in
``sample_data/SOURCES.csv`` with their dataset, licence, citation, patient or original file name,
fold, expert label and plane, and were chosen by the rule below, which looks only at the datasets'
indexes, the images' planes and whether a Training image copies them — never at how any model does
on them.

**The rule** (:data:`RULE`, applied by :func:`choose`):

* Glioma, meningioma and pituitary tumour: ``figshare_3064`` slices of fold 4, the patients held
  out from the segmenter (its test fold) and the lesion detector (trained on folds 1-2). The
  classifier members' 4-class training saw the whole ``brain_mri_4class`` Training split, which
  contains near-copies of some fold-4 slices, so a slice qualifies only if **no 4-class Training
  image copies it** (:meth:`core.trust.hash_index.HashIndex.query` of :func:`core.data.sources.fourclass_hash_index`
  finds none, mirrored images included). A patient's *series* is a run of consecutive slice ids
  (one plane each; planes from :func:`core.data.sources.figshare_planes`). For each class, take the
  fold-4 patients in order of their patient id (as text) and from each patient at most one slice:
  in the patient's first series (in slice-id order) whose plane the class does not have yet and
  that holds a qualifying slice, the qualifying slice nearest the series' middle (the middle is
  position ``len // 2``; of two equally near, the lower id) — until the class has
  :data:`PER_CLASS` slices in different planes. The expert's tumour mask is bundled beside each.
* No tumour: ``brain_mri_4class/Testing/notumor`` images that are not copies of any Training
  image (the clean list of ``weights/eval/dedup_testing.json``), in file-name order, the first
  :data:`PER_CLASS`.

Neither dataset records the plane. The figshare planes were labelled by eye for every series
(``core/data/annotations/figshare_planes.csv``); the Testing images' planes were determined by looking
at them and are recorded in :data:`TESTING_PLANES`. The rule stops with an error on a series or an
image whose plane is not recorded.

    python -m core.examples --data $BTD_DATA_DIR          # (re)write sample_data/real/ and SOURCES.csv
    python -m core.examples --data $BTD_DATA_DIR --check  # only check the bundled files against the rule
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from core import config

#: Folder of the bundled real slices (and masks), and the list that documents them.
EXAMPLE_FOLDER = "real"
SOURCES_FILE = "SOURCES.csv"
#: Slices per class.
PER_CLASS = 2
#: The figshare fold held out from the segmenter and the lesion detector (the classifier members' 4-class
#: training saw copies of some of its slices: the rule skips those).
FIGSHARE_FOLD = 4
TUMOUR_CLASSES = ("glioma", "meningioma", "pituitary")
#: Most real slices the data README allows in the repository.
MAX_EXAMPLES = 12

RULE = ("Glioma, meningioma and pituitary: figshare_3064 fold-4 slices (patients held out from the segmenter "
        "and the lesion detector) that no brain_mri_4class Training image copies (the classifier members' 4-class "
        "training saw that split, which holds near-copies of some fold-4 slices, so those are skipped). For each "
        "class, the fold-4 patients in order of patient id, at most one slice each: in the patient's first series "
        "(run of consecutive slice ids, in id order) whose plane the class does not have yet and that holds a slice "
        "with no copy in Training, of those slices the one nearest the series' middle (the lower id on a tie), "
        "until the "
        "class has two slices in two different planes. No tumour: the first two brain_mri_4class Testing no-tumour "
        "images, in file-name order, that copy no Training image (weights/eval/dedup_testing.json). Planes were "
        "determined by looking at the images (core/data/annotations/figshare_planes.csv). No model output was used.")

FIGSHARE = {"dataset": "figshare_3064", "licence": "CC BY 4.0",
            "citation": "J. Cheng et al., brain tumor dataset, figshare 2017, doi:10.6084/m9.figshare.1512427"}
TESTING = {"dataset": "brain_mri_4class", "licence": "CC0 1.0",
           "citation": "M. Nickparvar, Brain Tumor MRI Dataset, Kaggle 2021, doi:10.34740/KAGGLE/DSV/2645886"}

#: Plane of each de-duplicated Testing no-tumour image the rule inspects (all three clean ones are axial).
TESTING_PLANES: dict[str, str] = {
    "notumor/Te-no_0105.jpg": "axial",
    "notumor/Te-no_0180.jpg": "axial",
}

COLUMNS = ("file", "mask", "dataset", "licence", "citation", "patient_or_original_name", "fold", "expert_label",
           "plane", "source_path", "spacing_mm")
#: ``SOURCES.csv`` lists every bundled file in its ``file`` column: a slice row, then a row of ``kind``
#: :data:`MASK_KIND` for its expert mask (same provenance; ``source_path`` is the mask's).
CSV_COLUMNS = ("file", "kind", *COLUMNS[1:])
SLICE_KIND, MASK_KIND = "slice", "expert mask"


class ExampleError(RuntimeError):
    """The datasets do not allow the rule to be applied (missing files, a plane not recorded)."""


@dataclass(frozen=True)
class Example:
    """One bundled real slice, as listed in ``sample_data/SOURCES.csv``."""

    file: str                   # inside sample_data/
    mask: str | None            # inside sample_data/ (figshare only)
    dataset: str
    licence: str
    citation: str
    patient_or_original_name: str
    fold: str
    expert_label: str           # a class of config.CLASS_NAMES
    plane: str
    source_path: str            # inside the dataset folder
    spacing_mm: float | None    # in-plane pixel spacing stated by the dataset's notes (none in the file)

    @property
    def title(self) -> str:
        """How the app lists it: ``Glioma · axial · figshare patient 112105, slice 743``."""
        label = config.CLASS_LABELS[self.expert_label]
        if self.dataset == FIGSHARE["dataset"]:
            where = f"figshare patient {self.patient_or_original_name}, slice {Path(self.source_path).stem}"
        else:
            where = f"Kaggle Testing {self.patient_or_original_name}"
        return f"{label} · {self.plane} · {where}"

    @property
    def credit(self) -> str:
        return f"{self.citation} ({self.licence})"

    def row(self) -> dict[str, str]:
        return {c: ("" if getattr(self, c) is None else str(getattr(self, c))) for c in COLUMNS}


def bundled(sample_dir: Path | None = None) -> list[Example]:
    """The examples listed in ``SOURCES.csv`` (empty when the file is absent), in listed order."""
    path = (sample_dir or config.SAMPLE_DIR) / SOURCES_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(row for row in handle if not row.startswith("#")))
    return [Example(**{**{c: row.get(c, "") for c in COLUMNS}, "mask": row.get("mask") or None,
                       "spacing_mm": float(row["spacing_mm"]) if row.get("spacing_mm") else None})
            for row in rows if row.get("kind", SLICE_KIND) != MASK_KIND]


def _series(ids: Iterable[int]) -> list[list[int]]:
    """Runs of consecutive ids, in order."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def middle_out(series: list[int]) -> list[int]:
    """A series' slice ids, nearest its middle (position ``len // 2``) first; of two equally near, the lower id."""
    middle = len(series) // 2
    return [series[k] for k in sorted(range(len(series)), key=lambda k: (abs(k - middle), k))]


def training_copy_check(root: Path) -> Callable[[Path], bool]:
    """``is_copy(image path)``: whether a ``brain_mri_4class`` Training image copies the image
    (:func:`core.data.sources.fourclass_hash_index`, built from the data folder, cached). The index is
    built on the first call."""
    index = None

    def is_copy(image: Path) -> bool:
        nonlocal index
        if index is None:
            from core.data.sources import fourclass_hash_index

            if not (root / TESTING["dataset"] / "Training").is_dir():
                raise ExampleError(f"{root / TESTING['dataset'] / 'Training'} is missing: the rule needs it to "
                                   "skip slices that a Training image copies")
            index = fourclass_hash_index(root)
        from core.data.datasets import read_grey

        return index.query(read_grey(image)) is not None

    return is_copy


def _figshare_choice(root: Path, is_copy: Callable[[Path], bool] | None = None,
                     planes: dict[int, str] | None = None) -> list[Example]:
    index = root / FIGSHARE["dataset"] / "index.csv"
    if not index.is_file():
        raise ExampleError(f"{index} is missing")
    if planes is None:
        from core.data.sources import figshare_planes

        planes = figshare_planes()
    is_copy = is_copy or training_copy_check(root)
    with index.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("fold") == str(FIGSHARE_FOLD)]
    by_id = {int(r["id"]): r for r in rows}
    chosen: list[Example] = []
    for cls in TUMOUR_CLASSES:
        patients = sorted({r["patient_id"] for r in rows if r["label"] == cls})
        taken: list[str] = []
        for patient in patients:
            if len(taken) == PER_CLASS:
                break
            ids = [i for i, r in by_id.items() if r["label"] == cls and r["patient_id"] == patient]
            for series in _series(ids):
                plane = planes.get(series[0])
                if plane is None or any(planes.get(i) != plane for i in series):
                    raise ExampleError(f"the plane of figshare series {series[0]}-{series[-1]} (patient {patient}) "
                                       "is not recorded (or not one plane) in core/data/annotations/figshare_planes.csv: "
                                       "look at the slices and add it")
                if plane in taken:
                    continue
                pick = next((i for i in middle_out(series)
                             if not is_copy(root / FIGSHARE["dataset"] / by_id[i]["image"])), None)
                if pick is None:
                    continue
                row = by_id[pick]
                stem = f"figshare_{cls}_{plane}_{pick}"
                chosen.append(Example(f"{EXAMPLE_FOLDER}/{stem}.jpg", f"{EXAMPLE_FOLDER}/{stem}_mask.png",
                                      FIGSHARE["dataset"], FIGSHARE["licence"], FIGSHARE["citation"], patient,
                                      str(FIGSHARE_FOLD), cls, plane, row["image"], 0.98))
                taken.append(plane)
                break
        if len(taken) < PER_CLASS:
            raise ExampleError(f"fewer than {PER_CLASS} planes of {cls} without a copy in Training among the "
                               f"fold-{FIGSHARE_FOLD} patients")
    return chosen


def _testing_choice(root: Path, clean_list: Path) -> list[Example]:
    clean = json.loads(clean_list.read_text())["clean"]
    names = sorted(p for p in clean if p.startswith(f"{config.NO_TUMOUR_CLASS}/"))[:PER_CLASS]
    chosen = []
    for relative in names:
        if relative not in TESTING_PLANES:
            raise ExampleError(f"the plane of Testing/{relative} is not recorded in core.data.examples.TESTING_PLANES")
        plane = TESTING_PLANES[relative]
        name = Path(relative).name
        chosen.append(Example(f"{EXAMPLE_FOLDER}/testing_notumor_{plane}_{Path(name).stem}.jpg", None,
                              TESTING["dataset"], TESTING["licence"], TESTING["citation"], name,
                              "official Testing split (not a copy of a Training image)", config.NO_TUMOUR_CLASS,
                              plane, f"Testing/{relative}", None))
    if not (root / TESTING["dataset"] / "Testing").is_dir():
        raise ExampleError(f"{root / TESTING['dataset'] / 'Testing'} is missing")
    return chosen


def choose(data_dir: Path, clean_list: Path | None = None) -> list[Example]:
    """The examples :data:`RULE` picks from the datasets under ``data_dir`` (tumour classes first)."""
    clean_list = clean_list or config.WEIGHTS_DIR / "eval" / "dedup_testing.json"
    chosen = _figshare_choice(data_dir) + _testing_choice(data_dir, clean_list)
    assert len(chosen) <= MAX_EXAMPLES
    return chosen


def source_file(example: Example, data_dir: Path, mask: bool = False) -> Path:
    """The dataset file an example (or, ``mask=True``, its expert mask: ``masks/<id>.png``) was copied from."""
    folder = data_dir / example.dataset
    return folder / "masks" / f"{Path(example.source_path).stem}.png" if mask else folder / example.source_path


def sources_csv(examples: list[Example]) -> str:
    """One row per bundled file: each slice, then its expert mask (so every file is listed by name)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for example in examples:
        writer.writerow({**example.row(), "kind": SLICE_KIND})
        if example.mask:
            mask_source = source_file(example, Path("."), mask=True).relative_to(example.dataset).as_posix()
            writer.writerow({**example.row(), "kind": MASK_KIND, "file": example.mask, "mask": "",
                             "source_path": mask_source})
    return buffer.getvalue()


def write(data_dir: Path, out: Path | None = None) -> list[Example]:
    """Copy the chosen files byte for byte into ``out`` (``sample_data/``) and write ``SOURCES.csv``."""
    out = out or config.SAMPLE_DIR
    examples = choose(data_dir)
    (out / EXAMPLE_FOLDER).mkdir(parents=True, exist_ok=True)
    for stale in (out / EXAMPLE_FOLDER).iterdir():
        if stale.is_file():
            stale.unlink()
    for example in examples:
        (out / example.file).write_bytes(source_file(example, data_dir).read_bytes())
        if example.mask:
            (out / example.mask).write_bytes(source_file(example, data_dir, mask=True).read_bytes())
    (out / SOURCES_FILE).write_text(sources_csv(examples), encoding="utf-8")
    return examples


def check(data_dir: Path, sample_dir: Path | None = None) -> list[str]:
    """Differences between the bundled examples and what the rule picks now (empty when they agree)."""
    sample_dir = sample_dir or config.SAMPLE_DIR
    problems = []
    listed, expected = bundled(sample_dir), choose(data_dir)
    if listed != expected:
        problems.append("SOURCES.csv does not list what the rule picks")
    for example in expected:
        for name, mask in ((example.file, False), (example.mask, True)):
            if name is None:
                continue
            here = sample_dir / name
            if not here.is_file() or here.read_bytes() != source_file(example, data_dir, mask).read_bytes():
                problems.append(f"{name} is missing or differs from its dataset file")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="public data folder (default: BTD_DATA_DIR)")
    parser.add_argument("--check", action="store_true", help="only compare the bundled files with the rule")
    args = parser.parse_args(argv)
    data_dir = args.data or config.data_dir()
    if data_dir is None:
        parser.error("no public data folder: pass --data or set BTD_DATA_DIR")
    if args.check:
        problems = check(data_dir)
        print("\n".join(problems) or "the bundled examples follow the rule")
        return 1 if problems else 0
    for example in write(data_dir):
        print(f"{example.file}: {example.title}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
