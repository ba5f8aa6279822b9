"""Which acquisition cues survive preprocessing? Train a small CNN to tell the *source* of a slice.

    python -m core.train.source_probe --max-minutes 6

The trap this checks: if the classifier's inputs still say where a slice came from (skull or
none, plane, scanner look), a classifier can learn the source instead of the lesion. The probe
sees the classifier's inputs (crop, head normalisation, the same acquisition augmentation) of the
three training sources, balanced over source x class, and is scored on their validation patients.
Chance is 1/3; accuracy near 1 means the sources stay easy to tell apart, so the balanced sampler
(which makes the source say nothing about the class) is what keeps the classifier honest.
Writes nothing to weights/: it prints the figures (and ``--json``) for the README.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from core.train.augment import AcquisitionConfig
from core.slices.classify import normalise_batch
from core.models.acquisition import probe_compact
from core.data.sources import load_sources
from core.train.common import CosineWithinBudget, set_seed
from core.train.multisource import BalancedBatches, balanced_weights

SOURCES = ["fourclass", "tcga_lgg", "brats"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--samples-per-epoch", type=int, default=4000)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--normalisation", choices=("head", "rank"), default="head",
                   help="the intensity normalisation of the inputs (head: the classifier's; rank: blind to the "
                        "contrast curve, core.imaging.preprocess.rank_in_head)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    set_seed(args.seed)
    slices = load_sources(SOURCES, args.size)
    train, val = slices.where(split="train"), slices.where(split="val")
    source_of = np.array([SOURCES.index(s) for s in train.column("source")])
    batches = BalancedBatches(train.x, source_of, balanced_weights(train), 32, args.samples_per_epoch, args.seed,
                              args.normalisation, AcquisitionConfig(), len(SOURCES), workers=2, use_multiprocessing=False,
                              max_queue_size=8)
    model = probe_compact(args.size, num_classes=len(SOURCES))
    model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(batches, epochs=args.epochs, verbose=2,
              callbacks=[CosineWithinBudget(2e-3, args.epochs, args.max_minutes, warmup_epochs=1)])
    x = normalise_batch(val.x.astype(np.float32) / 255.0, args.normalisation)[..., None]
    pred = np.concatenate([np.asarray(model(x[i:i + 128], training=False)) for i in range(0, len(x), 128)]).argmax(1)
    truth = np.array([SOURCES.index(s) for s in val.column("source")])
    per_source = {s: round(float(np.mean(pred[truth == k] == k)), 4) for k, s in enumerate(SOURCES)}
    balanced = float(np.mean(list(per_source.values())))
    result = {"normalisation": args.normalisation, "balanced_accuracy": round(balanced, 4),
              "per_source_recall": per_source, "chance": round(1 / 3, 4),
              "n_val": int(len(val)), "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"RESULT balanced_accuracy={balanced:.4f} chance=0.3333 n={len(val)}")


if __name__ == "__main__":
    main()
