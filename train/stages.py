"""What one optimisation step of each training stage does. The generic loop in
``trainer.py`` owns data, checkpoints, logging and distribution; a stage owns its
networks, optimisers, schedulers and losses (everything in it is checkpointed)."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from scgan_rt.color import with_luma_of
from scgan_rt.config import ModelConfig, TrainConfig
from scgan_rt.model import PatchDiscriminator, build_generator

from . import losses as L
from .distributed import DistInfo, average_gradients
from .ema import ModelEma


def _adam(params: Any, lr: float, cfg: TrainConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas))


class Stage:
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    ema: ModelEma | None = None
    step_index = 0  # optimiser steps done before this one (the loop sets it; resume-exact)

    def __init__(self, tcfg: TrainConfig, device: torch.device, dist: DistInfo) -> None:
        self.tcfg, self.device, self.dist = tcfg, device, dist
        # bf16 autocast needs no loss scaler, which keeps the GP's double backward simple.
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if (tcfg.amp and device.type == "cuda")
                         else nullcontext())

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def lrs(self) -> dict[str, float]:
        return {f"lr_{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()}


class ColorizationStage(Stage):
    """Stage 1 (L1 + attention) and stage 2 (+ WGAN-GP with D_c and D_A + perceptual)."""

    def __init__(self, tcfg: TrainConfig, mcfg: ModelConfig, device: torch.device, dist: DistInfo,
                 perceptual_weights: str | None = None) -> None:
        super().__init__(tcfg, device, dist)
        self.gen = build_generator(mcfg).to(device)
        self.modules = {"generator": self.gen}
        if tcfg.ema_decay:
            self.ema = ModelEma(self.gen, tcfg.ema_decay).to(device)
            self.modules["generator_ema"] = self.ema
        second = tcfg.stage == "2"
        self.gan = second and tcfg.use_gan
        self.attn = tcfg.use_attention and mcfg.use_saliency
        if self.gen.prior is not None and not second:
            from scgan_rt.backbone import load_pretrained

            load_pretrained(self.gen.prior)  # ImageNet start; stage 2 and --resume overwrite it
        use_p = tcfg.use_perceptual and (second or tcfg.perceptual_stage1)
        self.perceptual = L.build_perceptual(tcfg.perceptual_net, perceptual_weights).to(device) if use_p else None
        self.ab_loss = None
        if tcfg.lambda_ab_class:
            from .abclass import AbClassLoss

            self.ab_loss = AbClassLoss(mcfg.ch(256)).to(device)
            self.modules["ab_head"] = self.ab_loss
        lr_g = tcfg.lr_g_stage2 if second else tcfg.lr_g
        self.optimizers = {"g": _adam(self._g_param_groups(lr_g), lr_g, tcfg)}
        self.critics: list[nn.Module] = []
        if self.gan:
            self.d_c = PatchDiscriminator(mcfg).to(device)
            self.modules["d_c"] = self.d_c
            self.critics.append(self.d_c)
            if self.attn:
                self.d_a = PatchDiscriminator(mcfg).to(device)
                self.modules["d_a"] = self.d_a
                self.critics.append(self.d_a)
            # One Adam over both critics == two Adams (its state is per parameter).
            self.optimizers["d"] = _adam([p for d in self.critics for p in d.parameters()], tcfg.lr_d, tcfg)
        # Paper: stage 1 at a fixed lr; stage 2 halves G and D lr every 10 epochs.
        gamma = 0.5 if second else 1.0
        self.schedulers = {k: torch.optim.lr_scheduler.StepLR(o, tcfg.lr_halve_every, gamma)
                           for k, o in self.optimizers.items()}

    def _g_param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The pretrained prior learns at ``prior_lr_scale`` of the rest (fine-tuning)."""
        prior = list(self.gen.prior.parameters()) if self.gen.prior is not None else []
        ids = {id(p) for p in prior}
        rest = [p for p in self.gen.parameters() if id(p) not in ids]
        if self.ab_loss is not None:
            rest += list(self.ab_loss.parameters())
        groups: list[dict[str, Any]] = [{"params": rest, "lr": lr}]
        if prior:
            groups.append({"params": prior, "lr": lr * self.tcfg.prior_lr_scale})
        return groups

    def _critic_pairs(self, rgb: torch.Tensor, sal: torch.Tensor, fake: torch.Tensor,
                      fsal: torch.Tensor | None) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        """(critic, real, fake): D_c sees colour images, D_A attention-weighted ones."""
        pairs = [(self.d_c, rgb, fake)]
        if self.attn:
            pairs.append((self.d_a, rgb * sal, fake * fsal))
        return pairs

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        t = self.tcfg
        gray, rgb, sal = (batch[k].to(self.device, non_blocking=True) for k in ("gray", "rgb", "sal"))
        logs: dict[str, float] = {}
        if self.gen.prior is not None:
            self.gen.prior.requires_grad_(self.step_index >= t.prior_freeze_steps)
        with self.autocast:
            fake, fsal, u6 = self.gen(gray, with_saliency=self.attn, with_u6=True)
        if t.merge_luma:
            fake = with_luma_of(fake, rgb)
        if self.gan:
            # Critic step(s): n_critic = 1 in the paper's code. Critics get gradients only here.
            for d in self.critics:
                d.requires_grad_(True)
            for _ in range(t.n_critic):
                loss_d = torch.zeros((), device=self.device)
                with self.autocast:
                    for name, (d, real, fk) in zip(("c", "a"), self._critic_pairs(rgb, sal, fake, fsal)):
                        ld, extra = L.critic_loss(d, gray, real, fk, t.gan_mode, t.lambda_gp)
                        loss_d = loss_d + ld.float()
                        logs[f"loss_d_{name}"] = ld.item()
                        logs.update({f"{k}_{name}": v for k, v in extra.items()})
                self.optimizers["d"].zero_grad(set_to_none=True)
                loss_d.backward()
                average_gradients(self.optimizers["d"], self.dist)
                self.optimizers["d"].step()
            for d in self.critics:
                d.requires_grad_(False)  # G step: gradients flow through D to G only
        with self.autocast:
            l_pix = L.pixel_loss(fake.float(), rgb, t.pixel_loss)
            loss_g = t.lambda_l1 * l_pix
            logs["loss_pixel"] = l_pix.item()
            if self.attn:
                l_a = L.attention_loss(fake.float(), fsal.float(), rgb, sal, t.pixel_loss)
                loss_g = loss_g + t.lambda_attn * l_a
                logs["loss_attention"] = l_a.item()
            if self.gan:
                # The G step reuses this step's generator forward (the authors run G twice;
                # the extra forward only re-samples BN statistics and costs a third of a step).
                l_g = sum(L.generator_adv_loss(d, gray, fk, t.gan_mode).float()
                          for d, _, fk in self._critic_pairs(rgb, sal, fake, fsal))
                loss_g = loss_g + t.lambda_gan * l_g
                logs["loss_g_adv"] = float(l_g.item())
            if self.perceptual is not None:
                l_p = self.perceptual(fake.float(), rgb)
                loss_g = loss_g + t.lambda_perceptual * l_p
                logs["loss_perceptual"] = l_p.item()
            loss_g = loss_g + self._colour_losses(fake, rgb, u6, logs)
        self.optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        average_gradients(self.optimizers["g"], self.dist)
        self.optimizers["g"].step()
        if self.ema is not None:
            self.ema.update(self.gen)
        logs["loss_g"] = loss_g.item()
        self._last = (gray[:1].detach(), fake[:1].detach(), rgb[:1], sal[:1],
                      None if fsal is None else fsal[:1].detach())
        return logs

    def _colour_losses(self, fake: torch.Tensor, rgb: torch.Tensor, u6: torch.Tensor,
                       logs: dict[str, float]) -> torch.Tensor:
        """The terms against L1's desaturation (zero unless their weights are set)."""
        t, total = self.tcfg, torch.zeros((), device=fake.device)
        if self.ab_loss is not None:
            l_c = self.ab_loss(u6, rgb)
            total = total + t.lambda_ab_class * l_c
            logs["loss_ab_class"] = l_c.item()
        if t.lambda_colorfulness:
            l_cf = L.colorfulness_loss(fake, rgb)
            total = total + t.lambda_colorfulness * l_cf
            logs["loss_colorfulness"] = l_cf.item()
        if t.lambda_ciede:
            l_de = L.ciede_loss(fake, rgb)
            total = total + t.lambda_ciede * l_de
            logs["loss_ciede2000"] = l_de.item()
        return total

    def export_generator(self) -> nn.Module:
        """What the run ships: the weight average when one is kept."""
        return self.gen if self.ema is None else self.ema.module

    def sample_grid(self) -> torch.Tensor:
        """gray | prediction | truth | predicted saliency | target saliency, in [0,1]."""
        gray, fake, rgb, sal, fsal = self._last
        tiles = [gray[:, :1].expand(-1, 3, -1, -1), fake.float(), rgb]
        tiles = [(x.clamp(-1, 1) + 1) / 2 for x in tiles]
        if fsal is not None:
            tiles.append(fsal.float().expand(-1, 3, -1, -1))
        tiles.append(sal.expand(-1, 3, -1, -1))
        return torch.cat(tiles, 3)[0].cpu()
