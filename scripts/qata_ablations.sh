#!/usr/bin/env bash
# The QaTa-COV19 runs of docs/RESULTS.md: trains every arm in configs/qata/ (the same schedule, only the
# switch differs) for every seed, one after the other, then evaluates each best checkpoint on the whole
# `valid` split (the text arms also with shuffled and left/right-swapped captions). Re-running it resumes
# an interrupted run and skips finished ones.
#
#   scripts/qata_ablations.sh PATH/TO/qata-cov19-v2 [runs/qata]
#   ARMS="full text-off" SEEDS="2026 2027" scripts/qata_ablations.sh ...
#   CONFIGS=configs/qata/short ARMS="full text-off" SEEDS="2026 2027" scripts/qata_ablations.sh \
#     PATH/TO/qata-cov19-v2 runs/qata-short      # the short schedule
#
# Run directories: OUT/ARM for the configs' own seed (2026), OUT/ARM-seedN for the others. The wall
# time of each run is in OUT/ARM*/wall.txt.
set -euo pipefail
data=${1:?usage: scripts/qata_ablations.sh QATA_DIR [OUT_DIR]}
out=${2:-runs/qata}
bin=${TGCNET:-target/release/tgcnet}
arms=${ARMS:-full text-off knowledge-off cnn-off vlcm-off}
seeds=${SEEDS:-2026}
configs=${CONFIGS:-configs/qata}
mkdir -p "$out"
for seed in $seeds; do
  for arm in $arms; do
    run="$out/$arm"
    [ "$seed" = 2026 ] || run="$out/$arm-seed$seed"
    if [ -f "$run/eval.json" ]; then
      echo "== $arm seed $seed: done"
      continue
    fi
    echo "== $arm seed $seed: training ($(date -u +%FT%TZ))"
    start=$(date +%s)
    if [ -f "$run/last.safetensors" ]; then
      "$bin" train --resume --out "$run" --data "$data"
    else
      "$bin" train --config "$configs/$arm.toml" --seed "$seed" --data "$data" --out "$run"
    fi
    echo "== $arm seed $seed: trained in $(( $(date +%s) - start )) s; evaluating"
    captions=""
    [ "$arm" = text-off ] || captions="--captions shuffled,swapped"
    # shellcheck disable=SC2086
    "$bin" eval --run "$run" --data "$data" --split val --batch-size 16 $captions
    echo "$(( $(date +%s) - start ))" > "$run/wall.txt"
    echo "== $arm seed $seed: finished ($(date -u +%FT%TZ), $(( $(date +%s) - start )) s)"
  done
done
