"""Writing videos with PyAV: the encoder table, encoder options, bit depth, output streams.

Every encoder setting is read from ``InferConfig`` here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ResourceError, UsageError
from .settings import InferConfig
from .reading import VideoInfo, frac, source_codec


# Software encoders ``info`` lists; ``--codec`` accepts any encoder PyAV has.
KNOWN_ENCODERS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1")
VIDEO_OUTPUT_SUFFIXES = (".mp4", ".mkv", ".mov", ".m4v", ".webm")
# ``--codec auto``: the source's codec family -> encoders that keep it, first found wins.
FAMILY_ENCODERS = {"h264": ("libx264",), "hevc": ("libx265",), "vp9": ("libvpx-vp9",), "vp8": ("libvpx-vp9",),
                   "av1": ("libsvtav1", "libaom-av1")}
FALLBACK_ENCODER = "libx264"
WEBM_ENCODERS = {"libvpx-vp9", "libvpx", "libsvtav1", "libaom-av1"}
# Uncompressed output (a null codec for benchmarks, or lossless hand-over): Matroska holds it.
RAW_ENCODER = "rawvideo"
RAW_SUFFIXES = (".mkv", ".nut", ".avi")


def choose_encoder(source_codec: str, setting: str) -> tuple[str, str | None]:
    """The encoder for ``--codec`` (``auto``: the source's family where an encoder for it
    exists, else H.264) and a note when the family changes."""
    if setting != "auto":
        return setting, None
    have = video_encoders()
    for enc in FAMILY_ENCODERS.get(source_codec, ()):
        if enc in have:
            return enc, None
    if source_codec in FAMILY_ENCODERS:
        return FALLBACK_ENCODER, f"{source_codec} source written as H.264: this PyAV build has no {source_codec} encoder"
    return FALLBACK_ENCODER, f"{source_codec} source written as H.264 (no encoder for its family)"


def video_output_suffix(path: Path, codec: str = "auto") -> str:
    """Matroska stays .mkv; WebM stays .webm when the encoder can go there (else .mkv);
    uncompressed output goes to .mkv; everything else becomes .mp4."""
    suffix = path.suffix.lower()
    if codec == RAW_ENCODER:
        return ".mkv"
    if suffix == ".webm":
        enc = choose_encoder(source_codec(path), codec)[0] if codec == "auto" else codec
        return ".webm" if enc in WEBM_ENCODERS else ".mkv"
    return ".mkv" if suffix == ".mkv" else ".mp4"


def output_bits(codec: str, bits: int) -> tuple[str, int]:
    import av

    try:
        formats = {f.name for f in (av.codec.Codec(codec, "w").video_formats or [])}
    except Exception:
        raise UsageError(f"unknown video encoder --codec {codec!r} (try libx264, libx265, libvpx-vp9, libsvtav1)") from None
    if codec == RAW_ENCODER:  # takes any pixel format
        return ("yuv420p10le", 10) if bits > 8 else ("yuv420p", 8)
    if bits > 8 and "yuv420p10le" in formats:
        return "yuv420p10le", 10
    if "yuv420p" not in formats:
        raise UsageError(f"encoder {codec} cannot write 4:2:0 Y'CbCr")
    return "yuv420p", 8


def video_encoders() -> dict[str, bool]:
    """Software encoders this PyAV build has, each with whether it writes 10-bit 4:2:0."""
    import av

    found = {}
    for name in KNOWN_ENCODERS:
        try:
            fmts = {f.name for f in (av.codec.Codec(name, "w").video_formats or [])}
        except Exception:
            continue
        found[name] = "yuv420p10le" in fmts
    return found


def encoder_options(codec: str, cfg: InferConfig, segment: bool = False) -> dict[str, str]:
    if codec in ("libx264", "libx265"):
        opts = {"crf": str(cfg.crf), "preset": cfg.encoder_preset}
        if segment:  # no B-frames (dts == pts across joins), headers with every keyframe
            opts["bf"] = "0"
            opts["x264-params" if codec == "libx264" else "x265-params"] = "repeat-headers=1"
        return opts
    if codec.startswith("libvpx"):
        return {"crf": str(cfg.crf), "b": "0"}
    if codec in ("libsvtav1", "libaom-av1"):
        return {"crf": str(cfg.crf)}
    return {}


def fill_plane(plane: Any, arr: np.ndarray) -> None:
    """Copy an ``h x w`` array into a frame plane whose rows may be padded."""
    line = plane.line_size // arr.itemsize
    if arr.shape[1] == line:
        plane.update(np.ascontiguousarray(arr))
        return
    buf = np.frombuffer(plane, dtype=arr.dtype).reshape(-1, line)
    buf[:arr.shape[0], :arr.shape[1]] = arr


@dataclass
class OutputStreams:
    video: Any
    copied: dict[int, Any]  # input stream index -> output stream (packets copied)
    reencoded: dict[int, Any]  # input stream index -> AAC output stream
    kept: list[Any]  # input audio/subtitle streams to demux
    warnings: list[str] = field(default_factory=list)

    @property
    def audio_streams(self) -> int:
        return len([s for s in self.kept if s.type == "audio"])


def _container_holds(out: Any, codec: str) -> bool:
    # MP4/MOV muxers accept PCM at setup but fail when the file is finalised.
    if codec.startswith("pcm_") and Path(out.name).suffix.lower() in (".mp4", ".m4v"):
        return False
    supported = getattr(out, "supported_codecs", None)
    return supported is None or codec in supported


def setup_output(out: Any, inp: Any, info: VideoInfo, width: int, height: int, pix_fmt: str,
                 cfg: InferConfig, side_streams: bool = True, segment: bool = False) -> OutputStreams:
    """Create the video stream and the audio/subtitle streams (copied, or AAC when the
    container cannot hold the codec), before the first frame is encoded. A ``segment``
    of a film has no side streams and no B-frames (joined segments keep dts == pts)."""
    vout = out.add_stream(cfg.codec, rate=info.rate)
    vout.width, vout.height, vout.pix_fmt = width, height, pix_fmt
    # Encoder and stream share the input's time base so VFR timestamps survive unrounded.
    vout.time_base = info.time_base
    vout.codec_context.time_base = info.time_base
    _describe_colour(vout.codec_context, inp.streams.video[0], info)
    vout.options = encoder_options(cfg.codec, cfg, segment)
    streams = add_side_streams(out, inp) if side_streams else OutputStreams(None, {}, {}, [])
    streams.video = vout
    if info.rotation:
        if hasattr(vout, "set_display_rotation"):
            vout.set_display_rotation(info.rotation)
        else:
            streams.warnings.append(f"rotation {info.rotation} not carried over (PyAV too old)")
    return streams


def add_side_streams(out: Any, inp: Any) -> OutputStreams:
    """Audio and subtitle streams of ``inp`` in ``out``: copied where the container holds
    the codec, audio re-encoded to AAC where not, subtitles dropped where not (warned)."""
    streams = OutputStreams(None, {}, {}, [])
    for s in list(inp.streams.audio) + list(inp.streams.subtitles):
        name = s.codec_context.name
        if _container_holds(out, name):
            try:
                streams.copied[s.index] = out.add_stream_from_template(s)
                streams.kept.append(s)
                continue
            except Exception:
                pass
        if s.type == "audio":
            streams.reencoded[s.index] = _aac_stream(out, s)
            streams.kept.append(s)
            streams.warnings.append(f"audio stream {s.index} ({name}) re-encoded to AAC: "
                                    f"{Path(out.name).suffix} cannot hold {name}")
        else:
            streams.warnings.append(f"subtitle stream {s.index} ({name}) dropped: the output container cannot hold it")
    return streams


def _describe_colour(cc: Any, vin: Any, info: VideoInfo) -> None:
    cc.color_range = info.tags["color_range"]
    # Chroma is written in ``info.matrix``; say so even when the source left it unspecified.
    cc.colorspace = info.tags["colorspace"] or {"bt601": 6, "bt709": 1, "bt2020": 9}[info.matrix]
    for k in ("color_primaries", "color_trc"):
        if info.tags[k]:
            setattr(cc, k, info.tags[k])
    sar = frac(getattr(vin.codec_context, "sample_aspect_ratio", None))
    if sar and sar != 1:
        cc.sample_aspect_ratio = sar


def _aac_stream(out: Any, s: Any) -> Any:
    a = out.add_stream("aac", rate=s.codec_context.sample_rate or 48000)
    # AAC needs a named channel layout; sources may only say "N channels".
    n = len(s.codec_context.layout.channels) if s.codec_context.layout is not None else 2
    a.layout = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}.get(n, "stereo")
    return a


def verify_output(path: Path, frames: int, dst: Path) -> None:
    """Count the written video packets back, so a silently short file is never renamed in."""
    import av

    try:
        with av.open(str(path)) as c:
            n = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except (av.error.FFmpegError, OSError) as e:
        raise ResourceError(f"output {dst} could not be read back: {e}") from None
    if n != frames:
        raise ResourceError(f"output {dst} is incomplete ({n} of {frames} frames written)")
