"""ONNX Runtime backend, ONNX cache per weights, `auto` selection, CPU backends agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scgan_rt import backends
from scgan_rt.backends import BackendOptions, backend_report, open_backend
from scgan_rt.backends.onnxruntime import OnnxRuntimeBackend, physical_cores
from scgan_rt.backends.torch import TorchBackend
from scgan_rt.config import ModelConfig, preset
from scgan_rt.errors import UsageError
from scgan_rt.export.onnx import sample_gray_images
from scgan_rt.model import build_generator
from scgan_rt.weights import save_weights

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def photos():
    return sample_gray_images(256, limit=2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, photos):
    g = build_generator(preset("scgan-lite"), seed=3)
    for m in g.modules():  # non-trivial BN statistics (see test_export_onnx.realistic_weights)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    g.train()
    with torch.no_grad():
        g(torch.from_numpy(photos))
    return save_weights(tmp_path_factory.mktemp("w") / "lite.safetensors", g.eval())


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCGAN_RT_CACHE", str(tmp_path / "cache"))


def test_cpu_backends_produce_the_same_colours(weights, photos):
    t = open_backend("torch", weights, device="cpu", options=BackendOptions(with_saliency=True))
    o = open_backend("onnxruntime", weights, device="cpu", options=BackendOptions(with_saliency=True))
    assert isinstance(t, TorchBackend) and isinstance(o, OnnxRuntimeBackend)
    rt, st = t.infer(photos)
    ro, so = o.infer(photos)
    assert ro.dtype == np.float32 and ro.shape == (2, 3, 256, 256) and so.shape == (2, 1, 256, 256)
    assert np.abs(rt - ro).max() <= 1e-4 and np.abs(st - so).max() <= 1e-4
    assert rt.std() > 0.05


def test_ort_cpu_is_tuned(weights, photos):
    o = OnnxRuntimeBackend(weights, device="cpu")
    o.infer(photos[:1])
    sess = o._sessions[256]
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert o.threads == physical_cores()
    assert o.device == "cpu"


def test_onnx_is_cached_per_weights(tmp_path, weights, photos):
    o = OnnxRuntimeBackend(weights, device="cpu")
    o.infer(photos[:1])
    files = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(files) == 1 and files[0].name.startswith(o.sha256[:20])
    mtime = files[0].stat().st_mtime_ns
    o2 = OnnxRuntimeBackend(weights, device="cpu")
    o2.infer(photos[:1])
    assert files[0].stat().st_mtime_ns == mtime  # reused, not re-exported
    # a different size is a different cached export
    o2.infer(np.zeros((1, 1, 512, 512), np.float32))
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2
    # a corrupt cache entry is replaced
    files[0].write_bytes(b"garbage")
    OnnxRuntimeBackend(weights, device="cpu").infer(photos[:1])
    assert files[0].stat().st_size > 1000


def test_ort_runs_an_onnx_file_directly(tmp_path, weights, photos):
    from scgan_rt.export.onnx import export_onnx

    r = export_onnx(weights, tmp_path / "m.onnx")
    o = open_backend("onnxruntime", r.path, device="cpu")
    rgb, sal = o.infer(photos)
    assert rgb.shape == (2, 3, 256, 256) and sal is None
    with pytest.raises(UsageError, match="saliency"):
        OnnxRuntimeBackend(r.path, with_saliency=True)


def test_auto_chain_order_and_reasons():
    rep = backend_report()
    assert [c.name for c in rep] == ["tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu", "torch-cpu"]
    assert all(c.reason for c in rep)
    assert rep[-1].usable and rep[3].usable  # onnxruntime is a dependency


def test_auto_on_cpu_picks_onnxruntime(weights):
    be = open_backend("auto", weights, device="cpu")
    assert be.name == "onnxruntime" and be.device == "cpu"


def test_auto_falls_through_when_a_choice_fails(weights, monkeypatch):
    from scgan_rt.backends import BackendChoice
    from scgan_rt.errors import ModelError

    monkeypatch.setattr(backends, "backend_report", lambda w=None: [
        BackendChoice("onnxruntime-cpu", True, "x", "onnxruntime", "cpu"),
        BackendChoice("torch-cpu", True, "y", "torch", "cpu")])

    def boom(*a, **k):
        raise ModelError("broken")

    import dataclasses

    spec = backends.specs()["onnxruntime"]
    monkeypatch.setitem(backends._REGISTRY, "onnxruntime", dataclasses.replace(spec, open=boom))
    with pytest.warns(UserWarning, match="onnxruntime-cpu failed"):
        be = open_backend("auto", weights, device="cpu")
    assert be.name == "torch"


def test_unknown_backend_and_tensorrt_on_cpu_are_usage_errors(weights):
    with pytest.raises(UsageError):
        open_backend("openvino", weights)
    with pytest.raises(UsageError):
        open_backend("tensorrt", weights, device="cpu")


def test_benchmark_reports_the_json_keys(weights):
    from scgan_rt.benchmark import run_benchmark

    r = run_benchmark("onnxruntime", weights, batch=1, size=256, device="cpu", iters=3, max_seconds=5)
    assert {"fps", "latency_ms_p50", "latency_ms_p95", "peak_rss_mb"} <= set(r)
    assert r["fps"] > 0 and r["latency_ms_p95"] >= r["latency_ms_p50"] > 0 and r["iters"] == 3


def test_cuda_ep_binds_torch_tensors_in_place(weights, monkeypatch):
    """CONTRACT (no onnxruntime-gpu here): with the CUDA EP, ``infer_tensor`` binds the
    torch tensors' own memory - input and outputs - with I/O binding, after the torch
    stream is done with the input. A fake session stands in for ORT; a CPU tensor that
    says it is on CUDA stands in for the device tensor."""
    import ctypes

    calls = []

    class FakeBinding:
        def __init__(self):
            self.bound = {}

        def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr):
            calls.append(("in", name, device_type, device_id, element_type, shape))
            self.bound[name] = (shape, buffer_ptr)

        def bind_output(self, name, device_type, device_id, element_type, shape, buffer_ptr):
            calls.append(("out", name, device_type, device_id, element_type, shape))
            self.bound[name] = (shape, buffer_ptr)

    class FakeSession:
        def io_binding(self):
            self.b = FakeBinding()
            return self.b

        def run_with_iobinding(self, b):
            calls.append(("run",))
            shape, ptr = b.bound["gray"]
            x = np.ctypeslib.as_array((ctypes.c_float * int(np.prod(shape))).from_address(ptr)).reshape(shape)
            oshape, optr = b.bound["rgb"]
            out = np.ctypeslib.as_array((ctypes.c_float * int(np.prod(oshape))).from_address(optr)).reshape(oshape)
            out[:] = np.concatenate([x, -x, 0.5 * x], 1)

    class OnCuda(torch.Tensor):
        @property
        def is_cuda(self):
            return True

    class Stream:
        def synchronize(self):
            calls.append(("torch-stream-sync",))

    be = OnnxRuntimeBackend(weights, device="cpu")
    be.device, be._device_id = "cuda:1", 1
    monkeypatch.setattr(be, "_session", lambda size: FakeSession())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    x = (torch.rand(3, 1, 256, 256) * 2 - 1).as_subclass(OnCuda)
    rgb, sal = be.infer_tensor(x)
    assert sal is None and rgb.shape == (3, 3, 256, 256)
    torch.testing.assert_close(rgb[:, 1:2], -x.as_subclass(torch.Tensor))
    assert calls == [("in", "gray", "cuda", 1, np.float32, (3, 1, 256, 256)),
                     ("out", "rgb", "cuda", 1, np.float32, (3, 3, 256, 256)),
                     ("torch-stream-sync",), ("run",)]
