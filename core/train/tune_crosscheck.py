"""Choose the lesion cross-check rule on validation patients and ship it.

    python -m core.train.tune_crosscheck [--max-false-alarm 0.05]

Runs the shipped classifier on the classifier's validation slices of every source
(:mod:`core.data.sources`: 4-class validation images, tcga_lgg fold 3, the BraTS validation cases'
axial slices) and, on the slices it calls "no tumour", each candidate evidence model (the
multi-source lesion detector on the crop, the ResUNet on the whole slice). For each it picks the
rule (:func:`core.slices.crosscheck.choose_rule`) that rescues the most tumour slices while flagging at
most ``--max-false-alarm`` of the tumour-free slices, and ships the model and rule that rescue
more (ties: fewer false alarms). Writes ``weights/lesion_crosscheck.json`` and its card. The test patients are never used here; ``python -m core.evaluate external`` reports the
rule's effect on them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from core import config
from core.slices.crosscheck import RULE_NAME, choose_rule, rule_figures
from core.slices.lesion_check import EVIDENCE_MODELS
from core.serving.registry import models_by, record_model
from core.train.common import run_facts, training_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-false-alarm", type=float, default=0.05,
                   help="largest share of tumour-free slices the rule may flag")
    p.add_argument("--models", nargs="+", default=list(EVIDENCE_MODELS), choices=EVIDENCE_MODELS,
                   help="candidate evidence models, those shipped in --out (the better on validation is chosen)")
    p.add_argument("--out", type=Path, default=config.WEIGHTS_DIR)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from core.slices.classify import Classifier
    from core.evaluation.external import crosscheck_inputs

    args = parse_args(argv)
    started = time.monotonic()
    sources = ["fourclass", "tcga_lgg", "brats"]
    classifier = Classifier.load(args.out)
    candidates = {}
    shipped = [m for m in args.models if m == "resunet" or models_by("lesion", "shipped", args.out)]
    for model in shipped:
        slices, probs, evidence, versions = crosscheck_inputs("val", sources, weights_dir=args.out,
                                                              classifier=classifier, model=model)
        tumour = np.array([r.tumour for r in slices.refs])
        said_no = probs.argmax(1) == config.CLASS_NAMES.index(config.NO_TUMOUR_CLASS)
        rule, chosen = choose_rule(evidence, tumour, said_no, args.max_false_alarm)
        per_source = {}
        for source in sources:
            keep = slices.column("source") == source
            per_source[source] = rule_figures(rule, [e for e, k in zip(evidence, keep) if k], tumour[keep],
                                              said_no[keep])
        candidates[model] = {"rule": rule, "chosen": chosen, "per_source": per_source, "versions": versions}
        print(f"{model}: rule {rule.to_json()} rescues {chosen['rescued']} of {chosen['missed']} missed tumour slices, "
              f"false alarms {chosen['false_alarms']} ({chosen['false_alarm_rate']:.3f})", flush=True)
    model = max(candidates, key=lambda m: (candidates[m]["chosen"]["rescued"], -candidates[m]["chosen"]["false_alarms"]))
    best = candidates[model]
    rule, chosen = best["rule"], best["chosen"]
    path = args.out / f"{RULE_NAME}.json"
    path.write_text(json.dumps({"rule": rule.to_json(), "model": model, "validation": chosen}, indent=1) + "\n")
    card = {
        "task": "crosscheck",
        "role": "shipped",
        "description": "Lesion cross-check rule: when the classifier says no tumour, flag a region of the evidence "
                       "model at least this confident and this large as a possible lesion.",
        "architecture": f"threshold rule over the {model} output",
        "file": path.name,
        "classes": ["possible lesion"],
        "rule": rule.to_json(),
        "model": model,
        "max_false_alarm": args.max_false_alarm,
        "data": "validation patients of " + ", ".join(sources) + " (core/data/sources.py)",
        "split": "classifier validation split of every source; test patients untouched",
        "metrics": {"val": {"chosen": chosen, "per_source": best["per_source"],
                            "candidates": {m: {"rule": c["rule"].to_json(), **c["chosen"]}
                                           for m, c in candidates.items()}}},
        "model_versions": best["versions"],
        "training_command": training_command("core.train.tune_crosscheck"),
        **run_facts(started),
    }
    record_model(RULE_NAME, card, args.out)
    print(f"RESULT model={model} min_confidence={rule.min_confidence} min_area_fraction={rule.min_area_fraction} "
          f"rescued={chosen['rescued']} missed={chosen['missed']} false_alarm_rate={chosen['false_alarm_rate']}")


if __name__ == "__main__":
    main()
