"""The TensorRT backend: weights -> cached ONNX -> cached engine, or a self-built engine file.

``tensorrt`` and ``pycuda`` are imported lazily. When torch has CUDA the engine reads and
writes torch CUDA tensors directly (their ``data_ptr()`` are the bindings, the current
torch stream is the execution stream: frames never leave the device). Without torch
CUDA, pycuda allocations in the device's primary context and pinned host buffers carry
numpy batches. Engine files, their header
and the cache key live in ``scgan_rt.export.engine``; building in ``scgan_rt.export.tensorrt``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ResourceError, UsageError
from ..export.engine import (DEFAULT_PROFILE, DEFAULT_WORKSPACE_GIB, build_command, cached_engines, check_header,
                             engine_cache_name, engine_dir, gpu_identity, import_tensorrt, read_engine_file,
                             torch_cuda, trt_major)
from ..export.onnx import cached_onnx, onnx_info
from ..export.quantize import cached_int8
from . import BackendOptions, BackendSpec, device_index, infer_via_numpy, register


# --------------------------------------------------------------------------- runner


class _PycudaBuffers:
    """pycuda allocations in the device's primary context (shared with any other CUDA user)."""

    def __init__(self, device_id: int) -> None:
        try:
            import pycuda.driver as cuda  # type: ignore[import-not-found]
        except ImportError:
            raise ResourceError("torch has no CUDA and pycuda is not installed; install one of them") from None
        self.cuda = cuda
        cuda.init()
        self.ctx = cuda.Device(device_id).retain_primary_context()
        self.ctx.push()
        self.stream = cuda.Stream()
        self.handle = self.stream.handle

    def alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, Any, int]:
        host = self.cuda.pagelocked_empty(shape, dtype)
        dev = self.cuda.mem_alloc(host.nbytes)
        return dev, host, int(dev)

    def host_view(self, host: Any) -> np.ndarray:
        return host

    def h2d(self, dev: Any, host: Any, n: int) -> None:
        self.cuda.memcpy_htod_async(dev, host[:n], self.stream)

    def d2h(self, host: Any, dev: Any, n: int) -> None:
        self.cuda.memcpy_dtoh_async(host[:n], dev, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        try:
            self.ctx.pop()
        except Exception:
            pass


def _nptype(trt: Any, dt: Any) -> np.dtype:
    try:
        return np.dtype(trt.nptype(dt))
    except Exception:
        return np.dtype(np.float32)


class EngineRunner:
    """One deserialised engine.

    Batches are padded up to the profile minimum and split at its maximum; each chunk
    sets the input shape, binds every I/O tensor address and runs ``execute_async_v3``.
    ``buffers`` (pycuda) are allocated only where torch has no CUDA: with torch, I/O are
    torch tensors on the device (``infer_tensor``)."""

    CHANNELS = {"gray": 1, "rgb": 3, "saliency": 1}

    def __init__(self, header: dict[str, Any], engine_bytes: bytes, trt: Any, device_id: int = 0,
                 buffers: Any | None = None) -> None:
        self.trt, self.header = trt, header
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise ModelError(f"TensorRT could not deserialise the engine; rebuild with `{build_command(header)}`")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ResourceError("TensorRT could not create an execution context (GPU out of memory?)")
        self.pmin, self.popt, self.pmax = (int(x) for x in header.get("profile", DEFAULT_PROFILE))
        self.size = int(header["size"])
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if self.inputs != ["gray"] or "rgb" not in self.outputs:
            raise ModelError(f"engine I/O {names} is not an scgan-rt generator (want gray -> rgb[, saliency])")
        self.dtypes = {n: _nptype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.buf = buffers or (None if torch_cuda() else _PycudaBuffers(device_id))
        self.dev: dict[str, Any] = {}
        self.host: dict[str, Any] = {}
        self.addr: dict[str, int] = {}
        if self.buf is not None:
            for n in names:
                shape = (self.pmax, self.CHANNELS.get(n, 1), self.size, self.size)
                self.dev[n], self.host[n], self.addr[n] = self.buf.alloc(shape, self.dtypes[n])

    def _chunks(self, n_all: int, h: int, w: int) -> Any:
        if h != self.size or w != self.size:
            raise UsageError(f"engine was built for {self.size}x{self.size}, got {h}x{w}")
        for start in range(0, n_all, self.pmax):
            n = min(self.pmax, n_all - start)
            nb = max(n, self.pmin)  # pad up to the profile minimum
            if not self.context.set_input_shape("gray", (nb, 1, self.size, self.size)):
                raise UsageError(f"batch {nb} is outside the engine profile {self.pmin}:{self.popt}:{self.pmax}")
            yield start, n, nb

    def infer_tensor(self, x: Any) -> dict[str, Any]:
        """Torch tensors in and out, on ``x``'s device and the current torch stream."""
        import torch

        tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}
        stream = torch.cuda.current_stream(x.device).cuda_stream if x.is_cuda else 0
        res: dict[str, list[Any]] = {n: [] for n in self.outputs}
        for start, n, nb in self._chunks(x.shape[0], x.shape[2], x.shape[3]):
            inp = x[start:start + n].to(tdt[self.dtypes["gray"]]).contiguous()
            if nb > n:
                inp = torch.cat([inp, inp.new_zeros((nb - n, *inp.shape[1:]))])
            io = {"gray": inp, **{o: torch.empty((nb, self.CHANNELS.get(o, 1), self.size, self.size),
                                                 dtype=tdt[self.dtypes[o]], device=x.device) for o in self.outputs}}
            for name, t in io.items():
                self.context.set_tensor_address(name, t.data_ptr())
            if not self.context.execute_async_v3(stream):
                raise ResourceError("TensorRT execute_async_v3 failed")
            for o in self.outputs:
                res[o].append(io[o][:n])
        return {k: torch.cat(v) for k, v in res.items()}

    def infer(self, gray: np.ndarray) -> dict[str, np.ndarray]:
        """numpy in and out: through torch CUDA tensors, or pycuda's pinned buffers."""
        if self.buf is None:
            import torch

            outs = self.infer_tensor(torch.from_numpy(gray).cuda())
            return {k: v.float().cpu().numpy() for k, v in outs.items()}
        res: dict[str, list[np.ndarray]] = {n: [] for n in self.outputs}
        for start, n, nb in self._chunks(*gray.shape[0:1], *gray.shape[2:]):
            hin = self.buf.host_view(self.host["gray"])
            hin[:n] = gray[start:start + n]
            hin[n:nb] = 0
            for name, a in self.addr.items():
                self.context.set_tensor_address(name, a)
            self.buf.h2d(self.dev["gray"], self.host["gray"], nb)
            if not self.context.execute_async_v3(self.buf.handle):
                raise ResourceError("TensorRT execute_async_v3 failed")
            for name in self.outputs:
                self.buf.d2h(self.host[name], self.dev[name], nb)
            self.buf.sync()
            for name in self.outputs:
                res[name].append(np.array(self.buf.host_view(self.host[name])[:n], dtype=np.float32))
        return {k: np.concatenate(v) for k, v in res.items()}


# --------------------------------------------------------------------------- backend


class TensorRTBackend:
    """``colorize --backend tensorrt``: weights -> cached ONNX -> cached engine (built on first
    use under ``engines/``), or an ``.onnx`` / self-built ``.engine`` file directly."""

    name = "tensorrt"

    def __init__(self, weights: str | os.PathLike[str], with_saliency: bool = False, device_id: int = 0,
                 fp16: bool = True, profile: tuple[int, int, int] = DEFAULT_PROFILE,
                 out_dir: str | os.PathLike[str] | None = None, workspace_gib: float = DEFAULT_WORKSPACE_GIB,
                 trt: Any | None = None, precision: str | None = None) -> None:
        self.trt = trt or import_tensorrt()
        self.device = f"cuda:{device_id}"
        self.device_id = device_id
        self.gpu_name, self.cc = gpu_identity(device_id)
        self.trt_version = str(self.trt.__version__)
        # ``precision`` (fp32 / fp16 / int8) wins over the older ``fp16`` switch.
        self.precision = precision if precision not in (None, "auto") else ("fp16" if fp16 else "fp32")
        self.fp16 = self.precision == "fp16"
        self.profile, self.workspace = tuple(profile), workspace_gib
        self.out_dir = engine_dir(out_dir)
        self.path = Path(weights)
        self.with_saliency = with_saliency
        self._runners: dict[int, EngineRunner] = {}
        suffix = self.path.suffix.lower()
        if suffix in (".engine", ".plan", ".trt"):
            r = self._load(self.path)
            self._runners[r.size] = r
            self.fixed = True
        else:
            self.fixed = suffix == ".onnx"

    def _load(self, path: Path) -> EngineRunner:
        header, blob = read_engine_file(path)
        check_header(header, self.trt_version, self.gpu_name, self.cc, path.name)
        r = EngineRunner(header, blob, self.trt, self.device_id)
        if self.with_saliency and "saliency" not in r.outputs:
            raise UsageError(f"{path.name} has no saliency output; export and build with --with-saliency")
        return r

    def engine_for(self, size: int) -> Path:
        """Find or build the engine for ``size`` in the cache."""
        from ..export.tensorrt import build_engine
        from ..weights import sha256_file

        if self.path.suffix.lower() == ".onnx":
            onnx_path = self.path
            size = int(onnx_info(onnx_path).get("size", size))
        elif self.precision == "int8":
            onnx_path = cached_int8(self.path, size, self.with_saliency)
        else:
            # TensorRT 11 builds strongly typed networks: FP16 has to be in the graph.
            graph_fp16 = self.fp16 and trt_major(self.trt) >= 11
            onnx_path = cached_onnx(self.path, size, self.with_saliency, fp16=graph_fp16)
        graph = onnx_info(onnx_path).get("precision", "fp32")
        precision = "int8" if graph == "int8" else "fp16" if (self.fp16 or graph == "fp16") else "fp32"
        name = engine_cache_name(sha256_file(onnx_path), self.gpu_name, self.cc, self.trt_version, precision,
                                 self.profile, size)  # type: ignore[arg-type]
        path = self.out_dir / name
        if not path.is_file():
            path = build_engine(onnx_path, out_dir=self.out_dir, fp16=self.fp16, batch=self.profile, size=size,
                                workspace_gib=self.workspace, trt=self.trt, gpu=(self.gpu_name, self.cc),
                                int8=precision == "int8")
        return path

    def _runner(self, size: int) -> EngineRunner:
        r = self._runners.get(size)
        if r is None:
            if self.fixed and self._runners:
                have = next(iter(self._runners))
                raise UsageError(f"{self.path.name} is fixed at {have}x{have}; got {size}x{size}")
            r = self._load(self.engine_for(size))
            self._runners[r.size] = r
        return r

    def infer(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(gray, dtype=np.float32)
        outs = self._runner(int(x.shape[-1])).infer(x)
        return outs["rgb"], (outs.get("saliency") if self.with_saliency else None)

    def infer_tensor(self, x: Any) -> tuple[Any, Any | None]:
        """Device tensors in and out (torch with CUDA); through ``infer`` otherwise."""
        runner = self._runner(int(x.shape[-1]))
        if runner.buf is not None:
            return infer_via_numpy(self.infer, x)
        outs = runner.infer_tensor(x)
        return outs["rgb"], (outs.get("saliency") if self.with_saliency else None)


def availability(kind: str = "cuda") -> tuple[bool, str]:
    """Is TensorRT usable, and is an engine cached or buildable?"""
    try:
        trt = import_tensorrt()
    except ResourceError:
        return False, "tensorrt is not installed"
    try:
        gpu, cc = gpu_identity()
    except ResourceError as e:
        return False, str(e)
    ver = str(trt.__version__)
    d = engine_dir()
    cached = cached_engines(d, gpu, cc, ver)
    if cached:
        return True, f"TensorRT {ver} on {gpu}: {len(cached)} engine(s) cached in {d}/"
    return True, f"TensorRT {ver} on {gpu}: no engine in {d}/ yet; one is built on first use (minutes)"


def _open(weights: str | os.PathLike[str], device: str, options: BackendOptions) -> TensorRTBackend:
    precision = SPEC.precision("cuda", options.precision)
    if options.precision == "auto" and options.fp16 is False:
        precision = "fp32"
    return TensorRTBackend(weights, with_saliency=options.with_saliency, device_id=device_index(device),
                           precision=precision)


SPEC = register(BackendSpec("tensorrt", {"cuda": 10}, availability, _open, runs_onnx_files=True,
                            precisions={"cuda": ("fp16", "fp32", "int8")}))
