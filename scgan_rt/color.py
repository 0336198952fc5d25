"""Colour math: the gray -> chroma contract and the full-resolution merge.

Colour space: YCbCr, ITU-R BT.601 full range (the JPEG/JFIF matrix). Chosen over Lab
because (1) its Y is exactly the luminance the network is trained on (the paper's gray =
0.299R + 0.587G + 0.114B), so "keep the input's luminance" is an identity, not a
round trip through a non-linear space; (2) the merge is a 3x3 linear map that runs on the
GPU at video rate; (3) video frames arrive as Y'CbCr planes. See docs/decisions.md.

The network sees gray resized to S x S and predicts RGB. We take only the chroma (Cb, Cr)
of that prediction, upsample it bilinearly to the original size and recombine it with the
original full-resolution Y. Where Y + chroma would leave the RGB cube, the chroma is
scaled towards gray per pixel instead of clipping each channel, so the output luminance
equals the input luminance up to 8/16-bit rounding.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# Rows: Y, Cb, Cr from RGB (all in [0, 1]; Cb/Cr centred on 0).
RGB_TO_YCBCR = torch.tensor([
    [0.299, 0.587, 0.114],
    [-0.168735892, -0.331264108, 0.5],
    [0.5, -0.418687589, -0.081312411],
], dtype=torch.float64)
YCBCR_TO_RGB = torch.linalg.inv(RGB_TO_YCBCR)
LUMA = (0.299, 0.587, 0.114)


def _apply(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 matrix over the channel dim of ``N x 3 x H x W``."""
    return torch.einsum("ij,njhw->nihw", m.to(x.dtype).to(x.device), x)


def luma_of(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``H x W x 3`` float array (the gray the network sees)."""
    return rgb @ np.asarray(LUMA, dtype=np.float32)


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luminance, ``N x 3 x H x W`` -> ``N x 1 x H x W`` (same range as input)."""
    w = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)


def with_luma_of(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``pred`` (``N x 3 x H x W`` RGB) with the BT.601 luma of ``ref`` and its own chroma:
    adding one value to R, G and B moves Y by that value and leaves Cb/Cr alone, so this is
    the merge inference does, in RGB and differentiable."""
    return pred + (rgb_to_gray(ref) - rgb_to_gray(pred))


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    return _apply(RGB_TO_YCBCR, rgb)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    return _apply(YCBCR_TO_RGB, ycc)


def to_network(gray: torch.Tensor, size: int) -> torch.Tensor:
    """Gray ``N x 1 x H x W`` in [0, 1] -> network input ``N x 1 x size x size`` in [-1, 1].

    Antialiased area-like downscaling avoids aliasing on large photos."""
    if gray.shape[-2:] != (size, size):
        gray = F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return gray.clamp(0, 1) * 2 - 1


# Luma coefficients (Kr, Kb) of the Y'CbCr matrices video streams are tagged with.
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}


def ycbcr_matrix(name: str = "bt601") -> torch.Tensor:
    """RGB -> Y'CbCr (Cb/Cr centred on 0, in [-0.5, 0.5]) for a named matrix."""
    kr, kb = MATRICES[name]
    kg = 1 - kr - kb
    return torch.tensor([
        [kr, kg, kb],
        [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
        [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))],
    ], dtype=torch.float64)


def chroma_from_prediction(rgb_pred: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """Network RGB in [-1, 1] -> (Cb, Cr) ``N x 2 x S x S`` in the given Y'CbCr matrix."""
    rgb01 = (rgb_pred.clamp(-1, 1) + 1) / 2
    m = RGB_TO_YCBCR if matrix == "bt601" else ycbcr_matrix(matrix)
    return _apply(m[1:], rgb01)


def smooth_chroma(cbcr: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian low-pass of network-size chroma ``N x 2 x S x S`` (``sigma`` in network
    pixels; 0 returns it unchanged). The network's chroma detail finer than a few pixels is
    mostly uncorrelated with the truth's (GAN texture, colour fringes at edges it places
    differently from the luma), so removing it is closer to the truth; the luminance, which
    carries the picture's detail, is never touched (docs/decisions.md, "Chroma smoothing")."""
    if sigma <= 0:
        return cbcr
    radius = min(int(math.ceil(3 * sigma)), min(cbcr.shape[-2:]) - 1)
    if radius < 1:
        return cbcr
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    taps = (k / k.sum()).tolist()
    rows = _taps_along(F.pad(cbcr, (radius, radius, 0, 0), mode="reflect"), taps, -1, cbcr.shape[-1])
    return _taps_along(F.pad(rows, (0, 0, radius, radius), mode="reflect"), taps, -2, cbcr.shape[-2])


def _taps_along(padded: torch.Tensor, taps: list[float], dim: int, n: int) -> torch.Tensor:
    """Weighted sum of shifted views along ``dim`` (an order of magnitude faster than a
    grouped conv2d with a 1-D kernel on the CPU)."""
    out = padded.narrow(dim, 0, n) * taps[0]
    for i, t in enumerate(taps[1:], 1):
        out.add_(padded.narrow(dim, i, n), alpha=t)
    return out


def gamut_scale(y: torch.Tensor, cbcr: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """Scale chroma towards gray per pixel so that ``y`` + chroma stays inside the RGB cube.

    ``y``: ``N x 1 x H x W`` in [0, 1]; ``cbcr``: ``N x 2 x H x W``. Returns the scaled chroma.
    Scaling (rather than clipping R, G, B) keeps the luminance and the hue."""
    inv = YCBCR_TO_RGB if matrix == "bt601" else torch.linalg.inv(ycbcr_matrix(matrix))
    m = inv.to(cbcr.dtype).to(cbcr.device)
    delta = torch.einsum("ij,njhw->nihw", m[:, 1:], cbcr)
    return cbcr * _gamut_t(y.clamp(0, 1), delta)


def _gamut_t(y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Largest t in [0, 1] with y + t*delta inside [0, 1] for every channel (dim 1).

    Only the largest and the smallest offset can bind: (1 - y) / d is smallest for the
    largest d, y / -d for the most negative one (division rounds monotonically, so this
    is the per-channel minimum exactly)."""
    eps = 1e-12
    lo, hi = _channel_range(delta)
    inf = torch.tensor(float("inf"), dtype=delta.dtype, device=delta.device)
    up = torch.where(hi > eps, (1 - y) / hi.clamp(min=eps), inf)
    down = torch.where(lo < -eps, y / lo.neg_().clamp_(min=eps), inf)
    return torch.minimum(up, down).clamp_(0, 1)


def _channel_range(x: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max over the 3 channels of ``dim``, kept: pairwise, several times faster on
    the CPU than a reduction over a short dimension that is not the last."""
    a, b, c = x.unbind(dim)
    return (torch.minimum(torch.minimum(a, b), c).unsqueeze(dim),
            torch.maximum(torch.maximum(a, b), c).unsqueeze(dim))


def chroma_offsets(cbcr: torch.Tensor, top: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """What BT.601 chroma ``N x 2 x H x W`` adds to each of R, G, B (their luminance is 0 by
    construction), times ``top`` plus ``offset``: the merge works in output code units."""
    m = (YCBCR_TO_RGB[:, 1:] * top).tolist()
    cb, cr = cbcr[:, 0], cbcr[:, 1]
    out = cbcr.new_empty((cbcr.shape[0], 3, *cbcr.shape[2:]))
    for c, (kb, kr) in enumerate(m):  # per channel: fewer passes than a batched matrix product
        torch.mul(cb, kb, out=out[:, c]).add_(cr, alpha=kr).add_(offset)
    return out


def in_gamut_luma(offs: torch.Tensor, top: float = 1.0, offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel of ``offs`` (``3 x ...`` from ``chroma_offsets``), the luma range in [0, 1]
    for which no channel leaves the cube, narrowed by a margin for rounding: a luma inside
    it is in gamut. Any blend of offsets is bounded by its parts, so the range of two rows
    bounds every row interpolated between them."""
    lo, hi = _channel_range(offs, 0)
    margin = 1e-4
    return (lo[0].sub_(offset).div_(-top).add_(margin).clamp_(min=0),
            hi[0].sub_(top + offset).div_(-top).sub_(margin).clamp_(max=1))


def fit_gamut_(v: torch.Tensor, y: torch.Tensor, suspects: torch.Tensor, top: float = 1.0,
               offset: float = 0.0) -> torch.Tensor:
    """The gamut step on the pixels ``suspects`` (flat indices) of ``v`` (``3 x R x W``, R, G,
    B code values: ``top`` * luma ``y`` + ``chroma_offsets``), in place: where a channel
    leaves the cube, the chroma is scaled towards gray by ``_gamut_t``, which keeps the
    luminance. The other pixels must already be inside the cube."""
    if suspects.numel() == 0:
        return v
    flat = v.view(3, -1)
    yb = y.reshape(-1)[suspects].clamp(0, 1)
    d = (flat[:, suspects] - offset) / top - yb
    t = _gamut_t(yb[None, None], d[None])[0]
    flat.index_copy_(1, suspects, (yb + t * d).clamp_(0, 1).mul_(top).add_(offset))
    return v


def merge_luminance(y_full: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Recombine full-resolution luminance with (possibly low-resolution) chroma.

    Args:
        y_full: ``N x 1 x H x W`` luminance in [0, 1] at the original resolution.
        cbcr: ``N x 2 x h x w`` chroma; upsampled bilinearly to H x W.
    Returns:
        ``N x 3 x H x W`` RGB in [0, 1] whose BT.601 luminance equals ``y_full``.
    """
    H, W = y_full.shape[-2:]
    if cbcr.shape[-2:] != (H, W):
        cbcr = F.interpolate(cbcr, size=(H, W), mode="bilinear", align_corners=False)
    v = chroma_offsets(cbcr.to(y_full.dtype))
    for n in range(len(v)):
        lo, hi = in_gamut_luma(v[n])
        y = y_full[n, 0]
        v[n].add_(y)
        fit_gamut_(v[n], y, torch.nonzero(((y < lo) | (y > hi)).view(-1)).squeeze(1))
    return v


def colorfulness(rgb255: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Hasler & Suesstrunk colourfulness ``M`` per image, on the 0-255 RGB scale.

    ``rgb255``: ``N x 3 x H x W``. Returns ``N`` values (std with ddof=0, as the paper's CCI).
    Computed in float64 unless the input is float32 (training, where ``eps`` > 0 keeps the
    square roots differentiable at a flat gray image)."""
    x = rgb255 if rgb255.dtype == torch.float32 else rgb255.double()
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False) + eps)
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2 + eps)
    return std + 0.3 * mean


# sRGB (D65) -> CIE XYZ, and the D65 white point: for Lab, which the colour-accuracy metrics
# (CIEDE2000, hue) and the ab-bin classification loss are defined in.
SRGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
D65_WHITE = (0.950456, 1.0, 1.088754)


def rgb_to_lab(rgb01: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (D65) of sRGB in [0, 1], ``N x 3 x H x W``."""
    x = rgb01.clamp(0, 1)
    lin = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = _apply(SRGB_TO_XYZ.to(lin), lin) / torch.tensor(D65_WHITE, dtype=lin.dtype,
                                                          device=lin.device).view(3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -3)


def _detached_if(x: torch.Tensor, cond: bool) -> torch.Tensor:
    return x.detach() if cond else x


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor, eps: float = 0.0, dim: int = -3) -> torch.Tensor:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005; kL = kC = kH = 1) per pixel of
    two Lab tensors with L, a, b along ``dim`` (``N x 3 x H x W`` by default).

    ``eps`` > 0 makes it a training loss: the square roots get ``eps`` so they stay
    differentiable at zero, and the formula's weights (G, the S terms, R_T) are taken as
    constants of the current colours, so gradients flow only through the differences.
    The hue difference uses 2 (C1 C2 - a1 a2 - b1 b2) = dH^2 (no angle, so no gradient
    singularity at gray); its sign is the cross product's, the sign of the hue angle step."""
    L1, a1, b1 = lab1.unbind(dim)
    L2, a2, b2 = lab2.unbind(dim)
    w = eps > 0
    cbar = _detached_if((torch.sqrt(a1 ** 2 + b1 ** 2) + torch.sqrt(a2 ** 2 + b2 ** 2)) / 2, w)
    g = 0.5 * (1 - torch.sqrt(cbar ** 7 / (cbar ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.sqrt(a1p ** 2 + b1 ** 2 + eps), torch.sqrt(a2p ** 2 + b2 ** 2 + eps)
    sign = torch.sign(a1p * b2 - a2p * b1)
    dH = sign * torch.sqrt((2 * (c1p * c2p - a1p * a2p - b1 * b2)).clamp_min(0) + eps)
    dL, dC = L2 - L1, c2p - c1p
    h1p = torch.rad2deg(torch.atan2(b1, a1p).detach()) % 360
    h2p = torch.rad2deg(torch.atan2(b2, a2p).detach()) % 360
    gray = (c1p * c2p).detach() <= eps
    hsum = h1p + h2p
    hbar = torch.where((h1p - h2p).abs() > 180, torch.where(hsum < 360, hsum + 360, hsum - 360), hsum) / 2
    hbar = torch.where(gray, hsum, hbar)
    Lbar, Cbar = _detached_if((L1 + L2) / 2, w), _detached_if((c1p + c2p) / 2, w)
    t = (1 - 0.17 * torch.cos(torch.deg2rad(hbar - 30)) + 0.24 * torch.cos(torch.deg2rad(2 * hbar))
         + 0.32 * torch.cos(torch.deg2rad(3 * hbar + 6)) - 0.20 * torch.cos(torch.deg2rad(4 * hbar - 63)))
    sl = 1 + 0.015 * (Lbar - 50) ** 2 / torch.sqrt(20 + (Lbar - 50) ** 2)
    sc, sh = 1 + 0.045 * Cbar, 1 + 0.015 * Cbar * t
    rt = -2 * torch.sqrt(Cbar ** 7 / (Cbar ** 7 + 25.0 ** 7)) * torch.sin(
        torch.deg2rad(60 * torch.exp(-(((hbar - 275) / 25) ** 2))))
    q = (dL / sl) ** 2 + (dC / sc) ** 2 + (dH / sh) ** 2 + rt * (dC / sc) * (dH / sh)
    return torch.sqrt(q.clamp_min(0) + eps)
