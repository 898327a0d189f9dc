#!/usr/bin/env bash
# The QaTa-COV19 ablation sweep of docs/RESULTS.md: trains every arm in configs/qata/ with the same schedule
# and seed, one after the other, then evaluates each best checkpoint on the whole `valid` split.
# Re-running it resumes an interrupted arm and skips finished ones.
#
#   scripts/qata_ablations.sh PATH/TO/qata-cov19-v2 [runs/qata]
set -euo pipefail
data=${1:?usage: scripts/qata_ablations.sh QATA_DIR [OUT_DIR]}
out=${2:-runs/qata}
bin=${TGCNET:-target/release/tgcnet}
arms=${ARMS:-full text-off knowledge-off cnn-off vlcm-off}
mkdir -p "$out"
for arm in $arms; do
  run="$out/$arm"
  if [ -f "$run/eval.json" ]; then
    echo "== $arm: done"
    continue
  fi
  echo "== $arm: training ($(date -u +%FT%TZ))"
  start=$(date +%s)
  if [ -f "$run/last.safetensors" ]; then
    "$bin" train --resume --out "$run" --data "$data"
  else
    "$bin" train --config "configs/qata/$arm.toml" --data "$data" --out "$run"
  fi
  echo "== $arm: trained in $(( $(date +%s) - start )) s; evaluating"
  "$bin" eval --run "$run" --data "$data" --split val --batch-size 16
  echo "== $arm: finished ($(date -u +%FT%TZ), $(( $(date +%s) - start )) s)"
done
