"""``benchmark-photos``: the stage split and the end-to-end run, on a few small real photos."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import PHOTOS
from scgan_rt.cli import app
from scgan_rt.errors import EXIT_USAGE

STAGES = ("decode", "network", "merge", "encode")


@pytest.fixture
def folder(tmp_path):
    """Two gray JPEGs (one of odd size) and a 16-bit gray TIFF, cut from the bundled photos."""
    d = tmp_path / "scans"
    d.mkdir()
    src = Image.open(PHOTOS / "skimage__coffee.jpg").convert("L")
    src.save(d / "a.jpg")
    src.resize((97, 61)).save(d / "b.jpg")
    Image.fromarray(np.asarray(src, dtype=np.uint16)[:40, :50] * 257).save(d / "c.tif")
    return d


def test_benchmark_photos_reports_the_stage_split_and_the_floor(runner, folder, tiny_weights):
    r = runner.invoke(app, ["benchmark-photos", str(folder), "--model", str(tiny_weights), "--device", "cpu",
                            "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["photos"] == 3
    assert res["megapixels"] == pytest.approx((400 * 600 + 97 * 61 + 40 * 50) / 1e6, abs=1e-3)
    for k in STAGES:
        # Seconds are reported to the millisecond: allow that rounding on short stages.
        rel = max(0.05, 0.0006 / res[f"{k}_s"]) if res[f"{k}_s"] > 0 else 0.05
        assert res[f"{k}_s"] > 0 and res[f"{k}_mp_s"] == pytest.approx(res["megapixels"] / res[f"{k}_s"], rel=rel)
    assert res["floor_s"] == pytest.approx(res["decode_s"] + res["network_s"] + res["encode_s"], abs=2e-3)
    assert res["e2e_vs_floor"] == pytest.approx(res["e2e_s"] / res["floor_s"], rel=0.05)
    assert res["photos_per_s"] == pytest.approx(3 / res["e2e_s"], rel=0.05)
    assert res["mp_per_s"] == pytest.approx(res["megapixels"] / res["e2e_s"], rel=0.05)
    assert res["peak_rss_mb"] > 0 and res["backend"] and res["batch"] >= 1
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "b.jpg", "c.tif"]  # nothing written beside


def test_benchmark_photos_limit_and_usage_errors(runner, folder, tiny_weights):
    r = runner.invoke(app, ["benchmark-photos", str(folder), "--model", str(tiny_weights), "--limit", "1", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["photos"] == 1
    r = runner.invoke(app, ["benchmark-photos", str(folder / "a.jpg"), "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_USAGE and "not a folder" in r.output
    empty = folder.parent / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["benchmark-photos", str(empty), "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_USAGE and "no supported images" in r.output
