#!/usr/bin/env bash
# Train every shipped model from scratch with the compact CPU configuration recorded in the
# model cards (weights/MODEL_CARDS.md), then rebuild the derived artifacts. Needs the public
# data: BTD_DATA_DIR or ../shared/data. Each step is one command; run a single line to redo one.
# On a GPU machine the same commands run on JAX (KERAS_BACKEND=jax).
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

python -m core.train.classifier --model efficientnet_compact --size 128 --epochs 30
python -m core.train.classifier --model mobilenet_compact --size 128 --epochs 30
python -m core.train.classifier --model densenet_compact --size 128 --epochs 20 --max-minutes 32
# resnet_compact and the comparison U-Net ran on an H100 with Keras on JAX (KERAS_BACKEND=jax) in
# scripts/gpu_train.sh, beside other jobs, on data carried by scripts/gpu_data.py, and were copied
# in with their cards by `core.registry promote`. On a CPU: drop --out and give --max-minutes hours.
python -m core.train.classifier --model resnet_compact --size 128 --epochs 60 --max-minutes 6.5 --out runs/gpu/shipped
python -m core.registry promote resnet_compact --from runs/gpu/shipped
python -m core.train.ensemble --members resnet_compact mobilenet_compact densenet_compact efficientnet_compact
python -m core.train.segmenter --model resunet --size 256 --crop 160 --base 12 --epochs 24 --max-minutes 95
python -m core.train.tune_segmenter --model resunet
python -m core.train.segmenter --model unet --size 256 --crop 0 --base 12 --batch 16 --epochs 150 --max-minutes 6.5 --out runs/gpu/segmenters
python -m core.registry promote unet --from runs/gpu/segmenters
python -m core.train.segmenter --model attention_unet --size 256 --crop 160 --base 12 --epochs 24 --max-minutes 85 --workers 1
python -m core.train.tune_segmenter --model attention_unet
python -m core.train.brats --base 12 --size 96 --epochs 30 --max-minutes 110
# the original 3D U-Net (a GPU: 18 minutes on an H100 beside other jobs), stored as float16 weights
python -m core.train.brats --model unet3d --split-like unet2d_brats --crop 96 --base 16 --depth 4 --batch 2 --epochs 60 --samples-per-epoch 800 --workers 4 --max-minutes 18 --out runs/gpu/brats
python -m core.registry promote unet3d_brats --from runs/gpu/brats --role comparison --fp16
python -m core.export_runtime
python -m core.guard fit
python -m core.dedup split --out weights/eval/dedup_testing.json
python -m core.dedup index --out weights/train_hash_index.npz
python -m core.registry
python -m core.evaluate artifacts --out weights/eval
