"""Frames on the device: the torch path (the same code on CPU and CUDA) gives today's
results, code value for code value.

``golden/device_path_golden.npz`` holds what the host-side implementation this path
replaced (commit 1305e80: float32 numpy luma per frame, numpy round trips between the
network and the chroma maths, scene cuts read back per frame) wrote with the bundled
model for: the first 48 frames of the bundled clip with a hard cut at frame 24 (8-bit
limited-range BT.601, and the same planes as 10-bit full-range BT.709), and a 150x113
photo as 8-bit and 16-bit input."""
from __future__ import annotations

import types
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from scgan_rt.colorizer import Colorizer, auto_batch
from scgan_rt.device import DeviceFlow
from scgan_rt.errors import ModelError, UsageError
from scgan_rt.images import SAMPLES_DIR, LoadedImage
from scgan_rt.settings import AUTO_MAX_BATCH, InferConfig, parse_batch_size
from scgan_rt.video import ChromaStage, Frame, Geometry

GOLDEN = Path(__file__).parent / "golden" / "device_path_golden.npz"


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def colorizer():
    # The goldens were written with this model (it stays bundled under its name), before
    # the chroma low-pass existed.
    return Colorizer.open(InferConfig(backend="torch", device="cpu", chroma_smoothing=0), "scgan-lite-v1")


@pytest.fixture(scope="module")
def clip_planes():
    with av.open(str(SAMPLES_DIR / "video" / "carphone_gray.mp4")) as c:
        ys = np.stack([f.to_ndarray(format="yuv420p")[:144] for f in c.decode(video=0)][:48])
    return np.concatenate([ys[:24], 255 - ys[24:]])  # a hard cut at frame 24


def _run_stage(col, planes, bits, full, matrix, batch, fullres_pixels=None):
    info = types.SimpleNamespace(width=176, height=144, bits=bits, full_range=full, matrix=matrix)
    stage = ChromaStage(col, Geometry(info, bits), 0.7)
    stage.fullres_pixels = fullres_pixels or stage.fullres_pixels
    frames = []
    for i in range(0, len(planes), batch):
        frames += stage([Frame(k, y) for k, y in enumerate(planes[i:i + batch], i)])
    stage.finish()
    return np.stack([np.stack(f.uv()) for f in frames]), stage.stab.stats.cuts


@pytest.mark.parametrize("bits,full,matrix,key", [(8, False, "bt601", "uv8"), (10, True, "bt709", "uv10")])
def test_video_chroma_equals_the_host_implementation(colorizer, clip_planes, golden, bits, full, matrix, key):
    planes = clip_planes if bits == 8 else clip_planes.astype(np.uint16) * 4 + 1
    got, cuts = _run_stage(colorizer, planes, bits, full, matrix, batch=4)
    want = golden[key]
    assert got.dtype == want.dtype and got.shape == want.shape
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= 1, f"{(diff > 1).sum()} chroma samples differ by more than one code value"
    assert (diff == 0).mean() > 0.999
    assert cuts == 1
    # the batch size changes nothing: the stabiliser and the dead band carry across batches;
    # nor does upsampling several frames at once (what a GPU does)
    got7, _ = _run_stage(colorizer, planes, bits, full, matrix, batch=7, fullres_pixels=3 * 176 * 144)
    assert np.array_equal(got7, got)


def test_photo_pixels_equal_the_host_implementation(colorizer, golden):
    l8, l16 = golden["photo_l8"], golden["photo_l16"]
    ims = [LoadedImage(None, l8.astype(np.float32) / 255, None, 8, "L", "", False),  # type: ignore[arg-type]
           LoadedImage(None, l16.astype(np.float32) / 65535, None, 16, "I;16", "", False)]  # type: ignore[arg-type]
    (r8, _), (r16, _) = colorizer.colorize_batch(ims, quantise=True)
    for got, want in ((r8, golden["photo_rgb8"]), (r16, golden["photo_rgb16"])):
        assert got.dtype == want.dtype
        assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max() <= 1


def test_nan_from_the_network_is_raised_when_its_batch_lands(colorizer, clip_planes):
    class NaNBackend:
        name, device, with_saliency = "nan", "cpu", False

        def infer_tensor(self, x):
            return torch.full((len(x), 3, x.shape[-2], x.shape[-1]), float("nan")), None

    info = types.SimpleNamespace(width=176, height=144, bits=8, full_range=False, matrix="bt601")
    stage = ChromaStage(Colorizer(NaNBackend()), Geometry(info, 8), 0.7)  # type: ignore[arg-type]
    stage([Frame(0, clip_planes[0])])  # issued; its check waits for the download
    with pytest.raises(ModelError, match="NaN/Inf"):
        stage.finish()


def test_device_flow_on_cpu_is_copy_free_and_immediate():
    flow = DeviceFlow("cpu")
    planes = [np.full((4, 6), k, np.uint16) for k in range(3)]
    t = flow.upload(planes)
    assert t.dtype == torch.uint16 and t.shape == (3, 4, 6) and int(t[2, 0, 0]) == 2
    with flow.compute():
        r = t.to(torch.int32) * 2
    assert flow.download(r).wait() is r


def test_auto_batch_sizes_from_free_memory():
    gib = 2 ** 30
    # 80 GiB free, 40 MB of activations per frame at 256, a 1080p frame: the cap
    assert auto_batch(80 * gib, 40_000_000, 1920 * 1080) == AUTO_MAX_BATCH
    # 2 GiB free: what half of it holds, rounded down to a power of two
    n = auto_batch(2 * gib, 40_000_000, 1920 * 1080)
    assert n & (n - 1) == 0 and n * (40_000_000 + 1920 * 1080 * 8) <= gib and 2 * n * (40_000_000 + 1920 * 1080 * 8) > gib
    # nothing free: still one frame (the split on out-of-memory takes over from there)
    assert auto_batch(0, 40_000_000, 3840 * 2160) == 1


def test_batch_size_auto_is_the_cpu_default_and_numbers_are_kept(colorizer):
    assert InferConfig().batch_size == "auto"
    assert colorizer.batch_for(1920 * 1080) == 4
    assert Colorizer(colorizer.backend, config=InferConfig(batch_size=13)).batch_for(100) == 13
    assert parse_batch_size("auto") == "auto" and parse_batch_size("8") == 8
    for bad in ("0", "-2", "1.5", "many", ""):
        with pytest.raises(UsageError, match="--batch-size"):
            parse_batch_size(bad)
    with pytest.raises(UsageError, match="--compile"):
        InferConfig(backend="onnxruntime", compile=True).validate()



def test_the_prepared_gpu_bench_runs_end_to_end_on_the_cpu():
    """The GPU script has never met a GPU: at least every path of it must run here, so
    device time is not spent on a typo."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "scripts" / "gpu_bench.py"), "--device", "cpu", "--presets",
                        "scgan-lite", "--batches", "2", "--seconds", "0.05", "--frame", "66x50", "--compile"],
                       capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])["rows"]
    assert [row["compile"] for row in rows] == [False, True]
    for row in rows:
        assert not [k for k in row if k.endswith("_error")], row
        assert row["bare_fps"] > 0 and row["video_fps"] > 0 and row["backend_ratio"] > 0
    assert rows[1]["compile_seconds"] > 0
    assert subprocess.run(["bash", "-n", str(root / "scripts" / "gpu_check.sh")]).returncode == 0


def test_cli_batch_size_auto_io_threads_and_compile_flags(runner, tiny_weights, tmp_path):
    import json

    from scgan_rt.cli import app

    src = SAMPLES_DIR / "photos" / "skimage__chelsea.jpg"
    outs = {}
    for io in ("1", "3"):
        r = runner.invoke(app, ["colorize", str(src), "-o", str(tmp_path / f"io{io}.png"), "--model", str(tiny_weights),
                                "--backend", "torch", "--io-threads", io, "--json"])
        assert r.exit_code == 0, r.output
        rep = json.loads(r.stdout[r.stdout.index("{"):])
        assert rep["done"] == 1 and rep["photo_batch"] == 4 and rep["compile_seconds"] == 0  # auto on the CPU
        outs[io] = (tmp_path / f"io{io}.png").read_bytes()
    assert outs["1"] == outs["3"]
    for bad in (["--batch-size", "0"], ["--batch-size", "lots"], ["--io-threads", "-1"],
                ["--compile", "--backend", "onnxruntime"]):
        r = runner.invoke(app, ["colorize", str(src), "-o", str(tmp_path / "x.png"), "--model", str(tiny_weights), *bad])
        assert r.exit_code == 2 and not (tmp_path / "x.png").exists(), (bad, r.output)


def test_gpu_tables_give_the_targets_verdicts(tmp_path):
    import json
    import subprocess
    import sys

    rows = [{"preset": "scgan", "batch": 64, "frame": "256x256", "compile": False, "bare_fps": 650.0,
             "video_fps": 600.0, "video_ratio": 0.923, "backend_fps": 640.0, "backend_ratio": 0.985},
            {"preset": "scgan-lite", "batch": 64, "frame": "1920x1080", "compile": False, "bare_fps": 2900.0,
             "video_fps": 350.0, "video_ratio": 0.121},
            {"step": "benchmark-video", "clip": "x/clip.mp4", "width": 768, "height": 576, "batch": 64,
             "preset": "ultrafast", "model_fps": 900.0, "codec_fps": 500.0, "e2e_fps": 470.0}]
    (tmp_path / "g.json").write_text(json.dumps(rows))
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "scripts" / "gpu_tables.py"), str(tmp_path / "g.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "PASS product path scgan batch 64" in r.stdout
    assert "MISS video model side scgan-lite 1920x1080 batch 64: 350.0 frames/s (target 400)" in r.stdout
    assert "PASS end to end clip.mp4 768x576 (ultrafast): 470.0 frames/s = 0.94x" in r.stdout


def test_rawvideo_is_a_lossless_output_and_a_null_codec_for_benchmarks(runner, tiny_weights, tmp_path):
    import json

    from clips import decode_planes
    from scgan_rt.cli import app

    src = SAMPLES_DIR / "video" / "carphone_gray.mp4"
    r = runner.invoke(app, ["colorize", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_weights),
                            "--codec", "rawvideo", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout[r.stdout.index("{"):])
    assert rep["outputs"] == [str(tmp_path / "out" / "carphone_gray.mkv")]
    got, inp = decode_planes(tmp_path / "out" / "carphone_gray.mkv"), decode_planes(src)
    assert len(got) == len(inp) == 120
    # Matroska keeps milliseconds; the luma is the input's, code value for code value
    assert all(abs(t - ti) <= 1e-3 and np.array_equal(y, yi) for (t, y, _, _), (ti, yi, _, _) in zip(got, inp))
    r = runner.invoke(app, ["colorize", str(src), "-o", str(tmp_path / "x.mp4"), "--model", str(tiny_weights),
                            "--codec", "rawvideo"])
    assert r.exit_code == 2 and "uncompressed video goes in .mkv" in r.output and not (tmp_path / "x.mp4").exists()
