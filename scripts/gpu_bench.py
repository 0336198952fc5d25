"""GPU numbers for the README: the product path (``Colorizer``) against the bare FP16
forward of the same folded network, per preset and batch size. Prints one JSON.

    python scripts/gpu_bench.py [--batches 1,16,64,128] [--seconds 5]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from scgan_rt.backends.torch import TorchBackend
from scgan_rt.benchmark import preset_weights
from scgan_rt.colorizer import Colorizer
from scgan_rt.images import LoadedImage


def _timed(fn, frames: int, seconds: float) -> float:
    fn()  # warm-up (cudnn autotune, allocations)
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    torch.cuda.synchronize()
    return frames * n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,16,64,128")
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    out = {"gpu": torch.cuda.get_device_name(0), "rows": []}
    with tempfile.TemporaryDirectory() as td:
        for name in ("scgan-lite", "scgan"):
            be = TorchBackend(preset_weights(name, td), device="cuda")
            col = Colorizer(be)
            for b in (int(x) for x in a.batches.split(",")):
                x = torch.rand(b, 1, 256, 256, device="cuda", dtype=torch.half) * 2 - 1
                x = x.contiguous(memory_format=torch.channels_last)

                def bare() -> None:
                    with torch.inference_mode():
                        be.model(x)

                imgs = [LoadedImage(None, torch.rand(256, 256).numpy(), None, 8, "L", "", False)  # type: ignore
                        for _ in range(b)]
                row = {"preset": name, "batch": b, "bare_fps": None, "product_fps": None}
                try:
                    row["bare_fps"] = round(_timed(bare, b, a.seconds), 1)
                    row["product_fps"] = round(_timed(lambda: col.colorize_batch(imgs, quantise=True), b,
                                                      a.seconds), 1)
                    row["ratio"] = round(row["product_fps"] / row["bare_fps"], 3)
                except Exception as e:  # record, do not stop the script
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                out["rows"].append(row)
                print(json.dumps(row), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
