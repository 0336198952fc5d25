"""The training loop shared by all stages: data, resume, checkpoints, logging, DDP.

``train(...)`` is what ``scgan-rt train`` calls. A run directory holds ``last.pt`` (the
resumable checkpoint, written atomically at every epoch end, every ``ckpt_every`` steps,
and when the run stops for any reason, Ctrl-C included), ``generator.safetensors`` (or
``gfn.safetensors`` for ``--stage gfn``), ``tb/`` (TensorBoard) and, when computed,
``saliency/`` (the saliency-map cache used when no ``--saliency-dir`` is given).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from scgan_rt.config import ModelConfig, TrainConfig
from scgan_rt.errors import InputError, UsageError
from scgan_rt.weights import load_state_strict, read_weights, save_weights

from . import distributed as D, require_train_extra
from .checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from .data import ColorizationDataset, EpochSampler, check_maps, scan_photos
from .monitor import Monitor

# Settings that must not change across --resume (the rest, e.g. budgets, may).
RESUME_FIXED = ("stage", "batch_size", "crop", "seed", "gan_mode", "pixel_loss", "use_gan", "use_attention",
                "use_perceptual", "load_size", "load_size_max", "input_noise_std", "hflip", "perceptual_net", "perceptual_stage1",
                "lambda_ab_class", "merge_luma")


def pick_device(name: str, dist: D.DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda requested but no CUDA GPU is available")
        return torch.device("cuda", dist.local_rank if dist.enabled else (torch.device(name).index or 0))
    return torch.device(name)


def _prepare_saliency(data: Path, files: list[Path], saliency_dir: Path | None, out: Path, dist: D.DistInfo,
                      workers: int, console: Console) -> Path:
    """User maps must be complete; otherwise maps are computed into RUN_DIR/saliency
    (rank 0 computes, the others wait) and reused by later runs into the same RUN_DIR."""
    if saliency_dir is not None:
        check_maps(saliency_dir, files)
        return saliency_dir
    from .saliency import compute_saliency_maps

    cache = out / "saliency"
    if dist.is_main:
        r = compute_saliency_maps(data, cache, files, workers=max(1, workers), progress=True)
        console.print(f"saliency maps in {cache}: {r['computed']} computed, {r['reused']} reused"
                      + (f", {len(r['failed'])} failed (e.g. {r['failed'][0]})" if r["failed"] else ""))
    D.barrier(dist)
    check_maps(cache, files)
    return cache


@dataclass
class _Sources:
    """What one training run reads and where it writes (the CLI's paths and switches)."""

    data: Path
    out: Path
    saliency_dir: Path | None
    input_dir: Path | None
    init: Path | None
    gfn_weights: Path | None
    perceptual_weights: str | None
    resume: bool
    ckpt_every: int

    @property
    def ckpt_path(self) -> Path:
        return self.out / "last.pt"


def train(tcfg: TrainConfig, mcfg: ModelConfig, data: Path, out: Path, *, saliency_dir: Path | None = None,
          input_dir: Path | None = None, init: Path | None = None, gfn_weights: Path | None = None,
          perceptual_weights: str | None = None, resume: bool = False, device: str = "auto",
          ckpt_every: int = 1000, quiet: bool = False) -> dict[str, Any]:
    """Run one training stage; returns a summary (steps, epochs, outputs, wallclock)."""
    require_train_extra()
    t_start = time.monotonic()
    src = _Sources(Path(data), Path(out), saliency_dir, input_dir, init, gfn_weights, perceptual_weights, resume,
                   ckpt_every)
    probe = torch.device("cuda" if (device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())) else "cpu")
    dist = D.init_from_env(probe.type)
    console = Console(stderr=True, quiet=quiet or not dist.is_main)
    try:
        tcfg = _resolve_perceptual(tcfg.validate(), src)
        ckpt = load_checkpoint(src.ckpt_path) if resume else None
        mcfg, init_w = _model_config(tcfg, mcfg, src, ckpt)
        ds, sampler, files = _data(tcfg, mcfg, src, dist, console)
        dev = pick_device(device, dist)
        stage = _stage(tcfg, mcfg, dev, dist, files, src, init_w, ckpt, console)
        loop = _Loop(tcfg, mcfg, stage, src, dist, dev, console, t_start)
        if ckpt is not None:
            loop.restore(ckpt)
        stop_reason = loop.run(ds, sampler)
        return _finish(tcfg, mcfg, stage, src, dist, loop, stop_reason, console)
    finally:
        D.shutdown(dist)


def _model_config(tcfg: TrainConfig, mcfg: ModelConfig, src: _Sources,
                  ckpt: dict[str, Any] | None) -> tuple[ModelConfig, Any]:
    """The architecture: the checkpoint's on resume, the stage-1 weights' in stage 2, else
    the preset's; plus the stage-1 weights to start stage 2 from."""
    if ckpt is not None:
        old = ckpt["train_config"]
        # Settings added after a checkpoint was written take their defaults for it.
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        changed = [k for k in RESUME_FIXED if old.get(k, defaults[k]) != getattr(tcfg, k)]
        if changed:
            raise UsageError(f"--resume with different {', '.join(changed)} than the checkpoint "
                             f"({', '.join(f'{k}={old.get(k, defaults[k])!r}' for k in changed)})")
        mcfg = ModelConfig.from_dict(ckpt["model_config"])
    elif not src.resume and src.ckpt_path.exists():
        raise UsageError(f"{src.out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    init_w = None
    if tcfg.stage == "2" and ckpt is None:
        if src.init is None:
            raise UsageError("--stage 2 needs --init STAGE1_WEIGHTS (the generator trained by --stage 1)")
        init_w = read_weights(src.init)
        mcfg = init_w.config  # the architecture comes with the weights
    if tcfg.d_norm:
        mcfg = dataclasses.replace(mcfg, d_norm=tcfg.d_norm)
    if not tcfg.use_attention:
        mcfg = dataclasses.replace(mcfg, use_saliency=False)
    return mcfg.validate(), init_w


def _resolve_perceptual(tcfg: TrainConfig, src: _Sources) -> TrainConfig:
    """Pick the perceptual network for ``auto`` and check its weights exist, before any data
    is scanned or saliency computed."""
    if not (tcfg.use_perceptual and (tcfg.stage == "2" or tcfg.perceptual_stage1)):
        return tcfg
    from scgan_rt.backbone import package_weights_file

    from .losses import find_vgg_weights

    net = tcfg.perceptual_net
    if net == "auto":
        try:
            find_vgg_weights(src.perceptual_weights)
            net = "vgg16"
        except UsageError:
            if src.perceptual_weights:
                raise
            net = "efficientnet-lite0"
    if net == "vgg16":
        find_vgg_weights(src.perceptual_weights)
    else:
        package_weights_file()
    return dataclasses.replace(tcfg, perceptual_net=net)


def _data(tcfg: TrainConfig, mcfg: ModelConfig, src: _Sources, dist: D.DistInfo,
          console: Console) -> tuple[ColorizationDataset, EpochSampler, list[Path]]:
    """Validated up front, so bad data fails before any model work."""
    scan = scan_photos(src.data, tcfg.min_colorfulness if tcfg.stage != "gfn" else -1.0)
    console.print(f"data {src.data}: {scan.summary()}")
    files = scan.files
    needs_maps = tcfg.stage != "gfn" and tcfg.use_attention
    maps = _prepare_saliency(src.data, files, src.saliency_dir, src.out, dist, tcfg.workers, console) \
        if needs_maps else None
    if src.input_dir is None and mcfg.in_channels != 1:
        raise UsageError(f"the model takes {mcfg.in_channels} input channels: pass --paired-input DIR")
    ds = ColorizationDataset(src.data, files, tcfg.crop, maps_dir=maps, input_dir=src.input_dir,
                             in_channels=mcfg.in_channels, noise_std=tcfg.input_noise_std, load_size=tcfg.load_size,
                             load_size_max=tcfg.load_size_max,
                             seed=tcfg.seed, hflip=tcfg.hflip)
    sampler = EpochSampler(len(ds), tcfg.batch_size, tcfg.seed, dist.rank, dist.world)
    if sampler.batches_per_epoch() == 0:
        raise InputError(f"{len(ds)} photos is fewer than one batch of {tcfg.batch_size} per process")
    return ds, sampler, files


def _stage(tcfg: TrainConfig, mcfg: ModelConfig, device: torch.device, dist: D.DistInfo, files: list[Path],
           src: _Sources, init_w: Any, ckpt: dict[str, Any] | None, console: Console) -> Any:
    """The models, losses and optimisers: same seed on every rank, then rank 0's weights
    broadcast anyway."""
    torch.manual_seed(tcfg.seed)
    if tcfg.stage == "gfn":
        from .gfn import GfnStage, class_labels

        classes, labels = class_labels(files)
        stage: Any = GfnStage(tcfg, mcfg, device, dist, classes, labels)
    else:
        from .stages import ColorizationStage

        stage = ColorizationStage(tcfg, mcfg, device, dist, src.perceptual_weights)
        if init_w is not None:
            sd = init_w.state_dict
            if stage.gen.saliency is None:  # "w/o attention" from an attention stage 1: drop that branch
                sd = {k: v for k, v in sd.items() if not k.startswith("saliency.")}
            load_state_strict(stage.gen, sd, init_w.path.name)
            console.print(f"generator initialised from {init_w.path.name}")
        elif src.gfn_weights is not None and ckpt is None:
            from .gfn import load_gfn_weights

            load_gfn_weights(stage.gen, src.gfn_weights, console)
        if stage.ema is not None:
            stage.ema.reset(stage.gen)  # the average starts from the initial weights
    for m in stage.modules.values():
        D.broadcast_module(m, dist)
        m.train()
    torch.manual_seed(tcfg.seed * 1000 + dist.rank + 1)  # per-rank stream (GP alphas)
    return stage


class _Loop:
    """The epoch/step loop with its position, checkpoints and stopping rules."""

    def __init__(self, tcfg: TrainConfig, mcfg: ModelConfig, stage: Any, src: _Sources, dist: D.DistInfo,
                 device: torch.device, console: Console, t_start: float) -> None:
        self.tcfg, self.mcfg, self.stage, self.src, self.dist = tcfg, mcfg, stage, src, dist
        self.device, self.console, self.t_start = device, console, t_start
        self.step = self.epoch = self.batch_in_epoch = self.n_ckpt = 0
        self.elapsed_before = 0.0
        self.monitor: Monitor | None = None

    def restore(self, ckpt: dict[str, Any]) -> None:
        stage, dist = self.stage, self.dist
        for k, m in stage.modules.items():
            if k == "generator_ema" and k not in ckpt["modules"]:
                m.reset(stage.modules["generator"])  # the average starts at the resume point
                self.console.print("--ema: the weight average starts at the resume point")
                continue
            m.load_state_dict(ckpt["modules"][k])
        for k, o in stage.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in stage.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        self.elapsed_before = ckpt["elapsed_s"]
        if dist.is_main:
            set_rng_state(ckpt["rng"])
        else:  # only rank 0's RNG is stored; other ranks re-derive theirs from the step
            torch.manual_seed(self.tcfg.seed * 1000 + dist.rank + 1 + 7919 * self.step)
        self.console.print(f"resumed {self.src.ckpt_path} at epoch {self.epoch + 1}, step {self.step}")

    def checkpoint(self) -> None:
        if self.dist.is_main:
            stage = self.stage
            save_checkpoint(self.src.ckpt_path, {
                "stage": self.tcfg.stage, "train_config": dataclasses.asdict(self.tcfg),
                "model_config": dataclasses.asdict(self.mcfg),
                "modules": {k: m.state_dict() for k, m in stage.modules.items()},
                "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in stage.schedulers.items()},
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "elapsed_s": self.wall(), "data": str(self.src.data)})
            self.n_ckpt += 1
        D.barrier(self.dist)

    def wall(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t_start

    def run(self, ds: ColorizationDataset, sampler: EpochSampler) -> str:
        """Train until the epochs, ``--max-steps`` or ``--max-minutes`` run out; Ctrl-C
        checkpoints first. Returns why it stopped."""
        tcfg = self.tcfg
        per_epoch = sampler.batches_per_epoch()
        total = min(tcfg.epochs * per_epoch, tcfg.max_steps) if tcfg.max_steps else tcfg.epochs * per_epoch
        self.monitor = Monitor(self.src.out, self.dist.is_main, self.console, total, self.step, tcfg)
        loader_kw: dict[str, Any] = dict(batch_size=tcfg.batch_size, num_workers=tcfg.workers, drop_last=True,
                                         pin_memory=self.device.type == "cuda")
        stop_reason = "done"
        t_loop = time.monotonic()
        try:
            while self.epoch < tcfg.epochs and self.step < total:
                sampler.set_epoch(self.epoch, self.batch_in_epoch)
                stop_reason = self._epoch(DataLoader(ds, sampler=sampler, **loader_kw), total, t_loop)
                if self.batch_in_epoch >= per_epoch:  # epoch complete: epoch-based lr schedule (paper)
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    for s in self.stage.schedulers.values():
                        s.step()
                    if self.epoch < tcfg.epochs and self.step < total and stop_reason == "done":
                        self.checkpoint()
                if stop_reason != "done":
                    break
            if stop_reason == "done" and self.epoch < tcfg.epochs:
                stop_reason = "max steps"
        except KeyboardInterrupt:
            self.checkpoint()  # Ctrl-C keeps the work done so far
            self.monitor.close()
            raise
        self.checkpoint()
        self.monitor.close()
        return stop_reason

    def _epoch(self, loader: DataLoader, total: int, t_loop: float) -> str:
        tcfg, monitor = self.tcfg, self.monitor
        assert monitor is not None
        for batch in loader:
            self.stage.step_index = self.step
            logs = self.stage.step(batch)
            self.step += 1
            self.batch_in_epoch += 1
            monitor.after_step(self.step, self.epoch, logs, self.stage, tcfg.batch_size * self.dist.world)
            budget = bool(tcfg.max_minutes) and (time.monotonic() - t_loop) / 60 >= tcfg.max_minutes
            if D.any_rank(budget, self.dist, self.device):
                return "time budget"
            if self.step >= total:
                return "done"
            if self.src.ckpt_every and self.step % self.src.ckpt_every == 0:
                self.checkpoint()
        return "done"


def _finish(tcfg: TrainConfig, mcfg: ModelConfig, stage: Any, src: _Sources, dist: D.DistInfo, loop: _Loop,
            stop_reason: str, console: Console) -> dict[str, Any]:
    """The summary, and the exported weights (rank 0) with their provenance."""
    monitor = loop.monitor
    assert monitor is not None
    wall = loop.wall()
    result: dict[str, Any] = {"stage": tcfg.stage, "steps": loop.step, "epochs_done": loop.epoch,
                              "stopped": stop_reason, "checkpoint": str(src.ckpt_path),
                              "checkpoints_written": loop.n_ckpt, "wallclock_s": round(wall, 1),
                              "images_per_s": monitor.images_per_s(), "final_losses": monitor.last_logs}
    if not dist.is_main:
        return result
    prov = {"stage": tcfg.stage, "data": str(src.data), "epochs": tcfg.epochs, "epochs_done": loop.epoch,
            "steps": loop.step, "seed": tcfg.seed, "batch_size": tcfg.batch_size, "world_size": dist.world,
            "crop": tcfg.crop, "losses": {k: round(v, 5) for k, v in monitor.last_logs.items()},
            "wallclock_s": round(wall, 1), "train_config": dataclasses.asdict(tcfg)}
    if tcfg.stage == "gfn":
        from .gfn import save_gfn

        result["weights"] = str(src.out / "gfn.safetensors")
        save_gfn(src.out / "gfn.safetensors", stage.net, mcfg, stage.classes, prov)
    else:
        if stage.ema is not None:  # keep the last iterate too, for comparison
            save_weights(src.out / "generator_last.safetensors", stage.gen, provenance=prov)
        result["weights"] = str(save_weights(src.out / "generator.safetensors", stage.export_generator(),
                                             provenance=prov))
    console.print(f"stopped ({stop_reason}) after {loop.step} steps, {wall / 60:.1f} min; wrote {result['weights']}")
    return result
