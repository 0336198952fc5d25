#!/usr/bin/env bash
# One prepared GPU run (a lent machine with PyTorch + CUDA, no internet): installs the
# project and any wheel in carry/wheels (e.g. av for Python 3.12), then runs the GPU tests
# and the benchmarks the README's GPU tables come from. Writes gpu_check.json (one object
# per result) and gpu_check.log under $OUT (or ./). About 5 minutes on an H100/H200.
#   bash scripts/gpu_check.sh
# Dry run of every step on a CPU-only machine (small sizes, same code paths):
#   DEVICE=cpu QUICK=1 bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
LOG="$OUT/gpu_check.log"
J="$OUT/gpu_check.jsonl"
: > "$J"
exec > >(tee "$LOG") 2>&1
T0=$(date +%s)
step() { echo "== $1 (t=$(( $(date +%s) - T0 )) s)"; }
tag() { python -c "import json,sys; d=json.loads(sys.stdin.read()); d=d[0] if isinstance(d, list) else d; print(json.dumps({'step': '$1', **d}))"; }
if [ "$QUICK" = 1 ]; then
  SECS=0.1; BATCHES=1,2; BIG=2; FRAME_HD=320x180; FRAME_SD=192x144; PHOTO_COPIES=2; TRAIN_STEPS=1; TRAIN_BATCH=1
else
  SECS=1.5; BATCHES=1,16,64,128; BIG=64; FRAME_HD=1920x1080; FRAME_SD=768x576; PHOTO_COPIES=20; TRAIN_STEPS=3; TRAIN_BATCH=8
fi
if [ -d carry/wheels ]; then python -m pip install -q --no-index --no-deps carry/wheels/*.whl; fi
if [ "${SKIP_INSTALL:-0}" != 1 ]; then python -m pip install -q --no-deps --no-build-isolation -e . || exit 1; fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"

step "tests/gpu"
timeout 240 python -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tail -15

step "product paths vs bare forward, 256x256, batch $BATCHES"
timeout 200 python scripts/gpu_bench.py --device "$DEVICE" --seconds $SECS --batches $BATCHES | grep '^{"preset' >> "$J"
step "video model side at $FRAME_HD and $FRAME_SD (scgan-lite), and torch.compile"
timeout 90 python scripts/gpu_bench.py --device "$DEVICE" --seconds $SECS --presets scgan-lite --batches $BIG \
  --frame $FRAME_HD | grep '^{"preset' >> "$J"
timeout 150 python scripts/gpu_bench.py --device "$DEVICE" --seconds $SECS --presets scgan-lite --batches $BIG \
  --frame $FRAME_SD --compile | grep '^{"preset' >> "$J"

step "benchmark-video: bundled clip and a generated $FRAME_HD clip, x264 ultrafast (codec-only measured inside)"
if python -c "import av" 2>/dev/null; then
  python - "$FRAME_HD" <<'PY'
import sys
import av, numpy as np
w, h = (int(v) for v in sys.argv[1].split("x"))
with av.open("/tmp/gen_hd.mp4", "w") as c:
    s = c.add_stream("libx264", rate=25); s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.options = {"preset": "ultrafast", "crf": "18"}
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(150):
        y = (128 + 90 * np.sin((xx + 8 * k) / 61.0) * np.cos(yy / 47.0)).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(np.concatenate([y, np.full((h // 2, w), 128, np.uint8)]), format="yuv420p")
        for p in s.encode(f): c.mux(p)
    for p in s.encode(None): c.mux(p)
PY
  for clip in scgan_rt/samples/video/carphone_gray.mp4 /tmp/gen_hd.mp4; do
    timeout 150 scgan-rt benchmark-video "$clip" --backend torch --device "$DEVICE" --encoder-preset ultrafast --json \
      | tag benchmark-video >> "$J"
  done
  # rawvideo: a null codec, so end to end shows decode + model side without the encoder
  timeout 150 scgan-rt benchmark-video /tmp/gen_hd.mp4 --backend torch --device "$DEVICE" --codec rawvideo --json \
    | tag benchmark-video-raw >> "$J"
  step "photo archive: the bundled photos x $PHOTO_COPIES, --io-threads 1 vs auto"
  rm -rf /tmp/photos_many && mkdir -p /tmp/photos_many
  for k in $(seq 1 $PHOTO_COPIES); do for f in scgan_rt/samples/photos/*.jpg; do cp "$f" "/tmp/photos_many/${k}_$(basename "$f")"; done; done
  for io in 1 0; do
    rm -rf /tmp/photos_many_out
    timeout 150 scgan-rt colorize /tmp/photos_many -o /tmp/photos_many_out --backend torch --device "$DEVICE" \
      --io-threads $io --json | python -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'step': 'photos', 'io_threads': $io, **{k: d[k] for k in ('done', 'images_per_s', 'photo_batch', 'backend')}}))" >> "$J"
  done
else
  echo "no PyAV: put av-18.1.0 (cp312) in carry/wheels"
fi

step "model-only CLI benchmark (backend.infer, host arrays in and out)"
for p in scgan-lite scgan; do
  timeout 90 scgan-rt benchmark --preset $p --backend torch --device "$DEVICE" --batch-size $BIG --iters 10 --json \
    | tag "benchmark-$p" >> "$J"
done

step "precision rows (default model, batch $BIG): export --int8 and its gate, TensorRT FP16 vs INT8"
timeout 300 scgan-rt export --int8 --calibration scgan_rt/samples/photos --force --batch 1:$BIG:$BIG --json \
  -o /tmp/scgan_int8.onnx | python -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'step': 'export-int8', 'gate': d['gate'], 'float_nodes': d['float_nodes']}))" >> "$J"
if python -c "import tensorrt" 2>/dev/null; then
  timeout 300 scgan-rt build-engine --onnx /tmp/scgan_int8.onnx --int8 -o /tmp/engines && echo '{"step": "build-engine-int8", "rc": 0}' >> "$J"
  for p in fp16 int8; do
    timeout 300 scgan-rt benchmark --backend tensorrt --precision $p --batch-size $BIG --iters 20 --json \
      | tag "benchmark-trt-$p" >> "$J"
  done
else
  echo "no TensorRT: the INT8 engine rows are skipped"
fi

step "training throughput, with and without --amp"
for amp in "" "--amp"; do
  timeout 150 python scripts/train_throughput.py --preset scgan --batch $TRAIN_BATCH --steps $TRAIN_STEPS \
    --device "$DEVICE" $amp | tail -1 | tag "train${amp}" >> "$J"
done
step "torchrun (1 process): 6 steps, then resume to 12"
RUN=/tmp/gpu_train_run
rm -rf "$RUN"
timeout 150 torchrun --nproc_per_node 1 --no-python scgan-rt train --data scgan_rt/samples/photos --out "$RUN" \
  --preset scgan-lite --batch-size 2 --max-steps 6 --workers 2 --device "$DEVICE" && \
timeout 150 torchrun --nproc_per_node 1 --no-python scgan-rt train --data scgan_rt/samples/photos --out "$RUN" \
  --batch-size 2 --max-steps 12 --workers 2 --device "$DEVICE" --resume
echo "{\"step\": \"torchrun\", \"rc\": $?}" >> "$J"

step "done"
python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in (out / "gpu_check.jsonl").read_text().splitlines() if l.strip().startswith("{")]
(out / "gpu_check.json").write_text(json.dumps(rows, indent=1))
print(f"{len(rows)} result rows in {out / 'gpu_check.json'}")
PY
python scripts/gpu_tables.py "$OUT/gpu_check.json"
