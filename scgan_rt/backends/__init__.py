"""Inference backends behind one small protocol, found through one registry.

Every backend maps a batch of gray frames, float32 ``N x 1 x S x S`` in [-1, 1], to RGB
``N x 3 x S x S`` in [-1, 1] (and optionally saliency ``N x 1 x S x S`` in [0, 1]).
Pre/post-processing (resize, chroma merge) lives above, in ``colorizer``/``color``.

Each backend is one module of this package that calls ``register(BackendSpec(...))``:
its name, the device kinds it serves with their place in the ``auto`` order, an
``available(kind)`` check and an ``open(weights, device, options)`` factory. The CLI's
``--backend`` choices, ``auto``, ``info`` and ``benchmark`` all read the registry, so a
new backend is one new file (listed in ``BUILTIN``, or loaded from a file named in
``$SCGAN_RT_BACKENDS``). Heavy dependencies are imported only inside ``open``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ResourceError, ScganError, UsageError

BUILTIN = ("tensorrt", "onnxruntime", "torch")
PLUGIN_ENV = "SCGAN_RT_BACKENDS"  # os.pathsep-separated .py files that register backends
DEVICE_KINDS = ("cuda", "cpu")
# ``--precision``: auto is each backend's accurate choice on its device (the first it lists).
PRECISIONS = ("auto", "fp32", "fp16", "int8")


class Backend(Protocol):
    name: str
    device: str
    with_saliency: bool

    def infer(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...

    # Optional: ``infer_tensor(x: torch.Tensor) -> (rgb, saliency | None)`` with tensors on
    # ``device``. Backends that have it keep frames on the device end to end; the colorizer
    # falls back to ``infer`` (numpy on the host) for those that do not.


def infer_via_numpy(infer: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]], x: Any) -> tuple[Any, Any]:
    """``infer_tensor`` for a backend (or a path of one) that takes host arrays: the torch
    tensor ``x`` goes through ``infer`` and the results come back as CPU tensors."""
    import torch

    rgb, sal = infer(x.detach().float().cpu().numpy())
    return torch.from_numpy(rgb), (torch.from_numpy(sal) if sal is not None else None)


@dataclass(frozen=True)
class BackendOptions:
    """What every backend is opened with; a backend ignores what it has no use for."""

    with_saliency: bool = False
    fp16: bool | None = None  # None: FP16 on CUDA, FP32 on CPU
    compile: bool = False  # torch.compile the network (backends that can)
    precision: str = "auto"  # one of PRECISIONS; wins over ``fp16`` unless auto


@dataclass(frozen=True)
class BackendSpec:
    name: str
    # Device kind -> place in the ``auto`` order (lower is tried first).
    auto_rank: dict[str, int]
    available: Callable[[str], tuple[bool, str]]
    open: Callable[[str | os.PathLike[str], str, BackendOptions], Backend]
    runs_onnx_files: bool = False  # can take an .onnx file instead of weights
    # Device kind -> the precisions it runs, its ``auto`` choice first (default: fp32 only).
    precisions: dict[str, tuple[str, ...]] | None = None

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(k for k in DEVICE_KINDS if k in self.auto_rank)

    def runs(self, kind: str) -> tuple[str, ...]:
        return (self.precisions or {}).get(kind, ("fp32",))

    def precision(self, kind: str, asked: str = "auto") -> str:
        """The precision this backend runs on ``kind`` for ``--precision asked``."""
        have = self.runs(kind)
        if asked == "auto":
            return have[0]
        if asked not in have:
            raise UsageError(f"--backend {self.name} on {kind} runs {' or '.join(have)}, not --precision {asked}")
        return asked


@dataclass
class BackendChoice:
    """One ``auto`` candidate and why it is (not) usable; ``scgan-rt info`` prints these."""

    name: str
    usable: bool
    reason: str
    backend: str = ""
    kind: str = ""
    precision: str = ""  # what ``--precision auto`` runs here
    precisions: tuple[str, ...] = ()  # every precision it runs


_REGISTRY: dict[str, BackendSpec] = {}
_loaded = False


def register(spec: BackendSpec) -> BackendSpec:
    if not spec.auto_rank or set(spec.auto_rank) - set(DEVICE_KINDS):
        raise ValueError(f"backend {spec.name}: auto_rank needs device kinds from {DEVICE_KINDS}")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BUILTIN:
        importlib.import_module(f"{__name__}.{mod}")
    for path in filter(None, os.environ.get(PLUGIN_ENV, "").split(os.pathsep)):
        spec = importlib.util.spec_from_file_location(f"scgan_rt_backend_{Path(path).stem}", path)
        if spec is None or spec.loader is None:
            raise UsageError(f"${PLUGIN_ENV}: cannot load {path}")
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def specs() -> dict[str, BackendSpec]:
    _load()
    return dict(_REGISTRY)


def names() -> list[str]:
    """Valid ``--backend`` values: ``auto`` and every registered backend."""
    return ["auto", *specs()]


def device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else device


def check_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def check_backend(name: str) -> str:
    if name not in names():
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(names())}")
    return name


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; a CUDA request needs a GPU."""
    import torch

    check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ResourceError("--device cuda requested but torch sees no CUDA GPU; use --device cpu")
        index = int(device[5:] or 0)
        if index >= torch.cuda.device_count():
            raise ResourceError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def device_index(device: str) -> int:
    return int(device[5:]) if device.startswith("cuda:") else 0


def backend_report(weights: str | os.PathLike[str] | None = None) -> list[BackendChoice]:
    """Every (backend, device kind) candidate in ``auto`` order with its usability."""
    cands = sorted(((rank, s, kind) for s in specs().values() for kind, rank in s.auto_rank.items()),
                   key=lambda c: c[0])
    out = []
    for _, s, kind in cands:
        label = s.name if len(s.auto_rank) == 1 else f"{s.name}-{kind}"
        try:
            ok, why = s.available(kind)
        except Exception as e:  # a broken optional install must not break `info`
            ok, why = False, f"check failed: {e}"
        out.append(BackendChoice(label, ok, why, s.name, kind, s.precision(kind), s.runs(kind)))
    return out


def open_backend(name: str, weights: str | os.PathLike[str], device: str = "auto",
                 options: BackendOptions | None = None) -> Backend:
    """Open a backend by name. ``auto`` walks ``backend_report`` in order (restricted to the
    device kind asked for) and takes the first that is usable and opens; a failing choice
    falls through with a warning."""
    options = options or BackendOptions()
    check_backend(name)
    check_device(device)
    check_precision(options.precision)
    if name != "auto":
        spec = specs()[name]
        if device != "auto" and device_kind(device) not in spec.devices:
            raise UsageError(f"--backend {name} runs on {' or '.join(spec.devices)}, not {device}")
        if device.startswith("cuda"):
            resolve_device(device)
        if device != "auto" or len(spec.devices) == 1:
            spec.precision(device_kind(device) if device != "auto" else spec.devices[0], options.precision)
        return spec.open(weights, device, options)
    if device.startswith("cuda"):
        resolve_device(device)  # ResourceError when torch sees no GPU
    is_onnx = str(weights).lower().endswith(".onnx")
    if not is_onnx:
        from ..weights import read_weights

        read_weights(weights)  # broken weights fail every backend: report them once, up front
    else:
        from ..export.onnx import colorizer_onnx_info

        colorizer_onnx_info(weights)  # so do broken ONNX files and ONNX models of something else
    last: Exception | None = None
    for c in backend_report(weights):
        spec = specs()[c.backend]
        if not c.usable or (device != "auto" and device_kind(device) != c.kind):
            continue
        if is_onnx and not spec.runs_onnx_files:
            continue
        if options.precision != "auto" and options.precision not in spec.runs(c.kind):
            continue
        try:
            return spec.open(weights, device if device != "auto" else c.kind, options)
        except (ScganError, ImportError, RuntimeError) as e:
            last = e
            warnings.warn(f"backend {c.name} failed ({e}); trying the next one", stacklevel=2)
    if last is not None:
        raise last
    raise ResourceError(f"no usable backend for device {device!r}; see `scgan-rt info`")
