"""The full-resolution merge against the outputs of the implementation it replaced.

``golden/merge_golden.npz`` (written by ``scripts/merge_golden.py`` with the strip merge
of commit 9726438, before it was fused) holds luma and network-size chroma for: a
1037-row picture (strips with a short last one), a picture smaller than its chroma, a
few wide rows, chroma already at full size; about half of each case's pixels fall out of
gamut. Every output kind must stay within one code value of what it gave."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scgan_rt import colorizer as colorizer_module
from scgan_rt.color import LUMA
from scgan_rt.colorizer import merge_strips

GOLDEN = Path(__file__).parent / "golden" / "merge_golden.npz"
CASES = ("strips", "tiny", "rows", "same")
KINDS = {"rgb8": (np.uint8, "l8", 255), "rgb16": (np.uint16, "l16", 65535), "f32": (np.float32, "l8", 255)}


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def _merge(golden, case, kind):
    dtype, luma, top = KINDS[kind]
    y = torch.from_numpy(golden[f"{case}_{luma}"].astype(np.float32) / top)
    return merge_strips(y, torch.from_numpy(golden[f"{case}_cbcr"]), dtype)


def _code_diff(got, want, kind):
    scale = 65535 if kind == "f32" else 1  # a float output is held to 16-bit code values
    return np.abs(got.astype(np.float64) - want.astype(np.float64)) * scale


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES)
def test_merge_equals_the_previous_implementation(golden, case, kind):
    want = golden[f"{case}_{kind}"]
    got = _merge(golden, case, kind)
    assert got.dtype == want.dtype and got.shape == want.shape
    diff = _code_diff(got, want, kind)
    assert diff.max() <= 1, f"{(diff > 1).sum()} values differ by more than one code value"


@pytest.mark.parametrize("rows", [1, 7, 100])
@pytest.mark.parametrize("kind", KINDS)
def test_strip_height_does_not_change_the_merge(golden, monkeypatch, rows, kind):
    monkeypatch.setattr(colorizer_module, "STRIP_PIXELS", rows * golden["strips_l8"].shape[1])
    diff = _code_diff(_merge(golden, "strips", kind), golden[f"strips_{kind}"], kind)
    assert diff.max() <= 1


@pytest.mark.parametrize("kind", ["rgb8", "rgb16"])
@pytest.mark.parametrize("case", CASES)
def test_quantised_outputs_keep_the_luma_code_values(golden, case, kind):
    """Out of gamut too: only the rounding of R, G and B moves the luma, by at most half a code."""
    rgb = _merge(golden, case, kind).astype(np.float64)
    y = rgb @ np.asarray(LUMA)
    assert np.abs(y - golden[f"{case}_{KINDS[kind][1]}"]).max() <= 0.51
