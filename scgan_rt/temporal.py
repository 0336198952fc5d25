"""Temporal chroma stabilisation for video, scene-cut detection, and the flicker metric.

A per-frame colorizer answers every frame afresh, so film grain, compression noise and
small motions make its chroma jitter ("flicker"). ``ChromaStabilizer`` smooths the
predicted chroma over time at network resolution with a per-pixel exponential moving
average whose weight falls to zero where the luminance changed (moving objects keep
their own, current colour instead of inheriting a trail) and which restarts at every
detected scene cut (no colour crosses a cut).

Flicker metric (``scgan-rt evaluate-video``): the mean frame-to-frame change of chroma,
in 8-bit code values, over the pixels whose luminance did not change (|dY| below
``STATIC_LUMA``) - a static pixel should keep its colour, so anything measured there is
flicker, not motion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# A cut: luma histograms (32 bins) differ by more than this L1 distance (range 0..2) ...
CUT_HIST_L1 = 0.6
# ... or the 16x16-block mean luma changes by more than this on average (range 0..1).
CUT_BLOCK_MAD = 0.15
# Luma change (after 8x8 block averaging, so grain cancels) at which blending fades out.
MOTION_TAU = 0.03
# Static-pixel threshold of the flicker metric (|dY| on the 0..1 scale, at chroma resolution).
STATIC_LUMA = 0.02


def _hist(gray: torch.Tensor) -> torch.Tensor:
    return torch.histc(gray.float(), bins=32, min=0.0, max=1.0) / gray.numel()


def _blocks(gray: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(gray, k, ceil_mode=True)


def scene_cut(prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """Hard cut between two ``1 x 1 x H x W`` gray frames in [0, 1], as a boolean tensor on
    their device (reading it is left to the caller: no GPU sync here)."""
    h = (_hist(prev) - _hist(cur)).abs().sum()
    b = (_blocks(prev, 16) - _blocks(cur, 16)).abs().mean()
    return (h > CUT_HIST_L1) | (b > CUT_BLOCK_MAD)


def is_scene_cut(prev: torch.Tensor, cur: torch.Tensor) -> bool:
    return bool(scene_cut(prev, cur))


@dataclass
class StabilizerStats:
    frames: int = 0
    cuts: int = 0


class ChromaStabilizer:
    """Per-pixel, motion-gated EMA of chroma that resets at scene cuts.

    ``strength`` in [0, 1): 0 disables it; at 0.7 a static pixel's chroma is 70 % the
    running average and 30 % the new prediction. Runs on the frames' device without
    reading anything back: cuts are kept as tensors until ``stats`` is asked for."""

    def __init__(self, strength: float) -> None:
        if not 0 <= strength < 1:
            raise ValueError("temporal strength must be in [0, 1)")
        self.strength = strength
        self.frames = 0
        self._cuts: torch.Tensor | int = 0
        # True, or a boolean tensor, when the latest frame started a new shot.
        self.restarted: torch.Tensor | bool = True
        self._gray: torch.Tensor | None = None
        self._chroma: torch.Tensor | None = None

    @property
    def stats(self) -> StabilizerStats:
        return StabilizerStats(self.frames, int(self._cuts))

    def reset(self) -> None:
        self._gray = self._chroma = None

    def __call__(self, gray: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        """Stabilise one frame: ``gray`` ``1 x 1 x S x S`` (network input scale [0, 1]),
        ``chroma`` ``1 x 2 x S x S``. Frames must arrive in display order."""
        self.frames += 1
        prev_gray, prev_chroma = self._gray, self._chroma
        self._gray = gray
        if prev_gray is None or prev_chroma is None or prev_gray.shape != gray.shape:
            self._chroma, self.restarted = chroma, True
            return chroma
        cut = scene_cut(prev_gray, gray)
        self._cuts = self._cuts + cut.long()
        self.restarted = cut
        if self.strength == 0:
            self._chroma = chroma
            return chroma
        motion = (_blocks(gray, 8) - _blocks(prev_gray, 8)).abs()
        motion = F.interpolate(motion, size=gray.shape[-2:], mode="bilinear", align_corners=False)
        alpha = self.strength * torch.exp(-(motion / MOTION_TAU) ** 2)
        out = torch.where(cut, chroma, alpha * prev_chroma + (1 - alpha) * chroma)
        self._chroma = out
        return out


def chroma_flicker(prev_y: np.ndarray, y: np.ndarray, prev_uv: np.ndarray, uv: np.ndarray) -> tuple[float, int]:
    """Flicker between two frames: mean chroma change (8-bit code values) over static pixels.

    ``*_y``: luma at chroma resolution in [0, 1]; ``*_uv``: ``2 x h x w`` chroma in 8-bit
    code values. Returns (sum of per-pixel changes, number of static pixels)."""
    static = np.abs(y - prev_y) < STATIC_LUMA
    n = int(static.sum())
    if n == 0:
        return 0.0, 0
    d = np.sqrt(((uv - prev_uv) ** 2).sum(0))
    return float(d[static].sum()), n
