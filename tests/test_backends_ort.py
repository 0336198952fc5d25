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
