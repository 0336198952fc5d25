"""Video on a CUDA GPU (torch backend, FP16): same frames, timing and luma as on the CPU,
chroma within FP16 tolerance. Skipped without CUDA."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SAMPLE = Path(__file__).resolve().parents[2] / "scgan_rt" / "samples" / "video" / "carphone_gray.mp4"


def test_cuda_video_matches_cpu(tmp_path):
    from scgan_rt.backends.torch import TorchBackend
    from scgan_rt.colorizer import Colorizer
    from scgan_rt.settings import InferConfig
    from scgan_rt.video import colorize_video
    from scgan_rt.weights import default_weights

    from clips import decode_planes  # tests/ is on sys.path through its conftest

    cfg = InferConfig(crf=0, encoder_preset="ultrafast", temporal_strength=0.0)
    outs = {}
    for dev in ("cpu", "cuda"):
        col = Colorizer(TorchBackend(default_weights(), dev), device=dev)
        rep = colorize_video(SAMPLE, tmp_path / f"{dev}.mp4", col, cfg)
        assert rep.frames_out == 120
        outs[dev] = decode_planes(tmp_path / f"{dev}.mp4")
    for (tc, yc, uc, vc), (tg, yg, ug, vg) in zip(outs["cpu"], outs["cuda"]):
        assert tc == tg and np.array_equal(yc, yg)
        assert np.abs(uc.astype(int) - ug.astype(int)).mean() < 1.0
        assert np.abs(vc.astype(int) - vg.astype(int)).mean() < 1.0
