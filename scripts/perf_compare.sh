#!/usr/bin/env bash
# docs/PERFORMANCE.md's CPU table: `tgcnet bench` and the PyTorch reference (scripts/reference/bench_ref.py,
# threads = cores) alternated ROUNDS times per preset on this machine, so both see the same load; the
# summary takes the median over rounds of each run's median.
#   scripts/perf_compare.sh OUT_DIR [ROUNDS] [PRESETS...]
# BASE=/path/to/older/tgcnet adds an earlier tgcnet build to the alternation (before/after of an optimisation);
# NO_TORCH=1 leaves PyTorch out; BENCH_ARGS are passed to both tgcnet builds (e.g. --no-train).
set -euo pipefail
out=${1:?usage: scripts/perf_compare.sh OUT_DIR [ROUNDS] [PRESETS...]}
rounds=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
presets=${*:-small paper}
py=${PYTHON:-python3}
export TGCNET=${TGCNET:-$PWD/target/release/tgcnet}
mkdir -p "$out"
for p in $presets; do
  for r in $(seq 1 "$rounds"); do
    if [ -n "${BASE:-}" ]; then
      "$BASE" bench --preset "$p" --json ${BENCH_ARGS:-} > "$out/base-$p-$r.json"
    fi
    "$TGCNET" bench --preset "$p" --json ${BENCH_ARGS:-} > "$out/rust-$p-$r.json"
    [ -n "${NO_TORCH:-}" ] || "$py" scripts/reference/bench_ref.py --preset "$p" --device cpu --json > "$out/torch-$p-$r.json"
  done
done
"$py" scripts/perf_summary.py "$out"
