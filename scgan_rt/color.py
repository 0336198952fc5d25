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


def gamut_scale(y: torch.Tensor, cbcr: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """Scale chroma towards gray per pixel so that ``y`` + chroma stays inside the RGB cube.

    ``y``: ``N x 1 x H x W`` in [0, 1]; ``cbcr``: ``N x 2 x H x W``. Returns the scaled chroma.
    Scaling (rather than clipping R, G, B) keeps the luminance and the hue."""
    inv = YCBCR_TO_RGB if matrix == "bt601" else torch.linalg.inv(ycbcr_matrix(matrix))
    m = inv.to(cbcr.dtype).to(cbcr.device)
    delta = torch.einsum("ij,njhw->nihw", m[:, 1:], cbcr)
    return cbcr * _gamut_t(y.clamp(0, 1), delta)


def _gamut_t(y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Largest t in [0, 1] with y + t*delta inside [0, 1] for every channel."""
    eps = 1e-12
    up = torch.where(delta > eps, (1 - y) / delta.clamp(min=eps), torch.full_like(delta, float("inf")))
    down = torch.where(delta < -eps, y / (-delta).clamp(min=eps), torch.full_like(delta, float("inf")))
    return torch.minimum(up, down).amin(1, keepdim=True).clamp(0, 1)


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
    m = YCBCR_TO_RGB.to(y_full.dtype).to(y_full.device)
    # RGB offset contributed by chroma alone; its luminance is 0 by construction.
    delta = torch.einsum("ij,njhw->nihw", m[:, 1:], cbcr)
    y = y_full.clamp(0, 1)
    return (y + _gamut_t(y, delta) * delta).clamp(0, 1)


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
