"""The device path on a CUDA GPU: the same torch code as on the CPU, so CUDA must give the
CPU's code values (FP32) or stay close (FP16); big batches split instead of crashing;
``--batch-size auto`` picks a size from free memory. Skipped without CUDA."""
from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _frames(n=24, h=144, w=176):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 13.0) * np.cos(yy / 9.0)
    planes = [np.clip(base + 3 * k + rng.normal(0, 2, (h, w)), 16, 235).astype(np.uint8) for k in range(n)]
    planes[n // 2:] = [255 - p for p in planes[n // 2:]]  # a cut
    return planes


def _stage_codes(device, fp16, planes, bits=8):
    from scgan_rt.backends.torch import TorchBackend
    from scgan_rt.colorizer import Colorizer
    from scgan_rt.video import ChromaStage, Frame, Geometry
    from scgan_rt.weights import default_weights

    col = Colorizer(TorchBackend(default_weights(), device, fp16=fp16))
    info = types.SimpleNamespace(width=176, height=144, bits=bits, full_range=False, matrix="bt709")
    stage = ChromaStage(col, Geometry(info, bits), 0.7)
    out = []
    for i in range(0, len(planes), 8):
        out += stage([Frame(k, y) for k, y in enumerate(planes[i:i + 8], i)])
    stage.finish()
    return np.stack([np.stack(f.uv()) for f in out]).astype(np.int32), stage.stab.stats.cuts


@pytest.mark.parametrize("bits", [8, 10])
def test_cuda_device_path_equals_cpu(bits):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    planes = _frames()
    if bits == 10:  # uint16 planes up, uint16 codes down
        planes = [p.astype(np.uint16) * 4 + 2 for p in planes]
    cpu, cuts_cpu = _stage_codes("cpu", False, planes, bits)
    gpu, cuts_gpu = _stage_codes("cuda", False, planes, bits)
    diff = np.abs(cpu - gpu)
    assert cuts_cpu == cuts_gpu == 1
    assert (diff <= 1).mean() > 0.999 and diff.max() <= 3, f"max {diff.max()}, {(diff > 1).sum()} samples > 1"
    half, _ = _stage_codes("cuda", True, planes, bits)
    dh = np.abs(cpu - half) / 2 ** (bits - 8)
    assert (dh <= 2).mean() > 0.99, f"FP16: {(dh > 2).mean():.4f} of samples differ by more than 2"


def test_big_batches_split_instead_of_crashing(tmp_path):
    from scgan_rt.backends.torch import TorchBackend
    from scgan_rt.benchmark import preset_weights
    from scgan_rt.colorizer import Colorizer

    col = Colorizer(TorchBackend(preset_weights("scgan", tmp_path), "cuda"))
    for n in (128, 256):
        x = torch.rand(n, 1, 256, 256, device="cuda") * 2 - 1
        rgb, _ = col.predict(x)
        assert rgb.shape == (n, 3, 256, 256) and rgb.is_cuda


def test_batch_size_auto_on_cuda():
    from scgan_rt.backends.torch import TorchBackend
    from scgan_rt.colorizer import Colorizer
    from scgan_rt.settings import AUTO_MAX_BATCH
    from scgan_rt.weights import default_weights

    col = Colorizer(TorchBackend(default_weights(), "cuda"))
    n = col.batch_for(1920 * 1080)
    assert 1 <= n <= AUTO_MAX_BATCH and n & (n - 1) == 0
    assert col._net_bytes is not None and col._net_bytes > 0


def test_cuda_photo_pixels_equal_cpu():
    from scgan_rt.backends.torch import TorchBackend
    from scgan_rt.colorizer import Colorizer
    from scgan_rt.images import LoadedImage
    from scgan_rt.weights import default_weights

    torch.backends.cudnn.allow_tf32 = False
    y = np.stack(_frames(1, 600, 900))[0].astype(np.float32) / 255
    outs = {}
    for dev in ("cpu", "cuda"):
        col = Colorizer(TorchBackend(default_weights(), dev, fp16=False))
        ims = [LoadedImage(None, y, None, bits, "L", "", False) for bits in (8, 16)]  # type: ignore[arg-type]
        outs[dev] = [r for r, _ in col.colorize_batch(ims, quantise=True)]
    for c, g in zip(outs["cpu"], outs["cuda"]):
        assert c.dtype == g.dtype
        assert (np.abs(c.astype(np.int64) - g.astype(np.int64)) <= (1 if c.dtype == np.uint8 else 257)).mean() > 0.999
