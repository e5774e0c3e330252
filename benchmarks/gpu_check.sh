#!/usr/bin/env bash
# GPU checks, one prepared script (target: under 8 minutes on one H100):
#   the GPU-marked tests, then benchmarks 1 (meta-training throughput), 3 (scoring latency) and
#   5 (sparse vs dense embedding gradients) on CUDA at a larger scale than the CPU runs:
#   1M synthetic users, 100k items, meta-batch 1024; then the default `recsys train` on the
#   25M-row ML-25M-shaped synthetic log (benchmarks/scale_training.py), stopped after 3.5 minutes of
#   training (the earlier steps took under 2 minutes in all on an H100): the phases reached, the
#   per-epoch time and the validation curve so far.
# Figures go to stdout and to $OUT (or benchmarks/gpu-results/). Needs: torch with CUDA, the
# package's dependencies (polars, implicit... see README), run from the repository root.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
RES=${OUT:-benchmarks/gpu-results}
mkdir -p "$RES"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RECSYS_PROGRESS=0
start=$(date +%s)
step() { echo; echo "### $1 ($(( $(date +%s) - start )) s elapsed)"; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$RES/device.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
  2>&1 | tee -a "$RES/device.txt"

step "GPU-marked tests"
timeout 110 $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tee "$RES/tests.txt"

step "benchmark 1: meta-training throughput (1M users, 100k items, meta-batch 1024)"
timeout 170 $PY -m benchmarks.meta_throughput --device cuda --synthetic-users 1000000 --synthetic-items 100000 \
  --batch-size 1024 --batches 2 --repeats 2 --loop-tasks 32 2>&1 | tee "$RES/bench1.txt"

step "benchmark 3: scoring latency (ML-1M-shaped catalogue; 1M-item catalogue; 10,000-user batch)"
timeout 140 $PY -m benchmarks.scoring_latency --device cuda --requests 300 --batch-users 10000 \
  --big-items 1000000 --epochs 1 2>&1 | tee "$RES/bench3.txt"

step "benchmark 5: sparse vs dense embedding gradients (1M-row table, meta-batch 1024)"
timeout 100 $PY -m benchmarks.sparse_embeddings --device cuda --items 1000000 --batch-size 1024 --steps 4 \
  2>&1 | tee "$RES/bench5.txt"

step "scale training: default recsys train, 25M-row ML-25M-shaped synthetic log, 1 process, cuda"
timeout 330 $PY -m benchmarks.scale_training --log synthetic-25m --nproc 1 --device cuda --budget-min 3.5 \
  --out "$RES/scale_training.json" 2>&1 | tee "$RES/scale_training.txt"

step "done"
