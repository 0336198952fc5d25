"""Photo colorization pipeline: plan outputs -> load -> batch through a backend -> merge
chroma with full-resolution luminance -> write atomically. Returns a ``Report``; never
prints (the CLI renders progress from the callback)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .colorizer import Colorizer
from .encoding import VIDEO_OUTPUT_SUFFIXES, video_output_suffix
from .errors import InputError, ResourceError, ScganError, UsageError
from .images import LoadedImage, is_supported, load_image, output_suffix, save_image
from .reading import is_video
from .settings import InferConfig
from .video import colorize_video, preview_video


@dataclass
class Job:
    src: Path
    dst: Path


@dataclass
class Report:
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    skipped_color: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    frames: int = 0
    video_seconds: float = 0.0
    seconds: float = 0.0
    backend: str = ""

    @property
    def images_per_s(self) -> float:
        return len(self.done) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total, "done": len(self.done), "skipped_existing": len(self.skipped_existing),
            "skipped_color": len(self.skipped_color), "failed": [{"path": p, "error": e} for p, e in self.failed],
            "seconds": round(self.seconds, 3), "images_per_s": round(self.images_per_s, 3), "backend": self.backend,
            "outputs": self.done, "video_frames": self.frames,
            "video_fps": round(self.frames / self.video_seconds, 3) if self.video_seconds else None,
            "warnings": self.warnings,
        }


def plan_jobs(inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str] | None = None, *,
              tag: str = "_colorized", video_tag: str | None = None, preview: bool = False) -> list[Job]:
    """Expand files and folders (recursively) into jobs.

    ``output`` None: a file's result goes beside it as ``NAME{tag}.EXT``, a folder's into a
    sibling ``FOLDER{tag}/`` mirroring its tree. ``output`` with a file suffix and a single
    file input: that exact path. Otherwise ``output`` is a folder mirroring the inputs.
    ``video_tag`` (e.g. ``_compare``) is appended to video names in folder outputs.
    ``preview``: a video's job writes into a folder (``output``, else ``NAME_preview/``).
    Raises ``InputError`` for a missing input, ``UsageError`` when an output would
    overwrite an input or a file output is given for several inputs."""
    out = Path(output) if output is not None else None
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    as_file = out is not None and single_file and bool(out.suffix) and not out.is_dir() and not preview
    if out is not None and out.suffix and not out.is_dir() and not single_file and not preview:
        raise UsageError(f"-o {out} looks like a file, but the inputs are several files or a folder; "
                         f"give a folder name")
    jobs: list[Job] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"not found: {p}")
        if p.is_dir():
            try:
                files = sorted(f for f in p.rglob("*") if f.is_file() and (is_supported(f) or is_video(f)))
            except OSError as e:
                raise InputError(f"cannot read folder {p}: {e.strerror or e}") from None
            root = out if out is not None else p.with_name(p.name + tag)
            # Never descend into our own output folder when it sits inside the input tree.
            files = [f for f in files if not _is_within(f, root)]
            if not files:
                raise InputError(f"no supported images or videos under {p}")
            for f in files:
                rel = f.relative_to(p)
                if video_tag and is_video(f):
                    rel = rel.with_name(rel.stem + video_tag + rel.suffix)
                dst = (root / p.name / rel) if (out is not None and len(inputs) > 1) else (root / rel)
                jobs.append(Job(f, dst.with_suffix(_suffix(f))))
        elif as_file:
            assert out is not None
            want = VIDEO_OUTPUT_SUFFIXES if is_video(p) else None
            if want is not None and out.suffix.lower() not in want:
                raise UsageError(f"video output must end in .mp4, .mkv, .mov or .m4v: {out}")
            if want is None and not is_supported(out):
                raise UsageError(f"unsupported image output type: {out}")
            jobs.append(Job(p, out))
        elif out is None:
            jobs.append(Job(p, p.with_name(p.stem + (video_tag if video_tag and is_video(p) else tag) + _suffix(p))))
        else:
            name = p.stem + (video_tag if video_tag and is_video(p) else "")
            jobs.append(Job(p, out / (name + _suffix(p))))
    if preview:
        jobs = [Job(j.src, (out or j.src.with_name(j.src.stem + "_preview")) if is_video(j.src) else j.dst)
                for j in jobs]
    for j in jobs:
        if j.dst.resolve() == j.src.resolve():
            raise UsageError(f"output would overwrite input: {j.src}")
    return jobs


def _suffix(path: Path) -> str:
    return video_output_suffix(path) if is_video(path) else output_suffix(path)


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def preflight_outputs(jobs: Sequence[Job]) -> None:
    """Fail before any model work when an output folder cannot be created or written."""
    for d in sorted({j.dst.parent for j in jobs}):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ResourceError(f"cannot create output folder {d}: {e.strerror or e}") from None
        if not d.is_dir() or not os.access(d, os.W_OK | os.X_OK):
            raise ResourceError(f"output folder is not writable: {d}")


def colorize_files(jobs: Sequence[Job], colorizer: Colorizer, cfg: InferConfig, *,
                   on_progress: Callable[[int, int], None] | None = None,
                   on_frame: Callable[[str, int, int], None] | None = None) -> Report:
    """Colorize every job; bad files are recorded in the report and the run continues.
    ``on_frame(name, done, total)`` reports video progress."""
    rep = Report(total=len(jobs), backend=getattr(colorizer.backend, "name", "?"))
    t0 = time.perf_counter()
    pending: list[tuple[Job, LoadedImage]] = []
    finished = 0

    def tick(n: int = 1) -> None:
        nonlocal finished
        finished += n
        if on_progress:
            on_progress(finished, len(jobs))

    def flush() -> None:
        if not pending:
            return
        outs = colorizer.colorize_batch([im for _, im in pending])
        for (job, im), (rgb, sal) in zip(pending, outs):
            try:
                save_image(job.dst, rgb, im.alpha, bits=im.bits)
                if cfg.save_saliency and sal is not None:
                    save_image(job.dst.with_name(job.dst.stem + "_saliency.png"), np.repeat(sal[..., None], 3, 2))
                rep.done.append(str(job.dst))
            except ResourceError:
                raise  # disk full / unwritable output: stop the batch
            except (ScganError, OSError) as e:
                rep.failed.append((str(job.src), str(e)))
        tick(len(pending))
        pending.clear()

    for job in jobs:
        if cfg.preview and not is_video(job.src):
            tick()  # preview mode only samples videos
            continue
        if job.dst.exists() and not cfg.overwrite and not cfg.preview:
            rep.skipped_existing.append(str(job.src))
            tick()
            continue
        if is_video(job.src):
            flush()  # keep photo batches and videos from interleaving their outputs
            try:
                if cfg.preview:
                    rep.done += [str(p) for p in preview_video(job.src, job.dst, colorizer, cfg.preview, cfg)]
                    tick()
                    continue
                v = colorize_video(job.src, job.dst, colorizer, cfg,
                                   on_frame=(lambda d, t, n=job.src.name: on_frame(n, d, t)) if on_frame else None)
                if v.skipped_colour:
                    rep.skipped_color.append(str(job.src))
                else:
                    rep.done.append(str(job.dst))
                    rep.frames += v.frames_out
                    rep.video_seconds += v.seconds
                rep.warnings += [f"{job.src.name}: {w}" for w in v.warnings]
            except InputError as e:
                rep.failed.append((str(job.src), str(e)))
            tick()
            continue
        try:
            im = load_image(job.src, max_pixels=cfg.max_pixels)
        except InputError as e:
            rep.failed.append((str(job.src), str(e)))
            tick()
            continue
        if cfg.skip_color and im.is_color:
            rep.skipped_color.append(str(job.src))
            tick()
            continue
        pending.append((job, im))
        if len(pending) >= cfg.batch_size:
            flush()
    flush()
    rep.seconds = time.perf_counter() - t0
    return rep
