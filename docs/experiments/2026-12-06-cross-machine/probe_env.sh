#!/bin/bash
# usage (from the repository root): bash docs/experiments/2026-12-06-cross-machine/probe_env.sh TAG [VAR=VALUE ...]
# ML-100k temporal, seed 0, K = 10, trained and scored under the given kernel variables; prints the
# classical item-item path validation chose; the report lands in /tmp/cross-machine/TAG.
tag=$1; shift
env "$@" RECSYS_DATA_DIR=${RECSYS_DATA_DIR:-/work/shared/data} python -m recsys evaluate --dataset ml-100k \
  --protocol temporal --shots 10 --seeds 1 --ablations none --baselines none --no-mlflow \
  --out /tmp/cross-machine/$tag > /tmp/cross-machine-$tag.log 2>&1
echo "$tag: $(grep -o "classical item-item path: [^;]*" /tmp/cross-machine/$tag/report.md)"
