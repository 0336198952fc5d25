"""INT8 QDQ export: ONNX Runtime parity with FP32 on real photos, the quality gate,
``--precision`` validation and the INT8 cache."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from scgan_rt.cli import app
from scgan_rt.errors import EXIT_BAD_MODEL, EXIT_USAGE, UsageError
from scgan_rt.export import quantize as q
from scgan_rt.export.onnx import export_onnx, get_metadata

from conftest import PHOTOS


@pytest.fixture(scope="module")
def calibration():
    return q.load_calibration(PHOTOS, size=256)


@pytest.fixture(scope="module")
def int8(tmp_path_factory, tiny_weights, calibration):
    d = tmp_path_factory.mktemp("int8")
    return q.export_int8(tiny_weights, d / "tiny-int8.onnx", calibration, batch="1:4:8")


def test_calibration_set_is_real_photos_split_and_hashed(calibration, tmp_path):
    cal, held, truth = calibration.split()
    assert len(calibration.files) == len(list(PHOTOS.glob("*.jpg"))) >= 5
    assert len(held) == len(calibration.files) // q.HOLDOUT_EVERY >= 1 and len(cal) + len(held) == len(calibration.files)
    assert truth.shape == (len(held), 256, 256, 3) and cal.min() >= -1 and cal.max() <= 1 and cal.std() > 0.1
    # the hash follows the photos' bytes and the count
    assert q.load_calibration(PHOTOS, size=256).sha256 == calibration.sha256
    assert q.load_calibration(PHOTOS, count=3, size=256).sha256 != calibration.sha256


def test_qdq_export_runs_in_onnxruntime_within_the_bounds(int8, tiny_weights, calibration, tmp_path):
    m = onnx.load(str(int8.path))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 5
    # symmetric INT8 (TensorRT's explicit quantization): every zero point is 0; activations and
    # weights signed INT8 (biases INT32)
    zps = [onnx.numpy_helper.to_array(t) for t in m.graph.initializer if t.name.endswith("_zero_point")]
    assert zps and all(not z.any() for z in zps)
    assert {z.dtype for z in zps} <= {np.dtype(np.int8), np.dtype(np.int32)} and np.dtype(np.int8) in {z.dtype for z in zps}
    meta = get_metadata(m)
    assert meta["precision"] == "int8" and meta["calibration_sha256"] == calibration.sha256
    assert meta["int8_gate"] == "passed" and meta["batch"] == "1:4:8"
    assert meta["int8_float_nodes"].split(",") == int8.float_nodes
    # the first conv(s) and the output head stay float: float weights, no INT8 weights;
    # every other conv has INT8 weights
    producers = {o: n for n in m.graph.node for o in n.output}
    by_name = {n.name: n for n in m.graph.node}
    floats = {t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    for n in convs:
        w = n.input[1]
        if n.name in int8.float_nodes:
            assert w in floats and w not in producers, n.name
        else:
            assert producers[w].op_type == "DequantizeLinear", n.name
    assert sum(n.name in int8.float_nodes for n in convs) >= 2
    # the decoder from 1/8 of the frame up stays float (it carries the colour); deeper levels are INT8
    decoder = {n.name.split("/")[2]: n.name for n in convs if n.name.startswith("/gen/up")}
    assert {decoder[f"up{k}"] for k in (5, 6, 7, 8)} <= set(int8.float_nodes)
    assert not {decoder[f"up{k}"] for k in (1, 2, 3, 4)} & set(int8.float_nodes)
    assert any(by_name[n].op_type == "Tanh" for n in int8.float_nodes)
    # INT8 in ONNX Runtime against FP32 on real photos, not calibrated on
    fp32 = export_onnx(tiny_weights, tmp_path / "fp32.onnx").path
    _, held, truth = calibration.split()
    g = q.gate(fp32, int8.path, held, truth)
    assert g.passed, g.summary()
    a, b = q.run_onnx(fp32, held), q.run_onnx(int8.path, held)
    # a random-init tiny model's output varies little (std ~0.002): the error is judged
    # against that variation, not against the [-1, 1] range
    assert b.shape == a.shape and np.isfinite(b).all() and a.std() > 1e-3
    assert 0 < np.abs(a - b).mean() < 0.1 * a.std()  # quantized (not identical), and close


def test_gate_refuses_one_flat_gray_calibration_photo(runner, tiny_weights, tmp_path):
    cal = tmp_path / "flat"
    cal.mkdir()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(cal / "gray.png")
    out = tmp_path / "m.onnx"
    r = runner.invoke(app, ["export", "--model", str(tiny_weights), "-o", str(out), "--int8", "--calibration", str(cal)])
    assert r.exit_code == EXIT_BAD_MODEL, r.output
    assert "INT8 loses too much" in r.output and "PSNR" in r.output and "chroma diff" in r.output
    assert not out.exists() and not list(tmp_path.glob("*.onnx*"))
    # --force writes it, and the file says the gate failed
    r = runner.invoke(app, ["export", "--model", str(tiny_weights), "-o", str(out), "--int8", "--calibration", str(cal),
                            "--force", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["gate"]["passed"] is False
    assert get_metadata(onnx.load(str(out)))["int8_gate"] == "failed"


@pytest.mark.parametrize("args", [
    ["colorize", "x.png", "--precision", "int4"],
    ["benchmark", "--precision", "fp32,bf16"],
    ["benchmark-video", "clip.mp4", "--precision", "INT8"],
    ["benchmark", "--backend", "torch", "--device", "cpu", "--precision", "int8"],
    ["benchmark", "--backend", "onnxruntime", "--device", "cpu", "--precision", "fp16"],
    ["export", "-o", "m.onnx", "--int8"],
    ["export", "-o", "m.onnx", "--calibration", "."],
])
def test_precision_choices_are_validated(runner, tiny_weights, tmp_path, args):
    if args[0] == "benchmark" and "--backend" in args:
        args = args + ["--model", str(tiny_weights), "--iters", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == EXIT_USAGE, r.output
    assert "Traceback" not in r.output


def test_int8_model_is_cached_and_reused(tiny_weights, tmp_path, monkeypatch):
    from scgan_rt.backends import BackendOptions, open_backend

    monkeypatch.setenv("SCGAN_RT_CACHE", str(tmp_path / "cache"))
    be = open_backend("onnxruntime", tiny_weights, "cpu", BackendOptions(precision="int8"))
    assert be.precision == "int8"
    x = q.load_calibration(PHOTOS, count=2, size=256).gray
    rgb, _ = be.infer(x)
    cached = list((tmp_path / "cache" / "onnx").glob("*-int8-*.onnx"))
    assert len(cached) == 1 and rgb.shape == (2, 3, 256, 256)
    assert get_metadata(onnx.load(str(cached[0])))["calibration_sha256"] == q.load_calibration(q.DEFAULT_CALIBRATION).sha256

    def no_rebuild(*a, **k):
        raise AssertionError("the cached INT8 model was rebuilt")

    monkeypatch.setattr(q, "export_int8", no_rebuild)
    be2 = open_backend("onnxruntime", tiny_weights, "cpu", BackendOptions(precision="int8"))
    np.testing.assert_array_equal(be2.infer(x)[0], rgb)
    # auto on the CPU stays the accurate choice; an INT8 file runs as what it is
    assert open_backend("onnxruntime", tiny_weights, "cpu").precision == "fp32"
    assert open_backend("auto", cached[0], "cpu").precision == "int8"
    with pytest.raises(UsageError, match="not --precision fp32"):
        open_backend("onnxruntime", cached[0], "cpu", BackendOptions(precision="fp32"))


def test_info_names_each_backends_precision(runner):
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0, r.output
    rows = {b["name"]: b for b in json.loads(r.output)["backends"]}
    assert rows["onnxruntime-cpu"]["precision"] == "fp32" and "int8" in rows["onnxruntime-cpu"]["precisions"]
    assert rows["tensorrt"]["precision"] == "fp16" and "int8" in rows["tensorrt"]["precisions"]
    assert rows["torch-cpu"]["precisions"] == ["fp32"]


def test_an_op_between_float_ops_stays_float():
    from onnx import TensorProto, helper
    node = lambda op, ins, outs: helper.make_node(op, ins, outs, name=outs[0])  # noqa: E731
    graph = helper.make_graph(
        [node("Conv", ["x", "w"], ["a"]), node("Relu", ["a"], ["b"]), node("Concat", ["b", "x"], ["c"]),
         node("Relu", ["c"], ["d"]), node("Conv", ["d", "w"], ["e"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])])
    model = helper.make_model(graph)
    # "b" sits between two float ops; "d" feeds an INT8 conv, so it is quantized with it
    assert q._sandwiched(model, {"a", "c"}) == ["b"]
