"""PyTorch: spectral norm and BN folded away, channels_last; FP16 on CUDA; optionally
compiled (``--compile``: ``torch.compile`` with ``COMPILE_MODE``, one graph per batch shape).

``infer_tensor`` takes and returns tensors on the backend's device (what the colorizer
uses); ``infer`` is the numpy form of the protocol (benchmark, plugins, tests)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import BackendOptions, BackendSpec, register, resolve_device

if TYPE_CHECKING:
    import torch

# torch.compile mode for --compile: "default" (no CUDA graphs: the network is bound by its
# kernels, not by launches - CUDA-graph replay of the bare forward measured 646-656 vs
# 640-655 frames/s on an H200 - and autotuning would add minutes to the first run).
COMPILE_MODE = "default"


class TorchBackend:
    name = "torch"

    def __init__(self, weights: str | Path, device: str = "auto", with_saliency: bool = False,
                 fp16: bool | None = None, compile: bool = False) -> None:
        import torch

        from ..model import InferenceGenerator, fold_for_inference
        from ..weights import load_generator

        self.device = resolve_device(device)
        gen, self.weights = load_generator(weights, "cpu")
        self.config = gen.cfg
        self.with_saliency = with_saliency and gen.saliency is not None
        self.fp16 = self.device.startswith("cuda") if fp16 is None else fp16
        self.precision = "fp16" if self.fp16 else "fp32"
        model = InferenceGenerator(fold_for_inference(gen), self.with_saliency).eval()
        # channels_last: oneDNN's fastest conv layout on CPU too (measured 0.21 -> 0.14 s/frame
        # for scgan-lite at 256 on the 2-core dev machine).
        model = model.to(self.device, memory_format=torch.channels_last)
        if self.fp16:
            model = model.half()
        self.model = model
        self.dtype = torch.float16 if self.fp16 else torch.float32
        self.compiled = compile
        self._run = torch.compile(model, mode=COMPILE_MODE, dynamic=False) if compile else model

    def infer_tensor(self, x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor | None"]:
        """``N x 1 x S x S`` gray in [-1, 1] (any device) -> RGB (and saliency) on this device,
        in the network's precision."""
        import torch

        x = x.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self._run(x)
        return out if isinstance(out, tuple) else (out, None)

    def infer(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        rgb, sal = self.infer_tensor(torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32)))
        return rgb.float().cpu().numpy(), (sal.float().cpu().numpy() if sal is not None else None)


def _available(kind: str) -> tuple[bool, str]:
    import torch

    if kind == "cpu":
        return True, "always available"
    return (True, "torch sees a CUDA GPU") if torch.cuda.is_available() else (False, "torch sees no CUDA GPU")


def _open(weights: str | os.PathLike[str], device: str, options: BackendOptions) -> TorchBackend:
    fp16 = options.fp16 if options.precision == "auto" else options.precision == "fp16"
    if options.precision != "auto":
        SPEC.precision("cuda" if resolve_device(device).startswith("cuda") else "cpu", options.precision)
    return TorchBackend(weights, device, options.with_saliency, fp16, options.compile)


SPEC = register(BackendSpec("torch", {"cuda": 30, "cpu": 50}, _available, _open,
                            precisions={"cuda": ("fp16", "fp32"), "cpu": ("fp32",)}))
