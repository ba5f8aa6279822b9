"""Uniform weight soup: the element-wise mean of models fine-tuned from one ancestor.

``python -m core.train.soup --model resnet_compact --from weights runs/hard2_resnet_compact --out runs/soup``
averages every weight (batch-normalisation statistics included) of the model ``NAME`` found in each
folder, after checking each file against its card's sha256 and the architectures against each other.
Averaging only makes sense for models of one lineage (each continued from the same weights), where the
mean stays in the same basin of the loss (Wortsman et al., "Model soups", ICML 2022); the card names
the ingredients. The soup is scored like any candidate (validation first) before it is promoted.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.serving.registry import load_keras_model, model_card, record_model
from core.train.common import relative_to_repo, run_facts, training_command

# card fields measured on one ingredient only, which the soup does not inherit
STALE_FIELDS = ("metrics", "best_epoch", "log", "runtime", "sha256", "size_bytes", "promoted_from",
                "stopped_by_time_budget", "train_seconds")


class IncompatibleIngredients(ValueError):
    """The models to average do not share one architecture."""


def mean_weights(weight_lists: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of equally shaped weight lists; integer arrays (counters) come from the first."""
    first = weight_lists[0]
    for k, other in enumerate(weight_lists[1:], start=2):
        shapes = [w.shape for w in other]
        if shapes != [w.shape for w in first]:
            raise IncompatibleIngredients(f"ingredient {k} has weights shaped {shapes[:3]}..., "
                                          f"the first {[w.shape for w in first][:3]}...")
    return [np.mean([w[i] for w in weight_lists], axis=0).astype(first[i].dtype)
            if np.issubdtype(first[i].dtype, np.floating) else first[i] for i in range(len(first))]


def soup(name: str, folders: list[Path], out: Path) -> dict[str, Any]:
    """Average model ``name`` of every folder into ``out`` and record its card there; returns the card."""
    if len(folders) < 2:
        raise IncompatibleIngredients("a soup needs at least two models")
    started = time.monotonic()
    cards = [model_card(name, folder) for folder in folders]
    architectures = {card.get("architecture") for card in cards}
    if len(architectures) != 1:
        raise IncompatibleIngredients(f"{name}: architectures differ across ingredients: "
                                      f"{sorted(map(str, architectures))}")
    models = [load_keras_model(name, folder) for folder in folders]
    base = models[-1]
    base.set_weights(mean_weights([m.get_weights() for m in models]))
    out.mkdir(parents=True, exist_ok=True)
    base.save(out / cards[-1]["file"])
    card = {k: v for k, v in cards[-1].items() if k not in STALE_FIELDS}
    card["soup"] = [{"folder": relative_to_repo(folder), "sha256": c["sha256"],
                     "training_command": c.get("training_command", "")} for folder, c in zip(folders, cards)]
    card["training_command"] = training_command("core.train.soup")
    card.update(run_facts(started))
    return record_model(name, card, out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model name, as in each folder's manifest")
    p.add_argument("--from", dest="folders", type=Path, nargs="+", required=True,
                   help="folders holding the model (weights/, a run's --out)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    card = soup(args.model, args.folders, args.out)
    print(f"RESULT model={args.model} ingredients={len(args.folders)} sha256={card['sha256'][:12]} out={args.out}")


if __name__ == "__main__":
    main()
