#!/usr/bin/env bash
# docs/PERFORMANCE.md's GPU and many-core rows: `tgcnet bench` (WGPU/Vulkan build, and the CPU build) beside
# the PyTorch reference (scripts/reference/bench_ref.py) on the same machine, in one run.
#   .gpu/tgcnet-wgpu  cargo build --release --features wgpu (CARGO_TARGET_DIR=target/wgpu)
#   .gpu/tgcnet-cpu   cargo build --release
#   .gl/*.deb         the Vulkan/GL loaders (see /work/.library/device/README.md); unpacked first
# Writes one JSON per measurement into $OUT (or ./gpu-bench-out).
set -u
out=${OUT:-gpu-bench-out}
mkdir -p "$out"
if [ -d .gl ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
# The binaries travel xz-compressed (the carried tree is limited to 64 MiB).
for f in .gpu/*.xz; do
  [ -f "$f" ] && python3 -c 'import lzma,sys; open(sys.argv[2],"wb").write(lzma.open(sys.argv[1]).read())' "$f" "${f%.xz}" && chmod +x "${f%.xz}"
done
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
{ nvidia-smi -L; nproc; lscpu | grep -m1 "Model name"; python3 -c 'import torch; print("torch", torch.__version__)'; } > "$out/machine.txt" 2>&1
export TGCNET=.gpu/tgcnet-cpu   # bench_ref.py resolves presets through it
run() { # name, seconds, command...
  local name=$1 t=$2; shift 2
  local s=$(date +%s)
  timeout "$t" "$@" > "$out/$name.json" 2> "$out/$name.err"
  echo "$name rc=$? $(( $(date +%s) - s ))s" | tee -a "$out/log.txt"
}
for p in small paper; do
  run "rust-wgpu-$p" 120 .gpu/tgcnet-wgpu bench --preset "$p" --device wgpu --json
  run "torch-cuda-$p" 60 python3 scripts/reference/bench_ref.py --preset "$p" --device cuda --json
done
for p in small paper; do
  run "rust-cpu-$p" 75 .gpu/tgcnet-cpu bench --preset "$p" --json
  run "torch-cpu-$p" 75 python3 scripts/reference/bench_ref.py --preset "$p" --device cpu --json
done
tail -n 5 "$out"/*.err | head -n 80
