"""The gray -> chroma contract on one backend: network-size input, full-resolution output.

``Colorizer`` is what the photo pipeline, the video job, ``evaluate`` and the benchmark
share: it resizes luminance to the network's input, runs the backend, checks the result
once for NaN/Inf and merges the predicted chroma with the original full-resolution
luminance (richzhang's colorizers contract: the user's gray is never replaced).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .backends import Backend, BackendOptions, open_backend
from .color import chroma_from_prediction, luma_of, merge_luminance, to_network
from .errors import ModelError
from .images import LoadedImage
from .settings import InferConfig
from .weights import resolve_weights


class Colorizer:
    def __init__(self, backend: Backend, size: int = InferConfig.size, device: str | None = None,
                 config: InferConfig | None = None) -> None:
        self.backend = backend
        self.config = config or InferConfig(size=size)
        self.size = self.config.size if config is not None else size
        # Full-resolution merge runs where the backend's outputs can live cheaply.
        self.device = device or (backend.device if str(backend.device).startswith("cuda") else "cpu")

    @classmethod
    def open(cls, config: InferConfig | None = None, weights: str | os.PathLike[str] | None = None, *,
             model: str | os.PathLike[str] | None = None, **settings: Any) -> "Colorizer":
        """Open the backend ``config`` asks for on ``weights`` (or ``model``: ``"default"``, a
        bundled preset name or a file). Keyword ``settings`` override ``InferConfig`` fields."""
        cfg = (config or InferConfig()).replace(**settings) if settings else (config or InferConfig()).validate()
        path = resolve_weights(weights if weights is not None else model)
        be = open_backend(cfg.backend, path, cfg.device, BackendOptions(with_saliency=cfg.save_saliency))
        return cls(be, config=cfg)

    def predict(self, small: torch.Tensor) -> tuple[torch.Tensor, np.ndarray | None]:
        """Network-size gray ``N x 1 x S x S`` in [-1, 1] -> RGB prediction on ``self.device``."""
        rgb, sal = self.backend.infer(small.numpy())
        if not np.isfinite(rgb).all():
            raise ModelError("model produced NaN/Inf; the weights are broken")
        return torch.from_numpy(rgb).to(self.device), sal

    def colorize_batch(self, images: Sequence[LoadedImage]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per image, ``H x W x 3`` RGB in [0, 1] and optional ``H x W`` saliency."""
        if not images:
            return []
        small = torch.cat([to_network(torch.from_numpy(im.luma)[None, None], self.size) for im in images])
        rgb_pred, sal = self.predict(small)
        cbcr = chroma_from_prediction(rgb_pred)
        results = []
        for i, im in enumerate(images):
            y = torch.from_numpy(im.luma).to(self.device)[None, None]
            rgb = merge_luminance(y, cbcr[i:i + 1])[0].permute(1, 2, 0).cpu().numpy()
            s = None
            if sal is not None:
                st = torch.from_numpy(sal[i:i + 1]).to(self.device)
                s = F.interpolate(st, size=im.luma.shape, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
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
