"""Photo colorization pipeline: plan outputs -> load -> batch through a backend -> merge
chroma with full-resolution luminance -> write atomically. Returns a ``Report``; never
prints (the CLI renders progress from the callback)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .backends import Backend
from .color import chroma_from_prediction, merge_luminance, to_network
from .errors import InputError, ResourceError, ScganError, UsageError
from .images import LoadedImage, is_supported, load_image, output_suffix, save_image
from .video import colorize_video, is_video, video_output_suffix


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
            "outputs": self.done, "video_frames": self.frames, "warnings": self.warnings,
        }


def plan_jobs(inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> list[Job]:
    """Expand files and directories (recursively) into jobs whose outputs mirror the input
    tree under ``out_dir``. Raises ``InputError`` for a missing input, ``UsageError`` when an
    output would overwrite an input."""
    out = Path(out_dir)
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
            if not files:
                raise InputError(f"no supported images or videos under {p}")
            base = p
            # Never descend into our own output folder when it sits inside the input tree.
            files = [f for f in files if not _is_within(f, out)]
            for f in files:
                rel = f.relative_to(base)
                jobs.append(Job(f, ((out / p.name / rel) if len(inputs) > 1 else (out / rel)).with_suffix(_suffix(f))))
        else:
            jobs.append(Job(p, (out / p.name).with_suffix(_suffix(p))))
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


def preflight_output_dir(out_dir: str | os.PathLike[str]) -> None:
    """Fail before any model work when the output folder cannot be created or written."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResourceError(f"cannot create output folder {out}: {e.strerror or e}") from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise ResourceError(f"output folder is not writable: {out}")


class Colorizer:
    """Runs the gray -> chroma contract for batches of loaded images on one backend."""

    def __init__(self, backend: Backend, size: int = 256, device: str = "cpu") -> None:
        self.backend = backend
        self.size = size
        # Full-resolution merge runs wherever the backend's outputs can live cheaply.
        self.device = device

    def colorize(self, images: Sequence[LoadedImage]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Return, per image, ``H x W x 3`` RGB in [0, 1] and optional ``H x W`` saliency."""
        if not images:
            return []
        small = torch.cat([to_network(torch.from_numpy(im.luma)[None, None], self.size) for im in images])
        rgb_pred, sal = self.backend.infer(small.numpy())
        if not np.isfinite(rgb_pred).all():
            raise ScganError("model produced NaN/Inf; the weights are broken")
        cbcr = chroma_from_prediction(torch.from_numpy(rgb_pred).to(self.device))
        results = []
        for i, im in enumerate(images):
            y = torch.from_numpy(im.luma).to(self.device)[None, None]
            rgb = merge_luminance(y, cbcr[i:i + 1])[0].permute(1, 2, 0).cpu().numpy()
            s = None
            if sal is not None:
                st = torch.from_numpy(sal[i:i + 1]).to(self.device)
                s = F.interpolate(st, size=im.luma.shape, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
            results.append((rgb, s))
        return results


def colorize_files(jobs: Sequence[Job], colorizer: Colorizer, *, batch_size: int = 4, overwrite: bool = False,
                   skip_color: bool = False, save_saliency: bool = False, max_pixels: int = 178_956_970,
                   on_progress: Callable[[int, int], None] | None = None,
                   on_frame: Callable[[int, int], None] | None = None) -> Report:
    """Colorize every job; bad files are recorded in the report and the run continues."""
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
        outs = colorizer.colorize([im for _, im in pending])
        for (job, im), (rgb, sal) in zip(pending, outs):
            try:
                save_image(job.dst, rgb, im.alpha, bits=im.bits)
                if save_saliency and sal is not None:
                    save_image(job.dst.with_name(job.dst.stem + "_saliency.png"), np.repeat(sal[..., None], 3, 2))
                rep.done.append(str(job.dst))
            except ResourceError:
                raise  # disk full / unwritable output: stop the batch
            except (ScganError, OSError) as e:
                rep.failed.append((str(job.src), str(e)))
        tick(len(pending))
        pending.clear()

    for job in jobs:
        if job.dst.exists() and not overwrite:
            rep.skipped_existing.append(str(job.src))
            tick()
            continue
        if is_video(job.src):
            flush()  # keep photo batches and videos from interleaving their outputs
            try:
                v = colorize_video(job.src, job.dst, colorizer.colorize, batch_size=batch_size, max_pixels=max_pixels,
                                   on_frame=on_frame)
                rep.done.append(str(job.dst))
                rep.frames += v.frames_out
                rep.warnings += [f"{job.src.name}: {w}" for w in v.warnings]
            except InputError as e:
                rep.failed.append((str(job.src), str(e)))
            tick()
            continue
        try:
            im = load_image(job.src, max_pixels=max_pixels)
        except InputError as e:
            rep.failed.append((str(job.src), str(e)))
            tick()
            continue
        if skip_color and im.is_color:
            rep.skipped_color.append(str(job.src))
            tick()
            continue
        pending.append((job, im))
        if len(pending) >= batch_size:
            flush()
    flush()
    rep.seconds = time.perf_counter() - t0
    return rep


def iter_images(folder: str | os.PathLike[str]) -> Iterable[Path]:
    return sorted(f for f in Path(folder).rglob("*") if f.is_file() and is_supported(f))
