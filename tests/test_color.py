import numpy as np
import torch

import pytest

from scgan_rt.color import (chroma_from_prediction, colorfulness, merge_luminance, rgb_to_gray, rgb_to_ycbcr,
                            smooth_chroma, to_network, with_luma_of, ycbcr_to_rgb)


def test_ycbcr_round_trip_and_bt601_luma():
    x = torch.rand(2, 3, 17, 23, dtype=torch.float64)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x)
    torch.testing.assert_close(rgb_to_ycbcr(x)[:, :1], rgb_to_gray(x))
    # JPEG/JFIF constants.
    assert abs(float(ycbcr_to_rgb(torch.tensor([0.5, 0.0, 0.5]).view(1, 3, 1, 1))[0, 0]) - (0.5 + 1.402 * 0.5)) < 1e-6


def test_merge_keeps_full_resolution_luminance_even_out_of_gamut():
    torch.manual_seed(0)
    y = torch.rand(1, 1, 301, 457)
    cbcr = (torch.rand(1, 2, 256, 256) - 0.5) * 1.2  # deliberately strong chroma
    rgb = merge_luminance(y, cbcr)
    assert rgb.shape == (1, 3, 301, 457)
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert (rgb_to_gray(rgb) - y).abs().max() < 1e-5
    # Chroma survives where it fits in gamut.
    assert colorfulness(rgb * 255)[0] > 20


def test_prediction_chroma_reproduces_colour_photo_chroma():
    rgb = torch.rand(1, 3, 64, 64)
    pred = rgb * 2 - 1
    out = merge_luminance(rgb_to_gray(rgb), chroma_from_prediction(pred))
    torch.testing.assert_close(out, rgb, atol=1e-5, rtol=0)


def test_to_network_range_and_size():
    g = torch.rand(1, 1, 300, 500)
    x = to_network(g, 256)
    assert x.shape == (1, 1, 256, 256) and x.min() >= -1 and x.max() <= 1


def test_colorfulness_matches_hasler_susstrunk_by_hand():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(32, 48, 3)).astype(np.float64)
    rg = img[..., 0] - img[..., 1]
    yb = 0.5 * (img[..., 0] + img[..., 1]) - img[..., 2]
    m = np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    got = float(colorfulness(torch.from_numpy(img).permute(2, 0, 1)[None])[0])
    assert abs(got - m) < 1e-9


def test_chroma_smoothing_removes_fine_chroma_noise_and_keeps_the_coarse_colour():
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 96), indexing="ij")
    clean = torch.stack([0.2 * (xx > 0).float() - 0.1, 0.15 * yy])[None]  # an edge and a gradient
    noisy = clean + 0.05 * torch.randn_like(clean)
    out = smooth_chroma(noisy, 1.5)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    rmse = lambda a: float(((a - clean) ** 2).mean().sqrt())
    assert rmse(out) < 0.4 * rmse(noisy)
    # channels are filtered apart: Cr noise never leaks into a zero Cb
    only_cr = torch.cat([torch.zeros(1, 1, 64, 96), torch.randn(1, 1, 64, 96)], 1)
    assert smooth_chroma(only_cr, 2.0)[:, 0].abs().max() == 0
    # flat colour is left exactly flat (normalised kernel, reflected borders)
    flat = torch.full((2, 2, 40, 40), 0.3)
    torch.testing.assert_close(smooth_chroma(flat, 3.0), flat)
    assert smooth_chroma(noisy, 0) is noisy


@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (1, 2, 1, 7), (3, 2, 2, 2), (1, 2, 5, 300)])
def test_chroma_smoothing_takes_any_network_size(shape):
    x = torch.randn(shape, dtype=torch.float64)
    out = smooth_chroma(x, 8.0)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


def test_with_luma_of_keeps_chroma_and_takes_the_reference_luma():
    g = torch.Generator().manual_seed(0)
    pred, ref, weights = (torch.rand(2, 3, 8, 8, generator=g) * 2 - 1 for _ in range(3))
    pred.requires_grad_(True)
    out = with_luma_of(pred, ref)
    assert torch.allclose(rgb_to_gray(out), rgb_to_gray(ref), atol=1e-6)
    assert torch.allclose(rgb_to_ycbcr(out)[:, 1:], rgb_to_ycbcr(pred)[:, 1:], atol=1e-6)
    # Any loss of the output: its gradient has no part along (1, 1, 1), the direction that
    # changes only the prediction's own luma, and still reaches the chroma.
    (out * weights).sum().backward()
    assert torch.allclose(pred.grad.sum(1), torch.zeros(()), atol=1e-6)
    assert pred.grad.abs().max() > 0.1
