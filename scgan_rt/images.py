"""Reading and writing still images safely.

Every input is opened with an allow-list of formats, its pixel count is checked from the
header *before* any pixel is decoded (decompression bombs), EXIF orientation is applied,
and every mode Pillow hands us is reduced to: luminance (float, full resolution), an
optional alpha plane, and the bit depth to write back. Outputs are written atomically.
"""
from __future__ import annotations

import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .atomic import atomic_path
from .color import RGB_TO_YCBCR, luma_of
from .errors import InputError

# Pillow's own bomb check would raise mid-way with its own message; we check first.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Extension -> Pillow format name. Inputs outside this list are refused up front.
FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
    ".tiff": "TIFF", ".webp": "WEBP", ".gif": "GIF", ".pgm": "PPM", ".ppm": "PPM", ".pnm": "PPM", ".pbm": "PPM",
}
# Formats we write back as themselves; others (GIF's 256-colour palette, PNM) become PNG.
WRITABLE = {"JPEG", "PNG", "BMP", "TIFF", "WEBP"}
# Formats whose files can carry an ICC profile / EXIF block (as Pillow writes them).
HOLDS_ICC = {"JPEG", "PNG", "TIFF", "WEBP"}
HOLDS_EXIF = {"JPEG", "PNG", "WEBP", "TIFF"}
EXIF_ORIENTATION = 0x0112
# Chroma threshold (8-bit units of max |Cb|,|Cr| at the 99th percentile) above which an
# RGB file counts as a colour photo rather than gray stored as RGB.
COLOR_THRESHOLD = 3.0 / 255


# Full-resolution work runs in strips of this many rows, so temporaries stay small.
STRIP_ROWS = 512
# Measured peak resident bytes per pixel of a colorized photo (decode + luma + merge +
# encode); the pixel limit is derived from available memory with it.
PEAK_BYTES_PER_PIXEL = 24


def pixel_limit(max_pixels: int) -> tuple[int, str]:
    """The pixel limit for this machine now and why: ``max_pixels`` (Pillow's bomb limit)
    or what the available memory can hold, whichever is smaller."""
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency
        return max_pixels, "decompression-bomb limit"
    by_memory = avail // PEAK_BYTES_PER_PIXEL
    if by_memory < max_pixels:
        return by_memory, f"{avail / 2**30:.1f} GiB of memory available"
    return max_pixels, "decompression-bomb limit"


# Photos and clips shipped with the package (quickstart, tests, export calibration).
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@dataclass
class LoadedImage:
    """An input reduced to what the colorizer needs."""

    path: Path
    luma: np.ndarray  # H x W float32 in [0, 1], full resolution (BT.601 Y for colour inputs)
    alpha: np.ndarray | None  # H x W float32 in [0, 1], kept untouched
    bits: int  # 8 or 16: the depth to write back
    mode: str  # Pillow mode as read
    format: str  # Pillow format as read
    is_color: bool  # True when the input already had colour
    warnings: list[str] = field(default_factory=list)  # what was not carried over, per file
    icc: bytes | None = None  # the input's ICC profile, written back to the output
    exif: bytes | None = None  # the input's EXIF, orientation reset to 1 (pixels are upright)


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in FORMATS


def output_suffix(path: Path) -> str:
    """Output extension for an input: the same format when we can write it, else .png."""
    fmt = FORMATS.get(path.suffix.lower())
    return path.suffix if fmt in WRITABLE else ".png"


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def file_kind(path: Path) -> str:
    """``"file"`` for a regular file (through symlinks), else what it is: ``"a FIFO"``,
    ``"a folder"``, ``"a broken link"``, ``"missing"``... Never opens it (a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken link" if os.path.islink(path) else "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return "file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def is_regular(path: Path) -> bool:
    return file_kind(path) == "file"


def check_readable(path: Path) -> None:
    """``InputError`` unless ``path`` is a non-empty regular file we may read (checked
    without opening it)."""
    kind = file_kind(path)
    if kind == "missing":
        raise InputError(f"not found: {path}")
    if kind != "file":
        raise InputError(f"not a regular file: {path} is {kind}")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")
    if path.stat().st_size == 0:
        raise InputError(f"empty file: {path}")


def load_image(path: str | os.PathLike[str], max_pixels: int = 178_956_970) -> LoadedImage:
    """Open an image and reduce it to luminance (+ alpha). Raises ``InputError``."""
    path = Path(path)
    check_readable(path)
    if not is_supported(path):
        raise InputError(f"unsupported image format {path.suffix or '(none)'}: {path.name}; "
                         f"supported: {', '.join(sorted(set(FORMATS)))}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path, formats=sorted(set(FORMATS.values())))
    except UnidentifiedImageError:
        raise InputError(f"not a readable image (corrupt or wrong extension): {path}") from None
    except OSError as e:
        raise InputError(f"cannot open {path}: {e}") from None
    with im:
        w, h = im.size
        limit, why = pixel_limit(max_pixels)
        if w * h > limit:
            raise InputError(f"image too large: {path.name} is {w}x{h} = {w * h / 1e6:.0f} MP "
                             f"(limit {limit / 1e6:.0f} MP: {why})")
        if w < 1 or h < 1:
            raise InputError(f"image has no pixels: {path}")
        fmt = im.format or "?"
        frames = int(getattr(im, "n_frames", 1) or 1)
        icc, exif = im.info.get("icc_profile") or None, _upright_exif(im)
        try:
            deep = _read_deep_rgb(path, fmt)
            if deep is None:
                im.load()
                im = ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as e:
            raise InputError(f"corrupt or truncated image: {path.name} ({e})") from None
        loaded = _reduce_deep(deep, path, fmt, im.getexif().get(EXIF_ORIENTATION, 1)) if deep is not None \
            else _reduce(im, path, fmt)
        loaded.icc, loaded.exif = icc, exif
        if frames > 1:
            loaded.warnings.append(f"{'animated' if fmt in ('GIF', 'WEBP', 'PNG') else 'multi-page'} {fmt}: only the "
                                   f"first of {frames} frames colorized")
        return loaded


def picture_image(image: object, max_pixels: int = 178_956_970) -> tuple[LoadedImage, str]:
    """A picture handed to the Python API reduced like a file, with the kind of result to
    give back: ``"pil"``, ``"uint8"``, ``"uint16"`` or ``"float"``. Raises ``InputError`` for
    anything it would otherwise turn into a wrong picture (see ``array_image``)."""
    if isinstance(image, Image.Image):
        _check_pixels(image.size[0], image.size[1], max_pixels, "picture")
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # deep modes follow the array rules
            return array_image(np.asarray(image), max_pixels)[0], "pil"
        return _reduce(image, Path("<picture>"), ""), "pil"
    if not isinstance(image, np.ndarray):
        raise InputError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    return array_image(image, max_pixels)


def array_image(a: np.ndarray, max_pixels: int = 178_956_970) -> tuple[LoadedImage, str]:
    """The documented array rules: ``H x W``, ``H x W x 1``, ``H x W x 3`` or ``H x W x 4``
    (alpha ignored); uint8 (0..255) and uint16 (0..65535) as they are; other integers by
    their value range (within 0..255: 8-bit, within 0..65535: 16-bit, else refused); floats
    in [0, 1] (anything outside, NaN or Inf is refused). Nothing is guessed or clipped."""
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise InputError(f"array of shape {a.shape}: expected H x W (gray) or H x W x 3 (RGB)")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"array of shape {a.shape} has no pixels")
    _check_pixels(a.shape[1], a.shape[0], max_pixels, "array")
    x, kind = _unit_range(a)
    luma = luma_of(x[..., :3]) if x.ndim == 3 and x.shape[2] >= 3 else (x[..., 0] if x.ndim == 3 else x)
    bits = 16 if kind == "uint16" else 8
    return LoadedImage(None, np.ascontiguousarray(np.clip(luma, 0, 1), np.float32), None, bits,  # type: ignore[arg-type]
                       "array", "", False), kind


def _unit_range(a: np.ndarray) -> tuple[np.ndarray, str]:
    """``a`` as float32 in [0, 1] and the result kind its dtype and values call for."""
    if a.dtype in (np.uint8, np.uint16):
        return a.astype(np.float32) / np.iinfo(a.dtype).max, str(a.dtype)
    if np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise InputError(f"{a.dtype} array with values {lo}..{hi}: integer pictures must hold 0..255 (8-bit) "
                             f"or 0..65535 (16-bit) code values")
        kind = "uint8" if hi <= 255 else "uint16"
        return a.astype(np.float32) / (255 if kind == "uint8" else 65535), kind
    if np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float32)
        if not np.isfinite(x).all():
            raise InputError("the input array contains NaN or Inf values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise InputError(f"float array with values {lo:g}..{hi:g}: float pictures must be in [0, 1] "
                             f"(divide 8-bit code values by 255)")
        return x, "float"
    raise InputError(f"{a.dtype} array: expected uint8, uint16, integers in 0..65535 or floats in [0, 1]")


def _check_pixels(w: int, h: int, max_pixels: int, what: str) -> None:
    limit, why = pixel_limit(max_pixels)
    if w * h > limit:
        raise InputError(f"{what} too large: {w}x{h} = {w * h / 1e6:.0f} MP (limit {limit / 1e6:.0f} MP: {why})")
    if w < 1 or h < 1:
        raise InputError(f"{what} has no pixels ({w}x{h})")


def _upright_exif(im: Image.Image) -> bytes | None:
    """The file's own EXIF block (JPEG, PNG, WebP) with the orientation reset to 1, because
    the pixels are turned upright on load; None when it has none."""
    raw = im.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    if EXIF_ORIENTATION in exif:
        exif[EXIF_ORIENTATION] = 1
    return exif.tobytes()


def _read_deep_rgb(path: Path, fmt: str) -> np.ndarray | None:
    """16-bit RGB(A) PNG or TIFF as ``H x W x C`` uint16; None for anything Pillow reads
    at full precision itself (Pillow reduces 16-bit colour to 8 bits)."""
    if fmt == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        if len(head) < 26 or head[24] != 16 or head[25] not in (2, 6):
            return None
        import av

        with av.open(str(path)) as c:  # FFmpeg's PNG decoder keeps the 16 bits
            frame = next(c.decode(video=0))
            return frame.to_ndarray(format="rgba64le" if head[25] == 6 else "rgb48le")
    if fmt == "TIFF":
        import tifffile

        with tifffile.TiffFile(path) as t:
            page = t.pages[0]
            if page.bitspersample != 16 or page.samplesperpixel < 3 or page.photometric != 2:
                return None
            return page.asarray()[..., :4]
    return None


def _reduce_deep(a: np.ndarray, path: Path, fmt: str, orientation: int) -> LoadedImage:
    a = _orient(a, orientation)
    y = np.empty(a.shape[:2], np.float32)
    for r0 in range(0, a.shape[0], STRIP_ROWS):
        y[r0:r0 + STRIP_ROWS] = luma_of(a[r0:r0 + STRIP_ROWS, :, :3].astype(np.float32) / 65535)
    alpha = a[..., 3].astype(np.float32) / 65535 if a.shape[2] == 4 else None
    rgb8 = (a[..., :3] >> 8).astype(np.uint8)
    return LoadedImage(path, np.clip(y, 0, 1, out=y), alpha, 16, "RGB;16", fmt, _has_color(rgb8))


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an ``H x W x C`` array, as ``exif_transpose`` does."""
    flips = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
             5: lambda x: x.transpose(1, 0, 2), 6: lambda x: np.rot90(x, -1), 7: lambda x: np.rot90(x, 1)[::-1],
             8: lambda x: np.rot90(x, 1)}
    return np.ascontiguousarray(flips[orientation](a)) if orientation in flips else a


def _reduce(im: Image.Image, path: Path, fmt: str) -> LoadedImage:
    mode = im.mode
    alpha = None
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        # Mode I from 16-bit PNGs holds 0..65535; other 32-bit ints are scaled down.
        top = 65535.0 if a.max(initial=0) <= 65535 else float(a.max())
        return LoadedImage(path, (a / top).astype(np.float32), None, 16, mode, fmt, False)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return LoadedImage(path, np.clip(a / max(1.0, float(a.max(initial=1))), 0, 1), None, 16, mode, fmt, False)
    if mode == "1":
        im = im.convert("L")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La", "PA"):
        im = im.convert("RGBA" if mode in ("RGBa", "La", "PA") else "RGB")
    m = im.mode
    if m == "LA":
        a = np.asarray(im, dtype=np.float32) / 255
        return LoadedImage(path, a[..., 0].copy(), a[..., 1].copy(), 8, mode, fmt, False)
    if m == "L":
        return LoadedImage(path, np.asarray(im, dtype=np.float32) / 255, None, 8, mode, fmt, False)
    if m in ("RGB", "RGBA"):
        a = np.asarray(im)  # uint8, no float copy of the whole picture
        if m == "RGBA":
            alpha = a[..., 3].astype(np.float32) / 255
        y = np.empty(a.shape[:2], np.float32)
        for r0 in range(0, a.shape[0], STRIP_ROWS):  # luma strip by strip: bounded temporaries
            y[r0:r0 + STRIP_ROWS] = luma_of(a[r0:r0 + STRIP_ROWS, :, :3].astype(np.float32) / 255)
        return LoadedImage(path, np.clip(y, 0, 1, out=y), alpha, 8, mode, fmt, _has_color(a[..., :3]))
    raise InputError(f"unsupported image mode {mode}: {path.name}")


def _has_color(rgb: np.ndarray) -> bool:
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000)))  # subsample large photos
    s = rgb[::step, ::step].reshape(-1, 3).astype(np.float32) / 255
    cbcr = s @ RGB_TO_YCBCR[1:].numpy().astype(np.float32).T  # the same matrix as the merge
    return float(np.percentile(np.abs(cbcr).max(axis=1), 99)) > COLOR_THRESHOLD


def save_image(path: str | os.PathLike[str], rgb: np.ndarray, alpha: np.ndarray | None = None,
               bits: int = 8, quality: int = 95, icc: bytes | None = None, exif: bytes | None = None,
               notes: list[str] | None = None) -> Path:
    """Write ``H x W x 3`` RGB atomically: float in [0, 1], or already quantised uint8 /
    uint16 (what the strip merge produces), plus an optional float alpha plane.

    16 bits are written to PNG (a minimal encoder: Pillow cannot write 16-bit RGB) and TIFF
    (tifffile); other formats get 8 bits. The ICC profile and EXIF go into formats that
    hold them; what a format cannot hold is said in ``notes``. JPEG cannot hold alpha:
    callers pick the output suffix with ``output_suffix`` so this does not happen.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower(), "PNG")
    deep = bits == 16 and fmt in ("PNG", "TIFF")
    if bits == 16 and not deep and notes is not None:
        notes.append(f"16-bit input written as 8-bit: {fmt} output holds 8 bits per channel")
    planes = _quantised(rgb, deep)
    if alpha is not None:
        planes = np.concatenate([planes, _quantised(alpha[..., None], deep)], axis=2)
    _note_metadata(fmt, deep, icc, exif, notes)
    with atomic_path(path) as tmp:
        if deep and fmt == "PNG":
            _write_png16(tmp, planes.astype(">u2"), icc, exif)
        elif deep:
            import tifffile

            tifffile.imwrite(tmp, planes, photometric="rgb", iccprofile=icc,
                             extrasamples=("unassalpha",) if alpha is not None else None)
        else:
            _save_8bit(tmp, planes, fmt, alpha is not None, quality, icc if fmt in HOLDS_ICC else None,
                       exif if fmt in HOLDS_EXIF else None)
    return path


def _note_metadata(fmt: str, deep: bool, icc: bytes | None, exif: bytes | None, notes: list[str] | None) -> None:
    if notes is None:
        return
    if icc and fmt not in HOLDS_ICC:
        notes.append(f"ICC profile dropped: {fmt} output cannot hold it")
    if exif and (fmt not in HOLDS_EXIF or (deep and fmt == "TIFF")):
        notes.append(f"EXIF dropped: {'16-bit ' if deep else ''}{fmt} output cannot hold it here")


def _save_8bit(tmp: Path, planes: np.ndarray, fmt: str, has_alpha: bool, quality: int, icc: bytes | None,
               exif: bytes | None) -> None:
    im = Image.fromarray(planes, "RGBA" if has_alpha else "RGB")
    extra = {k: v for k, v in (("icc_profile", icc), ("exif", exif)) if v}
    if fmt == "JPEG":
        if has_alpha:
            im = im.convert("RGB")
        im.save(tmp, "JPEG", quality=quality, subsampling=0, **extra)
    else:
        im.save(tmp, fmt, **extra)


def _quantised(a: np.ndarray, deep: bool) -> np.ndarray:
    if a.dtype == np.uint16:
        return a if deep else ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * 257 if deep else a
    top = 65535 if deep else 255
    return np.round(np.clip(a, 0, 1) * top).astype(np.uint16 if deep else np.uint8)


def _write_png16(path: Path, arr: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> None:
    """Minimal 16-bit-per-channel RGB/RGBA PNG encoder (big-endian samples), with the
    ICC profile (iCCP) and EXIF (eXIf) chunks when given."""
    h, w, c = arr.shape
    color_type = {3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr))
        if icc:
            f.write(chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
        if exif:
            f.write(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
