#!/usr/bin/env bash
# Train the 2D models on one GPU (Keras 3 on JAX) from a queue, PARALLEL jobs at a time.
#
#   scripts/gpu_train_2d.sh RUNS [MINUTES] [PARALLEL] [JOB ...]   (RUNS relative to the repo, e.g. runs/gpu)
#
# Expects the data unpacked by `python scripts/gpu_data.py unpack .carry --to RUNS/data`.
# The queue runs detached (setsid) so it outlives the calling command; each job writes
# RUNS/logs/<job>.log and RUNS/done/<job> (its exit status), and its model under
# RUNS/{shipped,comparison,segmenters}. MINUTES (default 6.5) is each training's budget
# (CosineWithinBudget anneals the learning rate within it). JOBs default to all of them.
# scripts/gpu_collect.sh waits for them and packs the results.
#
# Measured on an H100 (2026-11-25): with 14 trainings at once, XLA's first epoch took 200-525 s
# for the depthwise-separable graphs (MobileNet, EfficientNet, Xception) and DenseNet121, and the
# time budget ended most of them after that one epoch; with 3 at a time ResNet50 trained 30 epochs
# in 265 s and InceptionV3 29 in 333 s, while DenseNet121's first epoch still took 362 s. Give those
# graphs a lease of their own (PARALLEL 1, MINUTES near the call's limit).
set -u
RUNS=${1:?usage: gpu_train_2d.sh RUNS [MINUTES] [PARALLEL] [JOB ...]}
MIN=${2:-6.5}
PARALLEL=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
cd "$(dirname "$0")/.."
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export BTD_DATA_DIR=$RUNS/data BTD_CACHE_DIR=$RUNS/cache
mkdir -p "$RUNS/logs" "$RUNS/done"
PY=${PYTHON:-python3}
CLS="$PY -m core.train.classifier --size 128 --max-minutes $MIN"
SEG="$PY -m core.train.segmenter --size 256 --crop 0 --base 12 --batch 16 --epochs 150 --max-minutes $MIN"
BACKBONES="xception inceptionv3 resnet50 vgg19"

declare -A JOB
# Issue 2: the shipped ensemble members, the CPU recipe trained for longer.
for m in resnet_compact mobilenet_compact densenet_compact efficientnet_compact; do
  JOB[$m]="$CLS --model $m --epochs 60 --out $RUNS/shipped"
done
# Issues 2 and 4: the three segmenters on the same patient-wise split, whole 256 px slices.
for m in resunet unet attention_unet; do JOB[$m]="$SEG --model $m --out $RUNS/segmenters"; done
# Issue 4: the original backbones from scratch, then the original stacking ensemble of four of them
# and the evaluation artifacts of all (latency is timed on the CPU afterwards by core.evaluate artifacts).
for m in $BACKBONES densenet121 efficientnetb0; do JOB[$m]="$CLS --model $m --epochs 30 --out $RUNS/comparison"; done
JOB[stacking_backbones]="while [ \$(ls $RUNS/done | grep -cE '^($(echo $BACKBONES | tr ' ' '|'))\$') -lt 4 ]; do sleep 10; done; \
  $PY -m core.train.ensemble --members $BACKBONES --name stacking_backbones --role comparison --out $RUNS/comparison && \
  rm -rf $RUNS/eval && cp -r weights/eval $RUNS/eval && \
  $PY -m core.evaluate artifacts --out $RUNS/eval --weights $RUNS/comparison --skip-latency \
    --models $BACKBONES densenet121 efficientnetb0 stacking_backbones"
ORDER="resnet_compact resunet xception inceptionv3 resnet50 vgg19 unet attention_unet densenet_compact \
  mobilenet_compact efficientnet_compact densenet121 efficientnetb0 stacking_backbones"

queue=$RUNS/queue.txt
: > "$queue"
for name in ${@:-$ORDER}; do
  [ -n "${JOB[$name]:-}" ] || { echo "unknown job $name (known: $ORDER)"; exit 2; }
  echo "${JOB[$name]} > $RUNS/logs/$name.log 2>&1; echo \$? > $RUNS/done/$name" >> "$queue"
done
setsid nohup bash -c "tr '\n' '\0' < $queue | xargs -0 -P $PARALLEL -I{} bash -c '{}'" > "$RUNS/logs/queue.log" 2>&1 < /dev/null &
echo "queued $(wc -l < "$queue") jobs under $RUNS, $PARALLEL at a time"
