"""The full-resolution photo merge on a CUDA GPU: the same torch code as on the CPU, so the
device's code values must match the CPU's within one, and keep the luma. Skipped without CUDA."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

GOLDEN = Path(__file__).parent.parent / "golden" / "merge_golden.npz"


@pytest.mark.parametrize("kind", [(np.uint8, "l8", 255), (np.uint16, "l16", 65535)], ids=["rgb8", "rgb16"])
@pytest.mark.parametrize("case", ["strips", "tiny", "rows", "same"])
def test_cuda_merge_matches_the_cpu_within_one_code(case, kind):
    from scgan_rt.colorizer import merge_strips

    dtype, luma, top = kind
    g = np.load(GOLDEN)
    y = torch.from_numpy(g[f"{case}_{luma}"].astype(np.float32) / top)
    cbcr = torch.from_numpy(g[f"{case}_cbcr"])
    cpu = merge_strips(y, cbcr, dtype).astype(np.int64)
    gpu = merge_strips(y.cuda(), cbcr.cuda(), dtype).astype(np.int64)
    assert gpu.shape == cpu.shape
    assert np.abs(gpu - cpu).max() <= 1
