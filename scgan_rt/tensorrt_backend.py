"""TensorRT runtime: engine files with a JSON header, the engine cache, and the backend.

Engine file layout: ``MAGIC`` (8 bytes) | header length (uint32 little endian) | header
JSON (TensorRT version, GPU name, compute capability, precision, profile, size, ONNX
sha256, scgan-rt version) | serialized TensorRT engine. An engine only runs on the GPU
model and TensorRT version it was built with, so the header is checked before
deserialising and a mismatch is a one-line ``ModelError`` naming the ``build-engine``
command to run.

Security: a serialized engine is native code for the GPU and TensorRT deserialises it
without validation. Only load engines you built yourself (``scgan-rt build-engine`` or
the cache under ``engines/``); never engines downloaded from elsewhere.

``tensorrt`` and ``pycuda`` are imported lazily. Device buffers are torch CUDA tensors
when torch has CUDA (one CUDA context, shared with torch), else pycuda allocations in the
device's primary context; host buffers are pinned either way.
"""
from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .atomic import atomic_path
from .errors import ModelError, ResourceError, UsageError

MAGIC = b"SCGANTRT"
HEADER_FORMAT = 1
_LEN = struct.Struct("<I")
MAX_HEADER = 1 << 20
DEFAULT_PROFILE = (1, 4, 8)


# --------------------------------------------------------------------------- header


def pack_engine(header: dict[str, Any], engine: bytes) -> bytes:
    h = json.dumps({"format": HEADER_FORMAT, **header}, sort_keys=True).encode()
    return MAGIC + _LEN.pack(len(h)) + h + bytes(engine)


def write_engine_file(path: str | os.PathLike[str], header: dict[str, Any], engine: bytes) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(pack_engine(header, engine))
    return path


def read_engine_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """(header, offset of the serialized engine). ModelError for anything not ours."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(len(MAGIC) + _LEN.size)
            if len(head) < len(MAGIC) + _LEN.size or head[:len(MAGIC)] != MAGIC:
                raise ModelError(f"{p.name} is not an scgan-rt engine (no header); build one with "
                                 f"`scgan-rt build-engine --onnx MODEL.onnx`")
            (n,) = _LEN.unpack(head[len(MAGIC):])
            if n > MAX_HEADER:
                raise ModelError(f"{p.name}: engine header is corrupt (length {n})")
            raw = f.read(n)
    except OSError as e:
        raise ModelError(f"cannot read engine {p}: {e.strerror or e}") from None
    try:
        header = json.loads(raw.decode())
        if not isinstance(header, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError):
        raise ModelError(f"{p.name}: engine header is not valid JSON") from None
    return header, len(MAGIC) + _LEN.size + n


def read_engine_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    header, off = read_engine_header(path)
    data = Path(path).read_bytes()[off:]
    if not data:
        raise ModelError(f"{Path(path).name}: engine file has a header but no engine")
    return header, data


def build_command(header: dict[str, Any] | None = None, onnx: str | None = None) -> str:
    h = header or {}
    prof = h.get("profile")
    cmd = f"scgan-rt build-engine --onnx {onnx or h.get('onnx_name') or 'MODEL.onnx'}"
    if h.get("precision") == "fp16":
        cmd += " --fp16"
    if prof:
        cmd += f" --batch {':'.join(str(x) for x in prof)}"
    if h.get("size"):
        cmd += f" --size {h['size']}"
    return cmd


def check_header(header: dict[str, Any], trt_version: str, gpu_name: str, compute_capability: str,
                 name: str = "engine") -> None:
    """The engine must come from this GPU model and TensorRT version."""
    problems = []
    if header.get("tensorrt_version") != trt_version:
        problems.append(f"TensorRT {header.get('tensorrt_version')} (this machine: {trt_version})")
    if header.get("gpu_name") != gpu_name or header.get("compute_capability") != compute_capability:
        problems.append(f"GPU {header.get('gpu_name')} sm{header.get('compute_capability')} "
                        f"(this machine: {gpu_name} sm{compute_capability})")
    if problems:
        raise ModelError(f"{name} was built for {' and '.join(problems)}; rebuild it here with "
                         f"`{build_command(header)}`")


# --------------------------------------------------------------------------- cache


def engine_dir(out_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(out_dir or os.environ.get("SCGAN_RT_ENGINES") or "engines")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower() or "gpu"


def engine_cache_name(onnx_sha256: str, gpu_name: str, compute_capability: str, trt_version: str,
                      precision: str, profile: tuple[int, int, int], size: int) -> str:
    """Cache key: ONNX hash, GPU, TensorRT version, precision, profile (and size)."""
    p = "-".join(str(x) for x in profile)
    return (f"scgan-{onnx_sha256[:16]}-{_slug(gpu_name)}-sm{compute_capability.replace('.', '')}"
            f"-trt{trt_version}-{precision}-b{p}-{size}.engine")


# --------------------------------------------------------------------------- environment


def import_tensorrt():
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError:
        raise ResourceError("TensorRT is not installed (on a CUDA machine: pip install tensorrt pycuda)") from None
    return trt


def trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 10


def _torch_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def gpu_identity(device_id: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'M.m') via torch when it has CUDA, else pycuda."""
    if _torch_cuda():
        import torch

        major, minor = torch.cuda.get_device_capability(device_id)
        return torch.cuda.get_device_name(device_id), f"{major}.{minor}"
    try:
        import pycuda.driver as cuda  # type: ignore[import-not-found]
    except ImportError:
        raise ResourceError("no CUDA: torch has no CUDA GPU and pycuda is not installed") from None
    try:
        cuda.init()
        dev = cuda.Device(device_id)
        major, minor = dev.compute_capability()
        return dev.name(), f"{major}.{minor}"
    except Exception as e:
        raise ResourceError(f"no CUDA GPU: {e}") from None


def availability(weights: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    """For ``backend_report``: is TensorRT usable, and is an engine cached or buildable?"""
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
    cached = sorted(d.glob(f"*-{_slug(gpu)}-sm{cc.replace('.', '')}-trt{ver}-*.engine")) if d.is_dir() else []
    if cached:
        return True, f"TensorRT {ver} on {gpu}: {len(cached)} engine(s) cached in {d}/"
    return True, f"TensorRT {ver} on {gpu}: no engine in {d}/ yet; one is built on first use (minutes)"


# --------------------------------------------------------------------------- runner


class _TorchBuffers:
    """Device buffers as torch CUDA tensors, pinned host tensors, a torch CUDA stream."""

    def __init__(self, device_id: int) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda", device_id)
        self.stream = torch.cuda.Stream(self.device)
        self.handle = self.stream.cuda_stream

    def alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, Any, int]:
        t = self.torch
        tdt = {np.dtype(np.float32): t.float32, np.dtype(np.float16): t.float16}[np.dtype(dtype)]
        dev = t.empty(shape, dtype=tdt, device=self.device)
        host = t.empty(shape, dtype=tdt, pin_memory=True)
        return dev, host, int(dev.data_ptr())

    def host_view(self, host: Any) -> np.ndarray:
        return host.numpy()

    def h2d(self, dev: Any, host: Any, n: int) -> None:
        with self.torch.cuda.stream(self.stream):
            dev[:n].copy_(host[:n], non_blocking=True)

    def d2h(self, host: Any, dev: Any, n: int) -> None:
        with self.torch.cuda.stream(self.stream):
            host[:n].copy_(dev[:n], non_blocking=True)

    def sync(self) -> None:
        self.stream.synchronize()


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
    """One deserialised engine with buffers for the profile's max batch.

    Batches are padded up to the profile minimum and split at its maximum; each chunk
    sets the input shape, binds every I/O tensor address and runs ``execute_async_v3``.
    """

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
        self.buf = buffers or (_TorchBuffers(device_id) if _torch_cuda() else _PycudaBuffers(device_id))
        self.dev: dict[str, Any] = {}
        self.host: dict[str, Any] = {}
        self.addr: dict[str, int] = {}
        chans = {"gray": 1, "rgb": 3, "saliency": 1}
        for n in names:
            dt = _nptype(trt, self.engine.get_tensor_dtype(n))
            shape = (self.pmax, chans.get(n, 1), self.size, self.size)
            self.dev[n], self.host[n], self.addr[n] = self.buf.alloc(shape, dt)

    def infer(self, gray: np.ndarray) -> dict[str, np.ndarray]:
        n_all, _, h, w = gray.shape
        if h != self.size or w != self.size:
            raise UsageError(f"engine was built for {self.size}x{self.size}, got {h}x{w}")
        res: dict[str, list[np.ndarray]] = {n: [] for n in self.outputs}
        for start in range(0, n_all, self.pmax):
            chunk = gray[start:start + self.pmax]
            n = len(chunk)
            nb = max(n, self.pmin)  # pad up to the profile minimum
            hin = self.buf.host_view(self.host["gray"])
            hin[:n] = chunk
            if nb > n:
                hin[n:nb] = 0
            if not self.context.set_input_shape("gray", (nb, 1, self.size, self.size)):
                raise UsageError(f"batch {nb} is outside the engine profile {self.pmin}:{self.popt}:{self.pmax}")
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
                 out_dir: str | os.PathLike[str] | None = None, workspace_gib: float = 4.0,
                 trt: Any | None = None) -> None:
        self.trt = trt or import_tensorrt()
        self.device = f"cuda:{device_id}"
        self.device_id = device_id
        self.gpu_name, self.cc = gpu_identity(device_id)
        self.trt_version = str(self.trt.__version__)
        self.fp16, self.profile, self.workspace = fp16, tuple(profile), workspace_gib
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
        from .export.onnx import onnx_info
        from .export.tensorrt import build_engine
        from .weights import sha256_file

        if self.path.suffix.lower() == ".onnx":
            onnx_path = self.path
            size = int(onnx_info(onnx_path).get("size", size))
        else:
            from .backends import cached_onnx

            # TensorRT 11 builds strongly typed networks: FP16 has to be in the graph.
            graph_fp16 = self.fp16 and trt_major(self.trt) >= 11
            onnx_path = cached_onnx(self.path, size, self.with_saliency, fp16=graph_fp16)
        precision = "fp16" if self.fp16 else "fp32"
        name = engine_cache_name(sha256_file(onnx_path), self.gpu_name, self.cc, self.trt_version, precision,
                                 self.profile, size)  # type: ignore[arg-type]
        path = self.out_dir / name
        if not path.is_file():
            path = build_engine(onnx_path, out_dir=self.out_dir, fp16=self.fp16, batch=self.profile, size=size,
                                workspace_gib=self.workspace, trt=self.trt, gpu=(self.gpu_name, self.cc))
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
