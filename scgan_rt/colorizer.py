"""The gray -> chroma contract on one backend: network-size input, full-resolution output.

``Colorizer`` is what the photo pipeline, the video job, ``evaluate`` and the benchmark
share: it resizes luminance to the network's input, runs the backend, checks the result
once for NaN/Inf and merges the predicted chroma with the original full-resolution
luminance (richzhang's colorizers contract: the user's gray is never replaced).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .backends import Backend, BackendOptions, infer_via_numpy, open_backend
from .color import chroma_from_prediction, luma_of, merge_luminance, to_network
from .errors import ModelError
from .images import STRIP_ROWS, LoadedImage
from .settings import AUTO_MAX_BATCH, AUTO_MEMORY_SHARE, CPU_BATCH, DEVICE_BYTES_PER_PIXEL, InferConfig
from .weights import resolve_weights


class Colorizer:
    def __init__(self, backend: Backend, size: int = InferConfig.size, device: str | None = None,
                 config: InferConfig | None = None, weights: str | os.PathLike[str] | None = None) -> None:
        self.backend = backend
        self.weights = Path(weights) if weights is not None else None
        self.max_batch = 1 << 30  # lowered when a batch turns out too big for the device
        self._net_bytes: int | None = None  # measured on first use of --batch-size auto
        self.compile_seconds = 0.0  # first calls of a compiled network, per batch shape
        self._shapes: set[tuple[int, ...]] = set()
        self.config = config or InferConfig(size=size)
        self.size = self.config.size
        # Full-resolution merge runs where the backend's outputs can live cheaply.
        on_gpu = str(backend.device).startswith("cuda") and torch.cuda.is_available()
        self.device = device or (backend.device if on_gpu else "cpu")

    @classmethod
    def open(cls, config: InferConfig | None = None, weights: str | os.PathLike[str] | None = None, *,
             model: str | os.PathLike[str] | None = None, **settings: Any) -> "Colorizer":
        """Open the backend ``config`` asks for on ``weights`` (or ``model``: ``"default"``, a
        bundled preset name or a file). Keyword ``settings`` override ``InferConfig`` fields."""
        cfg = (config or InferConfig()).replace(**settings) if settings else (config or InferConfig()).validate()
        path = resolve_weights(weights if weights is not None else model)
        name = "torch" if cfg.compile and cfg.backend == "auto" else cfg.backend  # only torch compiles
        be = open_backend(name, path, cfg.device, BackendOptions(with_saliency=cfg.save_saliency, compile=cfg.compile,
                                                                   precision=cfg.precision))
        return cls(be, config=cfg, weights=path)

    def run(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Network-size gray ``N x 1 x S x S`` in [-1, 1] -> RGB prediction (and saliency) as
        tensors on ``self.device``, without reading anything back (see ``check_finite``).

        A batch the backend cannot take at once (GPU memory, 32-bit index limits of a
        kernel) is split into the largest chunks that run; the size found is kept."""
        if len(small) > self.max_batch:
            step = self.max_batch  # a chunk may lower max_batch further; the chunks stay as cut
            parts = [self.run(small[i:i + step]) for i in range(0, len(small), step)]
            sal = None if parts[0][1] is None else torch.cat([p[1] for p in parts])  # type: ignore[misc]
            return torch.cat([p[0] for p in parts]), sal
        try:
            rgb, sal = self._infer(small)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if len(small) == 1 or not _too_big(e):
                raise
            self.max_batch = max(1, len(small) // 2)
            return self.run(small)
        return rgb, sal

    def _infer(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        infer_tensor = getattr(self.backend, "infer_tensor", None)
        if getattr(self.backend, "compiled", False) and tuple(small.shape) not in self._shapes:
            return self._first_compiled_call(small)
        # Device tensors in and out, or host arrays for a plugin that only has ``infer``.
        rgb, sal = infer_tensor(small) if infer_tensor is not None else infer_via_numpy(self.backend.infer, small)
        return rgb.to(self.device).float(), (sal.to(self.device).float() if sal is not None else None)

    def _first_compiled_call(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A new batch shape compiles a graph: its time is shown as the compile cost."""
        t0 = time.perf_counter()
        self._shapes.add(tuple(small.shape))
        out = self._infer(small)
        if str(self.device).startswith("cuda"):
            torch.cuda.synchronize(torch.device(self.device))
        self.compile_seconds += time.perf_counter() - t0
        return out

    def check_finite(self, finite: bool | torch.Tensor) -> None:
        """Raise ``ModelError`` unless ``finite`` (``torch.isfinite(rgb).all()`` of a prediction)."""
        if not bool(finite):
            name = self.weights.name if self.weights is not None else "the model"
            raise ModelError(f"model produced NaN/Inf: {name} is broken (NaN/Inf weights?)")

    def predict(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``run`` followed by the NaN/Inf check (one read-back)."""
        rgb, sal = self.run(small.to(self.device))
        self.check_finite(torch.isfinite(rgb).all())
        return rgb, sal

    def batch_for(self, pixels: int) -> int:
        """Frames per network call for frames of ``pixels`` pixels: ``--batch-size`` as given,
        or with ``auto`` the CPU default, or on CUDA what free GPU memory holds."""
        if self.config.batch_size != "auto":
            return int(self.config.batch_size)
        if not str(self.device).startswith("cuda"):
            return CPU_BATCH
        if self._net_bytes is None:
            self._net_bytes = self._probe_net_bytes()
        dev = torch.device(self.device)
        free, _ = torch.cuda.mem_get_info(dev)
        free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)  # torch's cache is free to us
        return auto_batch(free, self._net_bytes, pixels)

    def _probe_net_bytes(self) -> int:
        """Peak GPU bytes one frame adds to a forward pass (measured on a batch of 2)."""
        dev = torch.device(self.device)
        x = torch.zeros(2, 1, self.size, self.size, device=dev)
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        self.run(x)
        torch.cuda.synchronize(dev)
        return max(1, (torch.cuda.max_memory_allocated(dev) - base) // 2)

    def chroma(self, rgb_pred: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
        """The prediction's (Cb, Cr) in ``matrix``, scaled by ``--saturation`` around neutral
        (the gamut step after it keeps every pixel inside the RGB cube)."""
        cbcr = chroma_from_prediction(rgb_pred, matrix)
        return cbcr * self.config.saturation if self.config.saturation != 1.0 else cbcr

    def colorize_batch(self, images: Sequence[LoadedImage], quantise: bool = False
                       ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per image, ``H x W x 3`` RGB and optional ``H x W`` saliency. RGB is float in
        [0, 1], or with ``quantise`` uint8 (uint16 for 16-bit inputs) built strip by strip,
        so a large photo never holds a float copy of itself."""
        if not images:
            return []
        lumas = [torch.from_numpy(im.luma).to(self.device) for im in images]  # uploaded once (no copy on CPU)
        small = torch.cat([to_network(y[None, None], self.size) for y in lumas])
        rgb_pred, sal = self.predict(small)
        cbcr = self.chroma(rgb_pred)
        results = []
        for i, im in enumerate(images):
            dtype = (np.uint16 if im.bits == 16 else np.uint8) if quantise else np.float32
            rgb = merge_strips(lumas[i], cbcr[i:i + 1], dtype)
            s = None
            if sal is not None:
                s = F.interpolate(sal[i:i + 1], size=im.luma.shape, mode="bilinear",
                                  align_corners=False)[0, 0].cpu().numpy()
            results.append((rgb, s))
        return results

    def colorize(self, image: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
        """One picture in, its colorized version out, in the same kind: a PIL image gives an
        RGB PIL image; a uint8 array (``H x W`` or ``H x W x 3``) a uint8 ``H x W x 3`` array;
        a float array in [0, 1] a float array."""
        is_pil = isinstance(image, Image.Image)
        a = np.asarray(image.convert("RGB") if is_pil and image.mode not in ("L", "RGB") else image)
        is_float = np.issubdtype(a.dtype, np.floating)
        x = a.astype(np.float32) if is_float else a.astype(np.float32) / float(np.iinfo(a.dtype).max)
        luma = luma_of(x[..., :3]) if x.ndim == 3 else x
        im = LoadedImage(path=None, luma=np.ascontiguousarray(luma, dtype=np.float32), alpha=None, bits=8,  # type: ignore[arg-type]
                         mode="RGB", format="", is_color=False)
        rgb = self.colorize_batch([im])[0][0]
        if is_float:
            return rgb
        out = (rgb * 255 + 0.5).clip(0, 255).astype(np.uint8)
        return Image.fromarray(out, "RGB") if is_pil else out


def auto_batch(free_bytes: int, net_bytes_per_frame: int, pixels: int) -> int:
    """``--batch-size auto`` on a GPU: the largest power of two up to ``AUTO_MAX_BATCH`` whose
    network activations and full-resolution frame temporaries fit in ``AUTO_MEMORY_SHARE``
    of the free memory."""
    per_frame = net_bytes_per_frame + pixels * DEVICE_BYTES_PER_PIXEL
    fits = int(free_bytes * AUTO_MEMORY_SHARE // max(1, per_frame))
    n = 1
    while n * 2 <= min(fits, AUTO_MAX_BATCH):
        n *= 2
    return n


def _too_big(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "32-bit index" in text


def merge_strips(luma: torch.Tensor, cbcr: torch.Tensor, dtype: type) -> np.ndarray:
    """``merge_luminance`` of full-resolution ``luma`` (``H x W``) with network-size chroma
    (``1 x 2 x h x w``, same device), ``STRIP_ROWS`` rows at a time, into a host ``H x W x 3``
    array of ``dtype`` (float32 in [0, 1], or uint8/uint16 code values): only the final
    pixels leave the device.

    Bilinear upsampling is separable: the width pass runs once at the network's row count,
    the height pass per strip with the same source index and weight rule as
    ``F.interpolate(..., align_corners=False)``."""
    H, W = luma.shape
    h = cbcr.shape[-2]
    wide = F.interpolate(cbcr.float(), size=(h, W), mode="bilinear", align_corners=False)
    top = {np.float32: 1.0, np.uint8: 255.0, np.uint16: 65535.0}[dtype]
    code = {np.float32: torch.float32, np.uint8: torch.uint8, np.uint16: torch.uint16}[dtype]
    out = np.empty((H, W, 3), dtype)
    for r0 in range(0, H, STRIP_ROWS):
        r1 = min(H, r0 + STRIP_ROWS)
        src = ((torch.arange(r0, r1, dtype=torch.float64) + 0.5) * (h / H) - 0.5).clamp(min=0)
        i0 = src.floor().long().clamp(max=h - 1)
        i1 = (i0 + 1).clamp(max=h - 1)
        lam = (src - i0).float().to(luma.device)[None, None, :, None]
        c = wide[:, :, i0.to(luma.device)] * (1 - lam) + wide[:, :, i1.to(luma.device)] * lam
        rgb = merge_luminance(luma[r0:r1][None, None], c)[0].permute(1, 2, 0)
        if dtype is not np.float32:
            rgb = (rgb * top).round_()
        out[r0:r1] = rgb.to(code).cpu().numpy()
    return out
