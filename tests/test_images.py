"""Every input mode the issue names, EXIF orientation, 16-bit round trips."""
import io

import numpy as np
import pytest
from PIL import Image

from scgan_rt.errors import InputError
from png16 import read_png16
from scgan_rt.images import load_image, save_image

from conftest import make_png_bomb


@pytest.fixture
def photo(photos_dir):
    return Image.open(photos_dir / "skimage__coffee.jpg").convert("RGB").resize((120, 80))


def _luma(rgb):
    return rgb[..., :3] @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "CMYK", "1"])
def test_modes(tmp_path, photo, mode):
    ext = ".jpg" if mode == "CMYK" else ".png"
    im = photo.convert(mode) if mode not in ("LA", "RGBA") else photo.convert(mode)
    if mode in ("LA", "RGBA"):
        a = Image.linear_gradient("L").resize(photo.size)
        im.putalpha(a)
    p = tmp_path / f"x{ext}"
    im.save(p)
    li = load_image(p)
    assert li.luma.shape == (80, 120) and li.luma.dtype == np.float32
    assert 0 <= li.luma.min() and li.luma.max() <= 1
    assert li.bits == 8
    assert (li.alpha is not None) == (mode in ("LA", "RGBA"))
    assert li.is_color == (mode in ("RGB", "RGBA", "P", "CMYK"))
    if li.alpha is not None:
        np.testing.assert_allclose(li.alpha, np.asarray(im.getchannel("A")) / 255, atol=1e-6)


def test_16bit_gray_in_16bit_rgb_out(tmp_path):
    ramp = (np.linspace(0, 65535, 300 * 200).reshape(200, 300)).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(ramp).save(p)  # uint16 -> mode I;16
    li = load_image(p)
    assert li.bits == 16
    np.testing.assert_allclose(li.luma, ramp / 65535, atol=1e-6)
    rgb = np.repeat(li.luma[..., None], 3, 2)
    out = save_image(tmp_path / "o.png", rgb, bits=16)
    back = read_png16(out)
    assert back.dtype == np.uint16 and back.shape == (200, 300, 3)
    # More than 256 distinct levels survive: truly 16-bit.
    assert len(np.unique(back[..., 0])) > 1000
    np.testing.assert_array_equal(back[..., 0], ramp)


def test_exif_orientation_is_honoured(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "rot.jpg"
    photo.save(p, exif=exif.tobytes())
    li = load_image(p)
    assert li.luma.shape == (120, 80)  # displayed orientation (portrait)


@pytest.mark.parametrize("case", ["corrupt", "text", "empty", "bomb", "missing", "unsupported"])
def test_bad_inputs_raise_input_error(tmp_path, photos_dir, case):
    p = tmp_path / "bad.jpg"
    if case == "corrupt":
        data = (photos_dir / "skimage__coffee.jpg").read_bytes()
        p.write_bytes(data[: len(data) // 3])
    elif case == "text":
        p.write_text("this is not an image\n")
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "bomb":
        p = make_png_bomb(tmp_path / "bomb.png")
    elif case == "missing":
        p = tmp_path / "nope.jpg"
    elif case == "unsupported":
        p = tmp_path / "x.svg"
        p.write_text("<svg/>")
    before = p.read_bytes() if p.exists() else None
    with pytest.raises(InputError) as ei:
        load_image(p)
    assert "\n" not in str(ei.value)
    if case == "bomb":
        assert "too large" in str(ei.value)
    if before is not None:
        assert p.read_bytes() == before
