#!/usr/bin/env bash
# Equal grids of bench/grids/ (issue 18) on one lent GPU, in one call of the device tool (no
# network there): the texts' MiniLM features travel as float16 matrices, are imported into the
# feature cache, and bench/honest_grid.py trains and scores each grid named in GRIDS (controls
# included; several grids side by side) with PARALLEL processes each. What comes back ($OUT):
# grid.log (everything printed, timestamped), results-<grid>.json, runs.tgz (every run folder
# without its checkpoints: configs, per-epoch traces, metrics, evaluations), gpu.log
# (nvidia-smi every 10 s), env.json.
#
# 1. Here, once per grid (after `vlkge encode --config <the VL arm's config>`):
#
#        python bench/gpu_grid_prepare.py bench/grids/wn18rr.yaml [...]   # .gpu-grid/
#
# 2. The device tool's call (its command runs in the repository root there):
#
#        run(command="GRIDS=wn18rr bash bench/gpu_grid.sh", carry=[".gpu-grid"], timeout_s=600)
#
#    The grid stops itself after BUDGET seconds (530), so the call ends inside timeout_s and
#    what finished comes back. A machine is given back 30 s after a call: a second call gets a
#    fresh one, without the first one's runs.
#
# Every run and evaluation gets SETS (default: device=cuda precision=tf32, the float32 products
# on the tensor cores, for both arms alike); training also TRAIN_SETS (default: no rolling
# last.pt, which nothing resumes on a machine that goes back; best.pt is still written). Where
# the machine has CUDA MPS, its daemon lets the processes' kernels share the GPU instead of
# taking turns (checked with one CUDA process first; without it the grid runs as it is).
#
# Rehearsal on a CPU (plumbing only; a smaller copy of the grid in GRID_DIR):
#     SETS= GRIDS=x GRID_DIR=/tmp/grids OUT=/tmp/gpu-grid bash bench/gpu_grid.sh   # /tmp/grids/x.yaml
set -uo pipefail

export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-grid-out}
GRIDS=${GRIDS:-wn18rr}
GRID_DIR=${GRID_DIR:-bench/grids}
PARALLEL=${PARALLEL:-12}
BUDGET=${BUDGET:-530}
SETS=${SETS-device=cuda precision=tf32}
TRAIN_SETS=${TRAIN_SETS-training.checkpoint_every=1000}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
START=$(date +%s)
stamp() { while IFS= read -r line || [[ -n $line ]]; do echo "[$(date -u +%T) +$(($(date +%s) - START))s] $line"; done; }

start_mps() { # the MPS daemon, kept only when a CUDA process then starts under it
    command -v nvidia-cuda-mps-control >/dev/null || { echo "MPS: no nvidia-cuda-mps-control"; return; }
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d && timeout 60 "$PYTHON" -c \
        "import torch; torch.ones(1, device='cuda').sum().item()"; then
        echo "MPS: on"
    else
        echo "MPS: failed, off ($(tail -3 "$CUDA_MPS_LOG_DIRECTORY"/control.log 2>/dev/null))"
        echo quit | nvidia-cuda-mps-control 2>/dev/null
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    fi
}

main() {
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
    export VLKGE_DATA_DIR=$PWD/.gpu-grid/data VLKGE_CACHE_DIR=${VLKGE_CACHE_DIR:-/tmp/vlkge-cache}
    # no network there: a download attempt fails at once instead of waiting for a DNS timeout
    export http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 no_proxy=
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    local monitor= mps=
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 \
            >"$OUT/gpu.log" 2>&1 &
        monitor=$!
        start_mps
        mps=${CUDA_MPS_PIPE_DIRECTORY:-}
    fi
    "$PYTHON" - "$OUT/env.json" "$mps" <<'PY'
import json, os, platform, sys
import torch
cuda = torch.cuda.is_available()
env = {"python": sys.version, "platform": platform.platform(), "cpus": os.cpu_count(),
       "torch": torch.__version__, "gpu": torch.cuda.get_device_name() if cuda else None,
       "mps": bool(sys.argv[2]), "source": open(".gpu-grid/source.txt").read()}
json.dump(env, open(sys.argv[1], "w"), indent=2)
print({k: env[k] for k in ("torch", "gpu", "cpus", "mps")})
PY
    while IFS=$'\t' read -r config modality matrix ids cache; do # bench/gpu_grid_prepare.py
        "$PYTHON" -m vlkge encode --config "$config" --"$modality"-features "$matrix" \
            --ids "$ids" --out "$VLKGE_CACHE_DIR/$cache" || return
    done <.gpu-grid/imports.tsv
    local sets=() s grid pids=()
    for s in $SETS; do sets+=(--set "$s"); done
    for s in $TRAIN_SETS; do sets+=(--train-set "$s"); done
    for grid in $GRIDS; do
        timeout -k 10 $((BUDGET - ($(date +%s) - START))) "$PYTHON" bench/honest_grid.py \
            "$GRID_DIR/$grid.yaml" --out "runs/grid/$grid" --parallel "$PARALLEL" "${sets[@]}" \
            2>&1 | sed -u "s/^/$grid: /" &
        pids+=($!)
    done
    wait "${pids[@]}" # the grids only: a bare `wait` would wait for the monitor, forever
    echo "grids: done"
    [[ -z $mps ]] || echo quit | nvidia-cuda-mps-control
    [[ -z $monitor ]] || kill "$monitor"
}

main 2>&1 | stamp | tee "$OUT/grid.log"
for grid in $GRIDS; do cp "runs/grid/$grid/results.json" "$OUT/results-$grid.json" 2>/dev/null; done
# the weights stay (a WN18RR best.pt is 84 MB at d 256; a call brings back 64 MiB)
tar czf "$OUT/runs.tgz" --exclude=checkpoints --exclude=tensorboard --exclude=.lock \
    --exclude=report.html $(printf 'runs/grid/%s ' $GRIDS)
ls -l "$OUT"
