#!/usr/bin/env python
"""Run on a deployment GPU with TensorRT (and torch CUDA or pycuda) installed:

    python scripts/trt_parity.py --model W.safetensors [--fp16] [--batch 1:4:8] [--size 256]

Exports the weights to ONNX (an FP16 graph when TensorRT >= 11 and --fp16), builds the
engine into engines/ (or reuses it), runs it on sample photos and compares against ONNX
Runtime FP32 on CPU: max abs error and PSNR. Exits 1 if PSNR is below --min-psnr
(default 40 dB for FP16, 60 dB for FP32). Only load engines you built yourself.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--batch", default="1:4:8")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--engines", default="engines")
    ap.add_argument("--min-psnr", type=float, default=None)
    a = ap.parse_args()

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from parity import ort_session, psnr
    from scgan_rt.backends.tensorrt import TensorRTBackend
    from scgan_rt.export.engine import import_tensorrt, trt_major
    from scgan_rt.export.onnx import export_onnx, parse_batch, sample_gray_images
    from scgan_rt.export.tensorrt import build_engine

    trt = import_tensorrt()
    spec = parse_batch(a.batch)
    photos = sample_gray_images(a.size, limit=spec.profile()[2])
    if not len(photos):
        print("no sample photos (install scikit-image or ship scgan_rt/samples)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as td:
        ref_onnx = export_onnx(a.model, Path(td) / "fp32.onnx", size=a.size, batch=a.batch).path
        graph_fp16 = a.fp16 and trt_major(trt) >= 11
        onnx_path = export_onnx(a.model, Path(td) / "build.onnx", size=a.size, batch=a.batch, fp16=graph_fp16).path \
            if graph_fp16 else ref_onnx
        t0 = time.time()
        engine = build_engine(onnx_path, out_dir=a.engines, fp16=a.fp16, batch=a.batch, size=a.size)
        print(f"engine {engine} ({time.time() - t0:.0f}s)")
        ref = ort_session(ref_onnx).run(["rgb"], {"gray": photos})[0]
        be = TensorRTBackend(engine)
        got, _ = be.infer(photos)
        be.infer(photos[:1])
        t0 = time.perf_counter()
        n = 20
        for _ in range(n):
            be.infer(photos)
        dt = time.perf_counter() - t0
    err = float(np.abs(got - ref).max())
    p = min(psnr(got[i], ref[i]) for i in range(len(ref)))
    need = a.min_psnr if a.min_psnr is not None else (40.0 if a.fp16 else 60.0)
    print(f"TensorRT {trt.__version__} vs ONNX Runtime FP32: max abs err {err:.2e}, min PSNR {p:.1f} dB "
          f"(need >= {need}); {n * len(photos) / dt:.0f} frames/s at batch {len(photos)} incl. H2D/D2H")
    return 0 if p >= need else 1


if __name__ == "__main__":
    sys.exit(main())
