#!/usr/bin/env bash
# Wait for the jobs of scripts/gpu_train.sh (or until SECONDS_LEFT pass), then pack what they made
# (models that may ship, cards, logs, evaluation artifacts; not the data, the caches nor the large
# comparison weights) into OUT as parts of at most 15 MB, written under a temporary name and
# renamed, so a command cut at its limit still returns a complete earlier pack.
#
#   scripts/gpu_collect.sh RUNS OUT SECONDS_LEFT
set -u
RUNS=${1:?usage: gpu_collect.sh RUNS OUT SECONDS_LEFT}; OUT=${2:?}; LEFT=${3:?}
JOBS=$(cat "$RUNS"/queue.*.txt | wc -l)
end=$((SECONDS + LEFT))
while [ "$(ls "$RUNS/done" 2>/dev/null | wc -l)" -lt "$JOBS" ] && [ $SECONDS -lt $end ]; do
  sleep 20
  echo "--- $(date +%T) done: $(ls "$RUNS/done" | tr '\n' ' ')"
  for f in "$RUNS"/logs/*.log; do
    printf '%-22s %s\n' "$(basename "$f" .log)" "$(grep -E 'Epoch [0-9]+/|val_dice|val WT|RESULT' "$f" | tail -1 | cut -c1-110)"
  done
done
echo "=== finished jobs: $(for f in "$RUNS"/done/*; do echo -n "$(basename "$f")=$(cat "$f") "; done)"
grep -h RESULT "$RUNS"/logs/*.log
mkdir -p "$OUT/.tmp"
(cd "$RUNS" && tar cf - --exclude=./data --exclude=./cache --exclude='./comparison/*.keras' .) \
  | split -b 15000000 - "$OUT/.tmp/results.tar.part_"
rm -f "$OUT"/results.tar.part_*
mv "$OUT"/.tmp/results.tar.part_* "$OUT"/ && rmdir "$OUT/.tmp"
ls -la "$OUT"
