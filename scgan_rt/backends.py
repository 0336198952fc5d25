"""Inference backends behind one small protocol.

Every backend maps a batch of gray frames, float32 ``N x 1 x S x S`` in [-1, 1], to RGB
``N x 3 x S x S`` in [-1, 1] (and optionally saliency ``N x 1 x S x S`` in [0, 1]).
Pre/post-processing (resize, chroma merge) lives in ``pipeline``/``color`` and is shared.
Heavy optional dependencies (onnxruntime, tensorrt) are imported only inside the
backend that needs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .errors import ResourceError, UsageError

BACKENDS = ("auto", "torch")


class Backend(Protocol):
    name: str
    device: str
    with_saliency: bool

    def infer(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclass
class BackendChoice:
    """Why ``auto`` picked what it picked; ``scgan-rt info`` prints these."""

    name: str
    usable: bool
    reason: str


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ResourceError("--device cuda requested but torch sees no CUDA GPU; use --device cpu")
    return device


class TorchBackend:
    """Eager PyTorch: spectral norm and BN folded away, channels_last and FP16 on CUDA."""

    name = "torch"

    def __init__(self, weights: str | Path, device: str = "auto", with_saliency: bool = False,
                 fp16: bool | None = None) -> None:
        from .model import InferenceGenerator, fold_for_inference
        from .weights import load_generator

        self.device = resolve_device(device)
        gen, self.weights = load_generator(weights, "cpu")
        self.config = gen.cfg
        self.with_saliency = with_saliency and gen.saliency is not None
        self.fp16 = self.device.startswith("cuda") if fp16 is None else fp16
        model = InferenceGenerator(fold_for_inference(gen), self.with_saliency).eval()
        if self.device.startswith("cuda"):
            model = model.to(self.device, memory_format=torch.channels_last)
            if self.fp16:
                model = model.half()
        self.model = model

    @torch.inference_mode()
    def infer(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32)).to(self.device)
        if self.device.startswith("cuda"):
            x = x.contiguous(memory_format=torch.channels_last)
            if self.fp16:
                x = x.half()
        out = self.model(x)
        rgb, sal = out if isinstance(out, tuple) else (out, None)
        return rgb.float().cpu().numpy(), (sal.float().cpu().numpy() if sal is not None else None)


def backend_report(weights: str | Path | None = None) -> list[BackendChoice]:
    """Usability of each backend on this machine, in ``auto`` preference order."""
    cuda = torch.cuda.is_available()
    return [
        BackendChoice("torch-cuda", cuda, "torch sees a CUDA GPU" if cuda else "torch sees no CUDA GPU"),
        BackendChoice("torch-cpu", True, "always available"),
    ]


def open_backend(name: str, weights: str | Path, device: str = "auto", with_saliency: bool = False) -> Backend:
    """Open a backend by name; ``auto`` takes the first usable one of ``backend_report``."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return TorchBackend(weights, device=device, with_saliency=with_saliency)
