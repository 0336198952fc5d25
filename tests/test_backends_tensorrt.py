"""TensorRT engine header / cache / selection logic, and an API CONTRACT test.

HONEST LABEL: TensorRT and pycuda cannot be installed on the machines this suite runs on.
The contract tests below run our builder and runtime against a *fake* ``tensorrt`` module
(and a fake ``pycuda.driver``) that mirrors the TensorRT 10 / 11 Python signatures we rely
on, as documented by NVIDIA (Builder.create_network, IBuilderConfig.set_memory_pool_limit,
MemoryPoolType.WORKSPACE, BuilderFlag.FP16 (10 only), NetworkDefinitionCreationFlag.
STRONGLY_TYPED, create_optimization_profile / set_shape, OnnxParser.parse / get_error,
build_serialized_network, IProgressMonitor, Runtime.deserialize_cuda_engine,
num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_dtype,
set_input_shape / set_tensor_address / execute_async_v3). They prove we make the calls
and pass the flags we intend; they do NOT prove a real TensorRT accepts the graph. That
is what tests/gpu/ and scripts/trt_parity.py check on a real GPU.
"""
from __future__ import annotations

import ctypes
import enum
import json
import sys
import types

import numpy as np
import pytest

from scgan_rt.config import ModelConfig
from scgan_rt.errors import ModelError, UsageError
from scgan_rt.backends import tensorrt as tb
from scgan_rt.export import engine


# --------------------------------------------------------------------------- header / cache


def test_engine_header_roundtrip(tmp_path):
    hdr = {"tensorrt_version": "10.9.0", "gpu_name": "NVIDIA H100", "compute_capability": "9.0",
           "precision": "fp16", "profile": [1, 4, 8], "size": 256, "onnx_sha256": "ab" * 32}
    p = engine.write_engine_file(tmp_path / "e.engine", hdr, b"PLANBYTES")
    h, blob = engine.read_engine_file(p)
    assert blob == b"PLANBYTES" and h["gpu_name"] == "NVIDIA H100" and h["format"] == engine.HEADER_FORMAT
    assert p.read_bytes().startswith(engine.MAGIC)


@pytest.mark.parametrize("data", [b"", b"PLAN only", engine.MAGIC + b"\xff\xff\xff\x7f", engine.MAGIC + b"\x03\x00\x00\x00{x}"])
def test_foreign_or_corrupt_engine_files_are_refused(tmp_path, data):
    p = tmp_path / "bad.engine"
    p.write_bytes(data)
    with pytest.raises(ModelError):
        engine.read_engine_file(p)


def test_header_mismatch_names_the_build_command():
    hdr = {"tensorrt_version": "10.9.0", "gpu_name": "NVIDIA A100", "compute_capability": "8.0",
           "precision": "fp16", "profile": [1, 4, 8], "size": 256, "onnx_name": "m.onnx"}
    engine.check_header(hdr, "10.9.0", "NVIDIA A100", "8.0")
    with pytest.raises(ModelError, match=r"scgan-rt build-engine --onnx m.onnx --fp16 --batch 1:4:8 --size 256"):
        engine.check_header(hdr, "10.9.0", "NVIDIA H100 80GB HBM3", "9.0")
    with pytest.raises(ModelError, match="TensorRT 10.9.0"):
        engine.check_header(hdr, "11.0.0", "NVIDIA A100", "8.0")
    assert "\n" not in engine.build_command(hdr)


def test_engine_cache_key_covers_onnx_gpu_trt_precision_profile():
    base = dict(onnx_sha256="1" * 64, gpu_name="NVIDIA H100", compute_capability="9.0", trt_version="10.9.0",
                precision="fp16", profile=(1, 4, 8), size=256)
    names = {engine.engine_cache_name(**base)}
    for k, v in [("onnx_sha256", "2" * 64), ("gpu_name", "NVIDIA L4"), ("compute_capability", "8.9"),
                 ("trt_version", "11.0.0"), ("precision", "fp32"), ("profile", (1, 8, 32)), ("size", 512)]:
        names.add(engine.engine_cache_name(**{**base, k: v}))
    assert len(names) == 8
    assert all("/" not in n and n.endswith(".engine") for n in names)


def test_report_without_tensorrt_explains_itself():
    from scgan_rt.backends import backend_report

    rep = {c.name: c for c in backend_report()}
    if "tensorrt" not in sys.modules:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            assert not rep["tensorrt"].usable and "not installed" in rep["tensorrt"].reason


# --------------------------------------------------------------------------- fakes


class _Rec:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, *a):
        self.calls.append(a)

    def names(self):
        return [c[0] for c in self.calls]


def make_fake_trt(version: str, rec: _Rec, fail_parse: bool = False):
    """A module with the TensorRT 10 or 11 Python API surface scgan-rt uses."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            rec("Logger", severity)

    class NDCF(enum.IntEnum):
        if major < 11:
            EXPLICIT_BATCH = 0  # deprecated in 10: we must NOT use it
        STRONGLY_TYPED = 1

    flags_members = {"TF32": 7}
    if major < 11:
        flags_members["FP16"] = 0  # precision flags are removed in TensorRT 11 (strongly typed only)
        flags_members["INT8"] = 1
    BuilderFlag = enum.IntEnum("BuilderFlag", flags_members)

    class MemoryPoolType(enum.IntEnum):
        WORKSPACE = 0

    class TensorIOMode(enum.IntEnum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    class DataType(enum.IntEnum):
        FLOAT = 0
        HALF = 1

    class IProgressMonitor:
        def __init__(self):
            rec("IProgressMonitor.__init__")

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            rec("profile.set_shape", name, tuple(mn), tuple(opt), tuple(mx))

    class TimingCache:
        def serialize(self):
            return b"TIMINGCACHE"

    class Config:
        def __init__(self):
            self.progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            rec("config.set_memory_pool_limit", pool, size)

        def set_flag(self, flag):
            rec("config.set_flag", flag)

        def add_optimization_profile(self, p):
            rec("config.add_optimization_profile")
            return 0

        def create_timing_cache(self, data):
            rec("config.create_timing_cache", bytes(data))
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch):
            rec("config.set_timing_cache", ignore_mismatch)
            return True

    class Network:
        pass

    class Builder:
        def __init__(self, logger):
            rec("Builder")

        def create_network(self, flags):
            rec("builder.create_network", flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            rec("builder.build_serialized_network", config.progress_monitor is not None)
            m = config.progress_monitor
            if m is not None:
                m.phase_start("Building engine", None, 2)
                assert m.step_complete("Building engine", 0) is True
                m.step_complete("Building engine", 1)
                m.phase_finish("Building engine")
            return memoryview(b"SERIALIZED-PLAN")

    class OnnxParser:
        def __init__(self, network, logger):
            rec("OnnxParser")
            self.num_errors = 1 if fail_parse else 0

        def parse(self, model_bytes):
            rec("parser.parse", len(model_bytes))
            return not fail_parse

        def get_error(self, i):
            return "In node 3 (Conv): unsupported"

    # ---------------------------------------------------------------- runtime
    class Context:
        def __init__(self, engine):
            self.engine, self.shape, self.addr = engine, None, {}

        def set_input_shape(self, name, shape):
            rec("context.set_input_shape", name, tuple(shape))
            self.shape = tuple(shape)
            return engine_profile[0] <= shape[0] <= engine_profile[2]

        def set_tensor_address(self, name, addr):
            rec("context.set_tensor_address", name)
            self.addr[name] = int(addr)

        def execute_async_v3(self, stream_handle):
            rec("context.execute_async_v3", stream_handle)
            n, _, h, w = self.shape
            x = np.frombuffer(_memory(self.addr["gray"], n * h * w * 4), np.float32)[: n * h * w].reshape(n, 1, h, w)
            rgb = np.concatenate([np.tanh(x), 0.5 * x, -x], 1).astype(np.float32)
            _memory(self.addr["rgb"], rgb.nbytes)[: rgb.nbytes] = rgb.tobytes()
            return True

    engine_profile = [1, 4, 8]

    class Engine:
        num_io_tensors = 2
        _names = ["gray", "rgb"]

        def get_tensor_name(self, i):
            return self._names[i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "gray" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            rec("Runtime")

        def deserialize_cuda_engine(self, blob):
            rec("runtime.deserialize_cuda_engine", bytes(blob))
            return Engine() if bytes(blob) == b"SERIALIZED-PLAN" else None

    def nptype(dt):
        return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[dt]

    for k, v in dict(Logger=Logger, NetworkDefinitionCreationFlag=NDCF, BuilderFlag=BuilderFlag,
                     MemoryPoolType=MemoryPoolType, TensorIOMode=TensorIOMode, DataType=DataType,
                     IProgressMonitor=IProgressMonitor, Builder=Builder, OnnxParser=OnnxParser, Runtime=Runtime,
                     nptype=nptype).items():
        setattr(trt, k, v)
    trt._engine_profile = engine_profile
    return trt


FAKE_DEVICE_MEMORY: dict[int, bytearray] = {}


def _memory(addr: int, nbytes: int):
    """A fake pycuda allocation, or else the memory behind a tensor's ``data_ptr()`` (CPU
    tensors stand in for torch CUDA tensors in the torch-binding contract test)."""
    if addr in FAKE_DEVICE_MEMORY:
        return FAKE_DEVICE_MEMORY[addr]
    return (ctypes.c_char * nbytes).from_address(addr)


def make_fake_pycuda(rec: _Rec):
    """pycuda.driver surface: init, Device, retain_primary_context, Stream, pagelocked_empty,
    mem_alloc, memcpy_htod_async, memcpy_dtoh_async."""
    drv = types.ModuleType("pycuda.driver")
    counter = [0x1000]

    class DevMem:
        def __init__(self, n):
            counter[0] += 0x1000000
            self.addr = counter[0]
            FAKE_DEVICE_MEMORY[self.addr] = bytearray(n)

        def __int__(self):
            return self.addr

    class Ctx:
        def push(self):
            rec("ctx.push")

        def pop(self):
            rec("ctx.pop")

    class Device:
        def __init__(self, i):
            self.i = i

        def name(self):
            return "NVIDIA Fake GPU"

        def compute_capability(self):
            return (9, 0)

        def retain_primary_context(self):
            rec("Device.retain_primary_context", self.i)
            return Ctx()

    class Stream:
        handle = 0xABC

        def synchronize(self):
            rec("stream.synchronize")

    def pagelocked_empty(shape, dtype):
        rec("pagelocked_empty", tuple(shape))
        return np.empty(shape, dtype)

    def memcpy_htod_async(dev, host, stream):
        rec("memcpy_htod_async", host.shape[0])
        FAKE_DEVICE_MEMORY[int(dev)][: host.nbytes] = np.ascontiguousarray(host).tobytes()

    def memcpy_dtoh_async(host, dev, stream):
        rec("memcpy_dtoh_async", host.shape[0])
        host[...] = np.frombuffer(FAKE_DEVICE_MEMORY[int(dev)], host.dtype)[: host.size].reshape(host.shape)

    for k, v in dict(init=lambda: rec("cuda.init"), Device=Device, Stream=Stream, pagelocked_empty=pagelocked_empty,
                     mem_alloc=lambda n: DevMem(n), memcpy_htod_async=memcpy_htod_async,
                     memcpy_dtoh_async=memcpy_dtoh_async).items():
        setattr(drv, k, v)
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    return pkg, drv


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from scgan_rt.export.onnx import export_onnx
    from scgan_rt.model import build_generator
    from scgan_rt.weights import save_weights

    d = tmp_path_factory.mktemp("trt")
    w = save_weights(d / "tiny.safetensors", build_generator(ModelConfig(preset="test", width=1 / 16), seed=0))
    return export_onnx(w, d / "tiny.onnx", batch="1:4:8").path


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory, tiny_weights):
    """A QDQ model of ``export --int8`` (calibrated on the bundled photos)."""
    from scgan_rt.export.quantize import DEFAULT_CALIBRATION, export_int8, load_calibration

    d = tmp_path_factory.mktemp("trt-int8")
    return export_int8(tiny_weights, d / "tiny-int8.onnx", load_calibration(DEFAULT_CALIBRATION), batch="1:4:8",
                       force=True).path


# --------------------------------------------------------------------------- builder contract


@pytest.mark.parametrize("version", ["10.9.0.34", "11.3.0"])
@pytest.mark.parametrize("fp16", [False, True])
def test_builder_contract(tmp_path, tiny_onnx, version, fp16):
    from scgan_rt.export.tensorrt import build_engine

    rec = _Rec()
    trt = make_fake_trt(version, rec)
    tc = tmp_path / "timing.cache"
    path = build_engine(tiny_onnx, out_dir=tmp_path / "engines", fp16=fp16, batch="1:4:8", workspace_gib=2,
                        timing_cache=tc, trt=trt, gpu=("NVIDIA Fake GPU", "9.0"))
    calls = rec.calls
    major = int(version.split(".")[0])
    create = [c for c in calls if c[0] == "builder.create_network"]
    strongly = major >= 11
    assert create == [("builder.create_network", (1 << 1) if strongly else 0)]  # STRONGLY_TYPED on 11; no EXPLICIT_BATCH
    set_flags = [c for c in calls if c[0] == "config.set_flag"]
    if major < 11 and fp16:
        assert set_flags == [("config.set_flag", trt.BuilderFlag.FP16)]
    else:
        assert set_flags == []
    assert ("config.set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 2 << 30) in calls
    assert ("profile.set_shape", "gray", (1, 1, 256, 256), (4, 1, 256, 256), (8, 1, 256, 256)) in calls
    assert "config.add_optimization_profile" in rec.names()
    assert ("config.create_timing_cache", b"") in calls and ("config.set_timing_cache", False) in calls
    assert tc.read_bytes() == b"TIMINGCACHE"
    assert ("builder.build_serialized_network", True) in calls  # progress monitor attached
    # the ONNX handed to the parser: on TRT 11 + fp16 it is the converted FP16 graph (bigger diff in size)
    parsed = [c[1] for c in calls if c[0] == "parser.parse"]
    assert len(parsed) == 1
    hdr, blob = engine.read_engine_file(path)
    assert blob == b"SERIALIZED-PLAN"
    assert hdr["tensorrt_version"] == version and hdr["gpu_name"] == "NVIDIA Fake GPU"
    assert hdr["compute_capability"] == "9.0" and hdr["profile"] == [1, 4, 8] and hdr["size"] == 256
    assert hdr["precision"] == ("fp16" if fp16 else "fp32") and hdr["strongly_typed"] == strongly
    from scgan_rt.weights import sha256_file

    assert hdr["onnx_sha256"] == sha256_file(tiny_onnx) and hdr["scgan_rt_version"]
    # cached: a second call finds the engine and builds nothing
    rec.calls.clear()
    assert build_engine(tiny_onnx, out_dir=tmp_path / "engines", fp16=fp16, batch="1:4:8", trt=trt,
                        gpu=("NVIDIA Fake GPU", "9.0")) == path
    assert "builder.build_serialized_network" not in rec.names()


def test_backend_builds_int8_engine_from_cached_qdq(tmp_path, monkeypatch, tiny_weights):
    """colorize --backend tensorrt --precision int8: weights -> cached QDQ ONNX -> INT8 engine."""
    from scgan_rt.backends import BackendOptions

    rec = _Rec()
    pkg, drv = make_fake_pycuda(rec)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.9.0", rec))
    monkeypatch.setattr(tb, "torch_cuda", lambda: False)
    monkeypatch.setattr(engine, "torch_cuda", lambda: False)
    monkeypatch.setenv("SCGAN_RT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SCGAN_RT_ENGINES", str(tmp_path / "engines"))
    be = tb.SPEC.open(tiny_weights, "cuda", BackendOptions(precision="int8"))
    be.infer(np.zeros((1, 1, 256, 256), np.float32))
    assert be.precision == "int8" and ("config.set_flag", 1) in rec.calls
    engines = list((tmp_path / "engines").glob("*-int8-*.engine"))
    assert len(engines) == 1 and len(list((tmp_path / "cache" / "onnx").glob("*-int8-*.onnx"))) == 1
    assert tb.SPEC.precision("cuda") == "fp16"


@pytest.mark.parametrize("version", ["10.9.0.34", "11.3.0"])
def test_builder_contract_int8(tmp_path, tiny_int8, version):
    """Explicit quantization: TensorRT 11 parses the QDQ graph strongly typed with no precision
    flag; TensorRT 10 builds it weakly typed with BuilderFlag.INT8, and FP16 for the float part."""
    from scgan_rt.export.tensorrt import build_engine
    from scgan_rt.weights import sha256_file

    rec = _Rec()
    trt = make_fake_trt(version, rec)
    path = build_engine(tiny_int8, out_dir=tmp_path, int8=True, trt=trt, gpu=("NVIDIA Fake GPU", "9.0"), quiet=True)
    strongly = version.startswith("11")
    assert [c for c in rec.calls if c[0] == "builder.create_network"] == [
        ("builder.create_network", (1 << 1) if strongly else 0)]
    flags = [c[1] for c in rec.calls if c[0] == "config.set_flag"]
    assert flags == ([] if strongly else [trt.BuilderFlag.INT8, trt.BuilderFlag.FP16])
    # the QDQ graph goes to the parser as exported (no FP16 conversion)
    assert [c[1] for c in rec.calls if c[0] == "parser.parse"] == [len(onnx_proto_bytes(tiny_int8))]
    hdr, _ = engine.read_engine_file(path)
    meta = get_meta(tiny_int8)
    assert hdr["precision"] == "int8" and "-int8-" in path.name and hdr["strongly_typed"] == strongly
    assert hdr["calibration_sha256"] == meta["calibration_sha256"] and hdr["onnx_sha256"] == sha256_file(tiny_int8)
    assert hdr["int8_float_nodes"] == meta["int8_float_nodes"]
    assert hdr["float_layers"] == ("fp32" if strongly else "fp16")
    assert "--int8" in engine.build_command(hdr)
    # the same file without --int8 builds the same INT8 engine (the graph decides)
    assert build_engine(tiny_int8, out_dir=tmp_path, trt=trt, gpu=("NVIDIA Fake GPU", "9.0"), quiet=True) == path


def test_builder_int8_needs_a_qdq_model(tmp_path, tiny_onnx):
    from scgan_rt.export.tensorrt import build_engine

    rec = _Rec()
    with pytest.raises(UsageError, match="export --int8"):
        build_engine(tiny_onnx, out_dir=tmp_path, int8=True, trt=make_fake_trt("11.3.0", rec), gpu=("G", "9.0"))
    assert "builder.build_serialized_network" not in rec.names() and not list(tmp_path.glob("*.engine"))


def onnx_proto_bytes(path):
    from scgan_rt.export.onnx import load_onnx

    return load_onnx(path).SerializeToString()


def get_meta(path):
    from scgan_rt.export.onnx import onnx_info

    return onnx_info(path)


def test_builder_parse_error_is_a_model_error(tmp_path, tiny_onnx):
    from scgan_rt.export.tensorrt import build_engine

    trt = make_fake_trt("10.9.0", _Rec(), fail_parse=True)
    with pytest.raises(ModelError, match="unsupported"):
        build_engine(tiny_onnx, out_dir=tmp_path, trt=trt, gpu=("G", "9.0"))
    assert not list(tmp_path.glob("*.engine"))


# --------------------------------------------------------------------------- runtime contract


@pytest.mark.parametrize("version", ["10.9.0.34", "11.3.0"])
def test_runtime_contract_pycuda_path(tmp_path, monkeypatch, tiny_onnx, version):
    from scgan_rt.export.tensorrt import build_engine

    rec = _Rec()
    trt = make_fake_trt(version, rec)
    pkg, drv = make_fake_pycuda(rec)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tb, "torch_cuda", lambda: False)
    monkeypatch.setattr(engine, "torch_cuda", lambda: False)  # no torch CUDA -> pycuda buffers
    assert engine.gpu_identity() == ("NVIDIA Fake GPU", "9.0")
    path = build_engine(tiny_onnx, out_dir=tmp_path, fp16=True, batch="2:4:8", quiet=True)
    rec.calls.clear()
    be = tb.TensorRTBackend(path)
    assert ("runtime.deserialize_cuda_engine", b"SERIALIZED-PLAN") in rec.calls
    assert ("Device.retain_primary_context", 0) in rec.calls and "ctx.push" in rec.names()
    assert [c for c in rec.calls if c[0] == "pagelocked_empty"] == [("pagelocked_empty", (8, 1, 256, 256)),
                                                                    ("pagelocked_empty", (8, 3, 256, 256))]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (11, 1, 256, 256)).astype(np.float32)
    rec.calls.clear()
    rgb, sal = be.infer(x)
    want = np.concatenate([np.tanh(x), 0.5 * x, -x], 1)
    np.testing.assert_allclose(rgb, want, rtol=1e-6)
    assert sal is None
    # 11 frames, profile max 8 -> chunks of 8 and 3; each sets its shape and addresses first
    assert [c for c in rec.calls if c[0] == "context.set_input_shape"] == [
        ("context.set_input_shape", "gray", (8, 1, 256, 256)), ("context.set_input_shape", "gray", (3, 1, 256, 256))]
    assert [c for c in rec.calls if c[0] == "context.execute_async_v3"] == [("context.execute_async_v3", 0xABC)] * 2
    names = rec.names()
    first_exec = names.index("context.execute_async_v3")
    assert {c[1] for c in rec.calls[:first_exec] if c[0] == "context.set_tensor_address"} == {"gray", "rgb"}
    assert names.index("memcpy_htod_async") < first_exec < names.index("memcpy_dtoh_async")
    # a single frame is padded up to the profile minimum (2)
    rec.calls.clear()
    rgb1, _ = be.infer(x[:1])
    assert ("context.set_input_shape", "gray", (2, 1, 256, 256)) in rec.calls and rgb1.shape == (1, 3, 256, 256)
    np.testing.assert_allclose(rgb1, want[:1], rtol=1e-6)
    with pytest.raises(UsageError, match="fixed at 256x256"):
        be.infer(np.zeros((1, 1, 512, 512), np.float32))


@pytest.mark.parametrize("version", ["10.9.0.34", "11.3.0"])
def test_runtime_contract_torch_tensor_path(tmp_path, monkeypatch, tiny_onnx, version):
    """With torch CUDA, the engine's bindings are the torch tensors' own ``data_ptr()`` on the
    current torch stream: no staging buffers, nothing copied to the host."""
    import torch

    from scgan_rt.export.tensorrt import build_engine

    rec = _Rec()
    trt = make_fake_trt(version, rec)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tb, "torch_cuda", lambda: False)
    monkeypatch.setattr(engine, "torch_cuda", lambda: False)
    pkg, drv = make_fake_pycuda(rec)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    path = build_engine(tiny_onnx, out_dir=tmp_path, fp16=True, batch="2:4:8", quiet=True)
    monkeypatch.setattr(tb, "torch_cuda", lambda: True)  # from here on: torch holds the device memory
    rec.calls.clear()
    be = tb.TensorRTBackend(path)
    assert "pagelocked_empty" not in rec.names() and "Device.retain_primary_context" not in rec.names()
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (11, 1, 256, 256)).astype(np.float32))
    rec.calls.clear()
    rgb, sal = be.infer_tensor(x)
    assert isinstance(rgb, torch.Tensor) and sal is None and rgb.shape == (11, 3, 256, 256)
    xn = x.numpy()
    torch.testing.assert_close(rgb, torch.from_numpy(np.concatenate([np.tanh(xn), 0.5 * xn, -xn], 1)))
    assert [c[2] for c in rec.calls if c[0] == "context.set_input_shape"] == [(8, 1, 256, 256), (3, 1, 256, 256)]
    assert "memcpy_htod_async" not in rec.names() and "memcpy_dtoh_async" not in rec.names()
    assert [c for c in rec.calls if c[0] == "context.execute_async_v3"] == [("context.execute_async_v3", 0)] * 2
    one, _ = be.infer_tensor(x[:1])  # padded to the profile minimum, cut back
    assert ("context.set_input_shape", "gray", (2, 1, 256, 256)) in rec.calls and one.shape == (1, 3, 256, 256)


def test_runtime_refuses_engine_from_another_gpu_or_trt(tmp_path, monkeypatch, tiny_onnx):
    from scgan_rt.export.tensorrt import build_engine

    rec = _Rec()
    monkeypatch.setattr(tb, "torch_cuda", lambda: False)
    monkeypatch.setattr(engine, "torch_cuda", lambda: False)
    pkg, drv = make_fake_pycuda(rec)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    other = build_engine(tiny_onnx, out_dir=tmp_path, trt=make_fake_trt("10.9.0", rec), gpu=("NVIDIA A100", "8.0"),
                         quiet=True)
    with pytest.raises(ModelError, match="scgan-rt build-engine --onnx tiny.onnx"):
        tb.TensorRTBackend(other, trt=make_fake_trt("10.9.0", rec))
    newer = build_engine(tiny_onnx, out_dir=tmp_path, trt=make_fake_trt("10.8.0", rec), gpu=("NVIDIA Fake GPU", "9.0"),
                         quiet=True)
    with pytest.raises(ModelError, match="TensorRT 10.8.0"):
        tb.TensorRTBackend(newer, trt=make_fake_trt("10.9.0", rec))
    assert "runtime.deserialize_cuda_engine" not in rec.names()  # refused before deserialising


def test_backend_finds_or_builds_engine_in_cache(tmp_path, monkeypatch):
    """colorize --backend tensorrt --model W: weights -> cached ONNX -> cached engine."""
    from scgan_rt.model import build_generator
    from scgan_rt.weights import save_weights

    rec = _Rec()
    pkg, drv = make_fake_pycuda(rec)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setattr(tb, "torch_cuda", lambda: False)
    monkeypatch.setattr(engine, "torch_cuda", lambda: False)
    monkeypatch.setenv("SCGAN_RT_CACHE", str(tmp_path / "cache"))
    w = save_weights(tmp_path / "w.safetensors", build_generator(ModelConfig(preset="test", width=1 / 16), seed=1))
    trt = make_fake_trt("11.3.0", rec)
    be = tb.TensorRTBackend(w, trt=trt, out_dir=tmp_path / "engines")
    rgb, _ = be.infer(np.zeros((1, 1, 256, 256), np.float32))
    assert rgb.shape == (1, 3, 256, 256)
    engines = list((tmp_path / "engines").glob("*.engine"))
    assert len(engines) == 1 and "trt11.3.0-fp16-b1-4-8-256" in engines[0].name
    onnx_cached = list((tmp_path / "cache" / "onnx").glob("*-fp16.onnx"))  # TRT 11: FP16 graph
    assert len(onnx_cached) == 1
    rec.calls.clear()
    be2 = tb.TensorRTBackend(w, trt=trt, out_dir=tmp_path / "engines")
    be2.infer(np.zeros((1, 1, 256, 256), np.float32))
    assert "builder.build_serialized_network" not in rec.names()
