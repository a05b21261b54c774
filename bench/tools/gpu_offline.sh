#!/usr/bin/env bash
# `make bench-gpu-smoke` on a CUDA machine without network access that has python3 with PyTorch,
# torchvision, timm, scikit-learn, pandas, matplotlib, tabulate and tqdm but not this project's
# venv: it installs the two wheels `make gpu-bundle` put in .gpu/ (lightly, pytorch-msssim) into a
# temporary folder, then runs the smoke and the full-size grid for GPU_GRID_MINUTES (default 5),
# writing into OUT_DIR (default .cache/gpu): speed.md (this checkout's results/speed.md with its
# "## GPU" section measured), log.txt, and runs.tar (the grid's finished runs, if any: unpack into
# results/runs/). Run it again on the same machine and the grid continues where it stopped.
#
#   bash bench/tools/gpu_offline.sh [OUT_DIR [gpu_smoke's own flags...]]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-.cache/gpu}"
shift || true
mkdir -p "$out"
site="$(mktemp -d)"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .gpu/*.whl
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
export BENCH_RESULTS_DIR="$PWD/.cache/gpu-store" BENCH_CACHE_DIR="$PWD/.cache"
cp results/speed.md "$out/speed.md"
status=0
python3 -m bench.tools.gpu_smoke --data-dir .gpu --grid-minutes "${GPU_GRID_MINUTES:-5}" \
    --out "$out/speed.md" "$@" 2>&1 | tee "$out/log.txt" || status=$?
if [ -d "$BENCH_RESULTS_DIR/runs" ]; then
    tar -C "$BENCH_RESULTS_DIR" -cf "$out/runs.tar" runs
fi
exit "$status"
