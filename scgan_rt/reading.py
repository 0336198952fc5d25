"""Reading videos with PyAV: opening, probing, planes in the stream's own colour.

Used by the colorization job, the metrics (``evaluate-video``) and the benchmark.
Works with PyAV 18 and 19 (19 returns ``AVRational`` where 18 returned ``Fraction``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .images import check_readable, is_regular

AUDIO_SUFFIXES = {".m4a", ".mp3", ".wav", ".aac", ".flac", ".ogg", ".opus", ".wma"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
MAX_CONSECUTIVE_BAD_PACKETS = 32
MAX_BAD_PACKET_SHARE = 0.2  # give up when more than this share of video packets is corrupt
# Mean chroma deviation from neutral (8-bit code values) above which footage counts as colour.
COLOUR_CHROMA_ENERGY = 3.0
PROBE_FRAMES = 12
# AVColorSpace / AVColorRange values (libavutil/pixfmt.h).
_MATRIX_OF_COLORSPACE = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
RANGE_LIMITED, RANGE_FULL = 1, 2
_NATIVE = {"yuv420p": 8, "yuvj420p": 8, "yuv420p10le": 10}

def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def frac(r: Any) -> Fraction | None:
    """``Fraction`` from PyAV 18's Fraction/None or PyAV 19's AVRational (falsy when unset)."""
    if r is None or not r:
        return None
    return Fraction(int(r.numerator), int(r.denominator))


@dataclass
class VideoInfo:
    width: int
    height: int
    frames: int  # from the container; 0 when unknown
    duration_s: float
    rate: Fraction
    time_base: Fraction
    bits: int  # luma bit depth
    full_range: bool
    matrix: str  # bt601 | bt709 | bt2020 (what the chroma is written in)
    tags: dict[str, int]  # color_range, colorspace, color_primaries, color_trc as decoded
    rotation: int
    chroma_energy: float  # mean |chroma - neutral| of the first frames, 8-bit code values
    audio: int = 0
    subtitles: int = 0
    frames_counted: bool = False  # ``frames`` is the container's count, not duration x rate
    interlaced: bool = False
    codec: str = ""  # the source's video codec (h264, hevc, vp9, av1, ...)
    video_streams: int = 1  # the first is colorized; other video streams (angles, cover art) are not kept

    @property
    def is_colour(self) -> bool:
        return self.chroma_energy > COLOUR_CHROMA_ENERGY


def open_input(src: Path) -> Any:
    import av

    check_readable(src)
    try:
        c = av.open(str(src))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"unrecognized or unsupported container: {src.name} ({e})") from None
    fmt = c.format.name or ""
    if fmt.endswith("_pipe") or fmt in ("image2", "gif", "apng", "webp"):
        c.close()
        raise InputError(f"{src.name} is an image ({fmt.removesuffix('_pipe')}), not a video; give it an image suffix")
    return c


def plane(frame: Any, i: int) -> np.ndarray:
    """Plane ``i`` of a planar frame as an ``h x w`` array view (line padding dropped)."""
    p = frame.planes[i]
    dt = np.uint16 if _NATIVE.get(frame.format.name, 8) > 8 else np.uint8
    a = np.frombuffer(p, dtype=dt)
    return a.reshape(p.height, -1)[:, :p.width]


def is_rgb_or_gray(name: str) -> bool:
    return name.startswith(("gray", "rgb", "bgr", "argb", "abgr", "gbr", "pal8", "ya", "monow", "monob"))


class Deinterlacer:
    """FFmpeg's bwdif on decoded frames: one output per input frame (fields merged, not
    doubled), one frame of delay, timestamps back in the stream's time base."""

    FILTER = ("bwdif", "mode=send_frame:parity=auto:deint=interlaced")

    def __init__(self, stream: Any) -> None:
        import av

        self.graph = av.filter.Graph()
        src = self.graph.add_buffer(template=stream)
        self.graph.link_nodes(src, self.graph.add(*self.FILTER), self.graph.add("buffersink")).configure()
        self.time_base = frac(stream.time_base)
        self._done = (av.error.BlockingIOError, av.error.EOFError)

    def push(self, frame: Any | None) -> list[Any]:
        """Frames out after ``frame`` in (None flushes the last one)."""
        self.graph.push(frame)
        out = []
        while True:
            try:
                f = self.graph.pull()
            except self._done:
                return out
            tb = frac(f.time_base)
            if f.pts is not None and tb and self.time_base:
                f.pts = round(f.pts * tb / self.time_base)
            out.append(f)


def working_format(frame: Any) -> tuple[Any, int]:
    """Return the frame as 4:2:0 planar Y'CbCr (8 or 10 bit) and its bit depth.

    Y'CbCr sources are only resampled (range and matrix unchanged, so the luma plane is the
    source's); RGB and gray sources become limited-range BT.601 Y'CbCr (see ``_source_colour``)."""
    name = frame.format.name
    if name in _NATIVE:
        return frame, _NATIVE[name]
    try:
        bits = max(c.bits for c in frame.format.components)
    except Exception:
        bits = 8
    target = "yuv420p10le" if bits > 8 else "yuv420p"
    if is_rgb_or_gray(name):
        return frame.reformat(format=target), _NATIVE[target]
    from av.video.reformatter import VideoReformatter

    rng = int(frame.color_range or 0) or (RANGE_FULL if name.startswith("yuvj") else RANGE_LIMITED)
    out = VideoReformatter().reformat(frame, format=target, src_color_range=rng, dst_color_range=rng)
    return out, _NATIVE[target]


def source_colour(frame: Any, height: int) -> tuple[bool, str, int]:
    """(full range?, chroma matrix, AVColorSpace tag) of the planes ``_working_format`` gives."""
    name = frame.format.name
    if is_rgb_or_gray(name):
        return False, "bt601", 6  # swscale's default conversion: limited range, BT.601
    rng = int(frame.color_range or 0)
    full = rng == RANGE_FULL or (rng != RANGE_LIMITED and name.startswith("yuvj"))
    cs = int(frame.colorspace or 0)
    matrix = _MATRIX_OF_COLORSPACE.get(cs) or ("bt709" if height >= 720 else "bt601")
    return full, matrix, cs


def chroma_energy(frame: Any) -> float:
    f, bits = working_format(frame)
    scale = 2 ** (bits - 8)
    u = plane(f, 1).astype(np.float32) / scale - 128
    v = plane(f, 2).astype(np.float32) / scale - 128
    return float(np.mean(np.sqrt(u * u + v * v)))


def video_seconds(path: Path) -> float:
    """The container's duration in seconds, from the header only (0 when unknown)."""
    import av

    if not is_regular(path):
        return 0.0
    try:
        with av.open(str(path)) as c:
            v = c.streams.video[0] if c.streams.video else None
            if v is not None and v.duration and v.time_base:
                return float(v.duration * v.time_base)
            return float(c.duration) / 1e6 if c.duration else 0.0
    except (av.error.FFmpegError, OSError, ValueError):
        return 0.0


def source_codec(path: Path) -> str:
    """The first video stream's codec name (``h264``, ``vp9``...), from the header only;
    empty when the file cannot be opened (the job reports that properly later)."""
    import av

    if not is_regular(path):
        return ""
    try:
        with av.open(str(path)) as c:
            return c.streams.video[0].codec_context.name if c.streams.video else ""
    except (av.error.FFmpegError, OSError, ValueError):
        return ""


def probe_video(src: str | os.PathLike[str], max_pixels: int = 178_956_970) -> VideoInfo:
    """Read a video's geometry, colour description and whether it already has colour.

    Decodes at most ``PROBE_FRAMES`` frames. Raises ``InputError`` for anything that is not
    a decodable video."""
    import av

    src = Path(src)
    with open_input(src) as inp:
        if not inp.streams.video:
            raise InputError(f"no video stream in {src.name}")
        vin = inp.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        if w <= 0 or h <= 0:
            raise InputError(f"video stream has no frame size: {src.name}")
        if w * h > max_pixels:
            raise InputError(f"frame too large: {w}x{h} in {src.name} (limit {max_pixels / 1e6:.0f} MP)")
        tb = frac(vin.time_base) or Fraction(1, 90000)
        rate = frac(vin.average_rate) or frac(vin.guessed_rate) or Fraction(25, 1)
        duration = float(vin.duration * tb) if vin.duration else (float(inp.duration) / 1e6 if inp.duration else 0.0)
        frames = int(vin.frames or 0) or (int(round(duration * rate)) if duration else 0)
        energies, first = [], None
        bad = 0
        try:
            for packet in inp.demux(vin):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    bad += 1
                    if bad > MAX_CONSECUTIVE_BAD_PACKETS:
                        break
                    continue
                for fr in decoded:
                    first = first or fr
                    energies.append(chroma_energy(fr))
                if len(energies) >= PROBE_FRAMES:
                    break
        except (av.error.FFmpegError, OSError) as e:
            if first is None:
                raise InputError(f"cannot decode {src.name}: {e}") from None
        if first is None:
            raise InputError(f"no decodable video frames in {src.name}")
        _, bits = working_format(first)
        full, matrix, cs = source_colour(first, h)
        tags = {"color_range": RANGE_FULL if full else RANGE_LIMITED, "colorspace": cs,
                "color_primaries": int(getattr(first, "color_primaries", 0) or 0),
                "color_trc": int(getattr(first, "color_trc", 0) or 0)}
        rotation = int(round(getattr(first, "rotation", 0) or 0)) % 360
        return VideoInfo(w, h, frames, duration, rate, tb, bits, full, matrix, tags, rotation,
                         float(np.mean(energies)), len(inp.streams.audio), len(inp.streams.subtitles),
                         frames_counted=bool(vin.frames), interlaced=bool(getattr(first, "interlaced_frame", False)),
                         codec=vin.codec_context.name, video_streams=len(inp.streams.video))
