"""Video colorization with PyAV: a streaming decode -> infer -> encode pipeline in one
process (no ffmpeg subprocess, no frames on disk - the video2x v6 architecture).

Three threads joined by bounded queues, so memory does not grow with the film's length
and decoding, inference and encoding overlap (libav and torch release the GIL):

* **decode**: demux; video packets are decoded to planar Y'CbCr and the *luma plane* is
  kept as it is; the network input is that plane normalised for its range (limited or
  full) and resized to S x S. Audio/subtitle packets go to the muxer untouched.
* **infer**: batches through the backend; the predicted RGB becomes Cb/Cr *in the
  stream's own matrix* (BT.601/709/2020), is smoothed over time (``temporal.py``), upsampled
  to the chroma planes' size, scaled back into the RGB gamut against the local luma, and
  quantised for the stream's range and bit depth.
* **encode**: original luma plane + new chroma planes -> encoder (libx264 CRF 18 by
  default, 4:2:0, 10-bit kept where the codec has it) -> mux. Every frame keeps its pts
  (VFR survives); colour tags, sample aspect ratio and rotation are carried over.

Output goes to a temp name and is renamed only after the file was verified (its video
packets counted back); errors, Ctrl-C and full disks leave nothing behind.
Works with PyAV 18 and 19 (19 returns ``AVRational`` where 18 returned ``Fraction``).
"""
from __future__ import annotations

import errno
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .color import chroma_from_prediction, gamut_scale, to_network
from .config import InferConfig
from .errors import InputError, ResourceError, ScganError, UsageError
from .images import check_readable
from .temporal import ChromaStabilizer

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
MAX_CONSECUTIVE_BAD_PACKETS = 32
MAX_BAD_PACKET_SHARE = 0.2  # give up when more than this share of video packets is corrupt
# Mean chroma deviation from neutral (8-bit code values) above which footage counts as colour.
COLOUR_CHROMA_ENERGY = 3.0
PROBE_FRAMES = 12
# Code values within which a smoothed chroma sample keeps last frame's code (see quantise).
DEAD_BAND = 0.75
# AVColorSpace / AVColorRange values (libavutil/pixfmt.h).
_MATRIX_OF_COLORSPACE = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
RANGE_LIMITED, RANGE_FULL = 1, 2
_NATIVE = {"yuv420p": 8, "yuvj420p": 8, "yuv420p10le": 10}
_END = object()


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def video_output_suffix(path: Path) -> str:
    # H.264 goes into MP4 unless the source was Matroska/WebM, which we keep as .mkv.
    return ".mkv" if path.suffix.lower() in (".mkv", ".webm") else ".mp4"


def _frac(r: Any) -> Fraction | None:
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

    @property
    def is_colour(self) -> bool:
        return self.chroma_energy > COLOUR_CHROMA_ENERGY


@dataclass
class VideoReport:
    frames_in: int = 0
    frames_out: int = 0
    bad_packets: int = 0
    seconds: float = 0.0
    scene_cuts: int = 0
    padded: bool = False
    skipped_colour: bool = False
    audio_streams: int = 0
    output: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0


def _open_input(src: Path) -> Any:
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


def _plane(frame: Any, i: int) -> np.ndarray:
    """Plane ``i`` of a planar frame as an ``h x w`` array view (line padding dropped)."""
    p = frame.planes[i]
    dt = np.uint16 if _NATIVE.get(frame.format.name, 8) > 8 else np.uint8
    a = np.frombuffer(p, dtype=dt)
    return a.reshape(p.height, -1)[:, :p.width]


def _is_rgb_or_gray(name: str) -> bool:
    return name.startswith(("gray", "rgb", "bgr", "argb", "abgr", "gbr", "pal8", "ya", "monow", "monob"))


def _working_format(frame: Any) -> tuple[Any, int]:
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
    if _is_rgb_or_gray(name):
        return frame.reformat(format=target), _NATIVE[target]
    from av.video.reformatter import VideoReformatter

    rng = int(frame.color_range or 0) or (RANGE_FULL if name.startswith("yuvj") else RANGE_LIMITED)
    out = VideoReformatter().reformat(frame, format=target, src_color_range=rng, dst_color_range=rng)
    return out, _NATIVE[target]


def _source_colour(frame: Any, height: int) -> tuple[bool, str, int]:
    """(full range?, chroma matrix, AVColorSpace tag) of the planes ``_working_format`` gives."""
    name = frame.format.name
    if _is_rgb_or_gray(name):
        return False, "bt601", 6  # swscale's default conversion: limited range, BT.601
    rng = int(frame.color_range or 0)
    full = rng == RANGE_FULL or (rng != RANGE_LIMITED and name.startswith("yuvj"))
    cs = int(frame.colorspace or 0)
    matrix = _MATRIX_OF_COLORSPACE.get(cs) or ("bt709" if height >= 720 else "bt601")
    return full, matrix, cs


def _chroma_energy(frame: Any) -> float:
    f, bits = _working_format(frame)
    scale = 2 ** (bits - 8)
    u = _plane(f, 1).astype(np.float32) / scale - 128
    v = _plane(f, 2).astype(np.float32) / scale - 128
    return float(np.mean(np.sqrt(u * u + v * v)))


def probe_video(src: str | os.PathLike[str], max_pixels: int = 178_956_970) -> VideoInfo:
    """Read a video's geometry, colour description and whether it already has colour.

    Decodes at most ``PROBE_FRAMES`` frames. Raises ``InputError`` for anything that is not
    a decodable video."""
    import av

    src = Path(src)
    with _open_input(src) as inp:
        if not inp.streams.video:
            raise InputError(f"no video stream in {src.name}")
        vin = inp.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        if w <= 0 or h <= 0:
            raise InputError(f"video stream has no frame size: {src.name}")
        if w * h > max_pixels:
            raise InputError(f"frame too large: {w}x{h} in {src.name} (limit {max_pixels / 1e6:.0f} MP)")
        tb = _frac(vin.time_base) or Fraction(1, 90000)
        rate = _frac(vin.average_rate) or _frac(vin.guessed_rate) or Fraction(25, 1)
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
                    energies.append(_chroma_energy(fr))
                if len(energies) >= PROBE_FRAMES:
                    break
        except (av.error.FFmpegError, OSError) as e:
            if first is None:
                raise InputError(f"cannot decode {src.name}: {e}") from None
        if first is None:
            raise InputError(f"no decodable video frames in {src.name}")
        _, bits = _working_format(first)
        full, matrix, cs = _source_colour(first, h)
        tags = {"color_range": RANGE_FULL if full else RANGE_LIMITED, "colorspace": cs,
                "color_primaries": int(getattr(first, "color_primaries", 0) or 0),
                "color_trc": int(getattr(first, "color_trc", 0) or 0)}
        rotation = int(round(getattr(first, "rotation", 0) or 0)) % 360
        return VideoInfo(w, h, frames, duration, rate, tb, bits, full, matrix, tags, rotation,
                         float(np.mean(energies)), len(inp.streams.audio), len(inp.streams.subtitles))


class _Pipe:
    """Shared stop flag + first error for the three pipeline threads."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
        self.stop.set()

    def put(self, q: queue.Queue, item: Any) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self, q: queue.Queue) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def run(self, fn: Callable[[], None]) -> threading.Thread:
        def body() -> None:
            try:
                fn()
            except _Stopped:
                pass
            except BaseException as e:  # handed to the main thread, which raises it
                self.fail(e)

        t = threading.Thread(target=body, daemon=True)
        t.start()
        return t


class _Stopped(Exception):
    pass


@dataclass
class _Frame:
    pts: int
    y: np.ndarray  # original luma plane (uint8/uint16), padded to even size
    small: torch.Tensor  # 1 x 1 x S x S network input in [-1, 1]
    u: np.ndarray | None = None
    v: np.ndarray | None = None


class _Geometry:
    """Plane sizes, value ranges and quantisation of one output stream."""

    def __init__(self, info: VideoInfo, out_bits: int) -> None:
        self.w, self.h = info.width, info.height
        self.w2, self.h2 = self.w + self.w % 2, self.h + self.h % 2
        self.in_bits, self.bits = info.bits, out_bits
        self.full = info.full_range
        self.matrix = info.matrix
        s = 2 ** (self.in_bits - 8)
        self.y_lo, self.y_span = (0.0, 2 ** self.in_bits - 1.0) if self.full else (16.0 * s, 219.0 * s)
        so = 2 ** (out_bits - 8)
        self.c_mid = 128.0 * so
        self.c_span = (2 ** out_bits - 1.0) if self.full else 224.0 * so
        self.dtype = np.uint16 if out_bits > 8 else np.uint8

    def luma(self, y_plane: np.ndarray) -> torch.Tensor:
        y = torch.from_numpy(y_plane.astype(np.float32))
        return ((y - self.y_lo) / self.y_span).clamp(0, 1)[None, None]

    def out_luma(self, y_plane: np.ndarray) -> np.ndarray:
        if self.in_bits == self.bits:
            return y_plane
        shift = self.in_bits - self.bits
        if shift > 0:
            return ((y_plane.astype(np.uint32) + (1 << (shift - 1))) >> shift).astype(self.dtype)
        return (y_plane.astype(np.uint32) << -shift).astype(self.dtype)

    def quantise(self, c: torch.Tensor, prev: torch.Tensor | None = None, dead_band: float = 0.0) -> torch.Tensor:
        """Chroma in [-0.5, 0.5] -> code values. With ``prev`` (last frame's codes) a value
        within ``dead_band`` of its previous code keeps it: slowly drifting smoothed chroma
        would otherwise toggle the last bit, which the encoder turns into visible flicker."""
        x = c * self.c_span + self.c_mid
        q = x.round()
        if prev is not None and dead_band > 0:
            q = torch.where((x - prev).abs() <= dead_band, prev, q)
        return q.clamp_(0, 2 ** self.bits - 1)


def _prepare(frame: Any, pts: int, geo: _Geometry, size: int) -> _Frame:
    f, _ = _working_format(frame)
    y = _plane(f, 0)
    if (geo.w2, geo.h2) != y.shape[::-1]:
        y = np.pad(y, ((0, geo.h2 - y.shape[0]), (0, geo.w2 - y.shape[1])), mode="edge")
    else:
        y = y.copy()  # the decoder may reuse its buffers
    small = to_network(geo.luma(y)[..., :geo.h, :geo.w], size)
    return _Frame(pts, y, small)


class ChromaStage:
    """The inference step of the pipeline, reusable by the benchmark: batches of
    ``_Frame`` in display order -> the same frames with their U and V planes filled in."""

    def __init__(self, colorizer: Any | None, geo: _Geometry, temporal_strength: float) -> None:
        self.colorizer = colorizer
        self.geo = geo
        self.stab = ChromaStabilizer(temporal_strength)
        self.device = getattr(colorizer, "device", "cpu")
        self._neutral: np.ndarray | None = None
        self._prev_q: torch.Tensor | None = None

    def __call__(self, batch: list[_Frame]) -> list[_Frame]:
        if self.colorizer is None:  # codec-only mode for the benchmark: neutral chroma
            if self._neutral is None:
                self._neutral = np.full((self.geo.h2 // 2, self.geo.w2 // 2), self.geo.c_mid, self.geo.dtype)
            for fr in batch:
                fr.u = fr.v = self._neutral
            return batch
        small = torch.cat([fr.small for fr in batch])
        rgb, _ = self.colorizer.backend.infer(small.numpy())
        if not np.isfinite(rgb).all():
            raise ScganError("model produced NaN/Inf; the weights are broken")
        cbcr = chroma_from_prediction(torch.from_numpy(rgb).to(self.device), self.geo.matrix).float()
        cbcr = torch.cat([self.stab((fr.small.to(self.device) + 1) / 2, cbcr[i:i + 1]) for i, fr in enumerate(batch)])
        size = (self.geo.h2 // 2, self.geo.w2 // 2)
        # Full-resolution work frame by frame: at 4K a batch of float temporaries is ~1 GB.
        for i, fr in enumerate(batch):
            c = F.interpolate(cbcr[i:i + 1], size=size, mode="bilinear", align_corners=False)
            # luma at chroma resolution for the gamut limit (computed here, not queued: less memory)
            y_half = F.avg_pool2d(self.geo.luma(fr.y).to(self.device), 2)
            c = gamut_scale(y_half, c, self.geo.matrix)[0]
            if self.stab.stats.cut_at == self.stab.stats.frames - len(batch) + i + 1:
                self._prev_q = None  # first frame after a cut starts afresh
            q = self.geo.quantise(c, self._prev_q, DEAD_BAND if self.stab.strength > 0 else 0.0)
            self._prev_q = q
            qn = q.cpu().numpy().astype(self.geo.dtype)
            fr.u, fr.v = qn[0], qn[1]
        return batch


def _output_bits(codec: str, bits: int) -> tuple[str, int]:
    import av

    try:
        formats = {f.name for f in (av.codec.Codec(codec, "w").video_formats or [])}
    except Exception:
        raise UsageError(f"unknown video encoder --codec {codec!r} (try libx264, libx265, libvpx-vp9, libsvtav1)") from None
    if bits > 8 and "yuv420p10le" in formats:
        return "yuv420p10le", 10
    if "yuv420p" not in formats:
        raise UsageError(f"encoder {codec} cannot write 4:2:0 Y'CbCr")
    return "yuv420p", 8


def video_encoders() -> dict[str, bool]:
    """Software encoders this PyAV build has, each with whether it writes 10-bit 4:2:0."""
    import av

    found = {}
    for name in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1"):
        try:
            fmts = {f.name for f in (av.codec.Codec(name, "w").video_formats or [])}
        except Exception:
            continue
        found[name] = "yuv420p10le" in fmts
    return found


def _encoder_options(codec: str, cfg: InferConfig) -> dict[str, str]:
    if codec in ("libx264", "libx265"):
        return {"crf": str(cfg.crf), "preset": cfg.preset}
    if codec.startswith("libvpx"):
        return {"crf": str(cfg.crf), "b": "0"}
    if codec in ("libsvtav1", "libaom-av1"):
        return {"crf": str(cfg.crf)}
    return {}


def _is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def colorize_video(src: str | os.PathLike[str], dst: str | os.PathLike[str], colorizer: Any | None,
                   cfg: InferConfig | None = None, *, info: VideoInfo | None = None,
                   on_frame: Callable[[int, int], None] | None = None) -> VideoReport:
    """Colorize ``src`` into ``dst`` (atomic). ``colorizer`` is a ``pipeline.Colorizer``;
    ``None`` writes neutral chroma (the codec-only benchmark). Colour footage is skipped
    (``report.skipped_colour``) unless ``cfg.force``."""
    import av

    cfg = cfg or InferConfig()
    src, dst = Path(src), Path(dst)
    info = info or probe_video(src, cfg.max_pixels)
    rep = VideoReport(output=str(dst))
    if info.is_colour and not cfg.force and colorizer is not None:
        rep.skipped_colour = True
        rep.warnings.append(f"already in colour (chroma energy {info.chroma_energy:.1f}); use --force to recolorize")
        return rep
    pix_fmt, out_bits = _output_bits(cfg.codec, info.bits)
    if out_bits < info.bits:
        rep.warnings.append(f"{info.bits}-bit source written as 8-bit ({cfg.codec} has no 10-bit 4:2:0)")
    geo = _Geometry(info, out_bits)
    if (geo.w2, geo.h2) != (geo.w, geo.h):
        rep.padded = True
        rep.warnings.append(f"{geo.w}x{geo.h} padded to {geo.w2}x{geo.h2} for 4:2:0 (edge replicated)")
    stage = ChromaStage(colorizer, geo, cfg.temporal_strength)
    pipe = _Pipe()
    frames_q: queue.Queue = queue.Queue(maxsize=cfg.queue_frames)
    coloured_q: queue.Queue = queue.Queue(maxsize=cfg.queue_frames)
    side_q: queue.Queue = queue.Queue()  # audio/subtitle packets; bounded by the frame queues' backpressure
    t0 = time.perf_counter()

    with _open_input(src) as inp, atomic_path(dst) as tmp:
        vin = inp.streams.video[0]
        try:
            out = av.open(str(tmp), "w")
        except (av.error.FFmpegError, OSError) as e:
            raise ResourceError(f"cannot write {dst}: {e}") from None
        try:
            vout, copy_map, reencode, keep = _setup_output(out, inp, info, geo, pix_fmt, cfg, rep)

            def decode() -> None:
                bad_run, last_pts, step = 0, None, max(1, round(1 / (info.rate * info.time_base)))
                for packet in inp.demux(vin, *keep):
                    if pipe.stop.is_set():
                        return
                    if packet.stream.index != vin.index:
                        if packet.dts is None:
                            continue  # demuxer flush packet
                        if packet.stream.index in reencode:
                            for af in packet.decode():
                                side_q.put(("frame", packet.stream.index, af))
                        else:
                            side_q.put(("packet", packet.stream.index, packet))
                        continue
                    try:
                        decoded = packet.decode()
                    except av.error.InvalidDataError:
                        rep.bad_packets += 1
                        bad_run += 1
                        if bad_run > MAX_CONSECUTIVE_BAD_PACKETS or (
                                rep.frames_in > 50 and rep.bad_packets > MAX_BAD_PACKET_SHARE * rep.frames_in):
                            raise InputError(f"stream too corrupt to continue at frame {rep.frames_in} of {src.name} "
                                             f"({rep.bad_packets} bad packets)") from None
                        continue
                    bad_run = 0
                    for fr in decoded:
                        pts = fr.pts if fr.pts is not None else (0 if last_pts is None else last_pts + step)
                        if last_pts is not None and pts <= last_pts:
                            pts = last_pts + 1  # encoders need strictly increasing pts
                        last_pts = pts
                        pipe.put(frames_q, _prepare(fr, pts, geo, colorizer.size if colorizer else 256))
                        rep.frames_in += 1
                for s in keep:  # flush the decoders of re-encoded audio
                    if s.index in reencode:
                        for af in s.decode(None):
                            side_q.put(("frame", s.index, af))
                pipe.put(frames_q, _END)

            def infer() -> None:
                batch: list[_Frame] = []
                while True:
                    item = pipe.get(frames_q)
                    if item is not _END:
                        batch.append(item)
                    if batch and (item is _END or len(batch) >= cfg.batch_size):
                        for fr in stage(batch):
                            pipe.put(coloured_q, fr)
                        batch = []
                    if item is _END:
                        pipe.put(coloured_q, _END)
                        return

            def mux_side() -> None:
                while True:
                    try:
                        kind, idx, obj = side_q.get_nowait()
                    except queue.Empty:
                        return
                    if kind == "packet":
                        obj.stream = copy_map[idx]
                        out.mux(obj)
                    else:
                        out.mux(reencode[idx].encode(obj))

            def encode() -> None:
                vtb = info.time_base
                while True:
                    item = pipe.get(coloured_q)
                    if item is _END:
                        break
                    y, u, v = geo.out_luma(item.y), item.u, item.v
                    if cfg.compare:
                        neutral = np.full_like(u, int(geo.c_mid))
                        y, u, v = np.hstack([y, y]), np.hstack([neutral, u]), np.hstack([neutral, v])
                    frame = av.VideoFrame(y.shape[1], y.shape[0], pix_fmt)
                    for plane, arr in zip(frame.planes, (y, u, v)):
                        _fill(plane, arr)
                    frame.pts, frame.time_base = item.pts, vtb
                    frame.color_range = info.tags["color_range"]
                    mux_side()
                    out.mux(vout.encode(frame))
                    rep.frames_out += 1
                    if on_frame:
                        on_frame(rep.frames_out, info.frames)
                out.mux(vout.encode(None))
                for idx, s in reencode.items():
                    mux_side()
                    out.mux(s.encode(None))
                mux_side()

            threads = [pipe.run(decode), pipe.run(infer), pipe.run(encode)]
            try:
                while any(t.is_alive() for t in threads):
                    for t in threads:
                        t.join(timeout=0.1)
            except KeyboardInterrupt:
                pipe.stop.set()
                for t in threads:
                    t.join(timeout=10)
                raise
            if pipe.error is not None:
                raise pipe.error
            if rep.frames_out == 0:
                raise InputError(f"no decodable video frames in {src.name}")
        except BaseException as e:
            try:
                out.close()
            except Exception:
                pass
            if _is_disk_full(e):
                raise ResourceError(f"disk full writing {dst}") from None
            if isinstance(e, av.error.FFmpegError) and not isinstance(e, ScganError):
                raise InputError(f"cannot process {src.name}: {e}") from None
            raise
        try:
            out.close()
        except OSError as e:
            if _is_disk_full(e):
                raise ResourceError(f"disk full writing {dst}") from None
            raise ResourceError(f"cannot finish writing {dst}: {e}") from None
        _verify(tmp, rep.frames_out, dst)
    rep.seconds = time.perf_counter() - t0
    stats = stage.stab.stats
    rep.scene_cuts = stats.cuts
    if rep.bad_packets:
        rep.warnings.append(f"{rep.bad_packets} corrupt packets skipped")
    if info.frames and rep.frames_out < info.frames - 1:
        rep.warnings.append(f"only {rep.frames_out} of {info.frames} frames could be decoded (input truncated or "
                            f"damaged); the output holds those")
    elif info.frames and rep.frames_out > info.frames + 1:
        rep.warnings.append(f"{rep.frames_out} frames written, the container said {info.frames}")
    return rep


def _fill(plane: Any, arr: np.ndarray) -> None:
    """Copy an ``h x w`` array into a frame plane whose rows may be padded."""
    line = plane.line_size // arr.itemsize
    if arr.shape[1] == line:
        plane.update(np.ascontiguousarray(arr))
        return
    buf = np.frombuffer(plane, dtype=arr.dtype).reshape(-1, line)
    buf[:arr.shape[0], :arr.shape[1]] = arr


def _setup_output(out: Any, inp: Any, info: VideoInfo, geo: _Geometry, pix_fmt: str, cfg: InferConfig,
                  rep: VideoReport) -> tuple[Any, dict[int, Any], dict[int, Any], list[Any]]:
    """Create the video stream and the audio/subtitle streams (copied, or AAC when the
    container cannot hold the codec)."""
    vin = inp.streams.video[0]
    vout = out.add_stream(cfg.codec, rate=info.rate)
    vout.width = geo.w2 * (2 if cfg.compare else 1)
    vout.height = geo.h2
    vout.pix_fmt = pix_fmt
    # Encoder and stream share the input's time base so VFR timestamps survive unrounded.
    vout.time_base = info.time_base
    vout.codec_context.time_base = info.time_base
    cc = vout.codec_context
    cc.color_range = info.tags["color_range"]
    # Chroma is written in ``info.matrix``; say so even when the source left it unspecified.
    cc.colorspace = info.tags["colorspace"] or {"bt601": 6, "bt709": 1, "bt2020": 9}[info.matrix]
    for k in ("color_primaries", "color_trc"):
        if info.tags[k]:
            setattr(cc, k, info.tags[k])
    sar = _frac(getattr(vin.codec_context, "sample_aspect_ratio", None))
    if sar and sar != 1:
        cc.sample_aspect_ratio = sar
    vout.options = _encoder_options(cfg.codec, cfg)
    if info.rotation:
        if hasattr(vout, "set_display_rotation"):
            vout.set_display_rotation(info.rotation)
        else:
            rep.warnings.append(f"rotation {info.rotation} not carried over (PyAV too old)")
    supported = getattr(out, "supported_codecs", None)
    copy_map: dict[int, Any] = {}
    reencode: dict[int, Any] = {}
    keep: list[Any] = []
    for s in list(inp.streams.audio) + list(inp.streams.subtitles):
        name = s.codec_context.name
        if supported is None or name in supported:
            try:
                copy_map[s.index] = out.add_stream_from_template(s)
                keep.append(s)
                continue
            except Exception:
                pass
        if s.type == "audio":
            a = out.add_stream("aac", rate=s.codec_context.sample_rate or 48000)
            # AAC needs a named channel layout; sources may only say "N channels".
            n = len(s.codec_context.layout.channels) if s.codec_context.layout is not None else 2
            a.layout = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}.get(n, "stereo")
            reencode[s.index] = a
            keep.append(s)
            rep.warnings.append(f"audio stream {s.index} ({name}) re-encoded to AAC: {Path(out.name).suffix} cannot hold {name}")
        else:
            rep.warnings.append(f"subtitle stream {s.index} ({name}) dropped: the output container cannot hold it")
    rep.audio_streams = len([s for s in keep if s.type == "audio"])
    return vout, copy_map, reencode, keep


def _verify(path: Path, frames: int, dst: Path) -> None:
    """Count the written video packets back, so a silently short file is never renamed in."""
    import av

    try:
        with av.open(str(path)) as c:
            n = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except (av.error.FFmpegError, OSError) as e:
        raise ResourceError(f"output {dst} could not be read back: {e}") from None
    if n != frames:
        raise ResourceError(f"output {dst} is incomplete ({n} of {frames} frames written)")


def preview_video(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], colorizer: Any, n: int,
                  cfg: InferConfig | None = None) -> list[Path]:
    """Write ``n`` evenly spaced colorized frames of ``src`` as PNG (seeking, not decoding
    the whole file). Returns the written paths."""
    import av

    from .images import LoadedImage, save_image

    cfg = cfg or InferConfig()
    src = Path(src)
    info = probe_video(src, cfg.max_pixels)
    written: list[Path] = []
    with _open_input(src) as inp:
        vin = inp.streams.video[0]
        start = float(vin.start_time * info.time_base) if vin.start_time else 0.0
        span = info.duration_s or (info.frames / float(info.rate) if info.frames else 0.0)
        for k in range(n):
            t = start + span * (k + 0.5) / n
            frame = None
            try:
                inp.seek(int(t / info.time_base), stream=vin, backward=True, any_frame=False)
                for fr in inp.decode(vin):
                    frame = fr
                    if fr.pts is not None and float(fr.pts * info.time_base) >= t - 1e-6:
                        break
            except (av.error.FFmpegError, OSError):
                pass
            if frame is None:
                continue
            rgb = frame.to_ndarray(format="rgb24").astype(np.float32) / 255
            gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            out_rgb, _ = colorizer.colorize([LoadedImage(src, gray, None, 8, "video", "", False)])[0]
            dst = Path(out_dir) / f"{src.stem}_preview_{k + 1:02d}.png"
            save_image(dst, out_rgb)
            written.append(dst)
    if not written:
        raise InputError(f"no frames could be read from {src.name}")
    return written
