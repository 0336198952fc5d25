"""Time the full-resolution merge alone: ``python scripts/merge_bench.py PHOTO [--bits 8|16] [--repeat N]``.

The chroma is the default model's prediction for the photo, so the share of out-of-gamut
pixels is a real one. Prints MP/s of the best and the median of ``--repeat`` runs."""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from scgan_rt.color import to_network
from scgan_rt.colorizer import Colorizer, merge_strips
from scgan_rt.images import load_image
from scgan_rt.settings import InferConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photo")
    ap.add_argument("--bits", type=int, default=8, choices=(8, 16))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    im = load_image(a.photo)
    col = Colorizer.open(InferConfig(device="cpu"))
    luma = torch.from_numpy(im.luma)
    rgb, _ = col.predict(to_network(luma[None, None], col.size))
    cbcr = col.chroma(rgb)
    dtype = np.uint16 if a.bits == 16 else np.uint8
    merge_strips(luma, cbcr, dtype)  # warm-up
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        merge_strips(luma, cbcr, dtype)
        times.append(time.perf_counter() - t0)
    mp = luma.numel() / 1e6
    print(json.dumps({"photo": a.photo, "megapixels": round(mp, 2), "bits": a.bits, "threads": torch.get_num_threads(),
                      "best_mp_s": round(mp / min(times), 1), "median_mp_s": round(mp / float(np.median(times)), 1)}))


if __name__ == "__main__":
    main()
