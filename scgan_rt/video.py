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
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .color import gamut_scale, luma_of, to_network
from .colorizer import Colorizer
from .device import DeviceFlow, Pending
from .encoding import (RAW_ENCODER, RAW_SUFFIXES, WEBM_ENCODERS, choose_encoder, fill_plane, output_bits,
                       setup_output, verify_output)
from .errors import InputError, ResourceError, ScganError, UsageError, raise_if_signalled
from .images import LoadedImage, save_image
from .reading import (MAX_BAD_PACKET_SHARE, MAX_CONSECUTIVE_BAD_PACKETS, Deinterlacer, VideoInfo, open_input, plane,
                      probe_video, working_format)
from .settings import CPU_BATCH, InferConfig
from .temporal import ChromaStabilizer

# Full-resolution pixels upsampled and gamut-limited in one go: a frame at a time on the
# CPU (at 4K a batch of float temporaries is ~1 GB of RAM), whole batches on a GPU (fewer,
# larger kernels; 2**25 pixels is ~1 GB of float temporaries there).
FULLRES_CHUNK_PIXELS = {"cpu": 1, "cuda": 2 ** 25}
# Code values within which a smoothed chroma sample keeps last frame's code (see quantise).
DEAD_BAND = 0.75
_END = object()


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
    frames_encoded: int = 0  # by this run (a resumed film counts only what it redid)
    segments: int = 0  # a film done in segments
    pending: bool = False  # segments of it are still other workers' (no output yet)
    video_streams_dropped: int = 0  # video streams after the first (not kept)
    output: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0



class _Pipe:
    """Shared stop flag + first error for the three pipeline threads."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []

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

    def wait(self) -> None:
        """Join the threads in short slices so that signals reach the main thread."""
        while any(t.is_alive() for t in self.threads):
            for t in self.threads:
                t.join(timeout=0.1)
            raise_if_signalled()

    def join_all(self) -> None:
        """Wait for every started thread, through further signals (a SIGTERM after Ctrl-C)."""
        for t in self.threads:
            while t.ident is not None and t.is_alive():
                try:
                    t.join()
                except KeyboardInterrupt:
                    continue

    def run(self, fn: Callable[[], None]) -> threading.Thread:
        def body() -> None:
            try:
                fn()
            except _Stopped:
                pass
            except BaseException as e:  # handed to the main thread, which raises it
                self.fail(e)

        t = threading.Thread(target=body, daemon=True)
        self.threads.append(t)  # before start: an interrupt between the two still finds it
        t.start()
        return t


class _Stopped(Exception):
    pass


@dataclass
class Frame:
    pts: int
    y: np.ndarray  # original luma plane (uint8/uint16), padded to even size
    chroma: Pending | None = None  # 2 x h/2 x w/2 Cb/Cr codes of a batch, downloading
    index: int = 0  # this frame's place in ``chroma``
    encode: bool = True  # False: a warm-up frame before a segment (stabiliser only)

    def uv(self) -> tuple[np.ndarray, np.ndarray]:
        """The frame's Cb and Cr planes (waits for their download)."""
        assert self.chroma is not None, "frame has not been through the chroma stage"
        c = self.chroma.wait()[self.index].numpy()
        return c[0], c[1]


@dataclass(frozen=True)
class Span:
    """The part of a film a segment encodes: pts in [start, end), after warm-up frames
    from ``warm`` that only feed the stabiliser (so the seam does not show)."""

    start: int
    end: int | None
    warm: int


class Geometry:
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

    def luma(self, y: torch.Tensor) -> torch.Tensor:
        """Luma code values (``... x H x W``, any integer dtype) -> float luma in [0, 1]."""
        return ((y.float() - self.y_lo) / self.y_span).clamp(0, 1)

    def network_input(self, y: torch.Tensor, size: int) -> torch.Tensor:
        """Padded luma planes ``N x H2 x W2`` -> network input ``N x 1 x S x S`` in [-1, 1]."""
        return to_network(self.luma(y[:, None, :self.h, :self.w]), size)

    def out_luma(self, y_plane: np.ndarray) -> np.ndarray:
        if self.in_bits == self.bits:
            return y_plane
        shift = self.in_bits - self.bits
        if shift > 0:
            return ((y_plane.astype(np.uint32) + (1 << (shift - 1))) >> shift).astype(self.dtype)
        return (y_plane.astype(np.uint32) << -shift).astype(self.dtype)

    def quantise(self, c: torch.Tensor, prev: torch.Tensor | None = None, dead_band: float = 0.0,
                 restart: torch.Tensor | bool = False) -> torch.Tensor:
        """Chroma in [-0.5, 0.5] -> code values. With ``prev`` (last frame's codes) a value
        within ``dead_band`` of its previous code keeps it: slowly drifting smoothed chroma
        would otherwise toggle the last bit, which the encoder turns into visible flicker.
        ``restart`` (a scene cut, possibly still a tensor on the device) ignores ``prev``."""
        x = c * self.c_span + self.c_mid
        q = x.round()
        if prev is not None and dead_band > 0:
            q = torch.where(((x - prev).abs() <= dead_band) & ~torch.as_tensor(restart, device=q.device), prev, q)
        return q.clamp_(0, 2 ** self.bits - 1)

    @property
    def code_dtype(self) -> torch.dtype:
        return torch.uint16 if self.bits > 8 else torch.uint8


def prepare_frame(frame: Any, pts: int, geo: Geometry) -> Frame:
    """A decoded frame's luma plane, copied (the decoder reuses its buffers) and padded to
    even size."""
    f, _ = working_format(frame)
    y = plane(f, 0)
    if (geo.w2, geo.h2) != y.shape[::-1]:
        y = np.pad(y, ((0, geo.h2 - y.shape[0]), (0, geo.w2 - y.shape[1])), mode="edge")
    else:
        y = y.copy()
    return Frame(pts, y)


class ChromaStage:
    """The inference step of the pipeline, reusable by the benchmark: batches of ``Frame``
    in display order -> the same frames with their Cb/Cr planes on the way down.

    Only luma code values go up and chroma code values come down; the rest runs on the
    colorizer's device (see ``device.DeviceFlow``), with no read-back inside the loop."""

    def __init__(self, colorizer: Colorizer | None, geo: Geometry, temporal_strength: float) -> None:
        self.colorizer = colorizer
        self.geo = geo
        self.stab = ChromaStabilizer(temporal_strength)
        self.device = getattr(colorizer, "device", "cpu")
        self.flow = DeviceFlow(self.device)
        self._neutral: Pending | None = None
        self._prev_q: torch.Tensor | None = None
        self._checks: list[tuple[Pending, torch.Tensor]] = []
        self.fullres_pixels = FULLRES_CHUNK_PIXELS["cuda" if self.flow.cuda else "cpu"]

    def __call__(self, batch: list[Frame]) -> list[Frame]:
        if self.colorizer is None:  # codec-only mode for the benchmark: neutral chroma
            if self._neutral is None:
                size = (1, 2, self.geo.h2 // 2, self.geo.w2 // 2)
                self._neutral = Pending(torch.full(size, self.geo.c_mid, dtype=self.geo.code_dtype))
            for fr in batch:
                fr.chroma, fr.index = self._neutral, 0
            return batch
        y = self.flow.upload([fr.y for fr in batch])
        with self.flow.compute():
            codes, finite = self._chroma_codes(y)
        pending = self.flow.download(codes)
        self._checks.append((pending, finite))
        self._check_done()
        for i, fr in enumerate(batch):
            fr.chroma, fr.index = pending, i
        return batch

    def _chroma_codes(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``N x H2 x W2`` luma codes on the device -> ``N x 2 x H2/2 x W2/2`` chroma codes and
        whether the network's output was finite."""
        col, geo = self.colorizer, self.geo
        assert col is not None
        small = geo.network_input(y, col.size)
        rgb, _ = col.run(small)
        finite = torch.isfinite(rgb).all()
        cbcr = col.chroma(rgb, geo.matrix).float()
        size = (geo.h2 // 2, geo.w2 // 2)
        codes = torch.empty((len(y), 2, *size), dtype=geo.code_dtype, device=y.device)
        dead_band = DEAD_BAND if self.stab.strength > 0 else 0.0
        # Over time at network size (the stabiliser is a recursion) ...
        smooth, restarts = [], []
        for i in range(len(y)):
            smooth.append(self.stab((small[i:i + 1] + 1) / 2, cbcr[i:i + 1]))
            restarts.append(self.stab.restarted)
        # ... then upsampling and gamut for as many frames at once as FULLRES_CHUNK_PIXELS allows.
        step = max(1, self.fullres_pixels // (geo.w2 * geo.h2))
        for i0 in range(0, len(y), step):
            i1 = min(len(y), i0 + step)
            c = F.interpolate(torch.cat(smooth[i0:i1]), size=size, mode="bilinear", align_corners=False)
            y_half = F.avg_pool2d(geo.luma(y[i0:i1, None]), 2)  # luma at chroma resolution, for the gamut
            c = gamut_scale(y_half, c, geo.matrix)
            for i in range(i0, i1):  # the dead band depends on the previous frame's codes
                self._prev_q = codes[i] = geo.quantise(c[i - i0], self._prev_q, dead_band, restarts[i])
        return codes, finite

    def _check_done(self, wait: bool = False) -> None:
        """Raise for a batch whose prediction was not finite, once its download has landed
        (the flag is read then, not when the batch is issued: no sync in the loop)."""
        assert self.colorizer is not None
        while self._checks and (wait or len(self._checks) > 2):
            pending, finite = self._checks.pop(0)
            pending.wait()
            self.colorizer.check_finite(finite)

    def finish(self) -> None:
        """Wait for every batch issued and check it (end of a film, or of a benchmark)."""
        if self.colorizer is not None:
            self._check_done(wait=True)


def _is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def colorize_video(src: str | os.PathLike[str], dst: str | os.PathLike[str], colorizer: Colorizer | None,
                   cfg: InferConfig, *, info: VideoInfo | None = None,
                   on_frame: Callable[[int, int], None] | None = None, span: Span | None = None) -> VideoReport:
    """Colorize ``src`` into ``dst`` (atomic). ``colorizer`` None writes neutral chroma (the
    codec-only benchmark). Colour footage is skipped (``report.skipped_colour``) unless
    ``cfg.force``."""
    src, dst = Path(src), Path(dst)
    info = info or probe_video(src, cfg.max_pixels)
    if info.is_colour and not cfg.force and colorizer is not None:
        return VideoReport(output=str(dst), skipped_colour=True, warnings=[
            f"already in colour (chroma energy {info.chroma_energy:.1f}); use --force to recolorize"])
    return _VideoJob(src, dst, colorizer, cfg, info, on_frame, span).run()


class _VideoJob:
    """One film through decode -> infer -> encode threads joined by bounded queues."""

    def __init__(self, src: Path, dst: Path, colorizer: Colorizer | None, cfg: InferConfig, info: VideoInfo,
                 on_frame: Callable[[int, int], None] | None, span: Span | None = None) -> None:
        self.src, self.dst, self.info, self.on_frame, self.span = src, dst, info, on_frame, span
        self.rep = VideoReport(output=str(dst))
        codec, note = choose_encoder(info.codec, cfg.codec)
        if note:
            self.rep.warnings.append(note)
        if codec == RAW_ENCODER and dst.suffix.lower() not in RAW_SUFFIXES:
            raise UsageError(f"{dst.name}: uncompressed video goes in {'/'.join(RAW_SUFFIXES)}, not {dst.suffix}")
        if dst.suffix.lower() == ".webm" and codec not in WEBM_ENCODERS:
            raise UsageError(f"{dst.name}: WebM holds VP8/VP9/AV1, not {codec}; use .mkv/.mp4 or --codec libvpx-vp9")
        self.cfg = cfg = cfg.replace(codec=codec)
        self.pix_fmt, out_bits = output_bits(cfg.codec, info.bits)
        if out_bits < info.bits:
            self.rep.warnings.append(f"{info.bits}-bit source written as 8-bit ({cfg.codec} has no 10-bit 4:2:0)")
        self.geo = Geometry(info, out_bits)
        if (self.geo.w2, self.geo.h2) != (self.geo.w, self.geo.h):
            self.rep.padded = True
            self.rep.warnings.append(f"{self.geo.w}x{self.geo.h} padded to {self.geo.w2}x{self.geo.h2} for 4:2:0 "
                                     f"(edge replicated)")
        if info.video_streams > 1:
            self.rep.video_streams_dropped = info.video_streams - 1
            self.rep.warnings.append(f"{info.video_streams - 1} more video stream(s) not kept: only the first video "
                                     f"stream is colorized (audio and subtitles are kept)")
        self.stage = ChromaStage(colorizer, self.geo, cfg.temporal_strength)
        self.pipe = _Pipe()
        pixels = self.geo.w2 * self.geo.h2
        self.batch = colorizer.batch_for(pixels, self.rep.warnings) if colorizer is not None else CPU_BATCH
        self.frames_q: queue.Queue = queue.Queue(maxsize=cfg.queue_frames)
        # Room for a whole batch, so the next one is issued while this one is encoded.
        self.coloured_q: queue.Queue = queue.Queue(maxsize=max(cfg.queue_frames, self.batch))
        # Audio/subtitle items, bounded by the frame queues' backpressure.
        self.side_q: queue.Queue = queue.Queue()

    def run(self) -> VideoReport:
        import av

        t0 = time.perf_counter()
        with open_input(self.src) as inp, atomic_path(self.dst) as tmp:
            try:
                out = av.open(str(tmp), "w")
            except (av.error.FFmpegError, OSError) as e:
                raise ResourceError(f"cannot write {self.dst}: {e}") from None
            try:
                self.streams = setup_output(out, inp, self.info, self.geo.w2, self.geo.h2, self.pix_fmt, self.cfg,
                                            side_streams=self.span is None, segment=self.span is not None)
                self.rep.warnings += self.streams.warnings
                self.rep.audio_streams = self.streams.audio_streams
                self._run_threads(inp, out)
            except BaseException as e:
                _close_quietly(out)
                translated = self._translate(e)
                if translated is e:
                    raise
                raise translated from None
            self._close(out)
            verify_output(tmp, self.rep.frames_out, self.dst)
        self.rep.seconds = time.perf_counter() - t0
        self.rep.frames_encoded = self.rep.frames_out
        self._summarise()
        return self.rep

    def _translate(self, e: BaseException) -> BaseException:
        import av

        if _is_disk_full(e):
            return ResourceError(f"disk full writing {self.dst}")
        if isinstance(e, av.error.FFmpegError) and not isinstance(e, ScganError):
            return InputError(f"cannot process {self.src.name}: {e}")
        return e

    def _close(self, out: Any) -> None:
        try:
            out.close()
        except OSError as e:
            if _is_disk_full(e):
                raise ResourceError(f"disk full writing {self.dst}") from None
            raise ResourceError(f"cannot finish writing {self.dst}: {e}") from None

    def _run_threads(self, inp: Any, out: Any) -> None:
        try:
            for fn in (lambda: self._decode(inp), self._infer, lambda: self._encode(out)):
                self.pipe.run(fn)
            self.pipe.wait()
        except BaseException:
            # Stop in order: every thread leaves its loop at the flag, and the codecs are
            # closed only after all three have returned (never under a running decode or
            # encode, even when the signal lands while the threads are being started).
            self.pipe.stop.set()
            self.pipe.join_all()
            raise
        if self.pipe.error is not None:
            raise self.pipe.error
        if self.rep.frames_out == 0:
            raise InputError(f"no decodable video frames in {self.src.name}")

    def _decode(self, inp: Any) -> None:
        import av

        vin = inp.streams.video[0]
        bad_run = 0
        self._last_pts: int | None = None
        self._pts_step = max(1, round(1 / (self.info.rate * self.info.time_base)))  # for frames without pts
        span = self.span
        if span is not None and span.warm > (vin.start_time or 0):
            inp.seek(span.warm, stream=vin, backward=True, any_frame=False)  # the keyframe before it
        deint = Deinterlacer(vin) if self.cfg.deinterlace and self.info.interlaced else None
        for packet in inp.demux(vin, *self.streams.kept):
            if self.pipe.stop.is_set():
                return
            if packet.stream.index != vin.index:
                self._queue_side(packet)
                continue
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                bad_run += 1
                self._count_bad_packet(bad_run)
                continue
            bad_run = 0
            if deint is not None:
                decoded = [f for fr in decoded for f in deint.push(fr)]
            if not all(self._emit(fr) for fr in decoded):
                break
        else:
            if deint is not None:
                all(self._emit(fr) for fr in deint.push(None))
        for s in self.streams.kept:  # flush the decoders of re-encoded audio
            if s.index in self.streams.reencoded:
                for af in s.decode(None):
                    self.side_q.put(("frame", s.index, af))
        self.pipe.put(self.frames_q, _END)

    def _emit(self, fr: Any) -> bool:
        """Queue one decoded frame for inference; False once past the segment's end."""
        last, span = self._last_pts, self.span
        pts = fr.pts if fr.pts is not None else (0 if last is None else last + self._pts_step)
        if last is not None and pts <= last:
            pts = last + 1  # encoders need strictly increasing pts
        self._last_pts = pts
        if span is not None and pts < span.warm:
            return True  # between the keyframe sought to and the warm-up
        if span is not None and span.end is not None and pts >= span.end:
            return False
        frame = prepare_frame(fr, pts, self.geo)
        frame.encode = span is None or pts >= span.start
        self.pipe.put(self.frames_q, frame)
        self.rep.frames_in += frame.encode
        return True

    def _queue_side(self, packet: Any) -> None:
        if packet.dts is None:
            return  # demuxer flush packet
        if packet.stream.index in self.streams.reencoded:
            for af in packet.decode():
                self.side_q.put(("frame", packet.stream.index, af))
        else:
            self.side_q.put(("packet", packet.stream.index, packet))

    def _count_bad_packet(self, bad_run: int) -> None:
        rep = self.rep
        rep.bad_packets += 1
        if bad_run > MAX_CONSECUTIVE_BAD_PACKETS or (
                rep.frames_in > 50 and rep.bad_packets > MAX_BAD_PACKET_SHARE * rep.frames_in):
            raise InputError(f"stream too corrupt to continue at frame {rep.frames_in} of {self.src.name} "
                             f"({rep.bad_packets} bad packets)")

    def _infer(self) -> None:
        batch: list[Frame] = []
        while True:
            item = self.pipe.get(self.frames_q)
            if item is not _END:
                batch.append(item)
            if batch and (item is _END or len(batch) >= self.batch):
                for fr in self.stage(batch):
                    self.pipe.put(self.coloured_q, fr)
                batch = []
            if item is _END:
                self.stage.finish()
                self.pipe.put(self.coloured_q, _END)
                return

    def _mux_side(self, out: Any) -> None:
        while True:
            try:
                kind, idx, obj = self.side_q.get_nowait()
            except queue.Empty:
                return
            if kind == "packet":
                obj.stream = self.streams.copied[idx]
                out.mux(obj)
            else:
                out.mux(self.streams.reencoded[idx].encode(obj))

    def _encode(self, out: Any) -> None:
        import av

        vout, geo = self.streams.video, self.geo
        while True:
            item = self.pipe.get(self.coloured_q)
            if item is _END:
                break
            if not item.encode:
                continue
            u, v = item.uv()
            y = geo.out_luma(item.y)
            frame = av.VideoFrame(y.shape[1], y.shape[0], self.pix_fmt)
            for dst_plane, arr in zip(frame.planes, (y, u, v)):
                fill_plane(dst_plane, arr)
            frame.pts, frame.time_base = item.pts, self.info.time_base
            frame.color_range = self.info.tags["color_range"]
            self._mux_side(out)
            out.mux(vout.encode(frame))
            self.rep.frames_out += 1
            if self.on_frame:
                self.on_frame(self.rep.frames_out, self.info.frames)
        out.mux(vout.encode(None))
        for s in self.streams.reencoded.values():
            self._mux_side(out)
            out.mux(s.encode(None))
        self._mux_side(out)

    def _summarise(self) -> None:
        rep, info = self.rep, self.info
        rep.scene_cuts = self.stage.stab.stats.cuts
        if rep.bad_packets:
            rep.warnings.append(f"{rep.bad_packets} corrupt packets skipped")
        if info.interlaced and self.cfg.deinterlace:
            rep.warnings.append("interlaced source deinterlaced (bwdif) and written as progressive frames: its luma "
                                "is the deinterlaced picture")
        elif info.interlaced:
            rep.warnings.append("interlaced source written as progressive frames (fields kept as they are, not "
                                "deinterlaced); add --deinterlace (bwdif) for the cleanest colour")
        if not info.frames_counted or self.span is not None:
            return  # an estimate from duration x average rate says nothing about truncation (VFR)
        if info.frames and rep.frames_out < info.frames - 1:
            rep.warnings.append(f"only {rep.frames_out} of {info.frames} frames could be decoded (input truncated "
                                f"or damaged); the output holds those")
        elif info.frames and rep.frames_out > info.frames + 1:
            rep.warnings.append(f"{rep.frames_out} frames written, the container said {info.frames}")


def _close_quietly(out: Any) -> None:
    try:
        out.close()
    except Exception:
        pass


def preview_video(src: str | os.PathLike[str], out_dir: str | os.PathLike[str], colorizer: Colorizer, n: int,
                  cfg: InferConfig) -> list[Path]:
    """Write ``n`` evenly spaced colorized frames of ``src`` as PNG (seeking, not decoding
    the whole file). Returns the written paths."""
    src, out_dir = Path(src), Path(out_dir)
    info = probe_video(src, cfg.max_pixels)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with open_input(src) as inp:
        vin = inp.streams.video[0]
        start = float(vin.start_time * info.time_base) if vin.start_time else 0.0
        span = info.duration_s or (info.frames / float(info.rate) if info.frames else 0.0)
        for k in range(n):
            frame = _frame_at(inp, vin, start + span * (k + 0.5) / n, info)
            if frame is None:
                continue
            gray = luma_of(frame.to_ndarray(format="rgb24").astype(np.float32) / 255)
            out_rgb, _ = colorizer.colorize_batch([LoadedImage(src, gray, None, 8, "video", "", False)])[0]
            dst = out_dir / f"{src.stem}_preview_{k + 1:02d}.png"
            save_image(dst, out_rgb)
            written.append(dst)
    if not written:
        raise InputError(f"no frames could be read from {src.name}")
    return written


def _frame_at(inp: Any, vin: Any, t: float, info: VideoInfo) -> Any:
    """The first frame at or after ``t`` seconds (seeking to the keyframe before it)."""
    import av

    frame = None
    try:
        inp.seek(int(t / info.time_base), stream=vin, backward=True, any_frame=False)
        for fr in inp.decode(vin):
            frame = fr
            if fr.pts is not None and float(fr.pts * info.time_base) >= t - 1e-6:
                break
    except (av.error.FFmpegError, OSError):
        pass
    return frame
