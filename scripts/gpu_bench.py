"""GPU numbers for the README: the product paths against the bare FP16 forward of the same
folded network, per preset and batch size. Prints one JSON line per row, then one JSON.

* ``bare_fps``: ``model(x)`` on FP16 tensors already on the GPU;
* ``backend_fps``: ``Colorizer.run`` (the backend's ``infer_tensor``: gray in, RGB out, on the device);
* ``video_fps``: the video pipeline's model side (``ChromaStage``): uint8 luma planes up,
  resize, network, chroma, stabiliser, gamut, quantise, uint8 Cb/Cr planes down;
* ``photo_fps``: ``Colorizer.colorize_batch`` to uint8 RGB on the host.

    python scripts/gpu_bench.py [--batches 1,16,64,128] [--seconds 4] [--size 256] [--frame 256x256] [--compile] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import types

import numpy as np
import torch

from scgan_rt.backends.torch import TorchBackend
from scgan_rt.benchmark import preset_weights
from scgan_rt.colorizer import Colorizer
from scgan_rt.images import LoadedImage
from scgan_rt.settings import InferConfig
from scgan_rt.video import ChromaStage, Frame, Geometry


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, frames: int, seconds: float) -> float:
    fn()  # warm-up (cudnn autotune, allocations, compile)
    _sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        fn()
        n += 1
    _sync()
    return frames * n / (time.perf_counter() - t0)


def _video_stage(col: Colorizer, w: int, h: int, b: int):
    info = types.SimpleNamespace(width=w, height=h, bits=8, full_range=False, matrix="bt709")
    stage = ChromaStage(col, Geometry(info, 8), 0.7)
    rng = np.random.default_rng(0)
    planes = [rng.integers(16, 236, (h, w), dtype=np.uint8) for _ in range(b)]

    def step() -> None:
        frames = stage([Frame(k, p) for k, p in enumerate(planes)])
        frames[-1].uv()  # the download of this batch has landed

    return step


def row(name: str, be: TorchBackend, b: int, size: int, frame: tuple[int, int], seconds: float,
        compiled: bool) -> dict:
    col = Colorizer(be, config=InferConfig(size=size, compile=compiled))
    x = (torch.rand(b, 1, size, size, device=be.device, dtype=be.dtype) * 2 - 1).contiguous(
        memory_format=torch.channels_last)
    xf = x.float()
    out = {"preset": name, "batch": b, "compile": compiled, "frame": f"{frame[0]}x{frame[1]}"}
    runs = {"bare_fps": lambda: be._run(x), "backend_fps": lambda: col.run(xf),
            "video_fps": _video_stage(col, frame[0], frame[1], b)}
    if not compiled:
        imgs = [LoadedImage(None, np.random.default_rng(k).random((size, size), dtype=np.float32), None, 8, "L", "",
                            False) for k in range(b)]  # type: ignore[arg-type]
        runs["photo_fps"] = lambda: col.colorize_batch(imgs, quantise=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        col.run(xf)  # first: a compiled network's compile time lands in col.compile_seconds
        for key, fn in runs.items():
            try:
                out[key] = round(_timed(fn, b, seconds), 1)
            except Exception as e:  # record, do not stop the script
                out[key] = None
                out[f"{key}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if out.get("bare_fps"):
        for key in ("backend_fps", "video_fps", "photo_fps"):
            if out.get(key):
                out[key.replace("_fps", "_ratio")] = round(out[key] / out["bare_fps"], 3)
    out["compile_seconds"] = round(col.compile_seconds, 1)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,16,64,128")
    ap.add_argument("--presets", default="scgan-lite,scgan")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frame", default="256x256", help="video frame WxH for video_fps")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network (one extra row set)")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run of this script")
    a = ap.parse_args()
    frame = tuple(int(v) for v in a.frame.split("x"))
    gpu = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "none (cpu)"
    result = {"gpu": gpu, "torch": torch.__version__, "rows": []}
    with tempfile.TemporaryDirectory() as td:
        for name in a.presets.split(","):
            for compiled in ([False, True] if a.compile else [False]):
                be = TorchBackend(preset_weights(name, td), device=a.device, compile=compiled)
                for b in (int(v) for v in a.batches.split(",")):
                    r = row(name, be, b, a.size, frame, a.seconds, compiled)  # type: ignore[arg-type]
                    result["rows"].append(r)
                    print(json.dumps(r), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
