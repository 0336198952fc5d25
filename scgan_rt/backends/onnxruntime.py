"""ONNX Runtime: CUDA EP when onnxruntime-gpu provides it, else the CPU EP with intra-op
threads = physical cores, all graph optimisations and I/O binding.

``weights`` is generator weights (exported once per size into the cache) or an ``.onnx``
file (used as is; its size is fixed)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ResourceError, UsageError
from ..export.onnx import cached_onnx, colorizer_onnx_info, load_onnx
from ..export.quantize import cached_int8
from . import BackendOptions, BackendSpec, device_index, infer_via_numpy, register


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


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, weights: str | Path, device: str = "auto", with_saliency: bool = False,
                 threads: int | None = None, precision: str = "auto") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ResourceError("onnxruntime is not installed (pip install onnxruntime)") from None
        self._ort = ort
        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device.startswith("cuda") and not has_cuda:
            raise ResourceError("--device cuda with --backend onnxruntime needs onnxruntime-gpu "
                                "(CUDAExecutionProvider not available)")
        self._device_id = device_index(device)
        self.device = f"cuda:{self._device_id}" if (has_cuda and device != "cpu") else "cpu"
        self.precision = SPEC.precision(self.device.split(":")[0], precision)
        self.threads = threads or physical_cores()
        self.path = Path(weights)
        self._sessions: dict[int, Any] = {}
        if self.path.suffix.lower() == ".onnx":
            meta = colorizer_onnx_info(self.path)
            self.onnx_fixed: Path | None = self.path
            self.with_saliency = with_saliency and "saliency" in meta.get("outputs", "")
            if with_saliency and not self.with_saliency:
                raise UsageError(f"{self.path.name} has no saliency output; re-export with --with-saliency")
            graph = meta.get("precision", "fp32")
            if precision not in ("auto", graph):
                raise UsageError(f"{self.path.name} is an {graph} model, not --precision {precision}")
            self.precision = graph
            self.sha256, self.config = None, None
        else:
            from ..weights import read_weights

            w = read_weights(self.path)
            self.onnx_fixed = None
            self.sha256, self.config = w.sha256, w.config
            self.with_saliency = with_saliency and w.config.use_saliency

    def _session(self, size: int) -> Any:
        sess = self._sessions.get(size)
        if sess is not None:
            return sess
        ort = self._ort
        if self.onnx_fixed is not None:
            load_onnx(self.onnx_fixed, load_external=False)  # external-data guard
            path = self.onnx_fixed
        else:
            path = self._cached(size)
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
        if self.device != "cpu":
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

    def _cached(self, size: int) -> Path:
        """The cached model of the weights in this backend's precision (exported once)."""
        if self.precision == "int8":
            return cached_int8(self.path, size, self.with_saliency, sha256=self.sha256)
        return cached_onnx(self.path, size, self.with_saliency, fp16=self.precision == "fp16", sha256=self.sha256)

    def infer(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(gray, dtype=np.float32)
        sess = self._session(int(x.shape[-1]))
        io = sess.io_binding()
        # I/O binding: the input is used in place (no copy on CPU; one H2D on CUDA) and
        # outputs land in ORT-allocated buffers on the device they are produced on.
        io.bind_cpu_input("gray", x)
        names = ["rgb"] + (["saliency"] if self.with_saliency else [])
        for n in names:
            io.bind_output(n, "cpu" if self.device == "cpu" else "cuda", self._device_id)
        sess.run_with_iobinding(io)
        outs = io.copy_outputs_to_cpu()
        return outs[0], (outs[1] if self.with_saliency else None)

    def infer_tensor(self, x: Any) -> tuple[Any, Any | None]:
        """Torch tensors in and out. On the CPU the tensor's memory is used in place; with
        the CUDA EP, input and outputs are bound to torch CUDA tensors' memory."""
        import torch

        if self.device == "cpu" or not x.is_cuda:
            return infer_via_numpy(self.infer, x)
        x = x.float().contiguous()
        n, _, h, w = x.shape
        sess = self._session(int(w))
        io = sess.io_binding()
        io.bind_input("gray", "cuda", self._device_id, np.float32, tuple(x.shape), x.data_ptr())
        outs = [torch.empty((n, c, h, w), dtype=torch.float32, device=x.device)
                for c in ([3] + ([1] if self.with_saliency else []))]
        for name, t in zip(("rgb", "saliency"), outs):
            io.bind_output(name, "cuda", self._device_id, np.float32, tuple(t.shape), t.data_ptr())
        # ORT runs on its own CUDA stream: the input must be complete before it starts.
        torch.cuda.current_stream(x.device).synchronize()
        sess.run_with_iobinding(io)
        return outs[0], (outs[1] if self.with_saliency else None)


def _available(kind: str) -> tuple[bool, str]:
    provs = ort_providers()
    if not provs:
        return False, "onnxruntime is not installed"
    if kind == "cpu":
        return True, f"CPU execution provider, {physical_cores()} intra-op threads, all graph optimisations"
    if "CUDAExecutionProvider" in provs:
        return True, "onnxruntime-gpu provides CUDAExecutionProvider"
    return False, "no CUDAExecutionProvider (onnxruntime-gpu not installed or no GPU)"


def _open(weights: str | os.PathLike[str], device: str, options: BackendOptions) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(weights, device, options.with_saliency, precision=options.precision)


# FP16 graphs are for GPUs: ONNX Runtime's CPU kernels would cast most of them back to FP32.
SPEC = register(BackendSpec("onnxruntime", {"cuda": 20, "cpu": 40}, _available, _open, runs_onnx_files=True,
                            precisions={"cuda": ("fp32", "fp16", "int8"), "cpu": ("fp32", "int8")}))
