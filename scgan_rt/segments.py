"""Long films in segments (the av1an habit): resumable, joined losslessly.

A film at least twice ``--segment-seconds`` long is cut into segments of about that length;
each boundary moves to the nearest hard cut within ``CUT_SEARCH`` of a segment's length
(the stabiliser's own cut test), so most seams fall where the picture changes anyway.
A segment decodes from the keyframe before its warm-up, feeds ``WARMUP_FRAMES`` frames
to the chroma stabiliser without encoding them (no visible seam), and is encoded by a
fresh encoder (it starts with an IDR frame) into ``.NAME.segments/segNNNN.EXT``; a
``segNNNN.done`` record (settings key, frames) marks it finished. The join remuxes the
segments' packets in order and copies the audio/subtitle streams once from the source.
A rerun skips finished segments; Ctrl-C loses at most the segment in progress.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import numpy as np

from .atomic import atomic_path, hidden_name, take_lock
from .colorizer import Colorizer
from .encoding import add_side_streams, choose_encoder, fill_plane, output_bits, setup_output, verify_output
from .errors import note_resumable, signalled
from .reading import VideoInfo, open_input, plane, probe_video, video_seconds, working_format
from .settings import InferConfig
from .temporal import is_scene_cut
from .video import Geometry, Span, VideoReport, colorize_video, prepare_frame

WARMUP_FRAMES = 8
CUT_SEARCH = 0.1  # of a segment's length, each side of an even boundary


def is_segmented(info: VideoInfo, cfg: InferConfig) -> bool:
    """Long enough for segments, and to be colorized at all (colour footage without
    ``--force`` goes the one-piece way, which skips it)."""
    return (cfg.segment_seconds > 0 and info.duration_s >= 2 * cfg.segment_seconds and not cfg.preview
            and not (info.is_colour and not cfg.force))


def long_enough(src: Path, cfg: InferConfig) -> bool:
    """From the container header alone (no decoding): could ``src`` go in segments?"""
    return cfg.segment_seconds > 0 and video_seconds(src) >= 2 * cfg.segment_seconds


def work_dir(dst: Path) -> Path:
    return dst.parent / hidden_name(dst, ".segments")


def plan_segments(src: Path, info: VideoInfo, cfg: InferConfig) -> list[tuple[int, int | None]]:
    """``[(start_pts, end_pts), ...]`` covering the film; the last end is None (to the end)."""
    seg = cfg.segment_seconds
    n = max(1, math.ceil(info.duration_s / seg - 1e-9))
    starts = [0]
    for k in range(1, n):
        b = _boundary(src, info, k * seg, CUT_SEARCH * seg, cfg.size)
        if b is not None and b > starts[-1]:
            starts.append(b)
    first = _first_pts(src)
    starts[0] = min(first, starts[1] if len(starts) > 1 else first)
    return [(a, starts[i + 1] if i + 1 < len(starts) else None) for i, a in enumerate(starts)]


def _first_pts(src: Path) -> int:
    with open_input(src) as inp:
        for fr in inp.decode(inp.streams.video[0]):
            return int(fr.pts or 0)
    return 0


def _boundary(src: Path, info: VideoInfo, t: float, search: float, size: int) -> int | None:
    """The pts of the first frame of a new shot nearest to ``t`` seconds within ``search``,
    else of the first frame at or after ``t``."""
    geo = Geometry(info, info.bits)
    tb = float(info.time_base)
    lo, hi = t - search, t + search
    cuts: list[int] = []
    at_t: int | None = None
    prev = None
    with open_input(src) as inp:
        vin = inp.streams.video[0]
        inp.seek(int(max(0.0, lo) / tb), stream=vin, backward=True, any_frame=False)
        for fr in inp.decode(vin):
            if fr.pts is None:
                continue
            ts = fr.pts * tb
            if ts > hi:
                break
            y = torch.from_numpy(prepare_frame(fr, int(fr.pts), geo).y)[None]
            gray = (geo.network_input(y, 64) + 1) / 2
            if ts >= lo and prev is not None and is_scene_cut(prev, gray):
                cuts.append(int(fr.pts))
            if at_t is None and ts >= t:
                at_t = int(fr.pts)
            prev = gray
    if cuts:
        return min(cuts, key=lambda p: abs(p * tb - t))
    return at_t


def colorize_film(src: Path, dst: Path, colorizer: Colorizer | None, cfg: InferConfig, info: VideoInfo, key: str,
                  on_frame: Callable[[int, int], None] | None = None,
                  owns: Callable[[int], bool] | None = None, join: bool = True,
                  on_note: Callable[[str], None] | None = None) -> VideoReport:
    """Colorize ``src`` into ``dst`` segment by segment, resuming finished segments.

    ``owns(i)`` says which segments this worker encodes (``--shard``: the others are other
    shards'); whoever finds every segment finished joins the film, under ``join.lock`` so
    that only one does (``join=False``: never, a Ray actor leaves that to the driver). A film
    still waiting for other workers' segments comes back with ``pending`` set and no output.
    ``on_frame(done, total)`` counts the whole film's frames (finished segments included);
    ``on_note`` hears what is resumed. Interrupted, it notes what is kept (``errors.resumable``)."""
    t0 = time.perf_counter()
    work = work_dir(dst)
    work.mkdir(parents=True, exist_ok=True)
    plan = cached_plan(work, src, info, cfg, key)
    step = max(1, round(1 / (info.rate * info.time_base)))
    rep = VideoReport(output=str(dst), segments=len(plan), video_streams_dropped=max(0, info.video_streams - 1))
    kept = [_finished(*_segment_files(work, i, dst.suffix), key) for i in range(len(plan))]
    if on_note is not None and any(k is not None for k in kept):
        on_note(f"resuming: {sum(k is not None for k in kept)} of {len(plan)} segments done ({dst.name})")
    try:
        _encode_segments(src, dst, colorizer, cfg, info, key, plan, kept, step, rep, on_frame, owns)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) or signalled() is not None:
            done = sum(_finished(*_segment_files(work, i, dst.suffix), key) is not None for i in range(len(plan)))
            note_resumable(f"{done} of {len(plan)} segments kept in {work}/; run the same command to resume")
        raise
    counts = [_finished(*_segment_files(work, i, dst.suffix), key) for i in range(len(plan))]
    if not join or None in counts or not _take_join_lock(work):
        rep.pending = True
        rep.warnings.append(f"{sum(c is not None for c in counts)} of {len(plan)} segments done; the worker that "
                            f"finishes the last one joins the film")
        rep.seconds = time.perf_counter() - t0
        return rep
    total = sum(c for c in counts if c is not None)
    rep.audio_streams, notes = join_segments([_segment_files(work, i, dst.suffix)[0] for i in range(len(plan))],
                                             src, dst, total)
    rep.warnings += [w for w in notes if w not in rep.warnings]
    rep.frames_in = rep.frames_out = total
    shutil.rmtree(work, ignore_errors=True)
    rep.seconds = time.perf_counter() - t0
    return rep


def _encode_segments(src: Path, dst: Path, colorizer: Colorizer | None, cfg: InferConfig, info: VideoInfo,
                     key: str, plan: list[tuple[int, int | None]], kept: list[int | None], step: int,
                     rep: VideoReport, on_frame: Callable[[int, int], None] | None,
                     owns: Callable[[int], bool] | None) -> None:
    """Encode the segments this worker owns that are not finished yet."""
    work = work_dir(dst)
    base = sum(k for k in kept if k is not None)  # frames finished so far, for film-wide progress
    total = info.frames
    for i, (a, b) in enumerate(plan):
        seg, record = _segment_files(work, i, dst.suffix)
        if kept[i] is not None or (owns is not None and not owns(i)):
            continue
        progress = (lambda d, t, b0=base: on_frame(b0 + d, total)) if on_frame else None
        part = colorize_video(src, seg, colorizer, cfg, info=info, span=Span(a, b, max(0, a - WARMUP_FRAMES * step)),
                              on_frame=progress)
        base += part.frames_out
        rep.frames_encoded += part.frames_out
        rep.scene_cuts += part.scene_cuts
        rep.warnings += [w for w in part.warnings if w not in rep.warnings]
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps({"settings": key, "frames": part.frames_out, "start": a, "end": b}))


def _segment_files(work: Path, i: int, suffix: str) -> tuple[Path, Path]:
    """Segment ``i``'s video and its finished-record."""
    return work / f"seg{i:04d}{suffix}", work / f"seg{i:04d}.done"


def _take_join_lock(work: Path) -> bool:
    """Exactly one worker joins a film: the one that creates the lock file. A lock left by
    a process of this host that no longer runs (a killed joiner) is taken over."""
    return take_lock(work / "join.lock") is None


def cached_plan(work: Path, src: Path, info: VideoInfo, cfg: InferConfig, key: str) -> list[tuple[int, int | None]]:
    """The plan is decided once per film and settings; reruns reuse it (segments stay valid)."""
    st = src.stat()
    ident = {"settings": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "segment_seconds": cfg.segment_seconds}
    path = work / "plan.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            if saved.get("ident") == ident:
                return [(int(a), None if b is None else int(b)) for a, b in saved["segments"]]
        except (ValueError, KeyError, TypeError):
            pass
    for stale in work.glob("seg*"):  # another film version or other settings: start afresh
        stale.unlink(missing_ok=True)
    plan = plan_segments(src, info, cfg)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"ident": ident, "segments": plan}))
    return plan


def _finished(seg: Path, record: Path, key: str) -> int | None:
    """Frames of a segment finished under these settings; None when it is not."""
    if not (record.is_file() and seg.is_file()):
        return None
    try:
        rec = json.loads(record.read_text())
    except ValueError:
        return None
    return int(rec["frames"]) if rec.get("settings") == key else None


def join_segments(parts: list[Path], src: Path, dst: Path, frames: int) -> tuple[int, list[str]]:
    """Remux the segments' video packets in order with the source's audio/subtitles into
    ``dst`` (atomic); returns the number of audio streams and the notes."""
    import av

    with open_input(src) as inp, atomic_path(dst) as tmp:
        with av.open(str(parts[0])) as first, av.open(str(tmp), "w") as out:
            vout = out.add_stream_from_template(first.streams.video[0])
            side = add_side_streams(out, inp)
            video = _video_packets(parts, vout)
            sides = _side_packets(inp, side)
            _interleave(out, video, sides)
            for s in side.reencoded.values():
                out.mux(s.encode(None))
            audio = side.audio_streams  # read while the source is open (its streams die with it)
        verify_output(tmp, frames, dst)
    return audio, side.warnings


def _video_packets(parts: list[Path], vout: Any) -> Iterator[tuple[float, Any]]:
    import av

    for part in parts:
        with av.open(str(part)) as c:
            v = c.streams.video[0]
            for p in c.demux(v):
                if p.dts is None:
                    continue
                p.stream = vout
                yield float(p.dts * v.time_base), p


def _side_packets(inp: Any, side: Any) -> Iterator[tuple[float, list[Any]]]:
    if not side.kept:
        return
    for p in inp.demux(*side.kept):
        if p.dts is None:
            continue
        t = float(p.dts * p.stream.time_base)
        idx = p.stream.index
        if idx in side.reencoded:
            yield t, [q for fr in p.decode() for q in side.reencoded[idx].encode(fr)]
        else:
            p.stream = side.copied[idx]
            yield t, [p]


def _interleave(out: Any, video: Iterator[tuple[float, Any]], sides: Iterator[tuple[float, list[Any]]]) -> None:
    """Mux both in time order (the muxer would otherwise buffer one stream whole)."""
    v, s = next(video, None), next(sides, None)
    while v is not None or s is not None:
        if s is None or (v is not None and v[0] <= s[0]):
            out.mux(v[1])
            v = next(video, None)
        else:
            out.mux(s[1])
            s = next(sides, None)


def compare_film(colour: Path, dst: Path, cfg: InferConfig) -> list[str]:
    """``--compare`` for a film: gray | colour side by side in ``dst`` (atomic), made from the
    finished colour output. Its luma is the source's, so one-piece, segmented and sharded
    films get the same picture without a second pass through the network. Returns notes."""
    import av

    info = probe_video(colour, cfg.max_pixels)
    codec, _ = choose_encoder(info.codec, cfg.codec)
    cfg = cfg.replace(codec=codec)
    pix_fmt, bits = output_bits(codec, info.bits)
    geo = Geometry(info, bits)
    frames = [0]
    with open_input(colour) as inp, atomic_path(dst) as tmp:
        with av.open(str(tmp), "w") as out:
            streams = setup_output(out, inp, info, 2 * geo.w2, geo.h2, pix_fmt, cfg)
            _interleave(out, _side_by_side_packets(colour, streams.video, geo, pix_fmt, frames),
                        _side_packets(inp, streams))
            for s in streams.reencoded.values():
                out.mux(s.encode(None))
        verify_output(tmp, frames[0], dst)
    return streams.warnings


def _side_by_side_packets(colour: Path, vout: Any, geo: Geometry, pix_fmt: str,
                          count: list[int]) -> Iterator[tuple[float, Any]]:
    """Encoded gray | colour frames; ``count[0]`` counts them."""
    import av

    tb = vout.time_base
    with open_input(colour) as c:
        v = c.streams.video[0]
        for fr in c.decode(v):
            f, _ = working_format(fr)
            y, u, w = (geo.out_luma(plane(f, i)) for i in range(3))
            mid = np.full_like(u, int(geo.c_mid))
            frame = av.VideoFrame(2 * y.shape[1], y.shape[0], pix_fmt)
            for p, a in zip(frame.planes, (np.hstack([y, y]), np.hstack([mid, u]), np.hstack([mid, w]))):
                fill_plane(p, a)
            frame.pts, frame.time_base, frame.color_range = fr.pts, v.time_base, fr.color_range
            count[0] += 1
            for p in vout.encode(frame):
                yield float(p.dts * tb) if p.dts is not None else 0.0, p
    for p in vout.encode(None):
        yield float(p.dts * tb) if p.dts is not None else 0.0, p
