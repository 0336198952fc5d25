#!/usr/bin/env bash
# One prepared GPU run (a lent machine with PyTorch + CUDA, no internet): installs the
# project and any wheel in carry/wheels, then runs the GPU tests and the benchmarks the
# README's GPU tables come from. Writes gpu_check.json and gpu_check.log under $OUT (or ./).
#   run with: bash scripts/gpu_check.sh        (about 5 minutes on an H100/H200)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
LOG="$OUT/gpu_check.log"
exec > >(tee "$LOG") 2>&1
if [ -d carry/wheels ]; then python -m pip install -q --no-index --no-deps carry/wheels/*.whl; fi
python -m pip install -q --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== tests/gpu"; timeout 300 python -m pytest -q -p no:cacheprovider tests/gpu
echo "== product path vs bare forward"; timeout 300 python scripts/gpu_bench.py --seconds 4 | tail -1 > "$OUT/gpu_bench.json"
echo "== benchmark (CLI) batch 16/64/128"
for p in scgan-lite scgan; do for b in 16 64 128; do
  timeout 120 scgan-rt benchmark --preset $p --backend torch --device cuda --batch-size $b --iters 20 --json || true
done; done
echo "== benchmark-video bundled clip"
timeout 180 scgan-rt benchmark-video scgan_rt/samples/video/carphone_gray.mp4 --backend torch --device cuda \
  --batch-size 16 --encoder-preset ultrafast --json || true
echo "== training throughput (with and without --amp)"
timeout 300 python scripts/train_throughput.py --preset scgan --batch 8 --steps 5 --device cuda || true
echo "done"
python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
bench = (out / "gpu_bench.json").read_text() if (out / "gpu_bench.json").exists() else "{}"
(out / "gpu_check.json").write_text(json.dumps({"bench": json.loads(bench or "{}")}, indent=1))
PY
