"""Carry the 2D training data to a GPU machine that cannot reach ``$BTD_DATA_DIR``.

    python scripts/gpu_data.py pack --out .carry          # here, with the public data
    python scripts/gpu_data.py unpack .carry --to DATA    # there, before `scripts/gpu_train.sh` (cache: DATA/../cache)
    python scripts/gpu_data.py pack-brats --out .carry3d  # the BraTS training/validation cases
    python scripts/gpu_data.py unpack-brats .carry3d --to DATA
    python scripts/gpu_data.py pack-catalogue --out .carry_cat  # multi-source slices; there: BTD_CATALOGUE

``pack`` stores the preprocessed arrays the training CLIs load (``core.data.datasets``), encoded as
WebP: the 4-class Training split at 128 px lossy (quality 90, 16 MB; training input only), the
Testing split lossless (so evaluation there sees exactly the pixels it sees here), and the
figshare slices at 256 px lossy with bit-packed masks. ``unpack`` rebuilds the dataset folder
layout with empty placeholder files and writes the decoded arrays into ``core.data.datasets``' cache
under those placeholders' keys, so every CLI runs unchanged with ``BTD_DATA_DIR=DATA``.
Only derived arrays travel, never into the repository (``.carry/`` is git-ignored).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import config  # noqa: E402
from core.data.datasets import list_classification, list_segmentation, load_classification, load_segmentation, seed_cache  # noqa: E402
from core.data.packed import LOSSLESS, decode_webp, encode_webp, pack_slices  # noqa: E402

CLS_SIZE, SEG_SIZE = 128, 256
#: What the multi-source trainers read (core.data.sources), packed by `pack-catalogue`.
CATALOGUE_SOURCES = ("fourclass", "tcga_lgg", "brats")


def pack(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for split, quality in (("Training", 90), ("Testing", LOSSLESS)):
        root = data / "brain_mri_4class" / split
        x, labels, paths = load_classification(root, CLS_SIZE)
        arrays[f"{split}_names"] = np.array([p.relative_to(root).as_posix() for p in paths])
        arrays[f"{split}_blob"], arrays[f"{split}_offsets"] = encode_webp(x, quality)
        if quality == LOSSLESS:
            assert np.array_equal(decode_webp(arrays[f"{split}_blob"], arrays[f"{split}_offsets"]), x)
    np.savez_compressed(out / "cls.npz", **arrays)
    root = data / "figshare_3064"
    listing = list_segmentation(root)
    x, y = load_segmentation(listing, SEG_SIZE)
    blob, offsets = encode_webp(x, 90)
    np.savez_compressed(out / "seg.npz", index=np.frombuffer((root / "index.csv").read_bytes(), np.uint8),
             blob=blob, offsets=offsets, masks=np.packbits(y), shape=np.array(y.shape))
    for f in sorted(out.glob("*.npz")):
        print(f"{f.name}: {f.stat().st_size / 1e6:.1f} MB")


def pack_catalogue(data: Path, out: Path, size: int = CLS_SIZE, quality: int = 90,
                   sources: tuple[str, ...] = CATALOGUE_SOURCES) -> Path:
    """The training and validation slices of the multi-source catalogue in one file (``core.data.packed``);
    there, ``BTD_CATALOGUE=OUT/catalogue.npz`` makes ``core.data.sources.load_sources`` read it."""
    from core.data.sources import load_sources

    slices = load_sources(sources, size, data)
    slices = slices.take(np.isin(slices.column("split"), ["train", "val"]))
    path = out / "catalogue.npz"
    print(f"catalogue: {len(slices)} slices, {pack_slices(slices, path, quality) / 1e6:.1f} MB", flush=True)
    return path


def pack_brats(data: Path, out: Path) -> None:
    """The BraTS cases a model may train or validate on: the training and validation cases the
    shipped card records (what ``core.train.brats --split-like unet2d_brats`` reads; its test cases
    stay here), losslessly: LZMA-compressed arrays plus affines."""
    import lzma

    import nibabel as nib

    from core.serving.registry import model_card

    split = model_card("unet2d_brats")["split_cases"]
    folders = [data / "brats" / name for name in split["train"] + split["val"]]
    out.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        arrays: dict[str, np.ndarray] = {}
        for path in sorted(folder.glob("*.nii*")):
            image = nib.load(path)
            data_ = np.asarray(image.dataobj)
            key = path.name.split(".")[0]
            arrays[key] = np.frombuffer(lzma.compress(data_.tobytes(), preset=9), np.uint8)
            arrays[key + "__meta"] = np.array([str(data_.dtype), ",".join(map(str, data_.shape))])
            arrays[key + "__affine"] = image.affine
        np.savez(out / f"{folder.name}.npz", **arrays)
    total = sum(f.stat().st_size for f in out.glob("*.npz"))
    print(f"brats: {len(folders)} cases, {total / 1e6:.1f} MB")


def unpack_brats(carry: Path, to: Path) -> None:
    """Write each packed case back as NIfTI files under ``to/brats/<case>/``."""
    import lzma

    import nibabel as nib

    for pack_file in sorted(carry.glob("*.npz")):
        folder = to / "brats" / pack_file.stem
        folder.mkdir(parents=True, exist_ok=True)
        with np.load(pack_file) as arrays:
            for key in [k for k in arrays.files if "__" not in k]:
                dtype, shape = arrays[key + "__meta"]
                volume = np.frombuffer(lzma.decompress(arrays[key].tobytes()), dtype=str(dtype))
                volume = volume.reshape(tuple(int(v) for v in str(shape).split(",")))
                nib.save(nib.Nifti1Image(volume, arrays[key + "__affine"]), folder / f"{key}.nii.gz")
    print(f"brats: {len(list(carry.glob('*.npz')))} cases", flush=True)


def _placeholders(root: Path, names) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)


def unpack(carry: Path, to: Path, every: int = 1) -> None:
    """Rebuild the layout and caches under ``to``; ``every`` > 1 keeps every n-th item (a quick check)."""
    with np.load(carry / "cls.npz") as cls:
        for split in ("Training", "Testing"):
            root = to / "brain_mri_4class" / split
            names = [str(n) for n in cls[f"{split}_names"]][::every]
            _placeholders(root, names)
            x = decode_webp(cls[f"{split}_blob"], cls[f"{split}_offsets"])[::every]
            listing = list_classification(root)
            order = {n: i for i, n in enumerate(names)}
            x = x[[order[p.relative_to(root).as_posix()] for p in listing.paths]]
            seed_cache("cls", listing.paths, CLS_SIZE, {"x": x})
            print(f"{split}: {len(x)} images", flush=True)
    with np.load(carry / "seg.npz") as seg:
        root = to / "figshare_3064"
        root.mkdir(parents=True, exist_ok=True)
        (root / "index.csv").write_bytes(seg["index"].tobytes())
        with (root / "index.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        keep = np.arange(len(rows))[::every]
        if every > 1:
            with (root / "index.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows[i] for i in keep)
            rows = [rows[i] for i in keep]
        _placeholders(root, [r["image"] for r in rows] + [r["mask"] for r in rows])
        listing = list_segmentation(root)
        shape = tuple(int(v) for v in seg["shape"])
        masks = np.unpackbits(seg["masks"])[:int(np.prod(shape))].reshape(shape).astype(bool)
        seed_cache("seg", listing.images, SEG_SIZE,
                     {"x": decode_webp(seg["blob"], seg["offsets"])[keep], "y": masks[keep]})
        print(f"figshare: {len(keep)} slices", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--out", type=Path, default=Path(".carry"))
    b = sub.add_parser("unpack")
    b.add_argument("carry", type=Path)
    b.add_argument("--to", type=Path, required=True)
    b.add_argument("--every", type=int, default=1, help="keep every n-th image (a quick check)")
    c = sub.add_parser("pack-brats")
    c.add_argument("--out", type=Path, default=Path(".carry3d"))
    e = sub.add_parser("pack-catalogue", help="the multi-source catalogue's training and validation slices")
    e.add_argument("--out", type=Path, default=Path(".carry_cat"))
    e.add_argument("--quality", type=int, default=90, help="WebP quality of the crops (101: lossless)")
    d = sub.add_parser("unpack-brats")
    d.add_argument("carry", type=Path)
    d.add_argument("--to", type=Path, required=True)
    args = p.parse_args(argv)
    data = config.data_dir()
    if args.cmd.startswith("pack") and data is None:
        raise SystemExit("no data: set BTD_DATA_DIR")
    if args.cmd == "pack":
        pack(data, args.out)
    elif args.cmd == "pack-catalogue":
        pack_catalogue(data, args.out, quality=args.quality)
    elif args.cmd == "pack-brats":
        pack_brats(data, args.out)
    elif args.cmd == "unpack-brats":
        unpack_brats(args.carry, args.to)
    else:
        # seed the cache where scripts/gpu_train.sh RUNS looks (RUNS/cache beside RUNS/data), unless set
        if "BTD_CACHE_DIR" not in os.environ:
            config.CACHE_DIR = args.to.parent / "cache"
        print(f"cache: {config.CACHE_DIR}", flush=True)
        unpack(args.carry, args.to, args.every)


if __name__ == "__main__":
    main()
