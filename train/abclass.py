"""Classification over quantised Lab ab bins with class rebalancing (Zhang, Isola & Efros,
"Colorful Image Colorization", ECCV 2016), as an auxiliary loss of the generator.

* Bins: the ab plane on a grid of 10, kept where some colour of the 10 x 10 cell, at some
  L* in [0, 100], is a valid sRGB colour (``ab_bins``: 262 bins). Zhang et al. kept the 313
  bins that occur in ImageNet (their gamut is wider than sRGB's); nothing here reads
  outside sRGB, so the displayable cells are the classes.
* Targets: soft-encoded over the 5 nearest bins with a Gaussian of sigma 5.
* Rebalancing: w proportional to ((1 - lambda) p~ + lambda / Q)^-1 with lambda = 0.5, p~ the
  empirical bin prior smoothed by a Gaussian of sigma 5 (over the ab plane), normalised so
  that E_p~[w] = 1. The prior is counted over the training crops as they arrive (a buffer,
  so it is checkpointed and resumes exactly); Zhang et al. counted it over ImageNet first.
* Prediction at 1/4 resolution by a 1x1 head on the decoder level ``u6``.
* Decoding by the annealed mean (``annealed_mean``): T -> 0 gives the mode (vivid), T = 1 the
  mean (desaturated); Zhang et al. use T = 0.38.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from scgan_rt.color import rgb_to_lab

GRID = 10.0
SIGMA_SOFT = 5.0
SIGMA_PRIOR = 5.0
MIX_UNIFORM = 0.5
NEIGHBOURS = 5
ANNEAL_T = 0.38


def _lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of ``color.rgb_to_lab`` (``... x 3``), unclamped: for the gamut test only."""
    from scgan_rt.color import D65_WHITE, SRGB_TO_XYZ

    L, a, b = lab.unbind(-1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], -1)
    xyz = torch.where(f > 0.206893, f ** 3, (f - 16 / 116) / 7.787) * torch.tensor(D65_WHITE, dtype=lab.dtype)
    lin = xyz @ torch.linalg.inv(SRGB_TO_XYZ).to(lab.dtype).T
    return torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(0) ** (1 / 2.4) - 0.055, 12.92 * lin)


def ab_bins() -> torch.Tensor:
    """``Q x 2`` centres of the ab cells (a, b in [-110, 110] on a grid of 10) that hold a
    displayable colour: tested at the centre and at the cell's corners and edge midpoints."""
    axis = torch.arange(-110, 111, GRID, dtype=torch.float64)
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    centres = torch.stack([a.flatten(), b.flatten()], 1)
    L = torch.linspace(0, 100, 201, dtype=torch.float64)
    ok = torch.zeros(len(centres), dtype=torch.bool)
    offsets = (-GRID / 2, 0.0, GRID / 2)
    for da in offsets:
        for db in offsets:
            ab = centres + torch.tensor([da, db], dtype=torch.float64)
            lab = torch.cat([L.view(-1, 1, 1).expand(-1, len(ab), 1), ab.expand(len(L), -1, -1)], 2)
            rgb = _lab_to_rgb(lab)
            ok |= ((rgb >= 0) & (rgb <= 1)).all(-1).any(0)
    return centres[ok].float()


def soft_encode(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """``N x 2 x H x W`` ab -> ``N x Q x H x W`` soft targets (5 nearest bins, Gaussian sigma 5)."""
    n, _, h, w = ab.shape
    pts = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(pts, bins) ** 2
    near, idx = d2.topk(NEIGHBOURS, dim=1, largest=False)
    wts = torch.exp(-near / (2 * SIGMA_SOFT ** 2))
    wts = wts / wts.sum(1, keepdim=True)
    out = torch.zeros(pts.shape[0], bins.shape[0], dtype=ab.dtype, device=ab.device).scatter_(1, idx, wts)
    return out.view(n, h, w, -1).permute(0, 3, 1, 2)


def rebalance_weights(counts: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Per-bin weights from the bin counts: smoothed prior mixed with uniform, inverted and
    normalised so that the prior-weighted mean weight is 1."""
    p = counts / counts.sum().clamp_min(1e-12)
    d2 = torch.cdist(bins.double(), bins.double()) ** 2
    p_smooth = (torch.exp(-d2 / (2 * SIGMA_PRIOR ** 2)) @ p.double())
    p_smooth = p_smooth / p_smooth.sum()
    w = 1.0 / ((1 - MIX_UNIFORM) * p_smooth + MIX_UNIFORM / len(bins))
    return (w / (p_smooth * w).sum()).float()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, temperature: float = ANNEAL_T) -> torch.Tensor:
    """``N x Q x H x W`` logits -> ``N x 2 x H x W`` ab by the annealed mean of Zhang et al."""
    p = F.softmax(logits / max(temperature, 1e-3), dim=1)
    return torch.einsum("nqhw,qc->nchw", p, bins.to(p))


class AbClassLoss(nn.Module):
    """The head (1x1 conv on ``u6``) and the rebalanced soft cross-entropy. Lives in the
    training stage, not in the shipped generator."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.register_buffer("bins", ab_bins())
        self.register_buffer("counts", torch.zeros(len(self.bins), dtype=torch.float64))
        self.head = nn.Conv2d(in_channels, len(self.bins), 1)

    @property
    def num_bins(self) -> int:
        return len(self.bins)

    def forward(self, u6: torch.Tensor, target_rgb: torch.Tensor) -> torch.Tensor:
        logits = self.head(u6.float())
        small = F.interpolate((target_rgb.float() + 1) / 2, size=logits.shape[-2:], mode="area")
        q = soft_encode(rgb_to_lab(small)[:, 1:], self.bins)
        self.counts += q.sum((0, 2, 3)).double().detach()
        w = rebalance_weights(self.counts, self.bins)[q.argmax(1)]  # weight of each pixel's nearest bin
        ce = -(q * F.log_softmax(logits, 1)).sum(1)
        return (w * ce).mean()
