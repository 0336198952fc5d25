"""Rank-0 reporting: rich progress (losses, images/s, ETA) and TensorBoard scalars/grids."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from scgan_rt.config import TrainConfig


class Monitor:
    def __init__(self, out: Path, enabled: bool, console: Console, total: int, start: int, tcfg: TrainConfig) -> None:
        self.enabled, self.tcfg = enabled, tcfg
        self.last_logs: dict[str, float] = {}
        self._t0, self._n0 = time.monotonic(), 0  # rate over the current logging window
        self._t_first: float | None = None
        self._images = 0
        self._rate = 0.0
        self.writer = None
        self.progress = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"))
        except ImportError:  # train() checked the train extra; a broken install still trains
            console.print("tensorboard not installed: no TensorBoard logs")
        self.progress = Progress(TextColumn("[bold]stage {task.fields[stage]}[/] ep {task.fields[epoch]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[losses]}"),
                                 TextColumn("{task.fields[rate]} img/s"), TimeRemainingColumn(), console=console,
                                 disable=console.quiet)
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=start, stage=tcfg.stage, epoch=1,
                                           losses="", rate="-")

    def images_per_s(self) -> float:
        return round(self._rate, 3)

    def after_step(self, step: int, epoch: int, logs: dict[str, float], stage: Any, images: int) -> None:
        self.last_logs = logs
        now = time.monotonic()
        if self._t_first is None:  # first step includes warm-up (allocations, workers): not timed
            self._t_first, self._t0, self._n0 = now, now, 0
        else:
            self._n0 += images
            self._images += images
            self._rate = self._images / max(now - self._t_first, 1e-9)
        if not self.enabled:
            return
        shown = "  ".join(f"{k.removeprefix('loss_')}={v:.3f}" for k, v in logs.items() if k.startswith("loss"))
        self.progress.update(self.task, completed=step, epoch=epoch + 1, losses=shown, rate=f"{self._rate:.2f}")
        if self.writer is None:
            return
        if step % max(1, self.tcfg.log_every) == 0:
            for k, v in logs.items():
                self.writer.add_scalar(f"train/{k}", v, step)
            for k, v in stage.lrs().items():
                self.writer.add_scalar(f"lr/{k}", v, step)
            window = now - self._t0
            if window > 0 and self._n0:
                self.writer.add_scalar("perf/images_per_s", self._n0 / window, step)
            self._t0, self._n0 = now, 0
        if step % max(1, self.tcfg.sample_every) == 0 and hasattr(stage, "sample_grid"):
            self.writer.add_image("samples/gray|pred|truth|pred_sal|sal", stage.sample_grid(), step)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
