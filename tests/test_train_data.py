"""Data scanning, bad-data errors and the saliency detector."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scgan_rt.errors import InputError
from scgan_rt.train.data import ColorizationDataset, EpochSampler, check_maps, scan_photos
from scgan_rt.train.saliency import compute_saliency_maps, saliency_map
from scgan_rt.train.trainer import train

from train_helpers import gray_image, photo_dir, tiny_model, tiny_train


def test_empty_dir_is_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        scan_photos(tmp_path / "empty", 10)


def test_all_gray_dir_is_input_error(tmp_path):
    d = tmp_path / "gray"
    d.mkdir()
    for i in range(3):
        gray_image(d / f"g{i}.png")
    with pytest.raises(InputError, match="3 near-grayscale skipped"):
        scan_photos(d, 10)


def test_corrupt_and_gray_files_skipped_with_count(tmp_path):
    d = photo_dir(tmp_path / "p", names=("astronaut", "coffee"), nested=False)
    (d / "broken.jpg").write_bytes((d / "coffee.jpg").read_bytes()[:300])  # truncated JPEG
    (d / "noise.png").write_bytes(b"not an image")
    gray_image(d / "gray.png")
    r = scan_photos(d, 10)
    assert sorted(p.name for p in r.files) == ["astronaut.jpg", "coffee.jpg"]
    assert len(r.skipped_corrupt) == 2 and len(r.skipped_gray) == 1
    assert "2 unreadable skipped (broken.jpg, noise.png)" in r.summary()


def test_missing_saliency_maps_error_lists_names(tmp_path):
    d = photo_dir(tmp_path / "p")
    maps = tmp_path / "maps"
    maps.mkdir()
    with pytest.raises(InputError, match=r"4 saliency maps missing .*class0/astronaut.png"):
        train(tiny_train(), tiny_model(), d, tmp_path / "run", saliency_dir=maps, quiet=True)


def test_dataset_ranges_luma_and_determinism(tmp_path):
    d = photo_dir(tmp_path / "p", names=("chelsea",), nested=False)
    files = scan_photos(d, 10).files
    ds = ColorizationDataset(d, files, 256, noise_std=0.0, seed=3)
    a, b = ds[(0, 0)], ds[(0, 0)]
    assert torch.equal(a["gray"], b["gray"])  # same (epoch, index) -> same crop
    assert a["gray"].shape == (1, 256, 256) and a["rgb"].shape == (3, 256, 256)
    assert a["rgb"].min() >= -1 and a["rgb"].max() <= 1
    y = (torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1) * (a["rgb"] + 1) / 2).sum(0) * 2 - 1
    assert torch.allclose(a["gray"][0], y, atol=1e-5)  # BT.601 luma, same as inference
    noisy = ColorizationDataset(d, files, 256, noise_std=0.005, seed=3)[(0, 0)]
    assert 0.003 < (noisy["gray"] - a["gray"]).std() < 0.007


def test_sampler_shards_and_skips():
    s0, s1 = EpochSampler(10, 2, 0, 0, 2), EpochSampler(10, 2, 0, 1, 2)
    i0, i1 = [i for _, i in s0], [i for _, i in s1]
    assert len(i0) == len(i1) == 4 and not set(i0) & set(i1)
    s0.set_epoch(0, skip_batches=1)
    assert [i for _, i in s0] == i0[2:]


def test_saliency_higher_on_centered_object(tmp_path):
    rng = np.random.default_rng(0)
    img = np.clip(np.full((240, 320, 3), (70, 130, 60), np.float32) + rng.normal(0, 15, (240, 320, 3)), 0, 255)
    yy, xx = np.mgrid[:240, :320]
    obj = (yy - 120) ** 2 / 50 ** 2 + (xx - 160) ** 2 / 70 ** 2 < 1
    img[obj] = (210, 50, 40)
    s = saliency_map(img.astype(np.uint8)).astype(np.float32)
    assert s.shape == (240, 320)
    assert s[obj].mean() > 3 * s[~obj].mean() and s[obj].mean() > 128


def test_saliency_cache_mirrors_tree_and_is_reused(tmp_path):
    d = photo_dir(tmp_path / "p", names=("astronaut", "rocket"))
    maps = tmp_path / "maps"
    r1 = compute_saliency_maps(d, maps, workers=1, progress=False)
    assert r1["computed"] == 2 and (maps / "class0" / "astronaut.png").is_file()
    check_maps(maps, scan_photos(d, 10).files)
    r2 = compute_saliency_maps(d, maps, workers=1, progress=False)
    assert r2["reused"] == 2 and r2["computed"] == 0


def test_hflip_mirrors_the_same_crop_about_half_the_time(tmp_path):
    d = photo_dir(tmp_path / "p", names=("chelsea",), nested=False)
    files = scan_photos(d, 10).files
    plain = ColorizationDataset(d, files, 256, noise_std=0.0, seed=3)
    flips = ColorizationDataset(d, files, 256, noise_std=0.0, seed=3, hflip=True)
    seen = []
    for epoch in range(12):
        a, b = plain[(epoch, 0)], flips[(epoch, 0)]
        mirrored = torch.equal(b["rgb"], a["rgb"].flip(-1)) and torch.equal(b["gray"], a["gray"].flip(-1))
        assert mirrored or torch.equal(b["rgb"], a["rgb"])  # the same crop, mirrored or not
        seen.append(mirrored)
    assert 2 <= sum(seen) <= 10
    assert torch.equal(flips[(5, 0)]["rgb"], flips[(5, 0)]["rgb"])  # still deterministic


def test_multi_scale_crops_draw_the_short_side_from_the_range(tmp_path):
    # A horizontal ramp over a 256x256 photo: after scaling the short side to T, a 256 crop
    # spans 256/T of the ramp, so each crop's value range reveals the scale that was drawn.
    from pathlib import Path

    from PIL import Image
    ramp = np.tile(np.linspace(0, 255, 256), (256, 1))
    rgb = np.stack([ramp, 255 - ramp, np.full_like(ramp, 128)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ramp.png")
    ds = ColorizationDataset(tmp_path, [Path("ramp.png")], 256, noise_std=0.0, load_size=256, load_size_max=512)
    spans = [float(ds[(e, 0)]["rgb"][0].amax() - ds[(e, 0)]["rgb"][0].amin()) / 2 for e in range(16)]
    assert all(0.45 < s <= 1.0 for s in spans)  # short sides within [256, 512]
    assert min(spans) < 0.7 and max(spans) > 0.8  # several scales, not one
    assert torch.equal(ds[(3, 0)]["rgb"], ds[(3, 0)]["rgb"])  # seeded per sample
    fixed = ColorizationDataset(tmp_path, [Path("ramp.png")], 256, noise_std=0.0, load_size=256)
    assert float(fixed[(0, 0)]["rgb"][0].amax() - fixed[(0, 0)]["rgb"][0].amin()) / 2 > 0.99


@pytest.mark.parametrize("fields", [{"load_size_max": 400}, {"load_size": 300, "load_size_max": 280}])
def test_multi_scale_range_must_be_ordered(fields):
    from scgan_rt.config import TrainConfig
    from scgan_rt.errors import UsageError
    with pytest.raises(UsageError, match="load-size"):
        TrainConfig(**fields).validate()
