"""Inference backends behind one small protocol.

Every backend maps a batch of gray frames, float32 ``N x 1 x S x S`` in [-1, 1], to RGB
``N x 3 x S x S`` in [-1, 1] (and optionally saliency ``N x 1 x S x S`` in [0, 1]).
Pre/post-processing (resize, chroma merge) lives in ``pipeline``/``color`` and is shared.
Heavy optional dependencies (onnxruntime, tensorrt) are imported only inside the
backend that needs them.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .errors import ModelError, ResourceError, ScganError, UsageError

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


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
    """Eager PyTorch: spectral norm and BN folded away, channels_last; FP16 on CUDA."""

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
        # channels_last: oneDNN's fastest conv layout on CPU too (measured 0.21 -> 0.14 s/frame
        # for scgan-lite at 256 on the 2-core dev machine).
        model = model.to(self.device, memory_format=torch.channels_last)
        if self.fp16:
            model = model.half()
        self.model = model

    @torch.inference_mode()
    def infer(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32)).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.fp16:
            x = x.half()
        out = self.model(x)
        rgb, sal = out if isinstance(out, tuple) else (out, None)
        return rgb.float().cpu().numpy(), (sal.float().cpu().numpy() if sal is not None else None)


def cache_dir(kind: str = "") -> Path:
    """``$SCGAN_RT_CACHE`` or ``~/.cache/scgan-rt`` (+ ``kind``): exported ONNX per weights."""
    base = os.environ.get("SCGAN_RT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "scgan-rt")
    return Path(base) / kind if kind else Path(base)


def physical_cores() -> int:
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:
        n = None
    if not n:
        n = os.cpu_count() or 1
    try:  # respect an affinity mask / cgroup-pinned CPU set
        n = min(n, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        pass
    return max(1, int(n))


def cached_onnx(weights: str | Path, size: int = 256, with_saliency: bool = False, fp16: bool = False,
                sha256: str | None = None) -> Path:
    """The ONNX export of ``weights`` at ``size``, exported once into the cache (atomically)
    and reused while its recorded weights sha256 matches."""
    from .export.onnx import export_onnx, onnx_info
    from .weights import sha256_file

    sha = sha256 or sha256_file(weights)
    name = f"{sha[:20]}-{size}-{'rgb+sal' if with_saliency else 'rgb'}-{'fp16' if fp16 else 'fp32'}.onnx"
    path = cache_dir("onnx") / name
    if path.is_file():
        try:
            meta = onnx_info(path)
            if meta.get("weights_sha256") == sha and meta.get("size") == str(size):
                return path
        except ScganError:
            pass  # corrupt / stale cache entry: re-export over it
    export_onnx(weights, path, size=size, fp16=fp16, with_saliency=with_saliency)
    return path


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


class OnnxRuntimeBackend:
    """ONNX Runtime: CUDA EP when onnxruntime-gpu provides it, else the CPU EP with
    intra-op threads = physical cores, all graph optimisations and I/O binding.

    ``weights`` is generator weights (exported once per size into the cache) or an
    ``.onnx`` file (used as is; its size is fixed)."""

    name = "onnxruntime"

    def __init__(self, weights: str | Path, device: str = "auto", with_saliency: bool = False,
                 threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ResourceError("onnxruntime is not installed (pip install onnxruntime)") from None
        self._ort = ort
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device.startswith("cuda") and not has_cuda:
            raise ResourceError("--device cuda with --backend onnxruntime needs onnxruntime-gpu "
                                "(CUDAExecutionProvider not available)")
        self.device = "cuda" if (has_cuda and device != "cpu") else "cpu"
        self._device_id = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        self.threads = threads or physical_cores()
        self.path = Path(weights)
        self._sessions: dict[int, Any] = {}
        if self.path.suffix.lower() == ".onnx":
            from .export.onnx import onnx_info

            meta = onnx_info(self.path)
            self.onnx_fixed: Path | None = self.path
            self.with_saliency = with_saliency and "saliency" in meta.get("outputs", "")
            if with_saliency and not self.with_saliency:
                raise UsageError(f"{self.path.name} has no saliency output; re-export with --with-saliency")
            self.sha256, self.config = None, None
        else:
            from .weights import read_weights

            w = read_weights(self.path)
            self.onnx_fixed = None
            self.sha256, self.config = w.sha256, w.config
            self.with_saliency = with_saliency and w.config.use_saliency

    def _session(self, size: int):
        sess = self._sessions.get(size)
        if sess is not None:
            return sess
        ort = self._ort
        if self.onnx_fixed is not None:
            from .export.onnx import load_onnx

            load_onnx(self.onnx_fixed, load_external=False)  # external-data guard
            path = self.onnx_fixed
        else:
            path = cached_onnx(self.path, size, self.with_saliency, sha256=self.sha256)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if os.environ.get("SCGAN_ORT_SPIN", "0") != "1":
            # Idle ORT threads otherwise spin after each run and steal the cores the
            # full-resolution merge and the image/video codecs need between batches.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.device == "cuda":
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": self._device_id,
                                                                "cudnn_conv_algo_search": "EXHAUSTIVE"}),
                                    "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:
            raise ModelError(f"onnxruntime cannot load {path.name}: {str(e).splitlines()[0][:200]}") from None
        self._outputs = [o.name for o in sess.get_outputs()]
        self._sessions[size] = sess
        return sess

    def infer(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(gray, dtype=np.float32)
        sess = self._session(int(x.shape[-1]))
        io = sess.io_binding()
        # I/O binding: the input is used in place (no copy on CPU; one H2D on CUDA) and
        # outputs land in ORT-allocated buffers on the device they are produced on.
        io.bind_cpu_input("gray", x)
        names = ["rgb"] + (["saliency"] if self.with_saliency else [])
        for n in names:
            io.bind_output(n, "cuda" if self.device == "cuda" else "cpu", self._device_id)
        sess.run_with_iobinding(io)
        outs = io.copy_outputs_to_cpu()
        return outs[0], (outs[1] if self.with_saliency else None)


def _tensorrt_status(weights: str | Path | None) -> tuple[bool, str]:
    try:
        from . import tensorrt_backend as tb
    except Exception as e:  # pragma: no cover - our own module
        return False, f"tensorrt backend unavailable: {e}"
    return tb.availability(weights)


def backend_report(weights: str | Path | None = None) -> list[BackendChoice]:
    """Usability of each backend on this machine, in ``auto`` preference order:
    TensorRT -> ONNX Runtime CUDA -> torch CUDA -> ONNX Runtime CPU -> torch CPU."""
    cuda = torch.cuda.is_available()
    provs = ort_providers()
    trt_ok, trt_reason = _tensorrt_status(weights)
    if not provs:
        ort_cuda = (False, "onnxruntime is not installed")
        ort_cpu = (False, "onnxruntime is not installed")
    else:
        ort_cuda = (True, "onnxruntime-gpu provides CUDAExecutionProvider") if "CUDAExecutionProvider" in provs \
            else (False, "no CUDAExecutionProvider (onnxruntime-gpu not installed or no GPU)")
        ort_cpu = (True, f"CPU execution provider, {physical_cores()} intra-op threads, all graph optimisations")
    return [
        BackendChoice("tensorrt", trt_ok, trt_reason),
        BackendChoice("onnxruntime-cuda", *ort_cuda),
        BackendChoice("torch-cuda", cuda, "torch sees a CUDA GPU" if cuda else "torch sees no CUDA GPU"),
        BackendChoice("onnxruntime-cpu", *ort_cpu),
        BackendChoice("torch-cpu", True, "always available"),
    ]


def _open_choice(choice: str, weights: str | Path, with_saliency: bool) -> Backend:
    if choice == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(weights, with_saliency=with_saliency)
    if choice == "onnxruntime-cuda":
        return OnnxRuntimeBackend(weights, device="cuda", with_saliency=with_saliency)
    if choice == "onnxruntime-cpu":
        return OnnxRuntimeBackend(weights, device="cpu", with_saliency=with_saliency)
    if choice == "torch-cuda":
        return TorchBackend(weights, device="cuda", with_saliency=with_saliency)
    return TorchBackend(weights, device="cpu", with_saliency=with_saliency)


def open_backend(name: str, weights: str | Path, device: str = "auto", with_saliency: bool = False) -> Backend:
    """Open a backend by name. ``auto`` walks ``backend_report`` in order (restricted to the
    CPU entries with ``--device cpu`` and the CUDA ones with ``--device cuda``) and takes the
    first that is usable and opens; a failing choice falls through with a warning."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "torch":
        return TorchBackend(weights, device=device, with_saliency=with_saliency)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(weights, device=device, with_saliency=with_saliency)
    if name == "tensorrt":
        if device == "cpu":
            raise UsageError("--backend tensorrt needs a CUDA GPU; use --device auto or cuda")
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(weights, with_saliency=with_saliency)
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda"):
        resolve_device(device)  # ResourceError when torch sees no GPU
    if not str(weights).lower().endswith(".onnx"):
        from .weights import read_weights

        read_weights(weights)  # broken weights fail every backend: report them once, up front
    last: Exception | None = None
    for c in backend_report(weights):
        if not c.usable:
            continue
        on_cuda = c.name in ("tensorrt", "onnxruntime-cuda", "torch-cuda")
        if (device == "cpu" and on_cuda) or (device.startswith("cuda") and not on_cuda):
            continue
        if str(weights).lower().endswith(".onnx") and c.name.startswith("torch"):
            continue  # torch needs weights, not an ONNX graph
        try:
            return _open_choice(c.name, weights, with_saliency)
        except (ScganError, ImportError, RuntimeError) as e:
            last = e
            warnings.warn(f"backend {c.name} failed ({e}); trying the next one", stacklevel=2)
    if last is not None:
        raise last
    raise ResourceError(f"no usable backend for device {device!r}; see `scgan-rt info`")
