#!/usr/bin/env bash
# Wait for the jobs of scripts/gpu_train_2d.sh (or until SECONDS_LEFT pass), then pack what they
# made (models that may ship, cards, logs, evaluation artifacts; not the large comparison weights)
# into OUT as parts of at most 15 MB.
#
#   scripts/gpu_collect.sh RUNS OUT SECONDS_LEFT
set -u
RUNS=${1:?usage: gpu_collect.sh RUNS OUT SECONDS_LEFT}; OUT=${2:?}; LEFT=${3:?}
JOBS=$(wc -l < "$RUNS/queue.txt")
end=$((SECONDS + LEFT))
while [ "$(ls "$RUNS/done" 2>/dev/null | wc -l)" -lt $JOBS ] && [ $SECONDS -lt $end ]; do
  sleep 20
  echo "--- $(date +%T) done: $(ls "$RUNS/done" | tr '\n' ' ')"
  for f in "$RUNS"/logs/*.log; do
    printf '%-22s %s\n' "$(basename "$f" .log)" "$(grep -E 'Epoch [0-9]+/|val_dice|RESULT' "$f" | tail -1 | cut -c1-110)"
  done
done
echo "=== finished jobs: $(for f in "$RUNS"/done/*; do echo -n "$(basename "$f")=$(cat "$f") "; done)"
grep -h RESULT "$RUNS"/logs/*.log
cd "$RUNS" || exit 1
files=$(ls -d logs done shipped/*.keras shipped/manifest.json shipped/logs segmenters/*.keras segmenters/manifest.json \
  segmenters/logs comparison/manifest.json comparison/logs comparison/*.json eval 2>/dev/null)
tar cf - $files | split -b 15000000 - "$OUT/results.tar.part_"
ls -la "$OUT"
