"""Archival fidelity: bit depth, ICC/EXIF, skipped formats counted, the source's codec
family, the saturation control and photo comparisons."""
from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from clips import noisy_still, write_clip
from conftest import PHOTOS
from png16 import read_png16
from scgan_rt.cli import app
from scgan_rt.color import luma_of
from scgan_rt.images import _write_png16
from scgan_rt.metrics import cci

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _run(runner, *args):
    r = runner.invoke(app, ["colorize", *map(str, args), "--json"])
    assert r.exit_code in (0, 6), r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def _ramp16(h=96, w=128):
    """A smooth 16-bit gray ramp with detail below one 8-bit step (as RGB)."""
    base = np.asarray(Image.open(PHOTOS / "skimage__chelsea.jpg").convert("L").resize((w, h)), np.float64) / 255
    fine = base + np.linspace(0, 1 / 255, w)[None, :] * 0.9
    return np.repeat((np.clip(fine, 0, 1) * 65535).astype(np.uint16)[..., None], 3, axis=2)


def _fine_levels(a16):
    """How many values fall strictly between 8-bit steps (0 for 8-bit data upscaled)."""
    return int(np.count_nonzero(a16 % 257))


@pytest.mark.parametrize("kind", ["png", "tif"])
def test_16bit_rgb_in_16bit_out_at_16bit_precision(runner, tmp_path, tiny_weights, kind):
    a = _ramp16()
    src = tmp_path / f"scan.{kind}"
    if kind == "png":
        _write_png16(src, a.astype(">u2"), icc=SRGB)
    else:
        tifffile.imwrite(src, a, photometric="rgb", iccprofile=SRGB)
    rep = _run(runner, src, "-o", tmp_path / "out", "--model", tiny_weights)
    out = tmp_path / "out" / src.name
    b = read_png16(out) if kind == "png" else tifffile.imread(out)
    assert b.dtype == np.uint16 and b.shape == a.shape
    assert _fine_levels(b) > b.size // 2  # 16-bit precision survived end to end
    # luminance is the input's own, at 16-bit precision
    y_in, y_out = luma_of(a.astype(np.float32) / 65535), luma_of(b.astype(np.float32) / 65535)
    assert np.abs(y_in - y_out).max() < 2 / 65535 * 8
    assert Image.open(out).info.get("icc_profile") == SRGB or tifffile.TiffFile(out).pages[0].tags[34675].value == SRGB
    assert rep["warnings"] == []


def test_16bit_gray_tiff_and_pgm(runner, tmp_path, tiny_weights):
    g = _ramp16()[..., 0]
    tifffile.imwrite(tmp_path / "g.tif", g)
    Image.fromarray(g).save(tmp_path / "g.pgm")
    _run(runner, tmp_path / "g.tif", tmp_path / "g.pgm", "-o", tmp_path / "out", "--model", tiny_weights)
    t = tifffile.imread(tmp_path / "out" / "g.tif")
    p = read_png16(tmp_path / "out" / "g.png")  # PNM is read, PNG is written
    for b in (t, p):
        assert b.dtype == np.uint16 and _fine_levels(b) > b.size // 2


def test_icc_and_exif_are_carried_and_orientation_normalised(runner, tmp_path, tiny_weights):
    rgb = np.asarray(Image.open(PHOTOS / "skimage__coffee.jpg").resize((120, 80)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "TestCam"
    Image.fromarray(rgb).convert("L").save(tmp_path / "scan.jpg", exif=exif.tobytes(), icc_profile=SRGB)
    Image.fromarray(rgb).convert("L").save(tmp_path / "scan.bmp")
    rep = _run(runner, tmp_path / "scan.jpg", "-o", tmp_path / "out", "--model", tiny_weights)
    out = Image.open(tmp_path / "out" / "scan.jpg")
    assert out.size == (80, 120)  # pixels upright
    assert out.getexif()[0x0112] == 1 and out.getexif()[0x010F] == "TestCam"
    assert out.info.get("icc_profile") == SRGB
    assert rep["warnings"] == []


def test_what_a_format_cannot_hold_is_warned(runner, tmp_path, tiny_weights):
    a = _ramp16()
    _write_png16(tmp_path / "deep.png", a.astype(">u2"), icc=SRGB)
    rep = _run(runner, tmp_path / "deep.png", "-o", tmp_path / "deep.jpg", "--model", tiny_weights)
    assert any("16-bit input written as 8-bit" in w for w in rep["warnings"])
    rep = _run(runner, tmp_path / "deep.png", "-o", tmp_path / "deep.bmp", "--model", tiny_weights)
    assert any("ICC profile dropped: BMP" in w for w in rep["warnings"])


def test_skipped_files_are_counted_by_reason_and_multipage_warns(runner, tmp_path, tiny_weights):
    src = tmp_path / "archive"
    src.mkdir()
    shutil.copy(PHOTOS / "skimage__coffee.jpg", src / "a.jpg")
    (src / "notes.txt").write_text("x")
    (src / "raw.cr2").write_bytes(b"raw")
    (src / "sound.m4a").write_bytes(b"m4a")
    pages = [Image.fromarray(f) for f in noisy_still(PHOTOS / "skimage__coffee.jpg", n=3, w=64, h=48)]
    pages[0].save(src / "pages.tif", save_all=True, append_images=pages[1:])
    rep = _run(runner, src, "-o", tmp_path / "out", "--model", tiny_weights)
    assert rep["done"] == 2
    assert rep["skipped_unsupported"] == {"unsupported format .cr2": [str(src / "raw.cr2")],
                                          "audio only (no video stream)": [str(src / "sound.m4a")],
                                          "unsupported format .txt": [str(src / "notes.txt")]}
    assert any("pages.tif: multi-page TIFF: only the first of 3" in w for w in rep["warnings"])


@pytest.mark.parametrize("codec,suffix,want", [("libvpx-vp9", ".webm", "vp9"), ("libx265", ".mp4", "hevc"),
                                               ("mpeg4", ".avi", "h264")])
def test_codec_auto_keeps_the_family(runner, tmp_path, tiny_weights, codec, suffix, want):
    from scgan_rt.encoding import video_encoders

    if want != "h264" and codec not in video_encoders():
        pytest.skip(f"{codec} not in this PyAV build")
    opts = {"x265-params": "log-level=error"} if codec == "libx265" else None
    src = write_clip(tmp_path / f"in{suffix}", noisy_still(PHOTOS / "skimage__coffee.jpg", n=4, w=64, h=48),
                     codec=codec, options=opts)
    rep = _run(runner, src, "-o", tmp_path / "out", "--model", tiny_weights)
    out = tmp_path / "out" / ("in.webm" if suffix == ".webm" else "in.mp4")
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == want
    assert any("written as H.264" in w for w in rep["warnings"]) == (want == "h264")
    forced = _run(runner, src, "-o", tmp_path / "forced", "--model", tiny_weights, "--codec", "libx264")
    assert forced["done"] == 1
    with av.open(forced["outputs"][0]) as c:
        assert c.streams.video[0].codec_context.name == "h264"


def test_saturation_scales_colour_photos_and_video(runner, tmp_path):
    src = PHOTOS / "skimage__chelsea.jpg"
    scores = {}
    for s in ("0", "1", "1.6"):
        _run(runner, src, "-o", tmp_path / f"s{s}.png", "--saturation", s, "--backend", "torch")
        scores[s] = cci(np.asarray(Image.open(tmp_path / f"s{s}.png"), np.float32) / 255)
    assert scores["0"] < 0.5 < scores["1"] < scores["1.6"]
    clip = write_clip(tmp_path / "c.mp4", noisy_still(src, n=4, w=96, h=64))
    for s in ("0", "2"):
        _run(runner, clip, "-o", tmp_path / f"c{s}.mp4", "--saturation", s, "--backend", "torch")
    def chroma(p):
        with av.open(str(p)) as c:
            f = next(c.decode(video=0)).to_ndarray(format="yuv420p")
        return np.abs(f[f.shape[0] * 2 // 3:].astype(float) - 128).mean()
    assert chroma(tmp_path / "c0.mp4") < 0.5 < chroma(tmp_path / "c2.mp4")
    r = runner.invoke(app, ["colorize", str(src), "--saturation", "5"])
    assert r.exit_code == 2 and "--saturation must be in [0, 4]" in r.output


@pytest.mark.parametrize("sigma", ["-1", "nan", "inf", "8.5"])
def test_chroma_smoothing_out_of_range_is_a_usage_error_in_the_cli_and_the_api(runner, tmp_path, sigma):
    from scgan_rt import Colorizer
    from scgan_rt.errors import UsageError

    for cmd in (["colorize", str(PHOTOS / "skimage__chelsea.jpg"), "-o", str(tmp_path / "o.png")],
                ["evaluate", str(PHOTOS)]):
        r = runner.invoke(app, [*cmd, "--chroma-smoothing", sigma])
        assert r.exit_code == 2 and "--chroma-smoothing must be in [0, 8]" in r.output, r.output
    assert not (tmp_path / "o.png").exists()
    with pytest.raises(UsageError, match="chroma-smoothing"):
        Colorizer.open(chroma_smoothing=float(sigma))


def test_chroma_smoothing_is_part_of_an_output_folders_settings():
    """A folder colorized with one smoothing is not silently continued with another; off
    gives the key outputs made before the option had."""
    from scgan_rt.pipeline import settings_key
    from scgan_rt.settings import InferConfig

    keys = {s: settings_key(InferConfig(chroma_smoothing=s), "m") for s in (0.0, 1.0, 1.5)}
    assert len(set(keys.values())) == 3
    legacy = {"model": "m", **{k: getattr(InferConfig(), k) for k in (
        "size", "saturation", "codec", "crf", "encoder_preset", "temporal_strength", "compare", "force", "skip_color",
        "preview")}}
    import hashlib
    assert keys[0.0] == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:16]


def test_compare_for_photos_goes_beside_the_colour_output(runner, tmp_path, tiny_weights):
    """--compare adds NAME_compare.EXT beside the colour output: into a folder, to a file, beside the input."""
    src = tmp_path / "coffee.jpg"
    src.write_bytes((PHOTOS / "skimage__coffee.jpg").read_bytes())
    w, h = Image.open(src).size
    for extra, colour in ((["-o", tmp_path / "out"], tmp_path / "out" / "coffee.jpg"),
                          (["-o", tmp_path / "one.png"], tmp_path / "one.png"),
                          ([], tmp_path / "coffee_colorized.jpg")):
        rep = _run(runner, src, *extra, "--compare", "--model", tiny_weights)
        assert rep["outputs"] == [str(colour)]
        assert np.asarray(Image.open(colour)).shape == (h, w, 3)  # the colour output, whole
        cmp = colour.with_name(colour.stem + "_compare" + colour.suffix)
        a = np.asarray(Image.open(cmp), np.float32)
        assert a.shape == (h, 2 * w, 3)
        left = a[:, :w]
        assert np.abs(left[..., 0] - left[..., 2]).mean() < 2  # the gray half
    # a rerun without the compare file redoes it; with both present the photo is done
    (tmp_path / "out" / "coffee_compare.jpg").unlink()
    rep = _run(runner, src, "-o", tmp_path / "out", "--compare", "--model", tiny_weights)
    assert rep["done"] == 1 and (tmp_path / "out" / "coffee_compare.jpg").is_file()
    assert _run(runner, src, "-o", tmp_path / "out", "--compare", "--model", tiny_weights)["done"] == 0
