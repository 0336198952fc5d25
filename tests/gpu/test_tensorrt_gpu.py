"""Real-GPU TensorRT checks; skipped unless CUDA and TensorRT are both present."""
from __future__ import annotations

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt")
torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def lite(tmp_path_factory, make_realistic_weights):
    from scgan_rt.config import preset
    from scgan_rt.export.onnx import sample_gray_images

    photos = sample_gray_images(256, limit=4)
    path = make_realistic_weights(tmp_path_factory.mktemp("w") / "lite.safetensors", photos, preset("scgan-lite"))
    return path, photos


@pytest.mark.parametrize("fp16", [False, True])
def test_engine_matches_onnxruntime(tmp_path, monkeypatch, lite, fp16):
    from parity import ort_session, psnr
    from scgan_rt.backends.tensorrt import TensorRTBackend
    from scgan_rt.export.onnx import export_onnx

    monkeypatch.setenv("SCGAN_RT_CACHE", str(tmp_path / "cache"))
    w, photos = lite
    ref = ort_session(export_onnx(w, tmp_path / "ref.onnx").path).run(["rgb"], {"gray": photos})[0]
    be = TensorRTBackend(w, fp16=fp16, out_dir=tmp_path / "engines")
    got, _ = be.infer(photos)
    need = 40.0 if fp16 else 60.0
    assert min(psnr(got[i], ref[i]) for i in range(len(ref))) >= need
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 1
