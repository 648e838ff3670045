#!/usr/bin/env bash
# An equal grid of bench/grids/ (issue 18) on one lent GPU, in one call of the device tool (no
# network there): the texts' MiniLM features travel as a float16 matrix, are imported into the
# feature cache, and bench/honest_grid.py trains and scores the whole grid (controls included)
# with --parallel processes on the GPU. What comes back ($OUT): grid.log (everything printed,
# timestamped), results.json (the grid's), runs.tgz (every run folder without its weights:
# configs, traces, metrics, evaluations), gpu.log (nvidia-smi every 10 s), env.json.
#
# 1. Here, once per grid (after `vlkge encode --config <the VL arm's config>`):
#
#        python bench/gpu_grid_prepare.py bench/grids/wn18rr.yaml   # .gpu-grid/
#
# 2. The device tool's call (its command runs in the repository root there):
#
#        run(command="GRID=wn18rr bash bench/gpu_grid.sh", carry=[".gpu-grid"], timeout_s=600)
#
#    The grid stops itself after BUDGET seconds (540), so the call ends inside timeout_s and
#    what finished comes back; a rerun on a warm machine picks up where it stopped.
#
# Rehearsal on a CPU (plumbing only; the grid file's epochs and widths are the real ones, so
# point GRID_FILE at a smaller copy): DEVICE=cpu OUT=/tmp/gpu-grid GRID_FILE=... bash ...
set -uo pipefail

export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-grid-out}
GRID=${GRID:-wn18rr}
GRID_FILE=${GRID_FILE:-bench/grids/$GRID.yaml}
DEVICE=${DEVICE:-cuda}
PARALLEL=${PARALLEL:-12}
BUDGET=${BUDGET:-540}
PYTHON=${PYTHON:-python3}
RUNS=runs/grid/$GRID
mkdir -p "$OUT" "$RUNS"
START=$(date +%s)
stamp() { while IFS= read -r line || [[ -n $line ]]; do echo "[$(date -u +%T) +$(($(date +%s) - START))s] $line"; done; }

main() {
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
    export VLKGE_DATA_DIR=$PWD/.gpu-grid/data VLKGE_CACHE_DIR=${VLKGE_CACHE_DIR:-/tmp/vlkge-cache}
    # no network there: a download attempt fails at once instead of waiting for a DNS timeout
    export http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 no_proxy=
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    local monitor=
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 \
            >"$OUT/gpu.log" 2>&1 &
        monitor=$!
    fi
    "$PYTHON" - "$OUT/env.json" <<'EOF'
import json, os, platform, sys
import torch
cuda = torch.cuda.is_available()
env = {"python": sys.version, "platform": platform.platform(), "cpus": os.cpu_count(),
       "torch": torch.__version__, "gpu": torch.cuda.get_device_name() if cuda else None,
       "source": open(".gpu-grid/source.txt").read()}
json.dump(env, open(sys.argv[1], "w"), indent=2)
print({k: env[k] for k in ("torch", "gpu", "cpus")})
EOF
    while IFS=$'\t' read -r config modality matrix ids cache; do # bench/gpu_grid_prepare.py
        "$PYTHON" -m vlkge encode --config "$config" --"$modality"-features "$matrix" \
            --ids "$ids" --out "$VLKGE_CACHE_DIR/$cache" || return
    done <.gpu-grid/imports.tsv
    timeout -k 10 $((BUDGET - ($(date +%s) - START))) "$PYTHON" bench/honest_grid.py \
        "$GRID_FILE" --out "$RUNS" --parallel "$PARALLEL" --device "$DEVICE"
    echo "grid: exit $?"
    [[ -z $monitor ]] || kill "$monitor"
}

main 2>&1 | stamp | tee "$OUT/grid.log"
cp "$RUNS/results.json" "$OUT/" 2>/dev/null
tar czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='.lock' "$RUNS"
ls -l "$OUT"
