"""TensorRT engine files and the environment they depend on (no TensorRT needed to read them).

Engine file layout: ``MAGIC`` (8 bytes) | header length (uint32 little endian) | header
JSON (TensorRT version, GPU name, compute capability, precision, profile, size, ONNX
sha256, scgan-rt version) | serialized TensorRT engine. An engine only runs on the GPU
model and TensorRT version it was built with, so the header is checked before
deserialising and a mismatch is a one-line ``ModelError`` naming the ``build-engine``
command to run. The cache file name is built from every build setting.

Security: a serialized engine is native code for the GPU and TensorRT deserialises it
without validation. Only load engines you built yourself (``scgan-rt build-engine`` or
the cache under ``engines/``); never engines downloaded from elsewhere.
"""
from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

from scgan_rt.atomic import atomic_path
from scgan_rt.errors import ModelError, ResourceError

MAGIC = b"SCGANTRT"
HEADER_FORMAT = 1
_LEN = struct.Struct("<I")
MAX_HEADER = 1 << 20
DEFAULT_PROFILE = (1, 4, 8)
DEFAULT_WORKSPACE_GIB = 4.0  # builder workspace pool limit


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
    if h.get("precision") in ("fp16", "int8"):
        cmd += f" --{h['precision']}"
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


def cached_engines(folder: Path, gpu_name: str, compute_capability: str, trt_version: str) -> list[Path]:
    """Engines in ``folder`` built for this GPU model and TensorRT version."""
    pattern = f"*-{_slug(gpu_name)}-sm{compute_capability.replace('.', '')}-trt{trt_version}-*.engine"
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


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


def torch_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def gpu_identity(device_id: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'M.m') via torch when it has CUDA, else pycuda."""
    if torch_cuda():
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
