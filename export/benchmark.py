"""Model-only benchmark of a backend: frames/s, latency p50/p95, peak RSS.

Pre/post-processing and image IO are excluded: the timed call is ``backend.infer`` on a
fixed batch of real-photo-like gray frames. With several backends, each runs in its own
child process so that its peak RSS is its own; all use the same weights file.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from scgan_rt.errors import ResourceError, UsageError


def peak_rss_mb() -> float:
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / (1024.0 * 1024.0)
    except Exception:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / (1024.0 * 1024.0)


def _frames(batch: int, size: int) -> np.ndarray:
    from .onnx import sample_gray_images

    imgs = sample_gray_images(size, limit=max(1, batch))
    if len(imgs) == 0:  # no photos available: a smooth synthetic scene
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        imgs = (np.sin(6 * xx) * np.cos(4 * yy))[None, None].astype(np.float32)
    reps = int(np.ceil(batch / len(imgs)))
    return np.ascontiguousarray(np.concatenate([imgs] * reps)[:batch], dtype=np.float32)


def run_benchmark(backend: str, weights: str | os.PathLike[str], batch: int = 1, size: int = 256,
                  device: str = "auto", iters: int = 20, max_seconds: float = 20.0, warmup: int = 2) -> dict[str, Any]:
    """Time ``iters`` calls (stopping early after ``max_seconds``) after ``warmup`` calls."""
    from scgan_rt.backends import open_backend

    from .onnx import check_size

    if batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    check_size(size)
    be = open_backend(backend, weights, device=device)
    x = _frames(batch, size)
    for _ in range(max(1, warmup)):  # first call exports / builds / autotunes
        be.infer(x)
    lat: list[float] = []
    t_start = time.perf_counter()
    while len(lat) < iters and (len(lat) < 3 or time.perf_counter() - t_start < max_seconds):
        t0 = time.perf_counter()
        be.infer(x)
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1e3
    return {
        "backend": getattr(be, "name", backend),
        "device": getattr(be, "device", device),
        "batch": batch,
        "size": size,
        "iters": len(lat),
        "fps": float(batch * len(lat) / sum(lat)),
        "latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "latency_ms_p95": float(np.percentile(lat_ms, 95)),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_isolated(backend: str, weights: str | os.PathLike[str], batch: int, size: int, device: str,
                 iters: int, max_seconds: float) -> dict[str, Any]:
    """``run_benchmark`` in a fresh interpreter (clean peak RSS, no shared thread pools)."""
    code = ("import json,sys; from scgan_rt.export.benchmark import run_benchmark as r; "
            "print('@@'+json.dumps(r(*json.loads(sys.argv[1]))))")
    args = json.dumps([backend, str(weights), batch, size, device, iters, max_seconds])
    p = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("@@"):
            return json.loads(line[2:])
    err = (p.stderr.strip().splitlines() or ["no output"])[-1]
    raise ResourceError(f"benchmark of {backend} failed: {err}")


def preset_weights(preset_name: str, folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """A random-init model of ``preset_name`` saved in ``folder`` (speed does not depend on values)."""
    from scgan_rt.config import preset
    from scgan_rt.model import build_generator
    from scgan_rt.weights import save_weights

    path = Path(folder) / f"{preset_name}-random.safetensors"
    save_weights(path, build_generator(preset(preset_name), seed=seed).eval(),
                 {"summary": f"random init ({preset_name}) for benchmarking"})
    return path
