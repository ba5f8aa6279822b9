#!/usr/bin/env bash
# Train every shipped model from scratch with the compact CPU configuration recorded in the
# model cards (weights/MODEL_CARDS.md). Needs the public data: BTD_DATA_DIR or ../shared/data.
# Each step is one command; run a single line to retrain one model.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

for member in efficientnet_compact mobilenet_compact densenet_compact resnet_compact; do
  python -m core.train.classifier --model "$member" --size 128 --epochs 30
done
python -m core.train.ensemble --members resnet_compact mobilenet_compact densenet_compact efficientnet_compact
python -m core.train.segmenter --model resunet --size 256 --crop 160 --base 12 --epochs 40
python -m core.registry
