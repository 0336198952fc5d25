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
import torch

from .backends import BackendOptions, open_backend
from .colorizer import Colorizer
from .config import check_size
from .encoding import choose_encoder, output_bits, video_output_suffix
from .errors import InputError, ResourceError, UsageError
from .images import load_image, output_suffix, save_image
from .export.onnx import sample_gray_images
from .settings import BENCH_BATCH, BENCH_ITERS, BENCH_SECONDS, InferConfig
from .video import ChromaStage, Geometry, colorize_video, prepare_frame, probe_video


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

    imgs = sample_gray_images(size, limit=max(1, batch))
    if len(imgs) == 0:  # no photos available: a smooth synthetic scene
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        imgs = (np.sin(6 * xx) * np.cos(4 * yy))[None, None].astype(np.float32)
    reps = int(np.ceil(batch / len(imgs)))
    return np.ascontiguousarray(np.concatenate([imgs] * reps)[:batch], dtype=np.float32)


def run_benchmark(backend: str, weights: str | os.PathLike[str], batch: int = BENCH_BATCH,
                  size: int = InferConfig.size, device: str = InferConfig.device, iters: int = BENCH_ITERS,
                  max_seconds: float = BENCH_SECONDS, precision: str = InferConfig.precision,
                  warmup: int = 2) -> dict[str, Any]:
    """Time ``iters`` calls (stopping early after ``max_seconds``) after ``warmup`` calls."""
    if batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    check_size(size)
    be = open_backend(backend, weights, device=device, options=BackendOptions(precision=precision))
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
        "precision": getattr(be, "precision", precision),
        "batch": batch,
        "size": size,
        "iters": len(lat),
        "fps": float(batch * len(lat) / sum(lat)),
        "latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "latency_ms_p95": float(np.percentile(lat_ms, 95)),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_isolated(backend: str, weights: str | os.PathLike[str], batch: int, size: int, device: str,
                 iters: int, max_seconds: float, precision: str = InferConfig.precision) -> dict[str, Any]:
    """``run_benchmark`` in a fresh interpreter (clean peak RSS, no shared thread pools)."""
    code = ("import json,sys; from scgan_rt.benchmark import run_benchmark as r; "
            "print('@@'+json.dumps(r(*json.loads(sys.argv[1]))))")
    args = json.dumps([backend, str(weights), batch, size, device, iters, max_seconds, precision])
    p = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("@@"):
            return json.loads(line[2:])
    err = (p.stderr.strip().splitlines() or ["no output"])[-1]
    raise ResourceError(f"benchmark of {backend} ({precision}) failed: {err}")


def preset_weights(preset_name: str, folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """A random-init model of ``preset_name`` saved in ``folder`` (speed does not depend on values)."""
    from .config import preset
    from .model import build_generator
    from .weights import save_weights

    path = Path(folder) / f"{preset_name}-random.safetensors"
    save_weights(path, build_generator(preset(preset_name), seed=seed).eval(),
                 {"summary": f"random init ({preset_name}) for benchmarking"})
    return path


def benchmark_video(src: str | os.PathLike[str], weights: str | os.PathLike[str], cfg: InferConfig,
                    model_frames: int = 64) -> dict[str, Any]:
    """Video speed on one clip, same backend, batch and encoder settings throughout:

    * ``codec_fps``: decode + encode only (the pipeline with neutral chroma, no model);
    * ``model_fps``: everything between decode and encode (luma prep, inference, chroma
      stabilisation, upsampling, gamut, quantisation) on up to ``model_frames`` pre-decoded frames;
    * ``e2e_fps``: ``colorize`` end to end.

    ``bound_fps`` is what a perfectly overlapped pipeline could reach: min(model, codec) when
    inference runs on a GPU, 1/(1/model + 1/codec) when both share the CPU cores."""
    import tempfile

    import av

    info = probe_video(src, cfg.max_pixels)
    cfg = cfg.replace(force=True, codec=choose_encoder(info.codec, cfg.codec)[0])
    colorizer = Colorizer.open(cfg, weights)
    dev = colorizer.device
    res: dict[str, Any] = {"clip": str(src), "width": info.width, "height": info.height,
                           "backend": colorizer.backend.name, "device": dev, "batch": cfg.batch_size,
                           "precision": getattr(colorizer.backend, "precision", cfg.precision),
                           "codec": cfg.codec, "crf": cfg.crf, "preset": cfg.encoder_preset}
    with tempfile.TemporaryDirectory(prefix="scgan-vbench-") as td:
        suffix = video_output_suffix(Path(src), cfg.codec)
        rep = colorize_video(src, Path(td) / f"codec{suffix}", None, cfg)
        res["frames"] = rep.frames_out
        res["codec_fps"] = rep.fps
        # model-only: the pipeline's middle on frames decoded beforehand
        _, bits = output_bits(cfg.codec, info.bits)
        geo = Geometry(info, bits)
        with av.open(str(src)) as c:
            raw = []
            for fr in c.decode(video=0):
                raw.append(fr)
                if len(raw) >= model_frames:
                    break
        stage = ChromaStage(colorizer, geo, cfg.temporal_strength)
        batch = colorizer.batch_for(geo.w2 * geo.h2)
        res["batch"] = batch
        stage([prepare_frame(f, k, geo) for k, f in enumerate(raw[:batch])])  # warm-up (export, autotune)
        stage.finish()
        t0 = time.perf_counter()
        for i in range(0, len(raw), batch):
            stage([prepare_frame(f, k, geo) for k, f in enumerate(raw[i:i + batch])])
        stage.finish()
        res["model_fps"] = len(raw) / (time.perf_counter() - t0)
        rep = colorize_video(src, Path(td) / f"e2e{suffix}", colorizer, cfg)
        res["e2e_fps"] = rep.fps
    m, c = res["model_fps"], res["codec_fps"]
    shared = not dev.startswith("cuda")
    res["bound"] = "1/(1/model+1/codec)" if shared else "min(model, codec)"
    res["bound_fps"] = 1 / (1 / m + 1 / c) if shared else min(m, c)
    res["e2e_vs_bound"] = res["e2e_fps"] / res["bound_fps"]
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}


def benchmark_photos(folder: str | os.PathLike[str], weights: str | os.PathLike[str], cfg: InferConfig,
                     limit: int = 0) -> dict[str, Any]:
    """Photo speed on a folder: each stage alone, then ``colorize`` end to end, same settings.

    The stages run one after another, a batch at a time: ``decode`` (``load_image``),
    ``network`` (resize to the network's input, inference, chroma), ``merge`` (the
    full-resolution merge and quantisation) and ``encode`` (``save_image``). ``floor_s`` is
    decode + network + encode: what a run costs when the merge is free and nothing
    overlaps. ``e2e_vs_floor`` is the end-to-end run time over that floor."""
    import tempfile

    from .images import is_supported
    from .pipeline import colorize_files, plan_jobs

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_supported(p))[:limit or None]
    if not files:
        raise UsageError(f"no supported images under {folder}")
    colorizer = Colorizer.open(cfg, weights)
    batch = colorizer.batch_for(cfg.size ** 2)
    colorizer.predict(torch.zeros(batch, 1, cfg.size, cfg.size))  # warm-up (sessions, autotune)
    stages = {"decode": 0.0, "network": 0.0, "merge": 0.0, "encode": 0.0}
    pixels = 0
    with tempfile.TemporaryDirectory(prefix="scgan-pbench-") as td:
        for i in range(0, len(files), batch):
            ims = [_timed(stages, "decode", load_image, f, cfg.max_pixels) for f in files[i:i + batch]]
            pixels += sum(im.luma.size for im in ims)
            cbcr, _ = _timed(stages, "network", colorizer.chroma_batch, ims)
            for k, (f, im) in enumerate(zip(files[i:i + batch], ims)):
                rgb, _ = _timed(stages, "merge", colorizer.merge, im, cbcr[k:k + 1], None, True)
                dst = Path(td) / f"{k}{output_suffix(f)}"
                _timed(stages, "encode", save_image, dst, rgb, im.alpha, im.bits, icc=im.icc, exif=im.exif)
        jobs = plan_jobs([str(f) for f in files], Path(td) / "e2e")
        rep = colorize_files(jobs, colorizer, cfg.replace(overwrite=True))
    if rep.failed:
        raise InputError(f"{len(rep.failed)} photo(s) failed: {rep.failed[0][1]}")
    return _photo_result(files, pixels, stages, rep.seconds, colorizer, batch)


def _timed(stages: dict[str, float], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    stages[name] += time.perf_counter() - t0
    return out


def _photo_result(files: list[Path], pixels: int, stages: dict[str, float], e2e: float, colorizer: Colorizer,
                  batch: int) -> dict[str, Any]:
    mp = pixels / 1e6
    floor = stages["decode"] + stages["network"] + stages["encode"]
    res: dict[str, Any] = {
        "folder": str(files[0].parent), "photos": len(files), "megapixels": mp,
        "backend": colorizer.backend.name, "device": str(colorizer.device), "batch": batch,
        **{f"{k}_s": v for k, v in stages.items()},
        **{f"{k}_mp_s": mp / v if v > 0 else 0.0 for k, v in stages.items()},
        "floor_s": floor, "e2e_s": e2e, "photos_per_s": len(files) / e2e, "mp_per_s": mp / e2e,
        "e2e_vs_floor": e2e / floor if floor > 0 else 0.0, "peak_rss_mb": peak_rss_mb(),
    }
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}
