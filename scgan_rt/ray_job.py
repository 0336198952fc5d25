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

from .errors import ResourceError, UsageError
from .journal import Journal
from .pipeline import Job, Report, colorize_files, finished_before
from .settings import InferConfig


class _Worker:
    """One Ray actor: a Colorizer opened once, colorizing batches of jobs."""

    def __init__(self, settings: dict[str, Any], weights: str) -> None:
        from .colorizer import Colorizer

        # The driver already skipped finished items; a retried batch rewrites its outputs.
        self.cfg = InferConfig(**settings).replace(overwrite=True, batch_size=settings["batch_size"])
        self.colorizer = Colorizer.open(self.cfg, weights)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs = [Job(Path(s), Path(d), r) for s, d, r in zip(batch["src"], batch["dst"], batch["rel"])]
        rep = colorize_files(jobs, self.colorizer, self.cfg)
        failed = dict(rep.failed)
        done, colour = set(rep.done), set(rep.skipped_color)
        status = ["done" if str(j.dst) in done else "skipped" if str(j.src) in colour else "failed" for j in jobs]
        notes = [" | ".join(w for w in rep.warnings if w.startswith(j.src.name + ":")) for j in jobs]
        return {"src": batch["src"], "status": np.array(status), "error": np.array([failed.get(str(j.src), "")
                                                                                     for j in jobs]),
                "warnings": np.array(notes), "backend": np.array([self.colorizer.backend.name] * len(jobs))}


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
    import time

    import ray

    connect(address)
    rep = Report(total=len(jobs), backend="ray")
    todo = [j for j in jobs if not finished_before(j, cfg, journal, rep)]
    if journal is not None:
        journal.start(len(jobs), "ray", Path(weights).name)
    t0 = time.perf_counter()
    if todo:
        by_src = {str(j.src): j for j in todo}
        rows = [{"src": str(j.src), "dst": str(j.dst), "rel": j.rel} for j in todo]
        ds = ray.data.from_items(rows).map_batches(
            _Worker, batch_size=cfg.batch_size, batch_format="numpy",
            fn_constructor_kwargs={"settings": dataclasses.asdict(cfg), "weights": str(weights)},
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=gpus_per_worker or None,
            max_restarts=-1, max_task_retries=-1)
        seen: set[str] = set()
        for row in ds.iter_rows():
            if row["src"] in seen:  # a retried batch reports an item twice: count it once
                continue
            seen.add(row["src"])
            _collect(rep, by_src[row["src"]], row, journal)
            if on_progress:
                on_progress(len(seen) + rep.total - len(todo), rep.total)
    rep.seconds = time.perf_counter() - t0
    return rep


def _collect(rep: Report, job: Job, row: dict[str, Any], journal: Journal | None) -> None:
    status = str(row["status"])
    if status == "done":
        rep.done.append(str(job.dst))
    elif status == "skipped":
        rep.skipped_color.append(str(job.src))
    else:
        rep.failed.append((str(job.src), str(row["error"])))
        rep.failed_exit_codes.append(3)
    if row["warnings"]:
        rep.warnings += str(row["warnings"]).split(" | ")
    rep.backend = f"ray/{row['backend']}"
    if journal is not None:
        out = str(job.dst)
        try:
            out = job.dst.resolve().relative_to(journal.root.resolve()).as_posix()
        except ValueError:
            pass
        journal.record(job.rel or job.src.name, job.src, out if status == "done" else None, status,
                       str(row["error"]) or ("already in colour" if status == "skipped" else ""))
