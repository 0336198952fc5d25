"""PyAV-generated clips for the video tests: real photos as frame content, every edge
case built explicitly (noise, cuts, VFR, odd sizes, rotation, 10-bit, corrupt packets)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def gray_photo(photo: Path, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.open(photo).convert("L").resize((w, h), Image.BICUBIC), dtype=np.uint8)


def write_clip(path: Path, frames: list[np.ndarray], *, codec: str = "libx264", pix_fmt: str = "yuv420p",
               fmt: str = "gray", rate: int = 25, options: dict | None = None, rotation: int = 0,
               tags: dict | None = None, corrupt: set[int] = frozenset(), audio: str | None = None,
               audio_rate: int = 16000, pts: list[int] | None = None) -> Path:
    """Encode ``frames`` (``H x W`` uint8 gray or ``H x W x 3`` rgb24) as a clip; ``corrupt``
    packet indices get random payloads (decoder errors); ``audio``: an encoder for a
    440 Hz sine as long as the video; ``pts``: per-frame timestamps in ms (VFR)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = pix_fmt
        tb = Fraction(1, 1000) if pts else Fraction(1, rate)
        s.time_base = tb
        s.codec_context.time_base = tb
        if options:
            s.options = options
        for k, v in (tags or {}).items():
            setattr(s.codec_context, k, v)
        if rotation:
            s.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream(audio, rate=audio_rate)
            a.layout = "mono"
        k = 0

        def mux(packets):
            nonlocal k
            for p in packets:
                if k in corrupt:
                    b = bytearray(bytes(p))
                    b[4:] = rng.integers(0, 256, len(b) - 4, dtype=np.uint8).tobytes()
                    p.update(bytes(b))
                c.mux(p)
                k += 1

        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=fmt if img.ndim == 2 else "rgb24")
            if tags and "color_range" in tags:
                f.color_range = tags["color_range"]
            f.pts = pts[i] if pts else i
            f.time_base = tb
            mux(s.encode(f))
        mux(s.encode(None))
        if a is not None:
            n = audio_rate * len(frames) // rate
            t = np.arange(n) / audio_rate
            samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)[None]
            for j in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, j:j + 1024]), format="s16", layout="mono")
                af.sample_rate, af.pts = audio_rate, j
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def noisy_still(photo: Path, n: int = 16, w: int = 128, h: int = 96, sigma: float = 6.0, seed: int = 0) -> list[np.ndarray]:
    """A still scene with fresh sensor-like noise on every frame."""
    base = gray_photo(photo, w, h).astype(np.float32)
    rng = np.random.default_rng(seed)
    return [np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def decode_planes(path: Path) -> list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
    """(seconds, Y, U, V) per frame, as decoded (planes as arrays)."""
    out = []
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        tb = Fraction(v.time_base.numerator, v.time_base.denominator)
        for f in c.decode(v):
            dt = np.uint16 if "10" in f.format.name else np.uint8
            planes = [np.frombuffer(p, dt).reshape(p.height, -1)[:, :p.width].copy() for p in f.planes[:3]]
            out.append((float(f.pts * tb), *planes))
    return out
