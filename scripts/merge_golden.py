"""Write tests/golden/merge_golden.npz: inputs and outputs of ``colorizer.merge_strips``.

Run once with the implementation to be preserved; ``tests/test_merge.py`` then holds every
later implementation to these outputs within one code value. Inputs are stored with the
outputs, so the test does not depend on how they were generated."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from scgan_rt.colorizer import merge_strips

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "merge_golden.npz"
# name: (H, W, chroma h, chroma w) - strips with a short last one, a picture smaller than the
# chroma (downsampling), a few wide rows, chroma already at full size.
CASES = {"strips": (1037, 9, 40, 36), "tiny": (7, 5, 16, 16), "rows": (3, 301, 8, 64), "same": (32, 32, 32, 32)}


def _inputs(rng: np.random.Generator, H: int, W: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    y = np.clip(0.5 + 0.45 * np.sin(7 * xx + 3 * yy) + rng.normal(0, 0.08, (H, W)), 0, 1)
    y[0, 0], y[-1, -1] = 0.0, 1.0  # black and white pixels (no room for chroma at all)
    # mild chroma (in gamut) on one half, strong (out of gamut where luma is near 0 or 1) on the other
    c = rng.normal(0, 0.08, (2, h, w)) + np.where(np.arange(w) < w // 2, 0.0, 0.45) * rng.choice([-1, 1], (2, h, w))
    return (np.round(y * 255).astype(np.uint8), np.round(y * 65535).astype(np.uint16),
            np.clip(c, -0.5, 0.5).astype(np.float32)[None])


def main() -> None:
    rng = np.random.default_rng(23)
    arrays: dict[str, np.ndarray] = {}
    for name, (H, W, h, w) in CASES.items():
        l8, l16, cbcr = _inputs(rng, H, W, h, w)
        c = torch.from_numpy(cbcr)
        y8, y16 = torch.from_numpy(l8.astype(np.float32) / 255), torch.from_numpy(l16.astype(np.float32) / 65535)
        arrays.update({f"{name}_l8": l8, f"{name}_l16": l16, f"{name}_cbcr": cbcr,
                       f"{name}_rgb8": merge_strips(y8, c, np.uint8), f"{name}_rgb16": merge_strips(y16, c, np.uint16),
                       f"{name}_f32": merge_strips(y8, c, np.float32)})
    np.savez_compressed(OUT, **arrays)
    print(f"{OUT}: {OUT.stat().st_size / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
