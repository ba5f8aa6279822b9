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
# in with their cards by `core.serving.registry promote`. On a CPU: drop --out and give --max-minutes hours.
python -m core.train.classifier --model resnet_compact --size 128 --epochs 60 --max-minutes 6.5 --out runs/gpu/shipped
python -m core.registry promote resnet_compact --from runs/gpu/shipped
python -m core.train.segmenter --model resunet --size 256 --crop 160 --base 12 --epochs 24 --max-minutes 95
python -m core.train.tune_segmenter --model resunet
python -m core.train.segmenter --model unet --size 256 --crop 0 --base 12 --batch 16 --epochs 150 --max-minutes 6.5 --out runs/gpu/segmenters
python -m core.registry promote unet --from runs/gpu/segmenters
python -m core.train.segmenter --model attention_unet --size 256 --crop 160 --base 12 --epochs 24 --max-minutes 85 --workers 1
python -m core.train.tune_segmenter --model attention_unet
python -m core.train.brats --base 12 --size 96 --epochs 30 --max-minutes 110
# continued as a region-based model (sigmoid WT/TC/ET, Dice + BCE; every layer but the output kept): 8 CPU minutes
python -m core.train.brats --base 12 --size 96 --outputs regions --init-from weights/unet2d_brats.keras --split-like unet2d_brats --epochs 12 --lr 1e-3 --max-minutes 50 --name unet2d_brats --out runs/brats_regions
python -m core.registry promote unet2d_brats --from runs/brats_regions
# the original 3D U-Net (a GPU: 18 minutes on an H100 beside other jobs), stored as float16 weights
python -m core.train.brats --model unet3d --split-like unet2d_brats --crop 96 --base 16 --depth 4 --batch 2 --epochs 60 --samples-per-epoch 800 --workers 4 --max-minutes 18 --out runs/gpu/brats
python -m core.registry promote unet3d_brats --from runs/gpu/brats --role comparison --fp16
# Real-world MRI (several sources; core/data/sources.py). The sequence/plane model: 11 minutes, then continued.
python -m core.train.acquisition --epochs 10 --max-minutes 11
python -m core.train.acquisition --init-from weights/sequence_plane.keras --epochs 14 --lr 1e-3 --max-minutes 16 --out runs/ms
python -m core.registry promote sequence_plane --from runs/ms
# then with figshare's annotated planes (skull-bearing coronal and sagittal slices; core/data/annotations/)
python -m core.train.acquisition --sources brats tcga_lgg figshare --init-from weights/sequence_plane.keras --epochs 14 --lr 1e-3 --max-minutes 16 --out runs/ms
python -m core.registry promote sequence_plane --from runs/ms
# continued at half the learning rate for 24 epochs (validation worst source 0.845 -> 0.856)
python -m core.train.acquisition --sources brats tcga_lgg figshare --init-from weights/sequence_plane.keras --epochs 24 --lr 5e-4 --max-minutes 28 --out runs/ms2
python -m core.registry promote sequence_plane --from runs/ms2
# continued on the catalogue without tcga_lgg's FLAIR copies (core.data.sources.tcga_substitutes), each
# epoch drawn anew, selected without TTA; then re-measured with the mirror TTA the app applies
python -m core.train.acquisition --sources brats tcga_lgg figshare --init-from weights/sequence_plane.keras --epochs 16 --lr 5e-4 --max-minutes 26 --tta none --out runs/acq1
python -m core.registry promote sequence_plane --from runs/acq1
python -m core.train.acquisition --rescore
# continued with a wider contrast curve in the augmentation (gamma 0.45-2.2), selected with the mirror TTA
python -m core.train.acquisition --sources brats tcga_lgg figshare --init-from weights/sequence_plane.keras --epochs 20 --lr 5e-4 --max-minutes 28 --tta hflip --gamma 0.45 2.2 --out runs/acq_gamma
python -m core.registry promote sequence_plane --from runs/acq_gamma
# the same recipe again with the two BraTS validation cases trained on as well (a case is a scanner's
# contrast, and there are 11 to train on); the epoch chosen on the other sources' validation patients
python -m core.train.acquisition --sources brats tcga_lgg figshare --init-from weights/sequence_plane.keras --epochs 20 --lr 5e-4 --max-minutes 28 --tta hflip --gamma 0.45 2.2 --fit-validation brats --out runs/acq_fitval
python -m core.registry promote sequence_plane --from runs/acq_fitval
# The ensemble members, each fine-tuned from its 4-class weights above on every source (balanced over
# source x class, augmented against acquisition shortcuts, selected on the worst validation cell).
python -m core.train.classifier --model resnet_compact --sources fourclass tcga_lgg brats --init-from weights/resnet_compact.keras --epochs 16 --lr 5e-4 --max-minutes 28 --out runs/ms
python -m core.train.classifier --model densenet_compact --sources fourclass tcga_lgg brats --init-from weights/densenet_compact.keras --epochs 16 --lr 5e-4 --max-minutes 28 --out runs/ms
python -m core.train.classifier --model efficientnet_compact --sources fourclass tcga_lgg brats --init-from weights/efficientnet_compact.keras --epochs 16 --lr 5e-4 --max-minutes 28 --out runs/ms
python -m core.train.classifier --model mobilenet_compact --sources fourclass tcga_lgg brats --init-from weights/mobilenet_compact.keras --epochs 16 --lr 5e-4 --max-minutes 28 --out runs/ms
for m in resnet_compact densenet_compact efficientnet_compact mobilenet_compact; do python -m core.registry promote $m --from runs/ms; done
# The meta-learner chosen on every source's validation patients (fitted logistic regression or the
# members' equal-weight pool), then the lesion cross-check rule on the same patients.
python -m core.train.ensemble --members resnet_compact mobilenet_compact densenet_compact efficientnet_compact --combiner auto
python -m core.train.tune_crosscheck
# Two members continued with hard examples (half of each source x class cell's draws moved to the
# training slices the ensemble above still gets wrong); then the meta-learner and the rule again.
python -m core.train.classifier --model efficientnet_compact --sources fourclass tcga_lgg brats --init-from weights/efficientnet_compact.keras --hard-examples 0.5 --epochs 18 --lr 3e-4 --max-minutes 45 --workers 1 --out runs/hard_efficientnet_compact
python -m core.train.classifier --model mobilenet_compact --sources fourclass tcga_lgg brats --init-from weights/mobilenet_compact.keras --hard-examples 0.5 --epochs 18 --lr 3e-4 --max-minutes 45 --workers 1 --out runs/hard_mobilenet_compact
for m in efficientnet_compact mobilenet_compact; do python -m core.registry promote $m --from runs/hard_$m; done
python -m core.train.ensemble --members resnet_compact mobilenet_compact densenet_compact efficientnet_compact --combiner auto
# The ResNet member continued the same way, its hard examples scored by the ensemble above.
python -m core.train.classifier --model resnet_compact --sources fourclass tcga_lgg brats --init-from weights/resnet_compact.keras --hard-examples 0.5 --epochs 16 --lr 3e-4 --max-minutes 50 --workers 1 --out runs/hard_resnet_compact
python -m core.registry promote resnet_compact --from runs/hard_resnet_compact
# LiteRT exports of every shipped network (the app's runtime), checked against Keras
python -m core.export_runtime
python -m core.train.ensemble --members resnet_compact mobilenet_compact densenet_compact efficientnet_compact --combiner auto
python -m core.train.tune_crosscheck
python -m core.guard fit
python -m core.dedup split --out weights/eval/dedup_testing.json
python -m core.dedup index --out weights/train_hash_index.npz
python -m core.registry
python -m core.evaluate artifacts --out weights/eval
python -m core.evaluate external --json weights/eval/external.json
python -m core.evaluate external --split val --json weights/eval/external_val.json
python -m core.evaluate external-segmentation --json weights/eval/external_segmentation.json
