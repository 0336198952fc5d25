#!/usr/bin/env bash
# One row of the default model's ablation table: a stage-1 run at a fixed wall-clock budget
# on one CPU thread, then `evaluate` on the held-out validation split.
#
#   bash train/recipes/ablation.sh NAME MINUTES [train flags...]
#
# Expects runs/data/{train,val} and runs/saliency as default-model.sh prepares them.
# Every row shares the data, seed, crop, batch and budget, so rows differ only in the flags.
set -euo pipefail
name="$1"; minutes="$2"; shift 2
root="${RUNS:-runs}"
out="$root/ablation/$name"
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}"
scgan-rt train --stage 1 --data "$root/data/train" --saliency-dir "$root/saliency" --out "$out" \
  --batch-size 4 --crop 256 --load-size 288 --hflip --seed 0 --workers 1 --sample-every 100000 \
  --max-minutes "$minutes" --epochs 1000 --json "$@" > "$out.train.json"
scgan-rt evaluate "$root/data/val" --model "$out/generator.safetensors" --backend torch --json > "$out.eval.json"
scgan-rt model info "$out/generator.safetensors" --json > "$out.info.json"
