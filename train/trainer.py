"""The training loop shared by all stages: data, resume, checkpoints, logging, DDP.

``train(...)`` is what ``scgan-rt train`` calls. A run directory holds ``last.pt`` (the
resumable checkpoint, written atomically at every epoch end, every ``ckpt_every`` steps,
and when the run stops for any reason, Ctrl-C included), ``generator.safetensors`` (or
``gfn.safetensors`` for ``--stage gfn``), ``tb/`` (TensorBoard) and, when computed,
``saliency/`` (the saliency-map cache used when no ``--saliency-dir`` is given).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from scgan_rt.config import ModelConfig, TrainConfig
from scgan_rt.errors import InputError, UsageError
from scgan_rt.weights import load_state_strict, read_weights, save_weights

from . import distributed as D
from .checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from .data import ColorizationDataset, EpochSampler, check_maps, scan_photos
from .monitor import Monitor

# Settings that must not change across --resume (the rest, e.g. budgets, may).
RESUME_FIXED = ("stage", "batch_size", "crop", "seed", "gan_mode", "pixel_loss", "use_gan", "use_attention",
                "use_perceptual", "load_size", "input_noise_std", "hflip")


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


def train(tcfg: TrainConfig, mcfg: ModelConfig, data: Path, out: Path, *, saliency_dir: Path | None = None,
          input_dir: Path | None = None, init: Path | None = None, gfn_weights: Path | None = None,
          perceptual_weights: str | None = None, resume: bool = False, device: str = "auto",
          ckpt_every: int = 1000, quiet: bool = False) -> dict[str, Any]:
    """Run one training stage; returns a summary (steps, epochs, outputs, wallclock)."""
    t_start = time.monotonic()
    data, out = Path(data), Path(out)
    probe = torch.device("cuda" if (device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())) else "cpu")
    dist = D.init_from_env(probe.type)
    console = Console(stderr=True, quiet=quiet or not dist.is_main)
    try:
        return _train(tcfg.validate(), mcfg, data, out, saliency_dir, input_dir, init, gfn_weights,
                      perceptual_weights, resume, pick_device(device, dist), dist, ckpt_every, console, t_start)
    finally:
        D.shutdown(dist)


def _train(tcfg: TrainConfig, mcfg: ModelConfig, data: Path, out: Path, saliency_dir: Path | None,
           input_dir: Path | None, init: Path | None, gfn_weights: Path | None, perceptual_weights: str | None,
           resume: bool, device: torch.device, dist: D.DistInfo, ckpt_every: int, console: Console,
           t_start: float) -> dict[str, Any]:
    ckpt_path = out / "last.pt"
    ckpt = load_checkpoint(ckpt_path) if resume else None
    if ckpt is not None:
        old = ckpt["train_config"]
        # Settings added after a checkpoint was written take their defaults for it.
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        changed = [k for k in RESUME_FIXED if old.get(k, defaults[k]) != getattr(tcfg, k)]
        if changed:
            raise UsageError(f"--resume with different {', '.join(changed)} than the checkpoint "
                             f"({', '.join(f'{k}={old.get(k, defaults[k])!r}' for k in changed)})")
        mcfg = ModelConfig.from_dict(ckpt["model_config"])
    elif not resume and ckpt_path.exists():
        raise UsageError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    init_w = None
    if tcfg.stage == "2" and ckpt is None:
        if init is None:
            raise UsageError("--stage 2 needs --init STAGE1_WEIGHTS (the generator trained by --stage 1)")
        init_w = read_weights(init)
        mcfg = init_w.config  # the architecture comes with the weights
    if tcfg.d_norm:
        mcfg = dataclasses.replace(mcfg, d_norm=tcfg.d_norm)
    if not tcfg.use_attention:
        mcfg = dataclasses.replace(mcfg, use_saliency=False)
    mcfg = mcfg.validate()

    if tcfg.stage == "2" and tcfg.use_perceptual:
        from .losses import find_vgg_weights

        find_vgg_weights(perceptual_weights)  # fail before scanning data or computing saliency
    # ---- data: validated up front, so bad data fails before any model work ----
    scan = scan_photos(data, tcfg.min_colorfulness if tcfg.stage != "gfn" else -1.0)
    console.print(f"data {data}: {scan.summary()}")
    files = scan.files
    needs_maps = tcfg.stage != "gfn" and tcfg.use_attention
    maps = _prepare_saliency(data, files, saliency_dir, out, dist, tcfg.workers, console) if needs_maps else None
    if input_dir is None and mcfg.in_channels != 1:
        raise UsageError(f"the model takes {mcfg.in_channels} input channels: pass --paired-input DIR")
    ds = ColorizationDataset(data, files, tcfg.crop, maps_dir=maps, input_dir=input_dir, in_channels=mcfg.in_channels,
                             noise_std=tcfg.input_noise_std, load_size=tcfg.load_size, seed=tcfg.seed,
                             hflip=tcfg.hflip)
    sampler = EpochSampler(len(ds), tcfg.batch_size, tcfg.seed, dist.rank, dist.world)
    per_epoch = sampler.batches_per_epoch()
    if per_epoch == 0:
        raise InputError(f"{len(ds)} photos is fewer than one batch of {tcfg.batch_size} per process")

    # ---- model: same seed on every rank, then rank 0's weights broadcast anyway ----
    torch.manual_seed(tcfg.seed)
    if tcfg.stage == "gfn":
        from .gfn import GfnStage, class_labels

        classes, labels = class_labels(files)
        stage = GfnStage(tcfg, mcfg, device, dist, classes, labels)
    else:
        from .stages import ColorizationStage

        stage = ColorizationStage(tcfg, mcfg, device, dist, perceptual_weights)
        if init_w is not None:
            sd = init_w.state_dict
            if stage.gen.saliency is None:  # "w/o attention" from an attention stage 1: drop that branch
                sd = {k: v for k, v in sd.items() if not k.startswith("saliency.")}
            load_state_strict(stage.gen, sd, init_w.path.name)
            console.print(f"generator initialised from {init_w.path.name}")
        elif gfn_weights is not None and ckpt is None:
            from .gfn import load_gfn_weights

            load_gfn_weights(stage.gen, gfn_weights, console)
        if stage.ema is not None:
            stage.ema.reset(stage.gen)  # the average starts from the initial weights
    for m in stage.modules.values():
        D.broadcast_module(m, dist)
        m.train()
    torch.manual_seed(tcfg.seed * 1000 + dist.rank + 1)  # per-rank stream (GP alphas)

    step, epoch, batch_in_epoch, elapsed_before = 0, 0, 0, 0.0
    if ckpt is not None:
        for k, m in stage.modules.items():
            if k == "generator_ema" and k not in ckpt["modules"]:
                m.reset(stage.modules["generator"])  # the average starts at the resume point
                console.print("--ema: the weight average starts at the resume point")
                continue
            m.load_state_dict(ckpt["modules"][k])
        for k, o in stage.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in stage.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        elapsed_before = ckpt["elapsed_s"]
        if dist.is_main:
            set_rng_state(ckpt["rng"])
        else:  # only rank 0's RNG is stored; other ranks re-derive theirs from the step
            torch.manual_seed(tcfg.seed * 1000 + dist.rank + 1 + 7919 * step)
        console.print(f"resumed {ckpt_path} at epoch {epoch + 1}, step {step}")

    total = tcfg.epochs * per_epoch
    if tcfg.max_steps:
        total = min(total, tcfg.max_steps)
    loader_kw: dict[str, Any] = dict(batch_size=tcfg.batch_size, num_workers=tcfg.workers, drop_last=True,
                                     pin_memory=device.type == "cuda")
    monitor = Monitor(out, dist.is_main, console, total, step, tcfg)
    n_ckpt = 0

    def checkpoint() -> None:
        nonlocal n_ckpt
        if dist.is_main:
            save_checkpoint(ckpt_path, {
                "stage": tcfg.stage, "train_config": dataclasses.asdict(tcfg), "model_config": dataclasses.asdict(mcfg),
                "modules": {k: m.state_dict() for k, m in stage.modules.items()},
                "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in stage.schedulers.items()},
                "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "elapsed_s": elapsed_before + time.monotonic() - t_start, "data": str(data)})
            n_ckpt += 1
        D.barrier(dist)

    stop_reason = "done"
    t_loop = time.monotonic()
    try:
        while epoch < tcfg.epochs and step < total:
            sampler.set_epoch(epoch, batch_in_epoch)
            loader = DataLoader(ds, sampler=sampler, **loader_kw)
            for batch in loader:
                logs = stage.step(batch)
                step += 1
                batch_in_epoch += 1
                monitor.after_step(step, epoch, logs, stage, tcfg.batch_size * dist.world)
                budget = bool(tcfg.max_minutes) and (time.monotonic() - t_loop) / 60 >= tcfg.max_minutes
                if D.any_rank(budget, dist, device):
                    stop_reason = "time budget"
                    break
                if step >= total:
                    break
                if ckpt_every and step % ckpt_every == 0:
                    checkpoint()
            if batch_in_epoch >= per_epoch:  # epoch complete: epoch-based lr schedule (paper)
                epoch, batch_in_epoch = epoch + 1, 0
                for s in stage.schedulers.values():
                    s.step()
                if epoch < tcfg.epochs and step < total and stop_reason == "done":
                    checkpoint()
            if stop_reason != "done":
                break
        if stop_reason == "done" and epoch < tcfg.epochs:
            stop_reason = "max steps"
    except KeyboardInterrupt:
        checkpoint()  # Ctrl-C keeps the work done so far
        monitor.close()
        raise
    checkpoint()
    monitor.close()
    wall = elapsed_before + time.monotonic() - t_start
    result: dict[str, Any] = {"stage": tcfg.stage, "steps": step, "epochs_done": epoch, "stopped": stop_reason,
                              "checkpoint": str(ckpt_path), "checkpoints_written": n_ckpt, "wallclock_s": round(wall, 1),
                              "images_per_s": monitor.images_per_s(), "final_losses": monitor.last_logs}
    if dist.is_main:
        prov = {"stage": tcfg.stage, "data": str(data), "epochs": tcfg.epochs, "epochs_done": epoch, "steps": step,
                "seed": tcfg.seed, "batch_size": tcfg.batch_size, "world_size": dist.world, "crop": tcfg.crop,
                "losses": {k: round(v, 5) for k, v in monitor.last_logs.items()}, "wallclock_s": round(wall, 1),
                "train_config": dataclasses.asdict(tcfg)}
        if tcfg.stage == "gfn":
            from .gfn import save_gfn

            result["weights"] = str(out / "gfn.safetensors")
            save_gfn(out / "gfn.safetensors", stage.net, mcfg, stage.classes, prov)
        else:
            if stage.ema is not None:  # keep the last iterate too, for comparison
                save_weights(out / "generator_last.safetensors", stage.gen, provenance=prov)
            result["weights"] = str(save_weights(out / "generator.safetensors", stage.export_generator(),
                                                 provenance=prov))
        console.print(f"stopped ({stop_reason}) after {step} steps, {wall / 60:.1f} min; wrote {result['weights']}")
    return result
