"""Photo colorization pipeline: plan outputs -> load -> batch through a backend -> merge
chroma with full-resolution luminance -> write atomically. Returns a ``Report``; never
prints (the CLI renders progress from the callback)."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .atomic import PARTIAL_SUFFIX, holding_lock, name_fits, name_max, owner_alive, temp_prefix
from .colorizer import Colorizer
from .encoding import VIDEO_OUTPUT_SUFFIXES, video_output_suffix
from .errors import (EXIT_BAD_INPUT, EXIT_OK, EXIT_PARTIAL, EXIT_RESOURCE, InputError, ResourceError, ScganError,
                     UsageError, raise_if_signalled)
from .images import LoadedImage, file_kind, is_regular, is_supported, load_image, output_suffix, save_image
from .journal import Journal, Shard
from .reading import AUDIO_SUFFIXES, is_video, probe_video
from .segments import colorize_film, compare_film, is_segmented, long_enough
from .settings import InferConfig
from .video import colorize_video, preview_video
from .workers import Prefetcher, Writer, io_threads


@dataclass
class Job:
    src: Path
    dst: Path
    rel: str = ""  # the input's path relative to what the user named (journal and shard key)


@dataclass
class Report:
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    skipped_color: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_exit_codes: list[int] = field(default_factory=list)
    failed_before: list[tuple[str, str]] = field(default_factory=list)  # journalled failures not retried
    films_pending: list[str] = field(default_factory=list)  # films waiting for other shards' segments
    warnings: list[str] = field(default_factory=list)
    frames: int = 0
    video_seconds: float = 0.0
    seconds: float = 0.0
    backend: str = ""
    photo_batch: int = 0  # photos per network call (--batch-size, or what auto chose)
    compile_seconds: float = 0.0  # first calls of a compiled network (--compile)
    report: str = ""  # the HTML report's path, with --report
    skipped_unsupported: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) found in folders
    video_streams_dropped: int = 0  # video streams after a film's first (not kept), over all films

    def note_unsupported(self, skipped: Sequence[tuple[str, str]]) -> None:
        """Count the folder files that are neither images nor videos, by reason, in the log too."""
        self.skipped_unsupported = list(skipped)
        for reason, paths in _by_reason(skipped).items():
            self.warnings.append(f"{len(paths)} file(s) skipped, {reason}: {', '.join(Path(p).name for p in paths[:5])}"
                                 f"{' ...' if len(paths) > 5 else ''}")

    @property
    def exit_code(self) -> int:
        """0; 6 when some items failed; 5 (all out of memory) or 3 when nothing succeeded."""
        if not self.failed:
            return EXIT_PARTIAL if self.failed_before else EXIT_OK
        if self.done or self.skipped_existing or self.skipped_color:
            return EXIT_PARTIAL
        return EXIT_RESOURCE if set(self.failed_exit_codes) == {EXIT_RESOURCE} else EXIT_BAD_INPUT

    @property
    def images_per_s(self) -> float:
        return len(self.done) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total, "done": len(self.done), "skipped_existing": len(self.skipped_existing),
            "skipped_color": len(self.skipped_color), "failed": [{"path": p, "error": e} for p, e in self.failed],
            "seconds": round(self.seconds, 3), "images_per_s": round(self.images_per_s, 3), "backend": self.backend,
            "photo_batch": self.photo_batch, "compile_seconds": round(self.compile_seconds, 3), "outputs": self.done,
            "video_frames": self.frames,
            "video_fps": round(self.frames / self.video_seconds, 3) if self.video_seconds else None,
            "skipped_unsupported": _by_reason(self.skipped_unsupported),
            "failed_before": [{"path": p, "error": e} for p, e in self.failed_before],
            "films_pending": self.films_pending, "video_streams_dropped": self.video_streams_dropped,
            "warnings": self.warnings, **({"report": self.report} if self.report else {}),
        }


def shard_jobs(jobs: Sequence[Job], shard: Shard, cfg: InferConfig) -> list[Job]:
    """This shard's jobs: the inputs whose hash falls in it, and every film long enough for
    segments (its segments are shared out by their own hash)."""
    return [j for j in jobs if shard.owns(j.rel) or _shared_film(j, cfg)]


def _shared_film(job: Job, cfg: InferConfig) -> bool:
    """A film long enough for segments: every shard takes part in it."""
    return is_video(job.src) and long_enough(job.src, cfg)


def journal_root(inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str] | None,
                 tag: str = "_colorized") -> Path | None:
    """Where a run's journal lives: the ``-o`` folder, or ``FOLDER_colorized/`` for a single
    folder without ``-o``; None when outputs go to single files or beside their inputs."""
    if output is not None:
        out = Path(output)
        single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir()
        return None if (single_file and out.suffix and not names_folder(output)) else out
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        folder = Path(inputs[0])
        return folder.with_name(folder.name + tag)
    return None


def _by_reason(items: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path, reason in items:
        out.setdefault(reason, []).append(path)
    return out


COMPARE_TAG = "_compare"


def compare_path(dst: Path) -> Path:
    """Where ``--compare`` writes gray | colour: beside the colour output, ``NAME_compare.EXT``."""
    return dst.with_name(dst.stem + COMPARE_TAG + dst.suffix)


def plan_jobs(inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str] | None = None, *,
              tag: str = "_colorized", preview: bool = False,
              codec: str = InferConfig.codec, skipped: list[tuple[str, str]] | None = None) -> list[Job]:
    """Expand files and folders (recursively) into jobs, every output planned up front.

    ``output`` None: a file's result goes beside it as ``NAME{tag}.EXT``, a folder's into a
    sibling ``FOLDER{tag}/`` mirroring its tree. ``output`` with a file suffix and a single
    file input: that exact path. Otherwise ``output`` is a folder mirroring the inputs
    (explicit files from different folders keep those folders below it).
    ``preview``: a video's job writes into a folder (``output``, else ``NAME_preview/``).

    Two inputs never share an output: when stems clash (``pic.png`` + ``pic.gif``) the one
    whose extension changes keeps it in its name (``pic.gif.png``). Raises ``InputError``
    for a missing input, ``UsageError`` when an output would overwrite an input, a file
    output is given for several inputs, or two outputs still collide. Files inside folders
    that are not images or videos are appended to ``skipped`` as (path, reason)."""
    out = Path(output) if output is not None else None
    paths = list(dict.fromkeys(Path(r) for r in inputs))
    for p in paths:
        _check_named_input(p)
    single_file = len(paths) == 1 and not paths[0].is_dir()
    as_file = out is not None and single_file and bool(out.suffix) and not names_folder(output) and not preview
    if out is not None and out.suffix and not names_folder(output) and not single_file and not preview:
        raise UsageError(f"-o {out} looks like a file, but the inputs are several files or a folder; "
                         f"give a folder name (a trailing / says so)")
    files_root = _common_parent([p for p in paths if not p.is_dir()])
    jobs: list[Job] = []
    for p in paths:
        if p.is_dir():
            jobs += _folder_jobs(p, out, tag, codec, nested=out is not None and len(paths) > 1,
                                 skipped=skipped if skipped is not None else [])
        elif as_file:
            jobs.append(Job(p, _checked_file_output(p, out), p.name))  # type: ignore[arg-type]
        else:
            name = p.stem + ("" if out is not None else tag)
            where = p.parent if out is None else out / p.resolve().parent.relative_to(files_root)
            rel = p.resolve().relative_to(files_root) if out is not None else Path(p.name)
            jobs.append(Job(p, where / (name + _suffix(p, codec)), rel.as_posix()))
    jobs = _unique_outputs(_unique_inputs(jobs))
    if preview:
        jobs = [Job(j.src, (out or j.src.with_name(j.src.stem + "_preview")) if is_video(j.src) else j.dst, j.rel)
                for j in jobs]
    for j in jobs:
        refuse_input_as_output(j.src, j.dst)
    return jobs


def refuse_input_as_output(src: Path, dst: Path) -> None:
    """``UsageError`` when writing ``dst`` would replace ``src`` (any spelling: ``..``,
    symlinks, hard links), for the CLI and the Python API alike."""
    same = src.resolve() == dst.resolve()
    try:
        same = same or (dst.exists() and os.path.samefile(src, dst))
    except OSError:
        pass
    if same:
        raise UsageError(f"output would overwrite input: {src}; choose another output")


def names_folder(output: str | os.PathLike[str] | None) -> bool:
    """``-o`` names a folder: an existing one, or a name ending in ``/`` (``-o out.png/``)."""
    if output is None:
        return False
    text = os.fspath(output)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def _check_named_input(p: Path) -> None:
    """A named input must be a folder or a regular file (a FIFO or device is never opened)."""
    kind = file_kind(p)
    if kind == "missing":
        raise InputError(f"not found: {p}")
    if kind not in ("file", "a folder"):
        raise InputError(f"not a regular file: {p} is {kind}")


def _folder_jobs(folder: Path, out: Path | None, tag: str, codec: str,
                 nested: bool, skipped: list[tuple[str, str]]) -> list[Job]:
    root = out if out is not None else folder.with_name(folder.name + tag)
    if root.resolve() == folder.resolve():
        raise UsageError(f"the output folder is the input folder ({folder}); choose another -o")
    if _is_within(folder, root):
        raise UsageError(f"-o {root} contains the input folder {folder}: the outputs would mix with the inputs; "
                         f"choose an -o outside it")
    try:
        # Never descend into our own output folder when it sits inside the input tree.
        kinds = {f: file_kind(f) for f in sorted(folder.rglob("*")) if not _is_within(f, root) and not _real_dir(f)}
    except OSError as e:
        raise InputError(f"cannot read folder {folder}: {e.strerror or e}") from None
    files = [f for f, kind in kinds.items() if kind == "file" and (is_supported(f) or is_video(f))]
    taken = set(files)
    skipped += [(str(f), _skip_reason(f, kind)) for f, kind in kinds.items()
                if f not in taken and PARTIAL_SUFFIX not in f.name and not f.name.startswith(LOCK_NAME)]
    if not files:
        raise InputError(f"no supported images or videos under {folder}")
    jobs = []
    for f in files:
        rel = f.relative_to(folder)
        dst = (root / folder.name / rel) if nested else (root / rel)
        key = (Path(folder.name) / f.relative_to(folder)) if nested else f.relative_to(folder)
        jobs.append(Job(f, dst.with_suffix(_suffix(f, codec)), key.as_posix()))
    return jobs


def _real_dir(f: Path) -> bool:
    """A folder the walk descends into (a symlinked folder is not followed: it is counted)."""
    return f.is_dir() and not f.is_symlink()


def _skip_reason(f: Path, kind: str = "file") -> str:
    if kind == "a folder":
        return "symlinked folder (not followed)"
    if kind != "file":
        return f"not a regular file ({kind})"
    if f.suffix.lower() in AUDIO_SUFFIXES:
        return "audio only (no video stream)"
    return f"unsupported format {f.suffix.lower() or '(no extension)'}"


def _checked_file_output(src: Path, out: Path) -> Path:
    if is_video(src) and out.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
        raise UsageError(f"video output must end in {', '.join(VIDEO_OUTPUT_SUFFIXES)}: {out}")
    if not is_video(src) and not is_supported(out):
        raise UsageError(f"unsupported image output type: {out}")
    return out


def _common_parent(files: Sequence[Path]) -> Path:
    if not files:
        return Path(".")
    return Path(os.path.commonpath([str(f.resolve().parent) for f in files]))


def _unique_inputs(jobs: list[Job]) -> list[Job]:
    """The same file reached twice (a folder and a file inside it) is one job."""
    seen: dict[Path, Job] = {}
    for j in jobs:
        seen.setdefault(j.src.resolve(), j)
    return list(seen.values())


def _unique_outputs(jobs: list[Job]) -> list[Job]:
    by_dst: dict[str, list[Job]] = {}
    for j in jobs:
        by_dst.setdefault(str(j.dst.resolve()), []).append(j)
    for group in by_dst.values():
        if len(group) > 1:
            for j in group:
                if j.src.suffix.lower() != j.dst.suffix.lower():
                    j.dst = j.dst.with_name(j.dst.stem + j.src.suffix + j.dst.suffix)
    final: dict[str, Job] = {}
    for j in jobs:
        other = final.setdefault(str(j.dst.resolve()), j)
        if other is not j:
            raise UsageError(f"{other.src} and {j.src} would both be written to {j.dst}; "
                             f"colorize them into different folders")
    return jobs


def _suffix(path: Path, codec: str) -> str:
    return video_output_suffix(path, codec) if is_video(path) else output_suffix(path)


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


@contextlib.contextmanager
def locked_outputs(jobs: Sequence[Job], root: Path | None, shard: Shard | None, wait: bool = False) -> Iterator[None]:
    """Hold the lock of every folder this run writes into (the journal's folder, else each
    output's): a second run there is refused naming the holder, or waits with ``wait``.
    Shards of one job lock their own journal's name, so they run side by side."""
    name = LOCK_NAME if shard is None else LOCK_NAME.replace(".lock", f".shard-{shard.index}-of-{shard.count}.lock")
    folders = [root] if root is not None else sorted({j.dst.parent for j in jobs})
    with contextlib.ExitStack() as stack:
        for d in folders:
            d.mkdir(parents=True, exist_ok=True)
            stack.enter_context(holding_lock(d / name, wait))
        yield


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
                   on_progress: Callable[[int, int, int], None] | None = None,
                   on_frame: Callable[[str, int, int], None] | None = None,
                   journal: Journal | None = None, shard: Shard | None = None,
                   unsupported: Sequence[tuple[str, str]] = (),
                   on_note: Callable[[str], None] | None = None) -> Report:
    """Colorize every job; a bad or too-large item is recorded in the report and the run
    continues. ``on_progress(finished, planned, finished_before)`` counts items (the last,
    those earlier runs had finished, lets a rate count only this run's work);
    ``on_frame(name, done, total)`` reports video progress; ``on_note`` hears what a film
    resumes. With a ``journal`` every item is recorded there (with the ``unsupported``
    folder files, by reason) and what it says is finished is skipped."""
    return _Run(jobs, colorizer, cfg, on_progress, on_frame, journal, shard, unsupported, on_note).run()


def settings_key(cfg: InferConfig, model_sha256: str) -> str:
    """What decides an output's pixels: the model and the settings that change them."""
    keep = ("size", "saturation", "codec", "crf", "encoder_preset", "temporal_strength", "compare", "force",
            "skip_color", "preview")
    extra: dict[str, object] = {"deinterlace": True} if cfg.deinterlace else {}  # keys of journals written before it stay valid
    if cfg.precision != "auto":
        extra["precision"] = cfg.precision
    if cfg.chroma_smoothing:  # absent when off, as outputs made before the option were
        extra["chroma_smoothing"] = cfg.chroma_smoothing
    blob = json.dumps({"model": model_sha256, **{k: getattr(cfg, k) for k in keep}, **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# An output folder's lock file (``host pid``) while a run writes into it.
LOCK_NAME = ".scgan-rt.lock"
# Photos wait for a full batch only while their full-resolution planes stay under this.
BATCH_PIXELS = 64_000_000


def finished_before(job: Job, cfg: InferConfig, journal: Journal | None, rep: Report) -> bool:
    """What the journal says is finished for this very input (same size and mtime) is
    skipped; an input that changed since is redone. Without a journal line, an existing
    non-empty output counts as done (an empty one is redone). ``--overwrite`` redoes all."""
    if cfg.overwrite:
        return False
    if journal is not None and job.rel in journal.history.items:
        prev = journal.previous(job.rel, job.src)
        if prev is None:
            return False  # the input changed since it was journalled
        if prev["status"] == "failed" and not cfg.retry_failed:
            rep.failed_before.append((str(job.src), prev.get("reason", "")))
            return True
        if prev["status"] == "skipped":
            rep.skipped_color.append(str(job.src))
            return True
        if prev["status"] != "done":
            return False
    if not job.dst.is_file() or (cfg.compare and not cfg.preview and not compare_path(job.dst).is_file()):
        return False
    if job.dst.stat().st_size == 0:
        rep.warnings.append(f"{job.dst.name}: existing output is empty; redoing it")
        return False
    rep.skipped_existing.append(str(job.src))
    return True


class _Run:
    def __init__(self, jobs: Sequence[Job], colorizer: Colorizer, cfg: InferConfig,
                 on_progress: Callable[[int, int, int], None] | None,
                 on_frame: Callable[[str, int, int], None] | None, journal: Journal | None = None,
                 shard: Shard | None = None, unsupported: Sequence[tuple[str, str]] = (),
                 on_note: Callable[[str], None] | None = None) -> None:
        self.jobs, self.colorizer, self.cfg, self.journal, self.shard = jobs, colorizer, cfg, journal, shard
        self.unsupported = list(unsupported)
        self.on_progress, self.on_frame, self.on_note = on_progress, on_frame, on_note
        self.resumed = 0  # items earlier runs had finished
        self.rep = Report(total=len(jobs), backend=getattr(colorizer.backend, "name", "?"))
        # Photos merge in strips: the network's side decides what a batch costs.
        photos = any(not is_video(j.src) for j in jobs)  # a note only where photos are batched
        self.batch = self.rep.photo_batch = colorizer.batch_for(cfg.size ** 2, self.rep.warnings if photos else None)
        self.pending: list[tuple[Job, LoadedImage]] = []
        self.journal_lock = threading.Lock()  # writer threads journal their outputs too
        self.finished = 0
        self.started: dict[Path, float] = {}

    def run(self) -> Report:
        t0 = time.perf_counter()
        if self.journal is not None:
            model = self.colorizer.weights.name if self.colorizer.weights is not None else ""
            unsupported = {k: len(v) for k, v in _by_reason(self.unsupported).items()}
            shared = [j.rel for j in self.jobs if self.shard is not None and _shared_film(j, self.cfg)]
            self.journal.start(len(self.jobs) - len(shared), self.rep.backend, model, unsupported, shared)
            if self.journal.history.torn:
                self.rep.warnings.append(self.journal.damage_note())
        threads = io_threads(self.cfg.io_threads)
        self.loader = Prefetcher(self.jobs, self._wants_load, self._load, _header_pixels, threads,
                                 max_items=self.batch + threads, max_pixels=BATCH_PIXELS)
        self.writer: Writer[Job] = Writer(threads, max_pending=self.batch + threads)
        try:
            for i, job in enumerate(self.jobs):
                raise_if_signalled()
                self._step(i, job)
            self._flush()
            self._collect(wait=True)
        finally:
            self.writer.close()
            self.loader.close()
        self.rep.seconds = time.perf_counter() - t0
        self.rep.compile_seconds = self.colorizer.compile_seconds
        return self.rep

    def _wants_load(self, job: Job) -> bool:
        """Would ``_step`` read this job as a photo? (Asked ahead of time by the prefetcher,
        so a problem of this job must not surface in another's: ``_step`` reports it.)"""
        try:
            return (not self.cfg.preview and not is_video(job.src) and job.src.suffix.lower() not in AUDIO_SUFFIXES
                    and name_fits(job.dst) and not finished_before(job, self.cfg, self.journal, Report()))
        except OSError:
            return False

    def _load(self, job: Job) -> LoadedImage:
        return load_image(job.src, max_pixels=self.cfg.max_pixels)

    def _step(self, index: int, job: Job) -> None:
        if self.cfg.preview and not is_video(job.src):
            return self._tick()  # preview mode only samples videos
        if not name_fits(job.dst):
            self._fail(job, InputError(f"output name too long for its file system ({len(os.fsencode(job.dst.name))} "
                                       f"bytes, limit {name_max(job.dst.parent)}): {job.dst.name[:60]}..."))
            return self._tick()
        if not self.cfg.preview and finished_before(job, self.cfg, self.journal, self.rep):
            self.resumed += 1
            self._journal_existing(job)
            return self._tick()
        self._remove_stale_partials(job.dst)
        if is_video(job.src):
            self._flush()  # keep photo batches and videos from interleaving their outputs
            self._collect(wait=True)
            self._guarded(job, self._video)
            return self._tick()
        if job.src.suffix.lower() in AUDIO_SUFFIXES:
            self._fail(job, InputError(f"no video stream in {job.src.name} (an audio file)"))
            return self._tick()
        im = self._guarded(job, lambda j: self.loader.get(index))
        if im is None:
            return self._tick()
        self.rep.warnings += [f"{job.src.name}: {w}" for w in im.warnings]
        if self.cfg.skip_color and im.is_color:
            self.rep.skipped_color.append(str(job.src))
            self._record(job, "skipped", "already in colour")
            return self._tick()
        self.started[job.src] = time.perf_counter()
        self.pending.append((job, im))
        if len(self.pending) >= self.batch or sum(i.luma.size for _, i in self.pending) > BATCH_PIXELS:
            self._flush()

    def _journal_existing(self, job: Job) -> None:
        """An output counted as done without a journal line for it (a damaged journal, an
        earlier run without one) is journalled now, so ``status`` says what this run says."""
        if self.journal is None or not self.rep.skipped_existing or self.rep.skipped_existing[-1] != str(job.src):
            return
        prev = self.journal.history.items.get(job.rel)
        if prev is None or prev.get("status") != "done" or prev.get("settings") != self.journal.settings:
            self._record(job, "done")

    def _tick(self, n: int = 1) -> None:
        self.finished += n
        if self.on_progress:
            self.on_progress(self.finished, len(self.jobs), self.resumed)

    def _guarded(self, job: Job, fn: Callable[[Job], Any]) -> Any:
        """Run one item; its failure (bad input, out of memory) is the item's, not the run's."""
        try:
            return fn(job)
        except InputError as e:
            self._fail(job, e)
        except (MemoryError, torch.OutOfMemoryError):
            self._fail(job, _out_of_memory(job))
        except RuntimeError as e:
            if "bad_alloc" not in str(e):  # a native allocation failure is memory, anything else a bug
                raise
            self._fail(job, _out_of_memory(job))
        except ResourceError:
            raise  # disk full, unwritable output: the run's, not the item's
        except OSError as e:  # vanished, unreadable: this item only
            self._fail(job, InputError(f"cannot read {job.src.name}: {e.strerror or e}"))
        return None

    def _fail(self, job: Job, e: ScganError) -> None:
        self.rep.failed.append((str(job.src), str(e)))
        self.rep.failed_exit_codes.append(e.exit_code)
        self._record(job, "failed", str(e))

    def _record(self, job: Job, status: str, reason: str = "") -> None:
        if self.journal is None:
            return
        t0 = self.started.pop(job.src, None)
        with self.journal_lock:  # writer threads journal their own outputs
            self.journal.record(job.rel or job.src.name, job.src, job.dst if status == "done" else None, status,
                                reason, None if t0 is None else time.perf_counter() - t0)

    def _remove_stale_partials(self, dst: Path) -> None:
        """Temp files of this output left by a killed run; a live process's are left alone."""
        for stale in dst.parent.glob(f"{glob.escape(temp_prefix(dst))}*{PARTIAL_SUFFIX}*"):
            if owner_alive(stale, dst):
                continue
            try:
                stale.unlink()
                self.rep.warnings.append(f"removed {stale.name} left by an interrupted run")
            except OSError:
                pass

    def _video(self, job: Job) -> None:
        cfg, rep = self.cfg, self.rep
        self.started[job.src] = time.perf_counter()
        if cfg.preview:
            rep.done += [str(p) for p in preview_video(job.src, job.dst, self.colorizer, cfg.preview, cfg)]
            return
        on_frame = self.on_frame
        progress = (lambda d, t, n=job.src.name: on_frame(n, d, t)) if on_frame else None
        info = probe_video(job.src, cfg.max_pixels)
        if is_segmented(info, cfg):
            key = self.journal.settings if self.journal else settings_key(cfg, str(self.colorizer.weights))
            shard = self.shard
            owns = (lambda i, rel=job.rel: shard.owns_segment(rel, i)) if shard else None
            v = colorize_film(job.src, job.dst, self.colorizer, cfg, info, key, on_frame=progress, owns=owns,
                              on_note=self.on_note)
        else:
            v = colorize_video(job.src, job.dst, self.colorizer, cfg, info=info, on_frame=progress)
        if v.pending:
            rep.films_pending.append(str(job.src))
            rep.frames += v.frames_encoded
        elif v.skipped_colour:
            rep.skipped_color.append(str(job.src))
            self._record(job, "skipped", "already in colour")
        else:
            if cfg.compare:
                v.warnings += [w for w in compare_film(job.dst, compare_path(job.dst), cfg) if w not in v.warnings]
            rep.done.append(str(job.dst))
            self._record(job, "done")
            rep.frames += v.frames_encoded
            rep.video_seconds += v.seconds
        rep.warnings += [f"{job.src.name}: {w}" for w in v.warnings]
        rep.video_streams_dropped += v.video_streams_dropped

    def _flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            cbcr, sal = self.colorizer.chroma_batch([im for _, im in batch])
        except (MemoryError, torch.OutOfMemoryError):
            if len(batch) == 1:
                self._fail(batch[0][0], _out_of_memory(batch[0][0]))
                return self._tick()
            for item in batch:  # retry one by one: only the item that does not fit fails
                self.pending = [item]
                self._flush()
            return
        # The merge runs in the writer threads with the encode: the next batch's network,
        # the decodes ahead and the merges and encodes behind overlap.
        for k, (job, im) in enumerate(batch):
            c, s = cbcr[k:k + 1], (None if sal is None else sal[k:k + 1])
            self.writer.submit(job, lambda j=job, i=im, c=c, s=s: self._write(j, i, *self.colorizer.merge(i, c, s, True)))
        self._collect()

    def _write(self, job: Job, im: LoadedImage, rgb: np.ndarray, sal: np.ndarray | None) -> list[str]:
        """Write one output (in a writer thread, after its merge); returns the notes about
        what it could not keep."""
        notes: list[str] = []
        save_image(job.dst, rgb, im.alpha, bits=im.bits, icc=im.icc, exif=im.exif, notes=notes)
        if self.cfg.compare:
            save_image(compare_path(job.dst), side_by_side(im, rgb), None, bits=im.bits, icc=im.icc, exif=im.exif)
        if self.cfg.save_saliency and sal is not None:
            save_image(job.dst.with_name(job.dst.stem + "_saliency.png"), np.repeat(sal[..., None], 3, 2))
        self._record(job, "done")  # journalled as soon as it exists: a kill -9 now loses no line
        return notes

    def _collect(self, wait: bool = False) -> None:
        """Book the finished writes, in job order: done and journalled, or failed."""
        for job, notes, error in self.writer.finished(wait):
            if isinstance(error, ResourceError):
                raise error  # disk full / unwritable output: stop the run
            if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
                self._fail(job, _out_of_memory(job))  # its merge did not fit: the item's failure
                self._tick()
                continue
            if isinstance(error, (ScganError, OSError)):
                self._fail(job, InputError(str(error)))
            elif error is not None:
                raise error
            else:
                self.rep.warnings += [f"{job.src.name}: {n}" for n in notes]
                self.rep.done.append(str(job.dst))
            self._tick()


def _header_pixels(job: Job) -> int:
    """Pixels of a photo from its header (0 when unreadable: loading it will say why)."""
    if not is_regular(job.src):
        return 0  # never open a FIFO or a device
    try:
        with Image.open(job.src) as im:
            return im.size[0] * im.size[1]
    except Exception:
        return 0


def _out_of_memory(job: Job) -> ResourceError:
    return ResourceError(f"out of memory colorizing {job.src.name}")


def side_by_side(im: LoadedImage, rgb: np.ndarray) -> np.ndarray:
    """``--compare``: the gray input left of its colorization, in the output's code values."""
    top = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(rgb.dtype, 1)
    gray = np.round(im.luma * top) if top > 1 else im.luma
    return np.concatenate([np.repeat(gray.astype(rgb.dtype)[..., None], 3, axis=2), rgb], axis=1)
