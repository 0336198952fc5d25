"""``colorize --ray``: the same job on a Ray cluster (optional extra ``scgan-rt[ray]``).

The driver plans the outputs, skips what the journal says is finished, and hands the
rest to Ray Data: ``map_batches`` over a pool of actors that each hold one opened
``Colorizer`` (a GPU per actor when ``--gpus-per-worker`` asks for one) and write their
outputs atomically. Ray restarts a killed actor and retries its batch; a redone item
rewrites the same output path atomically, so nothing is lost or duplicated. Only the
driver writes the journal (one writer). No scheduler, queue or RPC of our own.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EXIT_BAD_INPUT, EXIT_RESOURCE, ResourceError, UsageError
from .journal import Journal
from .pipeline import Job, Report, colorize_files, compare_path, finished_before, settings_key
from .reading import VideoInfo, is_video, probe_video
from .segments import cached_plan, colorize_film, compare_film, is_segmented, long_enough, work_dir
from .settings import CPU_BATCH, InferConfig
from .weights import sha256_file


class _Worker:
    """One Ray actor: a Colorizer opened once, colorizing batches of jobs."""

    def __init__(self, settings: dict[str, Any], weights: str, key: str) -> None:
        from .colorizer import Colorizer

        # The driver already skipped finished items; a retried batch rewrites its outputs.
        self.cfg = InferConfig(**settings).replace(overwrite=True)
        self.colorizer = Colorizer.open(self.cfg, weights)
        self.key = key

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows in, one result per row: photos and short videos are colorized through the
        pipeline; a film's segment row encodes that segment (the driver joins the film)."""
        rows = range(len(batch["src"]))
        items = [i for i in rows if int(batch["segment"][i]) < 0]
        jobs = [Job(Path(batch["src"][i]), Path(batch["dst"][i]), str(batch["rel"][i])) for i in items]
        rep = colorize_files(jobs, self.colorizer, self.cfg) if jobs else None
        for i in rows:
            if int(batch["segment"][i]) >= 0:
                self._segment(Path(batch["src"][i]), Path(batch["dst"][i]), int(batch["segment"][i]))
        status, errors, notes = [], [], []
        for i in rows:
            src, dst = str(batch["src"][i]), str(batch["dst"][i])
            if int(batch["segment"][i]) >= 0 or rep is None:
                state, error, note = "segment", "", ""
            else:
                state = "done" if dst in rep.done else "skipped" if src in rep.skipped_color else "failed"
                error = dict(rep.failed).get(src, "")
                note = " | ".join(w for w in rep.warnings if w.startswith(Path(src).name + ":"))
            status.append(state)
            errors.append(error)
            notes.append(note)
        return {"src": batch["src"], "status": np.array(status), "error": np.array(errors),
                "warnings": np.array(notes), "backend": np.array([self.colorizer.backend.name] * len(rows))}

    def _segment(self, src: Path, dst: Path, index: int) -> None:
        colorize_film(src, dst, self.colorizer, self.cfg, probe_video(src, self.cfg.max_pixels), self.key,
                      owns=lambda i: i == index, join=False)


def connect(address: str) -> None:
    """``auto``: the running Ray instance or cluster, else a local one; else ``ADDRESS``."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'scgan-rt[ray]'") from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError:
        if address != "auto":
            raise ResourceError(f"cannot reach the Ray cluster at {address}") from None
        ray.init(log_to_driver=False)  # no cluster running: a local instance on this machine


def colorize_on_ray(jobs: Sequence[Job], cfg: InferConfig, weights: str | os.PathLike[str], *,
                    journal: Journal | None = None, address: str = "auto", workers: int = 2,
                    gpus_per_worker: float = 0.0, on_progress: Callable[[int, int], None] | None = None) -> Report:
    """Photos are rows of their own; a film long enough for segments becomes one row per
    segment (spread over the actors), and the driver joins it once all are done."""
    import time

    import ray

    connect(address)
    rep = Report(total=len(jobs), backend="ray")
    todo = [j for j in jobs if not finished_before(j, cfg, journal, rep)]
    key = journal.settings if journal is not None else settings_key(cfg, sha256_file(weights))
    if journal is not None:
        journal.start(len(jobs), "ray", Path(weights).name)
    t0 = time.perf_counter()
    films = {str(j.src): (j, info) for j in todo if (info := _film_info(j, cfg)) is not None}
    rows = [{"src": str(j.src), "dst": str(j.dst), "rel": j.rel, "segment": -1} for j in todo if str(j.src) not in films]
    for j, info in films.values():
        plan = cached_plan(work_dir(j.dst), j.src, info, cfg, key)
        rows += [{"src": str(j.src), "dst": str(j.dst), "rel": j.rel, "segment": i} for i in range(len(plan))]
    if rows:
        by_src = {str(j.src): j for j in todo}
        # Ray Data's actor pools restart a killed actor and retry its batch by default
        # (max_restarts=-1, max_task_retries=-1; passing them is deprecated from Ray 2.60).
        ds = ray.data.from_items(rows).map_batches(
            _Worker, batch_size=CPU_BATCH if cfg.batch_size == "auto" else int(cfg.batch_size), batch_format="numpy",
            fn_constructor_kwargs={"settings": dataclasses.asdict(cfg), "weights": str(weights), "key": key},
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=gpus_per_worker or None)
        seen: set[str] = set()
        for row in ds.iter_rows():
            if row["status"] == "segment" or row["src"] in seen:  # a retried batch reports an item twice
                continue
            seen.add(row["src"])
            _collect(rep, by_src[row["src"]], row, journal)
            if on_progress:
                on_progress(len(seen) + rep.total - len(todo), rep.total)
        for j, info in films.values():
            _join_film(rep, j, info, cfg, key, journal)
    rep.seconds = time.perf_counter() - t0
    return rep


def _film_info(job: Job, cfg: InferConfig) -> VideoInfo | None:
    """The film's probe when it goes in segments (the header's duration decides first)."""
    if not is_video(job.src) or not long_enough(job.src, cfg):
        return None
    info = probe_video(job.src, cfg.max_pixels)
    return info if is_segmented(info, cfg) else None


def _join_film(rep: Report, job: Job, info: VideoInfo, cfg: InferConfig, key: str, journal: Journal | None) -> None:
    """Every segment came back: the driver joins the film (encoding nothing itself)."""
    v = colorize_film(job.src, job.dst, None, cfg, info, key, owns=lambda i: False)
    if v.pending:
        rep.failed.append((str(job.src), f"{job.src.name}: {v.warnings[-1]}; rerun to finish it"))
        rep.failed_exit_codes.append(EXIT_RESOURCE)
        return
    if cfg.compare:
        v.warnings += compare_film(job.dst, compare_path(job.dst), cfg)
    row = {"status": "done", "error": "", "warnings": " | ".join(f"{job.src.name}: {w}" for w in v.warnings),
           "backend": rep.backend.removeprefix("ray/") or "?"}
    _collect(rep, job, row, journal)


def _collect(rep: Report, job: Job, row: dict[str, Any], journal: Journal | None) -> None:
    status = str(row["status"])
    if status == "done":
        rep.done.append(str(job.dst))
    elif status == "skipped":
        rep.skipped_color.append(str(job.src))
    else:
        rep.failed.append((str(job.src), str(row["error"])))
        rep.failed_exit_codes.append(EXIT_BAD_INPUT)
    if row["warnings"]:
        rep.warnings += str(row["warnings"]).split(" | ")
    rep.backend = f"ray/{row['backend']}"
    if journal is not None:
        journal.record(job.rel or job.src.name, job.src, job.dst if status == "done" else None, status,
                       str(row["error"]) or ("already in colour" if status == "skipped" else ""))
