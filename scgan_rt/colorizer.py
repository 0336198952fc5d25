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
from .color import chroma_from_prediction, chroma_offsets, fit_gamut_, in_gamut_luma, smooth_chroma, to_network
from .errors import ModelError
from .images import PEAK_BYTES_PER_PIXEL, LoadedImage, picture_image
from .settings import (AUTO_MAX_BATCH, AUTO_MEMORY_SHARE, CPU_BATCH, DEVICE_BYTES_PER_PIXEL, DEVICE_STRIP_PIXELS,
                       HOST_NET_BYTES_PER_INPUT_PIXEL, STRIP_PIXELS, InferConfig)
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
    def open(cls, config: InferConfig | str | os.PathLike[str] | None = None, weights: str | os.PathLike[str] | None = None, *,
             model: str | os.PathLike[str] | None = None, **settings: Any) -> "Colorizer":
        """Open the backend ``config`` asks for on ``weights`` (or ``model``: ``"default"``, a
        bundled preset name or a file). Keyword ``settings`` override ``InferConfig`` fields.
        A path or name in ``config``'s place is taken as ``weights``."""
        if isinstance(config, (str, os.PathLike)):
            config, weights = None, config
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

    def batch_for(self, pixels: int, notes: list[str] | None = None) -> int:
        """Frames per network call for frames of ``pixels`` pixels: ``--batch-size`` as given
        (reduced, with a note, to what half the available memory holds), or with ``auto`` the
        CPU default, or on CUDA what free GPU memory holds."""
        if self.config.batch_size != "auto":
            asked = int(self.config.batch_size)
            cap, budget = self.memory_batch_cap(pixels)
            if asked > cap and notes is not None:
                notes.append(f"--batch-size {asked} reduced to {cap}: a batch must fit in {budget / 2**30:.1f} GiB "
                             f"(half the available memory)")
            return min(asked, cap)
        if not str(self.device).startswith("cuda"):
            return CPU_BATCH
        if self._net_bytes is None:
            self._net_bytes = self._probe_net_bytes()
        dev = torch.device(self.device)
        free, _ = torch.cuda.mem_get_info(dev)
        free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)  # torch's cache is free to us
        return auto_batch(free, self._net_bytes, pixels)

    def memory_batch_cap(self, pixels: int) -> tuple[int, int]:
        """(largest batch whose frames fit in ``AUTO_MEMORY_SHARE`` of the available host
        memory, that budget in bytes): full-resolution planes, and on the CPU the network's
        activations too."""
        import psutil

        budget = int(psutil.virtual_memory().available * AUTO_MEMORY_SHARE)
        per_frame = pixels * PEAK_BYTES_PER_PIXEL
        if not str(self.backend.device).startswith("cuda"):
            per_frame += self.size ** 2 * HOST_NET_BYTES_PER_INPUT_PIXEL
        return max(1, budget // per_frame), budget

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
        """The prediction's (Cb, Cr) in ``matrix``, low-passed by ``--chroma-smoothing`` and
        scaled by ``--saturation`` around neutral (the gamut step after it keeps every pixel
        inside the RGB cube)."""
        cbcr = smooth_chroma(chroma_from_prediction(rgb_pred, matrix), self.config.chroma_smoothing)
        return cbcr * self.config.saturation if self.config.saturation != 1.0 else cbcr

    def colorize_batch(self, images: Sequence[LoadedImage], quantise: bool = False
                       ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per image, ``H x W x 3`` RGB and optional ``H x W`` saliency. RGB is float in
        [0, 1], or with ``quantise`` uint8 (uint16 for 16-bit inputs) built strip by strip,
        so a large photo never holds a float copy of itself."""
        if not images:
            return []
        cbcr, sal = self.chroma_batch(images)
        return [self.merge(im, cbcr[i:i + 1], None if sal is None else sal[i:i + 1], quantise)
                for i, im in enumerate(images)]

    def chroma_batch(self, images: Sequence[LoadedImage]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network side of ``colorize_batch``: network-size chroma ``N x 2 x S x S`` (and
        saliency) on ``self.device``, checked for NaN/Inf."""
        lumas = [torch.from_numpy(im.luma).to(self.device) for im in images]
        small = torch.cat([to_network(y[None, None], self.size) for y in lumas])
        rgb_pred, sal = self.predict(small)
        return self.chroma(rgb_pred), sal

    def merge(self, im: LoadedImage, cbcr: torch.Tensor, sal: torch.Tensor | None = None, quantise: bool = False
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """The full-resolution side of ``colorize_batch`` for one image and its ``1 x 2 x S x S``
        chroma from ``chroma_batch``; safe to run in another thread than the network."""
        dtype = (np.uint16 if im.bits == 16 else np.uint8) if quantise else np.float32
        rgb = merge_strips(torch.from_numpy(im.luma).to(cbcr.device), cbcr, dtype)
        if sal is None:
            return rgb, None
        return rgb, F.interpolate(sal, size=im.luma.shape, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()

    def colorize(self, image: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
        """One picture in, its colorized version out, in the same kind: a PIL image gives an
        RGB PIL image; a uint8 array (``H x W`` or ``H x W x 3``) a uint8 ``H x W x 3`` array,
        a uint16 array a uint16 one, a float array in [0, 1] a float32 array; other integer
        arrays by their value range (see ``images.array_image``). Anything else is an
        ``InputError``, never a wrong picture."""
        im, kind = picture_image(image, self.config.max_pixels)
        if kind == "float":
            return self.colorize_batch([im])[0][0]
        im.bits = 16 if kind == "uint16" else 8
        rgb = self.colorize_batch([im], quantise=True)[0][0]
        return Image.fromarray(rgb, "RGB") if kind == "pil" else rgb


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
    """The merge of full-resolution ``luma`` (``H x W`` in [0, 1]) with network-size chroma
    (``1 x 2 x h x w``, same device), a strip of rows at a time, into a host ``H x W x 3``
    array of ``dtype`` (float32 in [0, 1], or uint8/uint16 code values): only the final
    pixels leave the device, and a strip's float work stays in cache-sized buffers.

    Bilinear upsampling is separable: the width pass, the chroma -> RGB offsets and their
    in-gamut luma ranges are computed once at the network's row count; a strip's rows are
    then each a source row plus a fraction of the step to the next (the rows and weights
    of ``F.interpolate(..., align_corners=False)``), and only pixels whose luma is outside
    the range of their two source rows go through the gamut step."""
    H, W = luma.shape
    top, offset, _ = MERGE_CODES[dtype]
    src = _SourceRows(cbcr, H, W, top, offset)
    out = np.empty((H, W, 3), dtype)
    rows = max(1, min(H, (STRIP_PIXELS if luma.device.type == "cpu" else DEVICE_STRIP_PIXELS) // W))
    buf, lo, hi = (torch.empty(k * rows * W, device=luma.device) for k in (3, 1, 1))
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        n = r1 - r0
        v = buf[:3 * n * W].view(3, n, W)
        src.rows_into(v, r0, r1)
        y = luma[r0:r1]
        v.add_(y, alpha=top)
        bounds = src.luma_ranges(r0, r1, lo[:n * W].view(n, W), hi[:n * W].view(n, W))
        suspects = torch.nonzero(((y < bounds[0]) | (y > bounds[1])).view(-1)).squeeze(1)
        fit_gamut_(v, y, suspects, top, offset)
        _store(out, r0, v, MERGE_CODES[dtype][2])
    return out


# Output dtype -> (code value of 1.0, offset that makes truncation round, torch dtype).
MERGE_CODES = {np.float32: (1.0, 0.0, torch.float32), np.uint8: (255.0, 0.5, torch.uint8),
               np.uint16: (65535.0, 0.5, torch.uint16)}


class _SourceRows:
    """The chroma of a picture at the network's row count and its full width, as RGB
    offsets in code units (``3 x h x W``), with what the strips of the merge need."""

    def __init__(self, cbcr: torch.Tensor, H: int, W: int, top: float, offset: float) -> None:
        h = cbcr.shape[-2]
        wide = F.interpolate(cbcr.float(), size=(h, W), mode="bilinear", align_corners=False)
        self.offs = chroma_offsets(wide, top, offset)[0]
        del wide
        self.step = torch.empty_like(self.offs)  # to the next source row; none after the last
        torch.sub(self.offs[:, 1:], self.offs[:, :-1], out=self.step[:, :-1])
        self.step[:, -1] = 0
        lo, hi = in_gamut_luma(self.offs, top, offset)  # per source row, then for a row and the next
        self.lo, self.hi = lo.clone(), hi.clone()
        torch.maximum(lo[:-1], lo[1:], out=self.lo[:-1])
        torch.minimum(hi[:-1], hi[1:], out=self.hi[:-1])
        # Per output row: its first source row and its weight on the next (F.interpolate's rule).
        pos = ((torch.arange(H, dtype=torch.float64) + 0.5) * (h / H) - 0.5).clamp(min=0)
        first = pos.floor().long().clamp(max=h - 1)
        self.lam = (pos - first).float().to(self.offs.device)[:, None]
        self.first = first.to(self.offs.device)
        self.runs = _runs(first.numpy())

    def rows_into(self, v: torch.Tensor, r0: int, r1: int) -> None:
        """Rows ``r0:r1`` of the offsets upsampled to full height, into ``v`` (``3 x n x W``):
        one broadcast multiply-add per run of rows that share their source rows."""
        for a, b, s in self.runs(r0, r1):
            torch.addcmul(self.offs[:, s:s + 1], self.lam[a:b], self.step[:, s:s + 1], out=v[:, a - r0:b - r0])

    def luma_ranges(self, r0: int, r1: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per pixel of rows ``r0:r1``, the luma range that is surely in gamut (into ``lo``, ``hi``)."""
        rows = self.first[r0:r1]
        return torch.index_select(self.lo, 0, rows, out=lo), torch.index_select(self.hi, 0, rows, out=hi)


def _runs(first: np.ndarray) -> Any:
    """``runs(r0, r1)``: ``(a, b, s)`` for each run of rows ``a:b`` within ``r0:r1`` whose
    first source row is ``s``."""
    starts = np.flatnonzero(np.diff(first, prepend=-1))
    ends = np.append(starts[1:], len(first))

    def runs(r0: int, r1: int) -> list[tuple[int, int, int]]:
        k0, k1 = np.searchsorted(ends, r0, side="right"), np.searchsorted(starts, r1)
        return [(max(r0, int(starts[k])), min(r1, int(ends[k])), int(first[starts[k]])) for k in range(k0, k1)]

    return runs


def _store(out: np.ndarray, r0: int, v: torch.Tensor, code: torch.dtype) -> None:
    """Planar code values ``v`` (``3 x n x W``) into rows ``r0:`` of ``out`` (``H x W x 3``).
    On the CPU numpy's strided cast does it (about 1.8x faster than torch's copy into a
    permuted view, measured); from a GPU the converted codes come down, interleaved."""
    n = v.shape[1]
    if v.device.type == "cpu":
        planes = v.numpy()
        for c in range(3):
            out[r0:r0 + n, :, c] = planes[c]  # truncates: offset 0.5 made it round
    else:
        torch.from_numpy(out[r0:r0 + n]).copy_(v.permute(1, 2, 0).to(code, memory_format=torch.contiguous_format))
