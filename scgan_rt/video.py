"""Video colorization with PyAV: decode once, colorize in batches, encode once, in
process (no ffmpeg subprocess, no frames on disk - the video2x v6 architecture).

* Timestamps are copied frame by frame (VFR stays VFR); audio packets are copied
  untouched (no re-encode).
* Luminance comes from the decoded frame and is kept; only chroma is predicted.
* Odd frame sizes are padded by one replicated row/column for 4:2:0 H.264 and the
  report says so; content is never cropped.
* Corrupt packets are skipped and counted; 32 in a row, or no decodable frame at all,
  is an ``InputError``. Output is written to a temp name and renamed only on success.
Works with PyAV 18 and 19.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .images import LoadedImage, check_readable

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
MAX_CONSECUTIVE_BAD_PACKETS = 32
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def video_output_suffix(path: Path) -> str:
    # H.264 goes into MP4 unless the source was Matroska/WebM, which we keep as .mkv.
    return ".mkv" if path.suffix.lower() in (".mkv", ".webm") else ".mp4"


@dataclass
class VideoReport:
    frames_in: int = 0
    frames_out: int = 0
    bad_packets: int = 0
    padded: bool = False
    audio_streams: int = 0
    warnings: list[str] = field(default_factory=list)


def colorize_video(src: str | os.PathLike[str], dst: str | os.PathLike[str], colorize: Callable[[list[LoadedImage]], list],
                   *, batch_size: int = 4, max_pixels: int = 178_956_970, crf: int = 18,
                   on_frame: Callable[[int, int], None] | None = None) -> VideoReport:
    """Colorize ``src`` into ``dst`` (atomic). ``colorize`` is ``Colorizer.colorize``."""
    import av

    src = Path(src)
    check_readable(src)
    try:
        inp = av.open(str(src))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"unrecognized or unsupported container: {src.name} ({e})") from None
    rep = VideoReport()
    with inp:
        if not inp.streams.video:
            raise InputError(f"no video stream in {src.name}")
        vin = inp.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        if w <= 0 or h <= 0:
            raise InputError(f"video stream has no frame size: {src.name}")
        if w * h > max_pixels:
            raise InputError(f"frame too large: {w}x{h} in {src.name} (limit {max_pixels / 1e6:.0f} MP)")
        expected = vin.frames or 0
        w2, h2 = w + (w % 2), h + (h % 2)
        if (w2, h2) != (w, h):
            rep.padded = True
            rep.warnings.append(f"{w}x{h} padded to {w2}x{h2} for 4:2:0 H.264 (edge replicated)")
        audio = list(inp.streams.audio)
        with atomic_path(dst) as tmp:
            with av.open(str(tmp), "w") as out:
                vout = out.add_stream("libx264", rate=vin.average_rate or Fraction(25, 1))
                vout.width, vout.height, vout.pix_fmt = w2, h2, "yuv420p"
                # Encoder and stream share the input's time base so VFR timestamps survive
                # unrounded (the default 1/rate would merge close frames).
                vout.time_base = vin.time_base
                vout.codec_context.time_base = vin.time_base
                vout.options = {"crf": str(crf), "preset": "medium"}
                amap = {a.index: out.add_stream_from_template(a) for a in audio}
                rep.audio_streams = len(amap)
                pending: list[tuple[int | None, LoadedImage]] = []

                def flush() -> None:
                    if not pending:
                        return
                    outs = colorize([im for _, im in pending])
                    for (pts, _), (rgb, _sal) in zip(pending, outs):
                        arr = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
                        if rep.padded:
                            arr = np.pad(arr, ((0, h2 - h), (0, w2 - w), (0, 0)), mode="edge")
                        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                        frame.pts, frame.time_base = pts, vin.time_base
                        for pkt in vout.encode(frame):
                            out.mux(pkt)
                        rep.frames_out += 1
                        if on_frame:
                            on_frame(rep.frames_out, expected)
                    pending.clear()

                bad_run = 0
                for packet in inp.demux(vin, *audio):
                    if packet.stream.type == "audio":
                        if packet.dts is None:
                            continue  # demuxer flush packet
                        packet.stream = amap[packet.stream.index]
                        out.mux(packet)
                        continue
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:
                        rep.bad_packets += 1
                        bad_run += 1
                        if bad_run > MAX_CONSECUTIVE_BAD_PACKETS:
                            raise InputError(f"stream corrupted at frame {rep.frames_in} of {src.name}") from None
                        continue
                    bad_run = 0
                    for frame in frames:
                        rgb = frame.to_ndarray(format="rgb24").astype(np.float32) / 255
                        pending.append((frame.pts, LoadedImage(src, rgb @ LUMA, None, 8, "video", "", True)))
                        rep.frames_in += 1
                        if len(pending) >= batch_size:
                            flush()
                flush()
                if rep.frames_out == 0:
                    raise InputError(f"no decodable video frames in {src.name}")
                for pkt in vout.encode(None):
                    out.mux(pkt)
        if rep.bad_packets:
            rep.warnings.append(f"{rep.bad_packets} corrupt packets skipped")
        if expected and rep.frames_out < expected:
            rep.warnings.append(f"stream ended at frame {rep.frames_out} (expected ~{expected})")
    return rep
