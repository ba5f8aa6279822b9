"""Moving training to a GPU machine and its models back: the data carry (scripts/gpu_data.py)
rebuilds exactly the arrays the training CLIs load, and `core.serving.registry promote` brings a model
trained elsewhere in with its card, log and checksum."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from core import config

from core.data import datasets

from core.serving import registry

ROOT = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_data", ROOT / "scripts" / "gpu_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _brain(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bright textured ellipse on black: enough for the brain crop."""
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.33 * size)) ** 2 < 1
    return np.where(inside, rng.integers(60, 220, (size, size)), 0).astype(np.uint8)


@pytest.fixture()
def public_data(tmp_path: Path) -> Path:
    """A miniature of the public layout: 4-class Training/Testing and a figshare index with masks."""
    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    for split, n in (("Training", 3), ("Testing", 2)):
        for label in ("glioma", "notumor"):
            folder = data / "brain_mri_4class" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(folder / f"{split[:2]}-{label[:2]}_{i}.jpg"), _brain(rng, 150 + 10 * i))
    seg = data / "figshare_3064"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    rows = []
    for i in range(4):
        cv2.imwrite(str(seg / "images" / f"{i}.jpg"), _brain(rng, 256))
        mask = np.zeros((256, 256), np.uint8)
        mask[100 + i:140, 90:130 + i] = 255
        cv2.imwrite(str(seg / "masks" / f"{i}.png"), mask)
        rows.append({"id": i, "image": f"images/{i}.jpg", "mask": f"masks/{i}.png", "label": "glioma",
                     "patient_id": f"p{i // 2}", "fold": 1 + i // 2})
    with (seg / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return data


def test_carried_data_loads_as_the_same_arrays(public_data: Path, tmp_path: Path, monkeypatch):
    gpu_data = _load_script()
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache_here")
    gpu_data.pack(public_data, tmp_path / "carry")
    here = {split: datasets.load_classification(public_data / "brain_mri_4class" / split, 128)
            for split in ("Training", "Testing")}
    seg_here = datasets.load_segmentation(datasets.list_segmentation(public_data / "figshare_3064"), 256)

    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache_there")
    there_root = tmp_path / "there"
    gpu_data.unpack(tmp_path / "carry", there_root)
    for split, (x, labels, paths) in here.items():
        x2, labels2, paths2 = datasets.load_classification(there_root / "brain_mri_4class" / split, 128)
        assert [p.name for p in paths2] == [p.name for p in paths]
        assert np.array_equal(labels2, labels)
        assert all(p.stat().st_size == 0 for p in paths2)  # placeholders: the cache holds the pixels
        if split == "Testing":
            assert np.array_equal(x2, x)  # lossless: evaluation there sees the same pixels
        else:
            assert np.abs(x2.astype(int) - x).mean() < 3  # WebP quality 90
    listing = datasets.list_segmentation(there_root / "figshare_3064")
    assert listing.patients == ["p0", "p0", "p1", "p1"] and listing.folds == [1, 1, 2, 2]
    images, masks = datasets.load_segmentation(listing, 256)
    assert np.array_equal(masks, seg_here[1])
    assert np.abs(images.astype(int) - seg_here[0]).mean() < 3


def _tiny_card(file: str) -> dict:
    return {"task": "segmentation", "role": "comparison", "architecture": "unet", "file": file,
            "classes": ["tumour"], "data": "$BTD_DATA_DIR/figshare_3064", "split": "patient-wise",
            "metrics": {"val": {"mean_dice": 0.5}}, "log": "logs/tiny.csv",
            "training_command": "python -m core.train.segmenter --model unet --out runs/gpu/segmenters",
            "trained_at": "2026-11-25T00:00:00Z", "backend": "jax"}


def test_promote_copies_file_log_and_card(tmp_path: Path):
    source, target = tmp_path / "runs", tmp_path / "weights"
    (source / "logs").mkdir(parents=True)
    target.mkdir()
    (source / "tiny.keras").write_bytes(b"weights")
    (source / "logs" / "tiny.csv").write_text("epoch,loss\n0,1.0\n")
    registry.record_model("tiny", _tiny_card("tiny.keras"), source)

    card = registry.promote("tiny", source, target)
    assert (target / "tiny.keras").read_bytes() == b"weights"
    assert (target / "logs" / "tiny.csv").read_text() == "epoch,loss\n0,1.0\n"
    stored = json.loads((target / "manifest.json").read_text())["models"]["tiny"]
    assert stored == card and stored["promoted_from"] == str(source)
    assert stored["sha256"] == registry.file_sha256(target / "tiny.keras")
    assert registry.verified_path("tiny", target) == target / "tiny.keras"
    assert stored["role"] == _tiny_card("tiny.keras").get("role")
    assert registry.promote("tiny", source, target, role="shipped")["role"] == "shipped"


def test_promote_refuses_a_file_that_does_not_match_its_card(tmp_path: Path):
    source, target = tmp_path / "runs", tmp_path / "weights"
    source.mkdir()
    target.mkdir()
    (source / "tiny.keras").write_bytes(b"weights")
    registry.record_model("tiny", _tiny_card("tiny.keras"), source)
    (source / "tiny.keras").write_bytes(b"tampered")
    with pytest.raises(registry.ModelUnavailable):
        registry.promote("tiny", source, target)
    assert not (target / "tiny.keras").exists()


def test_gpu_queue_runs_each_job_once_and_marks_it_done(tmp_path: Path):
    """scripts/gpu_train.sh with a stand-in interpreter (an echo): every named job runs with the
    shared recipe and leaves its log and exit status; an unknown job name is refused."""
    import subprocess
    import time

    stand_in = tmp_path / "python"   # says which packed catalogue the job would read, then its arguments
    stand_in.write_text('#!/bin/sh\necho "catalogue=${BTD_CATALOGUE:-none} $*"\n')
    stand_in.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(stand_in)}
    script = ROOT / "scripts" / "gpu_train.sh"
    runs = tmp_path / "runs"
    jobs = ["ms_densenet_compact", "resnet_compact", "resunet_fullres", "scratch_mobilenet_compact", "unet",
            "unet3d_regions", "vgg19"]
    out = subprocess.run(["bash", str(script), str(runs), "2", "2", *jobs],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "queued 7 jobs" in out.stdout
    deadline = time.monotonic() + 30
    while len(list((runs / "done").glob("*"))) < 7 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(p.name for p in (runs / "done").iterdir()) == jobs
    assert all((runs / "done" / n).read_text().strip() == "0" for n in jobs)
    multisource = (runs / "logs" / "ms_densenet_compact.log").read_text()
    assert "-m core.train.classifier" in multisource and "--sources fourclass tcga_lgg brats" in multisource
    assert "--init-from weights/densenet_compact.keras" in multisource and f"--out {runs}/multisource" in multisource
    assert "catalogue=.carry_cat/catalogue.npz" in multisource
    scratch = (runs / "logs" / "scratch_mobilenet_compact.log").read_text()
    assert "--model mobilenet_compact --sources fourclass tcga_lgg brats" in scratch
    assert "--init-from" not in scratch and f"--out {runs}/scratch" in scratch
    assert "catalogue=.carry_cat/catalogue.npz" in scratch
    assert "catalogue=none" in (runs / "logs" / "unet.log").read_text()
    unet = (runs / "logs" / "unet.log").read_text()
    assert "-m core.train.segmenter" in unet and "--model unet" in unet and "--crop 0" in unet
    assert f"--out {runs}/segmenters" in unet and "--max-minutes 2" in unet
    vgg = (runs / "logs" / "vgg19.log").read_text()
    assert "--model vgg19" in vgg and "--epochs 30" in vgg and f"--out {runs}/comparison" in vgg
    assert "--lr 1e-4" in vgg  # no batch normalisation: the shared peak rate never trains it
    assert f"-m core.evaluate artifacts --out {runs}/eval/vgg19" in vgg and "--models vgg19" in vgg

    fullres = (runs / "logs" / "resunet_fullres.log").read_text()
    for option in ("--base 32", "--deep-supervision 2", "--optimizer sgd", "--schedule poly", "--augment acquisition",
                   "--name resunet_fullres", f"--out {runs}/segmenters"):
        assert option in fullres
    regions = (runs / "logs" / "unet3d_regions.log").read_text()
    assert "-m core.train.brats --model unet3d --outputs regions" in regions and "--split-like unet2d_brats" in regions
    assert "--name unet3d_regions" in regions and f"--out {runs}/brats" in regions

    bad = subprocess.run(["bash", str(script), str(runs), "2", "2", "no_such_model"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown job no_such_model" in bad.stdout
