#!/usr/bin/env bash
# One prepared GPU run (a lent machine with PyTorch + CUDA, no internet): installs the
# project and any wheel in carry/wheels (e.g. av for Python 3.12), then runs the GPU tests
# and the benchmarks the README's GPU tables come from. Writes gpu_check.json (one object
# per step) and gpu_check.log under $OUT (or ./). About 5 minutes on an H100/H200.
#   bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
LOG="$OUT/gpu_check.log"
J="$OUT/gpu_check.jsonl"
: > "$J"
exec > >(tee "$LOG") 2>&1
T0=$(date +%s)
step() { echo "== $1 (t=$(( $(date +%s) - T0 )) s)"; }
if [ -d carry/wheels ]; then python -m pip install -q --no-index --no-deps carry/wheels/*.whl; fi
python -m pip install -q --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"

step "tests/gpu"
timeout 240 python -m pytest -q -p no:cacheprovider tests/gpu -x 2>&1 | tail -15

step "product paths vs bare forward, 256x256, batch 1/16/64/128"
timeout 200 python scripts/gpu_bench.py --seconds 2 --batches 1,16,64,128 | grep '^{"preset' >> "$J"
step "video model side at 1080p and 768x576 (scgan-lite)"
timeout 90 python scripts/gpu_bench.py --seconds 2 --presets scgan-lite --batches 16,64 --frame 1920x1080 \
  | grep '^{"preset' >> "$J"
timeout 60 python scripts/gpu_bench.py --seconds 2 --presets scgan-lite --batches 64 --frame 768x576 \
  | grep '^{"preset' >> "$J"
step "torch.compile (scgan-lite, batch 64, 768x576)"
timeout 150 python scripts/gpu_bench.py --seconds 2 --presets scgan-lite --batches 64 --frame 768x576 --compile \
  | grep '"compile": true' >> "$J"

step "benchmark-video: bundled clip and a generated 1080p clip, x264 ultrafast; codec-only is measured inside"
if python -c "import av" 2>/dev/null; then
  python - <<'PY'
import av, numpy as np
with av.open("/tmp/gen1080.mp4", "w") as c:
    s = c.add_stream("libx264", rate=25); s.width, s.height, s.pix_fmt = 1920, 1080, "yuv420p"
    s.options = {"preset": "ultrafast", "crf": "18"}
    yy, xx = np.mgrid[0:1080, 0:1920]
    for k in range(150):
        y = (128 + 90 * np.sin((xx + 8 * k) / 61.0) * np.cos(yy / 47.0)).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(np.concatenate([y, np.full((540, 1920), 128, np.uint8)]), format="yuv420p")
        for p in s.encode(f): c.mux(p)
    for p in s.encode(None): c.mux(p)
PY
  for clip in scgan_rt/samples/video/carphone_gray.mp4 /tmp/gen1080.mp4; do
    timeout 120 scgan-rt benchmark-video "$clip" --backend torch --device cuda --encoder-preset ultrafast --json \
      | python -c "import json,sys; d=json.load(sys.stdin); d['step']='benchmark-video'; print(json.dumps(d))" >> "$J"
  done
else
  echo "no PyAV: put av-18.1.0 (cp312) in carry/wheels"
fi

step "photo archive: 140 copies of the bundled photos, --io-threads 1 vs auto"
rm -rf /tmp/photos140 && mkdir -p /tmp/photos140
for k in $(seq 1 20); do for f in scgan_rt/samples/photos/*.jpg; do cp "$f" "/tmp/photos140/${k}_$(basename "$f")"; done; done
for io in 1 0; do
  rm -rf /tmp/photos140_out
  timeout 120 scgan-rt colorize /tmp/photos140 -o /tmp/photos140_out --backend torch --device cuda --io-threads $io --json \
    | python -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'step': 'photos', 'io_threads': $io, **{k: d[k] for k in ('done', 'images_per_s', 'photo_batch')}}))" >> "$J"
done

step "model-only CLI benchmark (backend.infer, host arrays in and out)"
for p in scgan-lite scgan; do
  timeout 60 scgan-rt benchmark --preset $p --backend torch --device cuda --batch-size 64 --iters 20 --json \
    | python -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'step': 'benchmark', 'preset': '$p', **(d[0] if isinstance(d, list) else d)}))" >> "$J"
done

step "training throughput, with and without --amp"
for amp in "" "--amp"; do
  timeout 120 python scripts/train_throughput.py --preset scgan --batch 8 --steps 5 --device cuda $amp \
    | tail -1 >> "$J"
done
step "torchrun (NCCL, 1 process): 10 steps, then resume to 20"
RUN=/tmp/gpu_train_run
rm -rf "$RUN"
timeout 150 torchrun --nproc_per_node 1 --no-python scgan-rt train --data scgan_rt/samples/photos --out "$RUN" \
  --preset scgan-lite --batch-size 2 --max-steps 10 --workers 2 --device cuda && \
timeout 120 torchrun --nproc_per_node 1 --no-python scgan-rt train --data scgan_rt/samples/photos --out "$RUN" \
  --batch-size 2 --max-steps 20 --workers 2 --device cuda --resume
echo "{\"step\": \"torchrun\", \"rc\": $?}" >> "$J"

step "done"
python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in (out / "gpu_check.jsonl").read_text().splitlines() if l.strip().startswith("{")]
(out / "gpu_check.json").write_text(json.dumps(rows, indent=1))
print(f"{len(rows)} result rows in {out / 'gpu_check.json'}")
PY
